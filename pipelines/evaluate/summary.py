"""The walk-forward's figures as frozen, typed models: what leaves the research engine.

:meth:`pipelines.evaluate.walkforward.WalkForwardResult.summary` returns a
:class:`WalkForwardFigures`; the research job adds what it knows about the run
(:class:`services.research.WalkForwardSummary`). Their JSON dump is the ``--json`` line of
``solodesk walkforward``: ratios and returns are fractions, times ISO-8601 UTC with ``Z``, and a
figure that is NaN or infinite is null.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from pipelines.backtest.metrics import PerformanceFigures

Interval = tuple[float | None, float | None]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpaFigures(_Frozen):
    """Hansen's SPA test p-values against flat, buy-and-hold, and over the candidate models."""

    vs_flat_p: float | None
    vs_buy_and_hold_p: float | None
    models_vs_flat_p: float | None
    models: tuple[str, ...]
    bars_per_point: int


class GrossFigures(_Frozen):
    """The out-of-sample figures before costs."""

    sharpe: float | None
    sharpe_ci: Interval
    total_return: float | None


class OosStatistics(PerformanceFigures):
    """Out-of-sample statistics after costs (:func:`~pipelines.evaluate.walkforward.oos_statistics`).

    The performance figures of the stitched test windows, plus: the stationary-bootstrap
    intervals at ``ci_level``, the probabilistic and deflated Sharpe ratios (the latter over
    ``n_trials`` configurations), the per-bar Sharpe with its skew and kurtosis, a Newey-West
    t-test of the mean, the minimum track record length, SPA tests, the candidate models'
    Sharpe ratios and the gross figures.
    """

    sharpe_ci: Interval
    ci_level: float
    mean_return_ci: Interval
    max_drawdown_ci: Interval
    psr: float | None
    dsr: float | None
    sharpe_per_bar: float | None
    skew: float | None
    kurtosis: float | None
    newey_west_t: float | None
    newey_west_p: float | None
    min_track_record_bars: float | None
    spa: SpaFigures
    candidates: dict[str, float | None]
    gross: GrossFigures
    n_trials: int


class FoldRecord(_Frozen):
    """One split's out-of-sample figures (annualized Sharpe) and its classification report."""

    fold: int
    test_groups: tuple[int, ...]
    train_rows: int
    test_rows: int
    train_start: str
    train_end: str
    test_start: str
    test_end: str
    params: dict[str, Any]
    n_trials: int
    sharpe: float | None
    total_return: float | None
    n: int
    auc: float | None
    logloss: float | None
    accuracy: float | None
    base_rate: float | None
    brier: float | None
    ece: float | None
    pbo: float | None
    seconds: float


class TrialCounts(_Frozen):
    """How many configurations were tried (the DSR's count) and their Sharpe ratios' variance."""

    total: int
    sharpe_variance: float | None
    per_fold: int


class ControlRecord(_Frozen):
    """One leakage-audit control's verdict with its 99% Sharpe intervals."""

    control: str
    passed: bool
    reason: str
    gross_sharpe: float | None
    gross_sharpe_ci_99: Interval
    net_sharpe: float | None
    net_sharpe_ci_99: Interval


class AuditRecord(_Frozen):
    """The leakage audit: passed when every control shows no edge."""

    passed: bool
    controls: tuple[ControlRecord, ...]


class WalkForwardFigures(_Frozen):
    """What a walk-forward (or CPCV) job measured: out-of-sample statistics, folds, trials.

    ``pbo`` is the mean probability of backtest overfitting over the folds that have one;
    ``paths`` the Sharpe ratio of every CPCV path (CPCV only).
    """

    scheme: str
    model: str
    oos: OosStatistics
    folds: tuple[FoldRecord, ...]
    trials: TrialCounts
    mlflow_run_id: str | None
    seconds: float
    pbo: float | None
    paths: tuple[float | None, ...] | None = None

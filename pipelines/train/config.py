"""Research settings: the model, its tuning, the splits, the trading rule and the costs.

Parsed once at the edge (command line, ``params.yaml``) into frozen models; nothing inward sees
a raw dictionary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import UsageError, options_error
from core.types import Scheme
from pipelines.backtest.config import BacktestConfig


class Objective(StrEnum):
    """What tuning optimizes: the inner folds' log-loss, or the rule's Sharpe after costs."""

    LOGLOSS = "logloss"
    SHARPE = "sharpe"


#: Training rows per LightGBM thread when the thread count is left to the job.
ROWS_PER_THREAD = 5_000


class SplitConfig(BaseModel):
    """How the rows are cut into training and test windows.

    ``rolling`` and ``anchored`` are walk-forward schemes with ``folds`` test windows at the end
    of the data; ``cpcv`` is combinatorial purged cross-validation with ``groups`` groups, of
    which ``test_groups`` are tested per split. ``embargo_bars`` rows after each test window
    are kept out of training (None: the label's longest holding period).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Scheme = Scheme.ROLLING
    folds: int = Field(default=5, ge=1, le=200)
    train_bars: int | None = Field(default=None, ge=100)
    test_bars: int | None = Field(default=None, ge=20)
    groups: int = Field(default=6, ge=2, le=30)
    test_groups: int = Field(default=2, ge=1)
    embargo_bars: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _groups(self) -> SplitConfig:
        if self.test_groups >= self.groups:
            raise ValueError(
                f"test_groups ({self.test_groups}) must be below groups ({self.groups})"
            )
        return self


class TuningConfig(BaseModel):
    """Optuna inside each training window: TPE, median pruning, inner purged folds.

    ``objective`` is the inner folds' weighted log-loss (minimized) or the trading rule's
    per-bar Sharpe ratio after costs on the inner validation blocks (maximized). With
    ``trials`` 0 the learner keeps its default parameters.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    trials: int = Field(default=20, ge=0, le=10_000)
    objective: Objective = Objective.LOGLOSS
    inner_folds: int = Field(default=3, ge=2, le=10)
    pruning: bool = True
    workers_per_study: int = Field(default=1, ge=1, le=64)


class RuleConfig(BaseModel):
    """The trading rule on P(up): long above ``upper``, short (or flat) below ``lower``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    upper: float = Field(default=0.55, ge=0.5, le=1.0)
    lower: float = Field(default=0.45, ge=0.0, le=0.5)
    allow_short: bool = True


class RegimeConfig(BaseModel):
    """A regime detector fitted on each training window, used as a feature and optionally a gate.

    ``columns`` name the features it is fitted on (volatility first: regime 0 is the calmest);
    ``allowed`` lists the regimes the model may trade in (None: all); ``per_regime`` fits one
    model per regime.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: tuple[str, ...] = ("realized_vol_20", "log_return_20")
    n_regimes: int = Field(default=2, ge=2, le=6)
    allowed: tuple[int, ...] | None = None
    per_regime: bool = False


class StatsConfig(BaseModel):
    """How the out-of-sample statistics are computed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: float = Field(default=0.95, gt=0.5, lt=1.0)
    n_boot: int = Field(default=1000, ge=100, le=100_000)
    pbo_splits: int = Field(default=8, ge=2, le=16)
    candidates: tuple[str, ...] = ("logistic",)


class WalkForwardConfig(BaseModel):
    """One research job: learner, tuning, splits, rule, costs, statistics and resources."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "lightgbm"
    params: dict[str, Any] = {}
    split: SplitConfig = SplitConfig()
    tuning: TuningConfig = TuningConfig()
    rule: RuleConfig = RuleConfig()
    regime: RegimeConfig | None = None
    backtest: BacktestConfig = BacktestConfig()
    stats: StatsConfig = StatsConfig()
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, le=256)
    jobs: int = Field(default=1, ge=1, le=256)

    def threads_for(self, rows: int) -> int:
        """Return the learner threads for a fit on ``rows`` training rows.

        An explicit ``threads`` wins. Otherwise one thread per ``ROWS_PER_THREAD`` rows, at
        most the cores each of the ``jobs`` processes has. OpenMP workers sleep between
        parallel regions (see :mod:`models.learners`), and on a small window waking them costs
        more than the second thread saves: the sample EURUSD H1 walk-forward (windows of a few
        thousand rows) ran in 27 s on one thread and 62 s on two, while on windows of 20,000
        rows two threads were a third faster than one.
        """
        if self.threads is not None:
            return self.threads
        share = max(1, (os.cpu_count() or 1) // self.jobs)
        return max(1, min(share, rows // ROWS_PER_THREAD))

    @classmethod
    def from_options(
        cls,
        *,
        model: str = "lightgbm",
        model_params: Mapping[str, str] | None = None,
        trials: int = 20,
        objective: Objective = Objective.LOGLOSS,
        scheme: Scheme = Scheme.ROLLING,
        folds: int = 5,
        groups: int = 6,
        test_groups: int = 2,
        train_bars: int | None = None,
        test_bars: int | None = None,
        upper: float = 0.55,
        lower: float = 0.45,
        long_only: bool = False,
        regime: bool = False,
        regime_gate: str | None = None,
        spread: str | float = 1.0,
        fees: float = 0.0,
        commission: float = 0.0,
        slippage: float = 0.0,
        jobs: int = 1,
        trial_workers: int = 1,
        threads: int | None = None,
        seed: int = 0,
        n_boot: int = 1000,
    ) -> WalkForwardConfig:
        """Return the research configuration the command-line options describe, checked.

        ``model_params`` are fixed learner parameters as text (``true``/``false``, numbers,
        else strings); ``regime_gate`` lists the regimes traded (``0`` or ``0,1``) and implies
        ``regime``; ``long_only`` goes flat instead of short below ``lower``. The trades are
        sized at the whole equity (``fraction:1``), filled at the close, with the given costs.

        Raises
        ------
        UsageError
            Naming the rejected option and why.
        """
        from models.learners.registry import learner_names  # scikit-learn: a second to import

        if model not in learner_names():
            raise UsageError(f"--model {model!r}: choose one of {', '.join(learner_names())}")
        allowed = None
        if regime_gate is not None:
            try:
                allowed = tuple(int(x) for x in regime_gate.split(",") if x.strip())
            except ValueError:
                msg = f"--regime-gate {regime_gate!r}: list regimes, e.g. 0 or 0,1"
                raise UsageError(msg) from None
        backtest = BacktestConfig.from_options(
            fees=fees, commission=commission, slippage=slippage, spread=spread,
            sizing="fraction:1",
        )  # fmt: skip
        try:
            return cls(
                model=model,
                params={k: _typed(v) for k, v in (model_params or {}).items()},
                split=SplitConfig(
                    scheme=scheme,
                    folds=folds,
                    groups=groups,
                    test_groups=test_groups,
                    train_bars=train_bars,
                    test_bars=test_bars,
                ),
                tuning=TuningConfig(
                    trials=trials, objective=objective, workers_per_study=trial_workers
                ),
                rule=RuleConfig(upper=upper, lower=lower, allow_short=not long_only),
                regime=RegimeConfig(allowed=allowed) if (regime or allowed is not None) else None,
                backtest=backtest,
                stats=StatsConfig(n_boot=n_boot),
                seed=seed,
                threads=threads,
                jobs=jobs,
            )
        except ValidationError as exc:
            raise options_error("walk-forward", exc) from None


def _typed(text: str) -> Any:
    """Return a learner parameter given as text as a bool, int or float when it is one."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text

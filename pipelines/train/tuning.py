"""Tune a learner inside one training window on inner purged folds, then fit it.

The training window never sees its test window: every figure here comes from the window's own
rows. The inner folds are purged K-fold blocks of the window (:func:`purged_kfold_splits`);
each trial fits on the inner training rows, predicts the inner validation block, and scores
it by weighted log-loss or by the trading rule's Sharpe ratio after costs. Because the inner
validation blocks partition the window, every completed trial leaves one return series over
the whole window: together they are the trials' return matrix the probability of backtest
overfitting is measured on, and their Sharpe ratios feed the deflated Sharpe ratio.

A LightGBM ``Dataset`` is built once per window; the inner folds are subsets of it that every
trial reuses.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import optuna

from core.types import Instrument
from models.learners.base import Dist, Learner, SearchSpace, Validation
from models.learners.registry import make_learner, make_regime_learner, search_space
from models.strategies.base import Signals
from models.strategies.ml_model import MlModel
from pipelines.backtest.config import BacktestConfig
from pipelines.backtest.engine import BacktestResult, run_backtest
from pipelines.evaluate.classification import weighted_logloss
from pipelines.evaluate.dataset import Floats, Ints, ResearchData
from pipelines.evaluate.splits import Split, purge, purged_kfold_splits
from pipelines.train.config import RuleConfig, WalkForwardConfig

StorageFactory = Callable[[], "optuna.storages.BaseStorage"]
VALID_SHARE = 0.15


@dataclass(frozen=True)
class TradeContext:
    """What turning probabilities into after-cost returns needs.

    ``to_account`` is a number or one rate per row of the research data.
    """

    instrument: Instrument
    backtest: BacktestConfig
    rule: RuleConfig
    side: str
    bars_per_year: float
    to_account: Floats | float = 1.0

    def without_costs(self) -> TradeContext:
        """Return the same context with every cost set to zero."""
        free = self.backtest.model_copy(update={"costs": type(self.backtest.costs)()})
        return TradeContext(
            self.instrument, free, self.rule, self.side, self.bars_per_year, self.to_account
        )


def rule_targets(proba: Floats, rule: RuleConfig) -> Floats:
    """Return the target position per bar the rule asks for (see :class:`MlModel`)."""
    model = MlModel(upper=rule.upper, lower=rule.lower, allow_short=rule.allow_short)
    return model.target(proba)


def trade_rows(
    proba: Floats, rows: Ints, data: ResearchData, trade: TradeContext
) -> BacktestResult:
    """Backtest the rule on ``proba`` over contiguous ``rows``, flat at the start, with costs."""
    rates = trade.to_account if isinstance(trade.to_account, float) else trade.to_account[rows]
    return run_backtest(
        data.rows(rows),
        Signals(target=rule_targets(proba, trade.rule)),
        trade.instrument,
        trade.backtest,
        side=trade.side,
        bars_per_year=trade.bars_per_year,
        to_account=rates,
    )


def strategy_returns(
    proba: Floats, rows: Ints, data: ResearchData, trade: TradeContext
) -> tuple[Floats, Floats]:
    """Return per-bar returns after costs and equity of trading ``proba`` on contiguous ``rows``.

    The block starts flat with the configured cash; returns are equity[i] / equity[i−1] − 1
    with the cash as equity[−1].
    """
    equity = trade_rows(proba, rows, data, trade).equity
    previous = np.r_[trade.backtest.cash, equity[:-1]]
    return equity / previous - 1.0, equity


def per_bar_sharpe(returns: Floats) -> float:
    """Return mean / standard deviation (ddof 1) of per-bar returns; NaN if undefined."""
    if returns.shape[0] < 2:
        return math.nan
    sd = float(np.std(returns, ddof=1))
    return float(np.mean(returns)) / sd if sd > 0 else math.nan


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Return one value per hyper-parameter of ``space``, drawn by the trial's sampler."""
    values: dict[str, Any] = {}
    for name, dist in space.items():
        values[name] = _suggest_one(trial, name, dist)
    return values


def _suggest_one(trial: optuna.Trial, name: str, dist: Dist) -> Any:
    if dist.kind == "categorical":
        return trial.suggest_categorical(name, list(dist.choices))
    assert dist.low is not None and dist.high is not None
    if dist.kind == "int":
        return trial.suggest_int(name, int(dist.low), int(dist.high), log=dist.log)
    return trial.suggest_float(name, float(dist.low), float(dist.high), log=dist.log)


def build_learner(
    config: WalkForwardConfig,
    params: Mapping[str, Any],
    names: tuple[str, ...],
    seed: int,
    *,
    rows: int,
) -> Learner:
    """Return the configured learner (wrapped in the regime gate when one is set).

    ``rows`` is the size of the training window: it sets the threads when the configuration
    leaves them open (:meth:`WalkForwardConfig.threads_for`).
    """
    merged = {**config.params, **params}
    threads = config.threads_for(rows)
    if config.regime is None:
        return make_learner(config.model, merged, seed=seed, threads=threads)
    missing = [c for c in config.regime.columns if c not in names]
    if missing:
        from core.errors import UsageError

        msg = (
            f"regime columns {', '.join(missing)} are not features of the set "
            f"(features: {', '.join(names[:8])}, ...)"
        )
        raise UsageError(msg)
    return make_regime_learner(
        config.model,
        merged,
        seed=seed,
        threads=threads,
        regime_columns=tuple(names.index(c) for c in config.regime.columns),
        n_regimes=config.regime.n_regimes,
        allowed=config.regime.allowed,
        per_regime=config.regime.per_regime,
    )


def uses_window_dataset(config: WalkForwardConfig) -> bool:
    """Return whether trials train on LightGBM Datasets built once per window."""
    return config.regime is None and config.model in ("lightgbm", "lightgbm_regressor")


@dataclass
class TuneOutcome:
    """What tuning one window left: the trials and the best parameters.

    ``trial_returns`` holds, for each completed trial this process ran, its after-cost
    returns over the whole window (inner validation blocks in order).
    """

    best_params: dict[str, Any]
    n_trials: int
    best_value: float = math.nan
    trial_sharpes: dict[int, float] = field(default_factory=dict)
    trial_returns: dict[int, Floats] = field(default_factory=dict)
    seconds: float = 0.0


def _target(config: WalkForwardConfig, data: ResearchData) -> npt.NDArray[Any]:
    return data.returns if _is_regressor(config) else data.y


def _is_regressor(config: WalkForwardConfig) -> bool:
    return config.model.endswith("_regressor")


class _Objective:
    """One trial: fit and score every inner fold of the window."""

    def __init__(
        self,
        data: ResearchData,
        rows: Ints,
        inner: list[Split],
        config: WalkForwardConfig,
        trade: TradeContext,
        seed: int,
    ) -> None:
        self.data = data
        self.rows = rows
        self.inner = inner
        self.config = config
        self.trade = trade
        self.seed = seed
        self.space = search_space(config.model) if config.regime is None else _regime_space(config)
        self.fixed = set(config.params)
        self.returns: dict[int, Floats] = {}
        self.sharpes: dict[int, float] = {}
        self.datasets: list[tuple[Any, Any]] | None = None
        if uses_window_dataset(config):
            from models.learners.lightgbm import WindowDataset

            window = WindowDataset(
                data.X[rows],
                _target(config, data)[rows],
                weight=data.weight[rows],
                feature_names=data.feature_names,
                threads=config.threads_for(rows.shape[0]),
            )
            self.datasets = [(window.subset(s.train), window.subset(s.test)) for s in inner]

    def __call__(self, trial: optuna.Trial) -> float:
        space = {k: v for k, v in self.space.items() if k not in self.fixed}
        params = suggest(trial, space)
        names = self.data.feature_names
        y = _target(self.config, self.data)
        losses: list[float] = []
        parts: list[Floats] = []
        for j, split in enumerate(self.inner):
            train = self.rows[split.train]
            valid = self.rows[split.test]
            learner = build_learner(self.config, params, names, self.seed, rows=self.rows.shape[0])
            if self.datasets is not None:
                learner.fit_dataset(*self.datasets[j])  # type: ignore[attr-defined]
            else:
                learner.fit(
                    self.data.X[train],
                    y[train],
                    weight=self.data.weight[train],
                    valid=Validation(self.data.X[valid], y[valid], self.data.weight[valid]),
                )
            p = learner.predict_proba(self.data.X[valid])
            losses.append(weighted_logloss(self.data.y[valid], p, self.data.weight[valid]))
            returns, _ = strategy_returns(p, valid, self.data, self.trade)
            parts.append(returns)
            running = (
                float(np.mean(losses))
                if self.config.tuning.objective == "logloss"
                else per_bar_sharpe(np.concatenate(parts))
            )
            if self.config.tuning.pruning and j < len(self.inner) - 1:
                trial.report(running if math.isfinite(running) else 0.0, j)
                if trial.should_prune():
                    raise optuna.TrialPruned
        returns = np.concatenate(parts)
        sharpe = per_bar_sharpe(returns)
        self.returns[trial.number] = returns
        self.sharpes[trial.number] = sharpe
        trial.set_user_attr("sharpe", sharpe if math.isfinite(sharpe) else None)
        trial.set_user_attr("logloss", float(np.mean(losses)))
        trial.set_user_attr("worker", os.getpid())
        if self.config.tuning.objective == "logloss":
            return float(np.mean(losses))
        return sharpe if math.isfinite(sharpe) else -1.0


def _regime_space(config: WalkForwardConfig) -> SearchSpace:
    # The gate adds no tunable parameters: the base learner's space is tuned.
    return search_space(config.model)


def inner_splits(
    data: ResearchData, rows: Ints, config: WalkForwardConfig, embargo: int
) -> list[Split]:
    """Return the inner purged folds of a training window (indices into ``rows``)."""
    return purged_kfold_splits(
        data.ts[rows],
        data.label_end[rows],
        n_splits=config.tuning.inner_folds,
        embargo_bars=embargo,
    )


def create_study(
    name: str,
    config: WalkForwardConfig,
    seed: int,
    storage: StorageFactory | None,
) -> optuna.Study:
    """Return the study of one window (loaded when it exists in shared storage)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction: Literal["minimize", "maximize"] = (
        "minimize" if config.tuning.objective == "logloss" else "maximize"
    )
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
        if config.tuning.pruning
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        study_name=name,
        storage=storage() if storage is not None else None,
        sampler=optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=min(10, max(2, config.tuning.trials // 2))
        ),
        pruner=pruner,
        direction=direction,
        load_if_exists=True,
    )


def tune_window(
    data: ResearchData,
    rows: Ints,
    config: WalkForwardConfig,
    trade: TradeContext,
    *,
    study_name: str,
    storage: StorageFactory | None,
    n_trials: int,
    embargo: int,
    seed: int,
) -> TuneOutcome:
    """Run ``n_trials`` trials of the window's study and return what they found.

    Several processes may call this on the same ``study_name`` in shared storage; each
    returns the trials it ran itself, and ``best_params`` is the study's best so far.
    """
    started = time.perf_counter()
    if n_trials == 0:
        return TuneOutcome({}, 0, seconds=0.0)
    inner = inner_splits(data, rows, config, embargo)
    objective = _Objective(data, rows, inner, config, trade, seed)
    study = create_study(study_name, config, seed, storage)
    study.optimize(objective, n_trials=n_trials, gc_after_trial=False)
    params, value = best_params(study)
    return TuneOutcome(
        best_params=params,
        n_trials=n_trials,
        best_value=value,
        trial_sharpes=objective.sharpes,
        trial_returns=objective.returns,
        seconds=time.perf_counter() - started,
    )


def best_params(study: optuna.Study) -> tuple[dict[str, Any], float]:
    """Return the best completed trial's parameters and value (({}, NaN) when none completed)."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return {}, math.nan
    best = study.best_trial
    return dict(best.params), float(best.value) if best.value is not None else math.nan


def fit_window(
    data: ResearchData,
    rows: Ints,
    config: WalkForwardConfig,
    params: Mapping[str, Any],
    *,
    embargo: int,
    seed: int,
) -> Learner:
    """Fit the learner on a training window with ``params``.

    LightGBM stops early on the window's last 15% (purged from the rows it fits on); learners
    without early stopping fit on every row.
    """
    learner = build_learner(config, params, data.feature_names, seed, rows=rows.shape[0])
    y = _target(config, data)
    if config.model.startswith("lightgbm") and rows.shape[0] >= 200:
        cut = int(rows.shape[0] * (1.0 - VALID_SHARE))
        local = np.arange(rows.shape[0], dtype=np.int64)
        fit_local = purge(
            local[:cut], local[cut:], data.ts[rows], data.label_end[rows], embargo_bars=embargo
        )
        fit_rows, valid_rows = rows[fit_local], rows[cut:]
        learner.fit(
            data.X[fit_rows],
            y[fit_rows],
            weight=data.weight[fit_rows],
            valid=Validation(data.X[valid_rows], y[valid_rows], data.weight[valid_rows]),
        )
        return learner
    learner.fit(data.X[rows], y[rows], weight=data.weight[rows])
    return learner


@dataclass(frozen=True)
class TrainedModel:
    """A fitted learner with the feature columns it reads: what the registry stores.

    :meth:`predict_proba` takes rows of ``feature_names`` in that order and returns P(up).
    """

    learner: Learner
    feature_names: tuple[str, ...]
    rule: RuleConfig
    model: str
    params: dict[str, Any]

    def predict_proba(self, X: Floats) -> Floats:
        """Return P(up) for each row of ``X``."""
        return self.learner.predict_proba(np.asarray(X, dtype=np.float64))

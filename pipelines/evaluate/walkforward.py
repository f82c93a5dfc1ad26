"""Walk-forward and CPCV research: tune and fit window by window, trade the test windows.

For each split the learner is tuned on inner purged folds of the training rows
(:mod:`pipelines.train.tuning`), fitted on them, and asked for P(up) on the test rows it never
saw. The out-of-sample probabilities are traded by the rule with costs through the backtest
engine, and the after-cost returns are judged (:func:`oos_statistics`): bootstrap intervals,
probabilistic and deflated Sharpe ratios, a Newey–West t-test, Hansen's SPA test against flat,
buy-and-hold and the candidate models, the minimum track record length, and the probability of
backtest overfitting measured on the trials' return matrices.

A final model is tuned and fitted the same way on the most recent window: that is the model a
desk would deploy.

Work runs in an :class:`~concurrent.futures.Executor` (local processes, or a Dask cluster's
executor), or in this process when none is given. Runs are recorded through a
:class:`~core.ports.RunTracker`: one child run per split under ``parent_id``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.errors import UsageError
from core.ids import new_run_id
from core.ports import NullTracker, RunTracker
from core.times import iso_z
from core.types import Scheme
from models.learners.registry import make_learner
from pipelines.backtest.metrics import Metrics, performance
from pipelines.evaluate import stats
from pipelines.evaluate.classification import ClassificationReport, classification_report
from pipelines.evaluate.dataset import Floats, Ints, ResearchData
from pipelines.evaluate.splits import (
    Split,
    cpcv_paths,
    cpcv_splits,
    group_bounds,
    walk_forward_splits,
)
from pipelines.evaluate.summary import FoldRecord, OosStatistics, TrialCounts, WalkForwardFigures
from pipelines.train.config import WalkForwardConfig
from pipelines.train.tuning import (
    StorageFactory,
    TradeContext,
    TrainedModel,
    TuneOutcome,
    create_study,
    fit_window,
    per_bar_sharpe,
    strategy_returns,
    trade_rows,
    tune_window,
)

Progress = Callable[[str, int, int], None]
FINAL = -1
SPA_POINTS = 4000


@dataclass(frozen=True)
class WindowJob:
    """One training window to tune and fit, and the test rows to predict (none for the final)."""

    fold: int
    train: Ints
    test: Ints
    test_groups: tuple[int, ...]
    data: ResearchData
    config: WalkForwardConfig
    trade: TradeContext
    storage: StorageFactory | None
    study_name: str
    embargo: int

    @property
    def seed(self) -> int:
        """Return the window's seed (the job's seed plus the fold)."""
        return self.config.seed + 1000 * (self.fold + 1)


@dataclass
class FitOutcome:
    """A fitted window: its test probabilities and how good they were."""

    fold: int
    proba: Floats
    candidates: dict[str, Floats]
    report: ClassificationReport | None
    importance: Floats | None
    model: TrainedModel | None
    params: dict[str, Any]
    seconds: float


def tune_task(job: WindowJob, n_trials: int, worker: int = 0) -> TuneOutcome:
    """Tune the window of ``job`` for ``n_trials`` trials (runs in a worker).

    ``worker`` numbers the workers sharing the window's study; each seeds its sampler
    differently, so they do not draw the same configurations.
    """
    return tune_window(
        job.data,
        job.train,
        job.config,
        job.trade,
        study_name=job.study_name,
        storage=job.storage,
        n_trials=n_trials,
        embargo=job.embargo,
        seed=job.seed + 7919 * worker,
    )


def fit_task(job: WindowJob, params: dict[str, Any]) -> FitOutcome:
    """Fit the window of ``job`` with ``params`` and predict its test rows (runs in a worker)."""
    started = time.perf_counter()
    data = job.data
    learner = fit_window(data, job.train, job.config, params, embargo=job.embargo, seed=job.seed)
    model = TrainedModel(learner, data.feature_names, job.config.rule, job.config.model, params)
    proba = np.zeros(0)
    report = None
    candidates: dict[str, Floats] = {}
    if job.test.shape[0]:
        X = data.X[job.test]
        proba = learner.predict_proba(X)
        report = classification_report(data.y[job.test], proba, data.weight[job.test])
        for name in job.config.stats.candidates:
            if name == job.config.model:
                continue
            threads = job.config.threads_for(job.train.shape[0])
            other = make_learner(name, seed=job.seed, threads=threads)
            other.fit(data.X[job.train], data.y[job.train], weight=data.weight[job.train])
            candidates[name] = other.predict_proba(X)
    return FitOutcome(
        fold=job.fold,
        proba=proba,
        candidates=candidates,
        report=report,
        importance=learner.feature_importance(),
        model=model if job.fold == FINAL else None,
        params=dict(params),
        seconds=time.perf_counter() - started,
    )


class InlineExecutor(Executor):
    """Run each submitted call at once in this process (``--jobs 1``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Call ``fn`` now and return a finished future."""
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


@dataclass(frozen=True)
class FoldSummary:
    """One split's out-of-sample figures."""

    fold: int
    test_groups: tuple[int, ...]
    train_rows: int
    test_rows: int
    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime
    params: dict[str, Any]
    n_trials: int
    sharpe: float
    total_return: float
    classification: ClassificationReport
    pbo: float | None
    seconds: float

    def record(self, bars_per_year: float) -> FoldRecord:
        """Return the fold's figures (annualized Sharpe) as they leave the engine."""
        return FoldRecord(
            fold=self.fold,
            test_groups=self.test_groups,
            train_rows=self.train_rows,
            test_rows=self.test_rows,
            train_start=iso_z(self.train_start),
            train_end=iso_z(self.train_end),
            test_start=iso_z(self.test_start),
            test_end=iso_z(self.test_end),
            params=self.params,
            n_trials=self.n_trials,
            sharpe=_finite(self.sharpe * math.sqrt(bars_per_year)),
            total_return=_finite(self.total_return),
            **self.classification.as_dict(),  # type: ignore[arg-type]
            pbo=self.pbo,
            seconds=round(self.seconds, 3),
        )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _when(ns: np.int64 | int) -> datetime:
    return datetime.fromtimestamp(int(ns) / 1e9, tz=UTC)


@dataclass
class WalkForwardResult:
    """Everything a walk-forward job produced."""

    config: WalkForwardConfig
    scheme: str
    folds: list[FoldSummary]
    oos_ts: np.ndarray
    oos_equity: Floats
    oos_returns: Floats
    gross_returns: Floats
    oos_position: Floats
    metrics: Metrics
    statistics: dict[str, Any]
    importance: dict[str, float]
    model: TrainedModel | None
    n_trials: int
    trial_sharpe_variance: float
    parent_run_id: str | None
    child_run_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    path_sharpes: list[float] = field(default_factory=list)

    def summary(self) -> WalkForwardFigures:
        """Return the job's figures: ``oos``, ``folds``, trials and (CPCV) ``pbo`` and paths."""
        per_year = self.metrics.bars_per_year
        pbos = [f.pbo for f in self.folds if f.pbo is not None]
        return WalkForwardFigures(
            scheme=self.scheme,
            model=self.config.model,
            oos=OosStatistics.model_validate(self.statistics),
            folds=tuple(f.record(per_year) for f in self.folds),
            trials=TrialCounts(
                total=self.n_trials,
                sharpe_variance=_finite(self.trial_sharpe_variance),
                per_fold=self.config.tuning.trials,
            ),
            mlflow_run_id=self.parent_run_id,
            seconds=round(self.seconds, 3),
            pbo=float(np.mean(pbos)) if pbos else None,
            paths=tuple(_finite(s) for s in self.path_sharpes) if self.path_sharpes else None,
        )


def plan_splits(data: ResearchData, config: WalkForwardConfig, embargo: int) -> list[Split]:
    """Return the splits of the configured scheme over the research rows."""
    split = config.split
    if split.scheme == "cpcv":
        return cpcv_splits(
            data.ts,
            data.label_end,
            n_groups=split.groups,
            n_test_groups=split.test_groups,
            embargo_bars=embargo,
        )
    return walk_forward_splits(
        data.ts,
        data.label_end,
        n_folds=split.folds,
        scheme="anchored" if split.scheme == Scheme.ANCHORED else "rolling",
        train_bars=split.train_bars,
        test_bars=split.test_bars,
        embargo_bars=embargo,
    )


def final_rows(data: ResearchData, config: WalkForwardConfig, splits: Sequence[Split]) -> Ints:
    """Return the rows the deployable model trains on: the latest window of the scheme's size."""
    if config.split.scheme == "rolling":
        size = max(int(s.train.shape[0]) for s in splits)
        return np.arange(max(0, data.n - size), data.n, dtype=np.int64)
    return np.arange(data.n, dtype=np.int64)


def _shares(total: int, workers: int) -> list[int]:
    base, extra = divmod(total, workers)
    return [base + (1 if i < extra else 0) for i in range(workers) if base or i < extra]


def _best(outcomes: list[TuneOutcome], minimize: bool) -> dict[str, Any]:
    scored = [o for o in outcomes if o.best_params]
    if not scored:
        return {}
    key = (lambda o: o.best_value) if minimize else (lambda o: -o.best_value)
    return dict(min(scored, key=key).best_params)


def run_walk_forward(
    data: ResearchData,
    config: WalkForwardConfig,
    trade: TradeContext,
    *,
    embargo: int,
    tracker: RunTracker | None = None,
    parent_id: str | None = None,
    storage: StorageFactory | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    job_id: str | None = None,
    final_model: bool = True,
) -> WalkForwardResult:
    """Run the walk-forward (or CPCV) job and return its out-of-sample result.

    Parameters
    ----------
    data
        The research rows (:func:`~pipelines.evaluate.dataset.research_data`).
    config
        Learner, tuning, splits, rule, costs and statistics.
    trade
        How probabilities become after-cost returns.
    embargo
        Rows kept out of training after each test window.
    tracker, parent_id
        Where fold runs are recorded, as children of ``parent_id``.
    storage
        Makes the Optuna storage the windows' studies live in (None: in memory, which needs
        one worker per study).
    executor
        Runs the windows' tasks; None runs them here, one after the other.
    progress
        Called with (stage, done, total) as tasks finish.
    job_id
        Prefix of the study names (default: a new random id).
    final_model
        Also tune and fit the deployable model on the latest window.

    Raises
    ------
    UsageError
        If the splits cannot be made from the rows, or shared tuning is asked without storage.
    """
    started = time.perf_counter()
    tracker = tracker or NullTracker()
    workers = config.tuning.workers_per_study
    if workers > 1 and storage is None:
        raise UsageError("several workers per study need a shared Optuna storage: set one")
    splits = plan_splits(data, config, embargo)
    job_id = job_id or new_run_id("walkforward")
    jobs = [
        WindowJob(
            s.fold, s.train, s.test, s.test_groups, data, config, trade, storage,
            f"{job_id}-fold{s.fold}", embargo,
        )
        for s in splits
    ]  # fmt: skip
    if final_model:
        jobs.append(
            WindowJob(
                FINAL, final_rows(data, config, splits), np.zeros(0, dtype=np.int64), (),
                data, config, trade, storage, f"{job_id}-final", embargo,
            )
        )  # fmt: skip
    if storage is not None and config.tuning.trials:
        # Create the schema and the studies here, once, before workers race to do it.
        shared = storage()
        for job in jobs:
            create_study(job.study_name, config, job.seed, lambda: shared)
    runner = executor or InlineExecutor()
    tunes, fits = _run_jobs(jobs, config, runner, progress)
    return _assemble(
        data, config, trade, splits, jobs, tunes, fits, tracker, parent_id,
        time.perf_counter() - started,
    )  # fmt: skip


def _run_jobs(
    jobs: list[WindowJob],
    config: WalkForwardConfig,
    runner: Executor,
    progress: Progress | None,
) -> tuple[dict[int, list[TuneOutcome]], dict[int, FitOutcome]]:
    minimize = config.tuning.objective == "logloss"
    shares = _shares(config.tuning.trials, config.tuning.workers_per_study)
    pending: dict[Future[Any], tuple[str, WindowJob]] = {}
    waiting: dict[int, int] = {}
    tunes: dict[int, list[TuneOutcome]] = {job.fold: [] for job in jobs}
    fits: dict[int, FitOutcome] = {}
    total = len(jobs) * (len(shares) + 1)
    done = 0
    for job in jobs:
        waiting[job.fold] = len(shares)
        for worker, share in enumerate(shares):
            pending[runner.submit(tune_task, job, share, worker)] = ("tune", job)
        if not shares:
            pending[runner.submit(fit_task, job, {})] = ("fit", job)
    if progress is not None:
        progress("windows", 0, total)
    while pending:
        finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in finished:
            stage, job = pending.pop(future)
            result = future.result()
            done += 1
            if stage == "tune":
                tunes[job.fold].append(result)
                waiting[job.fold] -= 1
                if waiting[job.fold] == 0:
                    params = _best(tunes[job.fold], minimize)
                    pending[runner.submit(fit_task, job, params)] = ("fit", job)
            else:
                fits[job.fold] = result
            if progress is not None:
                progress("windows", done, total)
    return tunes, fits


def _fold_pbo(outcomes: list[TuneOutcome], n_splits: int) -> float | None:
    series = [r for o in outcomes for r in o.trial_returns.values()]
    if len(series) < 2:
        return None
    length = min(r.shape[0] for r in series)
    if length < 2 * n_splits * 5:
        return None
    matrix = np.column_stack([r[:length] for r in series])
    return float(stats.probability_of_backtest_overfitting(matrix, n_splits=n_splits).pbo)


def _oos_walk_forward(
    data: ResearchData, splits: Sequence[Split], fits: Mapping[int, FitOutcome],
    trade: TradeContext,
) -> tuple[Ints, Floats, dict[str, Floats]]:  # fmt: skip
    rows = np.concatenate([s.test for s in splits])
    proba = np.concatenate([fits[s.fold].proba for s in splits])
    if rows.shape[0] > 1 and np.any(np.diff(rows) != 1):
        raise AssertionError("walk-forward test windows are not one contiguous run")
    names = list(fits[splits[0].fold].candidates)
    candidates = {n: np.concatenate([fits[s.fold].candidates[n] for s in splits]) for n in names}
    return rows, proba, candidates


def _cpcv_path_probas(
    data: ResearchData, config: WalkForwardConfig, splits: Sequence[Split],
    fits: Mapping[int, FitOutcome],
) -> tuple[list[Floats], dict[str, list[Floats]]]:  # fmt: skip
    bounds = group_bounds(data.n, config.split.groups)
    paths = cpcv_paths(config.split.groups, config.split.test_groups)
    by_fold = {s.fold: s for s in splits}
    names = list(fits[splits[0].fold].candidates)
    out: list[Floats] = []
    cands: dict[str, list[Floats]] = {n: [] for n in names}
    for path in paths:
        proba = np.full(data.n, np.nan)
        parts = {n: np.full(data.n, np.nan) for n in names}
        for group, split_index in path:
            split = by_fold[split_index]
            start, stop = bounds[group]
            where = np.searchsorted(split.test, np.arange(start, stop))
            proba[start:stop] = fits[split.fold].proba[where]
            for n in names:
                parts[n][start:stop] = fits[split.fold].candidates[n][where]
        out.append(proba)
        for n in names:
            cands[n].append(parts[n])
    return out, cands


def _assemble(
    data: ResearchData,
    config: WalkForwardConfig,
    trade: TradeContext,
    splits: Sequence[Split],
    jobs: Sequence[WindowJob],
    tunes: Mapping[int, list[TuneOutcome]],
    fits: Mapping[int, FitOutcome],
    tracker: RunTracker,
    parent_id: str | None,
    seconds: float,
) -> WalkForwardResult:
    per_year = trade.bars_per_year
    gross_trade = trade.without_costs()
    path_sharpes: list[float] = []
    if config.split.scheme == "cpcv":
        rows = np.arange(data.n, dtype=np.int64)
        probas, cand_paths = _cpcv_path_probas(data, config, splits, fits)
        runs = [strategy_returns(p, rows, data, trade) for p in probas]
        path_returns = np.column_stack([r for r, _ in runs])
        returns = path_returns.mean(axis=1)
        path_sharpes = [
            per_bar_sharpe(path_returns[:, i]) * math.sqrt(per_year) for i in range(len(runs))
        ]
        gross = np.column_stack(
            [strategy_returns(p, rows, data, gross_trade)[0] for p in probas]
        ).mean(axis=1)
        candidate_returns = {
            n: np.column_stack([strategy_returns(p, rows, data, trade)[0] for p in ps]).mean(axis=1)
            for n, ps in cand_paths.items()
        }
        position = np.zeros(data.n)
    else:
        rows, proba, cands = _oos_walk_forward(data, splits, fits, trade)
        returns, _ = strategy_returns(proba, rows, data, trade)
        gross, _ = strategy_returns(proba, rows, data, gross_trade)
        candidate_returns = {n: strategy_returns(p, rows, data, trade)[0] for n, p in cands.items()}
        from pipelines.train.tuning import rule_targets

        position = rule_targets(proba, trade.rule)
    cash = trade.backtest.cash
    equity = cash * np.cumprod(1.0 + returns)
    ts = data.ts[rows]
    trades = _trades_for(data, rows, fits, splits, trade, config)
    metrics = performance(
        equity, ts=ts, bars_per_year=per_year, initial_cash=cash, trades=trades, position=position
    )
    all_sharpes = [
        s for f in tunes for o in tunes[f] for s in o.trial_sharpes.values() if f != FINAL
    ]
    finite = np.array([s for s in all_sharpes if math.isfinite(s)])
    n_trials = sum(o.n_trials for f in tunes if f != FINAL for o in tunes[f])
    variance = float(np.var(finite, ddof=1)) if finite.shape[0] > 1 else 0.0
    close = data.bars["close"].to_numpy()[rows]
    buy_hold = np.r_[0.0, close[1:] / close[:-1] - 1.0]
    statistics = oos_statistics(
        returns,
        gross,
        metrics,
        per_year=per_year,
        n_trials=max(n_trials, 1),
        sharpe_variance=variance,
        buy_and_hold=buy_hold,
        candidates=candidate_returns,
        config=config,
    )
    folds = _fold_summaries(data, splits, jobs, tunes, fits, trade, config)
    result = WalkForwardResult(
        config=config,
        scheme=config.split.scheme,
        folds=folds,
        oos_ts=ts,
        oos_equity=equity,
        oos_returns=returns,
        gross_returns=gross,
        oos_position=position,
        metrics=metrics,
        statistics=statistics,
        importance=_importance(data, fits),
        model=_final_model(fits),
        n_trials=n_trials,
        trial_sharpe_variance=variance,
        parent_run_id=parent_id,
        seconds=seconds,
        path_sharpes=path_sharpes,
    )
    if parent_id is not None:
        result.child_run_ids = _track_folds(tracker, parent_id, result, per_year)
    return result


def _trades_for(
    data: ResearchData, rows: Ints, fits: Mapping[int, FitOutcome], splits: Sequence[Split],
    trade: TradeContext, config: WalkForwardConfig,
) -> Any:  # fmt: skip
    if config.split.scheme == "cpcv":
        return None
    proba = np.concatenate([fits[s.fold].proba for s in splits])
    return trade_rows(proba, rows, data, trade).trades


def _final_model(fits: Mapping[int, FitOutcome]) -> TrainedModel | None:
    return fits[FINAL].model if FINAL in fits else None


def _importance(data: ResearchData, fits: Mapping[int, FitOutcome]) -> dict[str, float]:
    arrays = [f.importance for k, f in fits.items() if k != FINAL and f.importance is not None]
    if not arrays:
        return {}
    mean = np.mean(np.vstack(arrays), axis=0)
    order = np.argsort(-mean)
    return {data.feature_names[i]: float(mean[i]) for i in order}


def _fold_summaries(
    data: ResearchData,
    splits: Sequence[Split],
    jobs: Sequence[WindowJob],
    tunes: Mapping[int, list[TuneOutcome]],
    fits: Mapping[int, FitOutcome],
    trade: TradeContext,
    config: WalkForwardConfig,
) -> list[FoldSummary]:
    out: list[FoldSummary] = []
    for split in splits:
        fit = fits[split.fold]
        returns, equity = _fold_returns(data, split, fit, trade, config)
        assert fit.report is not None
        out.append(
            FoldSummary(
                fold=split.fold,
                test_groups=split.test_groups,
                train_rows=int(split.train.shape[0]),
                test_rows=int(split.test.shape[0]),
                train_start=_when(data.ts[split.train[0]]),
                train_end=_when(data.ts[split.train[-1]]),
                test_start=_when(data.ts[split.test[0]]),
                test_end=_when(data.ts[split.test[-1]]),
                params=fit.params,
                n_trials=sum(o.n_trials for o in tunes[split.fold]),
                sharpe=per_bar_sharpe(returns),
                total_return=float(equity[-1] / trade.backtest.cash - 1.0)
                if equity.shape[0]
                else math.nan,
                classification=fit.report,
                pbo=_fold_pbo(tunes[split.fold], config.stats.pbo_splits),
                seconds=fit.seconds + sum(o.seconds for o in tunes[split.fold]),
            )
        )
    return out


def _fold_returns(
    data: ResearchData, split: Split, fit: FitOutcome, trade: TradeContext,
    config: WalkForwardConfig,
) -> tuple[Floats, Floats]:  # fmt: skip
    # Each test block traded on its own (contiguous runs of the split's test rows).
    breaks = np.flatnonzero(np.diff(split.test) != 1) + 1
    parts = np.split(np.arange(split.test.shape[0]), breaks)
    returns = [
        strategy_returns(fit.proba[p], split.test[p], data, trade)[0] for p in parts if p.shape[0]
    ]
    r = np.concatenate(returns) if returns else np.zeros(0)
    return r, np.asarray(trade.backtest.cash * np.cumprod(1.0 + r), dtype=np.float64)


def oos_statistics(
    returns: Floats,
    gross: Floats,
    metrics: Metrics,
    *,
    per_year: float,
    n_trials: int,
    sharpe_variance: float,
    buy_and_hold: Floats,
    candidates: Mapping[str, Floats],
    config: WalkForwardConfig,
) -> dict[str, Any]:
    """Return the out-of-sample statistics of after-cost ``returns`` (and ``gross`` ones).

    ``sharpe`` is annualized as in the backtest metrics; ``sharpe_ci`` is the stationary
    bootstrap interval at the configured level; ``psr`` and ``dsr`` use the per-bar Sharpe
    with its skew and kurtosis, the DSR with ``n_trials`` and ``sharpe_variance``.
    """
    level = config.stats.level
    seed = config.seed
    intervals = stats.bootstrap_intervals(
        returns, bars_per_year=per_year, level=level, n_boot=config.stats.n_boot, seed=seed
    )
    gross_interval = stats.bootstrap_intervals(
        gross, bars_per_year=per_year, level=level, n_boot=config.stats.n_boot, seed=seed
    )["sharpe"]
    sr = per_bar_sharpe(returns)
    skew, kurt = _moments(returns)
    t_stat, p_value = stats.newey_west_ttest(returns)
    # SPA's variance estimate costs O(T²): it runs on sums over runs of consecutive bars
    # (at most SPA_POINTS of them), which test the same mean difference.
    step = max(1, math.ceil(returns.shape[0] / SPA_POINTS))
    r, hold = _summed(returns, step), _summed(buy_and_hold, step)
    flat = np.zeros_like(r)
    spa_flat = stats.spa_test(flat, r, n_boot=config.stats.n_boot, seed=seed)
    spa_hold = stats.spa_test(hold, r, n_boot=config.stats.n_boot, seed=seed)
    names = ["model", *candidates]
    matrix = np.column_stack([r, *(_summed(c, step) for c in candidates.values())])
    spa_models = stats.spa_test(flat, matrix, n_boot=config.stats.n_boot, seed=seed)
    return {
        **{k: v for k, v in metrics.to_dict().items() if k not in ("start", "end")},
        "start": metrics.to_dict()["start"],
        "end": metrics.to_dict()["end"],
        "sharpe": _finite(metrics.sharpe),
        "sharpe_ci": [_finite(intervals["sharpe"].low), _finite(intervals["sharpe"].high)],
        "ci_level": level,
        "mean_return_ci": [_finite(intervals["mean"].low), _finite(intervals["mean"].high)],
        "max_drawdown_ci": [
            _finite(intervals["max_drawdown"].low),
            _finite(intervals["max_drawdown"].high),
        ],
        "psr": _finite(stats.psr(returns)),
        "dsr": _finite(stats.deflated_sharpe_ratio(returns, n_trials, sharpe_variance)),
        "sharpe_per_bar": _finite(sr),
        "skew": _finite(skew),
        "kurtosis": _finite(kurt),
        "newey_west_t": _finite(t_stat),
        "newey_west_p": _finite(p_value),
        "min_track_record_bars": _finite(stats.min_track_record_length(sr, skew, kurt))
        if math.isfinite(sr)
        else None,
        "spa": {
            "vs_flat_p": _finite(spa_flat.pvalue_consistent),
            "vs_buy_and_hold_p": _finite(spa_hold.pvalue_consistent),
            "models_vs_flat_p": _finite(spa_models.pvalue_consistent),
            "models": names,
            "bars_per_point": step,
        },
        "candidates": {
            n: _finite(per_bar_sharpe(r) * math.sqrt(per_year)) for n, r in candidates.items()
        },
        "gross": {
            "sharpe": _finite(per_bar_sharpe(gross) * math.sqrt(per_year)),
            "sharpe_ci": [_finite(gross_interval.low), _finite(gross_interval.high)],
            "total_return": _finite(float(np.prod(1.0 + gross) - 1.0)),
        },
        "n_trials": n_trials,
    }


def _summed(values: Floats, step: int) -> Floats:
    usable = values.shape[0] // step * step
    return values[:usable].reshape(-1, step).sum(axis=1) if step > 1 else values


def _moments(returns: Floats) -> tuple[float, float]:
    if returns.shape[0] < 3 or float(np.std(returns)) == 0.0:
        return math.nan, math.nan
    from scipy import stats as sps

    return float(sps.skew(returns, bias=True)), float(
        sps.kurtosis(returns, fisher=False, bias=True)
    )


def _track_folds(
    tracker: RunTracker, parent_id: str, result: WalkForwardResult, per_year: float
) -> list[str]:
    ids: list[str] = []
    for fold in result.folds:
        run = tracker.start_run(
            f"fold {fold.fold}", parent_id=parent_id, tags={"solodesk.kind": "fold"}
        )
        record = fold.record(per_year).model_dump()
        tracker.log_params(
            run,
            {
                **{f"param.{k}": v for k, v in fold.params.items()},
                "train_start": record["train_start"],
                "train_end": record["train_end"],
                "test_start": record["test_start"],
                "test_end": record["test_end"],
                "test_groups": ",".join(str(g) for g in fold.test_groups),
                "n_trials": fold.n_trials,
                "threads": result.config.threads_for(fold.train_rows),
            },
        )
        tracker.log_metrics(
            run,
            {
                k: float(v)
                for k, v in record.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "fold"
            },
        )
        tracker.end_run(run)
        ids.append(run)
    return ids

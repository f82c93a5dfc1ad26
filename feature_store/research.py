"""Research jobs on stored series: walk-forward evaluation, training, the leakage audit.

The pure work lives in :mod:`pipelines.evaluate` and :mod:`pipelines.train`; this module reads
the series and the feature set, hands the pipelines their adapters (the MLflow tracker, the
Optuna storage, a process pool or a Dask cluster's executor), stores what they return under
``SOLODESK_HOME/research`` and registers the deployable model as the ``challenger``.

Layout::

    research/run=<id>/run.json       what ran, the summary (the --json line) and the audit
    research/run=<id>/oos.parquet    ts, equity, return, gross return and position per bar
    research/latest/walkforward.json the latest summary's headline figures (DVC metrics)
    research/latest/equity.csv       the latest out-of-sample equity (DVC plots)
    reports/research/<id>.html       the report page
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from core.clocks import Clock
from core.errors import SolodeskError, UsageError
from core.ports import NullTracker, RunTracker
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import Side
from feature_store.backtest_runs import SeriesData, git_commit, load_series
from feature_store.backtests import BacktestStore, StoredRun, new_run_id
from feature_store.features import series_clock
from feature_store.store import write_atomic
from pipelines.evaluate.audit import (
    AuditResult,
    block_shuffled_labels,
    leakage_audit,
    random_walk_bars,
)
from pipelines.evaluate.dataset import ExtraFeatures, FeatureRecipe, ResearchData, research_data
from pipelines.evaluate.walkforward import WalkForwardResult, run_walk_forward
from pipelines.features.sets import FeatureSetConfig, SeriesFrame, parse_feature_sets
from pipelines.labels.config import HorizonLabelConfig
from pipelines.train.config import WalkForwardConfig
from pipelines.train.tuning import TradeContext

Progress = Callable[[str, int, int], None]
EXPERIMENT = "walkforward"


class AuditFailedError(SolodeskError):
    """The leakage audit found an edge where none can exist; ``outcome`` is the stored run."""

    def __init__(self, message: str, outcome: WalkForwardOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


def load_feature_set(params_path: Path, name: str) -> FeatureSetConfig:
    """Return feature set ``name`` declared in the ``features`` section of ``params_path``.

    Raises
    ------
    UsageError
        If the file is missing or unreadable, or does not declare the set.
    """
    try:
        params = yaml.safe_load(params_path.read_text()) or {}
    except FileNotFoundError:
        msg = f"{params_path}: not found: give the parameters file with --params"
        raise UsageError(msg) from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{params_path}: not valid YAML ({exc})") from None
    if not isinstance(params, dict) or "features" not in params:
        raise UsageError(f"{params_path}: no `features` section declaring feature sets")
    sets = parse_feature_sets(params["features"], str(params_path))
    if name not in sets:
        msg = f"{params_path}: no feature set {name!r} (declared: {', '.join(sorted(sets))})"
        raise UsageError(msg)
    return sets[name]


@dataclass(frozen=True)
class ResearchInputs:
    """A stored series, its feature recipe and the research rows built from them."""

    series: SeriesData
    frame: SeriesFrame
    recipe: FeatureRecipe
    feature_set: str
    feature_set_version: str
    data: ResearchData
    embargo: int

    @property
    def label(self) -> str:
        """Return ``SYMBOL TF side``."""
        return self.series.label


def _label_span(config: FeatureSetConfig) -> int:
    label = config.label
    if label is None:
        return 0
    return label.horizon if isinstance(label, HorizonLabelConfig) else label.max_holding


def research_inputs(
    settings: Settings,
    *,
    symbol: str,
    timeframe: Timeframe,
    feature_set: str,
    params_path: Path,
    side: Side | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    extra: ExtraFeatures | None = None,
) -> ResearchInputs:
    """Read a stored series and compute the research rows of ``feature_set`` on it.

    Context timeframes are resampled from the series' own bars on the clock their stored
    series use (broker day for FX H4 and longer), so the leakage audit's random walk gets its
    context the same way.
    """
    config = load_feature_set(params_path, feature_set)
    resolved = config.resolve().for_timeframe(timeframe)
    series = load_series(settings, symbol, timeframe, side, start, end)
    clock = series_clock(series.info, settings)
    frame = SeriesFrame(
        series.bars,
        timeframe,
        clock=clock,
        has_spread=series.info.has_spread,
        volume_kind=series.info.volume_kind,
    )
    clocks: dict[Timeframe, Clock] = {
        ctx.timeframe: _context_clock(settings, series, ctx.timeframe) for ctx in resolved.context
    }
    cross = _cross_frames(settings, resolved, series, start, end)
    recipe = FeatureRecipe(resolved, clocks, cross, extra)
    data = research_data(recipe.table(frame), series.bars)
    return ResearchInputs(
        series=series,
        frame=frame,
        recipe=recipe,
        feature_set=feature_set,
        feature_set_version=resolved.definition_hash(),
        data=data,
        embargo=_label_span(config),
    )


def _context_clock(settings: Settings, series: SeriesData, timeframe: Timeframe) -> Clock:
    from core.clocks import BROKER, UTC

    long_bars = timeframe in (Timeframe.H4, Timeframe.D1, Timeframe.W1, Timeframe.MN1)
    return BROKER if long_bars and series.instrument.calendar == "fx" else UTC


def _cross_frames(
    settings: Settings, resolved: Any, series: SeriesData, start: datetime | None,
    end: datetime | None,
) -> dict[str, SeriesFrame]:  # fmt: skip
    frames: dict[str, SeriesFrame] = {}
    for cross in resolved.cross_assets:
        other = load_series(settings, cross.symbol, series.info.key.timeframe, None, start, end)
        frames[cross.symbol] = SeriesFrame(
            other.bars,
            other.info.key.timeframe,
            clock=series_clock(other.info, settings),
            has_spread=other.info.has_spread,
            volume_kind=other.info.volume_kind,
        )
    return frames


def trade_context(
    inputs: ResearchInputs, config: WalkForwardConfig, data: ResearchData
) -> TradeContext:
    """Return how ``data``'s rows are traded: instrument, costs, rule and money conversion."""
    rates = inputs.series.to_account
    if not isinstance(rates, float):
        series_ts = inputs.series.bars["ts"].dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()
        at = np.searchsorted(series_ts, data.ts)
        rates = np.asarray(rates, dtype=np.float64)[at]
    return TradeContext(
        instrument=inputs.series.instrument,
        backtest=config.backtest,
        rule=config.rule,
        side=inputs.series.info.key.side.value,
        bars_per_year=inputs.series.bars_per_year,
        to_account=rates,
    )


@contextmanager
def research_executor(settings: Settings, jobs: int) -> Iterator[Executor | None]:
    """Yield where the windows run: a Dask cluster when configured, else local processes.

    One job (and no cluster) runs everything in this process.
    """
    if settings.dask_scheduler:
        from distributed import Client

        client = Client(settings.dask_scheduler, timeout="20s")
        try:
            # Not pure: two workers tuning one study are identical calls that must both run.
            yield client.get_executor(pure=False)
        finally:
            client.close()
        return
    if jobs <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def study_storage_factory(settings: Settings) -> Callable[[], Any]:
    """Return a picklable factory of the Optuna storage the settings name."""
    from feature_store.optuna_storage import storage_url, study_storage

    return partial(study_storage, storage_url(settings))


@dataclass(frozen=True)
class WalkForwardOutcome:
    """A finished, stored walk-forward job."""

    run: StoredRun
    result: WalkForwardResult
    summary: dict[str, Any]
    audit: AuditResult | None
    model_version: int | None
    report: Path
    seconds: float


def _scores(summary: Mapping[str, Any]) -> dict[str, float]:
    oos = summary["oos"]
    values = {
        "dsr": oos.get("dsr"),
        "psr": oos.get("psr"),
        "sharpe": oos.get("sharpe"),
        "sharpe_ci_low": oos["sharpe_ci"][0],
        "sharpe_ci_high": oos["sharpe_ci"][1],
        "total_return": oos.get("total_return"),
        "max_drawdown": oos.get("max_drawdown"),
    }
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def registered_name(symbol: str, timeframe: Timeframe, feature_set: str) -> str:
    """Return the registry name of a series' models, e.g. ``EURUSD-H1-default``."""
    return f"{symbol}-{timeframe.value}-{feature_set}"


def _oos_table(result: WalkForwardResult) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": pl.Series(result.oos_ts.astype("datetime64[ns]")).dt.replace_time_zone("UTC"),
            "equity": result.oos_equity,
            "return": result.oos_returns,
            "gross_return": result.gross_returns,
            "position": result.oos_position,
        }
    )


def _write_latest(settings: Settings, summary: Mapping[str, Any], table: pl.DataFrame) -> None:
    latest = settings.home / "research" / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    oos = summary["oos"]
    headline = {
        "sharpe": oos.get("sharpe"),
        "sharpe_ci_low": oos["sharpe_ci"][0],
        "sharpe_ci_high": oos["sharpe_ci"][1],
        "psr": oos.get("psr"),
        "dsr": oos.get("dsr"),
        "total_return": oos.get("total_return"),
        "max_drawdown": oos.get("max_drawdown"),
        "hit_rate": oos.get("hit_rate"),
        "n_trades": oos.get("n_trades"),
        "pbo": summary.get("pbo"),
        "trials": summary["trials"]["total"],
    }
    write_atomic(latest / "walkforward.json", json.dumps(headline, indent=2).encode())
    step = max(1, table.height // 5000)
    # DVC's plot templates read x as a number: the time is also given as a decimal year.
    year = pl.col("ts").dt.year() + (pl.col("ts").dt.ordinal_day() - 1) / 365.25
    thinned = table.gather_every(step).select(
        pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ"), year.round(5).alias("year"), "equity"
    )
    buffer = thinned.write_csv()
    write_atomic(latest / "equity.csv", buffer.encode())


def run_stored_walkforward(
    settings: Settings,
    inputs: ResearchInputs,
    config: WalkForwardConfig,
    *,
    audit: bool = False,
    register: bool = True,
    progress: Progress | None = None,
    tracker: RunTracker | None = None,
) -> WalkForwardOutcome:
    """Run a walk-forward job on prepared inputs, track it, store it and register its model.

    Raises
    ------
    AuditFailedError
        With ``audit``, when either control shows an edge (the run is stored, not registered).
    """
    from pipelines.evaluate.report import walkforward_report_html

    started = time.perf_counter()
    created = datetime.now(UTC)
    run_id = new_run_id("walkforward", created)
    key = inputs.series.info.key
    if tracker is None:
        from feature_store.tracking import MlflowTracker

        tracker = MlflowTracker.for_settings(settings, EXPERIMENT)
    tags = {
        "solodesk.kind": "walkforward",
        "solodesk.run": run_id,
        "solodesk.symbol": key.symbol,
        "solodesk.timeframe": key.timeframe.value,
        "solodesk.side": key.side.value,
        "solodesk.feature_set": inputs.feature_set,
        "solodesk.feature_set_version": inputs.feature_set_version,
        "solodesk.data_version": inputs.series.info.version,
        "solodesk.model": config.model,
        "solodesk.scheme": config.split.scheme,
    }
    commit = git_commit()
    if commit:
        tags["solodesk.git_commit"] = commit
    parent = tracker.start_run(
        f"{key.symbol} {key.timeframe.value} {inputs.feature_set} {config.model}", tags=tags
    )
    try:
        tracker.log_params(parent, _flat_params(config, inputs))
        storage = study_storage_factory(settings)
        data = inputs.data
        with research_executor(settings, config.jobs) as executor:
            result = run_walk_forward(
                data, config, trade_context(inputs, config, data), embargo=inputs.embargo,
                tracker=tracker, parent_id=parent, storage=storage, executor=executor,
                progress=progress, job_id=run_id,
            )  # fmt: skip
            audit_result = (
                _audit(inputs, config, storage, executor, progress, run_id) if audit else None
            )
        summary = {
            "run_id": run_id,
            "symbol": key.symbol,
            "timeframe": key.timeframe.value,
            "side": key.side.value,
            "feature_set": inputs.feature_set,
            **result.summary(),
        }
        if audit_result is not None:
            summary["audit"] = audit_result.as_dict()
        _log_parent(tracker, parent, summary, audit_result)
        table = _oos_table(result)
        html = walkforward_report_html(
            summary,
            ts=result.oos_ts,
            equity=result.oos_equity,
            gross_returns=result.gross_returns,
            initial_cash=config.backtest.cash,
            importance=result.importance,
            title=f"Walk-forward: {config.model} on {inputs.label}",
            subtitle=f"feature set {inputs.feature_set} · {config.split.scheme} · run {run_id}",
            audit=summary.get("audit"),
        )
        _log_artifacts(tracker, parent, summary, html, result)
        version = None
        audit_ok = audit_result is None or audit_result.passed
        if register and audit_ok:
            version = _register(settings, inputs, parent, result, summary, tags)
            summary["model_version"] = version
        summary["seconds"] = round(time.perf_counter() - started, 3)
        store = BacktestStore(settings.home / "research", settings.reports_dir, "research")
        record = {
            "kind": "walkforward",
            "created": created.isoformat(),
            "config": config.model_dump(mode="json"),
            "series_version": inputs.series.info.version,
            "feature_set_version": inputs.feature_set_version,
            "git_commit": commit,
            "summary": summary,
        }
        run = store.write(run_id, record, {"oos": table}, html)
        summary["report"] = str(run.record.get("report", store.report_path(run_id)))
        if audit_ok:  # the latest figures (DVC metrics) are never those of a leaky run
            _write_latest(settings, summary, table)
        tracker.end_run(parent)
    except BaseException:
        tracker.end_run(parent, "FAILED")
        raise
    outcome = WalkForwardOutcome(
        run, result, summary, audit_result, version, store.report_path(run_id),
        time.perf_counter() - started,
    )  # fmt: skip
    if audit_result is not None and not audit_result.passed:
        failed = [c for c in audit_result.controls if not c.passed]
        detail = "; ".join(f"{c.name}: {c.reason}" for c in failed)
        raise AuditFailedError(
            f"leakage audit FAILED ({detail}): the pipeline finds an edge where none can exist; "
            f"the model was not registered (report {outcome.report})",
            outcome,
        )
    return outcome


def _flat_params(config: WalkForwardConfig, inputs: ResearchInputs) -> dict[str, object]:
    flat: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix.rstrip(".")] = value

    walk("", config.model_dump(mode="json"))
    flat["embargo_bars"] = inputs.embargo
    flat["rows"] = inputs.data.n
    flat["features"] = len(inputs.data.feature_names)
    return flat


def _log_parent(
    tracker: RunTracker, parent: str, summary: Mapping[str, Any], audit: AuditResult | None
) -> None:
    oos = summary["oos"]
    metrics: dict[str, float] = {}
    for name, value in oos.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[f"oos_{name}"] = float(value)
    metrics["oos_sharpe_ci_low"] = _num(oos["sharpe_ci"][0])
    metrics["oos_sharpe_ci_high"] = _num(oos["sharpe_ci"][1])
    metrics["oos_gross_sharpe"] = _num(oos["gross"]["sharpe"])
    metrics["trials_total"] = float(summary["trials"]["total"])
    if summary.get("pbo") is not None:
        metrics["pbo"] = float(summary["pbo"])
    for key, value in oos["spa"].items():
        if isinstance(value, float):
            metrics[f"spa_{key}"] = value
    tracker.log_metrics(parent, metrics)
    if audit is not None:
        tracker.set_tags(parent, {"solodesk.audit": "passed" if audit.passed else "failed"})
        for control in audit.controls:
            tracker.log_metrics(
                parent,
                {
                    f"audit_{control.name}_gross_ci_low": control.gross_ci[0],
                    f"audit_{control.name}_gross_ci_high": control.gross_ci[1],
                    f"audit_{control.name}_net_ci_low": control.net_ci[0],
                },
            )


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _log_artifacts(
    tracker: RunTracker, parent: str, summary: Mapping[str, Any], html: str,
    result: WalkForwardResult,
) -> None:  # fmt: skip
    from pipelines.evaluate.report import equity_figure_html, importance_figure_html

    tracker.log_text(parent, json.dumps(summary, indent=2, default=str), "report/summary.json")
    tracker.log_text(parent, html, "report/report.html")
    tracker.log_text(
        parent,
        equity_figure_html(
            summary,
            ts=result.oos_ts,
            equity=result.oos_equity,
            initial_cash=result.config.backtest.cash,
            gross_returns=result.gross_returns,
        ),
        "plots/equity_drawdown.html",
    )
    tracker.log_text(parent, importance_figure_html(result.importance), "plots/importance.html")
    tracker.log_text(parent, json.dumps(result.importance, indent=2), "feature_importance.json")


def _register(
    settings: Settings, inputs: ResearchInputs, parent: str, result: WalkForwardResult,
    summary: Mapping[str, Any], tags: Mapping[str, str],
) -> int:  # fmt: skip
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    key = inputs.series.info.key
    example = pl.DataFrame(inputs.data.X[-5:], schema=list(inputs.data.feature_names), orient="row")
    registry = ModelRegistry(tracking_uri(settings))
    info = registry.register_challenger(
        run_id=parent,
        name=registered_name(key.symbol, key.timeframe, inputs.feature_set),
        predictor=result.model,
        input_example=example,
        scores=_scores(summary),
        tags={k: v for k, v in tags.items() if k != "solodesk.kind"},
    )
    return int(info.version)


def _audit(
    inputs: ResearchInputs,
    config: WalkForwardConfig,
    storage: Callable[[], Any],
    executor: Executor | None,
    progress: Progress | None,
    run_id: str,
) -> AuditResult:
    seed = config.seed
    shuffled = block_shuffled_labels(inputs.data, block=max(2 * inputs.embargo, 50), seed=seed)
    walk_bars = random_walk_bars(inputs.series.bars, seed=seed)
    walk_frame = SeriesFrame(
        walk_bars,
        inputs.frame.timeframe,
        clock=inputs.frame.clock,
        has_spread=inputs.frame.has_spread,
        volume_kind=inputs.frame.volume_kind,
    )
    walk = research_data(inputs.recipe.table(walk_frame), walk_bars)
    plain = config.model_copy(update={"stats": config.stats.model_copy(update={"candidates": ()})})

    def run(name: str, data: ResearchData) -> tuple[np.ndarray, np.ndarray]:
        outcome = run_walk_forward(
            data, plain, trade_context(inputs, plain, data), embargo=inputs.embargo,
            tracker=NullTracker(), storage=storage, executor=executor,
            progress=(lambda s, d, t: progress(f"audit {name}", d, t)) if progress else None,
            job_id=f"{run_id}-audit-{name}", final_model=False,
        )  # fmt: skip
        return outcome.gross_returns, outcome.oos_returns

    return leakage_audit(
        shuffled, walk, run, bars_per_year=inputs.series.bars_per_year,
        n_boot=config.stats.n_boot, seed=seed,
    )  # fmt: skip


def default_jobs() -> int:
    """Return the number of processes to use by default: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def run_stored_train(
    settings: Settings,
    inputs: ResearchInputs,
    config: WalkForwardConfig,
    *,
    train_bars: int | None = None,
    tracker: RunTracker | None = None,
) -> dict[str, Any]:
    """Tune and fit a model on the latest ``train_bars`` rows (all by default) and log it.

    There is no test window: the figures are the inner purged folds' (the tuning objective).
    The fitted model is logged into the MLflow run; registering a model for promotion takes a
    walk-forward, whose out-of-sample scores the promotion rule compares.
    """
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import MlflowTracker, tracking_uri
    from pipelines.train.tuning import TrainedModel, fit_window, tune_window

    started = time.perf_counter()
    data = inputs.data
    size = data.n if train_bars is None else min(train_bars, data.n)
    rows = np.arange(data.n - size, data.n, dtype=np.int64)
    key = inputs.series.info.key
    tracker = tracker or MlflowTracker.for_settings(settings, "train")
    run_name = new_run_id("train")
    run = tracker.start_run(
        f"{key.symbol} {key.timeframe.value} {inputs.feature_set} {config.model}",
        tags={
            "solodesk.kind": "train",
            "solodesk.symbol": key.symbol,
            "solodesk.timeframe": key.timeframe.value,
            "solodesk.feature_set": inputs.feature_set,
            "solodesk.feature_set_version": inputs.feature_set_version,
            "solodesk.data_version": inputs.series.info.version,
            "solodesk.git_commit": git_commit() or "unknown",
        },
    )
    try:
        tracker.log_params(run, _flat_params(config, inputs))
        trade = trade_context(inputs, config, data)
        tuned = tune_window(
            data, rows, config, trade, study_name=run_name,
            storage=study_storage_factory(settings), n_trials=config.tuning.trials,
            embargo=inputs.embargo, seed=config.seed,
        )  # fmt: skip
        learner = fit_window(
            data, rows, config, tuned.best_params, embargo=inputs.embargo, seed=config.seed
        )
        model = TrainedModel(
            learner, data.feature_names, config.rule, config.model, tuned.best_params
        )
        sharpes = [s for s in tuned.trial_sharpes.values() if math.isfinite(s)]
        metrics = {
            "best_value": tuned.best_value,
            "trials": float(tuned.n_trials),
            "completed_trials": float(len(tuned.trial_returns)),
            "best_trial_sharpe_per_bar": max(sharpes) if sharpes else math.nan,
        }
        tracker.log_metrics(run, metrics)
        tracker.log_params(run, {f"best.{k}": v for k, v in tuned.best_params.items()})
        example = pl.DataFrame(data.X[-5:], schema=list(data.feature_names), orient="row")
        ModelRegistry(tracking_uri(settings)).log_model(
            run_id=run, predictor=model, input_example=example
        )
        tracker.end_run(run)
    except BaseException:
        tracker.end_run(run, "FAILED")
        raise
    outcome = {
        "symbol": key.symbol,
        "timeframe": key.timeframe.value,
        "feature_set": inputs.feature_set,
        "model": config.model,
        "rows": int(rows.shape[0]),
        "first": _iso_ns(int(data.ts[rows[0]])),
        "last": _iso_ns(int(data.ts[rows[-1]])),
        "trials": tuned.n_trials,
        "objective": config.tuning.objective,
        "best_value": tuned.best_value if math.isfinite(tuned.best_value) else None,
        "params": tuned.best_params,
        "mlflow_run_id": run,
        "seconds": round(time.perf_counter() - started, 3),
    }
    latest = settings.home / "research" / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    headline = {k: outcome[k] for k in ("rows", "trials", "best_value")}
    write_atomic(latest / "train.json", json.dumps(headline, indent=2).encode())
    return outcome


def _iso_ns(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")

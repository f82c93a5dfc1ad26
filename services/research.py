"""Research jobs on stored series: walk-forward evaluation with the leakage audit, training.

The pure work lives in :mod:`pipelines.evaluate` and :mod:`pipelines.train`; the adapters
(the MLflow tracker and registry, the Optuna storage, a process pool or a Dask cluster's
executor) are chosen here and handed to them. The walk-forward job's steps:

- :func:`load_research_inputs`: the series, its feature recipe and research rows;
- :func:`start_tracking`: the parent run in the tracker;
- :func:`compute_walkforward` and :func:`compute_audit` (pure, in the executor);
- :func:`summarize` and :func:`compute_report`: the typed summary and the report page;
- :func:`record_tracking`: metrics and artifacts in the tracker;
- :func:`compute_drift_reference`: what the live model's drift is measured against (the
  deciles of its training rows, the P&L band of its out-of-sample returns);
- :func:`register_challenger`: the deployable model in the registry, alias ``challenger``,
  with its drift reference as the run's artifact ``drift/reference.json`` (version tag
  ``solodesk.drift``);
- :func:`record_walkforward`: the run under ``SOLODESK_HOME/research``;
- :func:`record_latest`: the headline figures and equity DVC reads.

Layout::

    research/run=<id>/run.json       what ran, the summary (the --json line) and the audit
    research/run=<id>/oos.parquet    ts, equity, return, gross return and position per bar
    research/latest/walkforward.json the latest summary's headline figures (DVC metrics)
    research/latest/train.json       the latest training's headline figures (DVC metrics)
    research/latest/equity.csv       the latest out-of-sample equity (DVC plots)
    reports/research/<id>.html       the report page
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from core.clocks import Clock
from core.errors import SolodeskError
from core.ids import new_run_id, registered_model_name
from core.ports import NullTracker, RunTracker
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import iso_z, iso_z_expr, iso_z_ns, utc_now
from core.types import Side
from feature_store.backtests import BacktestStore, StoredRun
from feature_store.series import SeriesData, context_clock, load_series, series_frame
from feature_store.store import BarStore, write_atomic
from pipelines.evaluate.audit import (
    AuditResult,
    block_shuffled_labels,
    leakage_audit,
    random_walk_bars,
)
from pipelines.evaluate.dataset import ExtraFeatures, FeatureRecipe, ResearchData, research_data
from pipelines.evaluate.drift import DRIFT_ARTIFACT, DRIFT_TAG, DriftReference, drift_reference
from pipelines.evaluate.summary import AuditRecord, WalkForwardFigures
from pipelines.evaluate.walkforward import (
    WalkForwardResult,
    final_rows,
    plan_splits,
    run_walk_forward,
)
from pipelines.features.sets import FeatureSetConfig, SeriesFrame
from pipelines.labels.config import HorizonLabelConfig
from pipelines.train.config import WalkForwardConfig
from pipelines.train.tuning import TradeContext, TrainedModel, fit_window, tune_window
from services.common import Progress, git_commit
from services.features import load_feature_set

EXPERIMENT = "walkforward"
TRAIN_EXPERIMENT = "train"

#: The walk-forward's feature importance, logged to its MLflow run as this artifact.
IMPORTANCE_ARTIFACT = "feature_importance.json"


class AuditFailedError(SolodeskError):
    """The leakage audit found an edge where none can exist; ``outcome`` is the stored run."""

    def __init__(self, message: str, outcome: WalkForwardOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


# -- results ---------------------------------------------------------------------------------


class _WalkForwardHead(BaseModel):
    run_id: str
    symbol: str
    timeframe: str
    side: str
    feature_set: str


class WalkForwardSummary(WalkForwardFigures, _WalkForwardHead):
    """A stored walk-forward job: the series, the engine's figures, the audit, the registered
    version and the report. Its dump is the ``--json`` line of ``solodesk walkforward``.

    ``seconds`` is the whole job's time; ``model_version`` is None when nothing was registered
    (``--no-register``, or a failed audit); ``audit`` is None without ``--audit``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    audit: AuditRecord | None = None
    model_version: int | None = None
    report: str | None = None

    def dvc_headline(self) -> dict[str, Any]:
        """Return the headline figures DVC tracks as metrics (``research/latest/walkforward.json``)."""
        oos = self.oos
        return {
            "sharpe": oos.sharpe,
            "sharpe_ci_low": oos.sharpe_ci[0],
            "sharpe_ci_high": oos.sharpe_ci[1],
            "psr": oos.psr,
            "dsr": oos.dsr,
            "total_return": oos.total_return,
            "max_drawdown": oos.max_drawdown,
            "hit_rate": oos.hit_rate,
            "n_trades": oos.n_trades,
            "pbo": self.pbo,
            "trials": self.trials.total,
        }

    def mlflow_metrics(self) -> dict[str, float]:
        """Return the metrics of the parent run in MLflow (finite numbers only).

        Every numeric out-of-sample figure as ``oos_<name>``, the Sharpe interval, the gross
        Sharpe, the trial count, the PBO, the SPA p-values and each audit control's intervals.
        """
        oos = self.oos.model_dump()
        metrics: dict[str, float] = {
            f"oos_{name}": float(value)
            for name, value in oos.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        extra: dict[str, float | None] = {
            "oos_sharpe_ci_low": self.oos.sharpe_ci[0],
            "oos_sharpe_ci_high": self.oos.sharpe_ci[1],
            "oos_gross_sharpe": self.oos.gross.sharpe,
            "trials_total": float(self.trials.total),
            "pbo": self.pbo,
            "spa_vs_flat_p": self.oos.spa.vs_flat_p,
            "spa_vs_buy_and_hold_p": self.oos.spa.vs_buy_and_hold_p,
            "spa_models_vs_flat_p": self.oos.spa.models_vs_flat_p,
        }
        for control in self.audit.controls if self.audit else ():
            extra[f"audit_{control.control}_gross_ci_low"] = control.gross_sharpe_ci_99[0]
            extra[f"audit_{control.control}_gross_ci_high"] = control.gross_sharpe_ci_99[1]
            extra[f"audit_{control.control}_net_ci_low"] = control.net_sharpe_ci_99[0]
        metrics.update({k: float(v) for k, v in extra.items() if v is not None})
        return {k: v for k, v in metrics.items() if math.isfinite(v)}

    def registry_scores(self) -> dict[str, float]:
        """Return the out-of-sample scores a registered version carries (promotion compares them)."""
        oos = self.oos
        values = {
            "dsr": oos.dsr,
            "psr": oos.psr,
            "sharpe": oos.sharpe,
            "sharpe_ci_low": oos.sharpe_ci[0],
            "sharpe_ci_high": oos.sharpe_ci[1],
            "total_return": oos.total_return,
            "max_drawdown": oos.max_drawdown,
        }
        return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


class TrainResult(BaseModel):
    """A model tuned and fitted on the latest window and logged to MLflow; the ``--json`` line.

    The figures are the inner purged folds' (the tuning objective): training has no test window.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    timeframe: str
    feature_set: str
    model: str
    rows: int
    first: str
    last: str
    trials: int
    objective: str
    best_value: float | None
    params: dict[str, Any]
    mlflow_run_id: str
    seconds: float

    def dvc_headline(self) -> dict[str, Any]:
        """Return the headline figures DVC tracks as metrics (``research/latest/train.json``)."""
        return {"rows": self.rows, "trials": self.trials, "best_value": self.best_value}


@dataclass(frozen=True)
class WalkForwardOutcome:
    """A finished, stored walk-forward job."""

    run: StoredRun
    result: WalkForwardResult
    summary: WalkForwardSummary
    audit: AuditResult | None
    model_version: int | None
    report: Path
    seconds: float


# -- load ------------------------------------------------------------------------------------


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


def load_research_inputs(
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

    Context timeframes are resampled from the series' own bars (so the leakage audit's random
    walk gets its context the same way), each on the clock its stored series was cut on
    (:func:`feature_store.series.context_clock`): the same bars a feature build reads.
    """
    config = load_feature_set(params_path, feature_set)
    resolved = config.resolve().for_timeframe(timeframe)
    series = load_series(settings, symbol, timeframe, side, start, end)
    store = BarStore(settings.store_dir)
    frame = series_frame(store, settings.registry, series.info, series.bars)
    clocks: dict[Timeframe, Clock] = {
        ctx.timeframe: context_clock(store, settings.registry, series.key, ctx.timeframe)
        for ctx in resolved.context
    }
    cross: dict[str, SeriesFrame] = {}
    for other_asset in resolved.cross_assets:
        other = load_series(settings, other_asset.symbol, timeframe, None, start, end)
        cross[other_asset.symbol] = series_frame(store, settings.registry, other.info, other.bars)
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


# -- adapters --------------------------------------------------------------------------------


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


def desk_tracker(settings: Settings, experiment: str) -> RunTracker:
    """Return the MLflow tracker of the desk's tracking store for ``experiment``."""
    from feature_store.tracking import MlflowTracker

    return MlflowTracker.for_settings(settings, experiment)


# -- compute ---------------------------------------------------------------------------------


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
        side=inputs.series.key.side.value,
        bars_per_year=inputs.series.bars_per_year,
        to_account=rates,
    )


def compute_walkforward(
    inputs: ResearchInputs,
    config: WalkForwardConfig,
    *,
    run_id: str,
    tracker: RunTracker | None = None,
    parent: str | None = None,
    storage: Callable[[], Any] | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> WalkForwardResult:
    """Tune, fit and trade every window; return the out-of-sample result and the final model."""
    return run_walk_forward(
        inputs.data, config, trade_context(inputs, config, inputs.data), embargo=inputs.embargo,
        tracker=tracker, parent_id=parent, storage=storage, executor=executor,
        progress=progress, job_id=run_id,
    )  # fmt: skip


def compute_audit(
    inputs: ResearchInputs,
    config: WalkForwardConfig,
    *,
    run_id: str,
    storage: Callable[[], Any] | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> AuditResult:
    """Run the same pipeline on block-shuffled labels and on a random walk of the series."""
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


def summarize(
    run_id: str, inputs: ResearchInputs, result: WalkForwardResult, audit: AuditResult | None
) -> WalkForwardSummary:
    """Return the job's typed summary: the series and set, the engine's figures, the audit."""
    key = inputs.series.key
    return WalkForwardSummary(
        run_id=run_id,
        symbol=key.symbol,
        timeframe=key.timeframe.value,
        side=key.side.value,
        feature_set=inputs.feature_set,
        **dict(result.summary()),
        audit=audit.record() if audit is not None else None,
    )


def compute_report(
    summary: WalkForwardSummary, result: WalkForwardResult, inputs: ResearchInputs
) -> str:
    """Return the walk-forward's report page."""
    from pipelines.evaluate.report import walkforward_report_html

    config = result.config
    dumped = summary.model_dump(mode="json")
    return walkforward_report_html(
        dumped,
        ts=result.oos_ts,
        equity=result.oos_equity,
        gross_returns=result.gross_returns,
        initial_cash=config.backtest.cash,
        importance=result.importance,
        title=f"Walk-forward: {config.model} on {inputs.label}",
        subtitle=f"feature set {inputs.feature_set} · {config.split.scheme} · run {summary.run_id}",
        audit=dumped.get("audit"),
    )


def oos_table(result: WalkForwardResult) -> pl.DataFrame:
    """Return the out-of-sample bars: ts, equity, return, gross return and position."""
    return pl.DataFrame(
        {
            "ts": pl.Series(result.oos_ts.astype("datetime64[ns]")).dt.replace_time_zone("UTC"),
            "equity": result.oos_equity,
            "return": result.oos_returns,
            "gross_return": result.gross_returns,
            "position": result.oos_position,
        }
    )


def compute_drift_reference(
    settings: Settings,
    inputs: ResearchInputs,
    config: WalkForwardConfig,
    result: WalkForwardResult,
) -> DriftReference:
    """Return the deployable model's drift reference (``[drift]`` settings).

    The deciles and baselines are those of the rows the model was fitted on (the latest window
    :func:`~pipelines.evaluate.walkforward.final_rows` chooses), the P&L band that of
    ``window_days`` trading days of the walk-forward's out-of-sample returns.
    """
    data = inputs.data
    rows = final_rows(data, config, plan_splits(data, config, inputs.embargo))
    drift = settings.drift
    return drift_reference(
        data.X[rows], data.feature_names, data.ts[rows], psi_window=drift.window_bars,
        psi_min_window=drift.min_bars, oos_returns=result.oos_returns, oos_ts=result.oos_ts,
        bars_per_year=inputs.series.bars_per_year, window_days=drift.window_days,
        low=drift.band_low, high=drift.band_high, n_boot=drift.n_boot, seed=config.seed,
    )  # fmt: skip


# -- record ----------------------------------------------------------------------------------


def run_tags(inputs: ResearchInputs, kind: str, config: WalkForwardConfig) -> dict[str, str]:
    """Return the tags a research run carries in the tracker (and its model in the registry)."""
    key = inputs.series.key
    tags = {
        "solodesk.kind": kind,
        "solodesk.symbol": key.symbol,
        "solodesk.timeframe": key.timeframe.value,
        "solodesk.side": key.side.value,
        "solodesk.feature_set": inputs.feature_set,
        "solodesk.feature_set_version": inputs.feature_set_version,
        "solodesk.data_version": inputs.series.info.version,
        "solodesk.model": config.model,
        "solodesk.scheme": config.split.scheme,
        "solodesk.git_commit": git_commit() or "unknown",
    }
    return tags


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


def start_tracking(
    tracker: RunTracker, inputs: ResearchInputs, config: WalkForwardConfig, tags: Mapping[str, str]
) -> str:
    """Open the job's parent run with its tags and parameters; return its id."""
    key = inputs.series.key
    parent = tracker.start_run(
        f"{key.symbol} {key.timeframe.value} {inputs.feature_set} {config.model}", tags=tags
    )
    tracker.log_params(parent, _flat_params(config, inputs))
    return parent


def record_tracking(
    tracker: RunTracker,
    parent: str,
    summary: WalkForwardSummary,
    html: str,
    result: WalkForwardResult,
) -> None:
    """Record the summary's metrics, the audit's verdict, the report and the plots."""
    from pipelines.evaluate.report import equity_figure_html, importance_figure_html

    tracker.log_metrics(parent, summary.mlflow_metrics())
    if summary.audit is not None:
        verdict = "passed" if summary.audit.passed else "failed"
        tracker.set_tags(parent, {"solodesk.audit": verdict})
    dumped = summary.model_dump(mode="json")
    tracker.log_text(parent, json.dumps(dumped, indent=2), "report/summary.json")
    tracker.log_text(parent, html, "report/report.html")
    tracker.log_text(
        parent,
        equity_figure_html(
            dumped,
            ts=result.oos_ts,
            equity=result.oos_equity,
            initial_cash=result.config.backtest.cash,
            gross_returns=result.gross_returns,
        ),
        "plots/equity_drawdown.html",
    )
    tracker.log_text(parent, importance_figure_html(result.importance), "plots/importance.html")
    tracker.log_text(parent, json.dumps(result.importance, indent=2), IMPORTANCE_ARTIFACT)


def _example(data: ResearchData) -> pl.DataFrame:
    return pl.DataFrame(data.X[-5:], schema=list(data.feature_names), orient="row")


def register_challenger(
    settings: Settings,
    inputs: ResearchInputs,
    parent: str,
    model: TrainedModel,
    summary: WalkForwardSummary,
    tags: Mapping[str, str],
    *,
    drift: DriftReference | None = None,
) -> int:
    """Register the deployable model as the new ``challenger`` version; return its number.

    ``drift``, when given, is stored first as the run's artifact :data:`DRIFT_ARTIFACT`, and
    the version's tag :data:`DRIFT_TAG` points at it (a session trading the version watches
    its drift against it).
    """
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    version_tags = {k: v for k, v in tags.items() if k != "solodesk.kind"}
    if drift is not None:
        desk_tracker(settings, EXPERIMENT).log_text(parent, drift.to_json(), DRIFT_ARTIFACT)
        version_tags[DRIFT_TAG] = DRIFT_ARTIFACT
    key = inputs.series.key
    registry = ModelRegistry(tracking_uri(settings))
    info = registry.register_challenger(
        run_id=parent,
        name=registered_model_name(key.symbol, key.timeframe, inputs.feature_set),
        predictor=model,
        input_example=_example(inputs.data),
        scores=summary.registry_scores(),
        tags=version_tags,
    )
    return int(info.version)


def record_walkforward(
    settings: Settings,
    summary: WalkForwardSummary,
    *,
    created: datetime,
    config: WalkForwardConfig,
    inputs: ResearchInputs,
    table: pl.DataFrame,
    html: str,
) -> StoredRun:
    """Store the run (record, out-of-sample table, report) under ``SOLODESK_HOME/research``.

    The stored summary names the report page written beside it, as the job's summary does.
    """
    store = BacktestStore.research(settings)
    report = store.report_path(summary.run_id).resolve()
    stored = summary.model_copy(update={"report": str(report)})
    record = {
        "kind": "walkforward",
        "created": iso_z(created),
        "config": config.model_dump(mode="json"),
        "series_version": inputs.series.info.version,
        "feature_set_version": inputs.feature_set_version,
        "git_commit": git_commit(),
        "summary": stored.model_dump(mode="json"),
    }
    return store.write(summary.run_id, record, {"oos": table}, html)


def record_latest(settings: Settings, summary: WalkForwardSummary, table: pl.DataFrame) -> None:
    """Write the headline figures and the out-of-sample equity DVC tracks."""
    latest = settings.research_latest_dir
    latest.mkdir(parents=True, exist_ok=True)
    write_atomic(latest / "walkforward.json", json.dumps(summary.dvc_headline(), indent=2).encode())
    step = max(1, table.height // 5000)
    # DVC's plot templates read x as a number: the time is also given as a decimal year.
    year = pl.col("ts").dt.year() + (pl.col("ts").dt.ordinal_day() - 1) / 365.25
    thinned = table.gather_every(step).select(
        iso_z_expr(pl.col("ts")), year.round(5).alias("year"), "equity"
    )
    write_atomic(latest / "equity.csv", thinned.write_csv().encode())


# -- jobs ------------------------------------------------------------------------------------


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
    started = time.perf_counter()
    created = utc_now()
    run_id = new_run_id("walkforward", created)
    tracker = tracker or desk_tracker(settings, EXPERIMENT)
    tags = {**run_tags(inputs, "walkforward", config), "solodesk.run": run_id}
    parent = start_tracking(tracker, inputs, config, tags)
    try:
        storage = study_storage_factory(settings)
        with research_executor(settings, config.jobs) as executor:
            result = compute_walkforward(
                inputs, config, run_id=run_id, tracker=tracker, parent=parent, storage=storage,
                executor=executor, progress=progress,
            )  # fmt: skip
            audit_result = (
                compute_audit(
                    inputs,
                    config,
                    run_id=run_id,
                    storage=storage,
                    executor=executor,
                    progress=progress,
                )
                if audit
                else None
            )
        summary = summarize(run_id, inputs, result, audit_result)
        html = compute_report(summary, result, inputs)
        record_tracking(tracker, parent, summary, html, result)
        audit_ok = audit_result is None or audit_result.passed
        version = None
        if register and audit_ok and result.model is not None:
            reference = compute_drift_reference(settings, inputs, config, result)
            version = register_challenger(
                settings, inputs, parent, result.model, summary, tags, drift=reference
            )
        summary = summary.model_copy(
            update={"model_version": version, "seconds": round(time.perf_counter() - started, 3)}
        )
        table = oos_table(result)
        run = record_walkforward(
            settings, summary, created=created, config=config, inputs=inputs, table=table,
            html=html,
        )  # fmt: skip
        summary = summary.model_copy(update={"report": str(run.record["report"])})
        if audit_ok:  # the latest figures (DVC metrics) are never those of a leaky run
            record_latest(settings, summary, table)
        tracker.end_run(parent)
    except BaseException:
        tracker.end_run(parent, "FAILED")
        raise
    report = BacktestStore.research(settings).report_path(run_id)
    outcome = WalkForwardOutcome(
        run, result, summary, audit_result, version, report, time.perf_counter() - started
    )
    if audit_result is not None and not audit_result.passed:
        failed = [c for c in audit_result.controls if not c.passed]
        detail = "; ".join(f"{c.name}: {c.reason}" for c in failed)
        raise AuditFailedError(
            f"leakage audit FAILED ({detail}): the pipeline finds an edge where none can exist; "
            f"the model was not registered (report {report})",
            outcome,
        )
    return outcome


def run_stored_train(
    settings: Settings,
    inputs: ResearchInputs,
    config: WalkForwardConfig,
    *,
    train_bars: int | None = None,
    tracker: RunTracker | None = None,
) -> TrainResult:
    """Tune and fit a model on the latest ``train_bars`` rows (all by default) and log it.

    There is no test window: the figures are the inner purged folds' (the tuning objective).
    The fitted model is logged into the MLflow run; registering a model for promotion takes a
    walk-forward, whose out-of-sample scores the promotion rule compares.
    """
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    started = time.perf_counter()
    data = inputs.data
    size = data.n if train_bars is None else min(train_bars, data.n)
    rows = np.arange(data.n - size, data.n, dtype=np.int64)
    tracker = tracker or desk_tracker(settings, TRAIN_EXPERIMENT)
    study = new_run_id("train")
    tags = run_tags(inputs, "train", config)
    run = start_tracking(tracker, inputs, config, tags)
    try:
        trade = trade_context(inputs, config, data)
        tuned = tune_window(
            data, rows, config, trade, study_name=study,
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
        tracker.log_metrics(
            run,
            {
                "best_value": tuned.best_value,
                "trials": float(tuned.n_trials),
                "completed_trials": float(len(tuned.trial_returns)),
                "best_trial_sharpe_per_bar": max(sharpes) if sharpes else math.nan,
            },
        )
        tracker.log_params(run, {f"best.{k}": v for k, v in tuned.best_params.items()})
        ModelRegistry(tracking_uri(settings)).log_model(
            run_id=run, predictor=model, input_example=_example(data)
        )
        tracker.end_run(run)
    except BaseException:
        tracker.end_run(run, "FAILED")
        raise
    key = inputs.series.key
    result = TrainResult(
        symbol=key.symbol,
        timeframe=key.timeframe.value,
        feature_set=inputs.feature_set,
        model=config.model,
        rows=int(rows.shape[0]),
        first=iso_z_ns(int(data.ts[rows[0]])),
        last=iso_z_ns(int(data.ts[rows[-1]])),
        trials=tuned.n_trials,
        objective=config.tuning.objective,
        best_value=tuned.best_value if math.isfinite(tuned.best_value) else None,
        params=tuned.best_params,
        mlflow_run_id=run,
        seconds=round(time.perf_counter() - started, 3),
    )
    record_train_latest(settings, result)
    return result


def record_train_latest(settings: Settings, result: TrainResult) -> None:
    """Write the training's headline figures DVC tracks (``research/latest/train.json``)."""
    latest = settings.research_latest_dir
    latest.mkdir(parents=True, exist_ok=True)
    write_atomic(latest / "train.json", json.dumps(result.dvc_headline(), indent=2).encode())

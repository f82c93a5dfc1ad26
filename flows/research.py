"""The ``walkforward`` and ``promote`` flows: the tuned walk-forward and the promotion rule as
Prefect runs.

``walkforward`` chains the job's steps as :func:`services.research.run_stored_walkforward`
does: the inputs are loaded (I/O), the windows tuned, fitted and traded and the statistics
computed (compute, never retried), then the tracker, the registry and the research store are
written, each an I/O step retried on its own, so a failed registry call does not redo the
walk-forward. Windows and trials keep spreading through the ``dask_scheduler`` setting. The
run's artifacts: the out-of-sample figures with the Sharpe interval, and the report's address.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow

from core.ids import new_run_id
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import utc_now
from core.types import Scheme, Side
from flows.common import compute_task, desk, io_task, link, markdown, md_table
from flows.notices import on_flow_failure
from pipelines.train.config import WalkForwardConfig
from services.research import (
    EXPERIMENT,
    ResearchInputs,
    WalkForwardSummary,
    compute_audit,
    compute_drift_reference,
    compute_report,
    compute_walkforward,
    desk_tracker,
    load_research_inputs,
    oos_table,
    record_latest,
    record_tracking,
    record_walkforward,
    register_challenger,
    research_executor,
    run_tags,
    start_tracking,
    study_storage_factory,
    summarize,
)


@io_task
def inputs_step(
    settings: Settings,
    symbol: str,
    timeframe: Timeframe,
    feature_set: str,
    params: str,
    side: Side | None,
    start: datetime | None,
    end: datetime | None,
) -> ResearchInputs:
    """Read the series and compute its research rows (:func:`load_research_inputs`)."""
    return load_research_inputs(
        settings, symbol=symbol, timeframe=timeframe, feature_set=feature_set,
        params_path=Path(params), side=side, start=start, end=end,
    )  # fmt: skip


@io_task
def start_step(tracker: Any, inputs: ResearchInputs, config: WalkForwardConfig, tags: dict) -> str:
    """Open the job's parent run in the tracker (:func:`start_tracking`)."""
    return start_tracking(tracker, inputs, config, tags)


@compute_task
def compute_step(
    settings: Settings,
    inputs: ResearchInputs,
    config: WalkForwardConfig,
    run_id: str,
    tracker: Any,
    parent: str,
    audit: bool,
) -> tuple[Any, Any, WalkForwardSummary, str]:
    """Tune, fit and trade every window; audit; summarize; render the report."""
    storage = study_storage_factory(settings)
    with research_executor(settings, config.jobs) as executor:
        result = compute_walkforward(
            inputs, config, run_id=run_id, tracker=tracker, parent=parent, storage=storage,
            executor=executor,
        )  # fmt: skip
        audited = (
            compute_audit(inputs, config, run_id=run_id, storage=storage, executor=executor)
            if audit
            else None
        )
    summary = summarize(run_id, inputs, result, audited)
    return result, audited, summary, compute_report(summary, result, inputs)


@io_task
def track_step(
    tracker: Any, parent: str, summary: WalkForwardSummary, html: str, result: Any
) -> None:
    """Record the metrics, the report and the plots in the tracker (:func:`record_tracking`)."""
    record_tracking(tracker, parent, summary, html, result)


@io_task
def register_step(
    settings: Settings, inputs: ResearchInputs, parent: str, model: Any,
    summary: WalkForwardSummary, tags: dict, drift: Any,
) -> int:  # fmt: skip
    """Register the deployable model as the challenger with its drift reference."""
    return register_challenger(settings, inputs, parent, model, summary, tags, drift=drift)


@io_task
def store_step(
    settings: Settings, summary: WalkForwardSummary, created: datetime,
    config: WalkForwardConfig, inputs: ResearchInputs, result: Any, html: str, latest: bool,
) -> WalkForwardSummary:  # fmt: skip
    """Store the run and, for a clean run, the latest figures DVC tracks."""
    table = oos_table(result)
    run = record_walkforward(
        settings, summary, created=created, config=config, inputs=inputs, table=table, html=html
    )
    stored = summary.model_copy(update={"report": str(run.record["report"])})
    if latest:
        record_latest(settings, stored, table)
    return stored


def walkforward_steps(
    settings: Settings,
    inputs: ResearchInputs,
    config: WalkForwardConfig,
    *,
    audit: bool = False,
    register: bool = True,
) -> WalkForwardSummary:
    """Run the walk-forward's steps as tasks inside a flow; return the stored summary."""
    started = time.perf_counter()
    created = utc_now()
    run_id = new_run_id("walkforward", created)
    tracker = desk_tracker(settings, EXPERIMENT)
    tags = {**run_tags(inputs, "walkforward", config), "solodesk.run": run_id}
    parent = start_step(tracker, inputs, config, tags)
    try:
        result, audited, summary, html = compute_step(
            settings, inputs, config, run_id, tracker, parent, audit
        )
        track_step(tracker, parent, summary, html, result)
        clean = audited is None or audited.passed
        version = None
        if register and clean and result.model is not None:
            drift = compute_drift_reference(settings, inputs, config, result)
            version = register_step(settings, inputs, parent, result.model, summary, tags, drift)
        summary = summary.model_copy(
            update={"model_version": version, "seconds": round(time.perf_counter() - started, 3)}
        )
        summary = store_step(settings, summary, created, config, inputs, result, html, clean)
        tracker.end_run(parent)
    except BaseException:
        tracker.end_run(parent, "FAILED")
        raise
    _record(summary, clean)
    return summary


def _record(summary: WalkForwardSummary, clean: bool) -> None:
    oos = summary.oos
    low, high = oos.sharpe_ci
    rows: list[dict[str, Any]] = [
        {"figure": "Sharpe (ann.)", "value": oos.sharpe},
        {"figure": "Sharpe interval", "value": f"[{low:.3f}, {high:.3f}]"},
        {"figure": "PSR", "value": oos.psr},
        {"figure": "DSR", "value": oos.dsr},
        {"figure": "total return", "value": oos.total_return},
        {"figure": "max drawdown", "value": oos.max_drawdown},
        {"figure": "trades", "value": oos.n_trades},
        {"figure": "PBO", "value": summary.pbo},
    ]
    registered = (
        f"registered as challenger, version {summary.model_version}"
        if summary.model_version is not None
        else "not registered" + ("" if clean else " (the leakage audit failed)")
    )
    body = (
        f"# Walk-forward {summary.run_id}\n{summary.symbol} {summary.timeframe}, feature set "
        f"{summary.feature_set}, {summary.trials.total} trials; {registered}.\n\n"
        f"{md_table(rows)}\n\nReport: `{summary.report}`"
    )
    markdown(f"walkforward-{summary.run_id}", body, "out-of-sample figures of the walk-forward")
    if summary.report:
        link(f"walkforward-report-{summary.run_id}", Path(summary.report).as_uri(), "report")


@flow(name="walkforward", on_failure=[on_flow_failure], log_prints=True)
def walkforward_flow(
    symbol: str,
    timeframe: Timeframe,
    feature_set: str = "default",
    params: str = "params.yaml",
    model: str = "lightgbm",
    trials: int = 20,
    scheme: Scheme = Scheme.ROLLING,
    folds: int = 5,
    upper: float = 0.55,
    lower: float = 0.45,
    long_only: bool = False,
    spread: float = 1.0,
    fees: float = 0.0,
    side: Side | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    jobs: int = 1,
    seed: int = 0,
    n_boot: int = 1000,
    audit: bool = False,
    register_challenger: bool = True,
    home: str | None = None,
) -> dict[str, Any]:
    """Tune, fit and test a model window by window, judge it out of sample, register it.

    ``register_challenger`` false keeps the model out of the registry (``--no-register``).
    """
    settings = desk(home)
    config = WalkForwardConfig.from_options(
        model=model, trials=trials, scheme=scheme, folds=folds, upper=upper, lower=lower,
        long_only=long_only, spread=spread, fees=fees, jobs=jobs, seed=seed, n_boot=n_boot,
    )  # fmt: skip
    inputs = inputs_step(settings, symbol, timeframe, feature_set, params, side, start, end)
    summary = walkforward_steps(settings, inputs, config, audit=audit, register=register_challenger)
    return summary.model_dump(mode="json")


@io_task
def promote_step(settings: Settings, name: str, rule: str) -> Any:
    """Apply the promotion rule and its floors (:func:`services.models.promote`)."""
    from services.models import promote

    return promote(settings, name, rule)


@flow(name="promote", on_failure=[on_flow_failure], log_prints=True)
def promote_flow(
    name: str, rule: str = "dsr,sharpe_ci_low", home: str | None = None
) -> dict[str, Any]:
    """Make the challenger of ``name`` champion if it clears the floors and beats the champion."""
    result = promote_step(desk(home), name, rule)
    verdict = "promoted" if result.promoted else "not promoted"
    markdown(
        f"promote-{name}",
        f"# {name}: challenger {result.challenger} {verdict}\n\n{result.reason}",
        "the promotion decision and why",
    )
    return result.model_dump(mode="json")

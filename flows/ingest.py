"""The ``ingest`` and ``resample`` flows: ``solodesk ingest`` and ``solodesk resample`` as Prefect runs.

``ingest`` takes the command's sources and options under the same names. With ``folder`` it
also ingests every file in that folder (the ``ingest/drop-folder`` deployment points it at
``SOLODESK_HOME/inbox``) and moves each file it stored into ``folder/done/``: nothing is
deleted, and a file that failed stays for the next run. Its artifacts: a table of the series
(rows read, added, quarantined, ...) and a summary with the validation report's address.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow

from core.clocks import Anchor
from core.errors import UsageError
from core.ids import new_run_id
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import DateOrder, SeriesKey, Side, SourceFormat, VolumeKind
from flows.common import (
    compute_task,
    desk,
    io_task,
    link,
    markdown,
    md_table,
    store_writes,
    table,
)
from flows.notices import notify_data_quality, on_flow_failure
from services.ingest import (
    CheckedIngest,
    IngestOptions,
    IngestResult,
    ResampleResult,
    check_batches,
    ingest_options,
    ingest_result,
    load_sources,
    move_to_done,
    record_bars,
    record_reports,
    refresh,
    resample_stored,
)

#: A run whose quarantined share of the rows read reaches this is a data-quality notice.
QUARANTINE_ALERT_SHARE = 0.01
_COUNTS = ("rows_read", "rows_added", "rows_duplicate", "rows_conflicting", "rows_quarantined")


@io_task
def load_step(specs: list[str], options: IngestOptions, settings: Settings) -> list[Any]:
    """Read, parse and check the sources (:func:`services.ingest.load_sources`)."""
    return load_sources(specs, options, settings)


@compute_task
def check_step(batches: list[Any], settings: Settings, run: str) -> CheckedIngest:
    """Combine, flag and validate the batches (:func:`services.ingest.check_batches`)."""
    return check_batches(batches, settings, f"ingest-{run}")


@io_task
def record_step(
    run: str, checked: CheckedIngest, options: IngestOptions, settings: Settings
) -> list[Any]:
    """Merge the checked series into the store, one commit (:func:`services.ingest.record_bars`)."""
    with store_writes():
        return record_bars(run, checked, options, settings)


@io_task
def refresh_step(settings: Settings) -> list[str]:
    """Rebuild the catalog (:func:`services.ingest.refresh`)."""
    return refresh(settings)


@io_task
def report_step(
    settings: Settings, run: str, checked: CheckedIngest, quarantine: list[Any]
) -> Path:
    """Write the validation report (:func:`services.ingest.record_reports`)."""
    return record_reports(settings, run, checked, quarantine)


def _folder_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _done(files: list[Path]) -> None:
    for path in files:
        move_to_done(path)


def _record(result: IngestResult, quarantine_share: float) -> None:
    rows = [{"series": str(s.key), **{c: getattr(s, c) for c in _COUNTS}, "first": s.first,
             "last": s.last, "jumps": s.jumps, "gaps": s.gaps} for s in result.series]  # fmt: skip
    table(f"ingest-{result.run}", rows, f"ingest run {result.run}: one row per series")
    quarantined = sum(s.rows_quarantined for s in result.series)
    read = sum(s.rows_read for s in result.series)
    lines = [
        f"# Ingest {result.run}",
        f"{len(result.series)} series, {read:,} rows read, "
        f"{sum(s.rows_added for s in result.series):,} added, {quarantined:,} quarantined "
        f"({quarantine_share:.2%}).",
        "",
        md_table(rows),
    ]
    if result.report is not None:
        lines += ["", f"Validation report: `{result.report}`"]
        link(f"ingest-report-{result.run}", result.report.resolve().as_uri(), "validation report")
    if result.warnings:
        lines += ["", *(f"- warning: {w}" for w in result.warnings)]
    markdown(f"ingest-summary-{result.run}", "\n".join(lines), "what the ingest run stored")


@flow(name="ingest", on_failure=[on_flow_failure], log_prints=True)
def ingest_flow(
    sources: list[str] | None = None,
    symbol: str | None = None,
    timeframe: Timeframe | None = None,
    format: SourceFormat | None = None,
    tz: str | None = None,
    side: Side | None = None,
    date_order: DateOrder | None = None,
    volume_kind: VolumeKind | None = None,
    as_of: str | None = None,
    resample: list[Timeframe] | None = None,
    anchor: Anchor | None = None,
    folder: str | None = None,
    reports: bool = True,
    home: str | None = None,
) -> dict[str, Any]:
    """Ingest files, folders, archives and ``sample:`` specs, as ``solodesk ingest`` does.

    ``folder``: also ingest every file in it, then move those into ``folder/done/``.
    ``home``: the desk (default ``SOLODESK_HOME``). Returns the run's result as JSON.
    """
    settings = desk(home)
    specs = list(sources or [])
    waiting = _folder_files(Path(folder)) if folder else []
    specs += [str(p) for p in waiting]
    if not specs:
        if folder is not None:
            markdown("ingest-idle", f"Nothing waiting in `{folder}`.", "an empty drop folder")
            return {"run": None, "series": [], "waiting": 0}
        raise UsageError("nothing to ingest: give sources (files, folders, sample:eurusd-h1)")
    options = ingest_options(
        symbol=symbol, timeframe=timeframe, format=format, tz=tz, side=side,
        date_order=date_order, volume_kind=volume_kind, as_of=as_of,
        resample=tuple(resample or ()), anchor=anchor,
    )  # fmt: skip
    run = new_run_id("ingest")
    started = time.perf_counter()
    batches = load_step(specs, options, settings)
    checked = check_step(batches, settings, run)
    quarantine = record_step(run, checked, options, settings)
    warnings = refresh_step(settings)
    report = report_step(settings, run, checked, quarantine) if reports else None
    result = ingest_result(run, checked, report, {"total": time.perf_counter() - started}, warnings)
    read = sum(s.rows_read for s in result.series)
    share = sum(s.rows_quarantined for s in result.series) / read if read else 0.0
    _record(result, share)
    if share >= QUARANTINE_ALERT_SHARE:
        notify_data_quality(settings, result, share)
    if waiting:
        _done(waiting)
    return result.model_dump(mode="json")


@flow(name="resample", on_failure=[on_flow_failure], log_prints=True)
def resample_flow(
    symbol: str,
    timeframe: list[Timeframe],
    source: Timeframe = Timeframe.M1,
    side: Side = Side.BID,
    anchor: Anchor | None = None,
    home: str | None = None,
) -> dict[str, Any]:
    """Resample a stored series into longer timeframes, as ``solodesk resample`` does."""
    settings = desk(home)
    key = SeriesKey(symbol=settings.registry.canonical(symbol), timeframe=source, side=side)
    result = _resample_step(key, tuple(timeframe), settings, anchor)
    rows = [{"series": str(s.key), **{c: getattr(s, c) for c in _COUNTS}} for s in result.series]
    table(f"resample-{symbol}", rows, f"{symbol} {source.value} resampled")
    return result.model_dump(mode="json")


@io_task
def _resample_step(
    key: SeriesKey, targets: tuple[Timeframe, ...], settings: Settings, anchor: Anchor | None
) -> ResampleResult:
    """Resample and store (:func:`services.ingest.resample_stored`)."""
    with store_writes():
        return resample_stored(key, targets, settings, anchor)

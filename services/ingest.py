"""The ingest and resample jobs: read, parse, check, validate, merge, commit, report.

Everything is parsed and checked before anything is written, so bad input stores nothing. Rows
that break a rule are quarantined with source, line and reason; they are never stored as bars
and never dropped in silence.

The job's steps:

- :func:`load_sources` reads and parses every source (:mod:`feature_store.sources`,
  :mod:`pipelines.ingest`) into checked batches;
- :func:`check_batches` combines each series' batches, computes its quality flags and runs the
  Great Expectations suite (pure: :mod:`pipelines`);
- :func:`record_bars` merges into the store and commits once (bars, resamples, quarantine and
  the run's record);
- :func:`refresh` rebuilds the DuckDB catalog;
- :func:`record_reports` writes the HTML validation report.

:func:`ingest` chains them for the command line, DVC and benchmarks.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from core.calendars import get_calendar
from core.clocks import Anchor, Clock, bar_clock, parse_clock
from core.errors import SolodeskError, UsageError
from core.ids import new_run_id
from core.settings import Settings
from core.timeframes import Timeframe, parse_timeframe
from core.times import COMPACT, iso_z, parse_utc, utc_now
from core.types import DateOrder, SeriesKey, Side, SourceFormat, VolumeKind
from feature_store.catalog import refresh_catalog
from feature_store.reports import write_report
from feature_store.sources import SAMPLES, digest, read_sources
from feature_store.store import BarStore, SeriesInfo, Transaction
from pipelines.ingest.merge import CombinedBatches, combine_batches, merge_bars
from pipelines.ingest.normalize import QUARANTINE_SCHEMA, SeriesBatch, normalize
from pipelines.ingest.parsers import RawSource, parse_source
from pipelines.resample import resample_bars, resampled_volume_kind
from pipelines.validate.flags import quality_flags
from pipelines.validate.report import price_chart_svg, render_data_docs, render_summary
from services.common import Progress

_VOLUME_RANK = [VolumeKind.NONE, VolumeKind.M1_COUNT, VolumeKind.TICK, VolumeKind.REAL]


@dataclass(frozen=True)
class IngestOptions:
    """What a person said on the command line (None: let the source decide)."""

    symbol: str | None = None
    timeframe: Timeframe | None = None
    format: SourceFormat | None = None
    clock: str | None = None
    side: Side | None = None
    date_order: DateOrder | None = None
    volume_kind: VolumeKind | None = None
    as_of: datetime | None = None
    resample: tuple[Timeframe, ...] = ()
    anchor: Anchor | None = None  # None: by the instrument's calendar (core.clocks.bar_clock)
    reports: bool = True


class SeriesIngest(BaseModel):
    """What one invocation did to one series; its dump is the series' ``--json`` line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    timeframe: Timeframe
    side: Side
    rows_read: int
    rows_added: int
    rows_duplicate: int
    rows_conflicting: int
    rows_quarantined: int
    first: str | None
    last: str | None
    seconds: float
    version: str
    sources: tuple[str, ...]
    jumps: int
    gaps: int
    expectations: str
    flags: dict[str, Any] = Field(default_factory=dict, exclude=True)
    data_docs: str | None = Field(default=None, exclude=True)

    @property
    def key(self) -> SeriesKey:
        """Return the series' key."""
        return SeriesKey(symbol=self.symbol, timeframe=self.timeframe, side=self.side)

    def as_json(self) -> dict[str, Any]:
        """Return the JSON line of this series."""
        return self.model_dump(mode="json")


class IngestResult(BaseModel):
    """The result of one ingest invocation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run: str
    series: tuple[SeriesIngest, ...]
    report: Path | None
    timings: dict[str, float] = Field(default_factory=dict)  # seconds per stage
    warnings: tuple[str, ...] = ()


@dataclass
class _Tally:
    """What one invocation has done to one series so far (filled in as the job advances)."""

    key: SeriesKey
    sources: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_added: int = 0
    rows_duplicate: int = 0
    rows_conflicting: int = 0
    rows_quarantined: int = 0
    first: str | None = None
    last: str | None = None
    version: str = ""
    seconds: float = 0.0
    flags: dict[str, Any] = field(default_factory=dict)
    expectations: str = ""
    data_docs: str | None = None

    def result(self) -> SeriesIngest:
        return SeriesIngest(
            symbol=self.key.symbol, timeframe=self.key.timeframe, side=self.key.side,
            rows_read=self.rows_read, rows_added=self.rows_added,
            rows_duplicate=self.rows_duplicate, rows_conflicting=self.rows_conflicting,
            rows_quarantined=self.rows_quarantined, first=self.first, last=self.last,
            seconds=round(self.seconds, 3), version=self.version, sources=tuple(self.sources),
            jumps=int(self.flags.get("jumps", 0)), gaps=int(self.flags.get("gaps", 0)),
            expectations=self.expectations, flags=self.flags, data_docs=self.data_docs,
        )  # fmt: skip


def ingest_options(
    *,
    symbol: str | None = None,
    timeframe: Timeframe | None = None,
    format: SourceFormat | None = None,
    tz: str | None = None,
    side: Side | None = None,
    date_order: DateOrder | None = None,
    volume_kind: VolumeKind | None = None,
    as_of: datetime | str | None = None,
    resample: tuple[Timeframe, ...] = (),
    anchor: Anchor | None = None,
) -> IngestOptions:
    """Return ingest options from command-line values (``as_of`` may be ISO text)."""
    when = parse_utc(as_of, "--as-of") if isinstance(as_of, str) else as_of
    return IngestOptions(
        symbol=symbol, timeframe=timeframe, format=format, clock=tz, side=side,
        date_order=date_order, volume_kind=volume_kind, as_of=when, resample=resample,
        anchor=anchor,
    )  # fmt: skip


# -- load ------------------------------------------------------------------------------------


def _prefetch(specs: list[str], forced_format: str | None) -> Iterator[tuple[RawSource, str]]:
    """Yield sources with their digests, reading (and unzipping) the next while one is parsed.

    Unzipping and hashing release the GIL, so they overlap with parsing on a second core; at
    most two sources' bytes are held at once.
    """

    sources = (raw for spec in specs for raw in read_sources(spec, forced_format))

    def read_next() -> tuple[RawSource, str] | None:
        source = next(sources, None)
        return None if source is None else (source, digest(source.data))

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[tuple[RawSource, str] | None] = pool.submit(read_next)
        while (item := pending.result()) is not None:
            pending = pool.submit(read_next)
            yield item


def load_sources(
    specs: list[str], options: IngestOptions, settings: Settings,
    progress: Progress | None = None,
) -> list[tuple[SeriesBatch, str]]:  # fmt: skip
    """Read, parse and check every source; return the batches with their sources' digests."""
    batches: list[tuple[SeriesBatch, str]] = []
    for n, (raw, source_digest) in enumerate(_prefetch(specs, options.format), 1):
        sample = SAMPLES.get(raw.name, {})
        parsed = parse_source(raw, date_order=options.date_order or sample.get("date_order"))
        if sample.get("complete") == "yes":
            parsed = replace(parsed, may_end_with_forming_bar=False)
        clock = options.clock or sample.get("clock")
        volume_kind = options.volume_kind or (
            VolumeKind(sample["volume_kind"]) if "volume_kind" in sample else None
        )
        tf = options.timeframe or (parse_timeframe(sample["timeframe"]) if sample else None)
        side = options.side or (Side(sample["side"]) if sample else None)
        for batch in normalize(
            parsed,
            registry=settings.registry,
            symbol=options.symbol or sample.get("symbol"),
            timeframe=tf,
            side=side,
            clock=parse_clock(clock) if clock else None,
            volume_kind=volume_kind,
            as_of=options.as_of,
        ):
            batches.append((batch, source_digest))
        if progress:
            progress("parse", n, max(n, len(specs)))
    return batches


# -- compute ---------------------------------------------------------------------------------


@dataclass
class CheckedIngest:
    """Each series' batches, combined, flagged and validated, ready to be stored."""

    groups: dict[SeriesKey, list[tuple[SeriesBatch, str]]]
    combined: dict[SeriesKey, CombinedBatches]
    tallies: dict[SeriesKey, _Tally]
    validation: list[Any]


def check_batches(
    batches: list[tuple[SeriesBatch, str]],
    settings: Settings,
    name: str,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
) -> CheckedIngest:
    """Combine each series' batches, flag them and run the validation suite (``name``) on them.

    The list of batches is emptied as they are grouped (each source's bars are let go once
    combined), so the peak memory is one copy of the input.

    Raises
    ------
    SolodeskError
        If the validation suite fails on rows the row rules accepted; nothing is stored.
    """
    timings = {} if timings is None else timings
    tallies: dict[SeriesKey, _Tally] = {}
    groups: dict[SeriesKey, list[tuple[SeriesBatch, str]]] = {}
    for batch, source_digest in batches:
        groups.setdefault(batch.key, []).append((batch, source_digest))
        tally = tallies.setdefault(batch.key, _Tally(batch.key))
        tally.sources.append(batch.source)
        tally.rows_read += batch.rows_read
        tally.rows_duplicate += batch.rows_duplicate
        tally.rows_conflicting += batch.rows_conflicting
        tally.rows_quarantined += batch.quarantine.height
    batches.clear()  # groups hold them now
    combined: dict[SeriesKey, CombinedBatches] = {}
    for n, (key, group) in enumerate(groups.items(), 1):
        t0 = time.perf_counter()
        merged = combine_batches([b.bars for b, _ in group])
        combined[key] = merged
        # The combined frame holds the bars now: let the per-source copies go.
        group[:] = [(replace(b, bars=b.bars.clear()), d) for b, d in group]
        tally = tallies[key]
        tally.rows_duplicate += merged.duplicate
        tally.rows_conflicting += merged.losers.height
        calendar = get_calendar(settings.registry.get(key.symbol).calendar)
        t_flags = time.perf_counter()
        tally.flags = quality_flags(
            merged.bars, key.timeframe, calendar,
            jump_sigmas=settings.validation.jump_sigmas,
            jump_window=settings.validation.jump_window,
            listed=settings.validation.max_gaps_listed,
        ).as_dict()  # fmt: skip
        timings["flags"] = timings.get("flags", 0.0) + time.perf_counter() - t_flags
        tally.seconds += time.perf_counter() - t0
        if progress:
            progress("flags", n, len(groups))
    results: list[Any] = []
    to_validate = {key.slug: c.bars for key, c in combined.items() if c.bars.height}
    if to_validate:
        from pipelines.validate.suite import validate_series

        results = validate_series(to_validate, name)
        passed = sum(r.statistics["successful_expectations"] for r in results)
        evaluated = sum(r.statistics["evaluated_expectations"] for r in results)
        verdict = f"{passed}/{evaluated} passed" + (
            f" ({len(results)} chunks)" if len(results) > 1 else ""
        )
        for key in combined:
            if key.slug in to_validate:
                tallies[key].expectations = verdict
        if not all(r.success for r in results):
            failed = sorted({
                str(r.expectation_config.type) if r.expectation_config else "?"
                for result in results
                for r in result.results
                if not r.success
            })  # fmt: skip
            msg = (
                f"validation suite failed on accepted rows ({', '.join(failed)}); "
                "nothing was stored"
            )
            raise SolodeskError(msg)
    return CheckedIngest(groups, combined, tallies, results)


# -- record ----------------------------------------------------------------------------------


def record_bars(
    run: str,
    checked: CheckedIngest,
    options: IngestOptions,
    settings: Settings,
    progress: Progress | None = None,
) -> list[pl.DataFrame]:
    """Merge the checked series (and their resamples) into the store; commit once.

    Returns the quarantine frames of the run (what the report samples).
    """
    store = BarStore(settings.store_dir)
    groups, combined, tallies = checked.groups, checked.combined, checked.tallies
    quarantine_frames: list[pl.DataFrame] = []
    with store.transaction() as tx:
        for n, (key, group) in enumerate(groups.items(), 1):
            t0 = time.perf_counter()
            conflicts = [b.conflicts for b, _ in group]
            if combined[key].losers.height:
                conflicts.append(_conflict_rows(combined[key].losers, key, "several sources"))
            quarantine_frames += conflicts
            quarantine_frames += _store_series(tx, store, key, group, combined[key].bars,
                                               tallies[key])  # fmt: skip
            tallies[key].seconds += time.perf_counter() - t0
            if progress:
                progress("store", n, len(groups))
        for target in options.resample:
            for key in list(groups):
                t0 = time.perf_counter()
                resampled = _resample_series(
                    tx, store, key, target, options.anchor, settings, quarantine_frames
                )
                if resampled is not None:
                    resampled.seconds = time.perf_counter() - t0
                    tallies[resampled.key] = resampled
        quarantine_frames += [b.quarantine for group in groups.values() for b, _ in group]
        tx.put_quarantine(run, _new_quarantine(store, quarantine_frames))
        record = {
            "run": run,
            "at": iso_z(utc_now()),
            "sources": sorted({b.source for group in groups.values() for b, _ in group}),
            "series": [t.result().as_json() for t in tallies.values()],
        }
        tx.put_run(run, record)
        tx.commit()
    return quarantine_frames


def refresh(settings: Settings, what: str = "the bars") -> list[str]:
    """Rebuild the catalog; a warning (not an error) when another process holds it."""
    return refresh_catalog(settings, what)


def record_reports(
    settings: Settings,
    run: str,
    checked: CheckedIngest,
    quarantine_frames: list[pl.DataFrame],
) -> Path:
    """Write the run's HTML validation report (data docs and a summary page); return its page."""
    folder = settings.ingest_report_dir(run)
    for n, result in enumerate(checked.validation, 1):
        write_report(folder, f"validation-{n}.html", render_data_docs(result))
    for tally in checked.tallies.values():
        if tally.expectations:
            tally.data_docs = "validation-1.html"
    frames = [f for f in quarantine_frames if f.height]
    sample = pl.concat(frames).head(200).to_dicts() if frames else []
    summary = []
    for tally in checked.tallies.values():
        chart = ""
        combined = checked.combined.get(tally.key)
        if combined is not None and combined.bars.height > 1:
            bars = combined.bars
            thin = bars.gather_every(max(1, bars.height // 900))
            jumps = [(parse_utc(j["ts"]), j["close"]) for j in tally.flags.get("jump_examples", [])]
            chart = price_chart_svg(thin["ts"].to_list(), thin["close"].to_list(), jumps)
        summary.append(
            dict(
                tally.result().as_json(), flags=tally.flags, data_docs=tally.data_docs, chart=chart
            )
        )
    return write_report(folder, "index.html", render_summary(run, summary, sample))


def ingest(
    specs: list[str],
    options: IngestOptions,
    settings: Settings,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest sources into the store under ``settings.home`` and return what happened.

    Raises
    ------
    DataError
        On unreadable input; nothing is stored.
    SolodeskError
        If the validation suite fails on rows the row rules accepted; nothing is stored.
    """
    run = new_run_id("ingest")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    # Great Expectations takes seconds to import; start it while Polars parses. The import
    # holds the GIL, so the overlap is partial, but it still saves a few tenths of a second.
    warm_up = threading.Thread(target=_import_validator, daemon=True)
    warm_up.start()
    batches = load_sources(specs, options, settings, progress)
    timings["parse"] = time.perf_counter() - started
    t_validate = time.perf_counter()
    warm_up.join()
    timings["import_validator_wait"] = time.perf_counter() - t_validate
    checked = check_batches(batches, settings, f"ingest-{run}", progress, timings)
    timings["validate"] = time.perf_counter() - t_validate - timings.get("flags", 0.0)
    t_store = time.perf_counter()
    quarantine_frames = record_bars(run, checked, options, settings, progress)
    timings["store"] = time.perf_counter() - t_store
    t_catalog = time.perf_counter()
    warnings = refresh(settings)
    timings["catalog"] = time.perf_counter() - t_catalog
    report = None
    if options.reports:
        t_reports = time.perf_counter()
        report = record_reports(settings, run, checked, quarantine_frames)
        timings["reports"] = time.perf_counter() - t_reports
    timings["total"] = time.perf_counter() - started
    return ingest_result(run, checked, report, timings, warnings)


def ingest_result(
    run: str,
    checked: CheckedIngest,
    report: Path | None,
    timings: dict[str, float],
    warnings: list[str],
) -> IngestResult:
    """Return what an ingest run did, once its steps are done (``timings["total"]`` set)."""
    for tally in checked.tallies.values():
        tally.seconds = tally.seconds or timings.get("total", 0.0)
    return IngestResult(
        run=run, series=tuple(t.result() for t in checked.tallies.values()), report=report,
        timings=timings, warnings=tuple(warnings),
    )  # fmt: skip


def _import_validator() -> None:
    import great_expectations  # noqa: F401


_PREFERENCE_LOST = (
    "conflict: another version of this bar is stored (preferred: with spread, then larger "
    "volume, then lower prices)"
)
_REPLACED_BY_RESAMPLE = "conflict: replaced by a resample of the source series"


def _conflict_rows(
    losers: pl.DataFrame, key: SeriesKey, source: str, reason: str = _PREFERENCE_LOST
) -> pl.DataFrame:
    return losers.select(
        pl.lit(source).alias("source"),
        pl.lit(None, dtype=pl.Int64).alias("line"),
        pl.lit(key.symbol).alias("symbol"),
        pl.lit(key.timeframe.value).alias("timeframe"),
        pl.lit(key.side.value).alias("side"),
        pl.col("ts"),
        pl.lit(reason).alias("reason"),
        pl.format("open={} high={} low={} close={} volume={} spread={}", "open", "high", "low",
                  "close", "volume", pl.col("spread").cast(pl.String).fill_null("none"))
        .alias("raw"),
    ).cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]  # fmt: skip


def _by_year(frame: pl.DataFrame) -> dict[int, pl.DataFrame]:
    """Split bars sorted by time into one slice per calendar year (slices share memory)."""
    if frame.height == 0:
        return {}
    ts = frame["ts"]
    years = range(ts[0].year, ts[-1].year + 1)
    starts = [datetime(y, 1, 1, tzinfo=UTC) for y in (*years, years[-1] + 1)]
    bounds = ts.search_sorted(pl.Series(starts, dtype=ts.dtype), side="left").to_list()
    return {
        year: frame.slice(lo, hi - lo)
        for year, lo, hi in zip(years, bounds, bounds[1:], strict=False)
        if hi > lo
    }


def _store_series(
    tx: Transaction,
    store: BarStore,
    key: SeriesKey,
    group: list[tuple[SeriesBatch, str]],
    bars: pl.DataFrame,
    tally: _Tally,
) -> list[pl.DataFrame]:
    entry = tx.manifest["series"].get(key.slug)
    if entry is None and bars.height == 0:
        return []  # every row was set aside: no empty series is created
    info = SeriesInfo.from_dict(entry) if entry else SeriesInfo(key, group[0][0].volume_kind)
    years = set(bars["ts"].dt.year().unique().to_list()) if bars.height else set()
    existing = store.read(key, years=years, info=info) if entry else bars.clear()
    result = merge_bars(existing, bars)
    tally.rows_added += result.added
    tally.rows_duplicate += result.duplicate
    tally.rows_conflicting += result.conflicting
    # Resampled series record sources without a digest ("resample:<slug>").
    known = {(s["name"], s.get("sha256")) for s in info.sources}
    for batch, source_digest in group:
        rank = max(_VOLUME_RANK.index(info.volume_kind), _VOLUME_RANK.index(batch.volume_kind))
        info.volume_kind = _VOLUME_RANK[rank]
        if (batch.source, source_digest) not in known:
            known.add((batch.source, source_digest))
            info.sources.append(
                {"name": batch.source, "sha256": source_digest, "format": batch.format,
                 "rows": batch.rows_read}
            )  # fmt: skip
    changed = {y: f for y, f in _by_year(result.bars).items() if y in years}
    info = tx.put_series(info, changed)
    tally.first, tally.last, tally.version = info.first, info.last, info.version
    if result.losers.height:
        return [_conflict_rows(result.losers, key, ", ".join(b.source for b, _ in group))]
    return []


def _resample_series(
    tx: Transaction,
    store: BarStore,
    key: SeriesKey,
    target: Timeframe,
    anchor_option: Anchor | None,
    settings: Settings,
    conflicts: list[pl.DataFrame],
) -> _Tally | None:
    if target.minutes <= key.timeframe.minutes:
        return None
    entry = tx.manifest["series"][key.slug]
    info = SeriesInfo.from_dict(entry)
    # Read through the transaction's manifest: it names the files staged a moment ago.
    source = store.read(key, info=info)
    anchor: Clock = bar_clock(target, settings.registry.get(key.symbol).calendar, anchor_option)
    kind = resampled_volume_kind(info.volume_kind, key.timeframe)
    bars = resample_bars(source, key.timeframe, target, anchor=anchor, volume_kind=info.volume_kind)
    target_key = SeriesKey(symbol=key.symbol, timeframe=target, side=key.side)
    tally = _Tally(target_key, sources=[f"resample:{key.slug}"], rows_read=bars.height)
    target_entry = tx.manifest["series"].get(target_key.slug)
    target_info = (
        SeriesInfo.from_dict(target_entry) if target_entry else SeriesInfo(target_key, kind)
    )
    # Buckets of another anchor start at other times: mixed, a day would hold two bars.
    anchors = target_info.anchors
    if anchors - {str(anchor)}:
        msg = (
            f"{target_key} holds bars resampled on the {', '.join(sorted(anchors))} clock, not "
            f"on {anchor}: resample with the --anchor it was made with"
        )
        raise UsageError(msg)
    existing = store.read(target_key, info=target_info) if target_entry else bars.clear()
    result = merge_bars(existing, bars)
    tally.rows_added, tally.rows_duplicate = result.added, result.duplicate
    tally.rows_conflicting = result.conflicting
    # A resample is derived from the whole source series, so inside the source's span it
    # replaces what is stored (a bucket that gained bars is recomputed, not merged by
    # preference); replaced bars are kept in the quarantine table as conflicts.
    merged = result.bars
    if bars.height:
        first, last = bars["ts"].min(), bars["ts"].max()
        outside = existing.filter((pl.col("ts") < first) | (pl.col("ts") > last))
        merged = pl.concat([outside, bars]).sort("ts")
        replaced = existing.join(bars, on="ts", how="inner", suffix="_new").filter(
            pl.any_horizontal([pl.col(c) != pl.col(f"{c}_new") for c in ("open", "high", "low",
                                                                          "close", "volume")])
        ).select(existing.columns)  # fmt: skip
        if replaced.height:
            conflicts.append(
                _conflict_rows(replaced, target_key, f"resample:{key.slug}", _REPLACED_BY_RESAMPLE)
            )
    years = set(bars["ts"].dt.year().unique().to_list()) if bars.height else set()
    changed = {y: f for y, f in _by_year(merged).items() if y in years}
    if not any(s["name"] == f"resample:{key.slug}" for s in target_info.sources):
        target_info.sources.append({"name": f"resample:{key.slug}", "anchor": str(anchor)})
    target_info = tx.put_series(target_info, changed)
    tally.first, tally.last = target_info.first, target_info.last
    tally.version = target_info.version
    return tally


def _new_quarantine(store: BarStore, frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    rows = pl.concat(frames).unique(maintain_order=True)
    seen = store.quarantine()
    if seen.height:
        keys = ["source", "line", "ts", "reason", "raw"]
        rows = rows.join(seen.select(keys).unique(), on=keys, how="anti", nulls_equal=True)
    return rows


class ResampleResult(BaseModel):
    """What a resample stored: one entry per target series, and warnings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    series: tuple[SeriesIngest, ...]
    warnings: tuple[str, ...] = ()


def resample_stored(
    key: SeriesKey,
    targets: tuple[Timeframe, ...],
    settings: Settings,
    anchor: Anchor | None = None,
) -> ResampleResult:
    """Resample a stored series to longer timeframes and store the results.

    Raises
    ------
    UsageError
        If the series is not stored, or a target is not longer than its timeframe.
    """
    store = BarStore(settings.store_dir)
    tallies: list[_Tally] = []
    with store.transaction() as tx:
        if key.slug not in tx.manifest["series"]:
            known = ", ".join(sorted(tx.manifest["series"])) or "none yet"
            msg = f"no stored series {key}: ingest it first (stored: {known})"
            raise UsageError(msg)
        conflicts: list[pl.DataFrame] = []
        for target in targets:
            t0 = time.perf_counter()
            tally = _resample_series(tx, store, key, target, anchor, settings, conflicts)
            if tally is None:
                msg = (
                    f"cannot resample {key.timeframe.value} to {target.value}: choose a longer "
                    "timeframe"
                )
                raise UsageError(msg)
            tally.seconds = time.perf_counter() - t0
            tallies.append(tally)
        tx.put_quarantine(new_run_id("resample"), _new_quarantine(store, conflicts))
        tx.commit()
    warnings = refresh(settings)
    return ResampleResult(series=tuple(t.result() for t in tallies), warnings=tuple(warnings))


def move_to_done(path: Path) -> Path:
    """Move an ingested file into the ``done/`` folder beside it and return where it went; a
    file of that name already there is kept, the new one gets the time in its name."""
    done = path.parent / "done"
    done.mkdir(parents=True, exist_ok=True)
    target = done / path.name
    if target.exists():
        target = done / f"{path.stem}-{utc_now().strftime(COMPACT)}{path.suffix}"
    shutil.move(str(path), target)
    return target

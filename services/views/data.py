"""The Data page: what the bar store holds and how sound it is.

- :func:`coverage`: every stored series (symbol, timeframe, side, rows, first and last bar,
  volume kind, spread, sources), and :func:`coverage_chart`, its bars per month as a heatmap;
- :func:`gaps`: per series, the stretches the instrument's trading calendar expected bars in and
  the store has none (an FX weekend is no gap), by the rule ingest's validation flags them with
  (:func:`pipelines.validate.flags.quality_flags`), largest first;
- :func:`quarantine_reasons` and :func:`quarantine_rows`: the rows ingest set aside, counted by
  reason, and the rows themselves, latest run first;
- :func:`validation`: the latest ingest run's record (rows read, stored, quarantined, the
  expectation suite's verdict per series) and the folder of its validation report;
- :func:`feature_builds`: the latest build of each feature set on each series, ``fresh`` while
  building it again would be a cache hit (its version is the one a build would compute now:
  the same series versions and the set's definition in ``params.yaml``), ``stale`` otherwise.

Everything is read from the Parquet stores and their manifests, never through the catalog.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from core.calendars import get_calendar
from core.errors import UsageError
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import iso_z_expr
from core.types import Side
from feature_store.store import BarStore, SeriesInfo
from pipelines.validate.flags import quality_flags
from services.catalog import SeriesRow, list_series, quarantined

if TYPE_CHECKING:
    from services.features import FeatureBuildRow

#: How many of its largest gaps a series lists.
GAPS_LISTED = 10
#: The most quarantined rows the page lists (the counts cover them all).
QUARANTINE_LISTED = 500
#: Numbers inside a quarantine reason, masked so reasons of one kind count together.
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
#: The expectation suite's verdict as an ingest run records it: ``16/16 passed``.
_VERDICT = re.compile(r"(?P<passed>\d+)/(?P<evaluated>\d+) passed")


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def coverage(settings: Settings) -> tuple[SeriesRow, ...]:
    """Return every stored series as ``data list`` shows it (empty on a new desk)."""
    return tuple(list_series(settings))


def _month_counts(store: BarStore, info: SeriesInfo) -> pl.DataFrame:
    files = store.files(info)
    if not files:
        return pl.DataFrame(schema={"month": pl.Date(), "bars": pl.UInt32()})
    return (
        pl.scan_parquet(files)
        .select(pl.col("ts").dt.truncate("1mo").dt.date().alias("month"))
        .group_by("month")
        .agg(pl.len().alias("bars"))
        .collect()
    )


def coverage_chart(settings: Settings) -> Any | None:
    """Return a heatmap of bars per month for every stored series (a Plotly figure), or None
    when nothing is stored."""
    store = BarStore(settings.store_dir)
    frames = [
        _month_counts(store, info).with_columns(pl.lit(info.key.slug).alias("series"))
        for info in store.series()
    ]
    frames = [f for f in frames if f.height]
    if not frames:
        return None
    import plotly.graph_objects as go

    counts = pl.concat(frames).sort("month")
    table = counts.pivot(on="month", index="series", values="bars", sort_columns=True)
    months = [c for c in table.columns if c != "series"]
    figure = go.Figure(
        go.Heatmap(
            z=table.select(months).to_numpy(),
            x=months,
            y=table["series"].to_list(),
            colorscale="Blues",
            colorbar={"title": "bars"},
            hovertemplate="%{y}<br>%{x|%Y-%m}: %{z} bars<extra></extra>",
        )
    )
    figure.update_layout(
        title="Bars per month",
        height=max(220, 80 + 40 * table.height),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"type": "date", "tickformat": "%Y-%m"},
    )
    return figure


class GapRow(_View):
    """One gap: no bar after ``after`` until ``before`` (bar open times, ISO-8601 UTC with Z)
    where the calendar expected ``missing_bars``."""

    after: str
    before: str
    missing_bars: int


class SeriesGaps(_View):
    """The gaps of one stored series: how many, the bars they miss, the largest ones.

    ``checked`` is False when the series' timeframe has no expected-bar rule (weekly and
    monthly bars) or its instrument is unknown; ``note`` then says why.
    """

    series: str
    symbol: str
    timeframe: Timeframe
    side: Side
    rows: int
    gaps: int
    missing_bars: int
    largest: tuple[GapRow, ...]
    checked: bool = True
    note: str = ""


def _series_gaps(settings: Settings, store: BarStore, info: SeriesInfo) -> SeriesGaps:
    key = info.key
    note = ""
    flags = None
    if not (key.timeframe.is_intraday or key.timeframe is Timeframe.D1):
        note = f"{key.timeframe.value} bars have no expected-bar rule"
    else:
        try:
            calendar = get_calendar(settings.registry.get(key.symbol).calendar)
        except UsageError as exc:
            note = str(exc)
        else:
            flags = quality_flags(
                store.read(key, info=info), key.timeframe, calendar,
                jump_sigmas=settings.validation.jump_sigmas,
                jump_window=settings.validation.jump_window,
                listed=GAPS_LISTED,
            )  # fmt: skip
    return SeriesGaps(
        series=key.slug,
        symbol=key.symbol,
        timeframe=key.timeframe,
        side=key.side,
        rows=info.rows,
        gaps=flags.gaps if flags else 0,
        missing_bars=flags.missing_bars if flags else 0,
        largest=tuple(GapRow.model_validate(g) for g in flags.largest_gaps) if flags else (),
        checked=flags is not None,
        note=note,
    )


def gaps(settings: Settings) -> tuple[SeriesGaps, ...]:
    """Return the gaps of every stored series against its instrument's trading calendar."""
    store = BarStore(settings.store_dir)
    return tuple(_series_gaps(settings, store, info) for info in store.series())


def quarantine_reasons(settings: Settings) -> pl.DataFrame:
    """Return the quarantined rows counted by kind of reason (numbers masked) and series, most
    first: ``reason, symbol, timeframe, side, rows, latest_run``."""
    rows = quarantined(settings)
    return (
        rows.with_columns(pl.col("reason").str.replace_all(_NUMBER, "…"))
        .group_by("reason", "symbol", "timeframe", "side")
        .agg(pl.len().alias("rows"), pl.col("run").max().alias("latest_run"))
        .sort(["rows", "reason"], descending=[True, False])
    )


def quarantine_rows(settings: Settings, limit: int = QUARANTINE_LISTED) -> pl.DataFrame:
    """Return the latest ``limit`` quarantined rows with their reason, source, line and run,
    latest run first."""
    rows = quarantined(settings).head(limit)
    return rows.select(
        "run", "symbol", "timeframe", "side",
        iso_z_expr(pl.col("ts")).alias("ts"),
        "reason", "source", "line", "raw",
    )  # fmt: skip


class SeriesValidation(_View):
    """What one ingest run did to one series, as its record keeps it."""

    series: str
    rows_read: int
    rows_added: int
    rows_duplicate: int
    rows_conflicting: int
    rows_quarantined: int
    jumps: int
    gaps: int
    expectations: str
    passed: bool | None


class Validation(_View):
    """The latest ingest run: its id and time, sources, each series' result, and its report.

    ``report`` is the folder of the run's Great Expectations data docs (None when the run wrote
    none); ``runs`` counts the ingest runs the store records.
    """

    run: str
    at: str
    sources: tuple[str, ...]
    series: tuple[SeriesValidation, ...]
    report: str | None
    runs: int


def _passed(verdict: str) -> bool | None:
    """Return whether every expectation passed, from a verdict ``16/16 passed (...)``."""
    found = _VERDICT.match(verdict)
    return None if found is None else found["passed"] == found["evaluated"]


def _series_validation(entry: dict[str, Any]) -> SeriesValidation:
    verdict = str(entry.get("expectations") or "")
    return SeriesValidation(
        series=f"{entry['symbol']}.{entry['timeframe']}.{entry['side']}",
        rows_read=int(entry.get("rows_read", 0)),
        rows_added=int(entry.get("rows_added", 0)),
        rows_duplicate=int(entry.get("rows_duplicate", 0)),
        rows_conflicting=int(entry.get("rows_conflicting", 0)),
        rows_quarantined=int(entry.get("rows_quarantined", 0)),
        jumps=int(entry.get("jumps", 0)),
        gaps=int(entry.get("gaps", 0)),
        expectations=verdict or "not run",
        passed=_passed(verdict),
    )


def validation(settings: Settings) -> Validation | None:
    """Return the latest ingest run's validation, or None before the first ingest."""
    records = BarStore(settings.store_dir).runs()
    if not records:
        return None
    record = records[-1]  # the store lists runs in the order they were committed
    run = str(record["run"])
    folder: Path = settings.ingest_report_dir(run)
    series = tuple(_series_validation(s) for s in record.get("series", []))
    return Validation(
        run=run,
        at=str(record.get("at", "")),
        sources=tuple(str(s) for s in record.get("sources", [])),
        series=series,
        report=str(folder.resolve()) if folder.is_dir() else None,
        runs=len(records),
    )


class FeatureBuildState(_View):
    """The latest build of a feature set on a series, and whether it is still current.

    ``state`` is ``fresh`` when building it again would find it (same series versions and the
    same definition in ``params.yaml``), else ``stale``, ``why`` saying what changed.
    """

    feature_set: str
    symbol: str
    timeframe: str
    side: str
    version: str
    rows: int
    features: int
    created: str
    state: str
    why: str = ""
    note: str = ""


def _current_version(
    settings: Settings, sets: dict[str, Any], row: FeatureBuildRow
) -> tuple[str | None, str]:
    """Return the version a build of ``row``'s set on its series would have now, or None and
    why it cannot be worked out."""
    from services.features import load_build_inputs

    config = sets.get(row.feature_set)
    if config is None:
        return None, f"params.yaml no longer declares the set {row.feature_set!r}"
    try:
        inputs = load_build_inputs(
            settings, row.feature_set, config, row.symbol, Timeframe(row.timeframe),
            Side(row.side),
        )  # fmt: skip
    except UsageError as exc:
        return None, str(exc)
    return inputs.version, ""


def feature_builds(
    settings: Settings, params: Path = Path("params.yaml")
) -> tuple[FeatureBuildState, ...]:
    """Return the latest build of each feature set on each series, fresh or stale.

    Freshness is the feature build's cache rule: the build's version against the version a
    build would compute now (:func:`services.features.load_build_inputs`). Without a readable
    ``params`` only the series versions are compared.
    """
    from services.features import list_builds, load_feature_sets

    rows = list_builds(settings, latest=True)
    if not rows:
        return ()
    sets: dict[str, Any] | None
    try:
        sets = dict(load_feature_sets(params))
    except UsageError:
        sets = None
    note = "" if sets is not None else f"{params} not read: only the series versions compared"
    found = []
    for row in rows:
        why = "a series it was built from has changed" if row.cache == "stale" else ""
        if not why and sets is not None:
            version, problem = _current_version(settings, sets, row)
            if version is None:
                why = problem
            elif version != row.version:
                why = "the set's definition in params.yaml has changed"
        found.append(
            FeatureBuildState(
                feature_set=row.feature_set, symbol=row.symbol, timeframe=row.timeframe,
                side=row.side, version=row.version, rows=row.rows, features=row.features,
                created=row.created, state="stale" if why else "fresh", why=why, note=note,
            )
        )  # fmt: skip
    return tuple(found)

"""Build feature sets on stored series: read, compute, check, store, refresh the catalog.

A build of a feature set on one series reads that series and every series the set joins
(context timeframes of the same symbol, cross-asset symbols), all from the same bar store. Its
version is::

    version = sha256({"definition": definition hash of the set,
                      "sources": {series slug: series version, ...}})[:16]

so it changes when the definition changes and when any series read changes. A version already
stored with its file intact is a cache hit: nothing is computed. Otherwise the table is
computed (:func:`pipelines.features.sets.feature_table`), checked by the Great Expectations
feature suite (:mod:`pipelines.validate.feature_suite`), written, and recorded in the index as
the latest build of its set and series; a failed check stores nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from core.clocks import BROKER, Clock, parse_clock
from core.clocks import UTC as UTC_CLOCK
from core.errors import SolodeskError, UsageError
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import SeriesKey, Side
from feature_store.feature_index import FeatureBuild, FeatureStore, feature_file
from feature_store.store import BarStore, SeriesInfo, iso

if TYPE_CHECKING:
    from pipelines.features.sets import (
        FeatureSetConfig,
        FeatureTable,
        ResolvedFeatureSet,
        SeriesFrame,
    )

Progress = Callable[[str, int, int], None]
_SIDE_PREFERENCE = (Side.BID, Side.MID, Side.ASK)


@dataclass
class FeatureBuildOutcome:
    """What one build request did: the build, and whether it came from the cache."""

    build: FeatureBuild
    cache_hit: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Return the JSON line of this build."""
        b = self.build
        return {
            "feature_set": b.feature_set,
            "symbol": b.symbol,
            "timeframe": b.timeframe,
            "side": b.side,
            "version": b.version,
            "cache_hit": self.cache_hit,
            "rows": b.rows,
            "features": b.features,
            "labels": b.labels,
            "first": b.first,
            "last": b.last,
            "sources": b.sources,
            "expectations": _verdict(b.validation),
            "seconds": round(self.seconds, 3),
            "file": b.file,
        }


def _verdict(validation: Mapping[str, Any]) -> str:
    if not validation:
        return ""
    return f"{validation.get('successful', 0)}/{validation.get('evaluated', 0)} passed"


def features_root(settings: Settings) -> Path:
    """Return the folder of the feature store, ``SOLODESK_HOME/features``."""
    return settings.home / "features"


def build_version(definition: str, sources: Mapping[str, str]) -> str:
    """Return the version of a build: a hash of the set's definition and its source versions."""
    text = json.dumps({"definition": definition, "sources": dict(sources)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stored(store: BarStore) -> str:
    return ", ".join(str(s.key) for s in store.series()) or "none"


def find_series(
    store: BarStore, settings: Settings, symbol: str, timeframe: Timeframe, side: Side | None
) -> SeriesInfo:
    """Return the stored series of a symbol and timeframe (and side, needed when several are).

    Raises
    ------
    UsageError
        If no such series is stored, or several sides are and ``side`` is not given.
    """
    canonical = settings.registry.canonical(symbol)
    matches = [
        s
        for s in store.series()
        if s.key.symbol == canonical
        and s.key.timeframe is timeframe
        and (side is None or s.key.side is side)
    ]
    if not matches:
        which = f"{canonical} {timeframe.value}" + (f" {side.value}" if side else "")
        msg = (
            f"no stored series {which} (stored: {_stored(store)}): ingest it first "
            f"(solodesk ingest FILE), or resample it (solodesk resample --symbol {canonical} "
            f"--source M1 --timeframe {timeframe.value})"
        )
        raise UsageError(msg)
    if len(matches) > 1:
        sides = ", ".join(s.key.side.value for s in matches)
        raise UsageError(f"{canonical} {timeframe.value} is stored on sides {sides}: give --side")
    return matches[0]


def _context_series(
    store: BarStore, base: SeriesInfo, timeframe: Timeframe, feature_set: str
) -> SeriesInfo:
    key = SeriesKey(symbol=base.key.symbol, timeframe=timeframe, side=base.key.side)
    info = store.info(key)
    if info is None:
        msg = (
            f"feature set {feature_set!r} needs the context series {key} (stored: "
            f"{_stored(store)}): create it with  solodesk resample --symbol {key.symbol} "
            f"--source {base.key.timeframe.value} --side {key.side.value} "
            f"--timeframe {timeframe.value}"
        )
        raise UsageError(msg)
    return info


def _cross_series(
    store: BarStore, settings: Settings, base: SeriesInfo, symbol: str, feature_set: str
) -> SeriesInfo:
    canonical = settings.registry.canonical(symbol)
    if canonical == base.key.symbol:
        msg = f"feature set {feature_set!r} names {canonical}, the series' own symbol, as a cross asset"
        raise UsageError(msg)
    stored = {
        s.key.side: s
        for s in store.series()
        if s.key.symbol == canonical and s.key.timeframe is base.key.timeframe
    }
    for side in (base.key.side, *_SIDE_PREFERENCE):
        if side in stored:
            return stored[side]
    tf = base.key.timeframe.value
    msg = (
        f"feature set {feature_set!r} needs the cross-asset series {canonical} {tf} (stored: "
        f"{_stored(store)}): ingest it (solodesk ingest FILE --symbol {canonical}) or resample "
        f"it (solodesk resample --symbol {canonical} --source M1 --timeframe {tf})"
    )
    raise UsageError(msg)


def series_clock(info: SeriesInfo, settings: Settings) -> Clock:
    """Return the clock a series' bars were cut on: the resample anchor it records, else the
    instrument's (broker day for FX H4 and longer, UTC otherwise)."""
    anchors = {str(s["anchor"]) for s in info.sources if "anchor" in s}
    if len(anchors) == 1:
        return parse_clock(anchors.pop())
    long_bars = info.key.timeframe in (Timeframe.H4, Timeframe.D1, Timeframe.W1, Timeframe.MN1)
    calendar = settings.registry.get(info.key.symbol).calendar
    return BROKER if long_bars and calendar == "fx" else UTC_CLOCK


@dataclass(frozen=True)
class _Sources:
    base: SeriesInfo
    context: dict[Timeframe, SeriesInfo]
    cross: dict[str, SeriesInfo]

    def versions(self) -> dict[str, str]:
        infos = [self.base, *self.context.values(), *self.cross.values()]
        return {info.key.slug: info.version for info in infos}


def _sources(
    store: BarStore,
    settings: Settings,
    feature_set: str,
    resolved: ResolvedFeatureSet,
    base: SeriesInfo,
) -> _Sources:
    for ctx in resolved.context:
        if ctx.timeframe.minutes <= base.key.timeframe.minutes:
            msg = (
                f"feature set {feature_set!r} takes context from {ctx.timeframe.value}, which is "
                f"not longer than {base.key.timeframe.value}: build it on a shorter timeframe"
            )
            raise UsageError(msg)
    context = {
        ctx.timeframe: _context_series(store, base, ctx.timeframe, feature_set)
        for ctx in resolved.context
    }
    cross = {
        c.symbol: _cross_series(store, settings, base, c.symbol, feature_set)
        for c in resolved.cross_assets
    }
    return _Sources(base, context, cross)


def _frame(store: BarStore, settings: Settings, info: SeriesInfo) -> SeriesFrame:
    from pipelines.features.sets import SeriesFrame

    return SeriesFrame(
        bars=store.read(info.key, info=info),
        timeframe=info.key.timeframe,
        clock=series_clock(info, settings),
        has_spread=info.has_spread,
        volume_kind=info.volume_kind,
    )


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def _refresh_catalog(store: BarStore, settings: Settings) -> list[str]:
    import duckdb

    from feature_store.catalog import rebuild_catalog

    try:
        rebuild_catalog(store, settings.catalog_path)
    except duckdb.IOException as exc:
        return [
            f"the DuckDB catalog {settings.catalog_path} is held by another process ({exc}); "
            "the features are stored and the catalog will be rebuilt when it is next opened"
        ]
    return []


def build_feature_set(
    settings: Settings,
    feature_set: str,
    config: FeatureSetConfig,
    symbol: str,
    timeframe: Timeframe,
    side: Side | None = None,
    *,
    progress: Progress | None = None,
    refresh_catalog: bool = True,
) -> FeatureBuildOutcome:
    """Build a feature set on one stored series, or find the identical build already stored.

    Parameters
    ----------
    settings
        The desk; bars come from ``settings.store_dir``, builds go to ``SOLODESK_HOME/features``.
    feature_set, config
        The set's name and definition (from ``params.yaml``).
    symbol, timeframe, side
        The series; ``side`` may be left out when only one side is stored.
    progress
        Called with ``(stage, done, total)`` as the build advances.
    refresh_catalog
        Rebuild the DuckDB catalog after a change (off when the caller does it once at the end).

    Raises
    ------
    UsageError
        If the series, a context series or a cross-asset series is not stored (the message
        names it and the command that creates it), or the set does not fit the series.
    SolodeskError
        If the feature checks fail; the message lists the failing expectations and nothing is
        stored.
    """
    started = time.perf_counter()
    store = BarStore(settings.store_dir)
    features = FeatureStore(features_root(settings))
    base = find_series(store, settings, symbol, timeframe, side)
    resolved = config.resolve().for_timeframe(base.key.timeframe)
    sources = _sources(store, settings, feature_set, resolved, base)
    definition = resolved.definition_hash()
    version = build_version(definition, sources.versions())
    existing = features.find(feature_set, base.key, version)
    if existing is not None and features.is_complete(existing):
        warnings: list[str] = []
        if not existing.latest:
            with features.transaction() as tx:
                tx.mark_latest(feature_set, base.key, version)
                tx.commit()
            existing.latest = True
            if refresh_catalog:
                warnings = _refresh_catalog(store, settings)
        return FeatureBuildOutcome(existing, True, time.perf_counter() - started, warnings)

    steps = 5

    def step(done: int) -> None:
        if progress:
            progress("build", done, steps)

    from pipelines.features.sets import feature_table

    series = _frame(store, settings, base)
    context = {tf: _frame(store, settings, info) for tf, info in sources.context.items()}
    cross = {name: _frame(store, settings, info) for name, info in sources.cross.items()}
    step(1)
    table = feature_table(resolved, series, context, cross)
    step(2)
    validation = _check(settings, feature_set, base.key, version, table)
    step(3)
    relative = feature_file(feature_set, base.key, version)
    sha256 = features.write_file(relative, _parquet_bytes(table.frame))
    step(4)
    ts = table.frame["ts"]
    build = FeatureBuild(
        feature_set=feature_set,
        symbol=base.key.symbol,
        timeframe=base.key.timeframe.value,
        side=base.key.side.value,
        version=version,
        definition=definition,
        file=relative,
        sha256=sha256,
        rows=table.frame.height,
        features=sum(c.role != "label" for c in table.columns),
        columns=[c.as_dict() for c in table.columns],
        sources=sources.versions(),
        first=iso(ts.min()) if ts.len() else None,  # type: ignore[arg-type]
        last=iso(ts.max()) if ts.len() else None,  # type: ignore[arg-type]
        created=iso(datetime.now(UTC)) or "",
        seconds=round(time.perf_counter() - started, 3),
        validation=validation,
        latest=True,
    )
    with features.transaction() as tx:
        tx.record(build)
        tx.commit()
    step(5)
    warnings = _refresh_catalog(store, settings) if refresh_catalog else []
    return FeatureBuildOutcome(build, False, time.perf_counter() - started, warnings)


def _check(
    settings: Settings, feature_set: str, key: SeriesKey, version: str, table: FeatureTable
) -> dict[str, Any]:
    """Run the feature suite; raise with the failing expectations, else return its summary."""
    from pipelines.validate.feature_suite import ColumnRule, failed_checks, validate_features

    rules = [
        ColumnRule(c.name, c.required_from, c.lower, c.upper)
        for c in table.columns
        if table.frame.schema[c.name].is_numeric()
    ]
    name = f"features-{feature_set}-{key.slug}-{version}"
    results = validate_features(table.frame, rules, name)
    evaluated = sum(int(r.statistics["evaluated_expectations"]) for r in results)
    successful = sum(int(r.statistics["successful_expectations"]) for r in results)
    if all(r.success for r in results):
        return {"success": True, "evaluated": evaluated, "successful": successful,
                "columns": len(rules)}  # fmt: skip
    from feature_store.reports import render_data_docs, write_report

    folder = settings.reports_dir / name
    for n, result in enumerate(results, 1):
        if not result.success:
            write_report(folder, f"validation-{n}.html", render_data_docs(result))
    failures = "\n  ".join(failed_checks(results, table.frame, rules))
    msg = (
        f"feature set {feature_set!r} on {key}: the feature checks failed, nothing was stored:\n"
        f"  {failures}\nGreat Expectations report: {folder}"
    )
    raise SolodeskError(msg)


@dataclass
class BuildAllOutcome:
    """Builds of every set on every series it fits, and the series it was not built on."""

    builds: list[FeatureBuildOutcome]
    skipped: list[str]
    warnings: list[str]


def build_all(
    settings: Settings,
    sets: Mapping[str, FeatureSetConfig],
    *,
    progress: Progress | None = None,
) -> BuildAllOutcome:
    """Build each set on every stored series it fits; refresh the catalog once at the end.

    A set does not fit a series whose symbol is one of its cross assets; such pairs are listed
    as skipped. On a series as long as a context timeframe or longer, that context is left out
    (:meth:`~pipelines.features.sets.ResolvedFeatureSet.for_timeframe`).
    A series the set needs but the store lacks is an error, as for a single build.
    """
    store = BarStore(settings.store_dir)
    series = store.series()
    if not series:
        raise UsageError("no series stored yet: ingest some first (solodesk ingest FILE)")
    jobs: list[tuple[str, FeatureSetConfig, SeriesInfo]] = []
    skipped: list[str] = []
    for name, config in sets.items():
        resolved = config.resolve()
        cross = {settings.registry.canonical(c.symbol) for c in resolved.cross_assets}
        for info in series:
            if info.key.symbol in cross:
                skipped.append(f"{name} on {info.key}: the symbol is one of its cross assets")
            else:
                jobs.append((name, config, info))
    builds = []
    for n, (name, config, info) in enumerate(jobs, 1):
        builds.append(
            build_feature_set(
                settings, name, config, info.key.symbol, info.key.timeframe, info.key.side,
                refresh_catalog=False,
            )
        )  # fmt: skip
        if progress:
            progress("feature sets", n, len(jobs))
    warnings = _refresh_catalog(store, settings) if jobs else []
    return BuildAllOutcome(builds, skipped, warnings)


def read_build(settings: Settings, build: FeatureBuild) -> pl.DataFrame:
    """Return the stored table of a build."""
    return pl.read_parquet(FeatureStore(features_root(settings)).path(build))


def column_summary(frame: pl.DataFrame, build: FeatureBuild) -> pl.DataFrame:
    """Return one row per stored column: role, source, warm-up, nulls, min, max, mean.

    NaN counts as null; min, max and mean are over the numeric values (label ends and barrier
    names have none).
    """
    rows = []
    for column in build.columns:
        values = frame[column["name"]]
        numeric = values.dtype.is_numeric()
        clean = values.cast(pl.Float64).fill_nan(None) if numeric else values
        rows.append(
            {
                "column": column["name"],
                "role": column["role"],
                "source": column["source"],
                "warmup": column["warmup"],
                "required_from": column["required_from"],
                "nulls": clean.null_count(),
                "min": clean.min() if numeric else None,
                "max": clean.max() if numeric else None,
                "mean": clean.mean() if numeric else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={"column": pl.String, "role": pl.String, "source": pl.String,
                "warmup": pl.Int64, "required_from": pl.Int64, "nulls": pl.Int64,
                "min": pl.Float64, "max": pl.Float64, "mean": pl.Float64},
    )  # fmt: skip

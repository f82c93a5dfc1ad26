"""The feature build job, and the queries over stored builds.

A build of a feature set on one series reads that series and every series the set joins
(context timeframes of the same symbol, cross-asset symbols), all from the same bar store. Its
version (:func:`feature_store.feature_index.build_version`) changes when the set's definition
changes and when any series read changes. A version already stored with its file intact is a
cache hit: nothing is computed. Otherwise the steps are:

- :func:`load_build_inputs`: the series, the sources it joins, and the version;
- compute: :func:`pipelines.features.sets.feature_table`;
- :func:`check_features`: the Great Expectations feature suite
  (:mod:`pipelines.validate.feature_suite`); a failure writes its data docs and stores nothing;
- :func:`record_build`: the Parquet file and the index entry, marked latest;
- the catalog is refreshed.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from core.errors import SolodeskError, UsageError
from core.params import read_params
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import iso_z_or_none, utc_now
from core.types import SeriesKey, Side
from feature_store.catalog import refresh_catalog
from feature_store.feature_index import FeatureBuild, FeatureStore, build_version, feature_file
from feature_store.reports import write_report
from feature_store.series import SIDE_PREFERENCE, find_series, series_frame, stored_list
from feature_store.store import BarStore, SeriesInfo
from pipelines.features import default_feature_set
from pipelines.features.sets import (
    FeatureSetConfig,
    FeatureTable,
    ResolvedFeatureSet,
    feature_table,
    parse_feature_sets,
)
from pipelines.features.summary import column_summary
from pipelines.validate.report import render_data_docs
from services.common import Progress


def load_feature_sets(params_path: Path) -> dict[str, FeatureSetConfig]:
    """Return the feature sets declared in the ``features`` section of ``params_path``.

    Raises
    ------
    UsageError
        If the file is missing, unreadable or malformed, or declares no feature sets.
    """
    params = read_params(params_path)
    section = params.require_features()
    return parse_feature_sets(section.model_dump(), str(params_path))


def load_feature_set(params_path: Path, name: str) -> FeatureSetConfig:
    """Return feature set ``name`` declared in ``params_path``.

    Raises
    ------
    UsageError
        As :func:`load_feature_sets`, or if the file does not declare the set.
    """
    sets = load_feature_sets(params_path)
    if name not in sets:
        msg = f"{params_path}: no feature set {name!r} (declared: {', '.join(sorted(sets))})"
        raise UsageError(msg)
    return sets[name]


class FeatureBuildResult(BaseModel):
    """What one build request did; its dump is the build's ``--json`` line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature_set: str
    symbol: str
    timeframe: str
    side: str
    version: str
    cache_hit: bool
    rows: int
    features: int
    labels: tuple[str, ...]
    first: str | None
    last: str | None
    sources: dict[str, str]
    expectations: str
    seconds: float
    file: str
    warnings: tuple[str, ...] = Field(default=(), exclude=True)

    @classmethod
    def of(
        cls, build: FeatureBuild, cache_hit: bool, seconds: float, warnings: list[str]
    ) -> FeatureBuildResult:
        """Return the result of a request that found or made ``build``."""
        checks = build.validation
        verdict = (
            f"{checks.get('successful', 0)}/{checks.get('evaluated', 0)} passed" if checks else ""
        )
        return cls(
            feature_set=build.feature_set, symbol=build.symbol, timeframe=build.timeframe,
            side=build.side, version=build.version, cache_hit=cache_hit, rows=build.rows,
            features=build.features, labels=tuple(build.labels), first=build.first,
            last=build.last, sources=dict(build.sources), expectations=verdict,
            seconds=round(seconds, 3), file=build.file, warnings=tuple(warnings),
        )  # fmt: skip


# -- load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildInputs:
    """A build to make: the set resolved for the series, the series it reads, its version."""

    feature_set: str
    resolved: ResolvedFeatureSet
    base: SeriesInfo
    context: dict[Timeframe, SeriesInfo]
    cross: dict[str, SeriesInfo]

    @property
    def sources(self) -> dict[str, str]:
        """Return the version of every series the build reads, by slug."""
        infos = [self.base, *self.context.values(), *self.cross.values()]
        return {info.key.slug: info.version for info in infos}

    @cached_property
    def definition(self) -> str:
        """Return the hash of the set's definition."""
        return self.resolved.definition_hash()

    @cached_property
    def version(self) -> str:
        """Return the build's version (:func:`feature_store.feature_index.build_version`)."""
        return build_version(self.definition, self.sources)


def _context_series(
    store: BarStore, base: SeriesInfo, timeframe: Timeframe, feature_set: str
) -> SeriesInfo:
    key = SeriesKey(symbol=base.key.symbol, timeframe=timeframe, side=base.key.side)
    info = store.info(key)
    if info is None:
        msg = (
            f"feature set {feature_set!r} needs the context series {key} (stored: "
            f"{stored_list(store)}): create it with  solodesk resample --symbol {key.symbol} "
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
    tf = base.key.timeframe
    try:
        return find_series(store, settings.registry, canonical, tf,
                           prefer=(base.key.side, *SIDE_PREFERENCE))  # fmt: skip
    except UsageError:
        msg = (
            f"feature set {feature_set!r} needs the cross-asset series {canonical} {tf.value} "
            f"(stored: {stored_list(store)}): ingest it (solodesk ingest FILE --symbol "
            f"{canonical}) or resample it (solodesk resample --symbol {canonical} --source M1 "
            f"--timeframe {tf.value})"
        )
        raise UsageError(msg) from None


def load_build_inputs(
    settings: Settings,
    feature_set: str,
    config: FeatureSetConfig,
    symbol: str,
    timeframe: Timeframe,
    side: Side | None = None,
) -> BuildInputs:
    """Find the series a build reads and work out its version.

    Raises
    ------
    UsageError
        If the series, a context series or a cross-asset series is not stored (the message
        names it and the command that creates it), or the set does not fit the series.
    """
    store = BarStore(settings.store_dir)
    base = find_series(store, settings.registry, symbol, timeframe, side)
    resolved = config.resolve().for_timeframe(base.key.timeframe)
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
    return BuildInputs(feature_set, resolved, base, context, cross)


def compute_table(settings: Settings, inputs: BuildInputs) -> FeatureTable:
    """Read the bars a build needs and compute its table (context and cross assets joined)."""
    store = BarStore(settings.store_dir)
    registry = settings.registry
    series = series_frame(store, registry, inputs.base)
    context = {tf: series_frame(store, registry, info) for tf, info in inputs.context.items()}
    cross = {name: series_frame(store, registry, info) for name, info in inputs.cross.items()}
    return feature_table(inputs.resolved, series, context, cross)


# -- check and record ------------------------------------------------------------------------


def check_features(settings: Settings, inputs: BuildInputs, table: FeatureTable) -> dict[str, Any]:
    """Run the feature suite; on failure write its data docs and raise, else return its summary.

    Raises
    ------
    SolodeskError
        Listing the failing expectations; nothing is stored.
    """
    from pipelines.validate.feature_suite import ColumnRule, failed_checks, validate_features

    key = inputs.base.key
    rules = [
        ColumnRule(c.name, c.required_from, c.lower, c.upper)
        for c in table.columns
        if table.frame.schema[c.name].is_numeric()
    ]
    name = f"features-{inputs.feature_set}-{key.slug}-{inputs.version}"
    results = validate_features(table.frame, rules, name)
    evaluated = sum(int(r.statistics["evaluated_expectations"]) for r in results)
    successful = sum(int(r.statistics["successful_expectations"]) for r in results)
    if all(r.success for r in results):
        return {"success": True, "evaluated": evaluated, "successful": successful,
                "columns": len(rules)}  # fmt: skip
    folder = settings.feature_check_report_dir(name)
    for n, result in enumerate(results, 1):
        if not result.success:
            write_report(folder, f"validation-{n}.html", render_data_docs(result))
    failures = "\n  ".join(failed_checks(results, table.frame, rules))
    msg = (
        f"feature set {inputs.feature_set!r} on {key}: the feature checks failed, nothing was "
        f"stored:\n  {failures}\nGreat Expectations report: {folder}"
    )
    raise SolodeskError(msg)


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def record_build(
    settings: Settings,
    inputs: BuildInputs,
    table: FeatureTable,
    validation: dict[str, Any],
    seconds: float,
) -> FeatureBuild:
    """Write a build's table and record it in the index as the latest of its set and series."""
    features = FeatureStore(settings.features_dir)
    base = inputs.base.key
    relative = feature_file(inputs.feature_set, base, inputs.version)
    sha256 = features.write_file(relative, _parquet_bytes(table.frame))
    ts = table.frame["ts"]
    build = FeatureBuild(
        feature_set=inputs.feature_set,
        symbol=base.symbol,
        timeframe=base.timeframe.value,
        side=base.side.value,
        version=inputs.version,
        definition=inputs.definition,
        file=relative,
        sha256=sha256,
        rows=table.frame.height,
        features=sum(c.role != "label" for c in table.columns),
        columns=[c.as_dict() for c in table.columns],
        sources=inputs.sources,
        first=iso_z_or_none(ts.min()) if ts.len() else None,  # type: ignore[arg-type]
        last=iso_z_or_none(ts.max()) if ts.len() else None,  # type: ignore[arg-type]
        created=iso_z_or_none(utc_now()) or "",
        seconds=round(seconds, 3),
        validation=validation,
        latest=True,
    )
    with features.transaction() as tx:
        tx.record(build)
        tx.commit()
    return build


def cached_build(settings: Settings, inputs: BuildInputs) -> tuple[FeatureBuild | None, bool]:
    """Return the stored build of this version, marked latest again, or None; and whether the
    index changed (the mark moved)."""
    features = FeatureStore(settings.features_dir)
    existing = features.find(inputs.feature_set, inputs.base.key, inputs.version)
    if existing is None or not features.is_complete(existing):
        return None, False
    if existing.latest:
        return existing, False
    with features.transaction() as tx:
        tx.mark_latest(inputs.feature_set, inputs.base.key, inputs.version)
        tx.commit()
    existing.latest = True
    return existing, True


def build_feature_set(
    settings: Settings,
    feature_set: str,
    config: FeatureSetConfig,
    symbol: str,
    timeframe: Timeframe,
    side: Side | None = None,
    *,
    progress: Progress | None = None,
    refresh: bool = True,
) -> FeatureBuildResult:
    """Build a feature set on one stored series, or find the identical build already stored.

    Parameters
    ----------
    settings
        The desk; bars come from its store, builds go to its feature store.
    feature_set, config
        The set's name and definition (from ``params.yaml``).
    symbol, timeframe, side
        The series; ``side`` may be left out when only one side is stored.
    progress
        Called with ``(stage, done, total)`` as the build advances.
    refresh
        Rebuild the DuckDB catalog after a change (off when the caller does it once at the end).

    Raises
    ------
    UsageError
        If a series the set reads is not stored, or the set does not fit the series.
    SolodeskError
        If the feature checks fail; the message lists the failing expectations and nothing is
        stored.
    """
    started = time.perf_counter()
    inputs = load_build_inputs(settings, feature_set, config, symbol, timeframe, side)
    existing, changed = cached_build(settings, inputs)
    if existing is not None:
        warnings = refresh_catalog(settings, "the features") if refresh and changed else []
        return FeatureBuildResult.of(existing, True, time.perf_counter() - started, warnings)
    steps = 5

    def step(done: int) -> None:
        if progress:
            progress("build", done, steps)

    step(1)
    table = compute_table(settings, inputs)
    step(2)
    validation = check_features(settings, inputs, table)
    step(3)
    build = record_build(settings, inputs, table, validation, time.perf_counter() - started)
    step(5)
    warnings = refresh_catalog(settings, "the features") if refresh else []
    return FeatureBuildResult.of(build, False, time.perf_counter() - started, warnings)


class BuildAllResult(BaseModel):
    """Builds of every set on every series it fits, and the series it was not built on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    builds: tuple[FeatureBuildResult, ...]
    skipped: tuple[str, ...]
    warnings: tuple[str, ...]


def build_all(
    settings: Settings,
    sets: Mapping[str, FeatureSetConfig],
    *,
    progress: Progress | None = None,
) -> BuildAllResult:
    """Build each set on every stored series it fits; refresh the catalog once at the end.

    A set does not fit a series whose symbol is one of its cross assets; such pairs are listed
    as skipped. On a series as long as a context timeframe or longer, that context is left out
    (:meth:`~pipelines.features.sets.ResolvedFeatureSet.for_timeframe`).
    A series the set needs but the store lacks is an error, as for a single build.
    """
    series = BarStore(settings.store_dir).series()
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
                refresh=False,
            )
        )  # fmt: skip
        if progress:
            progress("feature sets", n, len(jobs))
    warnings = refresh_catalog(settings, "the features") if jobs else []
    return BuildAllResult(builds=tuple(builds), skipped=tuple(skipped), warnings=tuple(warnings))


# -- queries ---------------------------------------------------------------------------------


class FeatureBuildRow(BaseModel):
    """One stored build as ``features list`` shows it; ``cache`` is ``fresh`` or ``stale``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature_set: str
    symbol: str
    timeframe: str
    side: str
    version: str
    rows: int
    features: int
    labels: tuple[str, ...]
    created: str
    seconds: float
    latest: bool
    cache: str


def list_builds(
    settings: Settings,
    *,
    feature_set: str | None = None,
    symbol: str | None = None,
    latest: bool = False,
) -> list[FeatureBuildRow]:
    """Return stored builds, optionally of one set or symbol, or only the latest ones.

    ``cache`` is ``fresh`` while every series a build read is unchanged (building it again is
    a cache hit) and ``stale`` once one has changed.
    """
    current = {s.key.slug: s.version for s in BarStore(settings.store_dir).series()}
    canonical = settings.registry.canonical(symbol) if symbol else None
    rows: list[FeatureBuildRow] = []
    for b in FeatureStore(settings.features_dir).builds():
        if (feature_set and b.feature_set != feature_set) or (canonical and b.symbol != canonical):
            continue
        if latest and not b.latest:
            continue
        fresh = all(current.get(slug) == version for slug, version in b.sources.items())
        rows.append(
            FeatureBuildRow(
                feature_set=b.feature_set, symbol=b.symbol, timeframe=b.timeframe, side=b.side,
                version=b.version, rows=b.rows, features=b.features, labels=tuple(b.labels),
                created=b.created, seconds=b.seconds, latest=b.latest,
                cache="fresh" if fresh else "stale",
            )
        )  # fmt: skip
    return rows


@dataclass(frozen=True)
class BuildView:
    """One build shown: the build, each column's summary, and its last rows."""

    build: FeatureBuild
    summary: pl.DataFrame
    tail: pl.DataFrame


def show_build(
    settings: Settings,
    feature_set: str,
    symbol: str,
    timeframe: Timeframe,
    *,
    side: Side | None = None,
    version: str | None = None,
    columns: list[str] | None = None,
    rows: int = 5,
) -> BuildView:
    """Return one build (the latest, or the version with that prefix) described and tailed.

    Raises
    ------
    UsageError
        If no build matches, several sides do and ``side`` is not given, or a column asked
        for is not in the build.
    """
    canonical = settings.registry.canonical(symbol)
    store = FeatureStore(settings.features_dir)
    builds = store.builds()
    matches = [
        b for b in builds
        if b.feature_set == feature_set and b.symbol == canonical and b.timeframe == timeframe.value
        and (side is None or b.side == side.value)
        and (b.version.startswith(version) if version else b.latest)
    ]  # fmt: skip
    if len({b.side for b in matches}) > 1:
        raise UsageError(
            f"{feature_set} on {canonical} {timeframe.value} is built on several sides: give --side"
        )
    if len(matches) != 1:
        have = ", ".join(
            sorted({f"{b.feature_set} {b.symbol} {b.timeframe} {b.side}" for b in builds})
        )
        what = f"version {version!r} of " if version else ""
        msg = (
            f"no build of {what}{feature_set} on {canonical} {timeframe.value} (built: "
            f"{have or 'none'}): build it with  solodesk features build --feature-set "
            f"{feature_set} --symbol {canonical} --timeframe {timeframe.value}"
        )
        raise UsageError(msg)
    build = matches[0]
    frame = store.read(build)
    summary = column_summary(frame, build.columns)
    if columns:
        unknown = [n for n in columns if n not in summary["column"].to_list()]
        if unknown:
            raise UsageError(f"--columns: {', '.join(unknown)} not in the build")
        summary = summary.filter(pl.col("column").is_in(columns))
        shown = ["ts", *columns]
    else:
        features = [c["name"] for c in build.columns if c["role"] != "label"]
        shown = ["ts", *features[:6], *build.labels[:1]]
    tail = frame.select(shown).tail(rows) if rows > 0 else frame.select(shown).clear()
    return BuildView(build, summary, tail)


class FeatureSpecRow(BaseModel):
    """One feature of the default set: name, family, kind, parameters, warm-up and range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    family: str
    kind: str
    params: dict[str, float]
    warmup: int
    recursive: bool
    lower: float | None
    upper: float | None


def default_specs() -> list[FeatureSpecRow]:
    """Return the default feature set's specifications."""
    return [
        FeatureSpecRow(
            name=s.name,
            family=s.family.value,
            kind=s.kind,
            params=dict(s.parameters),
            warmup=s.warmup,
            recursive=s.recursive,
            lower=s.lower,
            upper=s.upper,
        )
        for s in default_feature_set()
    ]

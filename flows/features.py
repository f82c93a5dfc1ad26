"""The ``features`` flow: ``solodesk features build`` as a Prefect run.

One build chains the job's steps as :func:`services.features.build_feature_set` does: the
series it reads and its version are found (I/O); a version already stored is a cache hit and
nothing more runs; otherwise the table is computed and checked (compute, never retried) and
the build is recorded under the store's concurrency slot and the catalog refreshed (I/O, each
retried on its own). ``all_series`` builds the set(s) on every stored series they fit in one
task calling :func:`services.features.build_all`, which owns the choice of series. The run's
artifacts: the build (rows, features, cache hit, version) and its columns, or the failed
feature checks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow

from core.errors import SolodeskError, UsageError
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import Side
from feature_store.feature_index import FeatureBuild
from flows.common import compute_task, desk, io_task, markdown, md_table, store_writes, table
from flows.notices import on_flow_failure
from pipelines.features.sets import FeatureTable
from services.features import (
    BuildInputs,
    FeatureBuildResult,
    build_all,
    cached_build,
    check_features,
    compute_table,
    load_build_inputs,
    load_feature_set,
    load_feature_sets,
    record_build,
)
from services.ingest import refresh


@io_task
def inputs_step(
    settings: Settings,
    feature_set: str,
    params: str,
    symbol: str,
    timeframe: Timeframe,
    side: Side | None,
) -> BuildInputs:
    """Read the set's definition and find the series it reads (:func:`load_build_inputs`)."""
    config = load_feature_set(Path(params), feature_set)
    return load_build_inputs(settings, feature_set, config, symbol, timeframe, side)


@io_task
def cache_step(settings: Settings, inputs: BuildInputs) -> tuple[FeatureBuild | None, bool]:
    """Return the stored build of this version (marked latest again) and whether the mark moved."""
    return cached_build(settings, inputs)


@compute_task
def compute_step(settings: Settings, inputs: BuildInputs) -> FeatureTable:
    """Read the bars and compute the feature table (:func:`compute_table`)."""
    return compute_table(settings, inputs)


@compute_task
def check_step(settings: Settings, inputs: BuildInputs, frame: FeatureTable) -> dict[str, Any]:
    """Run the feature suite; a failure stores nothing (:func:`check_features`)."""
    return check_features(settings, inputs, frame)


@io_task
def record_step(
    settings: Settings,
    inputs: BuildInputs,
    frame: FeatureTable,
    validation: dict[str, Any],
    seconds: float,
) -> FeatureBuild:
    """Write the build's file and index entry (:func:`record_build`)."""
    with store_writes():
        return record_build(settings, inputs, frame, validation, seconds)


@io_task
def catalog_step(settings: Settings) -> list[str]:
    """Rebuild the DuckDB catalog (a warning when another process holds it)."""
    return refresh(settings, "the features")


@io_task
def build_all_step(settings: Settings, params: str, feature_set: str | None) -> Any:
    """Build the set(s) on every stored series they fit (:func:`build_all`)."""
    path = Path(params)
    sets = {feature_set: load_feature_set(path, feature_set)} if feature_set else None
    with store_writes():
        return build_all(settings, sets or load_feature_sets(path))


def build_steps(
    settings: Settings,
    feature_set: str,
    params: str,
    symbol: str,
    timeframe: Timeframe,
    side: Side | None = None,
) -> tuple[FeatureBuildResult, FeatureBuild]:
    """Run one build's steps as tasks inside a flow; return its result and the stored build."""
    started = time.perf_counter()
    inputs = inputs_step(settings, feature_set, params, symbol, timeframe, side)
    existing, changed = cache_step(settings, inputs)
    if existing is not None:
        warnings = catalog_step(settings) if changed else []
        result = FeatureBuildResult.of(existing, True, time.perf_counter() - started, warnings)
        return result, existing
    frame = compute_step(settings, inputs)
    try:
        validation = check_step(settings, inputs, frame)
    except SolodeskError as exc:
        body = (
            f"# {feature_set} on {inputs.base.key}: checks failed\n\nNothing was stored.\n\n{exc}"
        )
        markdown(f"features-failed-{feature_set}-{inputs.base.key.slug}", body, "failed checks")
        raise
    build = record_step(settings, inputs, frame, validation, time.perf_counter() - started)
    warnings = catalog_step(settings)
    return FeatureBuildResult.of(build, False, time.perf_counter() - started, warnings), build


def _record(results: list[FeatureBuildResult], build: FeatureBuild | None) -> None:
    rows = [
        {"set": r.feature_set, "series": f"{r.symbol} {r.timeframe} {r.side}",
         "version": r.version, "cache": "hit" if r.cache_hit else "built", "rows": r.rows,
         "features": r.features, "labels": ", ".join(r.labels), "first": r.first,
         "last": r.last, "checks": r.expectations, "seconds": r.seconds}
        for r in results
    ]  # fmt: skip
    key = f"features-{results[0].feature_set}" if len(results) == 1 else "features-all"
    table(key, rows, "one row per feature build")
    lines = [f"# {len(results)} feature build(s)", "", md_table(rows)]
    if build is not None:
        columns = [
            {"column": c["name"], "role": c["role"], "source": c.get("source"),
             "warmup": c.get("warmup")}
            for c in build.columns
        ]  # fmt: skip
        lines += ["", f"## Columns of {build.version}", "", md_table(columns)]
    warnings = [w for r in results for w in r.warnings]
    lines += [f"- warning: {w}" for w in dict.fromkeys(warnings)]
    markdown(f"{key}-summary", "\n".join(lines), "what the feature build stored")


@flow(name="features", on_failure=[on_flow_failure], log_prints=True)
def features_flow(
    feature_set: str | None = None,
    symbol: str | None = None,
    timeframe: Timeframe | None = None,
    side: Side | None = None,
    params: str = "params.yaml",
    all_series: bool = False,
    home: str | None = None,
) -> dict[str, Any]:
    """Compute, check and store a feature set on a series, as ``solodesk features build`` does.

    ``all_series``: build the set (every set when ``feature_set`` is left out) on every stored
    series it fits, instead of one series. Returns the build (or, with ``all_series``, the
    builds and the series skipped) as JSON.
    """
    settings = desk(home)
    if all_series:
        if symbol or timeframe or side:
            raise UsageError(
                "all_series builds on every stored series: drop symbol, timeframe, side"
            )
        done = build_all_step(settings, params, feature_set)
        if done.builds:
            _record(list(done.builds), None)
        return {
            "builds": [b.model_dump(mode="json") for b in done.builds],
            "skipped": list(done.skipped),
        }
    if feature_set is None or symbol is None or timeframe is None:
        raise UsageError("give feature_set, symbol and timeframe (or all_series)")
    result, build = build_steps(settings, feature_set, params, symbol, timeframe, side)
    _record([result], build)
    return result.model_dump(mode="json")

"""The Great Expectations suite for bars, run on every batch before it is stored.

Quarantine has already removed rows that break a rule, so on stored bars the suite is a
post-condition: a failure means a rule and the quarantine disagree, and the ingest stops.
Great Expectations is imported on first use only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult

SUITE_NAME = "solodesk.bars"


def _expectations(has_spread: bool) -> list[Any]:
    import great_expectations as gx

    e = gx.expectations
    prices = ("open", "high", "low", "close")
    out: list[Any] = [e.ExpectColumnValuesToNotBeNull(column=c) for c in ("ts", *prices, "volume")]
    out += [e.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in prices]
    # high >= low follows from the two pairs below it; open and close are bounded both ways.
    out += [
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B=c, or_equal=True)
        for c in ("open", "close")
    ]
    out += [
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A=c, column_B="low", or_equal=True)
        for c in ("open", "close")
    ]
    out += [
        # Seconds since the previous bar of the same series (null for its first bar): strictly
        # positive means timestamps strictly increasing, hence unique, within each series.
        e.ExpectColumnValuesToBeBetween(column="ts_step", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
    ]
    if has_spread:
        out.append(e.ExpectColumnValuesToBeBetween(column="spread", min_value=0))
    return out


# Great Expectations works on a pandas copy and its temporaries; chunks bound that memory.
CHUNK_ROWS = 1_500_000


def validate_series(
    series: Mapping[str, pl.DataFrame], name: str, chunk_rows: int = CHUNK_ROWS
) -> list[ExpectationSuiteValidationResult]:
    """Run the bar suite over the bars of several series; return one result per chunk.

    One suite run covers all series of an ingest (Great Expectations' fixed cost per run would
    otherwise dominate files that hold hundreds of symbols), in chunks of ``chunk_rows`` rows so
    that memory stays bounded on long histories.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frames = [
        bars.with_columns(
            pl.col("ts").diff().dt.total_microseconds().truediv(1e6).alias("ts_step"),
        )
        for bars in series.values()
        if bars.height
    ]
    frame = pl.concat(frames, how="vertical", rechunk=False) if frames else pl.DataFrame()
    has_spread = frame.height > 0 and frame["spread"].null_count() < frame.height
    columns = [c for c in frame.columns if c != "spread" or has_spread]
    frame = frame.select(columns).with_columns(pl.col("ts").dt.replace_time_zone(None))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("bars").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add(
        gx.ExpectationSuite(name=SUITE_NAME, expectations=_expectations(has_spread))
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    return [
        definition.run(
            batch_parameters={"dataframe": frame.slice(start, chunk_rows).to_pandas()},
            result_format="SUMMARY",
        )
        for start in range(0, max(frame.height, 1), chunk_rows)
    ]


def validate_bars(bars: pl.DataFrame, name: str) -> ExpectationSuiteValidationResult:
    """Run the bar suite on the bars of one series and return Great Expectations' result."""
    return validate_series({name: bars}, name, chunk_rows=max(bars.height, 1))[0]

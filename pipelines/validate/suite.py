"""The Great Expectations suite for bars, run on every batch before it is stored.

Quarantine has already removed rows that break a rule, so on stored bars the suite is a
post-condition: a failure means a rule and the quarantine disagree, and the ingest stops.
Great Expectations is imported on first use only.
"""

from __future__ import annotations

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
        # Strictly increasing implies unique: one pass over the timestamps checks both.
        e.ExpectColumnValuesToBeIncreasing(column="ts", strictly=True),
        e.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
    ]
    if has_spread:
        out.append(e.ExpectColumnValuesToBeBetween(column="spread", min_value=0))
    return out


def validate_bars(bars: pl.DataFrame, name: str) -> ExpectationSuiteValidationResult:
    """Run the bar suite on a batch and return Great Expectations' result."""
    import great_expectations as gx

    has_spread = bars["spread"].null_count() < bars.height
    columns = [c for c in bars.columns if c != "spread" or has_spread]
    frame = bars.select(columns).with_columns(pl.col("ts").dt.replace_time_zone(None))
    from great_expectations.data_context.types.base import ProgressBarsConfig

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
    return definition.run(
        batch_parameters={"dataframe": frame.to_pandas()}, result_format="SUMMARY"
    )

"""The Great Expectations suite for a computed feature set, run before a build is stored.

The suite checks a tidy (long) copy of the feature table, one row per (column, bar), carrying
each column's rules beside its value (``row``, ``value``, ``required``, ``lower``, ``upper``),
so four expectations cover any number of features:

- ``value`` is not null where ``required`` (the row is at or past the column's
  ``required_from``): nulls only inside a feature's warm-up, or, for context and cross-asset
  columns, before their first value;
- ``value`` is finite (no ±inf);
- ``value >= lower`` and ``value <= upper``, the documented range of the feature.

NaN counts as null. Great Expectations is imported on first use only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from core.times import iso_z

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult

SUITE_NAME = "solodesk.features"
# Long rows per Great Expectations run: pandas copies the chunk and its temporaries.
CHUNK_ROWS = 3_000_000
_BIG = sys.float_info.max
_CHECKED = ["row", "value", "required", "lower", "upper"]

CHECKS = {
    "expect_column_values_to_not_be_null": "no null after the warm-up",
    "expect_column_values_to_be_between": "no infinite value",
    "expect_column_pair_values_a_to_be_greater_than_b:lower": "at or above the documented lower bound",
    "expect_column_pair_values_a_to_be_greater_than_b:upper": "at or below the documented upper bound",
}


@dataclass(frozen=True)
class ColumnRule:
    """The rules of one column: values required from row ``required_from``, within a range."""

    name: str
    required_from: int
    lower: float | None = None
    upper: float | None = None


def _tidy(frame: pl.DataFrame, rule: ColumnRule, first_row: int) -> pl.DataFrame:
    return frame.select(
        pl.lit(rule.name).alias("column"),
        pl.int_range(first_row, first_row + frame.height, dtype=pl.Int64).alias("row"),
        pl.col("ts").dt.replace_time_zone(None),
        pl.col(rule.name).cast(pl.Float64).fill_nan(None).alias("value"),
        (
            pl.int_range(first_row, first_row + frame.height, dtype=pl.Int64) >= rule.required_from
        ).alias("required"),
        pl.lit(-_BIG if rule.lower is None else rule.lower, dtype=pl.Float64).alias("lower"),
        pl.lit(_BIG if rule.upper is None else rule.upper, dtype=pl.Float64).alias("upper"),
    )


def tidy_chunks(
    frame: pl.DataFrame, rules: Sequence[ColumnRule], chunk_rows: int = CHUNK_ROWS
) -> Iterator[pl.DataFrame]:
    """Yield the tidy table in chunks of about ``chunk_rows`` rows, one row per (column, bar).

    Columns: ``column``, ``row`` (from the series start), ``ts``, ``value``, ``required``
    (``row >= required_from``), ``lower`` and ``upper``; an unbounded side is ∓ the largest float, so a finite value always
    passes it and an infinite one does not.
    """
    pending: list[pl.DataFrame] = []
    size = 0
    for rule in rules:
        for start in range(0, frame.height, chunk_rows):
            part = _tidy(frame.slice(start, chunk_rows), rule, start)
            pending.append(part)
            size += part.height
            if size >= chunk_rows:
                yield pl.concat(pending, how="vertical")
                pending, size = [], 0
    if pending:
        yield pl.concat(pending, how="vertical")


def _expectations() -> list[Any]:
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    e = gx.expectations
    return [
        e.ExpectColumnValuesToNotBeNull(column="value", row_condition=Column("required") == True),  # noqa: E712
        e.ExpectColumnValuesToBeBetween(column="value", min_value=-_BIG, max_value=_BIG),
        e.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="value", column_B="lower", or_equal=True,
            ignore_row_if="either_value_is_missing", meta={"check": "lower"},
        ),
        e.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="upper", column_B="value", or_equal=True,
            ignore_row_if="either_value_is_missing", meta={"check": "upper"},
        ),
    ]  # fmt: skip


def validate_features(
    frame: pl.DataFrame, rules: Sequence[ColumnRule], name: str, chunk_rows: int = CHUNK_ROWS
) -> list[ExpectationSuiteValidationResult]:
    """Run the feature suite on ``frame`` (``ts`` plus the ruled columns); one result per chunk."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("features").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME, expectations=_expectations()))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    return [
        definition.run(
            batch_parameters={"dataframe": chunk.select(_CHECKED).to_pandas()},
            result_format="SUMMARY",
        )
        for chunk in tidy_chunks(frame, rules, chunk_rows)
    ]


def _check_key(result: Any) -> str:
    config = result.expectation_config
    key = str(config.type)
    check = (config.meta or {}).get("check")
    return f"{key}:{check}" if check else key


def failed_checks(
    results: Sequence[ExpectationSuiteValidationResult],
    frame: pl.DataFrame,
    rules: Sequence[ColumnRule],
    chunk_rows: int = CHUNK_ROWS,
) -> list[str]:
    """Describe each failing expectation: what it checks, how many values, which columns.

    Great Expectations reports the first unexpected rows of each chunk by position; the
    positions are mapped back to column names and bar times of ``frame``.
    """
    bounds = {rule.name: (rule.lower, rule.upper) for rule in rules}
    failures: dict[str, tuple[int, dict[str, list[str]]]] = {}
    chunks = tidy_chunks(frame, rules, chunk_rows)
    for result, chunk in zip(results, chunks, strict=False):
        for r in result.results:
            if r.success:
                continue
            key = _check_key(r)
            count, examples = failures.get(key, (0, {}))
            count += int(r.result.get("unexpected_count") or 0)
            for index in r.result.get("partial_unexpected_index_list") or []:
                if 0 <= int(index) < chunk.height:
                    column, ts, value = chunk.select("column", "ts", "value").row(int(index))
                    shown = "null" if value is None else f"{value:g}"
                    examples.setdefault(column, []).append(f"{iso_z(ts)} {shown}")
            failures[key] = (count, examples)
    lines = []
    for key, (count, examples) in failures.items():
        what = CHECKS.get(key, key)
        expectation = key.split(":")[0]
        shown = "; ".join(
            f"{column}{_range(*bounds[column]) if ':' in key else ''} at {', '.join(values[:2])}"
            for column, values in sorted(examples.items())
        )
        lines.append(f"{expectation} [{what}]: {count} value(s), e.g. {shown or '?'}")
    return lines


def _range(lower: float | None, upper: float | None) -> str:
    if lower is None and upper is None:
        return ""
    low = "-inf" if lower is None else f"{lower:g}"
    high = "inf" if upper is None else f"{upper:g}"
    return f" in [{low}, {high}]"

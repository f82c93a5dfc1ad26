"""A feature table described column by column: role, warm-up, nulls and range."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

SUMMARY_SCHEMA = {
    "column": pl.String, "role": pl.String, "source": pl.String, "warmup": pl.Int64,
    "required_from": pl.Int64, "nulls": pl.Int64, "min": pl.Float64, "max": pl.Float64,
    "mean": pl.Float64,
}  # fmt: skip


def column_summary(frame: pl.DataFrame, columns: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Return one row per described column: role, source, warm-up, nulls, min, max, mean.

    ``columns`` describe the table's columns as a build records them (``name``, ``role``,
    ``source``, ``warmup``, ``required_from``). NaN counts as null; min, max and mean are over
    the numeric values (label ends and barrier names have none).
    """
    rows = []
    for column in columns:
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
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)

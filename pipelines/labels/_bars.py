"""Input checks shared by the label functions."""

from __future__ import annotations

import polars as pl

from core.errors import UsageError

TS_DTYPE = pl.Datetime("us", "UTC")


def check_bars(bars: pl.DataFrame, columns: tuple[str, ...]) -> None:
    """Raise ``UsageError`` unless ``bars`` has ``ts`` strictly increasing and ``columns`` free of nulls."""
    missing = [c for c in ("ts", *columns) if c not in bars.columns]
    if missing:
        msg = f"bars lack column(s) {', '.join(missing)}: pass bars with ts, open, high, low, close"
        raise UsageError(msg)
    if bars.schema["ts"] != TS_DTYPE:
        msg = f"bars.ts is {bars.schema['ts']}: expected {TS_DTYPE} (bar open times in UTC)"
        raise UsageError(msg)
    if bars.height == 0:
        return
    nulls = [c for c in ("ts", *columns) if bars[c].null_count()]
    if nulls:
        msg = f"bars have null values in {', '.join(nulls)}: drop or repair those bars first"
        raise UsageError(msg)
    non_increasing = bars.select((pl.col("ts").diff().dt.total_microseconds() <= 0).any()).item()
    if non_increasing:
        msg = "bars.ts is not strictly increasing: sort the bars and drop duplicate timestamps"
        raise UsageError(msg)
    for c in columns:
        if c != "ts" and not bars.select(((pl.col(c) > 0) & pl.col(c).is_finite()).all()).item():
            msg = f"bars.{c} has values <= 0, NaN or infinite: prices must be positive and finite"
            raise UsageError(msg)

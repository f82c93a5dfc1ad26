"""Point-in-time joins: attach another series' values as they were known at each bar's close.

A bar stamped ``ts`` (its open time) is known at its end. A value computed from bar ``t`` of a
lower timeframe is therefore decided at ``end(t)``, and may use a higher-timeframe (or another
symbol's) bar only if that bar had ended by then: the join matches each row with the latest
other bar whose end is no later than the row's end.

Bar ends are measured on the clock the bars were cut on, so a broker-day D1 bar that spans a
daylight-saving change lasts 23 or 25 hours, not a nominal 24.
"""

from __future__ import annotations

import polars as pl

from core.clocks import UTC, Clock
from core.timeframes import Timeframe


def bar_end(ts: pl.Expr, timeframe: Timeframe, clock: Clock = UTC) -> pl.Expr:
    """Return each bar's end: its open time plus one bar on ``clock`` (months are calendar months)."""
    if timeframe.is_intraday and timeframe.minutes <= 60:
        return ts + timeframe.duration
    local = clock.from_utc(ts).dt.offset_by(timeframe.polars_every)
    return clock.to_utc(local)


def join_known(
    rows: pl.DataFrame,
    rows_timeframe: Timeframe,
    other: pl.DataFrame,
    other_timeframe: Timeframe,
    *,
    prefix: str,
    rows_clock: Clock = UTC,
    other_clock: Clock = UTC,
) -> pl.DataFrame:
    """Join ``other``'s columns onto ``rows`` as known at the end of each row's bar.

    Parameters
    ----------
    rows
        Bars (``ts`` ascending) to which values are attached.
    rows_timeframe, rows_clock
        Their timeframe, and the clock their buckets were cut on.
    other
        ``ts`` (open time, ascending) plus the value columns to attach, e.g. H4 features or
        another symbol's returns.
    other_timeframe, other_clock
        Its timeframe and clock.
    prefix
        Prepended to the attached column names (``h4_``, ``GBPUSD_``).

    Returns
    -------
    pl.DataFrame
        ``rows`` with ``other``'s value columns, null until a completed ``other`` bar exists.
    """
    values = [c for c in other.columns if c != "ts"]
    right = other.select(
        bar_end(pl.col("ts"), other_timeframe, other_clock).alias("_known"),
        *(pl.col(c).alias(f"{prefix}{c}") for c in values),
    ).sort("_known")
    left = rows.with_columns(bar_end(pl.col("ts"), rows_timeframe, rows_clock).alias("_known"))
    joined = left.join_asof(right, on="_known", strategy="backward")
    return joined.drop("_known")

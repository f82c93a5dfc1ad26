"""Calendar family: hour of day, weekday and FX session, from the bar's open time (UTC).

Sessions by UTC hour of the bar's open, half-open intervals, overlapping on purpose:
Asia [00, 09), London [07, 16), New York [12, 21). No daylight-saving shift.
"""

from __future__ import annotations

import math

import polars as pl

SESSIONS: dict[str, tuple[int, int]] = {"asia": (0, 9), "london": (7, 16), "new_york": (12, 21)}

# Constants multiply, never divide: Polars turns ``x / k`` into ``x * (1/k)`` on long columns
# but divides on one-row frames, which would break bit-for-bit point-in-time equality.
PER_HOUR = 2.0 * math.pi / 24.0
PER_DAY = 2.0 * math.pi / 7.0
HOURS_PER_MINUTE = 1.0 / 60.0


def hour_sin(ts: pl.Expr) -> pl.Expr:
    """Hour of day, sine: sin(2π·(hour + minute/60)/24). Warm-up: 0."""
    return (_fractional_hour(ts) * PER_HOUR).sin()


def hour_cos(ts: pl.Expr) -> pl.Expr:
    """Hour of day, cosine: cos(2π·(hour + minute/60)/24). Warm-up: 0."""
    return (_fractional_hour(ts) * PER_HOUR).cos()


def weekday_sin(ts: pl.Expr) -> pl.Expr:
    """Weekday, sine: sin(2π·(d - 1)/7), d = 1 (Monday) .. 7 (Sunday). Warm-up: 0."""
    return ((ts.dt.weekday().cast(pl.Float64) - 1.0) * PER_DAY).sin()


def weekday_cos(ts: pl.Expr) -> pl.Expr:
    """Weekday, cosine: cos(2π·(d - 1)/7), d = 1 (Monday) .. 7 (Sunday). Warm-up: 0."""
    return ((ts.dt.weekday().cast(pl.Float64) - 1.0) * PER_DAY).cos()


def in_session(ts: pl.Expr, session: str) -> pl.Expr:
    """FX session flag: 1.0 if start <= UTC hour < end for the session in ``SESSIONS``, else 0.0.

    Warm-up: 0.
    """
    start, end = SESSIONS[session]
    hour = ts.dt.convert_time_zone("UTC").dt.hour()
    return ((hour >= start) & (hour < end)).cast(pl.Float64)


def _fractional_hour(ts: pl.Expr) -> pl.Expr:
    utc = ts.dt.convert_time_zone("UTC")
    return utc.dt.hour().cast(pl.Float64) + utc.dt.minute().cast(pl.Float64) * HOURS_PER_MINUTE

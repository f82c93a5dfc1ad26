"""Small bar frames for the label tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl
from testkit.files import bar_frame, utc

START = utc(2024, 1, 2, 9)
HOUR = timedelta(hours=1)


def ohlc_bars(
    rows: Sequence[tuple[float, float, float, float]], ts: Sequence[datetime] | None = None
) -> pl.DataFrame:
    """Return hourly bars from ``(open, high, low, close)`` rows, from START unless ``ts`` given."""
    times = ts if ts is not None else [START + i * HOUR for i in range(len(rows))]
    return bar_frame(
        (t, o, h, lo, c, 1.0, None) for t, (o, h, lo, c) in zip(times, rows, strict=True)
    )


def close_bars(closes: Sequence[float], ts: Sequence[datetime] | None = None) -> pl.DataFrame:
    """Return hourly bars whose open, high, low and close all equal the given closes."""
    return ohlc_bars([(c, c, c, c) for c in closes], ts)

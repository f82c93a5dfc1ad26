"""Bar frames for the feature tests: hand-made rows and seeded random series with gaps."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
from testkit.files import HOUR_BARS_START, bar_frame, close_bars, ohlc_bars

START = HOUR_BARS_START
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)

__all__ = ["HOUR", "MINUTE", "START", "close_bars", "column", "ohlc_bars", "random_bars"]


def column(bars: pl.DataFrame, expr: pl.Expr) -> list[float | None]:
    """Return the values of ``expr`` evaluated on ``bars``."""
    return bars.select(expr.alias("x"))["x"].to_list()


def random_bars(
    n: int,
    seed: int,
    *,
    flat_share: float = 0.0,
    spread_null_share: float = 0.0,
) -> pl.DataFrame:
    """Return ``n`` M1 bars of a random walk with time gaps (1-90 minutes), seeded.

    ``flat_share`` of the bars have open = high = low = close (and a zero volume);
    ``spread_null_share`` of the spreads are null.
    """
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, n)))
    open_ = np.concatenate(([1.1], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 3e-4, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 3e-4, n))
    volume = rng.integers(1, 500, n).astype(np.float64)
    flat = rng.uniform(size=n) < flat_share
    open_[flat] = high[flat] = low[flat] = close[flat]
    volume[flat] = 0.0
    gaps = np.where(rng.uniform(size=n) < 0.05, rng.integers(2, 91, n), 1)
    minutes = np.cumsum(gaps)
    spread = rng.uniform(1e-5, 4e-5, n)
    spread_null = rng.uniform(size=n) < spread_null_share
    return bar_frame(
        (
            START + int(m) * MINUTE,
            float(o),
            float(h),
            float(lo),
            float(c),
            float(v),
            None if sn else float(s),
        )
        for m, o, h, lo, c, v, s, sn in zip(
            minutes, open_, high, low, close, volume, spread, spread_null, strict=True
        )
    )

"""Trend family: distance of the close to moving averages, ADX, regression slope."""

from __future__ import annotations

import polars as pl

from pipelines.features._common import (
    directional_index,
    ema,
    ratio,
    rolling_dot,
    rolling_mean,
    wilder,
)
from pipelines.features.volatility import atr, true_range


def close_to_sma(close: pl.Expr, n: int) -> pl.Expr:
    """Distance to the simple moving average in units of close: (c - mean(c, n)) / c.

    Warm-up: ``n - 1`` bars.
    """
    return (close - rolling_mean(close, n)) / close


def close_to_ema(close: pl.Expr, n: int) -> pl.Expr:
    """Distance to the EMA in units of close: (c - EMA_n(c)) / c, α = 2/(n+1).

    Warm-up: ``n - 1`` bars. Recursive.
    """
    return (close - ema(close, n)) / close


def close_to_sma_atr(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int, atr_n: int) -> pl.Expr:
    """Distance to the SMA in units of ATR: (c - mean(c, n)) / ATR_m; 0 when ATR is 0.

    Warm-up: ``max(n, atr_n) - 1`` bars. Recursive (through ATR).
    """
    return ratio(close - rolling_mean(close, n), atr(high, low, close, atr_n), when_zero=0.0)


def close_to_ema_atr(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int, atr_n: int) -> pl.Expr:
    """Distance to the EMA in units of ATR: (c - EMA_n(c)) / ATR_m; 0 when ATR is 0.

    Warm-up: ``max(n, atr_n) - 1`` bars. Recursive.
    """
    return ratio(close - ema(close, n), atr(high, low, close, atr_n), when_zero=0.0)


def _directional(
    high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int
) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Return Wilder-smoothed +DM, -DM and true range."""
    up = high - high.shift(1)
    down = low.shift(1) - low
    # Null on the first bar (no previous bar) for all three, so their smoothing starts together.
    has_prev = close.shift(1).is_not_null()
    plus_dm = pl.when(has_prev).then(pl.when((up > down) & (up > 0)).then(up).otherwise(0.0))
    minus_dm = pl.when(has_prev).then(pl.when((down > up) & (down > 0)).then(down).otherwise(0.0))
    tr = wilder(pl.when(has_prev).then(true_range(high, low, close)), n)
    return wilder(plus_dm, n), wilder(minus_dm, n), tr


def plus_di(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int) -> pl.Expr:
    """Plus directional indicator: 100·Wilder(+DM, n)/Wilder(TR, n).

    ``+DM = h - h₋₁`` when that exceeds ``l₋₁ - l`` and 0, else 0. Warm-up: ``n``. Recursive.
    """
    plus, _, tr = _directional(high, low, close, n)
    return 100.0 * ratio(plus, tr, when_zero=0.0)


def minus_di(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int) -> pl.Expr:
    """Minus directional indicator: 100·Wilder(-DM, n)/Wilder(TR, n).

    ``-DM = l₋₁ - l`` when that exceeds ``h - h₋₁`` and 0, else 0. Warm-up: ``n``. Recursive.
    """
    _, minus, tr = _directional(high, low, close, n)
    return 100.0 * ratio(minus, tr, when_zero=0.0)


def adx(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int) -> pl.Expr:
    """Average directional index: Wilder(100·|+DI - -DI|/(+DI + -DI), n); DX 0 when +DI + -DI = 0.

    Warm-up: ``2n - 1`` bars. Recursive.
    """
    return wilder(directional_index(*_directional(high, low, close, n)), n)


def log_close_slope(close: pl.Expr, window: int) -> pl.Expr:
    """Least-squares slope of ln(c) on the bar index over n bars: Σ(i - ī)·ln c_i / Σ(i - ī)².

    Log price per bar. A weighted rolling sum (no cumulative sums). Warm-up: ``window - 1``.
    """
    mean_i = (window - 1) / 2.0
    sxx = sum((i - mean_i) ** 2 for i in range(window))
    weights = [(i - mean_i) / sxx for i in range(window)]
    return rolling_dot(close.log(), weights)

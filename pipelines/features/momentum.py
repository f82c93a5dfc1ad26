"""Momentum family: RSI, MACD, rate of change, stochastic oscillator."""

from __future__ import annotations

import polars as pl

from pipelines.features._common import (
    ema,
    position,
    rolling_max,
    rolling_mean,
    rolling_min,
    share,
    wilder,
)


def rsi(close: pl.Expr, n: int) -> pl.Expr:
    """Relative strength index: 100·G/(G+L), G and L Wilder means of gains and losses over n.

    ``d = c_t - c_{t-1}``, gains ``max(d, 0)``, losses ``max(-d, 0)``; 50 when G + L = 0.
    Equal to the textbook 100 - 100/(1 + G/L). Warm-up: ``n`` bars. Recursive.
    """
    d = close.diff()
    gain = wilder(d.clip(lower_bound=0.0), n)
    loss = wilder((-d).clip(lower_bound=0.0), n)
    return 100.0 * share(gain, loss, when_zero=0.5)


def macd_line(close: pl.Expr, fast: int, slow: int) -> pl.Expr:
    """MACD line: EMA_fast(c) - EMA_slow(c), price units. Warm-up: ``slow - 1``. Recursive."""
    return ema(close, fast) - ema(close, slow)


def macd_signal(close: pl.Expr, fast: int, slow: int, signal: int) -> pl.Expr:
    """MACD signal: EMA_signal of the MACD line. Warm-up: ``slow + signal - 2``. Recursive."""
    return ema(macd_line(close, fast, slow), signal)


def macd_histogram(close: pl.Expr, fast: int, slow: int, signal: int) -> pl.Expr:
    """MACD histogram: MACD line - MACD signal. Warm-up: ``slow + signal - 2``. Recursive."""
    line = macd_line(close, fast, slow)
    return line - ema(line, signal)


def rate_of_change(close: pl.Expr, n: int) -> pl.Expr:
    """Rate of change: c_t / c_{t-n} - 1. Warm-up: ``n`` bars."""
    return close / close.shift(n) - 1.0


def stochastic_k(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int) -> pl.Expr:
    """Stochastic %K: 100·(c - min(l, n))/(max(h, n) - min(l, n)); 50 on a flat range.

    Warm-up: ``n - 1`` bars.
    """
    lowest = rolling_min(low, n)
    return 100.0 * position(close, lowest, rolling_max(high, n), when_flat=0.5)


def stochastic_d(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int, d: int) -> pl.Expr:
    """Stochastic %D: mean of %K(n) over d bars. Warm-up: ``n + d - 2`` bars."""
    # The sliding mean may overshoot 100 by an ulp; clip to the range %K lives in.
    return rolling_mean(stochastic_k(high, low, close, n), d).clip(0.0, 100.0)

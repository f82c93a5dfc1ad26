"""Volatility family: realized, Parkinson and Garman-Klass volatility, average true range.

All volatilities are per bar (not annualized), in units of log price; ATR is in price units.
"""

from __future__ import annotations

import math

import polars as pl

from pipelines.features._common import rolling_mean, rolling_std, wilder

GK_CLOSE = 2.0 * math.log(2.0) - 1.0
# Multiplied, not divided: see the module docstring of pipelines.features.
PARKINSON = 1.0 / (4.0 * math.log(2.0))


def realized_vol(close: pl.Expr, window: int) -> pl.Expr:
    """Realized volatility: sample std (ddof 1) of ln(c_t/c_{t-1}) over n bars.

    Warm-up: ``window`` bars (one for the first return, ``window - 1`` for the window).
    """
    return rolling_std((close / close.shift(1)).log(), window)


def parkinson_vol(high: pl.Expr, low: pl.Expr, window: int) -> pl.Expr:
    """Parkinson volatility: sqrt(mean(ln(h/l)²) / (4 ln 2)) over n bars.

    Warm-up: ``window - 1`` bars.
    """
    return (
        rolling_mean((high / low).log().pow(2), window).clip(lower_bound=0.0) * PARKINSON
    ).sqrt()


def garman_klass_vol(
    open_: pl.Expr, high: pl.Expr, low: pl.Expr, close: pl.Expr, window: int
) -> pl.Expr:
    """Garman-Klass volatility: sqrt(mean(½ ln(h/l)² - (2 ln 2 - 1) ln(c/o)²)) over n bars.

    Each bar's term is non-negative because ``|ln(c/o)| <= ln(h/l)``. Warm-up: ``window - 1``.
    """
    term = 0.5 * (high / low).log().pow(2) - GK_CLOSE * (close / open_).log().pow(2)
    return rolling_mean(term, window).clip(lower_bound=0.0).sqrt()


def true_range(high: pl.Expr, low: pl.Expr, close: pl.Expr) -> pl.Expr:
    """True range: max(h-l, |h-c₋₁|, |l-c₋₁|); h-l on the first bar (no previous close)."""
    prev = close.shift(1)
    return pl.max_horizontal(high - low, (high - prev).abs(), (low - prev).abs())


def atr(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int) -> pl.Expr:
    """Average true range: Wilder smoothing (α = 1/n) of max(h-l, |h-c₋₁|, |l-c₋₁|).

    The recurrence starts at the first bar's ``h - l`` (not at an n-bar mean, as Wilder
    did). Warm-up: ``n - 1`` bars. Recursive.
    """
    return wilder(true_range(high, low, close), n)

"""Smoothing and division helpers shared by the feature families."""

from __future__ import annotations

import polars as pl


def ema(x: pl.Expr, span: int) -> pl.Expr:
    """Exponential moving average: y_t = y_{t-1} + α(x_t - y_{t-1}), α = 2/(span+1).

    Starts at the first non-null ``x``; the first ``span - 1`` values from there are null.
    """
    return x.ewm_mean(alpha=2.0 / (span + 1), adjust=False, min_samples=span)


def wilder(x: pl.Expr, n: int) -> pl.Expr:
    """Wilder smoothing: y_t = y_{t-1} + (x_t - y_{t-1})/n from the first non-null ``x``.

    The first ``n - 1`` values from the first non-null ``x`` are null.
    """
    return x.ewm_mean(alpha=1.0 / n, adjust=False, min_samples=n)


def ratio(num: pl.Expr, den: pl.Expr, when_zero: float) -> pl.Expr:
    """Return ``num / den``, or ``when_zero`` where ``den`` is 0 (null where either is null)."""
    return pl.when(den != 0).then(num / den).when(den == 0).then(pl.lit(when_zero))

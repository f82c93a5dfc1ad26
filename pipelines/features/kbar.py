"""Candle-shape ("kbar") family: body, shadows and close position of a bar, lagged.

Body and shadows are in units of the bar's open; lag ``k`` takes the value of bar ``t - k``.
"""

from __future__ import annotations

import polars as pl

from pipelines.features._common import position


def kbar_body(open_: pl.Expr, close: pl.Expr, lag: int) -> pl.Expr:
    """Candle body: (c - o) / o of bar t - lag. Warm-up: ``lag`` bars."""
    return ((close - open_) / open_).shift(lag)


def kbar_upper_shadow(open_: pl.Expr, high: pl.Expr, close: pl.Expr, lag: int) -> pl.Expr:
    """Upper shadow: (h - max(o, c)) / o of bar t - lag. Warm-up: ``lag`` bars."""
    return ((high - pl.max_horizontal(open_, close)) / open_).shift(lag)


def kbar_lower_shadow(open_: pl.Expr, low: pl.Expr, close: pl.Expr, lag: int) -> pl.Expr:
    """Lower shadow: (min(o, c) - l) / o of bar t - lag. Warm-up: ``lag`` bars."""
    return ((pl.min_horizontal(open_, close) - low) / open_).shift(lag)


def kbar_close_position(high: pl.Expr, low: pl.Expr, close: pl.Expr, lag: int) -> pl.Expr:
    """Close position in the range: (c - l) / (h - l) of bar t - lag; 0.5 when h = l.

    Warm-up: ``lag`` bars.
    """
    return position(close, low, high, when_flat=0.5).shift(lag)

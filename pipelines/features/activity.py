"""Spread and volume families, for series that carry a spread or a tick / real volume."""

from __future__ import annotations

import polars as pl

from pipelines.features._common import ratio, rolling_mean, rolling_std


def relative_spread(spread: pl.Expr, close: pl.Expr) -> pl.Expr:
    """Relative spread: spread / c. Warm-up: 0 (null where the spread is null)."""
    return spread / close


def relative_spread_mean(spread: pl.Expr, close: pl.Expr, window: int) -> pl.Expr:
    """Mean relative spread: mean(spread / c) over n bars. Warm-up: ``window - 1`` bars."""
    return rolling_mean(spread / close, window)


def volume_zscore(volume: pl.Expr, window: int) -> pl.Expr:
    """Volume z-score: (v - mean(v, n)) / std(v, n), sample std; 0 when std is 0.

    Warm-up: ``window - 1`` bars.
    """
    return ratio(volume - rolling_mean(volume, window), rolling_std(volume, window), when_zero=0.0)


def volume_ratio(volume: pl.Expr, window: int) -> pl.Expr:
    """Relative volume: v / mean(v, n); 1 when the mean is 0. Warm-up: ``window - 1`` bars."""
    return ratio(volume, rolling_mean(volume, window), when_zero=1.0)

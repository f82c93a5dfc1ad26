"""Mean-reversion family: rolling z-score of the close, Bollinger %b."""

from __future__ import annotations

import polars as pl

from pipelines.features._common import ratio, rolling_mean, rolling_std


def close_zscore(close: pl.Expr, window: int) -> pl.Expr:
    """Rolling z-score: (c - mean(c, n)) / std(c, n), sample std (ddof 1); 0 when std is 0.

    Warm-up: ``window - 1`` bars.
    """
    return ratio(close - rolling_mean(close, window), rolling_std(close, window), when_zero=0.0)


def bollinger_pct_b(close: pl.Expr, window: int, k: float) -> pl.Expr:
    """Bollinger %b: (c - (m - k·s)) / (2k·s), m, s mean and sample std over n; 0.5 when s is 0.

    0 on the lower band, 1 on the upper band. Warm-up: ``window - 1`` bars.
    """
    mean = rolling_mean(close, window)
    std = rolling_std(close, window)
    return ratio(close - (mean - k * std), 2.0 * k * std, when_zero=0.5)

"""Rolling z-score and Bollinger %b."""

from __future__ import annotations

import math

import polars as pl
import pytest

from pipelines.features.mean_reversion import bollinger_pct_b, close_zscore

from ._bars import close_bars, column

C = pl.col("close")


def test_close_zscore_window3_hand_values() -> None:
    # Arrange: window 1,2,3 -> mean 2, std 1; window 2,3,6 -> mean 11/3, variance 13/3.
    bars = close_bars([1.0, 2.0, 3.0, 6.0])

    # Act
    out = column(bars, close_zscore(C, 3))

    # Assert
    assert out[:2] == [None, None]
    assert out[2:] == pytest.approx([1.0, (7.0 / 3.0) / math.sqrt(13.0 / 3.0)], rel=1e-12)


def test_close_zscore_flat_window_is_zero() -> None:
    # Arrange
    bars = close_bars([4.0, 4.0, 4.0])

    # Act
    out = column(bars, close_zscore(C, 3))

    # Assert
    assert out == [None, None, 0.0]


def test_bollinger_pct_b_window3_hand_value() -> None:
    # Arrange: mean 2, std 1, k 2: bands 0 and 4, close 3.
    bars = close_bars([1.0, 2.0, 3.0])

    # Act
    out = column(bars, bollinger_pct_b(C, 3, 2.0))

    # Assert
    assert out == [None, None, pytest.approx(0.75)]

"""Realized, Parkinson and Garman-Klass volatility, ATR."""

from __future__ import annotations

import math

import polars as pl
import pytest

from pipelines.features.volatility import atr, garman_klass_vol, parkinson_vol, realized_vol

from ._bars import close_bars, column, ohlc_bars

OPEN, H, L, C = pl.col("open"), pl.col("high"), pl.col("low"), pl.col("close")


def test_atr_wilder_two_bars_hand_values() -> None:
    # Arrange: TR = 3 (h-l), 0.5 (|h - c₋₁|), 4.5 (h-l).
    bars = ohlc_bars([(10.0, 12.0, 9.0, 11.0), (11.0, 11.5, 11.2, 11.4), (11.4, 12.5, 8.0, 9.0)])

    # Act
    out = column(bars, atr(H, L, C, 2))

    # Assert: y = 3, 3 + (0.5 - 3)/2 = 1.75, 1.75 + (4.5 - 1.75)/2 = 3.125; first masked.
    assert out[0] is None
    assert out[1:] == pytest.approx([1.75, 3.125], abs=1e-15)


def test_parkinson_vol_two_bars_hand_value() -> None:
    # Arrange: ln(h/l) = 0.02 then 0.04.
    bars = ohlc_bars(
        [
            (100.0, 100.0 * math.exp(0.02), 100.0, 100.0),
            (100.0, 100.0 * math.exp(0.04), 100.0, 100.0),
        ]
    )

    # Act
    out = column(bars, parkinson_vol(H, L, 2))

    # Assert: mean of squares 0.001.
    assert out[0] is None
    assert out[1] == pytest.approx(math.sqrt(0.001 / (4.0 * math.log(2.0))), rel=1e-12)


def test_garman_klass_vol_one_bar_hand_value() -> None:
    # Arrange: ln(h/l) = 0.02, ln(c/o) = 0.01.
    bars = ohlc_bars([(100.0, 100.0 * math.exp(0.02), 100.0, 100.0 * math.exp(0.01))])

    # Act
    out = column(bars, garman_klass_vol(OPEN, H, L, C, 1))

    # Assert
    expected = math.sqrt(0.5 * 0.02**2 - (2.0 * math.log(2.0) - 1.0) * 0.01**2)
    assert out[0] == pytest.approx(expected, rel=1e-12)


def test_realized_vol_three_returns_sample_std() -> None:
    # Arrange: log returns 0.01, -0.01, 0.03 (mean 0.01, deviations 0, -0.02, 0.02).
    closes = [100.0 * math.exp(x) for x in (0.0, 0.01, 0.0, 0.03)]
    bars = close_bars(closes)

    # Act
    out = column(bars, realized_vol(C, 3))

    # Assert
    assert out[:3] == [None, None, None]
    assert out[3] == pytest.approx(math.sqrt((0.02**2 + 0.02**2) / 2.0), rel=1e-9)

"""RSI, MACD, rate of change and stochastic oscillator."""

from __future__ import annotations

from fractions import Fraction

import polars as pl
import pytest

from pipelines.features.momentum import (
    macd_histogram,
    macd_line,
    macd_signal,
    rate_of_change,
    rsi,
    stochastic_d,
    stochastic_k,
)

from ._bars import close_bars, column, ohlc_bars

H, L, C = pl.col("high"), pl.col("low"), pl.col("close")


def test_rsi_two_bars_hand_values() -> None:
    # Arrange: changes +1, -0.5, +1.5; Wilder α = 1/2 from the first change:
    # gains 1, 0.5, 1.0 and losses 0, 0.25, 0.125.
    bars = close_bars([10.0, 11.0, 10.5, 12.0])

    # Act
    out = column(bars, rsi(C, 2))

    # Assert
    assert out[:2] == [None, None]
    assert out[2:] == pytest.approx([100.0 * 0.5 / 0.75, 100.0 / 1.125], abs=1e-12)


def test_rsi_flat_prices_is_fifty() -> None:
    # Arrange
    bars = close_bars([5.0] * 6)

    # Act
    out = column(bars, rsi(C, 3))

    # Assert
    assert out[3:] == [50.0, 50.0, 50.0]


def test_rsi_only_rises_is_hundred() -> None:
    # Arrange
    bars = close_bars([1.0, 2.0, 3.0, 4.0])

    # Act
    out = column(bars, rsi(C, 2))

    # Assert
    assert out[2:] == [100.0, 100.0]


def test_macd_fast2_slow3_signal2_hand_values() -> None:
    # Arrange: EMA2 (α 2/3) of 1..5 is 1, 5/3, 23/9, 95/27, 365/81; EMA3 (α 1/2) is
    # 1, 3/2, 9/4, 25/8, 65/16. Line from bar 2: 11/36, 85/216, 575/1296;
    # signal (α 2/3) from there: 11/36, 59/162, 811/1944, the first masked.
    bars = close_bars([1.0, 2.0, 3.0, 4.0, 5.0])
    line = [Fraction(11, 36), Fraction(85, 216), Fraction(575, 1296)]
    signal = [Fraction(59, 162), Fraction(811, 1944)]

    # Act
    out = bars.select(
        macd_line(C, 2, 3).alias("line"),
        macd_signal(C, 2, 3, 2).alias("signal"),
        macd_histogram(C, 2, 3, 2).alias("hist"),
    )

    # Assert
    assert out["line"].to_list()[:2] == [None, None]
    assert out["line"].to_list()[2:] == pytest.approx([float(x) for x in line], abs=1e-15)
    assert out["signal"].to_list()[:3] == [None, None, None]
    assert out["signal"].to_list()[3:] == pytest.approx([float(x) for x in signal], abs=1e-15)
    assert out["hist"].to_list()[3:] == pytest.approx(
        [float(line[1] - signal[0]), float(line[2] - signal[1])], abs=1e-15
    )


def test_rate_of_change_two_bars_hand_value() -> None:
    # Arrange
    bars = close_bars([100.0, 90.0, 120.0])

    # Act
    out = column(bars, rate_of_change(C, 2))

    # Assert
    assert out[:2] == [None, None]
    assert out[2] == pytest.approx(0.2)


def test_stochastic_k_and_d_hand_values() -> None:
    # Arrange
    bars = ohlc_bars(
        [
            (9.0, 10.0, 8.0, 9.0),
            (9.0, 12.0, 9.0, 11.0),
            (11.0, 11.0, 7.0, 10.0),
            (10.0, 13.0, 10.0, 13.0),
        ]
    )

    # Act
    k = column(bars, stochastic_k(H, L, C, 3))
    d = column(bars, stochastic_d(H, L, C, 3, 2))

    # Assert: bar 2 range 7..12 -> 60; bar 3 range 7..13 -> 100; %D = mean.
    assert k == [None, None, pytest.approx(60.0), pytest.approx(100.0)]
    assert d == [None, None, None, pytest.approx(80.0)]


def test_stochastic_k_flat_range_is_fifty() -> None:
    # Arrange
    bars = close_bars([2.0, 2.0, 2.0])

    # Act
    out = column(bars, stochastic_k(H, L, C, 2))

    # Assert
    assert out == [None, 50.0, 50.0]

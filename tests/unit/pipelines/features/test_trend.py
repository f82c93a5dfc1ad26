"""Distance to moving averages, directional indicators, ADX, regression slope."""

from __future__ import annotations

import math

import polars as pl
import pytest

from pipelines.features.trend import (
    adx,
    close_to_ema,
    close_to_sma,
    close_to_sma_atr,
    log_close_slope,
    minus_di,
    plus_di,
)

from ._bars import close_bars, column, ohlc_bars

H, L, C = pl.col("high"), pl.col("low"), pl.col("close")


def test_close_to_sma_three_bars_hand_value() -> None:
    # Arrange
    bars = close_bars([1.0, 2.0, 6.0])

    # Act
    out = column(bars, close_to_sma(C, 3))

    # Assert: (6 - 3) / 6.
    assert out == [None, None, pytest.approx(0.5)]


def test_close_to_ema_span3_hand_value() -> None:
    # Arrange: EMA (α 1/2) of 2, 4, 8 is 2, 3, 5.5.
    bars = close_bars([2.0, 4.0, 8.0])

    # Act
    out = column(bars, close_to_ema(C, 3))

    # Assert
    assert out == [None, None, pytest.approx((8.0 - 5.5) / 8.0)]


def test_close_to_sma_atr_flat_bars_is_zero() -> None:
    # Arrange: no range, so ATR is 0.
    bars = close_bars([3.0] * 4)

    # Act
    out = column(bars, close_to_sma_atr(H, L, C, 2, 2))

    # Assert
    assert out == [None, 0.0, 0.0, 0.0]


def test_log_close_slope_exponential_growth_is_rate() -> None:
    # Arrange: ln c grows by 0.01 per bar.
    bars = close_bars([math.exp(0.01 * i) for i in range(8)])

    # Act
    out = column(bars, log_close_slope(C, 5))

    # Assert
    assert out[:4] == [None] * 4
    assert out[4:] == pytest.approx([0.01] * 4, abs=1e-12)


def test_directional_indicators_steady_rise_plus_di_wins() -> None:
    # Arrange: highs and lows climb by 1 each bar, range 2.
    bars = ohlc_bars([(i + 1.0, i + 2.0, float(i), i + 1.0) for i in range(8)])

    # Act
    out = bars.select(
        plus_di(H, L, C, 2).alias("pdi"),
        minus_di(H, L, C, 2).alias("mdi"),
        adx(H, L, C, 2).alias("adx"),
    )

    # Assert: +DM 1, -DM 0, TR 2 on every bar after the first -> +DI 50, -DI 0, ADX 100.
    assert out["pdi"].to_list() == [None, None, *[pytest.approx(50.0)] * 6]
    assert out["mdi"].to_list() == [None, None, *[0.0] * 6]
    assert out["adx"].to_list() == [None, None, None, *[pytest.approx(100.0)] * 5]

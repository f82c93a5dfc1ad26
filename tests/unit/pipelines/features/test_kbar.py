"""Candle shape: body, shadows and close position, lagged."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.features.kbar import (
    kbar_body,
    kbar_close_position,
    kbar_lower_shadow,
    kbar_upper_shadow,
)

from ._bars import ohlc_bars

OPEN, H, L, C = pl.col("open"), pl.col("high"), pl.col("low"), pl.col("close")


def test_kbar_parts_up_bar_hand_values_and_lag() -> None:
    # Arrange: o 100, h 104, l 97, c 102; then a down bar o 102, h 103, l 96, c 98.
    bars = ohlc_bars([(100.0, 104.0, 97.0, 102.0), (102.0, 103.0, 96.0, 98.0)])

    # Act
    out = bars.select(
        kbar_body(OPEN, C, 0).alias("body"),
        kbar_upper_shadow(OPEN, H, C, 0).alias("upper"),
        kbar_lower_shadow(OPEN, L, C, 0).alias("lower"),
        kbar_close_position(H, L, C, 0).alias("pos"),
        kbar_body(OPEN, C, 1).alias("body_1"),
    )

    # Assert
    assert out["body"].to_list() == pytest.approx([0.02, -4.0 / 102.0])
    assert out["upper"].to_list() == pytest.approx([0.02, 1.0 / 102.0])
    assert out["lower"].to_list() == pytest.approx([0.03, 2.0 / 102.0])
    assert out["pos"].to_list() == pytest.approx([5.0 / 7.0, 2.0 / 7.0])
    assert out["body_1"].to_list() == [None, pytest.approx(0.02)]


def test_kbar_close_position_flat_bar_is_half() -> None:
    # Arrange
    bars = ohlc_bars([(1.5, 1.5, 1.5, 1.5)])

    # Act
    out = bars.select(kbar_close_position(H, L, C, 0).alias("pos"))

    # Assert
    assert out["pos"].to_list() == [0.5]

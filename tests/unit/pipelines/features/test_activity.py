"""Spread and volume features."""

from __future__ import annotations

import polars as pl
import pytest
from testkit.files import bar_frame

from pipelines.features.activity import (
    relative_spread,
    relative_spread_mean,
    volume_ratio,
    volume_zscore,
)

from ._bars import HOUR, START, column


def _bars(volumes: list[float], spreads: list[float | None]) -> pl.DataFrame:
    return bar_frame(
        (START + i * HOUR, 2.0, 2.0, 2.0, 2.0, v, s)
        for i, (v, s) in enumerate(zip(volumes, spreads, strict=True))
    )


def test_relative_spread_mean_window2_hand_values_null_spread_propagates() -> None:
    # Arrange: close 2, spreads 0.02, 0.04, null.
    bars = _bars([1.0, 1.0, 1.0], [0.02, 0.04, None])

    # Act
    rel = column(bars, relative_spread(pl.col("spread"), pl.col("close")))
    mean = column(bars, relative_spread_mean(pl.col("spread"), pl.col("close"), 2))

    # Assert
    assert rel == [pytest.approx(0.01), pytest.approx(0.02), None]
    assert mean == [None, pytest.approx(0.015), None]


def test_volume_zscore_and_ratio_window3_hand_values() -> None:
    # Arrange: volumes 1, 2, 3 then 0, 0, 0.
    bars = _bars([1.0, 2.0, 3.0, 0.0, 0.0, 0.0], [None] * 6)

    # Act
    z = column(bars, volume_zscore(pl.col("volume"), 3))
    ratio = column(bars, volume_ratio(pl.col("volume"), 3))

    # Assert: mean 2, std 1 -> z 1, ratio 1.5; an all-zero window -> z 0, ratio 1.
    assert z[:3] == [None, None, pytest.approx(1.0)]
    assert z[5] == 0.0
    assert ratio[:3] == [None, None, pytest.approx(1.5)]
    assert ratio[5] == 1.0

"""Hour, weekday and FX session features."""

from __future__ import annotations

import math

import polars as pl
import pytest
from testkit.files import utc

from pipelines.features.calendar import hour_cos, hour_sin, in_session, weekday_cos, weekday_sin

from ._bars import ohlc_bars

TS = pl.col("ts")


def test_in_session_utc_hours_hand_flags() -> None:
    # Arrange: 03:00 Asia; 08:00 Asia + London; 13:00 London + NY; 20:00 NY; 22:00 none.
    times = [utc(2024, 1, 3, h) for h in (3, 8, 13, 20, 22)]
    bars = ohlc_bars([(1.0, 1.0, 1.0, 1.0)] * 5, ts=times)

    # Act
    out = bars.select(
        in_session(TS, "asia").alias("asia"),
        in_session(TS, "london").alias("london"),
        in_session(TS, "new_york").alias("ny"),
    )

    # Assert
    assert out["asia"].to_list() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert out["london"].to_list() == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert out["ny"].to_list() == [0.0, 0.0, 1.0, 1.0, 0.0]


def test_in_session_boundaries_start_inclusive_end_exclusive() -> None:
    # Arrange: 06:59, 07:00, 15:59, 16:00.
    times = [
        utc(2024, 1, 3, 6, 59),
        utc(2024, 1, 3, 7),
        utc(2024, 1, 3, 15, 59),
        utc(2024, 1, 3, 16),
    ]
    bars = ohlc_bars([(1.0, 1.0, 1.0, 1.0)] * 4, ts=times)

    # Act
    out = bars.select(in_session(TS, "london").alias("london"))

    # Assert
    assert out["london"].to_list() == [0.0, 1.0, 1.0, 0.0]


def test_hour_and_weekday_cyclic_hand_values() -> None:
    # Arrange: Monday 06:00 and Thursday 18:30.
    times = [utc(2024, 1, 1, 6), utc(2024, 1, 4, 18, 30)]
    bars = ohlc_bars([(1.0, 1.0, 1.0, 1.0)] * 2, ts=times)

    # Act
    out = bars.select(
        hour_sin(TS).alias("hs"),
        hour_cos(TS).alias("hc"),
        weekday_sin(TS).alias("ws"),
        weekday_cos(TS).alias("wc"),
    )

    # Assert
    angle = 2.0 * math.pi * 18.5 / 24.0
    assert out["hs"].to_list() == pytest.approx([1.0, math.sin(angle)])
    assert out["hc"].to_list() == pytest.approx([0.0, math.cos(angle)], abs=1e-15)
    assert out["ws"].to_list() == pytest.approx([0.0, math.sin(2.0 * math.pi * 3.0 / 7.0)])
    assert out["wc"].to_list() == pytest.approx([1.0, math.cos(2.0 * math.pi * 3.0 / 7.0)])

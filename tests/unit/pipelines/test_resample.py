"""Resampling: left-closed, left-labelled buckets on the anchor clock (broker day or UTC)."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.files import bar_frame, utc

from core.clocks import BROKER, UTC
from core.errors import UsageError
from core.timeframes import Timeframe
from core.types import VolumeKind
from pipelines.resample import resample_bars, resampled_volume_kind


def _hourly(start: datetime, hours: int, *, volume: float = 1.0) -> pl.DataFrame:
    return bar_frame(
        (start + timedelta(hours=i), 1.0 + i / 1000, 1.0 + i / 1000 + 0.0005, 1.0 + i / 1000 - 0.0005,
         1.0 + i / 1000 + 0.0002, volume, None)
        for i in range(hours)
    )  # fmt: skip


def test_resample_m1_to_h1_left_closed_left_labelled() -> None:
    # Arrange: 09:00 .. 10:59 in minute bars, plus 11:00.
    minutes = bar_frame(
        (utc(2017, 1, 3, 9) + timedelta(minutes=i), 1.0 + i, 1.5 + i, 0.5 + i, 1.2 + i, 2.0, None)
        for i in range(121)
    )

    # Act
    hours = resample_bars(
        minutes, Timeframe.M1, Timeframe.H1, anchor=UTC, volume_kind=VolumeKind.TICK
    )

    # Assert
    assert hours.rows() == [
        (utc(2017, 1, 3, 9), 1.0, 60.5, 0.5, 60.2, 120.0, None),
        (utc(2017, 1, 3, 10), 61.0, 120.5, 60.5, 120.2, 120.0, None),
        (utc(2017, 1, 3, 11), 121.0, 121.5, 120.5, 121.2, 2.0, None),
    ]


def test_resample_m1_without_volume_counts_minute_bars() -> None:
    # Arrange: 50 minute bars in the first hour, 3 in the next.
    ts = [utc(2017, 1, 3, 9) + timedelta(minutes=i) for i in [*range(50), 60, 61, 62]]
    minutes = bar_frame((t, 1.0, 1.0, 1.0, 1.0, 0.0, None) for t in ts)

    # Act
    hours = resample_bars(
        minutes, Timeframe.M1, Timeframe.H1, anchor=UTC, volume_kind=VolumeKind.NONE
    )

    # Assert
    assert hours["volume"].to_list() == [50.0, 3.0]
    assert resampled_volume_kind(VolumeKind.NONE, Timeframe.M1) is VolumeKind.M1_COUNT
    assert resampled_volume_kind(VolumeKind.NONE, Timeframe.H1) is VolumeKind.NONE
    assert resampled_volume_kind(VolumeKind.TICK, Timeframe.M1) is VolumeKind.TICK


def test_resample_fx_d1_broker_anchor_starts_at_2200_utc_in_winter() -> None:
    # Arrange: 2017-01-02 20:00 UTC .. 2017-01-04 01:00 UTC.
    hours = _hourly(utc(2017, 1, 2, 20), 30)

    # Act
    days = resample_bars(
        hours, Timeframe.H1, Timeframe.D1, anchor=BROKER, volume_kind=VolumeKind.TICK
    )

    # Assert: 17:00 New York = 22:00 UTC; 20:00-21:00 belong to the day opened the evening before.
    assert days["ts"].to_list() == [utc(2017, 1, 1, 22), utc(2017, 1, 2, 22), utc(2017, 1, 3, 22)]
    assert days["volume"].to_list() == [2.0, 24.0, 4.0]
    assert days["open"][1] == hours["open"][2]
    assert days["close"][1] == hours["close"][25]


def test_resample_fx_d1_broker_anchor_starts_at_2100_utc_in_summer() -> None:
    # Arrange
    hours = _hourly(utc(2017, 7, 3, 20), 26)

    # Act
    days = resample_bars(
        hours, Timeframe.H1, Timeframe.D1, anchor=BROKER, volume_kind=VolumeKind.TICK
    )

    # Assert
    assert days["ts"].to_list() == [utc(2017, 7, 2, 21), utc(2017, 7, 3, 21), utc(2017, 7, 4, 21)]
    assert days["volume"].to_list() == [1.0, 24.0, 1.0]


def test_resample_fx_d1_broker_anchor_follows_daylight_saving_change() -> None:
    # Arrange: New York moved its clocks on Sunday 2017-03-12.
    hours = _hourly(utc(2017, 3, 9, 22), 24 * 5)

    # Act
    days = resample_bars(
        hours, Timeframe.H1, Timeframe.D1, anchor=BROKER, volume_kind=VolumeKind.TICK
    )

    # Assert
    assert days["ts"].to_list() == [
        utc(2017, 3, 9, 22), utc(2017, 3, 10, 22), utc(2017, 3, 11, 22), utc(2017, 3, 12, 21),
        utc(2017, 3, 13, 21), utc(2017, 3, 14, 21),
    ]  # fmt: skip
    assert days["volume"].sum() == 120.0
    assert days["volume"][2] == 23.0  # the broker day that lost an hour


def test_resample_d1_utc_anchor_starts_at_midnight() -> None:
    # Arrange
    hours = _hourly(utc(2017, 1, 2, 20), 30)

    # Act
    days = resample_bars(hours, Timeframe.H1, Timeframe.D1, anchor=UTC, volume_kind=VolumeKind.TICK)

    # Assert
    assert days["ts"].to_list() == [utc(2017, 1, 2), utc(2017, 1, 3), utc(2017, 1, 4)]
    assert days["volume"].to_list() == [4.0, 24.0, 2.0]


def test_resample_h4_broker_anchor_buckets_from_broker_midnight() -> None:
    # Arrange
    hours = _hourly(utc(2017, 1, 2, 22), 9)

    # Act
    h4 = resample_bars(
        hours, Timeframe.H1, Timeframe.H4, anchor=BROKER, volume_kind=VolumeKind.TICK
    )

    # Assert
    assert h4["ts"].to_list() == [utc(2017, 1, 2, 22), utc(2017, 1, 3, 2), utc(2017, 1, 3, 6)]
    assert h4["volume"].to_list() == [4.0, 4.0, 1.0]


def test_resample_w1_broker_anchor_weeks_start_sunday_new_york_close() -> None:
    # Arrange: from Monday 2017-01-02 00:00 UTC for 12 days.
    hours = _hourly(utc(2017, 1, 2), 24 * 12)

    # Act
    weeks = resample_bars(
        hours, Timeframe.H1, Timeframe.W1, anchor=BROKER, volume_kind=VolumeKind.TICK
    )

    # Assert
    assert weeks["ts"].to_list() == [utc(2017, 1, 1, 22), utc(2017, 1, 8, 22)]
    assert weeks["volume"].sum() == 24 * 12


def test_resample_mn1_utc_anchor_months_start_on_the_first() -> None:
    # Arrange
    days = bar_frame((utc(2017, 1, 25) + timedelta(days=i), 1, 1, 1, 1, 1, None) for i in range(40))

    # Act
    months = resample_bars(
        days, Timeframe.D1, Timeframe.MN1, anchor=UTC, volume_kind=VolumeKind.TICK
    )

    # Assert
    assert months["ts"].to_list() == [utc(2017, 1, 1), utc(2017, 2, 1), utc(2017, 3, 1)]
    assert months["volume"].to_list() == [7.0, 28.0, 5.0]


def test_resample_spread_averaged_over_bucket() -> None:
    # Arrange
    hours = _hourly(utc(2017, 1, 3), 2).with_columns(spread=pl.Series([0.0001, 0.0003]))

    # Act
    out = resample_bars(hours, Timeframe.H1, Timeframe.H4, anchor=UTC, volume_kind=VolumeKind.TICK)

    # Assert
    assert out["spread"].to_list() == pytest.approx([0.0002])


@pytest.mark.parametrize(
    ("source", "target"), [(Timeframe.H1, Timeframe.M30), (Timeframe.D1, Timeframe.D1)]
)
def test_resample_to_shorter_or_same_timeframe_raises_usage_error(
    source: Timeframe, target: Timeframe
) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=f"cannot resample {source.value} to {target.value}"):
        resample_bars(
            _hourly(utc(2017, 1, 3), 2), source, target, anchor=UTC, volume_kind=VolumeKind.TICK
        )


@settings(max_examples=40, deadline=None)
@given(
    offsets=st.sets(st.integers(0, 24 * 21), min_size=1, max_size=120),
    target=st.sampled_from([Timeframe.H4, Timeframe.D1, Timeframe.W1]),
    anchor=st.sampled_from([UTC, BROKER]),
)
def test_resample_every_source_bar_lands_in_exactly_one_bucket(
    offsets: set[int], target: Timeframe, anchor: object
) -> None:
    # Arrange: hourly bars at random hours of three weeks around a daylight saving change.
    start = utc(2017, 3, 1)
    rows = [
        (
            start + timedelta(hours=h),
            2.0 + h / 100,
            2.5 + h / 100,
            1.5 + h / 100,
            2.1 + h / 100,
            float(h),
            None,
        )
        for h in sorted(offsets)
    ]
    hours = bar_frame(rows)

    # Act
    out = resample_bars(hours, Timeframe.H1, target, anchor=anchor, volume_kind=VolumeKind.TICK)  # type: ignore[arg-type]

    # Assert: buckets increase; each holds the bars from its label to the next label.
    labels = out["ts"].to_list()
    assert labels == sorted(set(labels))
    bounds = [*labels[1:], datetime.max.replace(tzinfo=start.tzinfo)]
    for bucket, end in zip(out.iter_rows(named=True), bounds, strict=True):
        inside = hours.filter((pl.col("ts") >= bucket["ts"]) & (pl.col("ts") < end))
        assert inside.height > 0
        assert bucket["open"] == inside["open"][0]
        assert bucket["close"] == inside["close"][-1]
        assert bucket["high"] == inside["high"].max()
        assert bucket["low"] == inside["low"].min()
        assert bucket["volume"] == inside["volume"].sum()
    assert hours.filter(pl.col("ts") < labels[0]).height == 0
    local = out.select(anchor.from_utc(pl.col("ts")))["ts"]  # type: ignore[attr-defined]
    assert (local.dt.minute() == 0).all()
    assert (local.dt.hour() % (4 if target is Timeframe.H4 else 24) == 0).all()
    if target is Timeframe.W1:
        assert (local.dt.weekday() == 1).all()  # Monday on the anchor clock

"""Source clocks: parsing their names and converting wall times to UTC and back."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit.files import utc

from core.clocks import BROKER, UTC, Anchor, Clock, bar_clock, parse_clock
from core.errors import UsageError
from core.timeframes import Timeframe


def _to_utc(clock: Clock, *local: datetime) -> list[datetime | None]:
    frame = pl.DataFrame({"t": list(local)}, schema={"t": pl.Datetime("us")})
    return frame.select(clock.to_utc(pl.col("t")))["t"].to_list()


def _from_utc(clock: Clock, *instants: datetime) -> list[datetime]:
    frame = pl.DataFrame({"t": list(instants)}, schema={"t": pl.Datetime("us", "UTC")})
    return frame.select(clock.from_utc(pl.col("t")))["t"].to_list()


def test_broker_clock_winter_morning_is_utc_plus_2() -> None:
    # Act
    (converted,) = _to_utc(BROKER, datetime(2017, 1, 2, 9, 0))

    # Assert
    assert converted == utc(2017, 1, 2, 7, 0)


def test_broker_clock_summer_morning_is_utc_plus_3() -> None:
    # Act
    (converted,) = _to_utc(BROKER, datetime(2017, 7, 3, 9, 0))

    # Assert
    assert converted == utc(2017, 7, 3, 6, 0)


def test_broker_clock_midnight_is_new_york_1700_previous_day() -> None:
    # Arrange: the broker day starts at 17:00 New York, whatever the season.
    winter, summer = datetime(2017, 1, 3), datetime(2017, 7, 4)

    # Act
    converted = _to_utc(BROKER, winter, summer)

    # Assert
    assert converted == [utc(2017, 1, 2, 22), utc(2017, 7, 3, 21)]


def test_broker_clock_skipped_hour_becomes_null() -> None:
    # Arrange: New York skipped 02:00-03:00 on 2017-03-12, i.e. 09:00-10:00 broker time.
    skipped, before, after = (
        datetime(2017, 3, 12, 9, 30),
        datetime(2017, 3, 12, 8, 59),
        datetime(2017, 3, 12, 10, 0),
    )

    # Act
    converted = _to_utc(BROKER, skipped, before, after)

    # Assert
    assert converted == [None, utc(2017, 3, 12, 6, 59), utc(2017, 3, 12, 7, 0)]


def test_zone_clock_nonexistent_local_time_becomes_null() -> None:
    # Arrange: London went from 01:00 to 02:00 on 2017-03-26.
    clock = parse_clock("Europe/London")

    # Act
    converted = _to_utc(clock, datetime(2017, 3, 26, 1, 30), datetime(2017, 3, 26, 2, 30))

    # Assert
    assert converted == [None, utc(2017, 3, 26, 1, 30)]


def test_zone_clock_ambiguous_local_time_takes_earlier_instant() -> None:
    # Arrange: London repeated 01:00-02:00 on 2017-10-29 (first in BST, then in GMT).
    clock = parse_clock("Europe/London")

    # Act
    (converted,) = _to_utc(clock, datetime(2017, 10, 29, 1, 30))

    # Assert
    assert converted == utc(2017, 10, 29, 0, 30)


def test_etc_gmt_plus_5_is_five_hours_behind_utc_all_year() -> None:
    # Arrange: HistData's EST, POSIX sign convention.
    clock = parse_clock("Etc/GMT+5")

    # Act
    converted = _to_utc(clock, datetime(2017, 1, 2, 2, 0), datetime(2017, 7, 3, 2, 0))

    # Assert
    assert converted == [utc(2017, 1, 2, 7, 0), utc(2017, 7, 3, 7, 0)]


@pytest.mark.parametrize(
    ("spec", "local", "expected"),
    [
        ("UTC+2", datetime(2017, 7, 3, 9, 0), utc(2017, 7, 3, 7, 0)),
        ("utc-05:00", datetime(2017, 1, 2, 2, 0), utc(2017, 1, 2, 7, 0)),
        ("GMT+0", datetime(2017, 1, 2, 2, 0), utc(2017, 1, 2, 2, 0)),
        ("UTC+05:30", datetime(2017, 1, 2, 12, 0), utc(2017, 1, 2, 6, 30)),
        ("UTC-03:30", datetime(2017, 1, 2, 12, 0), utc(2017, 1, 2, 15, 30)),
    ],
)
def test_fixed_offset_clock_shifts_wall_time_by_offset(
    spec: str, local: datetime, expected: datetime
) -> None:
    # Arrange
    clock = parse_clock(spec)

    # Act
    (converted,) = _to_utc(clock, local)

    # Assert
    assert converted == expected


@pytest.mark.parametrize("spec", ["UTC", "gmt", "Z", "Etc/UTC"])
def test_parse_clock_utc_spellings_return_utc(spec: str) -> None:
    # Act / Assert
    assert parse_clock(spec) is UTC


@pytest.mark.parametrize("spec", ["broker:ny-close", "broker", "MT4", "ny-close"])
def test_parse_clock_broker_spellings_return_broker(spec: str) -> None:
    # Act
    clock = parse_clock(spec)

    # Assert
    assert clock is BROKER
    assert clock.zone == "America/New_York"
    assert clock.shift == timedelta(hours=7)


@pytest.mark.parametrize("spec", ["Mars/Olympus", "UTC+", "broker:tokyo", "", "EST5EDT/x"])
def test_parse_clock_unknown_name_raises_usage_error(spec: str) -> None:
    # Act
    with pytest.raises(UsageError) as caught:
        parse_clock(spec)

    # Assert
    assert "unknown clock" in str(caught.value)
    assert "broker:ny-close" in str(caught.value)


def test_parse_clock_clock_instance_returned_unchanged() -> None:
    # Act / Assert
    assert parse_clock(BROKER) is BROKER


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31)),
    st.sampled_from(["broker:ny-close", "UTC+2", "UTC-03:30", "Etc/GMT+5", "Europe/London"]),
)
def test_clock_from_utc_then_to_utc_returns_the_instant(moment: datetime, spec: str) -> None:
    # Arrange: every UTC instant has a wall time; ambiguous wall times resolve to the earlier
    # instant, so the round trip holds except inside a repeated hour.
    clock = parse_clock(spec)
    instant = moment.replace(microsecond=0, tzinfo=utc(2000, 1, 1).tzinfo)

    # Act
    (local,) = _from_utc(clock, instant)
    (back,) = _to_utc(clock, local)

    # Assert
    assert back is not None
    assert back == instant or back == instant - timedelta(hours=1)


@pytest.mark.parametrize(
    ("timeframe", "calendar", "anchor", "expected"),
    [
        (Timeframe.H1, "fx", None, UTC),
        (Timeframe.H1, "fx", "broker", UTC),  # bars under four hours are always cut on UTC
        (Timeframe.M15, "crypto", Anchor.BROKER, UTC),
        (Timeframe.H4, "fx", None, BROKER),
        (Timeframe.D1, "fx", None, BROKER),
        (Timeframe.W1, "fx", None, BROKER),
        (Timeframe.MN1, "fx", None, BROKER),
        (Timeframe.D1, "equity", None, UTC),
        (Timeframe.D1, "crypto", None, UTC),
        (Timeframe.H4, "fx", Anchor.UTC, UTC),
        (Timeframe.D1, "crypto", Anchor.BROKER, BROKER),
        (Timeframe.D1, "fx", "UTC", UTC),  # the clock name a resampled series records
        (Timeframe.D1, "equity", "broker:ny-close", BROKER),
    ],
)
def test_bar_clock_long_bars_by_anchor_then_calendar_short_bars_on_utc(
    timeframe: Timeframe, calendar: str, anchor: str | None, expected: Clock
) -> None:
    assert bar_clock(timeframe, calendar, anchor) == expected


def test_bar_clock_unknown_anchor_refused() -> None:
    with pytest.raises(UsageError, match="unknown clock"):
        bar_clock(Timeframe.D1, "fx", "sydney-open")

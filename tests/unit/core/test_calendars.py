"""Trading calendars: open hours, open minutes and trading days as Polars expressions."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from testkit.files import utc

from core.calendars import CALENDARS, get_calendar
from core.errors import UsageError


def _apply(expr_of: object, *instants: datetime) -> list[object]:
    frame = pl.DataFrame({"ts": list(instants)}, schema={"ts": pl.Datetime("us", "UTC")})
    return frame.select(expr_of(pl.col("ts")).alias("out"))["out"].to_list()  # type: ignore[operator]


def test_fx_is_open_from_sunday_new_york_close_to_friday_close() -> None:
    # Arrange: winter, New York close 17:00 = 22:00 UTC.
    fx = get_calendar("fx")
    instants = [
        utc(2017, 1, 6, 21, 59),  # Friday, last minute of the week
        utc(2017, 1, 6, 22, 0),  # Friday close
        utc(2017, 1, 7, 12, 0),  # Saturday
        utc(2017, 1, 8, 21, 59),  # Sunday before the open
        utc(2017, 1, 8, 22, 0),  # Sunday open
        utc(2017, 1, 10, 3, 0),  # Tuesday night
    ]

    # Act
    is_open = _apply(fx.is_open, *instants)

    # Assert
    assert is_open == [True, False, False, False, True, True]


def test_fx_is_open_week_shifts_one_hour_utc_in_summer() -> None:
    # Arrange: New York close 17:00 = 21:00 UTC while daylight saving is in force.
    fx = get_calendar("fx")

    # Act
    is_open = _apply(fx.is_open, utc(2017, 7, 7, 20, 59), utc(2017, 7, 7, 21, 0),
                     utc(2017, 7, 9, 21, 0))  # fmt: skip

    # Assert
    assert is_open == [True, False, True]


def test_fx_trading_minutes_weekend_counts_as_no_time() -> None:
    # Arrange: the last H1 bar of the week and the first of the next.
    fx = get_calendar("fx")
    friday_last, sunday_first = utc(2017, 1, 6, 21), utc(2017, 1, 8, 22)

    # Act
    minutes = _apply(fx.trading_minutes, friday_last, sunday_first)

    # Assert
    assert minutes[1] - minutes[0] == 60


def test_fx_trading_minutes_inside_the_week_count_wall_minutes() -> None:
    # Arrange
    fx = get_calendar("fx")

    # Act
    minutes = _apply(fx.trading_minutes, utc(2017, 1, 9, 10), utc(2017, 1, 10, 10, 30))

    # Assert
    assert minutes[1] - minutes[0] == 24 * 60 + 30


def test_fx_trading_days_weekend_shares_the_next_monday() -> None:
    # Arrange: D1 bars are labelled 22:00 UTC (winter) = 00:00 broker of the next day.
    fx = get_calendar("fx")
    friday_bar, saturday, monday_bar = utc(2017, 1, 5, 22), utc(2017, 1, 7, 12), utc(2017, 1, 8, 22)

    # Act
    days = _apply(fx.trading_days, friday_bar, saturday, monday_bar)

    # Assert
    assert days[2] - days[0] == 1
    assert days[1] == days[2]


def test_nyse_session_is_0930_to_1600_new_york_on_weekdays() -> None:
    # Arrange: winter, New York = UTC-5.
    nyse = get_calendar("nyse")
    instants = [
        utc(2017, 1, 3, 14, 29),  # 09:29
        utc(2017, 1, 3, 14, 30),  # 09:30
        utc(2017, 1, 3, 20, 59),  # 15:59
        utc(2017, 1, 3, 21, 0),  # 16:00
        utc(2017, 1, 7, 15, 0),  # Saturday 10:00
        utc(2017, 7, 3, 13, 30),  # summer 09:30 = 13:30 UTC
    ]

    # Act
    is_open = _apply(nyse.is_open, *instants)

    # Assert
    assert is_open == [False, True, True, False, False, True]


def test_nyse_trading_minutes_overnight_counts_no_time() -> None:
    # Arrange: Tuesday's close and Wednesday's open are one minute apart in session time.
    nyse = get_calendar("nyse")

    # Act
    minutes = _apply(nyse.trading_minutes, utc(2017, 1, 3, 20, 59), utc(2017, 1, 4, 14, 30))

    # Assert
    assert minutes[1] - minutes[0] == 1
    assert nyse.minutes_per_day == 390


def test_crypto_is_always_open() -> None:
    # Arrange
    crypto = get_calendar("crypto")

    # Act
    is_open = _apply(crypto.is_open, utc(2017, 1, 7, 3), utc(2017, 1, 8, 23, 59))
    minutes = _apply(crypto.trading_minutes, utc(2017, 1, 6, 12), utc(2017, 1, 8, 12))

    # Assert
    assert is_open == [True, True]
    assert minutes[1] - minutes[0] == 2 * 24 * 60


def test_get_calendar_unknown_name_raises_usage_error_listing_names() -> None:
    # Act
    with pytest.raises(UsageError) as caught:
        get_calendar("lse")

    # Assert
    assert all(name in str(caught.value) for name in CALENDARS)

"""Timeframe names, aliases and the errors for names that are none."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import UsageError
from core.timeframes import Timeframe, parse_timeframe


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("H1", Timeframe.H1),
        ("h1", Timeframe.H1),
        (" M15 ", Timeframe.M15),
        ("60", Timeframe.H1),
        (60, Timeframe.H1),
        ("1h", Timeframe.H1),
        ("4h", Timeframe.H4),
        ("240", Timeframe.H4),
        ("15min", Timeframe.M15),
        ("5m", Timeframe.M5),
        ("1", Timeframe.M1),
        ("1440", Timeframe.D1),
        ("1d", Timeframe.D1),
        ("daily", Timeframe.D1),
        ("hour", Timeframe.H1),
        ("10080", Timeframe.W1),
        ("1w", Timeframe.W1),
        ("weekly", Timeframe.W1),
        ("43200", Timeframe.MN1),
        ("mn1", Timeframe.MN1),
        ("1mo", Timeframe.MN1),
        ("monthly", Timeframe.MN1),
    ],
)
def test_parse_timeframe_accepted_spelling_normalized(text: str | int, expected: Timeframe) -> None:
    # Act
    parsed = parse_timeframe(text)

    # Assert
    assert parsed is expected


@pytest.mark.parametrize("text", ["H2", "2h", "7", "0", "", "1y", "hourlyish", "-60", "M1.5"])
def test_parse_timeframe_unknown_name_raises_usage_error_listing_choices(text: str) -> None:
    # Act
    with pytest.raises(UsageError) as caught:
        parse_timeframe(text)

    # Assert
    assert caught.value.exit_code == 2
    assert "M1, M5, M15, M30, H1, H4, D1, W1, MN1" in str(caught.value)


def test_parse_timeframe_member_returned_unchanged() -> None:
    # Act / Assert
    assert parse_timeframe(Timeframe.D1) is Timeframe.D1


@pytest.mark.parametrize(
    ("timeframe", "minutes", "intraday", "every"),
    [
        (Timeframe.M1, 1, True, "1m"),
        (Timeframe.H4, 240, True, "240m"),
        (Timeframe.D1, 1440, False, "1440m"),
        (Timeframe.W1, 10080, False, "1w"),
        (Timeframe.MN1, 43200, False, "1mo"),
    ],
)
def test_timeframe_properties_match_bar_length(
    timeframe: Timeframe, minutes: int, intraday: bool, every: str
) -> None:
    # Assert
    assert timeframe.minutes == minutes
    assert timeframe.duration == timedelta(minutes=minutes)
    assert timeframe.is_intraday is intraday
    assert timeframe.polars_every == every
    assert str(timeframe) == timeframe.value


@given(st.sampled_from(list(Timeframe)))
def test_parse_timeframe_any_member_round_trips_through_name_and_minutes(tf: Timeframe) -> None:
    # Act
    by_name = parse_timeframe(tf.value.lower())
    by_minutes = parse_timeframe(str(tf.minutes))

    # Assert
    assert by_name is tf
    assert by_minutes is tf

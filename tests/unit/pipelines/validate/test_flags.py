"""Quality flags: price jumps and calendar gaps are flagged, weekends and quiet nights are not."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from testkit.files import bar_frame, utc

from core.calendars import get_calendar
from core.timeframes import Timeframe
from pipelines.validate.flags import jump_score, missing_bars, quality_flags

FX = get_calendar("fx")


def _closes(ts: list, closes: list[float]) -> pl.DataFrame:  # type: ignore[type-arg]
    return bar_frame((t, c, c, c, c, 1.0, None) for t, c in zip(ts, closes, strict=True))


def _wiggle(n: int) -> list[float]:
    # Small alternating moves: a steady, non-zero sigma.
    return [1.1 + (0.0003 if i % 2 else 0.0) + (0.0001 if i % 3 == 0 else 0.0) for i in range(n)]


def test_quality_flags_price_jump_flagged_with_time_and_sigmas() -> None:
    # Arrange: 60 quiet hourly bars inside one trading week, then a 3% jump.
    ts = [utc(2017, 1, 9, 0) + timedelta(hours=i) for i in range(61)]
    closes = [*_wiggle(60), 1.1 * 1.03]

    # Act
    flags = quality_flags(_closes(ts, closes), Timeframe.H1, FX, jump_sigmas=10, jump_window=50)

    # Assert
    assert flags.jumps == 1
    assert flags.jump_examples[0]["ts"] == "2017-01-11T12:00:00Z"
    assert flags.jump_examples[0]["sigmas"] > 10
    assert flags.gaps == 0


def test_quality_flags_quiet_series_has_no_jump() -> None:
    # Arrange
    ts = [utc(2017, 1, 9, 0) + timedelta(hours=i) for i in range(61)]

    # Act
    flags = quality_flags(
        _closes(ts, _wiggle(61)), Timeframe.H1, FX, jump_sigmas=10, jump_window=50
    )

    # Assert
    assert flags.jumps == 0
    assert flags.jump_examples == []


def test_quality_flags_fx_weekend_is_not_a_gap() -> None:
    # Arrange: Friday 20:00 and 21:00 UTC, then Sunday 22:00 and 23:00 UTC (winter).
    ts = [utc(2017, 1, 6, 20), utc(2017, 1, 6, 21), utc(2017, 1, 8, 22), utc(2017, 1, 8, 23)]

    # Act
    flags = quality_flags(_closes(ts, [1.1] * 4), Timeframe.H1, FX, jump_sigmas=10, jump_window=50)

    # Assert
    assert (flags.gaps, flags.missing_bars) == (0, 0)


def test_quality_flags_missing_hours_inside_week_are_a_gap() -> None:
    # Arrange: Tuesday 10:00 then 14:00 UTC: 11, 12 and 13 are missing.
    ts = [utc(2017, 1, 10, 9), utc(2017, 1, 10, 10), utc(2017, 1, 10, 14)]

    # Act
    flags = quality_flags(_closes(ts, [1.1] * 3), Timeframe.H1, FX, jump_sigmas=10, jump_window=50)

    # Assert
    assert (flags.gaps, flags.missing_bars) == (1, 3)
    assert flags.largest_gaps == [
        {"after": "2017-01-10T10:00:00Z", "before": "2017-01-10T14:00:00Z", "missing_bars": 3}
    ]


def test_quality_flags_fx_daily_bars_skip_weekend_without_gap() -> None:
    # Arrange: broker days Thursday, Friday, then Monday, Wednesday (Tuesday missing).
    ts = [utc(2017, 1, 4, 22), utc(2017, 1, 5, 22), utc(2017, 1, 8, 22), utc(2017, 1, 10, 22)]

    # Act
    flags = quality_flags(_closes(ts, [1.1] * 4), Timeframe.D1, FX, jump_sigmas=10, jump_window=50)

    # Assert
    assert (flags.gaps, flags.missing_bars) == (1, 1)


def test_quality_flags_nyse_overnight_is_not_a_gap() -> None:
    # Arrange: 15:00 New York bar, then the next day's 09:30 bar (winter, UTC-5).
    nyse = get_calendar("nyse")
    ts = [utc(2017, 1, 3, 20, 0), utc(2017, 1, 3, 20, 30), utc(2017, 1, 4, 14, 30)]

    # Act
    flags = quality_flags(
        _closes(ts, [100.0] * 3), Timeframe.M30, nyse, jump_sigmas=10, jump_window=50
    )

    # Assert
    assert flags.gaps == 0


def test_quality_flags_single_bar_flags_nothing() -> None:
    # Act
    flags = quality_flags(
        _closes([utc(2017, 1, 3)], [1.1]), Timeframe.H1, FX, jump_sigmas=10, jump_window=50
    )

    # Assert
    assert flags.as_dict() == {
        "jumps": 0, "jump_examples": [], "gaps": 0, "missing_bars": 0, "largest_gaps": [],
    }  # fmt: skip


def test_missing_bars_weekly_series_never_reports_gaps() -> None:
    # Arrange
    frame = pl.DataFrame({"previous": [utc(2017, 1, 1, 22)], "ts": [utc(2017, 3, 1, 22)]})

    # Act
    missing = frame.select(missing_bars(pl.col("previous"), pl.col("ts"), Timeframe.W1, FX))

    # Assert
    assert missing.to_series().to_list() == [0]


def test_jump_score_needs_enough_history() -> None:
    # Arrange: fewer than 10 previous returns give no sigma, hence no score.
    frame = pl.DataFrame({"close": [1.0, 1.1, 1.0, 1.2, 1.0]})

    # Act
    scores = frame.select(jump_score(pl.col("close"), 50)).to_series()

    # Assert
    assert scores.null_count() == scores.len()

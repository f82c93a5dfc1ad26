"""Point-in-time joins attach only bars that had ended by each row's close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clocks import BROKER
from core.timeframes import Timeframe
from pipelines.pit import bar_end, join_known


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _frame(ts: list[datetime], **columns: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"ts": ts, **columns}).with_columns(pl.col("ts").dt.cast_time_unit("us"))


def test_join_known_h1_row_sees_h4_bar_only_after_it_ends() -> None:
    # Arrange: H4 bars at 00:00 and 04:00; H1 rows from 02:00 to 08:00.
    h4 = _frame([_utc(2017, 1, 3, 0), _utc(2017, 1, 3, 4)], close=[1.0, 2.0])
    h1 = _frame([_utc(2017, 1, 3, h) for h in range(2, 9)], close=[0.0] * 7)

    # Act
    out = join_known(h1, Timeframe.H1, h4, Timeframe.H4, prefix="h4_")

    # Assert: the 00:00 H4 bar ends at 04:00, known to the 03:00 H1 bar (which ends at 04:00);
    # the 04:00 H4 bar ends at 08:00, known to the 07:00 H1 bar.
    assert out["h4_close"].to_list() == [None, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0]


def test_bar_end_broker_day_spanning_fall_back_lasts_25_hours() -> None:
    # Arrange: broker days starting Friday 2017-11-03 and Saturday 2017-11-04 at 21:00 UTC
    # (17:00 New York, EDT). New York returns to EST at 02:00 on Sunday, so Saturday's broker
    # day ends at 17:00 EST = 22:00 UTC, 25 hours after it began.
    ts = pl.DataFrame({"ts": [_utc(2017, 11, 3, 21), _utc(2017, 11, 4, 21)]})

    # Act
    ends = ts.select(bar_end(pl.col("ts"), Timeframe.D1, BROKER))["ts"].to_list()

    # Assert
    assert ends == [_utc(2017, 11, 4, 21), _utc(2017, 11, 5, 22)]


def test_bar_end_monthly_uses_calendar_months() -> None:
    # Act
    ends = pl.DataFrame({"ts": [_utc(2017, 2, 1)]}).select(bar_end(pl.col("ts"), Timeframe.MN1))[
        "ts"
    ]

    # Assert
    assert ends.to_list() == [_utc(2017, 3, 1)]


@settings(max_examples=40, deadline=None)
@given(
    n_high=st.integers(min_value=1, max_value=30),
    n_low=st.integers(min_value=1, max_value=200),
    cut=st.integers(min_value=1, max_value=200),
)
def test_join_known_truncated_higher_series_gives_same_values(
    n_high: int, n_low: int, cut: int
) -> None:
    # Arrange: H4 bars, and H1 rows; cut the H4 series at any bar.
    start = _utc(2017, 1, 2)
    h4 = _frame([start + timedelta(hours=4 * i) for i in range(n_high)],
                close=[float(i) for i in range(n_high)])  # fmt: skip
    h1 = _frame([start + timedelta(hours=i) for i in range(n_low)], close=[0.0] * n_low)
    cut_ts = start + timedelta(hours=min(cut, n_low))

    # Act: the higher series as it existed at cut_ts holds only bars that had ended by then.
    full = join_known(h1, Timeframe.H1, h4, Timeframe.H4, prefix="h4_")
    known_then = h4.filter(pl.col("ts") + timedelta(hours=4) <= cut_ts)
    partial = join_known(h1, Timeframe.H1, known_then, Timeframe.H4, prefix="h4_")

    # Assert: rows decided by cut_ts see the same values either way.
    decided = (pl.col("ts") + timedelta(hours=1)) <= cut_ts
    assert full.filter(decided).equals(partial.filter(decided))


def test_join_known_leaky_join_on_open_times_is_caught() -> None:
    # Arrange: joining on open times (the mistake) lets an H1 row see an unfinished H4 bar.
    h4 = _frame([_utc(2017, 1, 3, 0), _utc(2017, 1, 3, 4)], close=[1.0, 2.0])
    h1 = _frame([_utc(2017, 1, 3, 4)], close=[0.0])

    # Act
    leaky = h1.join_asof(h4.rename({"close": "h4_close"}), on="ts", strategy="backward")
    correct = join_known(h1, Timeframe.H1, h4, Timeframe.H4, prefix="h4_")

    # Assert: at 04:00-05:00 the 04:00 H4 bar is still forming; only the 00:00 bar is known.
    assert leaky["h4_close"].to_list() == [2.0]
    assert correct["h4_close"].to_list() == [1.0]

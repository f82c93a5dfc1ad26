"""The scalar clock helpers equal their expression versions, one instant at a time.

The instants are a seeded sample of a few thousand, crowded around the daylight-saving changes
of New York and London, month ends and the FX weekend, plus a spread over five years.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from testkit.files import utc

from core.calendars import CALENDARS, get_calendar
from core.clocks import BROKER, Clock, bar_end_at, bar_open_at, day_start_at, parse_clock
from core.clocks import UTC as UTC_CLOCK
from core.timeframes import Timeframe
from core.types import VolumeKind
from pipelines.resample import resample_bars

LONDON = parse_clock("Europe/London")
PLUS_2 = parse_clock("UTC+2")
EST = parse_clock("Etc/GMT+5")
CLOCKS = {"utc": UTC_CLOCK, "broker": BROKER, "utc+2": PLUS_2, "est": EST, "london": LONDON}
UTC_TYPE = pl.Datetime("us", "UTC")

# New York (07:00Z in March, 06:00Z in November) and London (01:00Z) daylight-saving changes.
TRANSITIONS = [
    utc(2017, 3, 12, 7), utc(2017, 3, 26, 1), utc(2017, 10, 29, 1), utc(2017, 11, 5, 6),
    utc(2020, 3, 8, 7), utc(2020, 3, 29, 1), utc(2020, 10, 25, 1), utc(2020, 11, 1, 6),
]  # fmt: skip
MONTH_ENDS = [utc(2017, month, 1) for month in range(1, 13)] + [utc(2020, 3, 1)]
WEEKENDS = [utc(2017, 1, 6, 22), utc(2017, 1, 8, 22), utc(2017, 7, 7, 21), utc(2017, 7, 9, 21)]


def _sample(seed: int = 20170312) -> list[datetime]:
    rng = np.random.default_rng(seed)
    anchors = TRANSITIONS + MONTH_ENDS + WEEKENDS
    near = [
        anchor + timedelta(seconds=int(offset))
        for anchor in anchors
        for offset in rng.integers(-36 * 3600, 36 * 3600, size=120)
    ]
    start, span = utc(2016, 1, 1), 5 * 365 * 86400
    spread = [start + timedelta(seconds=int(s)) for s in rng.integers(0, span, size=1200)]
    return sorted(set(near + spread))


INSTANTS = _sample()


def _repeated(clock: Clock, ts: pl.Expr) -> pl.Expr:
    """Return whether each instant's wall time on ``clock`` occurs twice (clocks going back)."""
    if clock.zone == "UTC":
        return pl.lit(value=False)
    wall = clock.from_utc(ts) - clock.shift
    earliest = wall.dt.replace_time_zone(clock.zone, ambiguous="earliest")
    return earliest != wall.dt.replace_time_zone(clock.zone, ambiguous="latest")


def _column(values: list[datetime], dtype: pl.DataType) -> pl.DataFrame:
    return pl.DataFrame({"t": values}, schema={"t": dtype})


def _unrepeated(clock: Clock, instants: list[datetime]) -> list[datetime]:
    """Return the instants whose wall time on ``clock`` occurs once."""
    frame = _column(instants, UTC_TYPE)
    return frame.filter(~_repeated(clock, pl.col("t")))["t"].to_list()


def _dense(start: datetime, end: datetime, every: str) -> pl.Series:
    return pl.datetime_range(start, end, every, closed="left", eager=True, time_zone="UTC")


def _bars(clock: Clock, ts: pl.Series) -> pl.DataFrame:
    """Return bars at the minutes of ``ts`` (sorted, unique, none in a repeated hour of
    ``clock``: the store cannot sort those; FX does not trade then, on a Sunday morning in New
    York), without volume."""
    minutes = (
        pl.DataFrame({"ts": ts.cast(UTC_TYPE)})
        .select(pl.col("ts").dt.truncate("1m"))
        .unique()
        .sort("ts")
        .filter(~_repeated(clock, pl.col("ts")))
    )
    price = 1.1 + pl.int_range(pl.len()) * 1e-5
    return minutes.select(
        "ts",
        open=price,
        high=price + 2e-4,
        low=price - 2e-4,
        close=price + 1e-4,
        volume=pl.lit(0.0),
        spread=pl.lit(None, dtype=pl.Float64),
    )


# -- Clock.local_at / utc_at --------------------------------------------------------------


@pytest.mark.parametrize("name", CLOCKS)
def test_local_at_sampled_instants_equal_from_utc(name: str) -> None:
    # Arrange
    clock = CLOCKS[name]
    frame = _column(INSTANTS, UTC_TYPE)

    # Act
    expected = frame.select(clock.from_utc(pl.col("t")))["t"].to_list()
    scalar = [clock.local_at(t) for t in INSTANTS]

    # Assert
    assert scalar == expected


@pytest.mark.parametrize("name", CLOCKS)
def test_utc_at_sampled_wall_times_equal_to_utc_where_it_exists(name: str) -> None:
    # Arrange: the same instants read as wall times, so they hit skipped and repeated hours.
    clock = CLOCKS[name]
    walls = [t.replace(tzinfo=None) + timedelta(hours=h) for t in INSTANTS for h in (0, 2)]
    frame = _column(walls, pl.Datetime("us"))

    # Act
    expected = frame.select(clock.to_utc(pl.col("t")))["t"].to_list()
    pairs = [(clock.utc_at(w), e) for w, e in zip(walls, expected, strict=True) if e is not None]

    # Assert
    assert len(pairs) > 0.99 * len(walls)
    assert [scalar for scalar, _ in pairs] == [e for _, e in pairs]


# -- bar_open_at / bar_end_at against the store's resampling ---------------------------------


@pytest.mark.parametrize("name", CLOCKS)
@pytest.mark.parametrize(
    "timeframe",
    [Timeframe.M5, Timeframe.H1, Timeframe.H4, Timeframe.D1, Timeframe.W1, Timeframe.MN1],
)
def test_bar_open_at_sampled_instants_equal_resample_buckets(
    name: str, timeframe: Timeframe
) -> None:
    # Arrange
    clock = CLOCKS[name]
    bars = _bars(clock, pl.Series(INSTANTS))
    stored = resample_bars(bars, Timeframe.M1, timeframe, anchor=clock, volume_kind=VolumeKind.NONE)

    # Act
    counted = Counter(bar_open_at(t, timeframe, clock) for t in bars["ts"].to_list())

    # Assert: the same buckets, holding the same bars (volume counts the M1 bars).
    expected = dict(zip(stored["ts"].to_list(), stored["volume"].to_list(), strict=True))
    assert {ts: float(n) for ts, n in counted.items()} == expected


@pytest.mark.parametrize(
    ("name", "timeframe"),
    [
        *[(n, tf) for n in ("utc", "utc+2", "est") for tf in (Timeframe.M5, Timeframe.H1)],
        *[(n, tf) for n in CLOCKS for tf in (Timeframe.H4, Timeframe.D1)],
    ],
)
def test_bar_end_at_dense_bars_equal_next_resample_bucket(name: str, timeframe: Timeframe) -> None:
    # Arrange: every minute of three days around each daylight-saving change.
    clock = CLOCKS[name]
    minutes = pl.concat(
        [
            _dense(t - timedelta(days=1, hours=12), t + timedelta(days=1, hours=12), "1m")
            for t in TRANSITIONS
        ]
    )
    stored = resample_bars(
        _bars(clock, minutes), Timeframe.M1, timeframe, anchor=clock, volume_kind=VolumeKind.NONE
    )
    opens = stored["ts"].to_list()

    # Act
    ends = [bar_end_at(o, timeframe, clock) for o in opens[:-1]]

    # Assert: each bar ends where the next one opens, except across the gaps between samples.
    consecutive = [
        (e, nxt) for e, nxt in zip(ends, opens[1:], strict=True) if nxt - e < timedelta(days=1)
    ]
    assert len(consecutive) >= len(ends) - len(TRANSITIONS)
    assert all(e == nxt for e, nxt in consecutive)


@pytest.mark.parametrize("name", CLOCKS)
@pytest.mark.parametrize("timeframe", [Timeframe.W1, Timeframe.MN1])
def test_bar_end_at_calendar_bars_equal_next_resample_bucket(
    name: str, timeframe: Timeframe
) -> None:
    # Arrange: hourly bars through two years.
    clock = CLOCKS[name]
    hours = _dense(utc(2016, 12, 1), utc(2018, 12, 1), "1h")
    stored = resample_bars(
        _bars(clock, hours), Timeframe.H1, timeframe, anchor=clock, volume_kind=VolumeKind.NONE
    )
    opens = stored["ts"].to_list()

    # Act
    ends = [bar_end_at(o, timeframe, clock) for o in opens[:-1]]

    # Assert
    assert ends == opens[1:]


@pytest.mark.parametrize("name", CLOCKS)
@pytest.mark.parametrize("timeframe", [Timeframe.M15, Timeframe.H4, Timeframe.D1, Timeframe.W1])
def test_bar_open_at_and_end_hold_the_instant_and_tile_time(
    name: str, timeframe: Timeframe
) -> None:
    # Arrange
    clock = CLOCKS[name]
    instants = _unrepeated(clock, INSTANTS[::3])

    # Act
    bounds = [(bar_open_at(t, timeframe, clock), t) for t in instants]
    spans = [
        (o, t, bar_end_at(o, timeframe, clock), bar_end_at(t, timeframe, clock)) for o, t in bounds
    ]

    # Assert: the bar holds the instant, any instant in it gives the same end, and the end
    # opens the next bar.
    tick = timedelta(microseconds=1)
    assert all(o <= t < e == e_any for o, t, e, e_any in spans)
    assert all(bar_open_at(e, timeframe, clock) == e for _, _, e, _ in spans)
    assert all(bar_open_at(e - tick, timeframe, clock) == o for o, _, e, _ in spans)


def test_bar_open_at_d1_broker_equals_day_start_at() -> None:
    # Act
    pairs = [(bar_open_at(t, Timeframe.D1, BROKER), day_start_at(t)) for t in INSTANTS]

    # Assert
    assert all(bar == day for bar, day in pairs)


@pytest.mark.parametrize(
    ("moment", "hours"),
    [
        (utc(2017, 3, 11, 23), 23),  # the broker day holding New York's spring change
        (utc(2017, 11, 4, 23), 25),  # and its autumn change
        (utc(2017, 7, 4, 12), 24),
    ],
)
def test_bar_end_at_d1_broker_across_dst_lasts_23_or_25_hours(moment: datetime, hours: int) -> None:
    # Act
    opened = bar_open_at(moment, Timeframe.D1, BROKER)
    ended = bar_end_at(opened, Timeframe.D1, BROKER)

    # Assert
    assert ended - opened == timedelta(hours=hours)


def test_bar_open_at_broker_repeated_hour_takes_the_earlier_label() -> None:
    # Arrange: New York repeated 01:00-02:00 on 2017-11-05 (05:00-07:00Z), broker 08:00-09:00;
    # the H4 bucket 08:00-12:00 broker time holds both passes and five hours.
    first, second = utc(2017, 11, 5, 5, 30), utc(2017, 11, 5, 6, 30)

    # Act
    opens = {bar_open_at(t, Timeframe.H4, BROKER) for t in (first, second)}
    (opened,) = opens
    ended = bar_end_at(opened, Timeframe.H4, BROKER)

    # Assert
    assert opened == utc(2017, 11, 5, 5)
    assert ended == utc(2017, 11, 5, 10)


def test_bar_open_at_naive_moment_is_read_as_utc() -> None:
    # Arrange
    aware = utc(2017, 7, 3, 21, 30)

    # Act
    naive = bar_open_at(aware.replace(tzinfo=None), Timeframe.H4, BROKER)

    # Assert
    assert naive == bar_open_at(aware, Timeframe.H4, BROKER) == utc(2017, 7, 3, 21)


def test_bar_open_at_w1_starts_monday_and_mn1_the_first_on_the_clock() -> None:
    # Arrange: Wednesday 2017-03-15 on UTC+2.
    moment = utc(2017, 3, 15, 12)

    # Act
    week = bar_open_at(moment, Timeframe.W1, PLUS_2)
    month = bar_open_at(moment, Timeframe.MN1, PLUS_2)

    # Assert: Monday 13th and March 1st, both 00:00 at UTC+2.
    assert week == datetime(2017, 3, 12, 22, tzinfo=UTC)
    assert month == datetime(2017, 2, 28, 22, tzinfo=UTC)
    assert bar_end_at(month, Timeframe.MN1, PLUS_2) == datetime(2017, 3, 31, 22, tzinfo=UTC)


# -- TradingCalendar.is_open_at / next_close_at ------------------------------------------------


@pytest.mark.parametrize("name", CALENDARS)
def test_is_open_at_sampled_instants_equals_is_open(name: str) -> None:
    # Arrange
    calendar = get_calendar(name)
    frame = _column(INSTANTS, UTC_TYPE)

    # Act
    expected = frame.select(calendar.is_open(pl.col("t")))["t"].to_list()
    scalar = [calendar.is_open_at(t) for t in INSTANTS]

    # Assert
    assert scalar == expected


@pytest.mark.parametrize("name", ["fx", "nyse"])
def test_next_close_at_is_the_first_open_to_closed_change_of_is_open(name: str) -> None:
    # Arrange: every minute from each of 150 sampled instants to its next close.
    calendar = get_calendar(name)
    starts = INSTANTS[:: len(INSTANTS) // 150]
    closes = [calendar.next_close_at(t) for t in starts]
    frame = (
        pl.DataFrame(
            {"i": range(len(starts)), "start": starts, "close": closes},
            schema={"i": pl.Int64, "start": UTC_TYPE, "close": UTC_TYPE},
        )
        .select(
            "i",
            t=pl.datetime_ranges(
                pl.col("start").dt.truncate("1m") + timedelta(minutes=1),
                pl.col("close") + timedelta(minutes=1),
                interval="1m",
            ),
        )
        .explode("t")
    )

    # Act
    changes = (
        frame.with_columns(open=calendar.is_open(pl.col("t")))
        .filter(pl.col("open").shift(1).over("i") & ~pl.col("open"))
        .group_by("i")
        .agg(pl.col("t").min())
        .sort("i")
    )

    # Assert: the market closes at the instant given, and not before it.
    assert changes["i"].to_list() == list(range(len(starts)))
    assert changes["t"].to_list() == closes
    assert all(c is not None and c > t for c, t in zip(closes, starts, strict=True))


@pytest.mark.parametrize(
    ("moment", "close"),
    [
        (utc(2017, 1, 4, 12), utc(2017, 1, 6, 22)),  # Wednesday: Friday 17:00 New York (EST)
        (utc(2017, 7, 5, 12), utc(2017, 7, 7, 21)),  # in summer (EDT)
        (utc(2017, 1, 6, 22), utc(2017, 1, 13, 22)),  # at the close: the next week's
        (utc(2017, 1, 7, 12), utc(2017, 1, 13, 22)),  # Saturday: the next week's
        (utc(2017, 3, 10, 21, 59), utc(2017, 3, 10, 22)),  # the last minute before a DST week
    ],
)
def test_next_close_at_fx_is_friday_new_york_close(moment: datetime, close: datetime) -> None:
    # Act / Assert
    assert get_calendar("fx").next_close_at(moment) == close


def test_next_close_at_crypto_never_closes() -> None:
    # Act / Assert
    assert get_calendar("crypto").next_close_at(utc(2017, 1, 7)) is None

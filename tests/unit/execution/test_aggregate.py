"""Bar aggregation: the runtime's bars equal the store's resampled bars, tick or bar at a time."""

from __future__ import annotations

import math
from datetime import datetime
from itertools import pairwise

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.files import utc

from core.calendars import get_calendar
from core.clocks import BROKER, UTC, Clock, bar_end_at, parse_clock
from core.errors import UsageError
from core.ports import BarBatch
from core.timeframes import Timeframe
from core.types import VolumeKind
from execution.aggregate import BarAggregator
from pipelines.resample import resample_bars

MINUTE_NS = 60_000_000_000
FIELDS = ("ts", "open", "high", "low", "close", "volume", "spread", "next_ts", "end", "to_account")
PLUS_2 = parse_clock("UTC+2")
# Spring: New York changes on 2017-03-12, London on 2017-03-26; autumn: 2017-10-29 and 11-05.
WINDOWS = [(utc(2017, 3, 1), utc(2017, 4, 4)), (utc(2017, 10, 25), utc(2017, 11, 10))]
# New York's repeated hour (broker 08:00-09:00 twice): the store cannot sort it; FX is closed.
REPEATED = (utc(2017, 11, 5, 5), utc(2017, 11, 5, 7))


def _ns(column: pl.Series) -> np.ndarray:
    return column.cast(pl.Datetime("ns", "UTC")).cast(pl.Int64).to_numpy()


def _m1_bars(seed: int, calendar: str, *, with_volume: bool) -> pl.DataFrame:
    """Return random-walk M1 bars through the windows, open hours of ``calendar`` only (and
    not New York's repeated hour), with missing minutes, a few gaps of hours and spreads partly
    unknown."""
    rng = np.random.default_rng(seed)
    minutes = pl.concat(
        [
            pl.datetime_range(a, b, "1m", closed="left", eager=True, time_zone="UTC")
            for a, b in WINDOWS
        ]
    )
    frame = pl.DataFrame({"ts": minutes}).filter(
        get_calendar(calendar).is_open(pl.col("ts")),
        ~pl.col("ts").is_between(*REPEATED, closed="left"),
    )
    keep = rng.random(frame.height) > 0.05
    for start in rng.integers(0, frame.height, size=6):
        keep[start : start + int(rng.integers(120, 1800))] = False
    frame = frame.filter(pl.Series(keep))
    n = frame.height
    close = 1.1 + np.cumsum(rng.normal(0, 1e-4, n))
    opened = np.concatenate(([1.1], close[:-1])) + rng.normal(0, 2e-5, n)
    spread = rng.uniform(5e-5, 2e-4, n)
    return frame.with_columns(
        open=opened,
        high=np.maximum(opened, close) + np.abs(rng.normal(0, 5e-5, n)),
        low=np.minimum(opened, close) - np.abs(rng.normal(0, 5e-5, n)),
        close=close,
        volume=rng.integers(1, 90, n).astype(float) if with_volume else np.zeros(n),
        spread=pl.Series(spread).scatter(np.flatnonzero(rng.random(n) < 0.1), None),
    )


def _batch(bars: pl.DataFrame, timeframe: Timeframe = Timeframe.M1) -> BarBatch:
    """Return stored bars as a replay feed gives them: ``next_ts`` the next bar's open."""
    ts = _ns(bars["ts"])
    length = timeframe.minutes * MINUTE_NS
    return BarBatch(
        ts=ts,
        open=bars["open"].to_numpy(),
        high=bars["high"].to_numpy(),
        low=bars["low"].to_numpy(),
        close=bars["close"].to_numpy(),
        volume=bars["volume"].to_numpy(),
        spread=bars["spread"].fill_null(math.nan).to_numpy(),
        next_ts=np.append(ts[1:], ts[-1] + length),
        end=ts + length,
        to_account=np.linspace(0.9, 1.0, len(ts)),
    )


def _slice(batch: BarBatch, start: int, stop: int) -> BarBatch:
    return BarBatch(*(getattr(batch, name)[start:stop] for name in FIELDS))


def _concat(parts: list[BarBatch]) -> BarBatch:
    return BarBatch(*(np.concatenate([getattr(b, name) for b in parts]) for name in FIELDS))


def _aggregate(
    batch: BarBatch, timeframe: Timeframe, clock: Clock, cuts: list[int], *, count_bars: bool
) -> BarBatch:
    """Feed ``batch`` cut at ``cuts`` to a new aggregator, flush at the end, take once."""
    aggregator = BarAggregator(timeframe, clock, count_bars=count_bars)
    bounds = [0, *sorted(set(cuts)), len(batch)]
    for start, stop in pairwise(bounds):
        aggregator.add_bars(_slice(batch, start, stop))
    aggregator.flush(int(batch.ts[-1]) + 40 * 86_400 * 10**9)
    return aggregator.take()


def _assert_equal_bars(bars: BarBatch, stored: pl.DataFrame) -> None:
    np.testing.assert_array_equal(bars.ts, _ns(stored["ts"]))
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(bars, name), stored[name].to_numpy(), err_msg=name)
    spread = stored["spread"].fill_null(math.nan).to_numpy()
    np.testing.assert_allclose(bars.spread, spread, rtol=1e-12, equal_nan=True)


CASES = [
    ("crypto", UTC, Timeframe.M5),
    ("crypto", UTC, Timeframe.H1),
    ("crypto", UTC, Timeframe.H4),
    ("crypto", UTC, Timeframe.D1),
    ("crypto", PLUS_2, Timeframe.D1),
    ("crypto", BROKER, Timeframe.H4),  # broker bars of 3, 5, 23 and 25 hours
    ("crypto", BROKER, Timeframe.D1),
    ("fx", BROKER, Timeframe.H4),
    ("fx", BROKER, Timeframe.D1),
    ("fx", BROKER, Timeframe.W1),
]


@pytest.mark.parametrize("count_bars", [True, False], ids=["m1-count", "volume-sum"])
@pytest.mark.parametrize(("calendar", "clock", "timeframe"), CASES, ids=lambda v: str(v))
def test_add_bars_m1_in_random_batches_equals_resample_bars(
    calendar: str, clock: Clock, timeframe: Timeframe, count_bars: bool
) -> None:
    # Arrange: about seven weeks of M1 bars across four daylight-saving changes, cut into
    # batches of random sizes (a bucket often spans two batches).
    bars = _m1_bars(7, calendar, with_volume=not count_bars)
    kind = VolumeKind.NONE if count_bars else VolumeKind.TICK
    stored = resample_bars(bars, Timeframe.M1, timeframe, anchor=clock, volume_kind=kind)
    batch = _batch(bars)
    cuts = np.cumsum(np.random.default_rng(3).integers(1, 700, size=len(batch) // 300))

    # Act
    out = _aggregate(
        batch, timeframe, clock, [int(c) for c in cuts if c < len(batch)], count_bars=count_bars
    )

    # Assert: the store's bars; each ends where the clock says, which is the next one's open
    # wherever the data runs on.
    _assert_equal_bars(out, stored)
    ends = [bar_end_at(t, timeframe, clock) for t in stored["ts"].to_list()]
    np.testing.assert_array_equal(out.end, _ns(pl.Series(ends)))
    np.testing.assert_array_equal(out.next_ts, out.end)
    assert np.all(out.end > out.ts)
    assert np.all(out.end[:-1] <= out.ts[1:])


SMALL = _m1_bars(11, "fx", with_volume=True).head(3000)
SMALL_BATCH = _batch(SMALL)
SMALL_STORED = {
    tf: resample_bars(SMALL, Timeframe.M1, tf, anchor=BROKER, volume_kind=VolumeKind.TICK)
    for tf in (Timeframe.M5, Timeframe.H4)
}


@settings(max_examples=40, deadline=None)
@given(
    timeframe=st.sampled_from(list(SMALL_STORED)),
    cuts=st.lists(st.integers(min_value=1, max_value=len(SMALL_BATCH) - 1), max_size=60),
)
def test_add_bars_any_batching_gives_the_same_bars(timeframe: Timeframe, cuts: list[int]) -> None:
    # Act
    out = _aggregate(SMALL_BATCH, timeframe, BROKER, cuts, count_bars=False)

    # Assert
    _assert_equal_bars(out, SMALL_STORED[timeframe])
    assert np.all(
        (out.low <= np.minimum(out.open, out.close)) & (out.high >= np.maximum(out.open, out.close))
    )


def test_add_bars_one_at_a_time_hands_out_each_bar_when_its_last_input_arrives() -> None:
    # Arrange
    stored = SMALL_STORED[Timeframe.M5]
    aggregator = BarAggregator(Timeframe.M5, BROKER)
    taken: list[BarBatch] = []
    steps: list[int] = []

    # Act: one M1 bar per call, as a live feed gives them, and a take after each.
    for i in range(len(SMALL_BATCH)):
        aggregator.add_bars(_slice(SMALL_BATCH, i, i + 1))
        bars = aggregator.take()
        taken.append(bars)
        steps.extend([i] * len(bars))
    aggregator.flush(int(SMALL_BATCH.end[-1]) + 86_400 * 10**9)
    taken.append(aggregator.take())
    steps.extend([len(SMALL_BATCH)] * len(taken[-1]))

    # Assert: the store's bars, each handed out with the last input it holds (whose next_ts
    # reaches its end), the last one by the flush.
    out = _concat(taken)
    _assert_equal_bars(out, stored)
    last_inputs = np.searchsorted(SMALL_BATCH.ts, out.end, side="left") - 1
    assert steps[:-1] == last_inputs[:-1].tolist()
    assert steps[-1] == len(SMALL_BATCH)


def test_add_bars_to_account_is_the_last_input_bars() -> None:
    # Arrange
    stored = SMALL_STORED[Timeframe.H4]

    # Act
    out = _aggregate(SMALL_BATCH, Timeframe.H4, BROKER, [100, 1000], count_bars=False)

    # Assert
    last = np.searchsorted(SMALL_BATCH.ts, out.end, side="left") - 1
    assert len(out) == stored.height
    np.testing.assert_array_equal(out.to_account, SMALL_BATCH.to_account[last])


def test_add_bars_out_of_order_raises_usage_error_naming_the_bar() -> None:
    # Arrange
    batch = _slice(SMALL_BATCH, 0, 5)
    shuffled = BarBatch(
        batch.ts[[0, 2, 1, 3, 4]], batch.open, batch.high, batch.low, batch.close,
        batch.volume, batch.spread, batch.next_ts, batch.end, batch.to_account,
    )  # fmt: skip
    aggregator = BarAggregator(Timeframe.M5, BROKER)

    # Act / Assert
    with pytest.raises(UsageError, match="not in time order: bar 2 opens at"):
        aggregator.add_bars(shuffled)


def test_add_bars_older_than_the_bar_being_built_are_dropped_and_counted() -> None:
    # Arrange
    aggregator = BarAggregator(Timeframe.H1, UTC)
    aggregator.add_bars(_slice(SMALL_BATCH, 100, 200))
    first = aggregator.take()

    # Act: the first 150 bars again (100 already used), then the rest.
    aggregator.add_bars(_slice(SMALL_BATCH, 0, 150))
    aggregator.add_bars(_slice(SMALL_BATCH, 200, 400))
    aggregator.flush(int(SMALL_BATCH.end[399]) + 86_400 * 10**9)
    rest = aggregator.take()

    # Assert: the same bars as one pass over bars 100-400.
    once = _aggregate(_slice(SMALL_BATCH, 100, 400), Timeframe.H1, UTC, [], count_bars=False)
    assert aggregator.dropped >= 100
    np.testing.assert_array_equal(np.concatenate([first.ts, rest.ts]), once.ts)
    np.testing.assert_array_equal(np.concatenate([first.close, rest.close]), once.close)
    np.testing.assert_array_equal(np.concatenate([first.volume, rest.volume]), once.volume)


# -- quotes ------------------------------------------------------------------------------


def _ticks(seed: int, start: datetime, hours: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    span = hours * 3_600_000_000
    micros = np.sort(rng.choice(span, size=hours * 600, replace=False))
    micros = micros[(micros % (3 * 3_600_000_000)) < 2 * 3_600_000_000]  # an hour gap in three
    n = int(micros.shape[0])
    spread = pl.Series(rng.uniform(1e-5, 3e-5, size=n)).scatter(
        np.flatnonzero(rng.random(n) < 0.2), None
    )
    return pl.DataFrame(
        {
            "ts": pl.Series(micros).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            + (start - utc(1970, 1, 1)),
            "price": 1.1 + np.cumsum(rng.normal(0, 2e-5, n)),
            "spread": spread,
        }
    )


def test_add_quote_ticks_to_m1_equal_minute_buckets() -> None:
    # Arrange: six hours of ticks with gaps.
    ticks = _ticks(5, utc(2017, 3, 12, 5), 6)
    expected = (
        ticks.group_by(pl.col("ts").dt.truncate("1m"), maintain_order=True)
        .agg(
            open=pl.col("price").first(),
            high=pl.col("price").max(),
            low=pl.col("price").min(),
            close=pl.col("price").last(),
            volume=pl.len().cast(pl.Float64),
            spread=pl.col("spread").mean(),
        )
        .sort("ts")
    )
    aggregator = BarAggregator(Timeframe.M1, UTC)
    spreads = ticks["spread"].fill_null(math.nan).to_list()

    # Act
    for ts, price, spread in zip(
        _ns(ticks["ts"]).tolist(), ticks["price"].to_list(), spreads, strict=True
    ):
        aggregator.add_quote(ts, price, spread)
    aggregator.flush(int(_ns(ticks["ts"])[-1]) + MINUTE_NS)
    out = aggregator.take()

    # Assert
    _assert_equal_bars(out, expected)
    np.testing.assert_array_equal(out.end - out.ts, MINUTE_NS)
    assert np.isnan(out.to_account).all()
    assert aggregator.dropped == 0


def test_add_quote_late_or_without_price_is_dropped_and_counted() -> None:
    # Arrange
    t0 = int(_ns(pl.Series([utc(2017, 1, 2, 10)]))[0])
    aggregator = BarAggregator(Timeframe.M1, UTC)
    aggregator.add_quote(t0 + 5 * 10**9, 1.2)
    aggregator.add_quote(t0 + MINUTE_NS, 1.3)  # completes the 10:00 bar

    # Act
    aggregator.add_quote(t0 + 30 * 10**9, 9.9)  # belongs to the bar handed out
    aggregator.add_quote(t0 + MINUTE_NS + 1, math.nan)
    aggregator.add_quote(t0 + MINUTE_NS + 2, math.inf)
    bars = aggregator.take()

    # Assert
    assert aggregator.dropped == 3
    assert len(bars) == 1
    assert (bars.open[0], bars.high[0], bars.close[0], bars.volume[0]) == (1.2, 1.2, 1.2, 1.0)
    assert math.isnan(bars.spread[0])


def test_flush_hands_out_the_bar_only_at_or_after_its_end() -> None:
    # Arrange: a D1 broker bar on the Sunday New York moved its clocks: 23 hours long.
    opened = int(_ns(pl.Series([utc(2017, 3, 11, 22)]))[0])
    aggregator = BarAggregator(Timeframe.D1, BROKER)
    aggregator.add_quote(opened + MINUTE_NS, 1.1, 1e-4)
    aggregator.add_quote(opened + 2 * MINUTE_NS, 1.2, 3e-4)
    end = opened + 23 * 3_600 * 10**9

    # Act
    aggregator.flush(end - 1)
    before = aggregator.take()
    aggregator.flush(end)
    at_end = aggregator.take()
    aggregator.flush(end + MINUTE_NS)
    after = aggregator.take()

    # Assert
    assert len(before) == 0 and len(after) == 0
    assert len(at_end) == 1
    assert (int(at_end.ts[0]), int(at_end.end[0]), int(at_end.next_ts[0])) == (opened, end, end)
    assert (at_end.open[0], at_end.high[0], at_end.low[0], at_end.close[0]) == (1.1, 1.2, 1.1, 1.2)
    assert at_end.volume[0] == 2.0
    assert at_end.spread[0] == pytest.approx(2e-4)


def test_take_without_completed_bars_returns_an_empty_batch() -> None:
    # Arrange
    aggregator = BarAggregator(Timeframe.H1, UTC)
    aggregator.add_bars(_slice(SMALL_BATCH, 0, 3))

    # Act
    empty = aggregator.take()

    # Assert
    assert len(empty) == 0
    assert empty.ts.dtype == np.int64 and empty.close.dtype == np.float64
    assert len(empty.to_account) == 0 and len(empty.end) == 0


def test_add_bars_timestamps_in_the_nanoseconds_land_in_their_bucket() -> None:
    # Arrange: an input one nanosecond before a bucket's end, and one at it.
    end = int(_ns(pl.Series([utc(2017, 1, 3, 0)]))[0])  # a D1 bar on UTC
    aggregator = BarAggregator(Timeframe.D1, UTC)

    # Act
    aggregator.add_quote(end - 1, 1.0)
    aggregator.add_quote(end, 2.0)
    aggregator.flush(end + 86_400 * 10**9)
    bars = aggregator.take()

    # Assert
    assert bars.close.tolist() == [1.0, 2.0]
    assert bars.ts.tolist() == [end - 86_400 * 10**9, end]

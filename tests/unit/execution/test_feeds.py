"""Feeds: replay batches, live bars pushed from another thread, ticks cut into bars, rates."""

from __future__ import annotations

import math
import time

import numpy as np

from core.clocks import UTC
from core.timeframes import Timeframe
from execution.feeds import QueueFeed, ReplayFeed, bar_batch

MINUTE = 60_000_000_000
T0 = 1_483_606_800_000_000_000  # 2017-01-05T09:00:00Z, a Thursday


def _bars(n: int, *, to_account: float = 1.0) -> object:
    ts = T0 + np.arange(n, dtype=np.int64) * MINUTE
    close = 1.05 + np.arange(n) * 1e-4
    return bar_batch(
        ts, close, close + 1e-4, close - 1e-4, close, to_account=to_account, bar_ns=MINUTE
    )


def test_replay_feed_hands_out_batches_then_none() -> None:
    # Arrange
    feed = ReplayFeed("EURUSD", _bars(10), start=3, batch=4)  # type: ignore[arg-type]

    # Act
    sizes = []
    while (got := feed.poll(0.0)) is not None:
        sizes.append(len(got))

    # Assert
    assert sizes == [4, 3]
    assert feed.last_data() is not None


def test_queue_feed_quiet_poll_returns_an_empty_batch_after_the_timeout() -> None:
    # Arrange
    feed = QueueFeed("EURUSD")
    started = time.monotonic()

    # Act
    got = feed.poll(0.2)

    # Assert
    assert got is not None and len(got) == 0
    assert time.monotonic() - started >= 0.19


def test_queue_feed_ticks_become_bars_cut_on_the_minute() -> None:
    # Arrange: ticks through 09:00 and 09:01, then one at 09:02 completes both bars
    feed = QueueFeed("EURUSD", timeframe=Timeframe.M1, clock=UTC)
    prices = [(T0 + 5_000_000_000, 1.10), (T0 + 30_000_000_000, 1.12), (T0 + 50_000_000_000, 1.09),
              (T0 + MINUTE + 1_000_000_000, 1.11), (T0 + 2 * MINUTE, 1.13)]  # fmt: skip
    for ts, price in prices:
        feed.push_quote(ts, price)

    # Act
    got = feed.poll(0.5)

    # Assert
    assert got is not None and got.ts.tolist() == [T0, T0 + MINUTE]
    assert got.open.tolist() == [1.10, 1.11]
    assert got.high.tolist() == [1.12, 1.11] and got.low.tolist() == [1.09, 1.11]
    assert got.close.tolist() == [1.09, 1.11]


def test_queue_feed_follows_the_conversion_rate_and_forgets_a_stale_one() -> None:
    # Arrange: bars that do not know their conversion rate
    feed = QueueFeed("EURGBP", rate_stale_seconds=0.2)
    feed.push_rate(1.25)
    feed.push(_bars(2, to_account=math.nan))  # type: ignore[arg-type]

    # Act
    fresh = feed.poll(0.5)
    time.sleep(0.3)
    feed.push(_bars(1, to_account=math.nan))  # type: ignore[arg-type]
    stale = feed.poll(0.5)

    # Assert
    assert fresh is not None and fresh.to_account.tolist() == [1.25, 1.25]
    assert stale is not None and math.isnan(stale.to_account[0])


def test_queue_feed_none_ends_the_feed() -> None:
    # Arrange
    feed = QueueFeed("EURUSD")
    feed.push(None)

    # Act, Assert
    assert feed.poll(0.5) is None

"""Market feeds (:class:`core.ports.MarketFeed`): stored bars replayed, bars pushed live.

:class:`ReplayFeed` hands out a stored series' bars in batches, after a watermark when a
session resumes. :class:`QueueFeed` is the live shape: bars are pushed in (by a bridge, an
aggregator or a test) and the loop polls for them with a timeout, its heartbeat.
"""

from __future__ import annotations

import queue
import time
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from core.ports import BarBatch

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


def bar_batch(
    ts: Ints,
    open_: Floats,
    high: Floats,
    low: Floats,
    close: Floats,
    *,
    volume: Floats | None = None,
    spread: Floats | None = None,
    end: Ints | None = None,
    next_ts: Ints | None = None,
    to_account: Floats | float = 1.0,
    bar_ns: int | None = None,
) -> BarBatch:
    """Return a :class:`BarBatch` of arrays, filling what is not given.

    ``end`` defaults to ``ts + bar_ns`` (or to the next bar's open), ``next_ts`` to the next
    bar's open (the last bar's to its end, or its open plus the gap before it, as the engine
    counts it), ``volume`` to 0, ``spread`` to NaN.
    """
    n = ts.shape[0]
    if next_ts is None:
        next_ts = np.empty(n, dtype=np.int64)
        if n:
            next_ts[:-1] = ts[1:]
            next_ts[-1] = ts[-1] + (ts[-1] - ts[-2] if n > 1 else (bar_ns or 0))
    if end is None:
        end = ts + bar_ns if bar_ns is not None else next_ts.copy()
        if bar_ns is not None:
            end = np.minimum(end, next_ts)
    rates = np.broadcast_to(np.asarray(to_account, dtype=np.float64), (n,))
    return BarBatch(
        ts=np.ascontiguousarray(ts, dtype=np.int64),
        open=np.ascontiguousarray(open_, dtype=np.float64),
        high=np.ascontiguousarray(high, dtype=np.float64),
        low=np.ascontiguousarray(low, dtype=np.float64),
        close=np.ascontiguousarray(close, dtype=np.float64),
        volume=np.zeros(n) if volume is None else np.ascontiguousarray(volume, dtype=np.float64),
        spread=np.full(n, np.nan) if spread is None else np.ascontiguousarray(spread, dtype=np.float64),
        next_ts=np.ascontiguousarray(next_ts, dtype=np.int64),
        end=np.ascontiguousarray(end, dtype=np.int64),
        to_account=np.ascontiguousarray(rates),
    )  # fmt: skip


def slice_batch(batch: BarBatch, start: int, stop: int) -> BarBatch:
    """Return bars ``start:stop`` of a batch."""
    return BarBatch(
        ts=batch.ts[start:stop], open=batch.open[start:stop], high=batch.high[start:stop],
        low=batch.low[start:stop], close=batch.close[start:stop],
        volume=batch.volume[start:stop], spread=batch.spread[start:stop],
        next_ts=batch.next_ts[start:stop], end=batch.end[start:stop],
        to_account=batch.to_account[start:stop],
    )  # fmt: skip


class ReplayFeed:
    """Stored bars replayed in order, from ``start`` (an index into them), ``batch`` at a time.

    A paced replay (``paced=True``) hands out one bar per poll so the clock can pace each bar.
    """

    def __init__(self, symbol: str, bars: BarBatch, start: int = 0, batch: int = 4096) -> None:
        self.symbol = symbol
        self.bars = bars
        self.position = start
        self.batch = max(int(batch), 1)
        self._last: datetime | None = None

    def poll(self, timeout: float) -> BarBatch | None:
        """Return the next bars, or None when the replay is over."""
        if self.position >= len(self.bars):
            return None
        stop = min(self.position + self.batch, len(self.bars))
        out = slice_batch(self.bars, self.position, stop)
        self.position = stop
        self._last = datetime.now(UTC)
        return out

    def last_data(self) -> datetime | None:
        """Return when the replay last handed out bars (wall time)."""
        return self._last


class QueueFeed:
    """A live feed: bars are pushed with :meth:`push` from any thread and polled by the loop."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._queue: queue.Queue[BarBatch | None] = queue.Queue()
        self._last: datetime | None = None
        nothing = np.zeros(0)
        self._empty = bar_batch(np.zeros(0, dtype=np.int64), nothing, nothing, nothing, nothing)

    def push(self, bars: BarBatch | None) -> None:
        """Deliver bars (None ends the feed)."""
        self._queue.put(bars)

    def poll(self, timeout: float) -> BarBatch | None:
        """Return the next bars pushed, an empty batch after ``timeout`` s, None at the end."""
        deadline = time.monotonic() + timeout
        try:
            got = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            return self._empty
        if got is not None:
            self._last = datetime.now(UTC)
        return got

    def last_data(self) -> datetime | None:
        """Return when bars last arrived (wall time)."""
        return self._last

"""Market feeds (:class:`core.ports.MarketFeed`): stored bars replayed, bars pushed live.

:class:`ReplayFeed` hands out a stored series' bars in batches, after a watermark when a
session resumes. :class:`QueueFeed` is the live shape: bars are pushed in (by a bridge, an
aggregator or a test) and the loop polls for them with a timeout, its heartbeat.
"""

from __future__ import annotations

import math
import queue
import time
from dataclasses import fields
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from core.clocks import Clock
from core.errors import UsageError
from core.ports import BarBatch
from core.timeframes import Timeframe
from core.times import utc_now
from execution.aggregate import BarAggregator

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
        self._last = utc_now()
        return out

    def last_data(self) -> datetime | None:
        """Return when the replay last handed out bars (wall time)."""
        return self._last


class QueueFeed:
    """A live feed: bars, ticks and conversion rates are pushed from any thread; the loop polls.

    - :meth:`push` delivers completed bars (or shorter bars, when the feed aggregates);
    - :meth:`push_quote` delivers a tick; with ``timeframe`` and ``clock`` given, ticks and
      shorter bars are cut into the series' bars by :class:`execution.aggregate.BarAggregator`,
      exactly as the store's resampling cuts them, and a bar is handed out once complete;
    - :meth:`push_rate` follows the conversion pair: bars without their own ``to_account`` get
      the last rate pushed, or NaN (no new exposure) when it is older than ``rate_stale_seconds``.
    """

    def __init__(
        self,
        symbol: str,
        *,
        timeframe: Timeframe | None = None,
        clock: Clock | None = None,
        count_bars: bool = False,
        rate_stale_seconds: float = 300.0,
    ) -> None:
        self.symbol = symbol
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._last: datetime | None = None
        nothing = np.zeros(0)
        self._empty = bar_batch(np.zeros(0, dtype=np.int64), nothing, nothing, nothing, nothing)
        self._aggregator = (
            BarAggregator(timeframe, clock, count_bars=count_bars)
            if timeframe is not None and clock is not None
            else None
        )
        self._rate: tuple[float, float] | None = None  # (rate, monotonic time pushed)
        self.rate_stale_seconds = rate_stale_seconds

    def push(self, bars: BarBatch | None) -> None:
        """Deliver bars (None ends the feed)."""
        self._queue.put(None if bars is None else ("bars", bars))

    def push_quote(self, ts_ns: int, price: float, spread: float = math.nan) -> None:
        """Deliver one tick (needs ``timeframe`` and ``clock``: the feed aggregates)."""
        self._queue.put(("quote", (ts_ns, price, spread)))

    def push_rate(self, rate: float) -> None:
        """Deliver the conversion pair's latest rate (account currency per quote unit)."""
        self._queue.put(("rate", float(rate)))

    def poll(self, timeout: float) -> BarBatch | None:
        """Return bars completed since the last poll; an empty batch after ``timeout`` seconds
        with none; None when the feed has ended."""
        deadline = time.monotonic() + timeout
        out: list[BarBatch] = []
        while True:
            wait = max(deadline - time.monotonic(), 0.0)
            try:
                item = self._queue.get(timeout=wait) if not out else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return self._with_rates(out) if out else None
            kind, payload = item
            if kind == "rate":
                self._rate = (payload, time.monotonic())
                continue
            self._last = utc_now()
            got = self._take(kind, payload)
            if len(got):
                out.append(got)
        if self._aggregator is not None and not out:
            self._aggregator.flush(time.time_ns())
            got = self._aggregator.take()
            if len(got):
                out.append(got)
        return self._with_rates(out) if out else self._empty

    def _take(self, kind: str, payload: Any) -> BarBatch:
        aggregator = self._aggregator
        if aggregator is None:
            if kind != "bars":
                raise UsageError("ticks need a feed that aggregates: give timeframe and clock")
            return payload
        if kind == "bars":
            aggregator.add_bars(payload)
        else:
            aggregator.add_quote(*payload)
        return aggregator.take()

    def _with_rates(self, batches: list[BarBatch]) -> BarBatch:
        joined = batches[0] if len(batches) == 1 else _concat(batches)
        missing = np.isnan(joined.to_account)
        if missing.any():
            rate = math.nan
            if (
                self._rate is not None
                and time.monotonic() - self._rate[1] <= self.rate_stale_seconds
            ):
                rate = self._rate[0]
            rates = joined.to_account.copy()
            rates[missing] = rate
            joined = BarBatch(**{**joined.__dict__, "to_account": rates})
        return joined

    def last_data(self) -> datetime | None:
        """Return when bars last arrived (wall time)."""
        return self._last


def _concat(batches: list[BarBatch]) -> BarBatch:
    return BarBatch(
        **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(BarBatch)}
    )

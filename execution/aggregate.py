"""Bar aggregation: ticks or short bars in, completed bars of one timeframe out.

A :class:`BarAggregator` cuts its buckets exactly as the store's resampling cuts them
(:func:`core.clocks.bar_open_at` and :func:`core.clocks.bar_end_at` on the series' bar clock) and
aggregates them as :func:`pipelines.resample.resample_bars` does, so a bar the runtime builds
from a live feed equals the bar the store holds for the same minutes.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np

from core.clocks import Clock, bar_end_at, bar_open_at
from core.errors import UsageError
from core.ports import BarBatch
from core.timeframes import Timeframe
from core.times import ns_from_utc, utc_from_ns

_FIELDS = tuple(f.name for f in fields(BarBatch))


def _reaches(batch: BarBatch, index: int, end: int) -> bool:
    # No later input can fall before ``end`` once a bar closes there or the next opens there.
    return bool(batch.end[index] >= end or batch.next_ts[index] >= end)


def _head(bars: BarBatch, count: int) -> BarBatch:
    return BarBatch(*(np.array(getattr(bars, name)[:count]) for name in _FIELDS))


def _empty_batch() -> BarBatch:
    ints = np.empty(0, dtype=np.int64)
    floats = np.empty(0, dtype=np.float64)
    return BarBatch(ints, floats, floats, floats, floats, floats, floats, ints, ints, floats)


class BarAggregator:
    """Aggregate quotes or shorter bars into completed bars of ``timeframe`` cut on ``clock``.

    Open is the first input's open, high the highest high, low the lowest low, close the last
    close, volume the sum of the inputs' volumes (the number of input bars with
    ``count_bars``, as the store counts M1 bars of a source without volume; a quote counts
    one), spread the mean of the known spreads (NaN when none is known), ``to_account`` the
    last input bar's (NaN for quotes). A completed bar's ``next_ts`` and ``end`` are both its
    end: the next bucket's open.

    A bar is complete, and handed out by :meth:`take`, when an input arrives at or after its
    end, when an input bar arrives whose ``end`` or ``next_ts`` reaches it (the bar that fills
    the bucket, or the last before a gap), or when :meth:`flush` is called with a time at or
    after its end (a live loop calls it on its heartbeat). Inputs must come in time order: an
    input older than the bar being built belongs to a bar already handed out and is dropped
    and counted in :attr:`dropped`, as is a quote without a finite price. The first bar holds
    only the inputs seen, so a runtime started inside a bar gets that bar partial.

    Parameters
    ----------
    timeframe
        The bars to build.
    clock
        The clock that cuts them: the series' bar clock (:func:`core.clocks.bar_clock`).
    count_bars
        Count input bars as the volume instead of summing their volumes.
    """

    def __init__(self, timeframe: Timeframe, clock: Clock, *, count_bars: bool = False) -> None:
        self.timeframe = timeframe
        self.clock = clock
        self.count_bars = count_bars
        #: Inputs that were not aggregated (late, or quotes without a finite price).
        self.dropped = 0
        self._done: list[BarBatch] = []
        self._emitted_end: int | None = None  # inputs before it belong to handed-out bars
        # The bucket being built: its bounds in ns UTC and its aggregates so far.
        self._building = False
        self._open = self._end = 0
        self._o = self._h = self._l = self._c = math.nan
        self._volume = 0.0
        self._spread_sum = 0.0
        self._spread_n = 0
        self._to_account = math.nan

    @property
    def _floor(self) -> int | None:
        """Return the earliest input time still accepted (None: any)."""
        return self._open if self._building else self._emitted_end

    def _bounds(self, ts_ns: int, after: int | None) -> tuple[int, int]:
        """Return the bounds of the bucket holding ``ts_ns``; ``after`` is a known bucket end."""
        if after is not None and ts_ns >= after:
            # Dense inputs land in the bucket right after the last one: one clock call.
            end = ns_from_utc(bar_end_at(utc_from_ns(after), self.timeframe, self.clock))
            if ts_ns < end:
                return after, end
        opened = bar_open_at(utc_from_ns(ts_ns), self.timeframe, self.clock)
        return ns_from_utc(opened), ns_from_utc(bar_end_at(opened, self.timeframe, self.clock))

    def _emit(self) -> None:
        spread = self._spread_sum / self._spread_n if self._spread_n else math.nan
        self._done.append(
            BarBatch(
                ts=np.array([self._open], dtype=np.int64),
                open=np.array([self._o]),
                high=np.array([self._h]),
                low=np.array([self._l]),
                close=np.array([self._c]),
                volume=np.array([self._volume]),
                spread=np.array([spread]),
                next_ts=np.array([self._end], dtype=np.int64),
                end=np.array([self._end], dtype=np.int64),
                to_account=np.array([self._to_account]),
            )
        )
        self._emitted_end = self._end
        self._building = False

    # -- inputs --------------------------------------------------------------------------

    def add_quote(self, ts_ns: int, price: float, spread: float = math.nan) -> None:
        """Add one quote at ``ts_ns`` (ns UTC): a bar of one price, volume one.

        Parameters
        ----------
        ts_ns
            When the quote was made, ns since the epoch, UTC.
        price
            The quoted price (the series' side).
        spread
            The spread in price units, NaN when unknown.
        """
        floor = self._floor
        if not math.isfinite(price) or (floor is not None and ts_ns < floor):
            self.dropped += 1
            return
        if not self._building or ts_ns >= self._end:
            if self._building:
                self._emit()
            self._open, self._end = self._bounds(ts_ns, self._emitted_end)
            self._building = True
            self._o = self._h = self._l = price
            self._volume = self._spread_sum = 0.0
            self._spread_n = 0
            self._to_account = math.nan
        elif price > self._h:
            self._h = price
        elif price < self._l:
            self._l = price
        self._c = price
        self._volume += 1.0
        if not math.isnan(spread):
            self._spread_sum += spread
            self._spread_n += 1

    def add_bars(self, batch: BarBatch) -> None:
        """Add completed bars shorter than ``timeframe`` (each goes to the bucket of its open).

        Raises
        ------
        UsageError
            If the batch's open times are not strictly increasing.
        """
        n = len(batch)
        if n == 0:
            return
        ts = batch.ts
        unordered = np.flatnonzero(ts[1:] <= ts[:-1])
        if unordered.size:
            at = int(unordered[0]) + 1
            msg = (
                f"bars given to the {self.timeframe} aggregator are not in time order: bar {at} "
                f"opens at {int(ts[at])} ns, not after bar {at - 1} at {int(ts[at - 1])} ns"
            )
            raise UsageError(msg)
        floor = self._floor
        pos = 0 if floor is None else int(np.searchsorted(ts, floor))
        self.dropped += pos
        if pos < n and self._building:
            pos = self._extend(batch, pos)
        if pos < n:
            self._aggregate(batch, pos)

    def _extend(self, batch: BarBatch, pos: int) -> int:
        """Add the batch's bars from ``pos`` that fall in the bucket being built."""
        stop = int(np.searchsorted(batch.ts, self._end, side="left"))
        if stop > pos:
            part = slice(pos, stop)
            self._h = max(self._h, float(batch.high[part].max()))
            self._l = min(self._l, float(batch.low[part].min()))
            self._c = float(batch.close[stop - 1])
            if self.count_bars:
                self._volume += stop - pos
            else:
                self._volume += float(np.nansum(batch.volume[part]))
            spreads = batch.spread[part]
            known = ~np.isnan(spreads)
            self._spread_sum += float(spreads[known].sum())
            self._spread_n += int(known.sum())
            self._to_account = float(batch.to_account[stop - 1])
        if stop < len(batch) or (stop > pos and _reaches(batch, stop - 1, self._end)):
            self._emit()
        return stop

    def _aggregate(self, batch: BarBatch, pos: int) -> None:
        """Cut the batch's bars from ``pos`` into whole buckets; keep the last one open."""
        ts = batch.ts
        n = len(batch)
        starts: list[int] = []
        opens: list[int] = []
        ends: list[int] = []
        end = self._emitted_end
        while pos < n:
            opened, end = self._bounds(int(ts[pos]), end)
            starts.append(pos)
            opens.append(opened)
            ends.append(end)
            pos = int(ts.searchsorted(end, side="left"))
        rows = slice(starts[0], n)
        cuts = np.asarray(starts, dtype=np.intp) - starts[0]
        sizes = np.diff(np.append(cuts, n - starts[0]))
        if self.count_bars:
            volume = sizes.astype(np.float64)
        else:
            volume = np.add.reduceat(np.nan_to_num(batch.volume[rows]), cuts)
        spreads = batch.spread[rows]
        known = ~np.isnan(spreads)
        spread_n = np.add.reduceat(known.astype(np.int64), cuts)
        spread_sum = np.add.reduceat(np.where(known, spreads, 0.0), cuts)
        bars = BarBatch(
            ts=np.asarray(opens, dtype=np.int64),
            open=batch.open[rows][cuts],
            high=np.maximum.reduceat(batch.high[rows], cuts),
            low=np.minimum.reduceat(batch.low[rows], cuts),
            close=batch.close[rows][cuts + sizes - 1],
            volume=volume,
            spread=np.where(spread_n > 0, spread_sum / np.maximum(spread_n, 1), math.nan),
            next_ts=np.asarray(ends, dtype=np.int64),
            end=np.asarray(ends, dtype=np.int64),
            to_account=batch.to_account[rows][cuts + sizes - 1],
        )
        complete = len(starts) - int(not _reaches(batch, n - 1, ends[-1]))
        if complete:
            self._done.append(_head(bars, complete))
            self._emitted_end = ends[complete - 1]
        if complete < len(starts):
            last = len(starts) - 1
            self._building = True
            self._open, self._end = opens[last], ends[last]
            self._o, self._h = float(bars.open[last]), float(bars.high[last])
            self._l, self._c = float(bars.low[last]), float(bars.close[last])
            self._volume = float(volume[last])
            self._spread_sum = float(spread_sum[last])
            self._spread_n = int(spread_n[last])
            self._to_account = float(bars.to_account[last])

    # -- outputs -------------------------------------------------------------------------

    def flush(self, now_ns: int) -> None:
        """Complete the bar being built if ``now_ns`` (ns UTC) is at or after its end."""
        if self._building and now_ns >= self._end:
            self._emit()

    def take(self) -> BarBatch:
        """Return the bars completed since the last call (an empty batch when none)."""
        done, self._done = self._done, []
        if len(done) == 1:
            return done[0]
        if not done:
            return _empty_batch()
        return BarBatch(
            *(np.concatenate([getattr(part, name) for part in done]) for name in _FIELDS)
        )

"""Signals bar by bar: a strategy's stream of signals, fed only the newly completed bars.

The trading runtime gives a strategy its bars as they complete (a live feed one at a time, a
replay thousands at a time) and needs, at each bar, the decision that ``strategy.signals()`` on
all the bars so far gives. :func:`signal_stream` returns the
:class:`~models.strategies.base.SignalStream` that does it:

- the strategy's own ``incremental()`` when it has one (every built-in does): constant work
  per bar, the same floating-point numbers as ``signals()``;
- otherwise :class:`PrefixSignals`, the fallback for any strategy: it keeps every bar seen and
  reruns ``signals()`` on all of them at each update.

Both are exact because a signal at bar i depends on bars 0..i only (the prefix property). A
strategy author who wants the fast path writes ``incremental(self) -> SignalStream`` returning
a fresh object with ``update(bars, features) -> Signals``; the tests of a stream compare the
concatenated updates over random batch splits with ``signals()`` on the whole series.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeGuard

import numpy as np
import polars as pl

from core.errors import UsageError
from models.strategies.base import IncrementalStrategy, Signals, SignalStream, Strategy

SIGNAL_FIELDS = ("entries", "exits", "short_entries", "short_exits", "target")


def has_incremental(strategy: Strategy) -> TypeGuard[IncrementalStrategy]:
    """Return whether ``strategy`` computes its signals bar by bar itself (``incremental()``)."""
    return callable(getattr(strategy, "incremental", None))


def signal_stream(strategy: Strategy) -> SignalStream:
    """Return a fresh stream of ``strategy``'s signals, fed the new bars at each update.

    The strategy's own ``incremental()`` when it has one, else :class:`PrefixSignals`
    (exact for every strategy, but its work per update grows with the bars seen).

    Raises
    ------
    UsageError
        If ``incremental()`` returns an object without an ``update`` method.
    """
    if not has_incremental(strategy):
        return PrefixSignals(strategy)
    stream: object = strategy.incremental()
    if not isinstance(stream, SignalStream):
        msg = (
            f"strategy {strategy.name}: incremental() returned {type(stream).__name__}, "
            "which has no update(bars, features) method; return a SignalStream"
        )
        raise UsageError(msg)
    return stream


class PrefixSignals:
    """The fallback stream: ``signals()`` on every bar seen so far, the new rows returned.

    Each update appends the new bars (and features) to what it has kept, builds the frames
    ``signals()`` expects (``ts`` as a UTC datetime column in microseconds, like the stored
    bars; the other columns as given; the features frame also carries ``ts``) and returns the
    rows of the new bars. It is exact for any strategy with the prefix property, which every
    strategy must have.

    Its work per update is that of ``signals()`` on all the bars so far, O(n): fine for a live
    feed (one bar per update) and for a replay that passes thousands of bars per update, but
    quadratic for a replay that passes a long history one bar at a time (100,000 bars cost
    about 5·10⁹ bar computations). A strategy that needs that gives itself ``incremental()``.
    """

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self._bars = _GrowingColumns("bar")
        self._features: _GrowingColumns | None = None
        self._started = False
        self._empty: Signals | None = None

    def __len__(self) -> int:
        return self._bars.length

    def update(
        self, bars: Mapping[str, np.ndarray], features: Mapping[str, np.ndarray] | None = None
    ) -> Signals:
        """Return the signals of the new bars: rerun ``signals()`` on all bars, keep the tail.

        Raises
        ------
        UsageError
            If the new columns differ in length or from the first update's, features come
            with some updates only or for other bars (such an update leaves the stream as it
            was), or ``signals()`` returns arrays of the wrong length.
        """
        name = self.strategy.name
        if self._started and (features is None) != (self._features is None):
            given = "not given" if self._features is None else "given"
            msg = (
                f"strategy {name}: features were {given} with the earlier bars; "
                "give them with every update or with none"
            )
            raise UsageError(msg)
        new_bars, added = self._bars.checked(bars)
        feature_columns = self._features or _GrowingColumns("feature")
        new_features: dict[str, np.ndarray] = {}
        if features is not None:
            new_features, rows = feature_columns.checked(features)
            if rows != added:
                msg = (
                    f"strategy {name}: {rows} feature rows for {added} new bars; "
                    "give the features of the same bars"
                )
                raise UsageError(msg)
        self._started = True
        self._bars.append(new_bars, added)
        if features is not None:
            self._features = feature_columns
            feature_columns.append(new_features, added)
        if added == 0 and self._empty is not None:
            return self._empty
        frame = self._bars.frame()
        feature_frame = None
        if self._features is not None:
            feature_frame = self._features.frame()
            if "ts" in frame.columns and "ts" not in feature_frame.columns:
                feature_frame = feature_frame.insert_column(0, frame["ts"])
        return self._new_rows(self.strategy.signals(frame, feature_frame), added)

    def _new_rows(self, everything: Signals, added: int) -> Signals:
        total = len(self)
        if len(everything) != total:
            msg = (
                f"strategy {self.strategy.name}: signals() returned {len(everything)} rows "
                f"for {total} bars; it must return one row per bar"
            )
            raise UsageError(msg)
        arrays = {
            name: np.asarray(values)
            for name in SIGNAL_FIELDS
            if (values := getattr(everything, name)) is not None
        }
        self._empty = Signals(**{name: values[:0].copy() for name, values in arrays.items()})
        return Signals(**{name: values[total - added :].copy() for name, values in arrays.items()})


class _GrowingColumns:
    """Named columns appended batch by batch into arrays that double when full."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.length = 0
        self._names: tuple[str, ...] | None = None
        self._buffers: dict[str, np.ndarray] = {}

    def checked(self, columns: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """Return a batch's columns as arrays and its number of rows, refusing a bad batch."""
        arrays = {name: _column_array(name, values) for name, values in columns.items()}
        lengths = {name: array.shape[0] for name, array in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise UsageError(f"new {self.what} columns differ in length: {lengths}")
        if self._names is not None and set(arrays) != set(self._names):
            msg = (
                f"new {self.what} columns {sorted(arrays)} differ from the first update's "
                f"{sorted(self._names)}; give the same columns at every update"
            )
            raise UsageError(msg)
        return arrays, next(iter(lengths.values()), 0)

    def append(self, arrays: Mapping[str, np.ndarray], rows: int) -> None:
        """Append a batch that :meth:`checked` returned."""
        if self._names is None:
            self._names = tuple(arrays)
            self._buffers = {name: array[:0].copy() for name, array in arrays.items()}
        end = self.length + rows
        for name, array in arrays.items():
            buffer = self._buffers[name]
            if end > buffer.shape[0]:
                grown = np.empty(max(end, 2 * buffer.shape[0], 1024), dtype=buffer.dtype)
                grown[: self.length] = buffer[: self.length]
                buffer = self._buffers[name] = grown
            buffer[self.length : end] = array
        self.length = end

    def frame(self) -> pl.DataFrame:
        """Return every row appended so far, ``ts`` as a UTC datetime column in microseconds."""
        series = []
        for name in self._names or ():
            values = self._buffers[name][: self.length]
            if name == "ts":
                stamps = pl.Series(name, values).cast(pl.Datetime("ns", "UTC"))
                series.append(stamps.dt.cast_time_unit("us"))
            else:
                series.append(pl.Series(name, values))
        return pl.DataFrame(series)


def _column_array(name: str, values: np.ndarray) -> np.ndarray:
    # ``ts`` is kept as int64 nanoseconds (datetime64 arrays are converted); the rest as given.
    array = np.asarray(values)
    if array.ndim != 1:
        raise UsageError(f"new column {name}: expected one dimension, got shape {array.shape}")
    if name != "ts":
        return array
    if np.issubdtype(array.dtype, np.datetime64):
        return array.astype("datetime64[ns]").view(np.int64)
    return array.astype(np.int64, copy=False)

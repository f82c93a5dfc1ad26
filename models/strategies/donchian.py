"""Donchian channel breakout: buy a close above the highest high of the bars before it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import polars as pl

from models.strategies.base import ParamSpec, Signals
from models.strategies.indicators import (
    IndicatorCache,
    RunningBreakouts,
    SweepContext,
    as_float_array,
    bar_columns,
    batch_columns,
    prior_max,
    prior_min,
)

COLUMNS = ("high", "low", "close")


class DonchianBreakout:
    """Trade breakouts of the Donchian channel of the previous bars (the current bar excluded).

    With H_n[i] = max(high[i-n..i-1]) and L_n[i] = min(low[i-n..i-1]):
    long entry where close[i] > H_entry[i], long exit where close[i] < L_exit[i]; with
    ``allow_short``, short entry where close[i] < L_entry[i] and short exit where
    close[i] > H_exit[i]. No signal before bar ``entry_window`` (or ``exit_window`` for exits).
    """

    name: ClassVar[str] = "donchian_breakout"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(
            name="entry_window",
            kind="int",
            default=20,
            low=2,
            high=500,
            help="bars of the channel a close must break to enter",
        ),
        ParamSpec(
            name="exit_window",
            kind="int",
            default=10,
            low=1,
            high=500,
            help="bars of the opposite channel a close must break to exit",
        ),
        ParamSpec(
            name="allow_short",
            kind="bool",
            default=False,
            help="also go short below the lowest low",
        ),
    )
    needs_features: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, *, entry_window: int = 20, exit_window: int = 10, allow_short: bool = False
    ) -> None:
        self.entry_window = entry_window
        self.exit_window = exit_window
        self.allow_short = allow_short

    def __repr__(self) -> str:
        return (
            f"DonchianBreakout(entry_window={self.entry_window}, "
            f"exit_window={self.exit_window}, allow_short={self.allow_short})"
        )

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        """Return the breakout events of ``bars`` (high, low, close)."""
        return self._signals(bar_columns(bars, COLUMNS, self.name), None)

    @classmethod
    def sweep_context(
        cls, bars: pl.DataFrame, features: pl.DataFrame | None = None
    ) -> SweepContext:
        """Return the bars' high, low and close and an empty channel cache."""
        return SweepContext(bar_columns(bars, COLUMNS, cls.name))

    def signals_from(self, context: SweepContext) -> Signals:
        """Return :meth:`signals` computed from a sweep context's cached channels."""
        return self._signals(context.columns, context.cache)

    def _signals(self, columns: Mapping[str, np.ndarray], cache: IndicatorCache | None) -> Signals:
        high, low = columns["high"], columns["low"]
        close = as_float_array(columns["close"], "close")

        def channel(kind: str, window: int) -> np.ndarray:
            def compute() -> np.ndarray:
                return prior_max(high, window) if kind == "high" else prior_min(low, window)

            return compute() if cache is None else cache.get((kind, window), compute)

        entries = close > channel("high", self.entry_window)
        exits = close < channel("low", self.exit_window)
        if not self.allow_short:
            return Signals(entries=entries, exits=exits)
        short_entries = close < channel("low", self.entry_window)
        short_exits = close > channel("high", self.exit_window)
        return Signals(
            entries=entries, exits=exits, short_entries=short_entries, short_exits=short_exits
        )

    def incremental(self) -> DonchianStream:
        """Return a fresh stream of this strategy's signals, computed from new bars only."""
        return DonchianStream(self.entry_window, self.exit_window, allow_short=self.allow_short)


class DonchianStream:
    """:class:`DonchianBreakout` signals one batch of new bars at a time (a ``SignalStream``).

    Each channel is a monotonic deque over the bars before the current one
    (:class:`~models.strategies.indicators.RunningBreakouts`): constant work per bar,
    amortized, and the events equal :meth:`DonchianBreakout.signals` on all bars so far.
    Reads ``high``, ``low`` and ``close`` from the new bars.
    """

    def __init__(self, entry_window: int, exit_window: int, *, allow_short: bool = False) -> None:
        self.allow_short = allow_short
        self._breakouts = RunningBreakouts(entry_window, exit_window, both_sides=allow_short)

    def update(
        self, bars: Mapping[str, np.ndarray], features: Mapping[str, np.ndarray] | None = None
    ) -> Signals:
        """Return the breakout events at the new bars.

        Raises
        ------
        UsageError
            If the new bars lack ``high``, ``low`` or ``close``.
        """
        columns = batch_columns(bars, COLUMNS, DonchianBreakout.name)
        entries, exits, short_entries, short_exits = self._breakouts.update(
            columns["high"], columns["low"], columns["close"]
        )
        if not self.allow_short:
            return Signals(entries=entries, exits=exits)
        return Signals(
            entries=entries, exits=exits, short_entries=short_entries, short_exits=short_exits
        )

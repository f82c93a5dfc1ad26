"""RSI mean reversion: buy when Wilder's RSI climbs back out of oversold, exit at the middle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import polars as pl
from numba import njit

from core.errors import UsageError
from models.strategies.base import ParamSpec, Signals
from models.strategies.indicators import (
    IndicatorCache,
    RunningWilderRsi,
    SweepContext,
    bar_columns,
    batch_columns,
    wilder_rsi,
)


class RsiReversion:
    """Trade the RSI's return from its extremes.

    With r = Wilder RSI(close, window) (see :func:`~models.strategies.indicators.wilder_rsi`):
    long entry where r[i-1] < lower <= r[i] (crossing up through ``lower``), long exit where
    r[i] >= exit_level; with ``allow_short``, short entry where r[i-1] > upper >= r[i] and
    short exit where r[i] <= exit_level. Needs lower < exit_level < upper.
    """

    name: ClassVar[str] = "rsi_reversion"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(name="window", kind="int", default=14, low=2, high=200, help="bars of the RSI"),
        ParamSpec(
            name="lower", kind="float", default=30.0, low=1.0, high=50.0, help="oversold level"
        ),
        ParamSpec(
            name="upper", kind="float", default=70.0, low=50.0, high=99.0, help="overbought level"
        ),
        ParamSpec(
            name="exit_level",
            kind="float",
            default=50.0,
            low=1.0,
            high=99.0,
            help="RSI level where a position is closed",
        ),
        ParamSpec(
            name="allow_short",
            kind="bool",
            default=False,
            help="also go short when the RSI falls back from overbought",
        ),
    )
    needs_features: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        window: int = 14,
        lower: float = 30.0,
        upper: float = 70.0,
        exit_level: float = 50.0,
        allow_short: bool = False,
    ) -> None:
        self.check_params({"lower": lower, "upper": upper, "exit_level": exit_level})
        self.window = window
        self.lower = lower
        self.upper = upper
        self.exit_level = exit_level
        self.allow_short = allow_short

    def __repr__(self) -> str:
        return (
            f"RsiReversion(window={self.window}, lower={self.lower}, upper={self.upper}, "
            f"exit_level={self.exit_level}, allow_short={self.allow_short})"
        )

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        """Check the levels are ordered: lower < exit_level < upper.

        Raises
        ------
        UsageError
            If they are not.
        """
        lower, exit_level, upper = values["lower"], values["exit_level"], values["upper"]
        if not lower < exit_level < upper:
            msg = f"levels must satisfy lower={lower} < exit_level={exit_level} < upper={upper}"
            raise UsageError(msg)

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        """Return the RSI reversion events of ``bars["close"]``."""
        close = bar_columns(bars, ("close",), self.name)["close"]
        return self._signals(close, None)

    @classmethod
    def sweep_context(
        cls, bars: pl.DataFrame, features: pl.DataFrame | None = None
    ) -> SweepContext:
        """Return the close prices and an empty RSI cache, reused across a sweep."""
        return SweepContext(bar_columns(bars, ("close",), cls.name))

    def signals_from(self, context: SweepContext) -> Signals:
        """Return :meth:`signals` computed from a sweep context's cached RSI."""
        return self._signals(context.columns["close"], context.cache)

    def _signals(self, close: np.ndarray, cache: IndicatorCache | None) -> Signals:
        window = self.window
        if cache is None:
            rsi = wilder_rsi(close, window)
        else:
            rsi = cache.get(("rsi", window), lambda: wilder_rsi(close, window))
        before = np.full_like(rsi, np.nan)
        before[1:] = rsi[:-1]
        entries = (before < self.lower) & (rsi >= self.lower)
        exits = rsi >= self.exit_level
        if not self.allow_short:
            return Signals(entries=entries, exits=exits)
        short_entries = (before > self.upper) & (rsi <= self.upper)
        short_exits = rsi <= self.exit_level
        return Signals(
            entries=entries, exits=exits, short_entries=short_entries, short_exits=short_exits
        )

    def incremental(self) -> RsiReversionStream:
        """Return a fresh stream of this strategy's signals, computed from new bars only."""
        return RsiReversionStream(
            self.window,
            lower=self.lower,
            upper=self.upper,
            exit_level=self.exit_level,
            allow_short=self.allow_short,
        )


@njit(cache=True, nogil=True)
def _level_events(
    rsi: np.ndarray,
    lower: float,
    upper: float,
    exit_level: float,
    both_sides: bool,
    last: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    # The events of RsiReversion._signals bar by bar; last[0] is the RSI of the bar before
    # the batch (NaN at the start).
    n = rsi.shape[0]
    entries = np.zeros(n, dtype=np.bool_)
    exits = np.zeros(n, dtype=np.bool_)
    short_entries = np.zeros(n if both_sides else 0, dtype=np.bool_)
    short_exits = np.zeros(n if both_sides else 0, dtype=np.bool_)
    before = last[0]
    for k in range(n):
        now = rsi[k]
        entries[k] = before < lower and now >= lower
        exits[k] = now >= exit_level
        if both_sides:
            short_entries[k] = before > upper and now <= upper
            short_exits[k] = now <= exit_level
        before = now
    last[0] = before
    return entries, exits, short_entries, short_exits


class RsiReversionStream:
    """:class:`RsiReversion` signals one batch of new bars at a time (a ``SignalStream``).

    Carries the running Wilder averages
    (:class:`~models.strategies.indicators.RunningWilderRsi`) and the previous bar's RSI, so
    each bar costs constant work and the events equal :meth:`RsiReversion.signals` on all bars
    so far, bit for bit. Reads ``close`` from the new bars.
    """

    def __init__(
        self,
        window: int,
        *,
        lower: float,
        upper: float,
        exit_level: float,
        allow_short: bool = False,
    ) -> None:
        self.lower = float(lower)
        self.upper = float(upper)
        self.exit_level = float(exit_level)
        self.allow_short = allow_short
        self._rsi = RunningWilderRsi(window)
        self._last = np.full(1, np.nan)

    def update(
        self, bars: Mapping[str, np.ndarray], features: Mapping[str, np.ndarray] | None = None
    ) -> Signals:
        """Return the RSI reversion events at the new bars.

        Raises
        ------
        UsageError
            If the new bars have no ``close``.
        """
        close = batch_columns(bars, ("close",), RsiReversion.name)["close"]
        entries, exits, short_entries, short_exits = _level_events(
            self._rsi.update(close),
            self.lower,
            self.upper,
            self.exit_level,
            self.allow_short,
            self._last,
        )
        if not self.allow_short:
            return Signals(entries=np.asarray(entries), exits=np.asarray(exits))
        return Signals(
            entries=np.asarray(entries),
            exits=np.asarray(exits),
            short_entries=np.asarray(short_entries),
            short_exits=np.asarray(short_exits),
        )

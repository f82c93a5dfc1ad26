"""Moving-average crossover: long when the fast simple average of close crosses above the slow.

Crossings are vectorbt's (``MA.run(close, w).ma_crossed_above/below``), bit for bit: the
averages are the same floating-point numbers and equality and NaN warm-up are treated the same
way (see :func:`models.strategies.indicators.crossed_above`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import polars as pl

from core.errors import UsageError
from models.strategies.base import ParamSpec, Signals
from models.strategies.indicators import (
    IndicatorCache,
    RunningSmaCrossings,
    SweepContext,
    as_float_array,
    bar_columns,
    batch_columns,
    crossings,
    sma,
)


class SmaCross:
    """Trade the crossings of a fast and a slow simple moving average of close.

    Long entry where sma(close, fast) crosses above sma(close, slow), long exit where it
    crosses below; with ``allow_short`` also a short entry at a cross below and a short exit
    at a cross above. sma(x, n)[i] = mean(x[i-n+1..i]); no signal before bar slow - 1.
    """

    name: ClassVar[str] = "sma_cross"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(
            name="fast", kind="int", default=10, low=2, high=200, help="bars of the fast average"
        ),
        ParamSpec(
            name="slow", kind="int", default=50, low=3, high=500, help="bars of the slow average"
        ),
        ParamSpec(
            name="allow_short",
            kind="bool",
            default=False,
            help="also go short at a cross below",
        ),
    )
    needs_features: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, fast: int = 10, slow: int = 50, allow_short: bool = False) -> None:
        self.check_params({"fast": fast, "slow": slow, "allow_short": allow_short})
        self.fast = fast
        self.slow = slow
        self.allow_short = allow_short

    def __repr__(self) -> str:
        return f"SmaCross(fast={self.fast}, slow={self.slow}, allow_short={self.allow_short})"

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        """Check that the fast average is shorter than the slow one.

        Raises
        ------
        UsageError
            If ``fast >= slow``.
        """
        if values["fast"] >= values["slow"]:
            msg = f"fast={values['fast']} must be below slow={values['slow']}"
            raise UsageError(msg)

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        """Return the crossing events of the two averages of ``bars["close"]``."""
        close = bar_columns(bars, ("close",), self.name)["close"]
        return self.signal_arrays(close, self.fast, self.slow, allow_short=self.allow_short)

    @staticmethod
    def signal_arrays(
        close: np.ndarray,
        fast: int,
        slow: int,
        *,
        allow_short: bool = False,
        cache: IndicatorCache | None = None,
    ) -> Signals:
        """Return the crossing events for a close array, without building a strategy object.

        The fast path of sweeps: ``cache`` (shared across calls on the same ``close``) keeps
        each window's average, so a sweep computes every average once.
        """
        prices = as_float_array(close, "close")
        if cache is None:
            fast_ma, slow_ma = sma(prices, fast), sma(prices, slow)
        else:
            fast_ma = cache.get(("sma", fast), lambda: sma(prices, fast))
            slow_ma = cache.get(("sma", slow), lambda: sma(prices, slow))
        up, down = crossings(fast_ma, slow_ma)
        if allow_short:
            return Signals(entries=up, exits=down, short_entries=down, short_exits=up)
        return Signals(entries=up, exits=down)

    @classmethod
    def sweep_context(
        cls, bars: pl.DataFrame, features: pl.DataFrame | None = None
    ) -> SweepContext:
        """Return the close prices and an empty average cache, reused across a sweep."""
        return SweepContext(bar_columns(bars, ("close",), cls.name))

    def signals_from(self, context: SweepContext) -> Signals:
        """Return :meth:`signals` computed from a sweep context's cached averages."""
        close = context.columns["close"]
        return self.signal_arrays(
            close, self.fast, self.slow, allow_short=self.allow_short, cache=context.cache
        )

    def incremental(self) -> SmaCrossStream:
        """Return a fresh stream of this strategy's signals, computed from new bars only."""
        return SmaCrossStream(self.fast, self.slow, allow_short=self.allow_short)


class SmaCrossStream:
    """:class:`SmaCross` signals one batch of new bars at a time (a ``SignalStream``).

    Carries the running sums of both averages and the crossing detector's state
    (:class:`~models.strategies.indicators.RunningSmaCrossings`), so each bar costs constant
    work and the events equal :meth:`SmaCross.signals` on all bars so far, bit for bit. Reads
    ``close`` from the new bars.
    """

    def __init__(self, fast: int, slow: int, *, allow_short: bool = False) -> None:
        self.allow_short = allow_short
        self._crossings = RunningSmaCrossings(fast, slow)

    def update(
        self, bars: Mapping[str, np.ndarray], features: Mapping[str, np.ndarray] | None = None
    ) -> Signals:
        """Return the crossing events at the new bars.

        Raises
        ------
        UsageError
            If the new bars have no ``close``.
        """
        close = batch_columns(bars, ("close",), SmaCross.name)["close"]
        up, down = self._crossings.update(close)
        if self.allow_short:
            return Signals(entries=up, exits=down, short_entries=down, short_exits=up)
        return Signals(entries=up, exits=down)

"""A feature set's rows at bar speed: the series, its context timeframes and cross assets.

:class:`LiveFeatures` gives, for each closed bar of the traded series, the row the research
feature table (:meth:`pipelines.evaluate.dataset.FeatureRecipe.table`) holds for that bar,
labels aside:

- the series' own features from a :class:`~pipelines.features.perbar.BarFeatures` engine fed
  one bar at a time;
- each context timeframe's features (``h4_*``, ``d1_*``): the bars are aggregated from the same
  feed by a :class:`~execution.aggregate.BarAggregator` on the clock training cut them on, each
  completed one goes through its own engine, and a row sees the latest context bar that had
  ended by the row's own end, as :func:`pipelines.pit.join_known` joins them;
- each cross asset's features, from that symbol's own bars (:meth:`LiveFeatures.add_cross`),
  joined the same way.

Fed from the series' first bar, every value equals the batch table's bit for bit (a null there
is NaN here). Fed from a window of the last bars, recursive features differ within their
declared tolerance once their lookback has passed (:class:`~pipelines.features.registry.FeatureSpec`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.clocks import UTC, Clock
from core.errors import UsageError
from core.ports import BarBatch
from core.timeframes import Timeframe
from core.types import VolumeKind
from execution.aggregate import BarAggregator
from pipelines.features.perbar import BarFeatures
from pipelines.features.sets import (
    ResolvedFeatureSet,
    check_context_timeframe,
    check_cross_timeframe,
)
from pipelines.resample import resampled_volume_kind

Floats = np.ndarray


@dataclass(frozen=True)
class FeedSpec:
    """What the features need to know about one series: its bars' timeframe, clock and columns."""

    timeframe: Timeframe
    clock: Clock = UTC
    has_spread: bool = False
    volume_kind: VolumeKind = VolumeKind.NONE


class _Joined:
    """Values of another series (a context timeframe or a cross asset) as known over time.

    Keeps the values of the latest bar whose end a row has reached, and the bars completed but
    not yet ended for any row (a bucket closed early by a gap in the feed).
    """

    def __init__(self, engine: BarFeatures) -> None:
        self.engine = engine
        self.width = len(engine.names)
        self.known = np.full(self.width, np.nan)
        self.pending: deque[tuple[int, Floats]] = deque()

    def add(self, bars: BarBatch) -> None:
        for k in range(len(bars)):
            values = self.engine.push(
                int(bars.ts[k]), float(bars.open[k]), float(bars.high[k]), float(bars.low[k]),
                float(bars.close[k]), float(bars.volume[k]), float(bars.spread[k]),
            )  # fmt: skip
            self.pending.append((int(bars.end[k]), values))

    def at(self, end_ns: int) -> Floats:
        """Return the values known at ``end_ns``: the latest bar that ended by then."""
        pending = self.pending
        while pending and pending[0][0] <= end_ns:
            self.known = pending.popleft()[1]
        return self.known


class LiveFeatures:
    """The feature rows of a resolved feature set, one closed bar at a time.

    Parameters
    ----------
    resolved
        The feature set, resolved for the series' timeframe.
    series
        The traded series.
    context_clocks
        The clock each context timeframe is cut on (missing: UTC), as training used.
    cross
        Each cross asset's series (its bars come through :meth:`add_cross`).

    Raises
    ------
    UsageError
        If a context timeframe is not longer than the series', or a cross asset of the set has
        no series given.
    """

    def __init__(
        self,
        resolved: ResolvedFeatureSet,
        series: FeedSpec,
        context_clocks: Mapping[Timeframe, Clock] | None = None,
        cross: Mapping[str, FeedSpec] | None = None,
    ) -> None:
        clocks = context_clocks or {}
        cross = cross or {}
        self.series = series
        self._base = BarFeatures(
            resolved.specs, has_spread=series.has_spread, volume_kind=series.volume_kind
        )
        names = list(self._base.names)
        self._context: list[tuple[BarAggregator, _Joined]] = []
        kind = resampled_volume_kind(series.volume_kind, series.timeframe)
        count_bars = series.volume_kind is VolumeKind.NONE and series.timeframe is Timeframe.M1
        for ctx in resolved.context:
            check_context_timeframe(ctx.timeframe, series.timeframe)
            engine = BarFeatures(ctx.specs, has_spread=series.has_spread, volume_kind=kind)
            aggregator = BarAggregator(
                ctx.timeframe, clocks.get(ctx.timeframe, UTC), count_bars=count_bars
            )
            self._context.append((aggregator, _Joined(engine)))
            names += [ctx.prefix + n for n in engine.names]
        self._cross: dict[str, _Joined] = {}
        for asset in resolved.cross_assets:
            spec = cross.get(asset.symbol)
            check_cross_timeframe(
                asset.symbol, None if spec is None else spec.timeframe, series.timeframe
            )
            assert spec is not None
            engine = BarFeatures(
                asset.specs, has_spread=spec.has_spread, volume_kind=spec.volume_kind
            )
            self._cross[asset.symbol] = _Joined(engine)
            names += [asset.prefix + n for n in engine.names]
        self.columns: tuple[str, ...] = tuple(names)
        self.count = 0

    @property
    def cross_symbols(self) -> tuple[str, ...]:
        """Return the cross assets whose bars :meth:`add_cross` expects."""
        return tuple(self._cross)

    def add_cross(self, symbol: str, bars: BarBatch) -> None:
        """Add closed bars of a cross asset; each counts from its end on.

        Raises
        ------
        UsageError
            If ``symbol`` is not a cross asset of the set.
        """
        joined = self._cross.get(symbol)
        if joined is None:
            known = ", ".join(self._cross) or "none"
            raise UsageError(f"{symbol} is not a cross asset of the feature set (has: {known})")
        joined.add(bars)

    def push(self, bars: BarBatch) -> Floats:
        """Add closed bars of the series; return their feature rows (rows x :attr:`columns`).

        Each row holds what was known at its bar's end: non-finite values are NaN, as the
        research rows hold them.
        """
        n = len(bars)
        out = np.empty((n, len(self.columns)))
        width = len(self._base.names)
        push = self._base.push
        ts, o, h, lo, c = bars.ts, bars.open, bars.high, bars.low, bars.close
        volume, spread = bars.volume, bars.spread
        for k in range(n):
            out[k, :width] = push(
                int(ts[k]), float(o[k]), float(h[k]), float(lo[k]), float(c[k]),
                float(volume[k]), float(spread[k]),
            )  # fmt: skip
        column = width
        ends = bars.end
        for aggregator, joined in self._context:
            aggregator.add_bars(bars)
            joined.add(aggregator.take())
            for k in range(n):
                out[k, column : column + joined.width] = joined.at(int(ends[k]))
            column += joined.width
        for joined in self._cross.values():
            for k in range(n):
                out[k, column : column + joined.width] = joined.at(int(ends[k]))
            column += joined.width
        self.count += n
        return np.where(np.isfinite(out), out, math.nan)

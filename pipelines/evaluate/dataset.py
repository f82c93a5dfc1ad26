"""From bars to the arrays a learner sees: features, targets, weights and label windows.

A :class:`FeatureRecipe` turns the bars of one series into its feature table. Context
timeframes are resampled from those same bars, so the recipe gives the same answer for the
stored series and for any series made from it (the leakage audit's random walk).
:func:`research_data` keeps the rows a learner may use: past every feature's warm-up and with
a settled label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from core.clocks import UTC, Clock
from core.errors import UsageError
from core.timeframes import Timeframe
from pipelines.features.sets import FeatureTable, ResolvedFeatureSet, SeriesFrame, feature_table
from pipelines.resample import resample_bars, resampled_volume_kind

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
ExtraFeatures = Callable[[pl.DataFrame], pl.DataFrame]
LABEL_COLUMNS = ("label", "label_log_return", "label_barrier", "label_end", "label_weight")


@dataclass(frozen=True)
class FeatureRecipe:
    """How to compute a feature set on the bars of one series.

    Attributes
    ----------
    resolved
        The feature set (features, context, cross assets, label).
    context_clocks
        The clock each context timeframe's bars are cut on (see
        :func:`pipelines.resample.resample_bars`); a missing one means UTC.
    cross_assets
        Bars of the set's cross-asset symbols, used as they are.
    extra
        Optional: given the bars, returns ``ts`` plus more feature columns to join (used to
        plant a look-ahead feature and prove the audit catches it).
    """

    resolved: ResolvedFeatureSet
    context_clocks: Mapping[Timeframe, Clock] = field(default_factory=dict)
    cross_assets: Mapping[str, SeriesFrame] = field(default_factory=dict)
    extra: ExtraFeatures | None = None

    def table(self, series: SeriesFrame) -> FeatureTable:
        """Return the feature table of ``series``, context resampled from its own bars."""
        if self.resolved.label is None:
            msg = "the feature set has no label: add a `label` entry to learn from it"
            raise UsageError(msg)
        context: dict[Timeframe, SeriesFrame] = {}
        for ctx in self.resolved.context:
            clock = self.context_clocks.get(ctx.timeframe, UTC)
            kind = resampled_volume_kind(series.volume_kind, series.timeframe)
            bars = series.bars
            if "spread" not in bars.columns:
                bars = bars.with_columns(spread=pl.lit(None, dtype=pl.Float64))
            if "volume" not in bars.columns:
                bars = bars.with_columns(volume=pl.lit(None, dtype=pl.Float64))
            resampled = resample_bars(
                bars,
                series.timeframe,
                ctx.timeframe,
                anchor=clock,
                volume_kind=series.volume_kind,
            )
            context[ctx.timeframe] = SeriesFrame(
                resampled,
                ctx.timeframe,
                clock=clock,
                has_spread=series.has_spread,
                volume_kind=kind,
            )
        table = feature_table(self.resolved, series, context, self.cross_assets)
        if self.extra is None:
            return table
        added = self.extra(series.bars)
        joined = table.frame.join(added, on="ts", how="left")
        labels = [c for c in table.frame.columns if c in LABEL_COLUMNS]
        ordered = [c for c in joined.columns if c not in labels] + labels
        return FeatureTable(joined.select(ordered), table.columns)


@dataclass(frozen=True)
class ResearchData:
    """The rows a learner may use, as arrays, with the bars they belong to.

    Attributes
    ----------
    ts
        Bar open times, int64 nanoseconds UTC.
    X
        Features, rows x columns, float64 with NaN for missing values.
    feature_names
        The columns of ``X``.
    y
        1 where the label's log return is positive, else 0.
    returns
        The label's log return (what a regressor learns).
    weight
        Average-uniqueness sample weights (1 where the set has none).
    label_end
        When each label became known, int64 nanoseconds UTC.
    bars
        The bars of these rows, in the same order.
    """

    ts: Ints
    X: Floats
    feature_names: tuple[str, ...]
    y: Ints
    returns: Floats
    weight: Floats
    label_end: Ints
    bars: pl.DataFrame

    @property
    def n(self) -> int:
        """Return the number of rows."""
        return int(self.ts.shape[0])

    def rows(self, index: Ints) -> pl.DataFrame:
        """Return the bars of the given rows."""
        return self.bars[index]


def _ns(column: pl.Series) -> Ints:
    return column.dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()


def research_data(table: FeatureTable, bars: pl.DataFrame) -> ResearchData:
    """Return the usable rows of a feature table: past every warm-up, label settled.

    Leading rows are dropped up to the latest ``required_from`` of the feature columns, and
    the tail from the first row whose label is still unknown (the last bars of the data).
    Features that stay null in a row become NaN.

    Raises
    ------
    UsageError
        If the table has no label, or fewer than 200 usable rows remain.
    """
    frame = table.frame
    if "label" not in frame.columns or "label_end" not in frame.columns:
        raise UsageError("the feature table has no label columns: give the feature set a label")
    if frame.height != bars.height or not frame["ts"].equals(bars["ts"]):
        raise UsageError("the feature table and the bars are not on the same rows")
    names = tuple(c for c in frame.columns if c != "ts" and c not in LABEL_COLUMNS)
    if not names:
        raise UsageError("the feature table has no feature columns")
    warm = max((c.required_from for c in table.columns if c.role != "label"), default=0)
    # Labels settle in time order except near the end of the data, where a later row's
    # barrier may already be hit while an earlier row's is not: stop at the first unsettled.
    unsettled = frame["label"].is_null().to_numpy().copy()
    unsettled[:warm] = False
    stop = int(np.argmax(unsettled)) if unsettled.any() else frame.height
    chosen = frame.with_row_index("_row")[warm:stop]
    if chosen.height < 200:
        msg = (
            f"only {chosen.height} rows have every feature warmed up and a settled label "
            f"(of {frame.height} bars): use a longer history"
        )
        raise UsageError(msg)
    rows = chosen["_row"].to_numpy()
    X = chosen.select(pl.col(n).cast(pl.Float64) for n in names).to_numpy()
    X = np.ascontiguousarray(np.where(np.isfinite(X), X, np.nan), dtype=np.float64)
    log_return = chosen["label_log_return"].cast(pl.Float64).to_numpy()
    weight = (
        chosen["label_weight"].cast(pl.Float64).fill_null(1.0).to_numpy()
        if "label_weight" in chosen.columns
        else np.ones(chosen.height)
    )
    return ResearchData(
        ts=_ns(chosen["ts"]),
        X=X,
        feature_names=names,
        y=(log_return > 0).astype(np.int64),
        returns=log_return,
        weight=weight,
        label_end=_ns(chosen["label_end"]),
        bars=bars[int(rows[0]) : int(rows[-1]) + 1],
    )

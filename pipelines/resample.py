"""Resample bars to a longer timeframe: left-closed, left-labelled buckets.

H4, D1, W1 and MN1 buckets of instruments on the FX calendar start at the broker day (17:00 New
York, the ``broker:ny-close`` clock) by default, otherwise at UTC midnight.
"""

from __future__ import annotations

import polars as pl

from core.clocks import Clock
from core.errors import UsageError
from core.timeframes import Timeframe
from core.types import VolumeKind
from pipelines.ingest.normalize import BAR_SCHEMA


def resampled_volume_kind(source: VolumeKind, source_timeframe: Timeframe) -> VolumeKind:
    """Return the volume kind of a resample: bars without volume get their M1 bar count."""
    if source is VolumeKind.NONE and source_timeframe is Timeframe.M1:
        return VolumeKind.M1_COUNT
    return source


def resample_bars(
    bars: pl.DataFrame,
    source: Timeframe,
    target: Timeframe,
    *,
    anchor: Clock,
    volume_kind: VolumeKind,
) -> pl.DataFrame:
    """Aggregate bars into ``target`` buckets measured on the ``anchor`` clock.

    Open is the first open, high the highest high, low the lowest low, close the last close,
    volume the sum (or the number of M1 bars where the source has no volume), spread the mean.

    Raises
    ------
    UsageError
        If ``target`` is not a whole multiple of ``source``.
    """
    calendar_target = target in (Timeframe.W1, Timeframe.MN1)
    if target.minutes <= source.minutes or (
        not calendar_target and target.minutes % source.minutes
    ):
        msg = f"cannot resample {source.value} to {target.value}: choose a longer timeframe"
        raise UsageError(msg)
    count_bars = volume_kind is VolumeKind.NONE and source is Timeframe.M1
    local = bars.with_columns(_local=anchor.from_utc(pl.col("ts")))
    out = (
        local.group_by_dynamic(
            "_local", every=target.polars_every, closed="left", label="left", start_by="window"
        )
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.len().cast(pl.Float64).alias("volume") if count_bars else pl.col("volume").sum(),
            pl.col("spread").mean(),
        )
        .with_columns(ts=anchor.to_utc(pl.col("_local")))
    )
    return out.select([pl.col(c).cast(t) for c, t in BAR_SCHEMA.items()])

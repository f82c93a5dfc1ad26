"""The runtime's bar aggregation on a year of real EURUSD M1 bars equals the store's resampling.

HistData's 2017 EURUSD minutes (EST, UTC-5 all year) are replayed into a
:class:`execution.aggregate.BarAggregator` a day at a time, as a replay feed would give them,
and aggregated to M5, H1, H4 and D1 on each timeframe's bar clock for FX (UTC below four hours,
the broker day above); every bar must equal the bar :func:`pipelines.resample.resample_bars`
makes of the same minutes.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.clocks import bar_clock
from core.ports import BarBatch
from core.timeframes import Timeframe
from core.types import VolumeKind
from execution.aggregate import BarAggregator
from pipelines.ingest.normalize import BAR_SCHEMA
from pipelines.ingest.parsers import RawSource, parse_histdata
from pipelines.resample import resample_bars

M1_NS = 60_000_000_000
DAY_NS = 86_400_000_000_000


def _ns(column: pl.Series) -> np.ndarray:
    return column.cast(pl.Datetime("ns", "UTC")).cast(pl.Int64).to_numpy()


@pytest.fixture(scope="module")
def eurusd_2017(data_file: Callable[[str], Path]) -> pl.DataFrame:
    """Return the 2017 EURUSD M1 bars as the store holds them (UTC, sorted, unique)."""
    path = data_file("histdata_m1/eurusd/HISTDATA_COM_ASCII_EURUSD_M1_2017.zip")
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".csv"))
        parsed = parse_histdata(RawSource(name, archive.read(name)))
    return (
        parsed.frame.filter(pl.col("error").is_null())
        .with_columns(ts=parsed.clock.to_utc(pl.col("ts_local")))
        .select(list(BAR_SCHEMA))
        .unique("ts", keep="first")
        .sort("ts")
    )


def _replay(bars: pl.DataFrame) -> BarBatch:
    ts = _ns(bars["ts"])
    return BarBatch(
        ts=ts,
        open=bars["open"].to_numpy(),
        high=bars["high"].to_numpy(),
        low=bars["low"].to_numpy(),
        close=bars["close"].to_numpy(),
        volume=bars["volume"].to_numpy(),
        spread=bars["spread"].fill_null(math.nan).to_numpy(),
        next_ts=np.append(ts[1:], ts[-1] + M1_NS),
        end=ts + M1_NS,
        to_account=np.full(len(ts), math.nan),
    )


@pytest.mark.parametrize("timeframe", [Timeframe.M5, Timeframe.H1, Timeframe.H4, Timeframe.D1])
def test_aggregate_eurusd_2017_m1_daily_batches_equal_resample_bars(
    eurusd_2017: pl.DataFrame, timeframe: Timeframe
) -> None:
    # Arrange
    clock = bar_clock(timeframe, "fx")
    stored = resample_bars(
        eurusd_2017, Timeframe.M1, timeframe, anchor=clock, volume_kind=VolumeKind.NONE
    )
    replay = _replay(eurusd_2017)
    days = np.flatnonzero(np.diff(replay.ts // DAY_NS)) + 1
    aggregator = BarAggregator(timeframe, clock, count_bars=True)
    taken: list[BarBatch] = []

    # Act: one UTC day of minutes per batch, a take after each.
    for start, stop in zip([0, *days], [*days, len(replay)], strict=True):
        aggregator.add_bars(
            BarBatch(*(getattr(replay, f)[start:stop] for f in BarBatch.__dataclass_fields__))
        )
        taken.append(aggregator.take())
    aggregator.flush(int(replay.ts[-1]) + 7 * DAY_NS)
    taken.append(aggregator.take())
    out = BarBatch(
        *(np.concatenate([getattr(b, f) for b in taken]) for f in BarBatch.__dataclass_fields__)
    )

    # Assert
    assert stored.height > 250
    np.testing.assert_array_equal(out.ts, _ns(stored["ts"]))
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(out, name), stored[name].to_numpy(), err_msg=name)
    assert np.isnan(out.spread).all() and stored["spread"].null_count() == stored.height
    assert np.all(out.end[:-1] <= out.ts[1:])

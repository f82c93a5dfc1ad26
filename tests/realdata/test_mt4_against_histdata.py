"""MetaTrader 4 exports against the HistData minutes they were made from.

The ``mt4/`` files were produced from ``histdata_m1/`` (EST fixed UTC-5 -> UTC -> broker clock
America/New_York + 7 h, left-labelled, left-closed bars, volume = number of M1 bars). Ingesting
both sides must therefore give the same bars at the same UTC instants: any error in either clock,
in the resampler or in a parser shows up as a missing or a different bar.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from core.clocks import Anchor
from core.timeframes import Timeframe
from core.types import SeriesKey, Side

if TYPE_CHECKING:
    from .conftest import Desk

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

PRICES = ("open", "high", "low", "close")
# Both sides print the same decimals, so prices should agree to the last bit; allow rounding noise.
RELATIVE_TOLERANCE = 1e-9
# Share of the bars of the common span that both sides must hold (an hour off loses far more).
MIN_OVERLAP = 0.999


def _partial_rows(desk: Desk) -> pl.DataFrame:
    return desk.quarantine().filter(pl.col("reason").str.starts_with("partial bar"))


def test_mt4_csv_and_hst_of_one_history_store_identical_bars(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange
    csv_path, hst_path = data_file("mt4/EURUSD60.csv"), data_file("mt4/EURUSD60.hst")
    csv_lines = sum(1 for line in csv_path.read_text().splitlines() if line.strip())
    csv_desk, hst_desk = new_desk(), new_desk()
    key = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)

    # Act
    from_csv = csv_desk.ingest_one([csv_path])
    from_hst = hst_desk.ingest_one([hst_path])

    # Assert
    assert from_csv.key == key
    assert from_hst.key == key
    csv_bars, hst_bars = csv_desk.bars(key), hst_desk.bars(key)
    # Every line but the final one, held back as possibly still forming.
    assert csv_bars.height == csv_lines - 1
    assert_frame_equal(csv_bars, hst_bars)
    assert from_csv.version == from_hst.version
    for desk, bars in ((csv_desk, csv_bars), (hst_desk, hst_bars)):
        partial = _partial_rows(desk)
        assert partial.height == 1
        assert partial["ts"][0] == bars["ts"][-1] + timedelta(hours=1)


def _m1_counts(m1: pl.DataFrame, timeframe: Timeframe) -> pl.DataFrame:
    """Count M1 bars per bar of ``timeframe`` (intraday buckets are the same on any clock)."""
    return m1.group_by(pl.col("ts").dt.truncate(f"{timeframe.minutes}m")).agg(
        pl.len().cast(pl.Float64).alias("m1_bars")
    )


@pytest.mark.parametrize(
    ("pair", "mt4_file", "timeframe"),
    [
        ("EURUSD", "mt4/EURUSD60.csv", Timeframe.H1),
        ("USDJPY", "mt4/USDJPY15.csv", Timeframe.M15),
        ("GBPUSD", "mt4/GBPUSD1.csv.gz", Timeframe.M1),
    ],
)
def test_histdata_minutes_resampled_match_mt4_export_bar_for_bar(
    data_file: Callable[[str], Path],
    new_desk: Callable[[], Desk],
    pair: str,
    mt4_file: str,
    timeframe: Timeframe,
) -> None:
    # Arrange
    lower = pair.lower()
    histdata = data_file(f"histdata_m1/{lower}/HISTDATA_COM_ASCII_{pair}_M1_2017.zip")
    mt4 = data_file(mt4_file)
    minutes_desk, mt4_desk = new_desk(), new_desk()
    resample = () if timeframe is Timeframe.M1 else (timeframe,)
    key = SeriesKey(symbol=pair, timeframe=timeframe, side=Side.BID)
    m1_key = SeriesKey(symbol=pair, timeframe=Timeframe.M1, side=Side.BID)

    # Act
    minutes_desk.ingest([histdata], resample=resample, anchor=Anchor.UTC)
    mt4_desk.ingest([mt4])

    # Assert
    m1 = minutes_desk.bars(m1_key)
    resampled = minutes_desk.bars(key)
    assert resampled.height > 6000
    start, end = resampled["ts"].min(), resampled["ts"].max()
    exported = mt4_desk.bars(key).filter(pl.col("ts").is_between(start, end))
    both = resampled.join(exported, on="ts", how="inner", suffix="_mt4")
    # The overlap covers nearly every bar of both sides, so no clock error can hide.
    assert both.height >= MIN_OVERLAP * resampled.height
    assert both.height >= MIN_OVERLAP * exported.height
    for column in PRICES:
        gap = (pl.col(column) - pl.col(f"{column}_mt4")).abs()
        bound = RELATIVE_TOLERANCE * pl.col(column).abs()
        differing = both.filter(gap > bound)
        assert differing.height == 0, differing.select("ts", column, f"{column}_mt4").head()
    # MT4's volume is the number of M1 bars inside each bar.
    counted = both.join(_m1_counts(m1, timeframe), on="ts", how="left")
    assert counted["m1_bars"].null_count() == 0
    wrong_volume = counted.filter(pl.col("volume_mt4") != pl.col("m1_bars"))
    assert wrong_volume.height == 0, wrong_volume.select("ts", "volume_mt4", "m1_bars").head()
    if timeframe is Timeframe.M1:
        assert set(counted["volume_mt4"].unique().to_list()) == {1.0}
    # Ingesting and resampling the same minutes again adds nothing.
    again = minutes_desk.ingest([histdata], resample=resample, anchor=Anchor.UTC)
    assert {s.key: s.rows_added for s in again.series} == {s.key: 0 for s in again.series}
    assert {s.key for s in again.series} == {m1_key, key}
    assert_frame_equal(minutes_desk.bars(key), resampled)


def test_mt4_export_into_store_of_resampled_histdata_adds_only_other_years(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange: 2017 stored from HistData minutes resampled to H1 (volume = M1 bar count).
    histdata = data_file("histdata_m1/eurusd/HISTDATA_COM_ASCII_EURUSD_M1_2017.zip")
    mt4 = data_file("mt4/EURUSD60.csv")
    desk = new_desk()
    key = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)
    desk.ingest([histdata], resample=(Timeframe.H1,), anchor=Anchor.UTC)
    resampled = desk.bars(key)
    start, end = resampled["ts"].min(), resampled["ts"].max()

    # Act
    outcome = desk.ingest([mt4])

    # Assert: the MT4 bars of 2017 are the same bars (duplicates), the other years are added.
    (series,) = [s for s in outcome.series if s.key == key]
    stored = desk.bars(key)
    in_span = stored.filter(pl.col("ts").is_between(start, end))
    assert series.rows_conflicting == 0
    assert series.rows_duplicate == in_span.height == resampled.height
    assert series.rows_added == stored.height - resampled.height
    assert series.rows_added > 40_000
    assert_frame_equal(in_span, resampled)
    conflicts = desk.quarantine().filter(pl.col("reason").str.starts_with("conflict"))
    assert conflicts.height == 0

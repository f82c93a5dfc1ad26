"""The ``solodesk ingest`` command on a real HistData year, as a person runs it (in process)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from testkit.cli import invoke, json_lines

from core.timeframes import Timeframe
from core.types import SeriesKey, Side
from feature_store.store import BarStore

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _broker_day(ts: pl.Expr) -> pl.Expr:
    """Return the broker:ny-close trading date of UTC instants (New York + 7 h)."""
    new_york = ts.dt.convert_time_zone("America/New_York").dt.replace_time_zone(None)
    return (new_york + timedelta(hours=7)).dt.date()


def test_cli_ingest_json_resamples_histdata_minutes_into_broker_days(
    data_file: Callable[[str], Path], tmp_path: Path
) -> None:
    # Arrange
    zip_path = data_file("histdata_m1/eurusd/HISTDATA_COM_ASCII_EURUSD_M1_2017.zip")
    home = tmp_path / "home"

    # Act
    done = invoke(
        ["ingest", str(zip_path), "--resample", "D1", "--anchor", "broker", "--json"], home
    )

    # Assert
    assert done.returncode == 0, done.stderr
    records = json_lines(done.stdout)
    by_timeframe = {r["timeframe"]: r for r in records}
    assert set(by_timeframe) == {"M1", "D1"}
    assert {r["symbol"] for r in records} == {"EURUSD"}
    minutes_record = by_timeframe["M1"]
    assert minutes_record["rows_read"] == minutes_record["rows_added"] > 370_000
    store = BarStore(home / "store")
    m1 = store.read(SeriesKey(symbol="EURUSD", timeframe=Timeframe.M1, side=Side.BID))
    days = store.read(SeriesKey(symbol="EURUSD", timeframe=Timeframe.D1, side=Side.BID))
    assert by_timeframe["D1"]["rows_added"] == days.height
    # Broker days open at 17:00 New York: 22:00 UTC in winter, 21:00 UTC under US DST.
    assert set(days["ts"].dt.hour().unique().to_list()) == {21, 22}
    assert (days["ts"].dt.minute() == 0).all()
    expected = (
        m1.group_by(_broker_day(pl.col("ts")).alias("day"))
        .agg(
            pl.col("open").sort_by("ts").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").sort_by("ts").last(),
            pl.len().cast(pl.Float64).alias("volume"),
        )
        .sort("day")
    )
    got = days.select(_broker_day(pl.col("ts")).alias("day"), "open", "high", "low", "close",
                      "volume")  # fmt: skip
    assert got["day"].to_list() == expected["day"].to_list()
    assert got.equals(expected)

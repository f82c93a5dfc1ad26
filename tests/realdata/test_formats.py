"""Every supported format ingests from the shared real data, checked against the raw files.

Each test reads the raw file on its own (plain Polars, the layout stated in the data folder's
README), ingests it into a fresh store, compares the stored bars with the raw rows, and ingests it
again to prove a second run adds nothing.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest

from core.timeframes import Timeframe
from core.types import SeriesKey, Side
from services.ingest import SeriesIngest

if TYPE_CHECKING:
    from .conftest import Desk

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

PRICES = ("open", "high", "low", "close")
RELATIVE_TOLERANCE = 1e-9
UTC_TS = pl.Datetime("us", "UTC")


# -- helpers --------------------------------------------------------------------------------


def _zip_member(path: Path, ending: str = ".csv") -> bytes:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.lower().endswith(ending)]
        assert len(names) == 1, names
        return archive.read(names[0])


def _assert_sound(bars: pl.DataFrame) -> None:
    """Assert the invariants every stored series keeps."""
    assert bars.height > 0
    assert bars.schema["ts"] == UTC_TS
    assert bars["ts"].is_sorted()
    assert bars["ts"].n_unique() == bars.height
    broken = bars.filter(
        (pl.min_horizontal(*PRICES) <= 0)
        | (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("volume") < 0)
        | (pl.col("spread") < 0)
    )
    assert broken.height == 0, broken.head()


def _assert_same_values(joined: pl.DataFrame, pairs: dict[str, str]) -> None:
    """Assert stored columns (keys) equal raw columns (values) on every joined row."""
    for stored, raw in pairs.items():
        gap = (pl.col(stored) - pl.col(raw)).abs()
        bound = RELATIVE_TOLERANCE * pl.max_horizontal(pl.col(raw).abs(), pl.lit(1.0))
        differing = joined.filter(gap > bound)
        assert differing.height == 0, differing.select("ts", stored, raw).head()


def _assert_counts_add_up(outcome: SeriesIngest) -> None:
    """Assert that every row read became exactly one of added, duplicate, conflict, quarantine."""
    fates = (
        outcome.rows_added
        + outcome.rows_duplicate
        + outcome.rows_conflicting
        + outcome.rows_quarantined
    )
    assert outcome.rows_read == fates, outcome.as_json()


def _assert_reingest_adds_nothing(
    desk: Desk, paths: list[Path], first: Sequence[SeriesIngest], **options: object
) -> None:
    """Ingest ``paths`` again and assert that no series and no quarantined row changed."""
    before = {s.key: desk.bars(s.key) for s in first}
    quarantined = desk.quarantine().height

    again = desk.ingest(paths, **options)

    assert {s.key for s in again.series} == set(before)
    versions = {s.key: s.version for s in first}
    for outcome in first:
        _assert_counts_add_up(outcome)
    for outcome in again.series:
        _assert_counts_add_up(outcome)
        assert outcome.rows_added == 0, outcome.key
        assert outcome.rows_duplicate == before[outcome.key].height, outcome.key
        assert outcome.rows_conflicting == 0, outcome.key
        assert outcome.version == versions[outcome.key], outcome.key
        assert desk.bars(outcome.key).equals(before[outcome.key]), outcome.key
    assert desk.quarantine().height == quarantined


# -- LEAN -----------------------------------------------------------------------------------

LEAN_QUOTE_COLUMNS = ["time", "bo", "bh", "bl", "bc", "bs", "ao", "ah", "al", "ac", "as"]


def _lean_quotes(path: Path, utc_offset_hours: int) -> pl.DataFrame:
    raw = pl.read_csv(
        io.BytesIO(_zip_member(path)), has_header=False, new_columns=LEAN_QUOTE_COLUMNS
    )
    local = pl.col("time").str.to_datetime("%Y%m%d %H:%M", time_unit="us")
    utc = (local - pl.duration(hours=utc_offset_hours)).dt.replace_time_zone("UTC")
    return raw.with_columns(utc.alias("ts"))


@pytest.mark.parametrize(
    ("relative", "symbol", "timeframe", "utc_offset_hours", "has_crossed_quotes"),
    [
        ("lean/Data/forex/oanda/hour/eurusd.zip", "EURUSD", Timeframe.H1, 0, False),
        ("lean/Data/forex/fxcm/hour/nzdusd.zip", "NZDUSD", Timeframe.H1, -5, True),
        ("lean/Data/forex/oanda/daily/gbpusd.zip", "GBPUSD", Timeframe.D1, 0, False),
        ("lean/Data/forex/fxcm/daily/eurgbp.zip", "EURGBP", Timeframe.D1, -5, True),
        ("lean/Data/cfd/oanda/hour/xauusd.zip", "XAUUSD", Timeframe.H1, 0, False),
    ],
)
def test_lean_quote_bars_store_bid_with_spread_and_quarantine_crossed_quotes(
    data_file: Callable[[str], Path],
    new_desk: Callable[[], Desk],
    relative: str,
    symbol: str,
    timeframe: Timeframe,
    utc_offset_hours: int,
    has_crossed_quotes: bool,
) -> None:
    # Arrange
    path = data_file(relative)
    raw = _lean_quotes(path, utc_offset_hours)
    crossed = raw.filter(pl.col("ac") < pl.col("bc"))
    assert (crossed.height > 0) == has_crossed_quotes
    desk = new_desk()

    # Act
    outcome = desk.ingest_one([path])

    # Assert
    assert outcome.key == SeriesKey(symbol=symbol, timeframe=timeframe, side=Side.BID)
    assert outcome.rows_read == raw.height
    assert outcome.rows_quarantined == crossed.height
    quarantine = desk.quarantine()
    assert quarantine.height == crossed.height
    assert quarantine["reason"].str.contains(r"^spread -\S+ below 0$").all()
    assert sorted(quarantine["ts"].to_list()) == sorted(crossed["ts"].to_list())
    bars = desk.bars(outcome.key)
    _assert_sound(bars)
    assert bars["spread"].null_count() == 0
    assert bars.height == raw.height - crossed.height
    joined = bars.join(raw, on="ts", how="inner")
    assert joined.height == bars.height
    _assert_same_values(joined, {"open": "bo", "high": "bh", "low": "bl", "close": "bc"})
    # ask = bid + spread
    _assert_same_values(joined.with_columns(ask=pl.col("close") + pl.col("spread")), {"ask": "ac"})
    _assert_reingest_adds_nothing(desk, [path], [outcome])


def test_lean_equity_daily_prices_are_divided_by_10000_on_new_york_dates(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange
    path = data_file("lean/Data/equity/usa/daily/spy.zip")
    raw = pl.read_csv(
        io.BytesIO(_zip_member(path)),
        has_header=False,
        new_columns=["time", "o", "h", "l", "c", "v"],
    ).with_columns(pl.col("time").str.to_datetime("%Y%m%d %H:%M", time_unit="us"))
    desk = new_desk()

    # Act
    outcome = desk.ingest_one([path])

    # Assert
    assert outcome.key == SeriesKey(symbol="SPY", timeframe=Timeframe.D1, side=Side.BID)
    assert outcome.rows_quarantined == 0
    bars = desk.bars(outcome.key)
    _assert_sound(bars)
    assert bars.height == raw.height
    # LEAN equity times are New York wall times.
    local = bars.with_columns(
        pl.col("ts").dt.convert_time_zone("America/New_York").dt.replace_time_zone(None)
    )
    joined = local.join(raw, left_on="ts", right_on="time", how="inner")
    assert joined.height == raw.height
    scaled = joined.with_columns(
        [(pl.col(c) / 10_000).alias(f"{c}_dollars") for c in ("o", "h", "l", "c")]
    )
    _assert_same_values(
        scaled,
        {"open": "o_dollars", "high": "h_dollars", "low": "l_dollars", "close": "c_dollars"},
    )
    _assert_same_values(scaled, {"volume": "v"})
    # SPY traded between 50 and 500 dollars over 1998-2021: the scale is right.
    assert 50 < bars["close"].min() < bars["close"].max() < 500  # type: ignore[operator]
    _assert_reingest_adds_nothing(desk, [path], [outcome])


# -- Dukascopy-style exports ---------------------------------------------------------------


def _dukascopy(path: Path) -> pl.DataFrame:
    """Read any of the three layouts of the Dukascopy exports (README of the folder)."""
    text = gzip.decompress(path.read_bytes())
    first = text.split(b"\n", 1)[0].decode()
    has_header = first.startswith("Time")
    separator = "\t" if "\t" in first else ","
    raw = pl.read_csv(
        io.BytesIO(text),
        has_header=has_header,
        separator=separator,
        new_columns=["time", "o", "h", "l", "c", "v"],
        schema_overrides={"time": pl.String},
    )
    layout = "%Y-%m-%d %H:%M:%S" if len(raw["time"][0]) == 19 else "%Y-%m-%d %H:%M"
    ts = pl.col("time").str.to_datetime(layout, time_unit="us").dt.replace_time_zone("UTC")
    return raw.with_columns(ts.alias("ts")).with_columns(pl.col("v").cast(pl.Float64))


DUKASCOPY_FILES = [
    # header, tab
    ("dukascopy_h4_d1/forex/eurusd/EURUSD_H4.csv.gz", "EURUSD", Timeframe.H4),
    # no header, tab, MT4 period-minutes names
    ("dukascopy_h4_d1/forex/audcad/AUDCAD240.csv.gz", "AUDCAD", Timeframe.H4),
    ("dukascopy_h4_d1/forex/audcad/AUDCAD1440.csv.gz", "AUDCAD", Timeframe.D1),
    # no header, comma
    ("dukascopy_h4_d1/forex/audchf/AUDCHF_H4.csv.gz", "AUDCHF", Timeframe.H4),
    # an index, a stock and a metal (aliases become canonical symbols)
    ("dukascopy_h4_d1/indices/s&p500/USA500IDXUSD_H1.csv.gz", "US500", Timeframe.H1),
    ("dukascopy_h4_d1/stock/aapl/AAPLUSUSD_M15.csv.gz", "AAPL", Timeframe.M15),
    ("dukascopy_h4_d1/commodities/gold/XAUUSD_H4.csv.gz", "XAUUSD", Timeframe.H4),
]


@pytest.mark.parametrize(("relative", "symbol", "timeframe"), DUKASCOPY_FILES)
def test_dukascopy_export_stores_all_but_the_partial_final_bar(
    data_file: Callable[[str], Path],
    new_desk: Callable[[], Desk],
    relative: str,
    symbol: str,
    timeframe: Timeframe,
) -> None:
    # Arrange
    path = data_file(relative)
    raw = _dukascopy(path)
    complete, final = raw.head(raw.height - 1), raw.tail(1)
    desk = new_desk()

    # Act
    outcome = desk.ingest_one([path])

    # Assert
    assert outcome.key == SeriesKey(symbol=symbol, timeframe=timeframe, side=Side.BID)
    assert outcome.rows_read == raw.height
    assert outcome.rows_quarantined == 1
    quarantine = desk.quarantine()
    assert quarantine.height == 1
    assert quarantine["reason"][0].startswith("partial bar")
    assert quarantine["ts"][0] == final["ts"][0]
    bars = desk.bars(outcome.key)
    _assert_sound(bars)
    # Stored bars end one bar earlier than the file: at its second-to-last row.
    assert bars["ts"].to_list() == complete["ts"].to_list()
    assert outcome.last == complete["ts"][-1].strftime("%Y-%m-%dT%H:%M:%SZ")
    joined = bars.join(complete, on="ts", how="inner")
    _assert_same_values(joined, {"open": "o", "high": "h", "low": "l", "close": "c"})
    _assert_same_values(joined, {"volume": "v"})
    _assert_reingest_adds_nothing(desk, [path], [outcome])


def test_dukascopy_export_with_as_of_after_final_bar_stores_it(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange
    path = data_file("dukascopy_h4_d1/forex/audchf/AUDCHF_D1.csv.gz")
    raw = _dukascopy(path)
    final_end = raw["ts"][-1] + timedelta(days=1)
    early, late = new_desk(), new_desk()

    # Act
    held = early.ingest_one([path], as_of=final_end - timedelta(minutes=1))
    stored = late.ingest_one([path], as_of=final_end)

    # Assert
    assert held.rows_quarantined == 1
    assert early.bars(held.key).height == raw.height - 1
    assert stored.rows_quarantined == 0
    assert late.quarantine().height == 0
    bars = late.bars(stored.key)
    assert bars.height == raw.height
    assert bars["ts"][-1] == raw["ts"][-1]


# -- generic CSV with a symbol column -------------------------------------------------------

SP500 = "sp500_daily_5yr/all_stocks_5yr.csv.gz"
SP500_EXTRA_TICKERS = ("AAPL", "APTV", "GOOGL", "XOM")


def _broken_rows(frame: pl.DataFrame) -> pl.Expr:
    """Rows a bar store must refuse: missing prices, prices <= 0, or low/high not bounding."""
    o, h, lo, c = (pl.col(n) for n in ("open", "high", "low", "close"))
    return (
        pl.any_horizontal([pl.col(n).is_null() for n in (*PRICES, "volume")])
        | (pl.min_horizontal(o, h, lo, c) <= 0)
        | (h < lo)
        | (o < lo)
        | (o > h)
        | (c < lo)
        | (c > h)
    ).fill_null(True)


def _sp500_subset(source: Path, target: Path) -> tuple[pl.DataFrame, set[str]]:
    """Copy the header and the lines of some tickers (all with broken rows, plus a few)."""
    text = gzip.decompress(source.read_bytes())
    frame = pl.read_csv(io.BytesIO(text), schema_overrides={"date": pl.String})
    broken = frame.filter(_broken_rows(frame))
    tickers = set(broken["Name"].to_list()) | set(SP500_EXTRA_TICKERS)
    lines = text.decode().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.rsplit(",", 1)[-1] in tickers]
    target.write_text("\n".join(kept) + "\n")
    subset = frame.filter(pl.col("Name").is_in(tickers))
    assert subset.height == len(kept) - 1
    return subset, tickers


def test_sp500_file_splits_into_one_daily_series_per_name(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk], tmp_path: Path
) -> None:
    # Arrange: the tickers with broken rows and a few others, to keep the test quick.
    subset_path = tmp_path / "all_stocks_5yr_subset.csv"
    raw, tickers = _sp500_subset(data_file(SP500), subset_path)
    assert len(tickers) >= 15
    expected_bad = raw.filter(_broken_rows(raw)).group_by("Name").len()
    bad_by_name = dict(expected_bad.iter_rows())
    assert sum(bad_by_name.values()) >= 20
    rows_by_name = dict(raw.group_by("Name").len().iter_rows())
    desk = new_desk()
    # The export was taken after the last daily bar (2018-02-07) had closed.
    as_of = datetime(2018, 2, 8, tzinfo=UTC)

    # Act
    outcome = desk.ingest([subset_path], timeframe=Timeframe.D1, as_of=as_of)

    # Assert
    by_symbol = {s.key.symbol: s for s in outcome.series}
    assert set(by_symbol) == tickers
    assert {s.key.timeframe for s in outcome.series} == {Timeframe.D1}
    for name, series in by_symbol.items():
        assert series.rows_read == rows_by_name[name], name
        assert series.rows_quarantined == bad_by_name.get(name, 0), name
        assert series.rows_added == rows_by_name[name] - bad_by_name.get(name, 0), name
        bars = desk.bars(series.key)
        _assert_sound(bars)
        assert bars.height == series.rows_added, name
    quarantine = desk.quarantine()
    assert quarantine.height == sum(bad_by_name.values())
    assert not quarantine["reason"].str.starts_with("partial bar").any()
    aapl = desk.bars(by_symbol["AAPL"].key).with_columns(date=pl.col("ts").dt.date())
    raw_aapl = raw.filter(pl.col("Name") == "AAPL").with_columns(
        pl.col("date").str.to_date("%Y-%m-%d")
    )
    joined = aapl.join(raw_aapl, on="date", how="inner", suffix="_raw")
    assert joined.height == raw_aapl.height
    assert (joined["ts"].dt.hour() == 0).all()
    _assert_same_values(joined, {c: f"{c}_raw" for c in (*PRICES, "volume")})
    _assert_reingest_adds_nothing(
        desk, [subset_path], outcome.series, timeframe=Timeframe.D1, as_of=as_of
    )


# -- HistData ASCII M1 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "symbol"),
    [
        ("histdata_m1/xauusd/HISTDATA_COM_ASCII_XAUUSD_M1_2017.zip", "XAUUSD"),
        ("histdata_m1/spxusd/HISTDATA_COM_ASCII_SPXUSD_M1_2017.zip", "US500"),
        ("histdata_m1/audjpy/HISTDATA_COM_ASCII_AUDJPY_M1_2017.zip", "AUDJPY"),
    ],
)
def test_histdata_zip_stores_every_minute_five_hours_after_est(
    data_file: Callable[[str], Path],
    new_desk: Callable[[], Desk],
    relative: str,
    symbol: str,
) -> None:
    # Arrange
    path = data_file(relative)
    raw = pl.read_csv(
        io.BytesIO(_zip_member(path)),
        has_header=False,
        separator=";",
        new_columns=["time", "o", "h", "l", "c", "v"],
    ).with_columns(
        (pl.col("time").str.to_datetime("%Y%m%d %H%M%S", time_unit="us") + pl.duration(hours=5))
        .dt.replace_time_zone("UTC")
        .alias("ts")
    )
    desk = new_desk()

    # Act
    outcome = desk.ingest_one([path])

    # Assert
    assert outcome.key == SeriesKey(symbol=symbol, timeframe=Timeframe.M1, side=Side.BID)
    # HistData files are history, not a live export: nothing is held back.
    assert outcome.rows_quarantined == 0
    assert outcome.rows_added == raw.height
    bars = desk.bars(outcome.key)
    _assert_sound(bars)
    assert bars["ts"].to_list() == raw["ts"].to_list()
    assert (bars["volume"] == 0).all()
    _assert_same_values(
        bars.join(raw, on="ts"), {"open": "o", "high": "h", "low": "l", "close": "c"}
    )
    _assert_reingest_adds_nothing(desk, [path], [outcome])


# -- Parquet --------------------------------------------------------------------------------


def test_parquet_of_real_bars_ingests_every_row(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk], tmp_path: Path
) -> None:
    # Arrange: Parquet is no live export, so even the Dukascopy file's final row is stored.
    raw = _dukascopy(data_file("dukascopy_h4_d1/commodities/silver/XAGUSD_D1.csv.gz"))
    path = tmp_path / "XAGUSD_D1.parquet"
    raw.select(
        pl.col("ts").alias("time"),
        pl.col("o").alias("open"),
        pl.col("h").alias("high"),
        pl.col("l").alias("low"),
        pl.col("c").alias("close"),
        pl.col("v").alias("volume"),
    ).write_parquet(path)
    desk = new_desk()

    # Act
    outcome = desk.ingest_one([path])

    # Assert
    assert outcome.key == SeriesKey(symbol="XAGUSD", timeframe=Timeframe.D1, side=Side.BID)
    assert outcome.rows_added == raw.height
    bars = desk.bars(outcome.key)
    _assert_sound(bars)
    assert bars["ts"].to_list() == raw["ts"].to_list()
    _assert_same_values(bars.join(raw, on="ts"), {"close": "c", "volume": "v"})
    _assert_reingest_adds_nothing(desk, [path], [outcome])

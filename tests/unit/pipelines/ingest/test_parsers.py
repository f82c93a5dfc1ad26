"""Parsers: every format's bytes become one raw row per data line, bad lines explained."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest
from testkit.files import (
    DATA_DIR,
    RawBar,
    histdata_csv,
    hourly_bars,
    hst_bytes,
    hst_header,
    mt4_csv,
    parquet_bytes,
)

from core.clocks import BROKER, UTC
from core.errors import DataError
from core.timeframes import Timeframe
from core.types import Side, VolumeKind
from pipelines.ingest.parsers import (
    FRAME_SCHEMA,
    RawSource,
    detect_format,
    parse_csv,
    parse_histdata,
    parse_hst,
    parse_lean,
    parse_mt4_csv,
    parse_parquet,
    parse_source,
    read_lines,
)


def _source(relative: str) -> RawSource:
    path = DATA_DIR / relative
    return RawSource(str(path), path.read_bytes())


def _good(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("error").is_null()).select(
        "line", "ts_local", "open", "high", "low", "close", "volume"
    )


# -- detect_format -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("a.csv", b"2017.01.02,09:00,1.1,1.2,1.0,1.1,5\n", "mt4-csv"),
        ("a.csv", b"20170102 020000;1.1;1.2;1.0;1.1;0\n", "histdata"),
        ("a.csv", b"20170102 00:00,1,2,0.5,1.5,0,1,2,0.5,1.5,0\n", "lean"),
        ("a.csv", b"\xef\xbb\xbfTime,Open,High,Low,Close\n2017-01-02,1,2,0.5,1.5\n", "csv"),
        ("a.txt", b"Date;Open;High;Low;Close\n", "csv"),
        ("a.bin", b"PAR1" + b"\0" * 20, "parquet"),
        ("a.bin", hst_header(version=400) + b"", "hst"),
        ("a.bin", hst_header(version=401), "hst"),
    ],
)
def test_detect_format_known_content_named(name: str, data: bytes, expected: str) -> None:
    # Act
    fmt = detect_format(RawSource(name, data))

    # Assert
    assert fmt == expected


def test_detect_format_hst_name_with_bad_header_raises_naming_file_and_line() -> None:
    # Arrange: version 500 is no MT4 history file.
    source = RawSource("EURUSD60.hst", hst_header(version=500) + b"\0" * 60)

    # Act
    with pytest.raises(DataError) as caught:
        detect_format(source)

    # Assert
    assert (caught.value.source, caught.value.line) == ("EURUSD60.hst", 1)
    assert "version 400 or 401" in str(caught.value)


def test_detect_format_unrecognised_text_raises_asking_for_format() -> None:
    # Act
    with pytest.raises(DataError) as caught:
        detect_format(RawSource("notes.txt", b"just some words\nand more\n"))

    # Assert
    assert caught.value.source == "notes.txt"
    assert "--format" in str(caught.value)


# -- read_lines --------------------------------------------------------------------------------


def test_read_lines_blank_lines_skipped_but_numbering_kept() -> None:
    # Act
    lines = read_lines(b"a\n\nb\n   \r\nc\r\n")

    # Assert
    assert lines.rows() == [(1, "a"), (3, "b"), (5, "c")]


def test_read_lines_invalid_utf8_replaced_not_fatal() -> None:
    # Act
    lines = read_lines(b"ok\n\xff\xfe\x80 bytes\nend\n")

    # Assert
    assert lines["line"].to_list() == [1, 2, 3]
    assert "\ufffd" in lines["raw"][1]


# -- MT4 CSV -----------------------------------------------------------------------------------


def test_parse_mt4_csv_fixture_reads_broker_clock_bid_tick_volume() -> None:
    # Act
    parsed = parse_mt4_csv(_source("mt4/EURUSD60.csv"))

    # Assert
    assert (parsed.format, parsed.clock, parsed.side) == ("mt4-csv", BROKER, Side.BID)
    assert parsed.volume_kind is VolumeKind.TICK
    assert parsed.may_end_with_forming_bar
    assert parsed.frame.schema == pl.Schema(FRAME_SCHEMA)
    assert parsed.frame.height == 6
    assert parsed.frame["error"].null_count() == 6
    assert parsed.frame.row(3, named=True) | {"raw": None} == {
        "line": 4, "raw": None, "symbol": None, "ts_local": datetime(2017, 1, 2, 3, 0),
        "open": 1.0522, "high": 1.0524, "low": 1.0501, "close": 1.0505, "volume": 210.0,
        "spread": None, "error": None,
    }  # fmt: skip


def test_parse_mt4_csv_bad_lines_get_reasons_and_good_lines_match_clean_file() -> None:
    # Arrange: the same bars, once clean and once with damaged lines in between.
    bars = hourly_bars(datetime(2017, 1, 2), 4)
    clean = mt4_csv(bars)
    lines = clean.splitlines()
    dirty = "\n".join(
        [lines[0], "2017.01.02,xx:00,1.1,1.2,1.0,1.1,5", lines[1], "2017.01.02,09:00,1.1,1.2",
         lines[2], "2017.01.02,10:00,1.1,abc,1.0,1.1,5", lines[3]]
    ) + "\n"  # fmt: skip

    # Act
    parsed_clean = parse_mt4_csv(RawSource("EURUSD60.csv", clean.encode()))
    parsed_dirty = parse_mt4_csv(RawSource("EURUSD60.csv", dirty.encode()))

    # Assert
    errors = parsed_dirty.frame.filter(pl.col("error").is_not_null())
    assert errors.select("line", "error").rows() == [
        (2, "unreadable timestamp"),
        (4, "expected at least 7 fields"),
        (6, "unreadable high price"),
    ]
    assert errors["raw"].to_list()[1] == "2017.01.02,09:00,1.1,1.2"
    good = _good(parsed_dirty.frame).drop("line")
    assert good.equals(_good(parsed_clean.frame).drop("line"))
    assert _good(parsed_dirty.frame)["line"].to_list() == [1, 3, 5, 7]


# -- HistData ----------------------------------------------------------------------------------


def test_parse_histdata_fixture_reads_est_clock_m1_no_volume() -> None:
    # Act
    parsed = parse_histdata(_source("histdata/DAT_ASCII_EURUSD_M1_2017.csv"))

    # Assert
    assert parsed.clock.name == "Etc/GMT+5"
    assert parsed.timeframe is Timeframe.M1
    assert parsed.volume_kind is VolumeKind.NONE
    assert not parsed.may_end_with_forming_bar
    assert parsed.frame["ts_local"].to_list()[:2] == [
        datetime(2017, 1, 2, 2, 0),
        datetime(2017, 1, 2, 2, 1),
    ]
    assert parsed.frame["close"].to_list() == [1.05158, 1.05165, 1.05142, 1.05149]


def test_parse_histdata_short_line_and_bad_price_get_reasons() -> None:
    # Arrange
    bars = [RawBar(datetime(2017, 1, 2, 2, m), 1.1, 1.2, 1.0, 1.15) for m in range(2)]
    text = histdata_csv(bars) + "20170102 020200;1.1;1.2\n20170102 020300;1.1;1.2;1.0;n/a;0\n"

    # Act
    parsed = parse_histdata(RawSource("x.csv", text.encode()))

    # Assert
    assert parsed.frame["error"].to_list() == [
        None, None, "expected at least 5 fields", "unreadable close price",
    ]  # fmt: skip


# -- MT4 .hst ----------------------------------------------------------------------------------


def test_parse_hst_v401_reads_header_records_and_spread_in_points() -> None:
    # Arrange
    bars = hourly_bars(datetime(2017, 1, 2, 9), 3)
    data = hst_bytes(bars, symbol="GBPUSD", period=240, digits=5, spread_points=[12, 0, 30])

    # Act
    parsed = parse_hst(RawSource("GBPUSD240.hst", data))

    # Assert
    assert (parsed.symbol, parsed.timeframe, parsed.digits) == ("GBPUSD", Timeframe.H4, 5)
    assert (parsed.clock, parsed.volume_kind) == (BROKER, VolumeKind.TICK)
    frame = parsed.frame
    assert frame["ts_local"].to_list() == [b.ts for b in bars]
    assert frame["open"].to_list() == [b.open for b in bars]
    assert frame["high"].to_list() == [b.high for b in bars]
    assert frame["low"].to_list() == [b.low for b in bars]
    assert frame["volume"].to_list() == [b.volume for b in bars]
    assert frame["spread"].to_list() == pytest.approx([0.00012, 0.0, 0.00030])
    assert frame["raw"].to_list() == ["record 1", "record 2", "record 3"]


def test_parse_hst_v401_without_spreads_leaves_spread_null() -> None:
    # Act
    parsed = parse_hst(RawSource("x.hst", hst_bytes(hourly_bars(datetime(2017, 1, 2), 2))))

    # Assert
    assert parsed.frame["spread"].null_count() == 2


def test_parse_hst_v400_reads_low_before_high_record_layout() -> None:
    # Arrange
    bars = [RawBar(datetime(2017, 1, 2, 9), 1.10, 1.30, 1.00, 1.20, 7)]

    # Act
    parsed = parse_hst(RawSource("x.hst", hst_bytes(bars, version=400, period=1440)))

    # Assert
    assert parsed.timeframe is Timeframe.D1
    assert parsed.frame.select("open", "high", "low", "close", "volume").row(0) == (
        1.10, 1.30, 1.00, 1.20, 7.0,
    )  # fmt: skip


def test_parse_hst_truncated_last_record_reported_as_unreadable_line() -> None:
    # Arrange: two whole records and 25 bytes of a third.
    data = hst_bytes(hourly_bars(datetime(2017, 1, 2), 3))[:-35]

    # Act
    parsed = parse_hst(RawSource("x.hst", data))

    # Assert
    assert parsed.frame["line"].to_list() == [1, 2, 3]
    assert parsed.frame["error"].to_list() == [None, None, "truncated record"]
    assert parsed.frame["raw"][2] == "record 3: 25 of 60 bytes"


def test_parse_hst_unknown_period_raises_naming_file() -> None:
    # Arrange
    data = hst_bytes(hourly_bars(datetime(2017, 1, 2), 1), period=2)

    # Act
    with pytest.raises(DataError) as caught:
        parse_hst(RawSource("EURUSD2.hst", data))

    # Assert
    assert (caught.value.source, caught.value.line) == ("EURUSD2.hst", 1)
    assert "period" in str(caught.value)


def test_parse_hst_header_only_gives_no_rows_and_no_timeframe_for_period_0() -> None:
    # Act
    parsed = parse_hst(RawSource("x.hst", hst_header(period=0)))

    # Assert
    assert parsed.frame.height == 0
    assert parsed.timeframe is None


# -- LEAN --------------------------------------------------------------------------------------


def test_parse_lean_quote_bars_give_bid_with_spread_from_ask_close() -> None:
    # Act
    parsed = parse_lean(_source("lean/forex/oanda/hour/eurusd.csv"))

    # Assert
    assert (parsed.clock, parsed.side, parsed.volume_kind) == (UTC, Side.BID, VolumeKind.NONE)
    assert parsed.frame["close"].to_list() == [1.0518, 1.0525, 1.0522]
    assert parsed.frame["spread"].to_list() == pytest.approx([0.00015, 0.00014, 0.00012])


def test_parse_lean_fxcm_path_uses_est_clock() -> None:
    # Arrange
    path = DATA_DIR / "lean/forex/oanda/hour/eurusd.csv"

    # Act
    parsed = parse_lean(RawSource("data/forex/fxcm/hour/eurusd.csv", path.read_bytes()))

    # Assert
    assert parsed.clock.name == "Etc/GMT+5"


def test_parse_lean_equity_trade_bars_scale_prices_and_use_new_york_clock() -> None:
    # Act
    parsed = parse_lean(_source("lean/equity/usa/daily/aapl.csv"))

    # Assert
    assert parsed.clock.name == "America/New_York"
    assert parsed.volume_kind is VolumeKind.REAL
    assert parsed.frame.select("open", "high", "low", "close").row(0) == pytest.approx(
        (115.38, 116.22, 114.62, 116.15)
    )
    assert parsed.frame["volume"][0] == 28781865.0


# -- CSV with a header -------------------------------------------------------------------------


def test_parse_csv_columns_found_by_name_in_any_order() -> None:
    # Arrange: separate Date and Time columns, odd order, semicolons, <> and mixed case.
    text = (
        "<Close>;Volume;Date;Time;HIGH;low;Open\n"
        "1.15;7;2017-01-02;09:00;1.2;1.0;1.1\n"
        "1.25;8;2017-01-02;10:00;1.3;1.1;1.15\n"
    )

    # Act
    parsed = parse_csv(RawSource("x.csv", text.encode()))

    # Assert
    assert parsed.frame.select("ts_local", "open", "high", "low", "close", "volume").rows() == [
        (datetime(2017, 1, 2, 9), 1.1, 1.2, 1.0, 1.15, 7.0),
        (datetime(2017, 1, 2, 10), 1.15, 1.3, 1.1, 1.25, 8.0),
    ]
    assert parsed.frame["line"].to_list() == [2, 3]
    assert parsed.volume_kind is VolumeKind.REAL


def test_parse_csv_prefixed_names_and_tick_volume_recognised() -> None:
    # Arrange
    text = "timestamp,BTC.open,BTC.high,BTC.low,BTC.close,tick_volume\n2017-01-02 00:00,1,2,0.5,1.5,3\n"

    # Act
    parsed = parse_csv(RawSource("x.csv", text.encode()))

    # Assert
    assert parsed.frame.select("open", "high", "low", "close", "volume").row(0) == (
        1.0, 2.0, 0.5, 1.5, 3.0,
    )  # fmt: skip
    assert parsed.volume_kind is VolumeKind.TICK


def test_parse_csv_mt5_export_spread_in_points_and_tick_volume() -> None:
    # Act
    parsed = parse_csv(_source("mt5/EURUSD_M15.csv"))

    # Assert
    assert parsed.spread_in_points
    assert parsed.volume_kind is VolumeKind.TICK
    assert parsed.frame["spread"].to_list() == [12.0, 8.0, 0.0]
    assert parsed.frame["ts_local"][1] == datetime(2017, 1, 2, 0, 15)


def test_parse_csv_without_header_reads_time_ohlc_volume() -> None:
    # Arrange
    text = "2017-01-02 00:00:00,1.1,1.2,1.0,1.15,42\n2017-01-02 00:01:00,1.15,1.2,1.1,1.12,7\n"

    # Act
    parsed = parse_csv(RawSource("EURUSD_M1.csv", text.encode()))

    # Assert
    assert parsed.frame["line"].to_list() == [1, 2]
    assert parsed.frame["volume"].to_list() == [42.0, 7.0]
    assert parsed.clock is UTC


def test_parse_csv_day_first_told_from_data() -> None:
    # Arrange: 13.01 can only be day-first.
    text = "Time,Open,High,Low,Close\n12.01.2017 22:00:00.000,1,1,1,1\n13.01.2017 22:00:00.000,1,1,1,1\n"

    # Act
    parsed = parse_csv(RawSource("x.csv", text.encode()))

    # Assert
    assert parsed.frame["ts_local"].to_list() == [
        datetime(2017, 1, 12, 22),
        datetime(2017, 1, 13, 22),
    ]


def test_parse_csv_month_first_told_from_data() -> None:
    # Arrange: 01/13 can only be month-first.
    text = "Date,Open,High,Low,Close\n01/12/2017,1,1,1,1\n01/13/2017,1,1,1,1\n"

    # Act
    parsed = parse_csv(RawSource("x.csv", text.encode()))

    # Assert
    assert parsed.frame["ts_local"].to_list() == [datetime(2017, 1, 12), datetime(2017, 1, 13)]


def test_parse_csv_day_first_chosen_because_it_keeps_time_increasing() -> None:
    # Arrange: both readings are valid dates; only day-first (Jan 12 -> Feb 1) increases.
    text = "Date,Open,High,Low,Close\n12.01.2017,1,1,1,1\n01.02.2017,1,1,1,1\n"

    # Act
    parsed = parse_csv(RawSource("x.csv", text.encode()))

    # Assert
    assert parsed.frame["ts_local"].to_list() == [datetime(2017, 1, 12), datetime(2017, 2, 1)]


def test_parse_csv_ambiguous_dates_raise_asking_for_date_order() -> None:
    # Arrange: 01.02 -> 02.03 increases read either way.
    text = b"Date,Open,High,Low,Close\n01.02.2017,1,1,1,1\n02.03.2017,1,1,1,1\n"

    # Act
    with pytest.raises(DataError) as caught:
        parse_csv(RawSource("amb.csv", text))

    # Assert
    assert caught.value.source == "amb.csv"
    assert "--date-order" in str(caught.value)


@pytest.mark.parametrize(
    ("order", "expected"),
    [("dmy", [date(2017, 2, 1), date(2017, 3, 2)]), ("mdy", [date(2017, 1, 2), date(2017, 2, 3)])],
)
def test_parse_csv_ambiguous_dates_follow_given_date_order(
    order: str, expected: list[date]
) -> None:
    # Arrange
    text = b"Date,Open,High,Low,Close\n01.02.2017,1,1,1,1\n02.03.2017,1,1,1,1\n"

    # Act
    parsed = parse_csv(RawSource("amb.csv", text), date_order=order)

    # Assert
    assert parsed.frame["ts_local"].dt.date().to_list() == expected


def test_parse_csv_offset_timestamps_converted_to_utc_wall_time() -> None:
    # Arrange
    text = b"time,open,high,low,close\n2017-01-02T09:00:00+02:00,1,1,1,1\n2017-01-02T08:00:00Z,1,1,1,1\n"

    # Act
    parsed = parse_csv(RawSource("x.csv", text))

    # Assert
    assert parsed.frame["ts_local"].to_list() == [datetime(2017, 1, 2, 7), datetime(2017, 1, 2, 8)]


@pytest.mark.parametrize("scale", [1, 1000])
def test_parse_csv_epoch_seconds_and_milliseconds_read(scale: int) -> None:
    # Arrange: 1483347600 s = 2017-01-02 09:00 UTC.
    text = f"ts,open,high,low,close\n{1483347600 * scale},1,1,1,1\n{1483351200 * scale},1,1,1,1\n"

    # Act
    parsed = parse_csv(RawSource("x.csv", text.encode()))

    # Assert
    assert parsed.frame["ts_local"].to_list() == [datetime(2017, 1, 2, 9), datetime(2017, 1, 2, 10)]


def test_parse_csv_symbol_column_kept_per_row() -> None:
    # Arrange
    text = b"Date,Name,Open,High,Low,Close\n2017-01-03,AAPL,1,1,1,1\n2017-01-03,MSFT,2,2,2,2\n"

    # Act
    parsed = parse_csv(RawSource("x.csv", text))

    # Assert
    assert parsed.frame["symbol"].to_list() == ["AAPL", "MSFT"]


def test_parse_csv_bad_cells_get_reasons_with_line_numbers() -> None:
    # Arrange
    text = (
        "time,open,high,low,close,volume\n"
        "2017-01-02 00:00,1,2,0.5,1.5,1\n"
        "2017-01-02 01:00,1,2,0.5\n"
        "2017-01-02 02:00,x,2,0.5,1.5,1\n"
        "2017-01-02 03:00,1,2,0.5,1.5,many\n"
    )

    # Act
    parsed = parse_csv(RawSource("x.csv", text.encode()))

    # Assert
    assert parsed.frame.select("line", "error").rows() == [
        (2, None),
        (3, "expected at least 6 fields"),
        (4, "unreadable open price"),
        (5, "unreadable volume"),
    ]


def test_parse_csv_header_without_price_columns_raises_naming_missing_roles() -> None:
    # Arrange
    text = b"when,bid,ask\n2017-01-02 00:00,1.1,1.2\n"

    # Act
    with pytest.raises(DataError) as caught:
        parse_csv(RawSource("quotes.csv", text))

    # Assert
    assert (caught.value.source, caught.value.line) == ("quotes.csv", 1)
    assert "no usable time, open, high, low, close column" in str(caught.value)


def test_parse_csv_empty_file_raises_no_data_lines() -> None:
    # Act / Assert
    with pytest.raises(DataError, match=r"empty\.csv: no data lines"):
        parse_csv(RawSource("empty.csv", b"\n\n"))


def test_parse_csv_header_only_raises_no_data_lines() -> None:
    # Act
    with pytest.raises(DataError) as caught:
        parse_csv(RawSource("EURUSD_H4.csv", b"time,open,high,low,close\n"))

    # Assert
    assert (caught.value.source, caught.value.line) == ("EURUSD_H4.csv", 1)
    assert "no data lines" in str(caught.value)


@pytest.mark.parametrize("rows", [1, 2, 150])
def test_parse_csv_small_file_with_one_unambiguous_layout_reads(rows: int) -> None:
    # Arrange: year-first dates fit one layout only, however few the rows.
    body = "".join(f"2017-01-{1 + i // 24:02d} {i % 24:02d}:00,1,1,1,1\n" for i in range(rows))

    # Act
    parsed = parse_csv(RawSource("x.csv", ("time,open,high,low,close\n" + body).encode()))

    # Assert
    assert parsed.frame["ts_local"][0] == datetime(2017, 1, 1)
    assert parsed.frame["ts_local"].null_count() == 0


def test_parse_csv_unreadable_timestamps_raise_naming_first_value() -> None:
    # Act
    with pytest.raises(DataError) as caught:
        parse_csv(RawSource("x.csv", b"time,open,high,low,close\nsoon,1,1,1,1\nlater,1,1,1,1\n"))

    # Assert
    assert "cannot read the timestamps" in str(caught.value)
    assert "'soon'" in str(caught.value)


# -- Parquet -----------------------------------------------------------------------------------


def test_parse_parquet_aware_timestamps_become_utc_wall_time() -> None:
    # Arrange
    frame = pl.DataFrame(
        {
            "Time": [datetime(2017, 1, 2, 9), datetime(2017, 1, 2, 10)],
            "Open": [1.0, 1.1],
            "High": [1.2, 1.3],
            "Low": [0.9, 1.0],
            "Close": [1.1, 1.2],
            "Volume": [5, 6],
        }
    ).with_columns(pl.col("Time").dt.replace_time_zone("Europe/Berlin"))

    # Act
    parsed = parse_parquet(RawSource("x.parquet", parquet_bytes(frame)))

    # Assert
    assert parsed.frame["ts_local"].to_list() == [datetime(2017, 1, 2, 8), datetime(2017, 1, 2, 9)]
    assert parsed.frame["volume"].to_list() == [5.0, 6.0]
    assert parsed.volume_kind is VolumeKind.REAL
    assert parsed.frame["raw"].to_list() == ["row 1", "row 2"]


def test_parse_parquet_date_column_and_symbol_read() -> None:
    # Arrange
    frame = pl.DataFrame(
        {"date": [date(2017, 1, 3)], "ticker": ["AAPL"], "open": [1.0], "high": [1.0],
         "low": [1.0], "close": [1.0]}
    )  # fmt: skip

    # Act
    parsed = parse_parquet(RawSource("x.parquet", parquet_bytes(frame)))

    # Assert
    assert parsed.frame.select("ts_local", "symbol").row(0) == (datetime(2017, 1, 3), "AAPL")
    assert parsed.volume_kind is VolumeKind.NONE


def test_parse_parquet_null_price_marked_missing() -> None:
    # Arrange
    frame = pl.DataFrame(
        {"ts": ["2017-01-02 00:00", "2017-01-02 01:00"], "open": [1.0, None], "high": [1.0, 1.0],
         "low": [1.0, 1.0], "close": [1.0, 1.0]}
    )  # fmt: skip

    # Act
    parsed = parse_parquet(RawSource("x.parquet", parquet_bytes(frame)))

    # Assert
    assert parsed.frame["error"].to_list() == [None, "missing open price"]


def test_parse_parquet_missing_columns_raise_naming_them() -> None:
    # Arrange
    frame = pl.DataFrame({"ts": [datetime(2017, 1, 2)], "price": [1.0]})

    # Act
    with pytest.raises(DataError) as caught:
        parse_parquet(RawSource("p.parquet", parquet_bytes(frame)))

    # Assert
    assert caught.value.source == "p.parquet"
    assert "no usable open, high, low column" in str(caught.value)


def test_parse_parquet_damaged_bytes_raise_data_error() -> None:
    # Arrange
    data = parquet_bytes(pl.DataFrame({"ts": [1]}))
    damaged = data[:8] + b"\0" * 16 + data[24:40]

    # Act / Assert
    with pytest.raises(DataError, match="unreadable Parquet file"):
        parse_parquet(RawSource("bad.parquet", damaged))


# -- parse_source ------------------------------------------------------------------------------


def test_parse_source_forced_format_overrides_detection() -> None:
    # Arrange: MT4-looking lines, forced through the generic CSV reader.
    data = b"2017.01.02 09:00,1.1,1.2,1.0,1.15\n"

    # Act
    parsed = parse_source(RawSource("x.csv", data, format="csv"))

    # Assert
    assert parsed.format == "csv"
    assert parsed.frame["ts_local"][0] == datetime(2017, 1, 2, 9)


def test_parse_source_unknown_forced_format_raises_listing_formats() -> None:
    # Act
    with pytest.raises(DataError) as caught:
        parse_source(RawSource("x.csv", b"a,b\n", format="xlsx"))

    # Assert
    assert "unknown format 'xlsx'" in str(caught.value)
    assert "mt4-csv" in str(caught.value)

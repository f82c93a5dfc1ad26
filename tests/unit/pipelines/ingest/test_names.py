"""Symbol and timeframe from conventional file names."""

from __future__ import annotations

import pytest

from core.instruments import InstrumentRegistry
from core.timeframes import Timeframe
from pipelines.ingest.names import stem, symbol_timeframe_from_name

_REGISTRY = InstrumentRegistry.default()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("EURUSD60.csv", "EURUSD60"),
        ("/data/exports/EURUSD_H4.csv.gz", "EURUSD_H4"),
        ("HISTDATA_COM_ASCII_EURUSD_M1_2017.zip", "HISTDATA_COM_ASCII_EURUSD_M1_2017"),
        ("bars.zip!DAT_ASCII_EURUSD_M1_2017.csv", "DAT_ASCII_EURUSD_M1_2017"),
        ("C:\\MT4\\history\\GBPUSD240.hst", "GBPUSD240"),
        ("eurusd.TXT", "eurusd"),
        ("a.parquet", "a"),
    ],
)
def test_stem_folders_and_data_endings_removed(name: str, expected: str) -> None:
    # Act / Assert
    assert stem(name) == expected


@pytest.mark.parametrize(
    ("name", "symbol", "timeframe"),
    [
        ("EURUSD60.csv", "EURUSD", Timeframe.H1),
        ("EURUSD1.csv", "EURUSD", Timeframe.M1),
        ("EURUSD5.csv", "EURUSD", Timeframe.M5),
        ("EURUSD15.csv", "EURUSD", Timeframe.M15),
        ("EURUSD240.csv", "EURUSD", Timeframe.H4),
        ("EURUSD1440.csv", "EURUSD", Timeframe.D1),
        ("EURUSD10080.csv", "EURUSD", Timeframe.W1),
        ("EURUSD43200.csv", "EURUSD", Timeframe.MN1),
        ("US50060.hst", "US500", Timeframe.H1),
        ("XAUUSD30.csv", "XAUUSD", Timeframe.M30),
        ("eurusd_h4.csv", "EURUSD", Timeframe.H4),
        ("EURUSD-D1.csv", "EURUSD", Timeframe.D1),
        ("EURUSD.m_M15.csv", "EURUSD.M", Timeframe.M15),
        ("USA500IDXUSD_MN1.csv", "USA500IDXUSD", Timeframe.MN1),
        ("HISTDATA_COM_ASCII_EURUSD_M1_2017.zip", "EURUSD", Timeframe.M1),
        ("x.zip!DAT_ASCII_GBPJPY_M1_201701.csv", "GBPJPY", Timeframe.M1),
        ("HISTDATA_COM_ASCII_EURUSD_T_201701.zip", "EURUSD", None),
        ("lean/forex/oanda/hour/eurusd.zip", "EURUSD", Timeframe.H1),
        ("lean/forex/oanda/minute/eurusd.csv", "EURUSD", Timeframe.M1),
        ("lean/equity/usa/daily/aapl.zip!aapl.csv", "AAPL", Timeframe.D1),
    ],
)
def test_symbol_timeframe_from_name_conventions_read(
    name: str, symbol: str, timeframe: Timeframe | None
) -> None:
    # Act
    found = symbol_timeframe_from_name(name, _REGISTRY.__contains__)

    # Assert
    assert found == (symbol, timeframe)


def test_symbol_timeframe_from_name_unknown_symbol_ending_in_letter_split() -> None:
    # Act: without the registry, FOO60 splits where the symbol ends in a letter.
    found = symbol_timeframe_from_name("FOO60.csv")

    # Assert
    assert found == ("FOO", Timeframe.H1)


def test_symbol_timeframe_from_name_registry_decides_digit_ending_symbols() -> None:
    # Arrange: "US500" + "60" only with the registry; without it the split is ambiguous.
    # Act
    with_registry = symbol_timeframe_from_name("US50060.csv", _REGISTRY.__contains__)
    without = symbol_timeframe_from_name("US50060.csv")

    # Assert
    assert with_registry == ("US500", Timeframe.H1)
    assert without == (None, None)


@pytest.mark.parametrize(
    "name", ["bars.csv", "export_2017.csv", "60.csv", "data/EURUSD.csv", "sample:eurusd-h1"]
)
def test_symbol_timeframe_from_name_no_convention_gives_none(name: str) -> None:
    # Act
    found = symbol_timeframe_from_name(name, _REGISTRY.__contains__)

    # Assert
    assert found == (None, None)

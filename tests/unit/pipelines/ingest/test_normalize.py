"""Row rules, quarantine reasons, repeats inside a source and the partial final bar."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest
from testkit.files import DATA_DIR, bar_frame, hourly_bars, mt4_csv, utc

from core.clocks import parse_clock
from core.errors import DataError
from core.instruments import InstrumentRegistry
from core.timeframes import Timeframe
from core.types import Side, VolumeKind
from pipelines.ingest.normalize import PARTIAL_BAR, SeriesBatch, normalize, preferred_first
from pipelines.ingest.parsers import RawSource, parse_source

REGISTRY = InstrumentRegistry.default()
LATER = utc(2030, 1, 1)  # an --as-of after every bar: no partial final bar
HEADER = "time,open,high,low,close,volume,spread\n"


def _normalize(
    text: str | bytes, name: str = "EURUSD_H1.csv", **options: object
) -> list[SeriesBatch]:
    data = text.encode() if isinstance(text, str) else text
    return normalize(parse_source(RawSource(name, data)), registry=REGISTRY, **options)  # type: ignore[arg-type]


def _one(text: str | bytes, name: str = "EURUSD_H1.csv", **options: object) -> SeriesBatch:
    (batch,) = _normalize(text, name, **options)
    return batch


def _accounted(batch: SeriesBatch) -> int:
    return (
        batch.bars.height + batch.quarantine.height + batch.rows_conflicting + batch.rows_duplicate
    )


# -- one reason per broken rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2017-01-03 10:00,abc,1.2,1.0,1.1,1,", "unreadable open price"),
        ("2017-01-03 10:00,1.1,1.2,1.0", "expected at least 7 fields"),
        ("2017-01-03 10:30,1.1,1.2,1.0,1.1,1,", "timestamp not on the H1 grid"),
        ("2017-01-03 10:00:15,1.1,1.2,1.0,1.1,1,", "unreadable timestamp"),  # not the file's layout
        ("2017-01-03 10:00,NaN,1.2,1.0,1.1,1,", "NaN price"),
        ("2017-01-03 10:00,1.1,1.2,1.0,nan,1,", "NaN price"),
        ("2017-01-03 10:00,1.1,inf,1.0,1.1,1,", "infinite price"),
        ("2017-01-03 10:00,1e308,1e309,1.0,1.1,1,", "infinite price"),
        ("2017-01-03 10:00,0,1.2,0,1.1,1,", "price not above 0"),
        ("2017-01-03 10:00,1.1,1.2,-1.0,1.1,1,", "price not above 0"),
        ("2017-01-03 10:00,1.1,1.0,1.2,1.1,1,", "high 1.0 below low 1.2"),
        ("2017-01-03 10:00,1.3,1.2,1.0,1.1,1,", "open 1.3 outside low 1.0 .. high 1.2"),
        ("2017-01-03 10:00,1.1,1.2,1.0,0.9,1,", "close 0.9 outside low 1.0 .. high 1.2"),
        ("2017-01-03 10:00,1.1,1.2,1.0,1.1,NaN,", "NaN volume"),
        ("2017-01-03 10:00,1.1,1.2,1.0,1.1,inf,", "infinite volume"),
        ("2017-01-03 10:00,1.1,1.2,1.0,1.1,-5,", "volume -5.0 below 0"),
        ("2017-01-03 10:00,1.1,1.2,1.0,1.1,1,NaN", "NaN spread"),
        ("2017-01-03 10:00,1.1,1.2,1.0,1.1,1,-inf", "infinite spread"),
        ("2017-01-03 10:00,1.1,1.2,1.0,1.1,1,-0.0002", "spread -0.0002 below 0"),
    ],
)
def test_normalize_broken_rule_quarantines_row_with_reason(row: str, reason: str) -> None:
    # Arrange: a good bar before and after the broken one.
    text = (
        HEADER
        + "2017-01-03 09:00,1.1,1.2,1.0,1.1,1,0.0001\n"
        + row
        + "\n2017-01-03 11:00,1.1,1.2,1.0,1.1,1,0.0001\n"
    )

    # Act
    batch = _one(text, as_of=LATER)

    # Assert
    assert batch.bars["ts"].to_list() == [utc(2017, 1, 3, 9), utc(2017, 1, 3, 11)]
    assert batch.quarantine.select("source", "line", "reason", "raw").rows() == [
        ("EURUSD_H1.csv", 3, reason, row)
    ]
    assert batch.quarantine.select("symbol", "timeframe", "side").row(0) == ("EURUSD", "H1", "bid")
    assert batch.rows_read == 3


def test_normalize_local_time_skipped_by_daylight_saving_quarantined() -> None:
    # Arrange: 09:00 broker time on 2017-03-12 is 02:00 New York, which did not exist.
    bars = hourly_bars(datetime(2017, 3, 12, 8), 3)

    # Act
    batch = _one(mt4_csv(bars), "EURUSD60.csv", as_of=LATER)

    # Assert
    assert batch.quarantine.select("line", "ts", "reason").rows() == [
        (2, None, "local time 2017-03-12 09:00:00.000000 does not exist on clock broker:ny-close")
    ]
    assert batch.bars["ts"].to_list() == [utc(2017, 3, 12, 6), utc(2017, 3, 12, 7)]


def test_normalize_seconds_off_the_minute_grid_quarantined() -> None:
    # Arrange
    text = (
        "time,open,high,low,close\n2017-01-03 10:00:00,1,1,1,1\n2017-01-03 10:01:15,1,1,1,1\n"
        "2017-01-03 10:02:00,1,1,1,1\n"
    )

    # Act
    batch = _one(text, "EURUSD_M1.csv", as_of=LATER)

    # Assert
    assert batch.quarantine.select("line", "reason").rows() == [(3, "timestamp not on the M1 grid")]
    assert batch.bars.height == 2


def test_normalize_first_failing_rule_wins() -> None:
    # Arrange: off the grid and NaN and high < low at once.
    text = HEADER + "2017-01-03 10:30,NaN,1.0,1.2,1.1,-1,\n2017-01-03 11:00,1.1,1.2,1.0,1.1,1,\n"

    # Act
    batch = _one(text, as_of=LATER)

    # Assert
    assert batch.quarantine["reason"].to_list() == ["timestamp not on the H1 grid"]


def test_normalize_daily_bars_not_checked_against_intraday_grid() -> None:
    # Arrange: LEAN daily equity bars sit at 00:00 New York, any minute is fine for D1.
    path = DATA_DIR / "lean/equity/usa/daily/aapl.csv"

    # Act
    batch = _one(path.read_bytes(), str(path))

    # Assert
    assert batch.key.symbol == "AAPL"
    assert batch.key.timeframe is Timeframe.D1
    assert batch.quarantine.height == 0
    assert batch.bars["ts"].to_list() == [
        utc(2017, 1, 3, 5),
        utc(2017, 1, 4, 5),
        utc(2017, 1, 5, 5),
    ]


# -- clocks, sides, symbols --------------------------------------------------------------------


def test_normalize_mt4_fixture_matches_golden_bars() -> None:
    # Arrange
    path = DATA_DIR / "mt4/EURUSD60.csv"
    golden = pl.read_csv(DATA_DIR / "golden/EURUSD60.H1.bid.csv").with_columns(
        pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="us", time_zone="UTC")
    )

    # Act
    batch = _one(path.read_bytes(), str(path))

    # Assert
    assert str(batch.key) == "EURUSD H1 bid"
    assert batch.volume_kind is VolumeKind.TICK
    assert batch.bars.drop("spread").equals(golden)
    assert batch.quarantine["reason"][0].startswith(PARTIAL_BAR)


def test_normalize_histdata_est_clock_shifted_five_hours() -> None:
    # Arrange
    path = DATA_DIR / "histdata/DAT_ASCII_EURUSD_M1_2017.csv"

    # Act
    batch = _one(path.read_bytes(), str(path))

    # Assert
    assert str(batch.key) == "EURUSD M1 bid"
    assert batch.bars["ts"].to_list() == [utc(2017, 1, 2, 7, m) for m in range(4)]
    assert batch.quarantine.height == 0


def test_normalize_explicit_options_override_name_and_content() -> None:
    # Arrange: the name says EURUSD H1; the caller says GBPUSD, ask, UTC+2.
    text = HEADER + "2017-01-03 09:00,1.1,1.2,1.0,1.1,1,\n"

    # Act
    batch = _one(text, symbol="GBPUSD.m", side=Side.ASK, clock=parse_clock("UTC+2"),
                 volume_kind=VolumeKind.TICK, as_of=LATER)  # fmt: skip

    # Assert
    assert str(batch.key) == "GBPUSD H1 ask"
    assert batch.volume_kind is VolumeKind.TICK
    assert batch.bars["ts"].to_list() == [utc(2017, 1, 3, 7)]


def test_normalize_spread_in_points_scaled_by_instrument_digits() -> None:
    # Arrange: MT5 <SPREAD> 12 points on EURUSD (5 digits) is 0.00012.
    path = DATA_DIR / "mt5/EURUSD_M15.csv"

    # Act
    batch = _one(path.read_bytes(), str(path), as_of=LATER)

    # Assert
    assert batch.bars["spread"].to_list() == pytest.approx([0.00012, 0.00008, 0.0])


def test_normalize_symbol_column_splits_series_and_canonicalises_aliases() -> None:
    # Arrange
    text = (
        "Date,Name,Open,High,Low,Close\n"
        "2017-01-03,AAPL,1,1,1,1\n2017-01-03,usa500idxusd,2,2,2,2\n"
        "2017-01-04,AAPL,1,1,1,1\n2017-01-04,USA500IDXUSD,2,2,2,2\n"
    )

    # Act
    batches = _normalize(text, "stocks.csv", timeframe=Timeframe.D1, as_of=LATER)

    # Assert
    assert {str(b.key): b.bars.height for b in batches} == {"AAPL D1 bid": 2, "US500 D1 bid": 2}


def test_normalize_blank_symbol_cell_quarantines_row_only() -> None:
    # Arrange
    text = "time,symbol,open,high,low,close\n2017-01-02 00:00,EURUSD,1,1,1,1\n2017-01-02 01:00,,1,1,1,1\n"

    # Act
    batch = _one(text, "rows.csv", timeframe=Timeframe.H1, as_of=LATER)

    # Assert
    assert batch.bars.height == 1
    assert batch.quarantine.select("line", "reason").rows() == [(3, "no symbol")]
    assert batch.rows_read == 2


def test_normalize_unknown_symbol_raises_naming_file() -> None:
    # Act
    with pytest.raises(DataError) as caught:
        _one(HEADER + "2017-01-03 09:00,1.1,1.2,1.0,1.1,1,\n", "x.csv", symbol="NOT/A/SYMBOL!",
             timeframe=Timeframe.H1)  # fmt: skip

    # Assert
    assert caught.value.source == "x.csv"
    assert "unknown instrument" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "options", "missing"),
    [
        ("bars.csv", {"symbol": "EURUSD"}, "--timeframe"),
        ("bars.csv", {"timeframe": Timeframe.H1}, "--symbol"),
    ],
)
def test_normalize_without_symbol_or_timeframe_raises_asking_for_option(
    name: str, options: dict[str, object], missing: str
) -> None:
    # Act
    with pytest.raises(DataError) as caught:
        _one(HEADER + "2017-01-03 09:00,1.1,1.2,1.0,1.1,1,\n", name, **options)

    # Assert
    assert caught.value.source == name
    assert missing in str(caught.value)


# -- repeats inside one source -----------------------------------------------------------------


def test_normalize_exact_repeats_counted_as_duplicates_not_quarantined() -> None:
    # Arrange
    row = "2017-01-03 09:00,1.1,1.2,1.0,1.1,1,\n"
    text = HEADER + row + row + row + "2017-01-03 10:00,1.1,1.2,1.0,1.1,1,\n"

    # Act
    batch = _one(text, as_of=LATER)

    # Assert
    assert batch.bars.height == 2
    assert batch.rows_duplicate == 2
    assert batch.rows_conflicting == 0
    assert batch.quarantine.height == 0
    assert _accounted(batch) == batch.rows_read == 4


def test_normalize_differing_repeats_are_conflicts_settled_by_preference() -> None:
    # Arrange: three versions of 09:00; the one with the larger volume wins.
    text = (
        HEADER
        + "2017-01-03 09:00,1.1,1.2,1.0,1.1,5,\n"
        + "2017-01-03 09:00,1.1,1.2,1.0,1.15,9,\n"
        + "2017-01-03 09:00,1.1,1.2,1.0,1.12,1,\n"
    )

    # Act
    batch = _one(text, as_of=LATER)

    # Assert
    assert batch.bars.select("close", "volume").rows() == [(1.15, 9.0)]
    assert batch.rows_conflicting == 2
    assert sorted(batch.conflicts["line"].to_list()) == [2, 4]
    assert set(batch.conflicts["reason"]) == {
        "conflict: another bar with this timestamp in the source"
    }
    assert _accounted(batch) == batch.rows_read == 3


def test_normalize_unsorted_rows_sorted_and_counted() -> None:
    # Arrange
    text = (
        HEADER
        + "2017-01-03 11:00,1.1,1.2,1.0,1.1,1,\n"
        + "2017-01-03 09:00,1.1,1.2,1.0,1.1,1,\n"
        + "2017-01-03 10:00,1.1,1.2,1.0,1.1,1,\n"
    )

    # Act
    batch = _one(text, as_of=LATER)

    # Assert
    assert batch.bars["ts"].to_list() == [utc(2017, 1, 3, h) for h in (9, 10, 11)]
    assert batch.rows_unsorted == 1


# -- the partial final bar of a live-feed export -----------------------------------------------


def test_normalize_live_feed_export_holds_back_last_bar() -> None:
    # Arrange
    bars = hourly_bars(datetime(2017, 1, 3, 9), 3)

    # Act
    batch = _one(mt4_csv(bars), "EURUSD60.csv")

    # Assert
    assert batch.bars.height == 2
    assert batch.quarantine["line"].to_list() == [3]
    assert batch.quarantine["reason"][0].startswith(f"{PARTIAL_BAR}: ")
    assert "--as-of" in batch.quarantine["reason"][0]


@pytest.mark.parametrize(
    ("as_of", "stored"),
    [
        (utc(2017, 1, 3, 9, 0), 2),  # the last bar (09:00-10:00 UTC) had not closed
        (utc(2017, 1, 3, 9, 59), 2),
        (utc(2017, 1, 3, 10, 0), 3),  # closed exactly then
        (utc(2017, 1, 4), 3),
    ],
)
def test_normalize_as_of_decides_whether_last_bar_is_complete(as_of: datetime, stored: int) -> None:
    # Arrange: broker 09:00-11:00 on 2017-01-03 = 07:00-09:00 UTC.
    bars = hourly_bars(datetime(2017, 1, 3, 9), 3)

    # Act
    batch = _one(mt4_csv(bars), "EURUSD60.csv", as_of=as_of)

    # Assert
    assert batch.bars.height == stored
    assert batch.quarantine.height == 3 - stored


def test_normalize_complete_archive_keeps_last_bar_without_as_of() -> None:
    # Arrange: HistData files are closed archives, not live exports.
    path = DATA_DIR / "histdata/DAT_ASCII_EURUSD_M1_2017.csv"

    # Act
    batch = _one(path.read_bytes(), str(path))

    # Assert
    assert batch.bars.height == batch.rows_read == 4


def test_normalize_as_of_applies_to_complete_archives_too() -> None:
    # Arrange
    path = DATA_DIR / "histdata/DAT_ASCII_EURUSD_M1_2017.csv"

    # Act: exported at 07:03:30 UTC, inside the last minute bar (07:03-07:04).
    batch = _one(path.read_bytes(), str(path), as_of=utc(2017, 1, 2, 7, 3) + timedelta(seconds=30))

    # Assert
    assert batch.bars.height == 3


# -- the preference rule -----------------------------------------------------------------------


def test_preferred_first_orders_spread_then_volume_then_lower_prices() -> None:
    # Arrange
    ts = utc(2017, 1, 3, 9)
    versions = bar_frame(
        [
            (ts, 1.1, 1.2, 1.0, 1.10, 50.0, None),  # no spread: last despite the volume
            (ts, 1.1, 1.2, 1.0, 1.12, 5.0, 0.0002),
            (ts, 1.1, 1.2, 1.0, 1.11, 5.0, 0.0002),  # same volume, lower close
            (ts, 1.1, 1.2, 1.0, 1.11, 5.0, 0.0001),  # same everything, smaller spread
            (ts, 1.1, 1.2, 1.0, 1.13, 9.0, 0.0003),  # larger volume
        ]
    )

    # Act
    ranked = preferred_first(versions)

    # Assert
    assert ranked.select("close", "volume", "spread").rows() == [
        (1.13, 9.0, 0.0003),
        (1.11, 5.0, 0.0001),
        (1.11, 5.0, 0.0002),
        (1.12, 5.0, 0.0002),
        (1.10, 50.0, None),
    ]


def test_preferred_first_independent_of_input_order() -> None:
    # Arrange
    ts = utc(2017, 1, 3, 9)
    rows = [
        (ts, 1.1, 1.2, 1.0, 1.11, 5.0, 0.0002),
        (ts, 1.1, 1.2, 1.0, 1.11, 5.0, 0.0001),
        (ts, 1.1, 1.2, 1.0, 1.11, 5.0, None),
    ]

    # Act
    forward = preferred_first(bar_frame(rows))
    backward = preferred_first(bar_frame(reversed(rows)))

    # Assert
    assert forward.equals(backward)


def test_normalize_mt4_summer_bars_shifted_three_hours() -> None:
    # Arrange: broker:ny-close is UTC+3 while New York is on daylight saving time.
    bars = hourly_bars(datetime(2017, 7, 3, 9), 2)

    # Act
    batch = _one(mt4_csv(bars), "EURUSD60.csv", as_of=LATER)

    # Assert
    assert batch.bars["ts"].to_list() == [utc(2017, 7, 3, 6), utc(2017, 7, 3, 7)]

"""The ingest service: all or nothing per invocation, counts that add up, resampling."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from testkit.files import RawBar, header_csv, hourly_bars, mt4_csv, utc, write
from testkit.store import assert_store_consistent, stored_series

from core.clocks import Anchor
from core.errors import DataError, UsageError
from core.ids import RUN_PREFIXES
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import SeriesKey, Side, VolumeKind
from feature_store.store import BarStore
from services.ingest import IngestOptions, IngestResult, ingest, ingest_options, resample_stored

LATER = utc(2030, 1, 1)
QUIET = IngestOptions(reports=False, as_of=LATER)


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _counts_add_up(outcome: IngestResult) -> None:
    for s in outcome.series:
        total = s.rows_added + s.rows_duplicate + s.rows_conflicting + s.rows_quarantined
        assert s.rows_read == total, s.as_json()


def test_ingest_new_series_stored_and_counts_add_up(tmp_path: Path) -> None:
    # Arrange
    path = write(tmp_path / "EURUSD60.csv", mt4_csv(hourly_bars(datetime(2017, 1, 3, 9), 5)))
    settings = _settings(tmp_path)

    # Act
    outcome = ingest([str(path)], IngestOptions(reports=True), settings)

    # Assert
    (series,) = outcome.series
    expected = {
        "symbol": "EURUSD", "timeframe": "H1", "side": "bid", "rows_read": 5, "rows_added": 4,
        "rows_duplicate": 0, "rows_conflicting": 0, "rows_quarantined": 1,
        "first": "2017-01-03T07:00:00Z", "last": "2017-01-03T10:00:00Z",
    }  # fmt: skip
    assert {k: series.as_json()[k] for k in expected} == expected
    assert set(series.as_json()) == {*expected, "rows_read", "seconds", "version", "sources",
                                     "jumps", "gaps", "expectations"}  # fmt: skip
    _counts_add_up(outcome)
    assert outcome.report is not None and outcome.report.is_file()
    manifest = assert_store_consistent(settings.store_dir)
    assert manifest["series"]["EURUSD.H1.bid"]["volume_kind"] == "tick"
    assert BarStore(settings.store_dir).quarantine()["reason"][0].startswith("partial bar")


def test_ingest_run_id_has_ingest_format_and_report_in_its_folder(tmp_path: Path) -> None:
    # Arrange
    path = write(tmp_path / "EURUSD60.csv", mt4_csv(hourly_bars(datetime(2017, 1, 3, 9), 3)))
    settings = _settings(tmp_path)

    # Act
    outcome = ingest([str(path)], IngestOptions(reports=True), settings)

    # Assert: the last bar may still be forming, so it is quarantined under the run's id.
    pattern = rf"{RUN_PREFIXES['ingest']}-\d{{8}}T\d{{6}}-[0-9a-f]{{6}}"
    assert re.fullmatch(pattern, outcome.run), outcome.run
    assert outcome.report == settings.ingest_report_dir(outcome.run) / "index.html"
    assert outcome.report.is_file()
    (run_file,) = assert_store_consistent(settings.store_dir)["runs"]
    assert outcome.run in run_file
    assert BarStore(settings.store_dir).quarantine()["run"].to_list() == [outcome.run]


def test_ingest_options_text_as_of_parsed_as_utc() -> None:
    # Act
    options = ingest_options(as_of="2017-01-02T11:00+02:00", tz="UTC+2", side=Side.ASK)

    # Assert
    assert options.as_of == utc(2017, 1, 2, 9)
    assert (options.clock, options.side, options.reports) == ("UTC+2", Side.ASK, True)


def test_ingest_options_text_as_of_not_a_date_raises_naming_option() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="--as-of 'yesterday' is not a date"):
        ingest_options(as_of="yesterday")


def test_ingest_same_files_again_adds_nothing_and_keeps_version(tmp_path: Path) -> None:
    # Arrange
    text = header_csv(hourly_bars(datetime(2017, 1, 3, 9), 6)) + "2017-01-03 20:00,1,0.5,2,1,1\n"
    path = write(tmp_path / "EURUSD_H1.csv", text)
    settings = _settings(tmp_path)
    first = ingest([str(path)], QUIET, settings)

    # Act
    second = ingest([str(path)], QUIET, settings)

    # Assert
    assert (second.series[0].rows_added, second.series[0].rows_duplicate) == (0, 6)
    assert second.series[0].version == first.series[0].version
    _counts_add_up(second)
    assert BarStore(settings.store_dir).quarantine().height == 1  # not recorded twice


def test_ingest_bad_file_after_good_one_stores_nothing(tmp_path: Path) -> None:
    # Arrange: a store with one series, then a good file and an unreadable one together.
    settings = _settings(tmp_path)
    old = write(tmp_path / "GBPUSD60.csv", mt4_csv(hourly_bars(datetime(2017, 1, 3, 9), 3)))
    ingest([str(old)], QUIET, settings)
    before = BarStore(settings.store_dir).manifest()
    good = write(tmp_path / "EURUSD60.csv", mt4_csv(hourly_bars(datetime(2017, 1, 3, 9), 3)))
    bad = write(tmp_path / "EURUSD240.csv", b"\x00\x01 garbage without separators\n")

    # Act
    with pytest.raises(DataError) as caught:
        ingest([str(good), str(bad)], QUIET, settings)

    # Assert
    assert caught.value.source == str(bad)
    assert BarStore(settings.store_dir).manifest() == before
    assert_store_consistent(settings.store_dir)


def test_ingest_overlapping_conflicting_files_any_order_same_bars(tmp_path: Path) -> None:
    # Arrange: b overlaps a; at 10:00 they disagree and b's larger volume wins.
    bars = hourly_bars(datetime(2017, 1, 3, 9), 4)
    changed = [RawBar(b.ts, b.open, b.high, b.low, b.close, b.volume + 100) if b.ts.hour == 10 else b
               for b in bars[1:]]  # fmt: skip
    a = write(tmp_path / "a" / "EURUSD_H1.csv", header_csv(bars[:3]))
    b = write(tmp_path / "b" / "EURUSD_H1.csv", header_csv(changed))

    # Act
    ab = ingest([str(a), str(b)], QUIET, Settings(home=tmp_path / "ab"))
    ba = ingest([str(b), str(a)], QUIET, Settings(home=tmp_path / "ba"))
    a_then_b = [ingest([str(p)], QUIET, Settings(home=tmp_path / "seq")) for p in (a, b)]

    # Assert
    results = [stored_series(tmp_path / h / "store") for h in ("ab", "ba", "seq")]
    assert results[0].keys() == {"EURUSD.H1.bid"}
    version, frame = results[0]["EURUSD.H1.bid"]
    assert frame.filter(frame["ts"] == utc(2017, 1, 3, 10))["volume"].to_list() == [111.0]
    for other in results[1:]:
        assert other["EURUSD.H1.bid"][0] == version
        assert other["EURUSD.H1.bid"][1].equals(frame)
    for outcome in (ab, ba, *a_then_b):
        _counts_add_up(outcome)
    assert (ab.series[0].rows_conflicting, ab.series[0].rows_duplicate) == (1, 1)


def test_ingest_bid_and_ask_files_kept_as_separate_series(tmp_path: Path) -> None:
    # Arrange
    text = header_csv(hourly_bars(datetime(2017, 1, 3, 9), 3))
    path = write(tmp_path / "EURUSD_H1.csv", text)
    settings = _settings(tmp_path)

    # Act
    ingest([str(path)], QUIET, settings)
    ingest([str(path)], IngestOptions(reports=False, as_of=LATER, side=Side.ASK), settings)

    # Assert
    assert sorted(stored_series(settings.store_dir)) == ["EURUSD.H1.ask", "EURUSD.H1.bid"]


def test_ingest_resample_fx_anchors_on_broker_day_by_default(tmp_path: Path) -> None:
    # Arrange: 2017-01-02 20:00 .. 2017-01-03 21:00 UTC.
    path = write(tmp_path / "EURUSD_H1.csv", header_csv(hourly_bars(datetime(2017, 1, 2, 20), 26)))
    settings = _settings(tmp_path)

    # Act
    outcome = ingest(
        [str(path)], IngestOptions(reports=False, as_of=LATER, resample=(Timeframe.D1,)), settings
    )

    # Assert
    d1 = stored_series(settings.store_dir)["EURUSD.D1.bid"][1]
    assert d1["ts"].to_list() == [utc(2017, 1, 1, 22), utc(2017, 1, 2, 22)]
    assert {str(s.key) for s in outcome.series} == {"EURUSD H1 bid", "EURUSD D1 bid"}
    info = BarStore(settings.store_dir).info(
        SeriesKey(symbol="EURUSD", timeframe=Timeframe.D1, side=Side.BID)
    )
    assert info is not None and info.sources == [
        {"name": "resample:EURUSD.H1.bid", "anchor": "broker:ny-close"}
    ]


@pytest.mark.parametrize(("symbol", "anchor", "first"), [
    ("EURUSD", Anchor.UTC, utc(2017, 1, 2)),
    ("AAPL", None, utc(2017, 1, 2)),  # NYSE calendar: UTC midnight
    ("AAPL", Anchor.BROKER, utc(2017, 1, 1, 22)),
])  # fmt: skip
def test_ingest_resample_anchor_follows_option_then_calendar(
    tmp_path: Path, symbol: str, anchor: Anchor | None, first: datetime
) -> None:
    # Arrange
    path = write(tmp_path / "bars.csv", header_csv(hourly_bars(datetime(2017, 1, 2, 20), 26)))
    settings = _settings(tmp_path)
    options = IngestOptions(symbol=symbol, timeframe=Timeframe.H1, reports=False, as_of=LATER,
                            resample=(Timeframe.D1,), anchor=anchor)  # fmt: skip

    # Act
    ingest([str(path)], options, settings)

    # Assert
    d1 = stored_series(settings.store_dir)[f"{symbol}.D1.bid"][1]
    assert d1["ts"][0] == first


def test_ingest_resample_of_m1_without_volume_counts_minutes(tmp_path: Path) -> None:
    # Arrange: HistData M1 (no volume) resampled to H1.
    lines = "".join(
        f"20170103 {9 + m // 60:02d}{m % 60:02d}00;1.1;1.2;1.0;1.1;0\n" for m in range(90)
    )
    path = write(tmp_path / "DAT_ASCII_EURUSD_M1_2017.csv", lines)
    settings = _settings(tmp_path)

    # Act
    ingest([str(path)], IngestOptions(reports=False, resample=(Timeframe.H1,)), settings)

    # Assert
    store = BarStore(settings.store_dir)
    h1 = stored_series(settings.store_dir)["EURUSD.H1.bid"][1]
    assert h1["volume"].to_list() == [60.0, 30.0]
    info = store.info(SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID))
    assert info is not None and info.volume_kind is VolumeKind.M1_COUNT


def test_resample_stored_unknown_series_raises_listing_stored(tmp_path: Path) -> None:
    # Arrange
    key = SeriesKey(symbol="EURUSD", timeframe=Timeframe.M1, side=Side.BID)

    # Act / Assert
    with pytest.raises(UsageError, match="no stored series EURUSD M1 bid"):
        resample_stored(key, (Timeframe.H1,), _settings(tmp_path))


def test_resample_stored_to_shorter_timeframe_raises(tmp_path: Path) -> None:
    # Arrange
    path = write(tmp_path / "EURUSD_H1.csv", header_csv(hourly_bars(datetime(2017, 1, 3, 9), 3)))
    settings = _settings(tmp_path)
    ingest([str(path)], QUIET, settings)
    key = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)

    # Act / Assert
    with pytest.raises(UsageError, match="cannot resample H1 to M30"):
        resample_stored(key, (Timeframe.M30,), settings)


def test_ingest_resample_after_more_source_bars_recomputes_bucket(tmp_path: Path) -> None:
    # Arrange: H1 closes without volume; first the morning of 2017-01-03, then the whole day.
    settings = _settings(tmp_path)
    day = [RawBar(datetime(2017, 1, 3, h), 1.1 + h / 1000, 1.1 + h / 1000 + 0.002,
                  1.1 + h / 1000 - 0.0005, 1.1 + h / 1000 + 0.001) for h in range(20)]  # fmt: skip
    no_volume = "time,open,high,low,close\n" + "".join(
        f"{b.ts:%Y-%m-%d %H:%M},{b.open},{b.high},{b.low},{b.close}\n" for b in day
    )
    morning = write(tmp_path / "m" / "EURUSD_H1.csv", "\n".join(no_volume.splitlines()[:9]) + "\n")
    whole = write(tmp_path / "w" / "EURUSD_H1.csv", no_volume)
    options = IngestOptions(reports=False, as_of=LATER, resample=(Timeframe.D1,), anchor=Anchor.UTC)

    # Act
    ingest([str(morning)], options, settings)
    ingest([str(whole)], options, settings)

    # Assert: the stored D1 bar closes where the stored H1 bars of that day close.
    series = stored_series(settings.store_dir)
    h1, d1 = series["EURUSD.H1.bid"][1], series["EURUSD.D1.bid"][1]
    assert d1["close"].to_list() == [h1["close"][-1]]
    assert d1["high"].to_list() == [h1["high"].max()]


def test_resample_stored_other_anchor_than_existing_bars_refused(tmp_path: Path) -> None:
    # Arrange: D1 made on the broker day; a UTC-midnight resample would add a second grid.
    path = write(tmp_path / "EURUSD_H1.csv", header_csv(hourly_bars(datetime(2017, 1, 2, 20), 26)))
    settings = _settings(tmp_path)
    ingest(
        [str(path)], IngestOptions(reports=False, as_of=LATER, resample=(Timeframe.D1,)), settings
    )
    before = BarStore(settings.store_dir).manifest()
    key = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)

    # Act
    with pytest.raises(UsageError) as caught:
        resample_stored(key, (Timeframe.D1,), settings, anchor=Anchor.UTC)

    # Assert
    assert "broker:ny-close" in str(caught.value)
    assert "--anchor" in str(caught.value)
    assert BarStore(settings.store_dir).manifest() == before
    again = resample_stored(key, (Timeframe.D1,), settings, anchor=Anchor.BROKER)
    assert (again.series[0].rows_added, again.series[0].rows_duplicate) == (0, 2)

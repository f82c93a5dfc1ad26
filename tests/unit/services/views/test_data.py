"""The Data page's views: coverage, gaps against the trading calendar, the quarantine by reason,
the latest ingest run's validation and the freshness of feature builds.

The desk here is a bar store written directly: EURUSD H1 over two FX weeks (every hour the
calendar opens, less a five-hour hole on a Wednesday), a quarantine of three rows in two runs,
and the records of two ingest runs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from testkit.files import bar_frame

from core.calendars import get_calendar
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import SeriesKey, Side, VolumeKind
from feature_store.feature_index import FeatureBuild, FeatureStore
from feature_store.store import BarStore, SeriesInfo
from pipelines.ingest.normalize import QUARANTINE_SCHEMA
from services.features import load_build_inputs, load_feature_sets
from services.views.data import (
    coverage,
    coverage_chart,
    feature_builds,
    gaps,
    quarantine_reasons,
    quarantine_rows,
    validation,
)

KEY = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)
MONDAY = datetime(2017, 3, 6, tzinfo=UTC)
HOLE = (MONDAY + timedelta(days=2, hours=10), 5)  # Wednesday 10:00 UTC, five bars
PARAMS = "features:\n  sets:\n    small:\n      features: [rsi_14, log_return_1]\n"


def _open_hours(start: datetime, hours: int) -> list[datetime]:
    stamps = pl.datetime_range(start, start + timedelta(hours=hours - 1), "1h", eager=True,
                               time_zone="UTC")  # fmt: skip
    calendar = get_calendar("fx")
    frame = pl.DataFrame({"ts": stamps}).filter(calendar.is_open(pl.col("ts")))
    return list(frame["ts"])


def _bars(stamps: list[datetime]) -> pl.DataFrame:
    return bar_frame((t, 1.1, 1.2, 1.0, 1.1 + n * 1e-5, 1.0, None) for n, t in enumerate(stamps))


def _store_series(home: Path, stamps: list[datetime], key: SeriesKey = KEY) -> SeriesInfo:
    store = BarStore(Settings(home=home).store_dir)
    bars = _bars(stamps)
    years = {y: bars.filter(pl.col("ts").dt.year() == y) for y in set(bars["ts"].dt.year())}
    with store.transaction() as tx:
        info = tx.put_series(SeriesInfo(key, VolumeKind.TICK), years, {"name": "test"})
        tx.commit()
    return info


def _weeks_with_hole(home: Path) -> SeriesInfo:
    start, missing = HOLE
    hole = {start + timedelta(hours=h) for h in range(missing)}
    stamps = [t for t in _open_hours(MONDAY, 14 * 24) if t not in hole]
    return _store_series(home, stamps)


def _quarantine_row(line: int, reason: str) -> dict[str, Any]:
    return {"source": "EURUSD60.csv", "line": line, "symbol": "EURUSD", "timeframe": "H1",
            "side": "bid", "ts": MONDAY + timedelta(hours=line), "reason": reason,
            "raw": f"row {line}"}  # fmt: skip


def _record_runs(home: Path, runs: list[tuple[str, str, str, list[dict[str, Any]]]]) -> None:
    """Record ingest runs: (run id, time, verdict, quarantined rows)."""
    store = BarStore(Settings(home=home).store_dir)
    with store.transaction() as tx:
        for run, at, verdict, rows in runs:
            tx.put_quarantine(run, pl.DataFrame(rows, schema=QUARANTINE_SCHEMA))
            series = {"symbol": "EURUSD", "timeframe": "H1", "side": "bid", "rows_read": 100,
                      "rows_added": 100 - len(rows), "rows_duplicate": 0, "rows_conflicting": 0,
                      "rows_quarantined": len(rows), "jumps": 1, "gaps": 2,
                      "expectations": verdict}  # fmt: skip
            tx.put_run(run, {"run": run, "at": at, "sources": ["EURUSD60.csv"],
                             "series": [series]})  # fmt: skip
        tx.commit()


def test_views_empty_home_say_nothing_stored_and_create_nothing(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")

    # Act
    found = (coverage(settings), coverage_chart(settings), gaps(settings), validation(settings),
             feature_builds(settings))  # fmt: skip
    reasons, rows = quarantine_reasons(settings), quarantine_rows(settings)

    # Assert
    assert found == ((), None, (), None, ())
    assert reasons.height == 0 and rows.height == 0
    assert not settings.home.exists()


def test_coverage_lists_series_and_charts_bars_per_month(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    info = _weeks_with_hole(home)
    settings = Settings(home=home)

    # Act
    (row,) = coverage(settings)
    figure = coverage_chart(settings)

    # Assert
    assert (row.symbol, row.timeframe, row.side, row.rows) == ("EURUSD", "H1", "bid", info.rows)
    assert row.first == "2017-03-06T00:00:00Z" and row.sources == ("test",)
    assert figure is not None
    (heatmap,) = figure.data
    assert list(heatmap.y) == ["EURUSD.H1.bid"]
    assert int(heatmap.z.sum()) == info.rows


def test_gaps_fx_weekend_is_no_gap_a_weekday_hole_is(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    _weeks_with_hole(home)
    start, missing = HOLE

    # Act
    (found,) = gaps(Settings(home=home))

    # Assert
    assert found.checked and found.series == "EURUSD.H1.bid"
    assert (found.gaps, found.missing_bars) == (1, missing)
    (largest,) = found.largest
    assert largest.after == (start - timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z")
    assert largest.before == (start + timedelta(hours=missing)).strftime("%Y-%m-%dT%H:00:00Z")
    assert largest.missing_bars == missing


def test_gaps_weekly_bars_not_checked_with_a_note(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    weekly = SeriesKey(symbol="EURUSD", timeframe=Timeframe.W1, side=Side.BID)
    _store_series(home, [MONDAY + timedelta(weeks=w) for w in range(6)], weekly)

    # Act
    (found,) = gaps(Settings(home=home))

    # Assert
    assert not found.checked and found.gaps == 0
    assert "W1" in found.note


def test_gaps_100k_bars_found_well_under_a_second(tmp_path: Path) -> None:
    # Arrange: about eleven years of H1 bars, one hole a week
    home = tmp_path / "home"
    stamps = _open_hours(MONDAY, 150_000)
    kept = [t for n, t in enumerate(stamps) if n % 120 != 7][:100_000]
    _store_series(home, kept)
    settings = Settings(home=home)

    # Act
    started = time.perf_counter()
    (found,) = gaps(settings)
    seconds = time.perf_counter() - started

    # Assert
    assert found.rows == 100_000 and found.gaps > 800
    assert seconds < 0.5, seconds


def test_quarantine_reasons_counted_by_kind_numbers_masked(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    _record_runs(home, [
        ("in-20240101T000000-aaaaaa", "2024-01-01T00:00:00Z", "16/16 passed",
         [_quarantine_row(3, "high 1.2295 below low 1.2309"),
          _quarantine_row(4, "price not above 0")]),
        ("in-20240102T000000-bbbbbb", "2024-01-02T00:00:00Z", "16/16 passed",
         [_quarantine_row(9, "high 1.3 below low 1.31")]),
    ])  # fmt: skip

    # Act
    reasons = quarantine_reasons(Settings(home=home))

    # Assert
    assert reasons.select("reason", "rows", "latest_run").rows() == [
        ("high … below low …", 2, "in-20240102T000000-bbbbbb"),
        ("price not above …", 1, "in-20240101T000000-aaaaaa"),
    ]


def test_quarantine_rows_latest_run_first_times_iso_z_capped(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    _record_runs(home, [
        ("in-20240101T000000-aaaaaa", "2024-01-01T00:00:00Z", "16/16 passed",
         [_quarantine_row(3, "price not above 0"), _quarantine_row(4, "price not above 0")]),
        ("in-20240102T000000-bbbbbb", "2024-01-02T00:00:00Z", "16/16 passed",
         [_quarantine_row(9, "high 1.3 below low 1.31")]),
    ])  # fmt: skip

    # Act
    rows = quarantine_rows(Settings(home=home), limit=2)

    # Assert
    assert rows["run"].to_list() == ["in-20240102T000000-bbbbbb", "in-20240101T000000-aaaaaa"]
    assert rows["ts"][0] == "2017-03-06T09:00:00Z"
    assert rows.columns[:2] == ["run", "symbol"] and "reason" in rows.columns


def test_validation_latest_committed_run_with_counts_verdict_and_report_folder(
    tmp_path: Path,
) -> None:
    # Arrange
    home = tmp_path / "home"
    latest = "in-20240102T000000-bbbbbb"
    _record_runs(home, [
        ("in-20240101T000000-aaaaaa", "2024-01-01T00:00:00Z", "16/16 passed", []),
        (latest, "2024-01-02T00:00:00Z", "15/16 passed", [_quarantine_row(9, "bad")]),
    ])  # fmt: skip
    settings = Settings(home=home)
    report = settings.ingest_report_dir(latest)
    report.mkdir(parents=True)

    # Act
    found = validation(settings)

    # Assert
    assert found is not None
    assert (found.run, found.at, found.runs) == (latest, "2024-01-02T00:00:00Z", 2)
    (series,) = found.series
    assert (series.series, series.rows_read, series.rows_quarantined) == ("EURUSD.H1.bid", 100, 1)
    assert (series.expectations, series.passed) == ("15/16 passed", False)
    assert found.report == str(report.resolve())


def _record_build(home: Path, params: Path, info: SeriesInfo) -> str:
    """Record the latest build of set ``small`` on the series, as a build now would version it."""
    settings = Settings(home=home)
    config = load_feature_sets(params)["small"]
    inputs = load_build_inputs(settings, "small", config, "EURUSD", Timeframe.H1, Side.BID)
    build = FeatureBuild(
        feature_set="small", symbol="EURUSD", timeframe="H1", side="bid",
        version=inputs.version, definition=inputs.definition, file="x.parquet", sha256="0",
        rows=info.rows, features=2, columns=[], sources=inputs.sources, first=info.first,
        last=info.last, created="2024-01-03T00:00:00Z", seconds=0.1, latest=True,
    )  # fmt: skip
    with FeatureStore(settings.features_dir).transaction() as tx:
        tx.record(build)
        tx.commit()
    return inputs.version


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path, str]:
    """A desk with a build of ``small`` that is current, and its params.yaml."""
    home = tmp_path / "home"
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    info = _weeks_with_hole(home)
    return home, params, _record_build(home, params, info)


def test_feature_builds_current_build_fresh(built: tuple[Path, Path, str]) -> None:
    # Arrange
    home, params, version = built

    # Act
    (found,) = feature_builds(Settings(home=home), params)

    # Assert
    assert (found.feature_set, found.version, found.state, found.why) == (
        "small", version, "fresh", ""
    )  # fmt: skip


def test_feature_builds_series_changed_stale(built: tuple[Path, Path, str]) -> None:
    # Arrange
    home, params, _ = built
    _store_series(home, _open_hours(MONDAY, 24 * 21))

    # Act
    (found,) = feature_builds(Settings(home=home), params)

    # Assert
    assert found.state == "stale"
    assert "series" in found.why


def test_feature_builds_definition_changed_stale(built: tuple[Path, Path, str]) -> None:
    # Arrange
    home, params, _ = built
    params.write_text(PARAMS.replace("[rsi_14, log_return_1]", "[rsi_14]"))

    # Act
    (found,) = feature_builds(Settings(home=home), params)

    # Assert
    assert found.state == "stale"
    assert found.why == "the set's definition in params.yaml has changed"


def test_feature_builds_without_params_compare_series_only_and_say_so(
    built: tuple[Path, Path, str], tmp_path: Path
) -> None:
    # Arrange
    home, _, _ = built

    # Act
    (found,) = feature_builds(Settings(home=home), tmp_path / "absent.yaml")

    # Assert
    assert found.state == "fresh"
    assert "absent.yaml not read" in found.note


def test_views_results_pickle_for_the_cache(built: tuple[Path, Path, str]) -> None:
    # Arrange
    import pickle

    home, params, _ = built
    _record_runs(home, [("in-20240101T000000-aaaaaa", "2024-01-01T00:00:00Z", "16/16 passed",
                         [_quarantine_row(3, "price not above 0")])])  # fmt: skip
    settings = Settings(home=home)

    # Act
    results = [coverage(settings), gaps(settings), feature_builds(settings, params),
               validation(settings), coverage_chart(settings), quarantine_reasons(settings),
               quarantine_rows(settings)]  # fmt: skip

    # Assert
    for result in results:
        assert result is not None and len(pickle.dumps(result)) > 0
        pickle.loads(pickle.dumps(result))

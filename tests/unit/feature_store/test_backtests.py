"""The store of backtest runs: whole runs or nothing, listing, lookup, catalog views."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from core.errors import UsageError
from core.ids import new_run_id
from core.settings import Settings
from feature_store.backtests import RUN_FILE, BacktestStore
from feature_store.catalog import open_catalog


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _store(tmp_path: Path) -> BacktestStore:
    return BacktestStore.backtests(_settings(tmp_path))


def _equity() -> pl.DataFrame:
    ts = pl.datetime_range(
        datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, 4, tzinfo=UTC), "1h", eager=True
    )
    return pl.DataFrame({"ts": ts, "equity": [100.0, 101.0, 99.0, 102.0, 103.0]})


def _tables(views: list[tuple[str]]) -> set[str]:
    return {name for (name,) in views}


def test_backtest_store_constructors_use_the_settings_folders(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path)

    # Act
    backtests = BacktestStore.backtests(settings)
    research = BacktestStore.research(settings)

    # Assert
    assert (backtests.root, backtests.reports) == (
        settings.backtests_dir,
        settings.backtest_reports_dir,
    )
    assert (research.root, research.reports) == (
        settings.research_dir,
        settings.research_reports_dir,
    )
    assert backtests.report_path("bt-1") == settings.backtest_reports_dir / "bt-1.html"


def test_write_run_tables_record_and_report_read_back(tmp_path: Path) -> None:
    # Arrange
    store = _store(tmp_path)
    trades = pl.DataFrame({"pnl": [1.0, -2.0], "exit_reason": ["signal", "open"]})

    # Act
    run = store.write("bt-1", {"kind": "backtest", "created": "2026-01-01T00:00:00Z"},
                      {"equity": _equity(), "trades": trades}, "<html>sheet</html>")  # fmt: skip
    again = store.get("bt-1")

    # Assert
    assert again.record == run.record
    assert again.kind == "backtest" and again.folder == store.root / "run=bt-1"
    assert again.record["files"] == {"equity": "equity.parquet", "trades": "trades.parquet"}
    assert store.table(again, "trades").equals(trades)
    assert store.table(again, "equity")["equity"].to_list() == [100.0, 101.0, 99.0, 102.0, 103.0]
    assert Path(again.record["report"]).read_text() == "<html>sheet</html>"
    assert Path(again.record["report"]) == (tmp_path / "home/reports/backtests/bt-1.html").resolve()


def test_write_reports_go_to_the_folder_given(tmp_path: Path) -> None:
    # Arrange
    store = BacktestStore(tmp_path / "runs", tmp_path / "pages")

    # Act
    run = store.write("sw-1", {"kind": "sweep"}, {"results": _equity()}, "<html>map</html>")
    plain = store.write("sw-2", {"kind": "sweep"}, {"results": _equity()})

    # Assert
    assert Path(run.record["report"]) == (tmp_path / "pages" / "sw-1.html").resolve()
    assert plain.record["report"] is None
    assert [p.name for p in (tmp_path / "pages").iterdir()] == ["sw-1.html"]


def test_write_existing_id_raises_and_keeps_first(tmp_path: Path) -> None:
    # Arrange
    store = _store(tmp_path)
    store.write("bt-1", {"kind": "backtest", "n": 1}, {"equity": _equity()})

    # Act / Assert
    with pytest.raises(UsageError, match="already exists"):
        store.write("bt-1", {"kind": "backtest", "n": 2}, {"equity": _equity()})
    assert store.get("bt-1").record["n"] == 1


def test_runs_interrupted_write_is_invisible_and_cleaned(tmp_path: Path) -> None:
    # Arrange
    store = _store(tmp_path)
    partial = store.root / ".tmp-bt-0"
    partial.mkdir(parents=True)
    (partial / "equity.parquet").write_bytes(b"half a file")

    # Act
    listed, any_run = store.runs(), store.has_runs()
    store.write("bt-1", {"kind": "backtest"}, {"equity": _equity()})

    # Assert
    assert listed == [] and not any_run
    assert [r.id for r in store.runs()] == ["bt-1"]
    assert not partial.exists()


def test_runs_kind_filter_and_prefix_lookup(tmp_path: Path) -> None:
    # Arrange
    store = _store(tmp_path)
    store.write("bt-a1", {"kind": "backtest", "created": "1"}, {"equity": _equity()})
    store.write("sw-b1", {"kind": "sweep", "created": "2"}, {"results": _equity()})

    # Act / Assert
    assert [r.id for r in store.runs("sweep")] == ["sw-b1"]
    assert [r.id for r in store.runs()] == ["bt-a1", "sw-b1"]
    assert store.get("sw").id == "sw-b1"
    with pytest.raises(UsageError, match="no backtest run matches 'zz'"):
        store.get("zz")
    with pytest.raises(UsageError, match="has no trades table"):
        store.table(store.get("sw"), "trades")


def test_get_ambiguous_prefix_raises_usage_error_naming_latest_runs(tmp_path: Path) -> None:
    # Arrange
    store = _store(tmp_path)
    store.write("bt-a1", {"kind": "backtest", "created": "1"}, {"equity": _equity()})
    store.write("bt-a2", {"kind": "backtest", "created": "2"}, {"equity": _equity()})

    # Act / Assert
    with pytest.raises(UsageError, match=r"more than one backtest run matches 'bt-a' \(latest: "):
        store.get("bt-a")


def test_get_old_and_new_ids_found_by_prefix_side_by_side(tmp_path: Path) -> None:
    # Arrange: a run stored with the earlier four-digit id beside one with today's format.
    store = _store(tmp_path)
    old = "bt-20261124T101500-3f9a"
    new = new_run_id("backtest", datetime(2026, 11, 24, 10, 16, tzinfo=UTC))
    store.write(old, {"kind": "backtest", "created": "2026-11-24T10:15:00Z"}, {"equity": _equity()})
    store.write(new, {"kind": "backtest", "created": "2026-11-24T10:16:00Z"}, {"equity": _equity()})

    # Act
    found_old = store.get("bt-20261124T1015")
    found_new = store.get(new[:-3])

    # Assert
    assert found_old.id == old
    assert store.get(old).id == old
    assert found_new.id == new
    assert [r.id for r in store.runs()] == [old, new]


def test_runs_record_written_with_offset_times_read_back_with_z(tmp_path: Path) -> None:
    # Arrange: a record as earlier versions wrote it, times with +00:00 and a space.
    store = _store(tmp_path)
    folder = store.root / "run=bt-20261124T101500-3f9a"
    folder.mkdir(parents=True)
    record: dict[str, object] = {
        "id": "bt-20261124T101500-3f9a",
        "kind": "backtest",
        "created": "2026-11-24T10:15:00.250000+00:00",
        "first": "2017-01-02 00:00:00+00:00",
        "last": "2017-12-29T23:00:00+00:00",
        "note": "2017-01-02T00:00:00+00:00",
        "files": {},
        "report": None,
    }
    (folder / RUN_FILE).write_text(json.dumps(record))

    # Act
    run = store.get("bt-20261124")

    # Assert
    assert run.record["created"] == "2026-11-24T10:15:00.250000Z"
    assert run.record["first"] == "2017-01-02T00:00:00Z"
    assert run.record["last"] == "2017-12-29T23:00:00Z"
    assert run.record["note"] == record["note"]  # only the record's own times are rewritten


def test_catalog_backtest_views_appear_with_first_run(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path)
    store = _store(tmp_path)
    con = open_catalog(settings)
    try:
        before = _tables(con.execute("select table_name from information_schema.tables").fetchall())
    finally:
        con.close()

    # Act
    store.write("bt-1", {"kind": "backtest", "strategy": "sma_cross"}, {"equity": _equity()})
    con = open_catalog(settings)
    try:
        rows = con.execute(
            "select run, count(*), max(equity) from backtest_equity group by run"
        ).fetchall()
        runs = con.execute("select id, strategy from backtest_runs").fetchall()
    finally:
        con.close()

    # Assert
    assert "backtest_equity" not in before
    assert rows == [("bt-1", 5, 103.0)]
    assert runs == [("bt-1", "sma_cross")]
    assert json.loads((store.root / "run=bt-1" / RUN_FILE).read_text())["id"] == "bt-1"


def test_catalog_sweep_only_runs_view_without_equity(tmp_path: Path) -> None:
    # Arrange
    store = _store(tmp_path)
    store.write("sw-1", {"kind": "sweep", "strategy": "sma_cross"}, {"results": _equity()})

    # Act
    con = open_catalog(_settings(tmp_path))
    try:
        runs = con.execute("select id, kind from backtest_runs").fetchall()
        views = _tables(con.execute("select table_name from information_schema.tables").fetchall())
    finally:
        con.close()

    # Assert
    assert runs == [("sw-1", "sweep")]
    assert "backtest_equity" not in views

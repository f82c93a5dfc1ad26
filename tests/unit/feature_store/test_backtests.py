"""The store of backtest runs: whole runs or nothing, listing, lookup, catalog views."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from core.errors import UsageError
from feature_store.backtests import BacktestStore, new_run_id
from feature_store.catalog import open_catalog
from feature_store.store import BarStore


def _store(tmp_path: Path) -> BacktestStore:
    return BacktestStore(tmp_path / "home" / "backtests", tmp_path / "home" / "reports")


def _equity() -> pl.DataFrame:
    ts = pl.datetime_range(
        datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, 4, tzinfo=UTC), "1h", eager=True
    )
    return pl.DataFrame({"ts": ts, "equity": [100.0, 101.0, 99.0, 102.0, 103.0]})


def test_new_run_id_same_moment_differs_and_sorts_by_time() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    ids = {new_run_id("backtest", when) for _ in range(20)}
    later = new_run_id("backtest", datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))

    assert len(ids) > 1
    assert all(i.startswith("bt-20260102T030405-") for i in ids)
    assert all(later > i for i in ids)


def test_write_run_tables_record_and_report_read_back(tmp_path: Path) -> None:
    store = _store(tmp_path)
    trades = pl.DataFrame({"pnl": [1.0, -2.0], "exit_reason": ["signal", "open"]})

    run = store.write("bt-1", {"kind": "backtest", "created": "2026-01-01T00:00:00+00:00"},
                      {"equity": _equity(), "trades": trades}, "<html>sheet</html>")  # fmt: skip

    again = store.get("bt-1")
    assert again.record == run.record
    assert again.record["files"] == {"equity": "equity.parquet", "trades": "trades.parquet"}
    assert store.table(again, "trades").equals(trades)
    assert store.table(again, "equity")["equity"].to_list() == [100.0, 101.0, 99.0, 102.0, 103.0]
    assert Path(again.record["report"]).read_text() == "<html>sheet</html>"
    assert Path(again.record["report"]) == (tmp_path / "home/reports/backtests/bt-1.html").resolve()


def test_write_existing_id_raises_and_keeps_first(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.write("bt-1", {"kind": "backtest", "n": 1}, {"equity": _equity()})

    with pytest.raises(UsageError, match="already exists"):
        store.write("bt-1", {"kind": "backtest", "n": 2}, {"equity": _equity()})

    assert store.get("bt-1").record["n"] == 1


def test_runs_interrupted_write_is_invisible_and_cleaned(tmp_path: Path) -> None:
    store = _store(tmp_path)
    partial = store.root / ".tmp-bt-0"
    partial.mkdir(parents=True)
    (partial / "equity.parquet").write_bytes(b"half a file")

    assert store.runs() == []
    assert not store.has_runs()
    store.write("bt-1", {"kind": "backtest"}, {"equity": _equity()})

    assert [r.id for r in store.runs()] == ["bt-1"]
    assert not partial.exists()


def test_runs_kind_filter_and_prefix_lookup(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.write("bt-a1", {"kind": "backtest", "created": "1"}, {"equity": _equity()})
    store.write("sw-b1", {"kind": "sweep", "created": "2"}, {"results": _equity()})

    assert [r.id for r in store.runs("sweep")] == ["sw-b1"]
    assert [r.id for r in store.runs()] == ["bt-a1", "sw-b1"]
    assert store.get("sw").id == "sw-b1"
    with pytest.raises(UsageError, match="no backtest run matches 'zz'"):
        store.get("zz")
    with pytest.raises(UsageError, match="has no trades table"):
        store.table(store.get("sw"), "trades")


def test_catalog_backtest_views_appear_with_first_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bars = BarStore(home / "store")
    store = _store(tmp_path)
    con = open_catalog(bars, home / "catalog.duckdb")
    views = {
        r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
    }
    con.close()
    store.write("bt-1", {"kind": "backtest", "strategy": "sma_cross"}, {"equity": _equity()})

    con = open_catalog(bars, home / "catalog.duckdb")
    rows = con.execute(
        "select run, count(*), max(equity) from backtest_equity group by run"
    ).fetchall()
    runs = con.execute("select id, strategy from backtest_runs").fetchall()
    con.close()

    assert "backtest_equity" not in views
    assert rows == [("bt-1", 5, 103.0)]
    assert runs == [("bt-1", "sma_cross")]
    assert json.loads((store.root / "run=bt-1" / "run.json").read_text())["id"] == "bt-1"


def test_catalog_sweep_only_runs_view_without_equity(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = _store(tmp_path)
    store.write("sw-1", {"kind": "sweep", "strategy": "sma_cross"}, {"results": _equity()})

    con = open_catalog(BarStore(home / "store"), home / "catalog.duckdb")
    runs = con.execute("select id, kind from backtest_runs").fetchall()
    views = {
        r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
    }
    con.close()

    assert runs == [("sw-1", "sweep")]
    assert "backtest_equity" not in views

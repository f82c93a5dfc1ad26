"""End to end, in process: ``solodesk paper``, the session queries, the controls, the risk
commands and ``backtest --engine event`` on a copy of the sample desk (EURUSD H1 ask, 6,225
bars of 2017, no spread column)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SampleDesk
from testkit.cli import Invocation, invoke, json_lines

from core.settings import Settings
from core.timeframes import Timeframe
from feature_store.series import load_series
from feature_store.state import StateDB

SAMPLE_BARS = 6225
PAPER = ["paper", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
         "--param", "fast=10", "--param", "slow=40", "--param", "allow_short=true"]  # fmt: skip
SUMMARY_KEYS = {
    "session", "symbol", "timeframe", "bars", "bars_this_run", "orders", "fills", "trades",
    "final_equity", "ledger_hash", "risk_state", "resumed", "seconds",
}  # fmt: skip
FILL_KEYS = {
    "session", "client_order_id", "execution_id", "ts", "symbol", "side", "units", "lots",
    "price", "fees", "slippage", "reason",
}  # fmt: skip
RISK_KEYS = {
    "account", "state", "paused", "since", "reason", "day_start_equity", "daily_pnl",
    "equity_hwm", "drawdown", "limits",
}  # fmt: skip
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _ok(run: Invocation) -> list[dict[str, Any]]:
    assert run.returncode == 0, (run.stderr, run.exception)
    return json_lines(run.stdout)


def _one(run: Invocation) -> dict[str, Any]:
    (line,) = _ok(run)
    return line


def _paper(home: Path, session: str, *extra: str) -> Invocation:
    return invoke([*PAPER, "--session", session, "--spread", "1", *extra, "--json"], home)


def _sql(home: Path, query: str) -> list[dict[str, Any]]:
    return _ok(invoke(["data", "sql", query, "--json"], home))


@dataclass(frozen=True)
class Desk:
    """A copy of the sample desk with one finished paper session, ``base``, and its summary
    (tests read it; a test that changes a desk copies it first)."""

    home: Path
    base: dict[str, Any]


@pytest.fixture(scope="module")
def desk(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Desk:
    home = tmp_path_factory.mktemp("trading") / "home"
    shutil.copytree(sample_desk.home, home)
    return Desk(home, _one(_paper(home, "base")))


@pytest.fixture
def own_desk(desk: Desk, copy_desk: Callable[[Path], Path]) -> Path:
    """Return a copy of the module's desk that a test may change."""
    return copy_desk(desk.home)


# -- paper -----------------------------------------------------------------------------------


def test_paper_json_prints_one_line_of_session_totals(desk: Desk) -> None:
    # Arrange
    summary = desk.base

    # Act
    missing = SUMMARY_KEYS - set(summary)

    # Assert
    assert not missing
    assert (summary["session"], summary["symbol"], summary["timeframe"]) == ("base", "EURUSD", "H1")
    assert summary["bars"] == summary["bars_this_run"] == SAMPLE_BARS
    assert summary["resumed"] is False and summary["risk_state"] == "active"
    assert summary["fills"] >= summary["trades"] > 10
    assert summary["orders"] == summary["fills"]
    assert re.fullmatch(r"[0-9a-f]{64}", summary["ledger_hash"])
    assert summary["final_equity"] > 0 and summary["seconds"] > 0


def test_paper_rerun_of_a_session_processes_no_bars_and_prints_the_same_totals(
    own_desk: Path,
) -> None:
    # Arrange
    first = _one(_paper(own_desk, "again"))

    # Act
    second = _one(_paper(own_desk, "again"))

    # Assert
    assert (first["resumed"], second["resumed"]) == (False, True)
    assert (first["bars_this_run"], second["bars_this_run"]) == (SAMPLE_BARS, 0)
    same = ("bars", "orders", "fills", "trades", "final_equity", "ledger_hash", "risk_state")
    assert {k: second[k] for k in same} == {k: first[k] for k in same}


def test_paper_rerun_of_a_session_keeps_when_it_was_last_updated(own_desk: Path) -> None:
    # Arrange
    _one(_paper(own_desk, "again"))
    (before,) = [
        s for s in _ok(invoke(["sessions", "--json"], own_desk)) if s["session"] == "again"
    ]

    # Act
    _one(_paper(own_desk, "again"))
    (after,) = [s for s in _ok(invoke(["sessions", "--json"], own_desk)) if s["session"] == "again"]

    # Assert
    assert before["updated"] > "2017"
    assert after["updated"] >= before["updated"]


def test_paper_rerun_with_other_options_exits_2_naming_what_differs(desk: Desk) -> None:
    # Arrange
    changed = [("fast=12" if a == "fast=10" else a) for a in PAPER]
    args = [*changed, "--session", "base", "--spread", "2", "--json"]

    # Act
    run = invoke(args, desk.home)

    # Assert
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert "session base was started with other options" in run.stderr
    assert "spread_pips (1.0 then, 2.0 now)" in run.stderr
    assert "params.fast ('10' then, '12' now)" in run.stderr


def test_paper_without_spread_on_a_series_without_a_spread_column_exits_2(desk: Desk) -> None:
    # Arrange: the sample has no spread column
    data = load_series(Settings(home=desk.home), "EURUSD", Timeframe.H1)

    # Act
    run = invoke([*PAPER, "--session", "nospread", "--json"], desk.home)

    # Assert
    assert "spread" not in data.bars.columns
    assert run.returncode == 2, run.stderr
    assert "has no spread column: give --spread PIPS" in run.stderr
    assert "nospread" not in {r["session"] for r in _ok(invoke(["sessions", "--json"], desk.home))}


# -- queries ---------------------------------------------------------------------------------


def test_fills_json_lists_every_fill_with_its_keys_and_utc_times(desk: Desk) -> None:
    # Arrange
    args = ["fills", "--session", "base", "--json"]

    # Act
    fills = _ok(invoke(args, desk.home))

    # Assert
    assert len(fills) == desk.base["fills"]
    assert all(set(f) == FILL_KEYS for f in fills)
    assert {f["side"] for f in fills} == {"buy", "sell"}
    assert all(f["units"] > 0 and f["lots"] == pytest.approx(f["units"] / 100_000) for f in fills)
    assert all(ISO_Z.match(f["ts"]) for f in fills)
    assert [f["ts"] for f in fills] == sorted(f["ts"] for f in fills)
    assert len({f["execution_id"] for f in fills}) == len(fills)
    assert {f["session"] for f in fills} == {"base"} and {f["symbol"] for f in fills} == {"EURUSD"}


def test_trades_positions_and_sessions_json_describe_the_session(desk: Desk) -> None:
    # Arrange
    home = desk.home

    # Act
    trades = _ok(invoke(["trades", "--session", "base", "--json"], home))
    positions = _ok(invoke(["positions", "--session", "base", "--json"], home))
    sessions = _ok(invoke(["sessions", "--json"], home))

    # Assert
    assert len(trades) == desk.base["trades"]
    assert {t["direction"] for t in trades} == {"long", "short"}
    assert all(ISO_Z.match(t["entry_ts"]) for t in trades)
    closed = [t for t in trades if t["exit_reason"] != "open"]
    assert all(t["exit_ts"] > t["entry_ts"] for t in closed)
    still_open = [t for t in trades if t["exit_reason"] == "open"]
    assert len(positions) == len(still_open) <= 1
    for position in positions:
        assert position["session"] == "base" and position["symbol"] == "EURUSD"
        assert position["units"] != 0.0
    (record,) = [s for s in sessions if s["session"] == "base"]
    assert (record["kind"], record["status"], record["bars"]) == ("paper", "finished", SAMPLE_BARS)
    assert record["account"] == "paper:base"


def test_risk_status_json_shows_the_accounts_standing(desk: Desk) -> None:
    # Arrange
    args = ["risk", "status", "--session", "base", "--json"]

    # Act
    status = _one(invoke(args, desk.home))

    # Assert
    assert set(status) == RISK_KEYS
    assert (status["account"], status["state"], status["paused"]) == ("paper:base", "active", False)
    assert status["drawdown"] <= 0.0
    assert status["equity_hwm"] >= status["day_start_equity"] > 0
    assert isinstance(status["limits"], dict)


# -- the risk engine and controls --------------------------------------------------------------


def test_paper_over_a_tiny_daily_loss_limit_halts_the_account_and_exits_0(
    own_desk: Path,
) -> None:
    # Arrange
    risk = ["--risk", "max_daily_loss=0.0001"]

    # Act
    summary = _one(_paper(own_desk, "tight", *risk))
    status = _one(invoke(["risk", "status", "--session", "tight", "--json"], own_desk))
    events = _sql(own_desk, "select kind, to_state from risk_events where session = 'tight' "
                            "and to_state = 'halted'")  # fmt: skip

    # Assert
    assert summary["risk_state"] == "halted" and summary["status"] == "finished"
    assert summary["bars"] == SAMPLE_BARS
    assert "HALTED" in summary["message"]
    assert status["state"] == "halted" and "max_daily_loss" in status["reason"]
    assert events


def test_risk_reset_of_a_finished_session_clears_its_halt(own_desk: Path) -> None:
    # Arrange
    _one(_paper(own_desk, "tight", "--risk", "max_daily_loss=0.0001"))

    # Act
    reset = _one(invoke(["risk", "reset", "--session", "tight", "--why", "checked", "--json"],
                        own_desk))  # fmt: skip
    status = _one(invoke(["risk", "status", "--session", "tight", "--json"], own_desk))

    # Assert
    assert (reset["action"], reset["session"]) == ("reset", "tight")
    assert (status["state"], status["reason"]) == ("active", "checked")


def test_risk_reset_of_a_finished_session_answers_that_it_was_applied(own_desk: Path) -> None:
    # Arrange
    _one(_paper(own_desk, "tight", "--risk", "max_daily_loss=0.0001"))

    # Act
    reset = _one(invoke(["risk", "reset", "--session", "tight", "--json"], own_desk))

    # Assert
    assert reset["applied"] is not None
    assert "applied to paper:tight" in reset["result"]


@pytest.mark.parametrize("action", ["pause", "resume", "flatten", "stop"])
def test_control_of_a_finished_session_is_recorded(own_desk: Path, action: str) -> None:
    # Arrange
    settings = Settings(home=own_desk)

    # Act
    request = _one(invoke([action, "--session", "base", "--why", f"test {action}", "--json"],
                          own_desk))  # fmt: skip

    # Assert
    assert (request["action"], request["session"], request["account"]) == (
        action, "base", "paper:base",
    )  # fmt: skip
    with StateDB.open(settings) as db:
        (control,) = db.controls("base")
    assert (control.id, control.action, control.why) == (request["id"], action, f"test {action}")


# -- the event engine and the catalog ------------------------------------------------------------


def test_backtest_event_engine_json_has_the_vector_keys_and_figures(desk: Desk) -> None:
    # Arrange
    args = ["backtest", *PAPER[1:], "--spread", "1", "--fees", "0.00002", "--stop-loss", "30",
            "--no-report", "--json"]  # fmt: skip

    # Act
    vector = _one(invoke(args, desk.home))
    event = _one(invoke([*args, "--engine", "event"], desk.home))

    # Assert
    assert set(event) == set(vector)
    assert (vector["engine"], event["engine"]) == ("vector", "event")
    assert event["run_id"] != vector["run_id"]
    for key, value in vector.items():
        if key in ("run_id", "seconds", "engine"):
            continue
        if isinstance(value, float):
            assert event[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert event[key] == value, key
    assert vector["n_trades"] > 10


def test_data_sql_reads_the_sessions_fills_equity_and_risk_events(desk: Desk) -> None:
    # Arrange
    where = "where session = 'base'"

    # Act
    fills = _sql(desk.home, f"select count(*) as n from live_fills {where}")
    equity = _sql(desk.home, f"select count(*) as n from live_equity {where}")
    events = _sql(desk.home, f"select count(*) as n from risk_events {where}")

    # Assert
    assert fills == [{"n": desk.base["fills"]}]
    assert equity[0]["n"] > 0
    assert events[0]["n"] > 0

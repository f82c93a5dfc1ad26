"""The Ops page's views and the Prefect reads behind them: flow runs from a server or, with none
answering, from what the desk's stores recorded; schedules; retrain and promotion; drift; the
alert log; the supervisor.

A Prefect server is played by :class:`FakePrefect`, a local HTTP endpoint answering the health
check and the three filters the reads post with objects of Prefect's own schemas; "no server"
is a closed port. The desk is written directly: ingest run records, a backtest and a
walk-forward run, a state database with a session, supervisor events and a drift pause, and an
alert log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from testkit.cli import invoke, json_lines
from testkit.prefect import FakePrefect, closed_api

from core.ports import Notice, NoticeKind
from core.settings import SchedulesSettings, Settings, load_settings
from feature_store.backtests import BacktestStore
from feature_store.state import (
    ControlRequest,
    FlowRequest,
    SessionRecord,
    StateDB,
    SupervisorEvent,
)
from feature_store.store import BarStore
from services.notify import open_notifier
from services.orchestration import SCHEDULED, configured_schedules, deployment_schedules
from services.views.ops import (
    PREFECT_CHECK_SECONDS,
    alerts,
    desk_activity,
    drift,
    flow_runs,
    retrain_and_promotion,
    schedules,
    supervisor,
)

T0 = datetime(2024, 1, 2, 9, tzinfo=UTC)


@pytest.fixture
def prefect() -> Iterator[FakePrefect]:
    server = FakePrefect()
    try:
        yield server
    finally:
        server.stop()


def _desk(home: Path) -> Settings:
    """Write a desk's records: two ingest runs, a backtest, a walk-forward, a session with
    supervisor events, a refused flow request and a pause by drift."""
    settings = Settings(home=home)
    with BarStore(settings.store_dir).transaction() as tx:
        for n, run in enumerate(("in-20240102T080000-aaaaaa", "in-20240102T100000-bbbbbb")):
            series = {"rows_added": 100 * (n + 1), "rows_quarantined": n,
                      "expectations": "16/16 passed"}  # fmt: skip
            tx.put_run(run, {"run": run, "at": f"2024-01-02T{8 + 2 * n:02d}:00:00Z",
                             "series": [series]})  # fmt: skip
        tx.commit()
    BacktestStore.backtests(settings).write(
        "bt-20240102T083000-cccccc",
        {"kind": "backtest", "created": "2024-01-02T08:30:00Z", "strategy": "sma_cross",
         "symbol": "EURUSD", "timeframe": "H1",
         "metrics": {"n_trades": 44, "total_return": 0.0304}},
        {},
    )  # fmt: skip
    BacktestStore.research(settings).write(
        "wf-20240102T090000-dddddd",
        {"kind": "walkforward", "created": "2024-01-02T09:00:00Z",
         "summary": {"symbol": "EURUSD", "timeframe": "H1", "feature_set": "default",
                     "model": "lightgbm", "model_version": 3,
                     "oos": {"sharpe": -0.72, "psr": 0.36, "dsr": 0.35, "n_trades": 158}}},
        {},
    )  # fmt: skip
    with StateDB.open(settings) as db:
        db.create_session(
            SessionRecord(session="eu3", account="paper:eu3", kind="paper", symbol="EURUSD",
                          timeframe="H1", strategy="ml_model",
                          options={"model": "EURUSD-H1-default", "model_alias": "champion"},
                          created=T0 + timedelta(hours=2), status="running", bars=120)
        )  # fmt: skip
        for minutes, kind, restarts in ((0, "start", 0), (5, "restart", 1), (6, "start", 1),
                                        (9, "restart", 2), (10, "start", 2)):  # fmt: skip
            db.record_supervisor_event(
                SupervisorEvent(session="eu3", at=T0 + timedelta(hours=2, minutes=minutes),
                                kind=kind, pid=100 + minutes, restarts=restarts,
                                exit_code=-9 if kind == "restart" else None,
                                reason="killed by SIGKILL" if kind == "restart" else "")
            )  # fmt: skip
        db.record_flow_request(
            FlowRequest(deployment="retrain/weekly", who="trader", requested=T0,
                        outcome="no Prefect server answers")
        )  # fmt: skip
        db.request_control(
            ControlRequest(session="eu3", action="pause", who="drift",
                           why="drift: psi of rsi_14 0.4", requested=T0 + timedelta(hours=3))
        )  # fmt: skip
        db.commit()
    return settings


# -- the Prefect reads -----------------------------------------------------------------------


def test_flow_runs_no_server_answers_fast_naming_serve_with_the_desk_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    home = tmp_path / "home"
    _desk(home)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOLODESK_PREFECT_API_URL", closed_api())
    settings = load_settings(home=home)

    # Act
    started = time.perf_counter()
    view = flow_runs(settings)
    seconds = time.perf_counter() - started

    # Assert
    assert not view.answered and view.runs == ()
    assert "solodesk serve" in view.message and view.api in view.message
    assert seconds < 2 * PREFECT_CHECK_SECONDS + 1
    assert [(r.kind, r.name) for r in view.activity][:3] == [
        ("supervisor start", "eu3"), ("supervisor restart", "eu3"), ("supervisor start", "eu3")
    ]  # fmt: skip


def test_flow_runs_server_answering_lists_its_runs_and_no_desk_record(
    tmp_path: Path, prefect: FakePrefect
) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home", prefect_api_url=prefect.api)

    # Act
    view = flow_runs(settings)

    # Assert
    assert view.answered and view.activity == ()
    (run,) = view.runs
    assert (run.flow, run.deployment, run.run, run.state) == (
        "ingest", "manual", "brave-otter", "Completed"
    )  # fmt: skip
    assert (run.start, run.seconds) == ("2024-01-02T09:00:00Z", 12.3)


def test_flow_runs_healthy_server_failing_a_read_says_so(tmp_path: Path) -> None:
    # Arrange: a server that answers its health check and nothing else
    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path.endswith("/health") else 404)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"true")

        def do_POST(self) -> None:
            self.do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    api = f"http://127.0.0.1:{server.server_address[1]}/api"
    settings = Settings(home=tmp_path / "home", prefect_api_url=api)

    # Act
    try:
        view = flow_runs(settings)
    finally:
        server.shutdown()
        server.server_close()

    # Assert
    assert not view.answered
    assert view.message.startswith(f"the Prefect server at {api} did not answer")


def test_schedules_server_answering_gives_its_deployments_and_crons(
    tmp_path: Path, prefect: FakePrefect
) -> None:
    # Act
    view = schedules(Settings(home=tmp_path / "home", prefect_api_url=prefect.api))

    # Assert
    assert view.answered
    assert view.deployments == ("ingest/drop-folder", "ingest/manual")
    (row,) = view.schedules
    assert (row.deployment, row.cron, row.timezone, row.active) == (
        "ingest/drop-folder", "0 * * * *", "America/New_York", True
    )  # fmt: skip


def test_schedules_no_server_read_from_settings(tmp_path: Path) -> None:
    # Arrange
    section = SchedulesSettings(timezone="Europe/London", retrain_weekly="30 6 * * 0")
    settings = Settings(home=tmp_path / "home", schedules=section, prefect_api_url=closed_api())

    # Act
    view = schedules(settings)

    # Assert
    assert not view.answered and "solodesk serve" in view.message
    crons = {r.deployment: (r.cron, r.timezone) for r in view.schedules}
    assert crons == {
        "ingest/drop-folder": ("0 * * * *", "Europe/London"),
        "retrain/weekly": ("30 6 * * 0", "Europe/London"),
        "store-live-bars/daily": ("5 17 * * 1-5", "Europe/London"),
        "report/daily": ("5 17 * * 1-5", "Europe/London"),
    }


@pytest.mark.slow  # builds the deployments: imports Prefect and every flow
def test_configured_schedules_equal_the_deployments_serve_registers(tmp_path: Path) -> None:
    # Arrange
    from flows.deployments import deployments

    settings = Settings(
        home=tmp_path / "home", schedules=SchedulesSettings(report_daily="1 2 * * *")
    )
    repo_params = Path(__file__).resolve().parents[4] / "params.yaml"

    # Act
    built = {
        f"{d.flow_name}/{d.name}": [(s.schedule.cron, s.schedule.timezone) for s in d.schedules]
        for d in deployments(settings, repo_params)
    }
    configured = {r.deployment: [(r.cron, r.timezone)] for r in configured_schedules(settings)}

    # Assert
    assert {name: crons for name, crons in built.items() if crons} == configured
    assert set(configured) == set(SCHEDULED)


def test_flows_runs_command_prints_the_read_as_before(tmp_path: Path, prefect: FakePrefect) -> None:
    # Arrange
    home = tmp_path / "home"
    env = {"PREFECT_API_URL": prefect.api}

    # Act
    listed = invoke(["flows", "runs", "--json"], home, env=env)
    table = invoke(["flows", "runs"], home, env=env)
    refused = invoke(["flows", "runs"], home, env={"PREFECT_API_URL": closed_api()})

    # Assert
    assert json_lines(listed.stdout) == [
        {"flow": "ingest", "deployment": "manual", "run": "brave-otter", "state": "Completed",
         "start": "2024-01-02T09:00:00Z", "seconds": 12.3}
    ]  # fmt: skip
    assert "1 flow runs" in table.stdout and "brave-otter" in table.stdout
    assert refused.returncode == 2
    assert "no Prefect server answers at" in refused.stderr and "solodesk serve" in refused.stderr


def test_deployment_schedules_no_server_says_so(tmp_path: Path) -> None:
    # Act
    found = deployment_schedules(Settings(home=tmp_path, prefect_api_url=closed_api()), timeout=0.5)

    # Assert
    assert not found.answered and found.schedules == ()


# -- what the desk recorded ------------------------------------------------------------------


def test_desk_activity_merges_every_store_newest_first(tmp_path: Path) -> None:
    # Arrange
    settings = _desk(tmp_path / "home")

    # Act
    rows, note = desk_activity(settings)

    # Assert
    assert note == ""
    kinds = [r.kind for r in rows]
    assert {"ingest", "backtest", "walkforward", "paper session", "supervisor restart"} <= set(
        kinds
    )
    assert [r.at for r in rows] == sorted((r.at for r in rows), reverse=True)
    by_name = {r.name: r for r in rows}
    assert (
        by_name["bt-20240102T083000-cccccc"].outcome
        == "sma_cross on EURUSD H1: 44 trades, return +3.04%"
    )
    assert "registered v3" in by_name["wf-20240102T090000-dddddd"].outcome
    assert "200 bars added, 1 quarantined" in by_name["in-20240102T100000-bbbbbb"].outcome
    assert by_name["retrain/weekly"].outcome == "not run: no Prefect server answers"


def test_desk_activity_empty_home_nothing_and_nothing_created(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")

    # Act
    rows, note = desk_activity(settings)

    # Assert
    assert (rows, note) == ((), "")
    assert not settings.home.exists()


def test_retrain_and_promotion_without_registry_shows_walkforward_and_creates_no_store(
    tmp_path: Path,
) -> None:
    # Arrange
    settings = _desk(tmp_path / "home")

    # Act
    view = retrain_and_promotion(settings)

    # Assert
    assert view.walkforward is not None
    assert (view.walkforward.run, view.walkforward.version, view.walkforward.trades) == (
        "wf-20240102T090000-dddddd", 3, 158
    )  # fmt: skip
    assert not view.registry and view.champions == () and view.promotion is None
    assert not settings.mlflow_dir.exists()


def test_retrain_and_promotion_latest_retrain_notice_from_the_alert_log(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")
    notifier = open_notifier(settings)
    for title in ("retrain: v2 promoted", "retrain: v3 kept challenger"):
        notifier.notify(Notice(NoticeKind.RETRAIN, title, "scores side by side"))
    notifier.notify(Notice(NoticeKind.LOOP_STARTED, "later", ""))
    notifier.close()

    # Act
    view = retrain_and_promotion(settings)

    # Assert
    assert view.retrain is not None and view.retrain.title == "retrain: v3 kept challenger"


def test_drift_lists_watched_sessions_notices_and_pauses_by_drift(tmp_path: Path) -> None:
    # Arrange
    settings = _desk(tmp_path / "home")
    notifier = open_notifier(settings)
    notifier.notify(Notice(NoticeKind.MODEL_DRIFT, "model drifting", "psi of rsi_14 0.2", "eu3"))
    notifier.notify(Notice(NoticeKind.TRADE_OPENED, "long", "", "eu3"))
    notifier.close()

    # Act
    view = drift(settings)

    # Assert
    assert view.thresholds["psi_warn"] == settings.drift.psi_warn
    assert view.watched == ("eu3: EURUSD-H1-default (champion), running",)
    assert [n.title for n in view.notices] == ["model drifting"]
    (pause,) = view.pauses
    assert (pause.session, pause.who) == ("eu3", "drift")


def test_alerts_newest_first_filtered_by_kind(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")
    notifier = open_notifier(settings)
    for n, kind in enumerate([NoticeKind.TRADE_OPENED, NoticeKind.RISK_STATE] * 3):
        notifier.notify(Notice(kind, f"n{n}", ""))
    notifier.close()

    # Act
    every = alerts(settings)
    risk = alerts(settings, ("risk_state",))
    none = alerts(Settings(home=tmp_path / "other"))

    # Assert
    assert [e.title for e in every.entries] == ["n5", "n4", "n3", "n2", "n1", "n0"]
    assert [e.title for e in risk.entries] == ["n5", "n3", "n1"]
    assert every.exists and not none.exists and none.entries == ()


def test_supervisor_counts_starts_and_restarts_events_newest_first(tmp_path: Path) -> None:
    # Arrange
    settings = _desk(tmp_path / "home")

    # Act
    view = supervisor(settings)
    empty = supervisor(Settings(home=tmp_path / "other"))

    # Assert
    (session,) = view.sessions
    assert (session.session, session.starts, session.restarts, session.last) == (
        "eu3", 3, 2, "start"
    )  # fmt: skip
    assert [e.kind for e in view.events][:2] == ["start", "restart"]
    assert view.events[1].exit_code == -9
    assert not empty.state and empty.sessions == ()

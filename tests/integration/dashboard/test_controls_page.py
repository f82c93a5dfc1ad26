"""The Controls page: refused without a login, recorded and notified with one, and a running
paper loop applying a pause and a resume from the page between bars."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import SampleDesk
from testkit.cli import invoke, json_lines, run_solodesk

from app.dashboard.common import WHO
from core.settings import Settings
from execution.risk import increases_exposure
from feature_store.state import ControlRequest, FillRecord, IntentRecord, StateDB
from services.access import hash_password

from .conftest import DashboardDesk

PASSWORD = "correct horse battery"
SESSION = "desk"


def _desk_with_login(desk: DashboardDesk, tmp_path: Path) -> Path:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(desk.home, home)
    (tmp_path / "solodesk.toml").write_text(
        f'[dashboard]\nuser = "trader"\npassword_hash = "{hash_password(PASSWORD)}"\n'
    )
    return home


def _controls(home: Path) -> list[ControlRequest]:
    reader = StateDB.reader(Settings(home=home))
    assert reader is not None
    with reader:
        return reader.controls()


def test_controls_page_without_a_password_is_read_only_naming_the_command(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Act
    app = page(dashboard_desk.home, "controls")

    # Assert: no login form, the command that makes a password hash, every button disabled
    assert not app.exception
    assert [s.value for s in app.subheader] == [
        "Login", "Session controls", "Flows", "Control log",
    ]  # fmt: skip
    assert any("solodesk dashboard password" in i.value for i in app.info)
    assert app.button(key="control_pause").disabled
    assert app.button(key="flow_retrain").disabled
    # Assert: the log shows the fixture's pause, by whom
    (log, *_) = app.dataframe
    assert "pause" in log.value["action"].to_list()


def test_controls_page_with_a_password_but_no_login_offers_only_the_login_form(
    dashboard_desk: DashboardDesk, page: Callable[..., Any], tmp_path: Path
) -> None:
    # Arrange
    home = _desk_with_login(dashboard_desk, tmp_path)
    before = _controls(home)

    # Act
    app = page(home, "controls")

    # Assert: a login form; every control and flow button disabled; nothing stored
    assert not app.exception
    assert [t.label for t in app.text_input][:2] == ["User", "Password"]
    keys = ["control_pause", "control_resume", "control_flatten", "control_reset",
            "control_halt", "flow_retrain"]  # fmt: skip
    assert all(app.button(key=k).disabled for k in keys)
    assert _controls(home) == before
    assert WHO not in app.session_state


def test_session_control_without_a_name_of_who_acts_is_refused(
    dashboard_desk: DashboardDesk, tmp_path: Path
) -> None:
    # Arrange
    from core.errors import UsageError
    from services.views.controls import act_on_session, start_flow

    home = _desk_with_login(dashboard_desk, tmp_path)
    settings = Settings(home=home)

    # Act / Assert
    with pytest.raises(UsageError, match="who asks"):
        act_on_session(settings, "pause", SESSION, who=" ")
    with pytest.raises(UsageError, match="who asks"):
        start_flow(settings, "retrain/weekly", who="")
    assert _controls(home) == _controls(dashboard_desk.home)


def test_controls_page_wrong_password_refused_right_one_logs_in_then_acts_recorded_and_notified(
    dashboard_desk: DashboardDesk, page: Callable[..., Any], tmp_path: Path
) -> None:
    # Arrange
    home = _desk_with_login(dashboard_desk, tmp_path)
    app = page(home, "controls")

    # Act: a wrong password, then the right one
    app.text_input(key="login_user").input("trader")
    app.text_input(key="login_password").input("wrong password")
    app.button[0].click().run()
    refused = [e.value for e in app.error]
    app.text_input(key="login_user").input("trader")
    app.text_input(key="login_password").input(PASSWORD)
    app.button[0].click().run()
    logged_in = app.session_state[WHO]
    app.text_input(key="control_why").input("lunch")
    app.button(key="control_resume").click().run()

    # Assert: refused, then logged in; the resume stored with who and why, applied at rest
    assert not app.exception
    assert refused == ["Wrong user or password."]
    assert logged_in == "trader"
    last = _controls(home)[-1]
    assert (last.action, last.who, last.why, last.session) == ("resume", "trader", "lunch", SESSION)
    assert last.applied is not None and last.result is not None
    assert any(last.result in s.value for s in app.success)
    # Assert: notified (the alert log keeps every notice the desk raised)
    notices = [
        json.loads(line) for line in Settings(home=home).notice_log_path.read_text().splitlines()
    ]
    assert any(n["kind"] == "control" and "trader" in n["body"] for n in notices)


def test_controls_page_retrain_without_a_prefect_server_is_recorded_as_refused(
    dashboard_desk: DashboardDesk,
    page: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: a Prefect API where nothing listens
    home = _desk_with_login(dashboard_desk, tmp_path)
    app = page(home, "controls", **{WHO: "trader"})
    monkeypatch.setenv("SOLODESK_PREFECT_API_URL", "http://127.0.0.1:9/api")

    # Act
    app.button(key="flow_retrain").click().run()

    # Assert
    assert not app.exception
    reader = StateDB.reader(Settings(home=home))
    assert reader is not None
    with reader:
        (request,) = reader.flow_requests()
    assert (request.deployment, request.who, request.flow_run) == ("retrain/weekly", "trader", None)
    assert "solodesk serve" in request.outcome
    assert any("solodesk serve" in w.value for w in app.warning)


# -- a running loop --------------------------------------------------------------------------

SPEED = 90_000  # an H1 bar lasts 40 ms
PAPER_SESSION = "dash"
WEEKS = ("2017-01-01T22:00:00Z", "2017-01-20T22:00:00Z")
PAPER = [
    "paper", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
    "--param", "fast=2", "--param", "slow=5", "--spread", "1.0",
    "--from", WEEKS[0], "--to", WEEKS[1], "--speed", str(SPEED), "--session", PAPER_SESSION,
    "--json",
]  # fmt: skip
PHASE = 1.0  # wall seconds between the controls: about 25 bars
BAR = 3600 / SPEED  # wall seconds of an H1 bar
CONTROL = 0.2  # how often a running paper loop looks for controls
SLACK = 0.5


def _until(home: Path, what: Callable[[StateDB], Any], timeout: float, why: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reader = StateDB.reader(Settings(home=home))
        if reader is not None:
            with reader:
                value = what(reader)
            if value:
                return value
        time.sleep(0.005)
    pytest.fail(f"waited {timeout} s for {why}")


def _applied(home: Path, action: str) -> ControlRequest | None:
    found = [
        c for c in _controls(home)
        if c.session == PAPER_SESSION and c.action == action and c.applied is not None
    ]  # fmt: skip
    return found[-1] if found else None


def _increasing(
    intents: list[IntentRecord], fills: list[FillRecord], after: Any, until: Any
) -> list[IntentRecord]:
    def planned(intent: IntentRecord) -> float:
        filled = sum(f.signed_units for f in fills if f.ts <= intent.ts)
        same = intents[: intents.index(intent)]
        return filled + sum(i.units for i in same if i.ts == intent.ts and i.risk == "allowed")

    return [
        i for i in intents
        if after < i.ts and (until is None or i.ts <= until) and i.risk == "allowed"
        and increases_exposure(planned(i), i.units)
    ]  # fmt: skip


@pytest.mark.slow  # a paced replay of a few seconds in a subprocess
def test_pause_from_the_page_stops_new_orders_of_a_running_loop_within_a_bar_resume_lets_through(
    sample_desk: SampleDesk, copy_desk: Callable[[Path], Path], page: Callable[..., Any]
) -> None:
    # Arrange: a paced paper session in a subprocess, the page logged in
    home = copy_desk(sample_desk.home)
    (home.parent / "solodesk.toml").write_text(
        f'[dashboard]\npassword_hash = "{hash_password(PASSWORD)}"\n'
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        paper: Future[Any] = pool.submit(run_solodesk, PAPER, home, timeout=90)
        _until(
            home, lambda db: (r := db.session(PAPER_SESSION)) is not None and r.bars > 0, 30.0,
            "the loop to commit its first bars",
        )  # fmt: skip
        app = page(home, "controls", **{WHO: "trader"})
        app.selectbox(key="control_session").select(PAPER_SESSION).run()

        # Act: pause from the page, then resume from it, PHASE seconds apart
        asked = time.monotonic()
        app.button(key="control_pause").click().run()
        stored = time.monotonic()
        paused = _until(home, lambda _: _applied(home, "pause"), 15.0, "the pause")
        answered = time.monotonic() - stored
        time.sleep(PHASE)
        app.button(key="control_resume").click().run()
        resumed = _until(home, lambda _: _applied(home, "resume"), 15.0, "the resume")
        time.sleep(PHASE)
        stop = invoke(["stop", "--session", PAPER_SESSION, "--json"], home)
        finished = paper.result(timeout=60)

    # Assert: the session ran and stopped cleanly; the pause came from the page, by its user
    assert not app.exception
    assert stop.returncode == 0, stop.stderr
    assert finished.returncode == 0, finished.stderr
    assert json_lines(finished.stdout)[0]["status"] == "stopped"
    assert (paused.who, paused.result, resumed.result) == (
        "trader",
        "paused: no new orders",
        "resumed",
    )
    print(f"page to store: {stored - asked:.3f} s, stored to applied: {answered:.3f} s")
    assert answered <= BAR * 2 + CONTROL + SLACK
    # Assert: nothing added exposure while paused and some decision was refused for it;
    # orders that add exposure came back after the resume
    reader = StateDB.reader(Settings(home=home))
    assert reader is not None
    with reader:
        intents, fills = reader.intents(PAPER_SESSION), reader.fills(PAPER_SESSION)
    during = [i for i in intents if paused.applied < i.ts <= resumed.applied]
    assert any(i.risk == "paused" for i in during)
    assert not _increasing(intents, fills, paused.applied, resumed.applied)
    assert _increasing(intents, fills, resumed.applied, None)

"""``solodesk supervise`` keeps a paper session alive: real processes, the real state database, a
real local receiver for the alerts.

Each supervised session paper-trades sma_cross (fast 2, slow 5) on the sample's EURUSD H1 bars
of 2 to 14 January 2017 (238 bars, about 50 fills), paced at 540,000 times real time: an H1
bar lasts 6.7 ms and the session about 2 s after a start-up of about 1 s. The test finds the
child through its heartbeat (the row the loop replaces every second) once its second beat has
committed bars, about halfway, then kills it with SIGKILL or freezes it with SIGSTOP. The supervisor must restart it, the restarted child must
resume the session, and the session must end as the uninterrupted one on the same options (run
once for the module, unpaced: the pace changes when bars are processed, not what they do).
Notices go to a :class:`~testkit.receiver.Receiver` through ``SOLODESK_NOTIFY__URLS``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SampleDesk
from testkit.cli import invoke, json_lines, solodesk_command, solodesk_env
from testkit.receiver import Receiver

from core.ports import NullNotifier
from core.processes import process_running
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import parse_utc
from feature_store.state import Heartbeat, StateDB
from pipelines.backtest.config import BacktestConfig
from services.runtime import PaperOptions, run_paper

PAPER = [
    "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross", "--param", "fast=2",
    "--param", "slow=5", "--spread", "1.0", "--from", "2017-01-02T00:00:00Z",
    "--to", "2017-01-14T00:00:00Z",
]  # fmt: skip
SPEED = 540_000.0  # an H1 bar lasts 6.7 ms: a supervised session trades for about 2 s
BEAT_SPEED = 360_000.0  # 3 s: three heartbeats or more
BARS = 238
#: Bars the child must have committed before it is killed or frozen (its second heartbeat).
MID_SESSION = 20


@pytest.fixture(scope="module")
def home(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample desk for this module's sessions."""
    target = tmp_path_factory.mktemp("supervisor") / "home"
    shutil.copytree(sample_desk.home, target)
    return target


@pytest.fixture(scope="module")
def reference(home: Path) -> dict[str, Any]:
    """The uninterrupted session on the same options: its summary and fills."""
    run = invoke(["paper", *PAPER, "--session", "reference", "--json"], home)
    assert run.returncode == 0, (run.stderr, run.exception)
    (summary,) = json_lines(run.stdout)
    assert summary["bars"] == BARS and summary["fills"] > 30
    return {"summary": summary, "fills": _fills(home, "reference")}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


def _fills(home: Path, session: str) -> list[tuple[Any, ...]]:
    """Return a session's fills, without its name, in execution order."""
    with StateDB.open(Settings(home=home)) as db:
        return [
            (f.seq, f.client_order_id, f.execution_id, f.ts, f.side, f.units, f.price, f.fees)
            for f in db.fills(session)
        ]


def _env(home: Path, receiver: Receiver) -> dict[str, str]:
    return solodesk_env(
        home,
        SOLODESK_NOTIFY__URLS=json.dumps([receiver.url()]),
        SOLODESK_NOTIFY__PER_MINUTE="10000",
        SOLODESK_NOTIFY__DEDUPE_SECONDS="0",
        # The children's own notices (trades, controls) are not what these tests look at.
        SOLODESK_NOTIFY__EVENTS=json.dumps(
            {"trade_opened": "off", "trade_closed": "off", "daily_summary": "off"}
        ),
    )


def _supervise(
    home: Path, receiver: Receiver, session: str, *options: str
) -> subprocess.Popen[str]:
    command = [
        *solodesk_command(), "supervise", "--session", session, "--backoff", "0.2", "--json",
        *options, "--", *PAPER, "--speed", f"{SPEED:g}",
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=home.parent, env=_env(home, receiver), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _beat(home: Path, session: str) -> Heartbeat | None:
    path = Settings(home=home).state_db_path
    if not path.exists():
        return None
    with StateDB(path) as db:
        return db.heartbeat(session)


def _child_beating(
    home: Path, session: str, supervisor: subprocess.Popen[str], *, bars: int, not_pid: int = 0
) -> Heartbeat:
    """Wait for a heartbeat of a child (other than ``not_pid``) with at least ``bars`` bars."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert supervisor.poll() is None, supervisor.communicate()
        beat = _beat(home, session)
        if beat is not None and beat.pid != not_pid and beat.bars >= bars:
            return beat
        time.sleep(0.01)
    supervisor.kill()
    pytest.fail(f"no heartbeat of {session} with {bars} bars in 30 s: {supervisor.communicate()}")


def _finish(supervisor: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    try:
        stdout, stderr = supervisor.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        supervisor.kill()
        stdout, stderr = supervisor.communicate()
        pytest.fail(f"the supervisor did not end: {stderr}")
    (summary,) = json_lines(stdout)
    return supervisor.returncode, summary, stderr


def _events(home: Path, session: str) -> list[Any]:
    with StateDB.open(Settings(home=home)) as db:
        return db.supervisor_events(session)


def _notices(receiver: Receiver, title: str, session: str) -> list[dict[str, Any]]:
    return [
        body
        for body in receiver.delivered
        if body.get("title", "").endswith(title) and session in body.get("message", "")
    ]


def _assert_same_as_reference(
    home: Path, session: str, summary: dict[str, Any], reference: dict[str, Any]
) -> None:
    paper = summary["paper"]
    expected = reference["summary"]
    assert paper["resumed"] is True and paper["status"] == "finished"
    assert paper["ledger_hash"] == expected["ledger_hash"]
    assert (paper["bars"], paper["orders"], paper["fills"], paper["trades"]) == (
        expected["bars"], expected["orders"], expected["fills"], expected["trades"],
    )  # fmt: skip
    assert paper["final_equity"] == expected["final_equity"]
    assert 0 < paper["bars_this_run"] < BARS  # resumed from a commit, not from the start
    fills = _fills(home, session)
    assert fills == reference["fills"]
    assert len({f[1] for f in fills}) == len({f[1] for f in reference["fills"]})
    assert len({f[2] for f in fills}) == len(fills)  # no execution id twice
    with StateDB.open(Settings(home=home)) as db:
        intents = [i.client_order_id for i in db.intents(session)]
        orders = [o.client_order_id for o in db.orders(session)]
    assert len(set(intents)) == len(intents) and len(set(orders)) == len(orders)


@pytest.mark.slow  # a supervised paced session, killed once: about 6 s
def test_supervise_child_killed_restarted_ends_as_uninterrupted(
    home: Path, reference: dict[str, Any], receiver: Receiver
) -> None:
    # Arrange
    session = "killed"
    supervisor = _supervise(home, receiver, session)
    first = _child_beating(home, session, supervisor, bars=MID_SESSION)

    # Act
    os.kill(first.pid, signal.SIGKILL)
    code, summary, stderr = _finish(supervisor)

    # Assert: restarted once, finished, exit 0
    assert code == 0, stderr
    assert (summary["status"], summary["starts"], summary["restarts"]) == ("finished", 2, 1)
    _assert_same_as_reference(home, session, summary, reference)
    # Assert: recorded and notified
    events = _events(home, session)
    assert [e.kind for e in events] == ["start", "restart", "start", "finished"]
    assert (events[1].pid, events[1].exit_code) == (first.pid, -signal.SIGKILL)
    restarts = _notices(receiver, "session restarted", session)
    assert len(restarts) == 1 and "killed by SIGKILL" in restarts[0]["message"]


@pytest.mark.slow  # a supervised paced session, frozen for the hang limit: about 8 s
def test_supervise_child_frozen_killed_after_hang_seconds_and_restarted(
    home: Path, reference: dict[str, Any], receiver: Receiver
) -> None:
    # Arrange
    session = "frozen"
    hang = 3.0
    supervisor = _supervise(home, receiver, session, "--hang-seconds", f"{hang:g}")
    first = _child_beating(home, session, supervisor, bars=MID_SESSION)

    # Act
    os.kill(first.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    while process_running(first.pid) and time.monotonic() - frozen < 60:
        time.sleep(0.05)
    waited = time.monotonic() - frozen
    second = _child_beating(home, session, supervisor, bars=0, not_pid=first.pid)
    code, summary, stderr = _finish(supervisor)

    # Assert: killed once silent for the hang limit (its last beat came up to 1 s before the
    # freeze; the time to kill is measured, not the restarted child's start, which a busy
    # machine makes slow), then restarted; the session ends as the uninterrupted one
    assert code == 0, stderr
    assert hang - 1.0 <= waited <= hang + 3.0, waited
    assert not process_running(first.pid)
    assert second.pid != first.pid
    assert (summary["status"], summary["starts"], summary["restarts"]) == ("finished", 2, 1)
    _assert_same_as_reference(home, session, summary, reference)
    events = _events(home, session)
    assert [e.kind for e in events] == ["start", "restart", "start", "finished"]
    assert events[1].exit_code == -signal.SIGKILL and "no heartbeat" in events[1].reason
    restarts = _notices(receiver, "session restarted", session)
    assert len(restarts) == 1 and "killed as hung" in restarts[0]["message"]


@pytest.mark.slow  # a supervised paced session killed twice with one restart allowed: ~5 s
def test_supervise_restart_budget_spent_halts_alerts_exits_nonzero(
    home: Path, receiver: Receiver
) -> None:
    # Arrange
    session = "budget"
    supervisor = _supervise(home, receiver, session, "--max-restarts", "1")
    first = _child_beating(home, session, supervisor, bars=MID_SESSION)
    os.kill(first.pid, signal.SIGKILL)
    second = _child_beating(home, session, supervisor, bars=0, not_pid=first.pid)

    # Act
    os.kill(second.pid, signal.SIGKILL)
    code, summary, stderr = _finish(supervisor)

    # Assert: gave up with status 1, the account halted, the alert at the receiver
    assert code == 1, stderr
    assert (summary["status"], summary["starts"], summary["restarts"]) == ("gave_up", 2, 1)
    assert "halt applied" in summary["halt"]
    status = invoke(["risk", "status", "--session", session, "--json"], home)
    assert status.returncode == 0
    assert json_lines(status.stdout)[0]["state"] == "halted"
    events = _events(home, session)
    assert [e.kind for e in events] == ["start", "restart", "start", "gave_up"]
    gave_up = _notices(receiver, "supervisor gave up", session)
    assert len(gave_up) == 1 and "budget" in gave_up[0]["message"]
    assert len(_notices(receiver, "session restarted", session)) == 1


@pytest.mark.slow  # a paced replay of about 3 s in a thread
def test_paced_paper_session_beats_every_second_while_it_runs_and_waits(home: Path) -> None:
    # Arrange: the session in a thread of this process; its heartbeats read from another
    # connection as the supervisor reads them
    options = PaperOptions(
        symbol="EURUSD", timeframe=Timeframe.H1, strategy="sma_cross",
        params={"fast": "2", "slow": "5"}, start=parse_utc("2017-01-02T00:00:00Z"),
        end=parse_utc("2017-01-14T00:00:00Z"), backtest=BacktestConfig.from_options(spread=1.0),
    )  # fmt: skip
    done = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_paper(Settings(home=home), options, session="beats", speed=BEAT_SPEED,
                      notifier=NullNotifier())  # fmt: skip
        except BaseException as exc:
            failed.append(exc)
        finally:
            done.set()

    # Act
    beats: list[tuple[float, Heartbeat]] = []
    thread = threading.Thread(target=run)
    thread.start()
    while not done.is_set():
        beat = _beat(home, "beats")
        if beat is not None and (not beats or beat != beats[-1][1]):
            beats.append((time.monotonic(), beat))
        time.sleep(0.01)
    ended = time.monotonic()
    thread.join()

    # Assert: this process beat at least once a second (plus a slice of the paced wait)
    assert not failed, failed
    assert len(beats) >= 3
    assert {b.pid for _, b in beats} == {os.getpid()}
    seen = [at for at, _ in beats]
    gaps = [b - a for a, b in zip(seen, [*seen[1:], ended], strict=True)]
    print("heartbeat gaps (s):", [round(g, 2) for g in gaps])
    assert max(gaps) <= 1.0 + 0.2 + 0.3
    walls = [b.at for _, b in beats]
    assert walls == sorted(walls)
    assert [b.bars for _, b in beats] == sorted(b.bars for _, b in beats)


def test_supervise_session_among_paper_options_exit_2(home: Path) -> None:
    run = invoke(["supervise", "--", *PAPER, "--session", "x"], home)
    assert run.returncode == 2
    assert "give --session before --" in run.stderr


def test_supervise_without_paper_options_exit_2(home: Path) -> None:
    run = invoke(["supervise", "--session", "x"], home)
    assert run.returncode == 2
    assert "give the options of solodesk paper after --" in run.stderr


def test_supervise_bad_paper_option_exit_2_nothing_halted(home: Path) -> None:
    # Arrange: paper refuses an unknown strategy before it records a session
    args = ["supervise", "--session", "refused", "--json", "--", *PAPER[:5], "nope", *PAPER[6:]]

    # Act
    run = invoke(args, home)

    # Assert
    assert run.returncode == 2, (run.stderr, run.exception)
    (summary,) = json_lines(run.stdout)
    assert (summary["status"], summary["starts"], summary["halt"]) == ("gave_up", 1, None)
    assert [e.kind for e in _events(home, "refused")] == ["start", "gave_up"]

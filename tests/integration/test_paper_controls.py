"""A running paper session answers controls from another process, and its notices reach a slow
phone without slowing it down.

The controls test starts ``solodesk paper`` in a subprocess, paced so that an H1 bar lasts
30 ms, on the sample's first week (no weekend inside: a paced replay sleeps through a weekend
gap). From this process it pauses, resumes, halts (flattening) and stops the session with the
command line, and reads the state database as any other process can: each control must be
applied within a bar plus the loop's control interval (with a margin for the machine), no order
may increase exposure while paused or halted, and trading must come back after the resume.

The notification test runs paper sessions in process with a real
:class:`execution.notify.AppriseNotifier` posting to a local receiver that takes 0.2 s per
request: every trade's notices arrive, and the replay runs about as fast as with no notifier.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from testkit.cli import invoke, json_lines, run_solodesk
from testkit.receiver import Receiver

from core.ports import Notifier, NullNotifier
from core.settings import NotifySettings, Settings
from core.timeframes import Timeframe
from core.times import parse_utc
from execution.notify import AppriseNotifier
from execution.risk import increases_exposure
from feature_store.state import ControlRequest, FillRecord, IntentRecord, StateDB
from pipelines.backtest.config import BacktestConfig
from services.runtime import PaperOptions, PaperSummary, run_paper

SPEED = 120_000  # an H1 bar lasts 30 ms
BAR = 3600 / SPEED
CONTROL = 0.2  # how often a running paper loop looks for controls (services.runtime)
SLACK = 0.35  # the command itself, the commit, polling, a busy machine
SESSION = "ctl"
# The sample's first week: Sunday 22:00 to Friday 21:00, 120 bars, 3.6 s at this pace.
WEEK = ("2017-01-01T22:00:00Z", "2017-01-06T22:00:00Z")
PAPER = [
    "paper", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
    "--param", "fast=3", "--param", "slow=12", "--param", "allow_short=true", "--spread", "1.0",
    "--from", WEEK[0], "--to", WEEK[1], "--speed", str(SPEED), "--session", SESSION, "--json",
]  # fmt: skip


@pytest.fixture
def home(sample_desk: Any, copy_desk: Callable[[Path], Path]) -> Path:
    return copy_desk(sample_desk.home)


class Watch:
    """The state database as another process reads it, polled until something holds."""

    def __init__(self, home: Path) -> None:
        self.settings = Settings(home=home)

    def read(self, what: Callable[[StateDB], Any]) -> Any:
        with StateDB.open(self.settings) as db:
            return what(db)

    def until(self, what: Callable[[StateDB], Any], timeout: float, why: str) -> Any:
        """Return the first true value of ``what``, polled every 5 ms; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.settings.state_db_path.exists():
                value = self.read(what)
                if value:
                    return value
            if time.monotonic() > deadline:
                pytest.fail(f"waited {timeout} s for {why}")
            time.sleep(0.005)

    def control(self, ident: int) -> ControlRequest | None:
        found = [c for c in self.read(lambda db: db.controls(SESSION)) if c.id == ident]
        return found[0] if found and found[0].applied is not None else None

    def intents(self) -> list[IntentRecord]:
        return list(self.read(lambda db: db.intents(SESSION)))

    def fills(self) -> list[FillRecord]:
        return list(self.read(lambda db: db.fills(SESSION)))


def _request(home: Path, watch: Watch, *args: str) -> tuple[ControlRequest, float]:
    """Send a control with the command line; return it once applied, and how long that took."""
    asked = time.monotonic()
    run = invoke([*args, "--session", SESSION, "--json"], home)
    assert run.returncode == 0, (run.stderr, run.exception)
    (line,) = json_lines(run.stdout)
    ident = int(line["id"])
    applied = watch.until(lambda _: watch.control(ident), 5.0, f"{args[-1]} to be applied")
    return applied, time.monotonic() - asked


def _planned(intent: IntentRecord, intents: list[IntentRecord], fills: list[FillRecord]) -> float:
    """Return the position an intent was decided against: the fills before it, and the allowed
    intents of the same decision before it (their fills come after, with the latency)."""
    filled = sum(f.signed_units for f in fills if f.ts <= intent.ts)
    same = intents[: intents.index(intent)]
    return filled + sum(i.units for i in same if i.ts == intent.ts and i.risk == "allowed")


def _increasing(
    intents: list[IntentRecord], fills: list[FillRecord], after: datetime, until: datetime | None
) -> list[IntentRecord]:
    """Return the allowed intents decided in (after, until] that increase exposure."""
    return [
        i
        for i in intents
        if after < i.ts and (until is None or i.ts <= until) and i.risk == "allowed"
        and increases_exposure(_planned(i, intents, fills), i.units)
    ]  # fmt: skip


def _positions(fills: list[FillRecord], after: datetime) -> list[float]:
    """Return the position after each fill later than ``after``, starting from the one before."""
    held = sum(f.signed_units for f in fills if f.ts <= after)
    out = [held]
    for fill in (f for f in fills if f.ts > after):
        held += fill.signed_units
        out.append(held)
    return out


@pytest.mark.slow  # a 4 s paced replay in a subprocess, and seven commands
def test_paper_controls_from_another_process_pause_resume_halt_stop(home: Path) -> None:
    # Arrange
    watch = Watch(home)
    with ThreadPoolExecutor(max_workers=1) as pool:
        paper: Future[Any] = pool.submit(run_solodesk, PAPER, home, timeout=60)
        watch.until(lambda db: db.broker_state(f"loop:{SESSION}"), 30.0, "the loop to start")

        # Act: pause, until a decision is refused
        paused, pause_took = _request(home, watch, "pause")
        watch.until(
            lambda db: [i for i in db.intents(SESSION) if i.risk == "paused"], 2.5,
            "a decision refused while paused",
        )  # fmt: skip
        # Act: resume, until an order that adds exposure is allowed
        resumed, resume_took = _request(home, watch, "resume")
        assert resumed.applied is not None

        def traded(db: StateDB) -> bool:
            after = [i for i in db.intents(SESSION) if i.ts > resumed.applied]  # type: ignore[operator]
            fills = db.fills(SESSION)
            return any(i.risk == "allowed" and increases_exposure(_planned(i, after, fills), i.units)
                       for i in after)  # fmt: skip

        watch.until(traded, 2.5, "an order adding exposure after the resume")
        # Act: halt and flatten, until a later decision is refused
        halted, halt_took = _request(home, watch, "risk", "halt", "--flatten")
        assert halted.applied is not None
        watch.until(
            lambda db: [i for i in db.intents(SESSION)
                        if i.ts > halted.applied and i.risk not in ("allowed",)],  # type: ignore[operator]
            2.5, "a decision refused while halted",
        )  # fmt: skip
        status = invoke(["risk", "status", "--session", SESSION, "--json"], home)
        # Act: stop
        _, stop_took = _request(home, watch, "stop")
        finished = paper.result(timeout=30)

    # Assert: every command and the session exited 0; the session stopped, halted
    assert finished.returncode == 0, finished.stderr
    (summary,) = json_lines(finished.stdout)
    assert summary["status"] == "stopped"
    assert summary["bars"] < 120  # stopped before the replay's end
    assert summary["risk_state"] == "halted"
    assert status.returncode == 0
    assert json_lines(status.stdout)[0]["state"] == "halted"
    sessions = json_lines(invoke(["sessions", "--json"], home).stdout)
    assert [s["status"] for s in sessions if s["session"] == SESSION] == ["stopped"]
    # Assert: each control applied within a bar and the control interval
    took = {"pause": pause_took, "resume": resume_took, "halt": halt_took, "stop": stop_took}
    print("controls applied after", {k: round(v, 3) for k, v in took.items()})
    assert max(took.values()) <= BAR + CONTROL + SLACK, took
    assert [paused.result, resumed.result] == ["paused: no new orders", "resumed"]
    assert halted.result is not None and halted.result.startswith("halted")
    # Assert: nothing added exposure while paused, and decisions were refused for it
    intents, fills = watch.intents(), watch.fills()
    assert paused.applied is not None and resumed.applied is not None
    assert not _increasing(intents, fills, paused.applied, resumed.applied)
    during = [i for i in intents if paused.applied < i.ts <= resumed.applied]
    assert any(i.risk == "paused" for i in during)
    # Assert: trading came back, then nothing added exposure after the halt
    assert _increasing(intents, fills, resumed.applied, halted.applied)
    assert not _increasing(intents, fills, halted.applied, None)
    exposure = [abs(p) for p in _positions(fills, halted.applied)]
    assert exposure == sorted(exposure, reverse=True)  # only ever reduced
    assert exposure[-1] == 0.0  # flattened
    assert any(i.ts > halted.applied and i.risk != "allowed" for i in intents)


# -- notifications ----------------------------------------------------------------------------


def _options() -> PaperOptions:
    # Two thirds of the sample, few trades: about 12 notices a session.
    return PaperOptions(
        symbol="EURUSD", timeframe=Timeframe.H1, strategy="sma_cross",
        params={"fast": "30", "slow": "120"}, start=parse_utc("2017-01-01T00:00:00Z"),
        end=parse_utc("2017-09-01T00:00:00Z"),
        backtest=BacktestConfig.from_options(spread=1.0),
    )  # fmt: skip


def _run(home: Path, session: str, notifier: Notifier) -> PaperSummary:
    return run_paper(Settings(home=home), _options(), session=session, notifier=notifier)


def _bars_per_second(summary: PaperSummary) -> float:
    return summary.bars_this_run / summary.seconds


def test_paper_notices_to_slow_receiver_all_arrive_and_replay_keeps_its_speed(
    home: Path,
) -> None:
    # Arrange: a receiver that takes 0.2 s per notice
    receiver = Receiver(delay=0.2)
    settings = NotifySettings(
        urls=(SecretStr(receiver.url()),), per_minute=10_000, dedupe_seconds=0, retries=0,
    )  # fmt: skip
    notifier = AppriseNotifier(settings)
    _run(home, "warm-up", NullNotifier())  # the first run pays for compiling the strategy
    try:
        # Act: alternate replays without and with the notifier
        quiet, notified = [], []
        for number in range(2):
            quiet.append(_run(home, f"quiet-{number}", NullNotifier()))
            notified.append(_run(home, f"notified-{number}", notifier))
        started = time.monotonic()
        notifier.close(timeout=60)
        delivering = time.monotonic() - started
    finally:
        receiver.stop()

    # Assert: the replays kept their speed while the notices queued
    quiet_speed = statistics.median(_bars_per_second(s) for s in quiet)
    notified_speed = statistics.median(_bars_per_second(s) for s in notified)
    print(f"bars/s: {quiet_speed:,.0f} quiet, {notified_speed:,.0f} notified; "
          f"{delivering:.1f} s to deliver the rest")  # fmt: skip
    assert notified_speed >= 0.7 * quiet_speed
    # Assert: every trade's notices arrived, with the session's start and stop
    bodies = receiver.delivered
    with StateDB.open(Settings(home=home)) as db:
        for summary in notified:
            mine = [b for b in bodies if f"session {summary.session}" in b.get("message", "")]
            titles = [b["title"] for b in mine]
            trades = db.trades(summary.session)
            closed = [t for t in trades if t["exit_reason"] != "open"]
            assert summary.trades == len(trades) >= 4
            assert titles.count("trade opened") == len(trades), summary.session
            assert titles.count("trade closed") == len(closed), summary.session
            assert titles.count("session started") == 1
            assert titles.count("session finished") == 1
    assert len(bodies) == len(receiver.requests)  # none failed


def test_receiver_records_posts_and_fails_the_first_as_asked() -> None:
    # Arrange
    import urllib.error
    import urllib.request

    def post(url: str, body: dict[str, Any]) -> int:
        request = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    # Act
    with Receiver(fail_first=1, fail_status=503) as receiver:
        statuses = [post(receiver.http_url("/a"), {"title": f"n{k}"}) for k in range(3)]
        arrived = receiver.wait_for(3, timeout=1)

    # Assert
    assert arrived
    assert statuses == [503, 200, 200]
    assert receiver.titles() == ["n1", "n2"]
    assert [r.path for r in receiver.requests] == ["/a"] * 3
    assert receiver.url("hook") == f"json://127.0.0.1:{receiver.port}/hook"

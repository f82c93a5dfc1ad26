"""A running paper session answers controls from another process, and its notices reach a slow
phone without slowing it down.

The controls test starts ``solodesk paper`` in a subprocess, paced so that an H1 bar lasts
40 ms, on the sample's first three weeks. From this process it pauses, resumes, halts
(flattening) and stops the session with the command line, about 24 bars apart, and reads the
state database as any other process can. Each control must be applied within the wall time of
a bar plus the loop's control interval, counted from when the command has stored it (a paced
replay sleeps through a weekend gap, so the bar after one lasts the gap too; and storing a
control waits for the loop's write lock, which can take seconds: both are printed). No order may
increase exposure while paused or halted, and trading must come back after the resume.

The notification test runs paper sessions in process with a real
:class:`execution.notify.AppriseNotifier` posting to a local receiver that takes 0.2 s per
request: every trade's notices arrive, and the replay runs about as fast as with no notifier.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SampleDesk
from pydantic import SecretStr
from testkit.cli import invoke, json_lines, run_solodesk
from testkit.receiver import Receiver

from core.ports import Notifier, NullNotifier
from core.settings import NotifySettings, Settings
from core.timeframes import Timeframe
from core.times import ns_from_utc, parse_utc
from execution.notify import AppriseNotifier
from execution.risk import increases_exposure
from feature_store.series import load_series
from feature_store.state import ControlRequest, FillRecord, IntentRecord, StateDB
from pipelines.backtest.config import BacktestConfig
from services.runtime import PaperOptions, PaperSummary, run_paper

SPEED = 90_000  # an H1 bar lasts 40 ms
HOUR_NS = 3_600_000_000_000
CONTROL = 0.2  # how often a running paper loop looks for controls (services.runtime)
SLACK = 0.3  # the commit, polling, a busy machine
PHASE_BARS = 24  # bars between two controls (the strategy enters every 4 to 17 bars)
SESSION = "ctl"
WEEKS = ("2017-01-01T22:00:00Z", "2017-01-20T22:00:00Z")  # 360 bars: the test needs ~130
PAPER = [
    "paper", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
    "--param", "fast=2", "--param", "slow=5", "--spread", "1.0",
    "--from", WEEKS[0], "--to", WEEKS[1], "--speed", str(SPEED), "--session", SESSION, "--json",
]  # fmt: skip


@pytest.fixture
def home(sample_desk: SampleDesk, copy_desk: Callable[[Path], Path]) -> Path:
    """A copy of the sample desk that the test may change."""
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


@dataclass(frozen=True)
class Applied:
    """A control as the loop applied it, and when: the command's time to store it, the time
    from then to the loop's acknowledgement (wall seconds), and when that was seen."""

    request: ControlRequest
    storing: float
    answering: float
    seen: float

    @property
    def at(self) -> datetime:
        assert self.request.applied is not None
        return self.request.applied


class Replay:
    """The replayed bars' times, to turn a number of bars into the wall time they take."""

    def __init__(self, home: Path) -> None:
        data = load_series(
            Settings(home=home), "EURUSD", Timeframe.H1, None, parse_utc(WEEKS[0]),
            parse_utc(WEEKS[1]),
        )  # fmt: skip
        self.ends = data.bars["ts"].dt.epoch("ns").to_numpy() + HOUR_NS

    def bar_seconds(self, end: datetime) -> float:
        """Return the wall time of the bar ending at ``end``, with the gap before it."""
        k = int(np.searchsorted(self.ends, ns_from_utc(end)))
        before = self.ends[k - 1] if k > 0 else self.ends[k] - HOUR_NS
        return float(self.ends[k] - before) / 1e9 / SPEED

    def wait_bars(self, after: Applied, bars: int) -> None:
        """Sleep until the loop has paced ``bars`` bars past the one ``after`` was applied at."""
        k = int(np.searchsorted(self.ends, ns_from_utc(after.at)))
        target = self.ends[min(k + bars, len(self.ends) - 1)]
        due = after.seen + float(target - self.ends[k]) / 1e9 / SPEED
        time.sleep(max(0.0, due - time.monotonic()))


def _request(home: Path, watch: Watch, *args: str) -> Applied:
    """Send a control with the command line (exit 0); return it once the loop applied it."""
    asked = time.monotonic()
    run = invoke([*args, "--session", SESSION, "--json"], home)
    stored = time.monotonic()
    assert run.returncode == 0, (run.stderr, run.exception)
    (line,) = json_lines(run.stdout)
    ident = int(line["id"])
    request = watch.until(lambda _: watch.control(ident), 15.0, f"{args[-1]} to be applied")
    seen = time.monotonic()
    return Applied(request, stored - asked, seen - stored, seen)


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


def _pacing(db: StateDB) -> bool:
    """Return whether the loop has committed bars (its first one, which loads the strategy's
    compiled code, is behind it)."""
    record = db.session(SESSION)
    return record is not None and record.bars > 0


@pytest.mark.slow  # a paced replay of 5-6 s in a subprocess, and eight commands
def test_paper_controls_from_another_process_pause_resume_halt_stop(home: Path) -> None:
    # Arrange: the command line loaded in this process, so that a control costs what it costs
    watch, replay = Watch(home), Replay(home)
    assert invoke(["sessions", "--json"], home).returncode == 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        paper: Future[Any] = pool.submit(run_solodesk, PAPER, home, timeout=90)
        watch.until(_pacing, 30.0, "the loop to commit its first bars")

        # Act: each control, then PHASE_BARS bars
        paused = _request(home, watch, "pause")
        replay.wait_bars(paused, PHASE_BARS)
        resumed = _request(home, watch, "resume")
        replay.wait_bars(resumed, PHASE_BARS)
        halted = _request(home, watch, "risk", "halt", "--flatten")
        status = invoke(["risk", "status", "--session", SESSION, "--json"], home)
        replay.wait_bars(halted, PHASE_BARS)
        stopped = _request(home, watch, "stop")
        finished = paper.result(timeout=60)

    # Assert: every command and the session exited 0; the session stopped, halted
    assert finished.returncode == 0, finished.stderr
    (summary,) = json_lines(finished.stdout)
    assert summary["status"] == "stopped", "the replay ended before the stop"
    assert summary["risk_state"] == "halted"
    assert status.returncode == 0
    assert json_lines(status.stdout)[0]["state"] == "halted"
    listed = invoke(["sessions", "--json"], home)
    assert listed.returncode == 0
    sessions = json_lines(listed.stdout)
    assert [s["status"] for s in sessions if s["session"] == SESSION] == ["stopped"]
    # Assert: each control applied within its bar and the control interval
    controls = {"pause": paused, "resume": resumed, "halt": halted, "stop": stopped}
    print("storing, answering (s):", {
        k: (round(c.storing, 3), round(c.answering, 3)) for k, c in controls.items()
    })  # fmt: skip
    for name, control in controls.items():
        limit = replay.bar_seconds(control.at) + CONTROL + SLACK
        assert control.answering <= limit, (name, control.answering, limit)
    assert [paused.request.result, resumed.request.result] == ["paused: no new orders", "resumed"]
    assert halted.request.result == "halted and flattening"
    # Assert: while paused, decisions were refused and nothing added exposure (nothing at all
    # was allowed if the orders decided before the pause left the session flat)
    intents, fills = watch.intents(), watch.fills()
    during = [i for i in intents if paused.at < i.ts <= resumed.at]
    assert any(i.risk == "paused" for i in during)
    assert not _increasing(intents, fills, paused.at, resumed.at)
    before = {i.client_order_id for i in intents if i.ts <= paused.at}
    if sum(f.signed_units for f in fills if f.client_order_id in before) == 0.0:
        assert [i for i in during if i.risk == "allowed"] == []
    # Assert: trading came back after the resume
    assert _increasing(intents, fills, resumed.at, halted.at)
    # Assert: after the halt, decisions were refused, no order decided after it added exposure,
    # and a position held at the halt was flattened (an order in flight at the halt may still
    # fill: the broker gets the cancel after it)
    later = [i for i in intents if i.ts > halted.at]
    assert any(i.risk != "allowed" for i in later)
    assert not _increasing(intents, fills, halted.at, None)
    decided_later = {i.client_order_id for i in later}
    held = sum(f.signed_units for f in fills if f.ts <= halted.at)
    for fill in (f for f in fills if f.ts > halted.at):
        after = held + fill.signed_units
        assert fill.client_order_id not in decided_later or abs(after) <= abs(held), fill
        held = after
    if sum(f.signed_units for f in fills if f.ts <= halted.at) != 0.0:
        flattening = [i for i in intents if i.ts >= halted.at and i.reason == "flatten (halt)"]
        assert [i.risk for i in flattening] == ["allowed"]


# -- notifications ----------------------------------------------------------------------------


def _options() -> PaperOptions:
    # The whole sample with slow averages: 9 trades, 19 notices a session (4 s to deliver).
    return PaperOptions(
        symbol="EURUSD", timeframe=Timeframe.H1, strategy="sma_cross",
        params={"fast": "100", "slow": "400"}, backtest=BacktestConfig.from_options(spread=1.0),
    )  # fmt: skip


def _run(home: Path, session: str, notifier: Notifier) -> PaperSummary:
    return run_paper(Settings(home=home), _options(), session=session, notifier=notifier)


def _bars_per_second(summary: PaperSummary) -> float:
    return summary.bars_this_run / summary.seconds


@pytest.mark.slow  # six replays, and 38 notices at 0.2 s each: about 9 s
def test_paper_notices_to_slow_receiver_all_arrive_and_replay_keeps_its_speed(
    home: Path,
) -> None:
    # Arrange: a receiver that takes 0.2 s per notice; no daily summaries (one a replayed day)
    receiver = Receiver(delay=0.2)
    settings = NotifySettings(
        urls=(SecretStr(receiver.url()),), events={"daily_summary": "off"}, per_minute=10_000,
        dedupe_seconds=0, retries=0,
    )  # fmt: skip
    notifier = AppriseNotifier(settings)
    _run(home, "warm-up", NullNotifier())  # the first run pays for compiling the strategy
    try:
        # Act: alternate replays without and with the notifier
        quiet, notified = [], []
        for number in range(2):
            quiet.append(_run(home, f"quiet-{number}", NullNotifier()))
            notified.append(_run(home, f"notified-{number}", notifier))
        quiet.append(_run(home, "quiet-2", NullNotifier()))
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
    assert delivering > 1.0  # most notices were still queued when the replays had finished
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

"""Keep a trading session alive: run it as a child process, restart it when it crashes or hangs,
and fail closed when it cannot be kept running safely.

``solodesk supervise`` builds the command line of ``solodesk paper ... --session S --json`` and
hands it to :class:`Supervisor`, which:

1. checks the **guards** (free disk space under ``SOLODESK_HOME`` of at least ``min_free_mb``,
   and ``PRAGMA quick_check`` of the state database) before every start, and every
   ``guard_seconds`` while the child runs;
2. **starts** the child; a restarted child resumes the same session, so it reconciles its
   book with the broker's and replays from its last commit, as any resumed session does;
3. **watches** the child's exit and its heartbeat (the row the loop replaces in the
   ``heartbeats`` table at least every second, :mod:`execution.loop`): no new heartbeat from
   the child's process for ``hang_seconds`` (before its first beat, for ``start_seconds``
   from its start, or ``hang_seconds`` if longer: starting and loading a model take a while)
   means it hangs, and it is killed (SIGKILL to its process group, which ends a stopped
   process too);
4. **restarts** a child that exited non-zero, was killed by a signal or hung, after a backoff
   of ``backoff_seconds`` doubling with each restart in the window, capped at
   ``backoff_max_seconds``, while at most ``max_restarts`` restarts fall in the last
   ``restart_window_seconds`` (:class:`RestartBudget`);
5. **gives up** when the budget is spent, or when a restarted child refuses its options (exit
   status 2: a restart would be refused the same way): it halts the session's account (the
   ``halt`` control, applied at once since nothing runs it), sends a ``supervisor_gave_up``
   notice and ends with a non-zero status; a first start refused ends with status 2 and halts
   nothing (nothing ran);
6. **fails closed** when a guard trips: it asks the child to stop (the ``stop`` control, then
   SIGTERM, then SIGKILL), halts the account, notifies and ends non-zero; nothing is deleted;
7. **ends** with status 0 when the child finishes (exit 0: the session finished or stopped).

Every start, restart, give-up, guard trip and finish is a row of ``supervisor_events`` in the
state database, and each restart is notified (``supervisor_restart``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict

from core.errors import UsageError
from core.ports import Notice, NoticeKind, Notifier
from core.processes import process_running
from core.settings import Settings, SupervisorSettings
from core.times import utc_now
from feature_store.state import StateDB, SupervisorEvent, SupervisorEventKind, check_state_db

#: Who the supervisor's controls name.
WHO = "supervisor"
#: Bytes in a megabyte, as ``min_free_mb`` counts them.
MEGABYTE = 1_000_000
#: Seconds a child asked to stop by a control gets before SIGTERM, and SIGTERM before SIGKILL.
STOP_SECONDS = 10.0
TERM_SECONDS = 5.0
#: The exit status of a command that refused its input (:class:`core.errors.UsageError`).
USAGE_EXIT = 2

SupervisorStatus = Literal["finished", "stopped", "gave_up", "guard"]


# -- the policy --------------------------------------------------------------------------------


@dataclass
class RestartBudget:
    """How many restarts fit in a sliding window, and how long to wait before each.

    A restart is allowed while fewer than ``max_restarts`` restarts happened in the last
    ``window_seconds``. The k-th restart in the window waits ``backoff_seconds * 2**(k-1)``,
    at most ``backoff_max_seconds``: quick after a rare crash, slower when crashes repeat.
    Times are monotonic seconds.
    """

    max_restarts: int
    window_seconds: float
    backoff_seconds: float
    backoff_max_seconds: float
    spent: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, config: SupervisorSettings) -> RestartBudget:
        """Return an unspent budget with the limits of ``config``."""
        return cls(
            max_restarts=config.max_restarts,
            window_seconds=config.restart_window_seconds,
            backoff_seconds=config.backoff_seconds,
            backoff_max_seconds=config.backoff_max_seconds,
        )

    def recent(self, now: float) -> int:
        """Return how many restarts happened in the window ending at ``now``."""
        return sum(1 for at in self.spent if now - at < self.window_seconds)

    def allows(self, now: float) -> bool:
        """Return whether one more restart fits the budget at ``now``."""
        return self.recent(now) < self.max_restarts

    def spend(self, now: float) -> float:
        """Count a restart at ``now``; return the seconds to wait before it.

        Raises
        ------
        ValueError
            If the budget does not allow it (ask :meth:`allows` first).
        """
        if not self.allows(now):
            msg = f"no restart left: {self.max_restarts} in {self.window_seconds:g} s spent"
            raise ValueError(msg)
        self.spent = [at for at in self.spent if now - at < self.window_seconds]
        self.spent.append(now)
        return backoff_delay(len(self.spent), self.backoff_seconds, self.backoff_max_seconds)


def backoff_delay(restart: int, base: float, cap: float) -> float:
    """Return the wait before the ``restart``-th restart in a row: ``base * 2**(restart-1)``,
    at most ``cap``."""
    if restart < 1:
        raise ValueError(f"restart {restart}: restarts are counted from 1")
    if base <= 0:
        return 0.0
    doublings = min(restart - 1, 64)  # beyond that the cap holds anyway
    return min(base * math.pow(2.0, doublings), cap)


# -- the guards --------------------------------------------------------------------------------


def free_megabytes(path: Path) -> float:
    """Return the free space (MB, 10**6 bytes) of the disk holding ``path`` (or the nearest
    folder above it that exists)."""
    probe = path.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free / MEGABYTE


def guard_problem(settings: Settings, config: SupervisorSettings | None = None) -> str | None:
    """Return why trading must not go on (too little disk, a damaged state database), or None.

    ``config`` defaults to ``settings.supervisor``.
    """
    limits = config or settings.supervisor
    free = free_megabytes(settings.home)
    if free < limits.min_free_mb:
        return (
            f"only {free:,.0f} MB free on the disk of {settings.home}, below the "
            f"{limits.min_free_mb:,.0f} MB the supervisor requires: free some space (or lower "
            "[supervisor] min_free_mb)"
        )
    problem = check_state_db(settings.state_db_path)
    if problem is not None:
        return f"{problem}: stop everything that writes it and restore it from a backup"
    return None


def describe_exit(code: int) -> str:
    """Return how a child process ended, from its exit status (negative: the signal)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with status {code}"


# -- the supervisor ----------------------------------------------------------------------------


class SupervisorSummary(BaseModel):
    """What ``solodesk supervise`` did; its ``--json`` line.

    ``status``: ``finished`` or ``stopped`` (the child ended the session cleanly: exit 0),
    ``gave_up`` (restarts spent, or the child refused its options) or ``guard`` (a guard
    tripped). ``exit_code`` is the supervisor's own exit status; ``starts`` counts the child
    processes started, ``restarts`` the restarts among them. ``halt`` is what halting the
    account did (None when it was not halted); ``paper`` the child's last summary line.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    session: str
    status: SupervisorStatus
    exit_code: int
    starts: int
    restarts: int
    message: str
    halt: str | None = None
    paper: dict[str, Any] | None = None
    seconds: float


@dataclass(frozen=True)
class _End:
    """How the child ``pid`` ended: its exit status, or that it hung (and was killed), or that
    a guard tripped while it ran (it is still running); and its last stdout line, parsed."""

    pid: int
    code: int | None
    hung_seconds: float | None = None
    guard: str | None = None
    summary: dict[str, Any] | None = None


class Supervisor:
    """Run a session's command as a child process and keep it running (module docstring).

    Parameters
    ----------
    settings
        The desk's settings (its home, state database and notifications).
    session
        The session the child runs; every restart resumes it.
    command
        The child's command line; it must run ``session`` and write its JSON summary as the
        last line of its stdout (``solodesk paper ... --session S --json``).
    config
        The supervisor's limits (default ``settings.supervisor``).
    notifier
        Where the restart and give-up notices go.
    say
        Told, in a line of text, of each start, restart and ending.
    env, cwd
        The child's environment and working folder (default: this process's).
    poll_seconds
        How often the child's exit and heartbeat are looked at.
    stop_seconds
        How long a child asked to stop by a control gets before SIGTERM.
    """

    def __init__(
        self,
        settings: Settings,
        session: str,
        command: Sequence[str],
        *,
        notifier: Notifier,
        config: SupervisorSettings | None = None,
        say: Callable[[str], None] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        poll_seconds: float = 0.1,
        stop_seconds: float = STOP_SECONDS,
    ) -> None:
        if not command:
            raise UsageError("supervise: no command to run")
        self.settings = settings
        self.session = session
        self.command = list(command)
        self.config = config or settings.supervisor
        self.notifier = notifier
        self.say = say or (lambda _: None)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.poll_seconds = poll_seconds
        self.stop_seconds = stop_seconds
        self.budget = RestartBudget.of(self.config)
        self.starts = 0
        self.restarts = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._db: StateDB | None = None

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> SupervisorSummary:
        """Run the child until it finishes the session, the budget is spent or a guard trips.

        Raises
        ------
        UsageError
            If the session is running in another process already.
        """
        started = time.perf_counter()
        try:
            while True:
                problem = guard_problem(self.settings, self.config)
                if problem is not None:
                    return self._fail_closed(problem, started)
                if self._db is None:
                    self._db = StateDB.open(self.settings)
                    self._refuse_second_runner(self._db)
                end = self._run_child()
                if end.guard is not None:
                    return self._fail_closed(end.guard, started)
                if end.code == 0:
                    return self._finished(end, started)
                why = self._failure(end)
                if end.code == USAGE_EXIT:
                    return self._refused(why, end, started)
                now = time.monotonic()
                if not self.budget.allows(now):
                    why += (
                        f"; {self.budget.recent(now)} restarts in the last "
                        f"{self.config.restart_window_seconds:g} s spend the budget of "
                        f"{self.config.max_restarts}"
                    )
                    return self._give_up(why, end, started)
                delay = self.budget.spend(now)
                self.restarts += 1
                self._restart(why, end, delay)
                time.sleep(delay)
        finally:
            self._end_child()
            if self._db is not None:
                self._db.close()
                self._db = None

    def _refuse_second_runner(self, db: StateDB) -> None:
        record = db.session(self.session)
        if (
            record is not None
            and record.status == "running"
            and record.pid is not None
            and record.pid != os.getpid()
            and process_running(record.pid)
        ):
            msg = (
                f"session {self.session} is running in process {record.pid}: stop it "
                f"(solodesk stop --session {self.session}) before supervising it"
            )
            raise UsageError(msg)

    def _run_child(self) -> _End:
        """Start the child, watch it until it ends, hangs or a guard trips; return how."""
        with tempfile.TemporaryFile() as stdout:
            # Its own process group, so that ending it ends whatever it started too.
            child = subprocess.Popen(
                self.command, stdout=stdout, env=self.env, cwd=self.cwd, start_new_session=True
            )
            self._child = child
            self.starts += 1
            what = "started" if self.starts == 1 else f"restarted ({self.restarts})"
            self._record("start", pid=child.pid, reason=f"{what}: process {child.pid}")
            self.say(f"session {self.session} {what} in process {child.pid}")
            end = self._watch(child)
            if end.code is not None:
                self._child = None
            return _End(child.pid, end.code, end.hung_seconds, end.guard, _last_json(stdout))

    def _watch(self, child: subprocess.Popen[bytes]) -> _End:
        cfg = self.config
        born = time.monotonic()
        last_sign, seen = born, None
        next_guard = born + cfg.guard_seconds
        while True:
            code = child.poll()
            if code is not None:
                return _End(child.pid, code)
            now = time.monotonic()
            beat = self._heartbeat()
            if beat is not None and beat[0] == child.pid and beat != seen:
                seen, last_sign = beat, now
            silent = now - last_sign
            limit = (
                cfg.hang_seconds if seen is not None else max(cfg.hang_seconds, cfg.start_seconds)
            )
            if silent > limit:
                _signal_group(child, signal.SIGKILL)
                return _End(child.pid, child.wait(), hung_seconds=silent)
            if now >= next_guard:
                problem = guard_problem(self.settings, cfg)
                if problem is not None:
                    return _End(child.pid, None, guard=problem)
                next_guard = now + cfg.guard_seconds
            time.sleep(self.poll_seconds)

    def _heartbeat(self) -> tuple[int, str, int] | None:
        """Return the session's last heartbeat as (pid, wall time, bars), None if there is none."""
        try:
            beat = None if self._db is None else self._db.heartbeat(self.session)
        except Exception:  # a damaged database: the guards say so
            return None
        return None if beat is None else (beat.pid, beat.at.isoformat(), beat.bars)

    def _end_child(self) -> None:
        """Make sure no child outlives the supervisor: SIGTERM, then SIGKILL."""
        child, self._child = self._child, None
        if child is None or child.poll() is not None:
            return
        _signal_group(child, signal.SIGTERM)
        try:
            child.wait(TERM_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait()

    def _stop_child(self, why: str) -> str:
        """Stop a running child: the ``stop`` control, then SIGTERM, then SIGKILL; return how."""
        child = self._child
        if child is None or child.poll() is not None:
            return "no session process was running"
        how = "the session process stopped on the stop control"
        try:
            from services.runtime import request_control  # the trading stack: only when needed

            request_control(self.settings, "stop", session=self.session, who=WHO, why=why)
            child.wait(self.stop_seconds)
        except Exception as exc:  # no session yet, a damaged database, or too slow to stop
            how = f"the stop control did not stop the session process ({_short(exc)})"
        if child.poll() is None:
            self._end_child()
            how += "; it was ended by signal"
        self._child = None
        return how

    # -- outcomes ------------------------------------------------------------------------------

    def _failure(self, end: _End) -> str:
        if end.hung_seconds is not None:
            return f"process {end.pid}: no heartbeat for {end.hung_seconds:.1f} s, killed as hung"
        return f"process {end.pid} {describe_exit(end.code if end.code is not None else -1)}"

    def _restart(self, why: str, end: _End, delay: float) -> None:
        cfg = self.config
        text = (
            f"{why}; restart {self.restarts} in {delay:.1f} s "
            f"({self.budget.recent(time.monotonic())} of {cfg.max_restarts} allowed in "
            f"{cfg.restart_window_seconds:g} s)"
        )
        self._record("restart", pid=end.pid, exit_code=end.code, reason=text)
        self._notify(
            NoticeKind.SUPERVISOR_RESTART, "session restarted", text, f"restart-{self.restarts}"
        )
        self.say(f"session {self.session}: {text}")

    def _give_up(self, why: str, end: _End, started: float) -> SupervisorSummary:
        halt = self._halt(why)
        text = f"gave up: {why}; {halt}"
        self._record("gave_up", pid=end.pid, exit_code=end.code, reason=text)
        self._notify(NoticeKind.SUPERVISOR_GAVE_UP, "supervisor gave up", text, "gave-up")
        self.say(f"session {self.session}: {text}")
        code = USAGE_EXIT if end.code == USAGE_EXIT else 1
        return self._summary("gave_up", code, text, started, halt=halt, paper=end.summary)

    def _refused(self, why: str, end: _End, started: float) -> SupervisorSummary:
        """The child refused its input: a restart would be refused the same way."""
        why += ": the command refused its input (its message is above), so a restart would fail"
        if self.starts > 1:  # it ran before: fail closed
            return self._give_up(why, end, started)
        text = f"not started: {why}"  # nothing ran: nothing to protect
        self._record("gave_up", pid=end.pid, exit_code=end.code, reason=text)
        self.say(f"session {self.session}: {text}")
        return self._summary("gave_up", USAGE_EXIT, text, started, paper=end.summary)

    def _fail_closed(self, problem: str, started: float) -> SupervisorSummary:
        stopped = self._stop_child(problem)
        halt = self._halt(problem)
        text = f"guard: {problem}; {stopped}; {halt}"
        self._record("guard", reason=text)
        self._notify(NoticeKind.SUPERVISOR_GAVE_UP, "trading halted by a guard", text, "guard")
        self.say(f"session {self.session}: {text}")
        return self._summary("guard", 1, text, started, halt=halt)

    def _finished(self, end: _End, started: float) -> SupervisorSummary:
        paper = end.summary or {}
        status: SupervisorStatus = "stopped" if paper.get("status") == "stopped" else "finished"
        text = f"session {status}" + (f": {paper['message']}" if paper.get("message") else "")
        if self.restarts:
            text += f" ({self.restarts} restarts)"
        self._record("finished", pid=end.pid, exit_code=0, reason=text)
        self.say(f"session {self.session}: {text}")
        return self._summary(status, 0, text, started, paper=end.summary)

    def _halt(self, why: str) -> str:
        """Halt the session's account (the child is not running: applied at once)."""
        try:
            from services.runtime import request_control

            request = request_control(
                self.settings, "halt", session=self.session, who=WHO, why=f"supervisor: {why}"
            )
        except Exception as exc:  # no such session, or a database that cannot be written
            return f"the account could not be halted ({_short(exc)})"
        return f"account halted: {request.result}" if request.result else "halt requested"

    # -- records -------------------------------------------------------------------------------

    def _record(
        self,
        kind: SupervisorEventKind,
        *,
        pid: int | None = None,
        exit_code: int | None = None,
        reason: str = "",
    ) -> None:
        """Store a supervisor event; a database that cannot take it is reported, not fatal."""
        event = SupervisorEvent(
            session=self.session, at=utc_now(), kind=kind, pid=pid, exit_code=exit_code,
            restarts=self.restarts, reason=reason,
        )  # fmt: skip
        try:
            if self._db is None:
                self._db = StateDB.open(self.settings)
            self._db.record_supervisor_event(event)
        except Exception as exc:
            self.say(f"session {self.session}: {kind} event not recorded ({_short(exc)})")

    def _notify(self, kind: NoticeKind, title: str, body: str, key: str) -> None:
        notice = Notice(
            kind=kind, title=title, body=body, session=self.session, ts=utc_now(),
            key=f"{self.session}:{key}",
        )  # fmt: skip
        self.notifier.notify(notice)

    def _summary(
        self,
        status: SupervisorStatus,
        code: int,
        message: str,
        started: float,
        *,
        halt: str | None = None,
        paper: dict[str, Any] | None = None,
    ) -> SupervisorSummary:
        return SupervisorSummary(
            session=self.session, status=status, exit_code=code, starts=self.starts,
            restarts=self.restarts, message=message, halt=halt, paper=paper,
            seconds=round(time.perf_counter() - started, 3),
        )  # fmt: skip


def _signal_group(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the child's process group (the child and what it started)."""
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # not a group of ours after all: the child alone
        child.send_signal(sig)


def _last_json(stream: IO[bytes]) -> dict[str, Any] | None:
    """Return the last line a child wrote to ``stream``, parsed, when it is a JSON object."""
    stream.seek(0)
    lines = [line for line in stream.read().decode("utf-8", "replace").splitlines() if line]
    if not lines:
        return None
    try:
        value = json.loads(lines[-1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

"""The supervisor's policy (restart budget, backoff), its guards (disk space, a damaged state
database), the heartbeat and supervisor tables, and the supervisor driving small stand-in
children (real processes) that finish, fail, refuse their options, hang or outlive a guard."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import UsageError
from core.ports import NoticeKind, NullNotifier
from core.processes import process_running
from core.settings import Settings, SupervisorSettings
from feature_store.state import (
    SCHEMA_VERSION,
    SessionRecord,
    StateDB,
    SupervisorEvent,
    check_state_db,
)
from services import supervisor as supervisor_module
from services.runtime import risk_status
from services.supervisor import (
    RestartBudget,
    Supervisor,
    backoff_delay,
    describe_exit,
    free_megabytes,
    guard_problem,
)

SESSION = "sv1"
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def _config(**changes: float) -> SupervisorSettings:
    base = {
        "backoff_seconds": 0.0, "hang_seconds": 30.0, "start_seconds": 0.5, "min_free_mb": 0.0,
        "guard_seconds": 0.2,
    }  # fmt: skip
    return SupervisorSettings(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A desk with one paper session at rest (so a halt of its account applies at once)."""
    desk = Settings(home=tmp_path / "home")
    with StateDB.open(desk) as db:
        db.create_session(
            SessionRecord(
                session=SESSION, account=f"paper:{SESSION}", kind="paper", symbol="EURUSD",
                timeframe="H1", strategy="sma_cross", created=T0, status="crashed",
            )
        )  # fmt: skip
        db.commit()
    return desk


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _events(settings: Settings) -> list[SupervisorEvent]:
    with StateDB.open(settings) as db:
        return db.supervisor_events(SESSION)


def _halted(settings: Settings) -> bool:
    return risk_status(settings, SESSION).state.value == "halted"


def _supervisor(
    settings: Settings, command: list[str], notifier: NullNotifier, **changes: float
) -> Supervisor:
    return Supervisor(
        settings, SESSION, command, notifier=notifier, config=_config(**changes),
        poll_seconds=0.02, stop_seconds=0.5,
    )  # fmt: skip


# -- the policy --------------------------------------------------------------------------------


def test_backoff_delay_doubles_from_base_up_to_cap() -> None:
    # Arrange
    base, cap = 1.0, 10.0

    # Act
    delays = [backoff_delay(n, base, cap) for n in range(1, 7)]

    # Assert
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_delay(10_000, base, cap) == cap
    assert backoff_delay(3, 0.0, cap) == 0.0


def test_backoff_delay_restart_zero_raises() -> None:
    with pytest.raises(ValueError, match="counted from 1"):
        backoff_delay(0, 1.0, 10.0)


def test_restart_budget_allows_max_restarts_per_window_then_refuses() -> None:
    # Arrange
    budget = RestartBudget(max_restarts=3, window_seconds=100.0, backoff_seconds=1.0,
                           backoff_max_seconds=3.0)  # fmt: skip

    # Act
    delays = [budget.spend(now) for now in (0.0, 10.0, 20.0)]

    # Assert: the k-th restart in the window waits longer, capped; the fourth does not fit
    assert delays == [1.0, 2.0, 3.0]
    assert not budget.allows(30.0)
    with pytest.raises(ValueError, match="no restart left"):
        budget.spend(30.0)


def test_restart_budget_window_slides_old_restarts_out() -> None:
    # Arrange
    budget = RestartBudget(max_restarts=2, window_seconds=100.0, backoff_seconds=1.0,
                           backoff_max_seconds=60.0)  # fmt: skip
    budget.spend(0.0)
    budget.spend(50.0)

    # Act
    blocked = budget.allows(99.0)
    freed = budget.allows(100.0)  # the restart at 0 has left the window
    delay = budget.spend(100.0)

    # Assert: one restart in the window before this one, so the backoff is the second step
    assert (blocked, freed) == (False, True)
    assert delay == 2.0
    assert budget.recent(100.0) == 2


def test_restart_budget_of_zero_never_allows() -> None:
    budget = RestartBudget.of(SupervisorSettings(max_restarts=0))
    assert not budget.allows(0.0)


def test_describe_exit_names_signal_or_status() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-19) == "killed by SIGSTOP"
    assert describe_exit(1) == "exited with status 1"


# -- the guards --------------------------------------------------------------------------------


def test_guard_problem_healthy_desk_none(settings: Settings) -> None:
    assert guard_problem(settings, _config()) is None


def test_guard_problem_free_disk_below_threshold_names_it(settings: Settings) -> None:
    # Arrange: a threshold no disk reaches
    free = free_megabytes(settings.home)

    # Act
    problem = guard_problem(settings, _config(min_free_mb=1e15))

    # Assert
    assert problem is not None
    assert "MB free on the disk of" in problem and "min_free_mb" in problem
    assert free > 0


def test_free_megabytes_missing_folder_measures_nearest_existing(tmp_path: Path) -> None:
    assert free_megabytes(tmp_path / "not" / "yet") == pytest.approx(
        free_megabytes(tmp_path), rel=0.01
    )


def test_guard_problem_threshold_from_settings_env(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: the threshold set as a person sets it
    monkeypatch.setenv("SOLODESK_SUPERVISOR__MIN_FREE_MB", "1e15")
    desk = Settings(home=settings.home)

    # Act
    problem = guard_problem(desk)

    # Assert
    assert desk.supervisor.min_free_mb == 1e15
    assert problem is not None and "MB free" in problem


def _damage_pages(path: Path) -> bytes:
    """Overwrite every page after the first with noise; return the file as damaged."""
    with StateDB(path) as db:  # make a database of several pages
        for n in range(300):
            db.beat(f"s{n}", n, T0, n)
        db.commit()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * page
    for at in range(page, len(data), 7):
        data[at] = (data[at] * 31 + 17) % 256
    path.write_bytes(bytes(data))
    return bytes(data)


def test_check_state_db_damaged_pages_reported_and_file_untouched(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "runtime.db"
    damaged = _damage_pages(path)

    # Act
    problem = check_state_db(path)

    # Assert
    assert problem is not None and str(path) in problem
    assert path.read_bytes() == damaged


def test_check_state_db_not_a_database_reported(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "runtime.db"
    path.write_bytes(b"this is no SQLite file" * 200)

    # Act
    problem = check_state_db(path)

    # Assert
    assert problem is not None and "cannot be checked" in problem


def test_check_state_db_sound_or_missing_none(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    assert check_state_db(path) is None
    StateDB(path).close()
    assert check_state_db(path) is None


# -- the tables --------------------------------------------------------------------------------


def test_beat_replaces_the_sessions_last_heartbeat(tmp_path: Path) -> None:
    # Arrange
    with StateDB(tmp_path / "runtime.db") as db:
        before = db.heartbeat("a")

        # Act
        db.beat("a", 11, T0, 5)
        db.beat("a", 12, T0 + timedelta(seconds=1), 9)
        db.beat("b", 13, T0, 1)
        db.commit()
        beat = db.heartbeat("a")

    # Assert
    assert before is None
    assert beat is not None
    assert (beat.pid, beat.at, beat.bars) == (12, T0 + timedelta(seconds=1), 9)


def test_supervisor_events_round_trip_in_order(tmp_path: Path) -> None:
    # Arrange
    events = [
        SupervisorEvent(session="a", at=T0, kind="start", pid=7, reason="started"),
        SupervisorEvent(session="a", at=T0, kind="restart", pid=7, exit_code=-9, restarts=1),
        SupervisorEvent(session="b", at=T0, kind="finished", exit_code=0),
    ]
    with StateDB(tmp_path / "runtime.db") as db:
        ids = [db.record_supervisor_event(e) for e in events]

    # Act: another connection sees them (each is committed at once)
    with StateDB(tmp_path / "runtime.db") as db:
        mine, every = db.supervisor_events("a"), db.supervisor_events()

    # Assert
    assert [e.model_copy(update={"id": None}) for e in mine] == events[:2]
    assert [e.id for e in every] == ids == sorted(ids)


def test_state_db_of_layout_1_gains_heartbeat_tables_on_open(tmp_path: Path) -> None:
    # Arrange: a database as the previous layout left it
    path = tmp_path / "runtime.db"
    StateDB(path).close()
    con = sqlite3.connect(path)
    con.execute("DROP TABLE heartbeats")
    con.execute("DROP TABLE supervisor_events")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()

    # Act
    with StateDB(path) as db:
        db.beat("a", 1, T0, 0)
        db.commit()
        beat = db.heartbeat("a")
        events = db.supervisor_events()

    # Assert
    assert beat is not None and events == []
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    con.close()


# -- the supervisor with stand-in children -----------------------------------------------------


def test_supervisor_child_exits_zero_finished_with_its_summary(settings: Settings) -> None:
    # Arrange
    line = json.dumps({"status": "finished", "message": "10 bars", "ledger_hash": "abc"})
    notifier = NullNotifier()
    child = _python(f"print('table'); print({line!r})")

    # Act
    summary = _supervisor(settings, child, notifier).run()

    # Assert
    assert (summary.status, summary.exit_code, summary.starts, summary.restarts) == (
        "finished", 0, 1, 0,
    )  # fmt: skip
    assert summary.paper == json.loads(line)
    assert [e.kind for e in _events(settings)] == ["start", "finished"]
    assert notifier.sent == []
    assert not _halted(settings)


def test_supervisor_child_always_fails_restarts_then_gives_up_halted(settings: Settings) -> None:
    # Arrange
    notifier = NullNotifier()

    # Act
    summary = _supervisor(settings, _python("raise SystemExit(1)"), notifier, max_restarts=2).run()

    # Assert: two restarts, then the budget is spent; the account is halted and told
    assert (summary.status, summary.exit_code, summary.starts, summary.restarts) == (
        "gave_up", 1, 3, 2,
    )  # fmt: skip
    assert summary.halt is not None and "halt applied" in summary.halt
    assert _halted(settings)
    kinds = [n.kind for n in notifier.sent]
    assert kinds == [NoticeKind.SUPERVISOR_RESTART] * 2 + [NoticeKind.SUPERVISOR_GAVE_UP]
    assert all(n.session == SESSION for n in notifier.sent)
    events = _events(settings)
    assert [e.kind for e in events] == ["start", "restart", "start", "restart", "start", "gave_up"]
    assert [e.exit_code for e in events if e.kind != "start"] == [1, 1, 1]
    assert "exited with status 1" in events[-1].reason and "budget" in events[-1].reason


def test_supervisor_restart_waits_the_backoff(settings: Settings) -> None:
    # Arrange
    notifier = NullNotifier()
    started = time.monotonic()

    # Act: two restarts, waiting 0.1 s then 0.2 s
    summary = _supervisor(
        settings, _python("raise SystemExit(3)"), notifier, max_restarts=2, backoff_seconds=0.1
    ).run()

    # Assert
    assert summary.restarts == 2
    assert time.monotonic() - started >= 0.3
    bodies = [n.body for n in notifier.sent if n.kind is NoticeKind.SUPERVISOR_RESTART]
    assert "restart 1 in 0.1 s" in bodies[0] and "restart 2 in 0.2 s" in bodies[1]


def test_supervisor_child_refuses_options_first_start_exit_2_not_halted(
    settings: Settings,
) -> None:
    # Arrange
    notifier = NullNotifier()

    # Act
    summary = _supervisor(settings, _python("raise SystemExit(2)"), notifier).run()

    # Assert: nothing ran, so nothing is halted; no restart would help
    assert (summary.status, summary.exit_code, summary.starts, summary.restarts) == (
        "gave_up", 2, 1, 0,
    )  # fmt: skip
    assert summary.halt is None and not _halted(settings)
    assert notifier.sent == []


def test_supervisor_silent_child_killed_as_hung(settings: Settings) -> None:
    # Arrange: a child that never beats
    notifier = NullNotifier()
    child = _python("import time; time.sleep(60)")
    started = time.monotonic()

    # Act
    summary = _supervisor(settings, child, notifier, hang_seconds=0.5, max_restarts=0).run()

    # Assert
    assert summary.status == "gave_up" and summary.exit_code == 1
    assert time.monotonic() - started < 5
    events = _events(settings)
    pid = events[0].pid
    assert pid is not None and not process_running(pid)
    assert events[-1].exit_code == -9 and "no heartbeat" in events[-1].reason
    assert _halted(settings)


def test_supervisor_beating_child_not_killed_as_hung(settings: Settings) -> None:
    # Arrange: a child that beats every 0.1 s for 1 s (twice the hang limit), then exits 0
    db_path = str(settings.state_db_path)
    code = (
        "import os, sqlite3, time\n"
        f"con = sqlite3.connect({db_path!r})\n"
        "for n in range(10):\n"
        "    con.execute('INSERT OR REPLACE INTO heartbeats VALUES (?, ?, ?, ?)',"
        f" [{SESSION!r}, os.getpid(), f'2026-01-01T00:00:{{n:02d}}.000000Z', n])\n"
        "    con.commit()\n"
        "    time.sleep(0.1)\n"
    )
    notifier = NullNotifier()

    # Act
    summary = _supervisor(settings, _python(code), notifier, hang_seconds=0.5).run()

    # Assert
    assert (summary.status, summary.restarts) == ("finished", 0)


def test_supervisor_beat_of_another_process_does_not_count(settings: Settings) -> None:
    # Arrange: heartbeats that name another pid (a previous child)
    db_path = str(settings.state_db_path)
    code = (
        "import sqlite3, time\n"
        f"con = sqlite3.connect({db_path!r})\n"
        "for n in range(40):\n"
        "    con.execute('INSERT OR REPLACE INTO heartbeats VALUES (?, ?, ?, ?)',"
        f" [{SESSION!r}, 1, f'2026-01-01T00:00:{{n:02d}}.000000Z', n])\n"
        "    con.commit()\n"
        "    time.sleep(0.1)\n"
    )

    # Act
    summary = _supervisor(
        settings, _python(code), NullNotifier(), hang_seconds=0.5, max_restarts=0
    ).run()

    # Assert
    assert summary.status == "gave_up"
    assert "no heartbeat" in _events(settings)[-1].reason


def test_supervisor_guard_before_start_halts_and_starts_nothing(settings: Settings) -> None:
    # Arrange
    notifier = NullNotifier()
    size = settings.state_db_path.stat().st_size

    # Act
    summary = _supervisor(settings, _python("pass"), notifier, min_free_mb=1e15).run()

    # Assert
    assert (summary.status, summary.exit_code, summary.starts) == ("guard", 1, 0)
    assert "MB free" in summary.message
    assert _halted(settings)
    assert [n.kind for n in notifier.sent] == [NoticeKind.SUPERVISOR_GAVE_UP]
    assert [e.kind for e in _events(settings)] == ["guard"]
    assert settings.state_db_path.stat().st_size >= size  # nothing deleted


@pytest.fixture
def disk_fills_up(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Make the disk look full from the third look on (the first two are before the start and
    the first check while the child runs)."""
    looks: list[float] = []

    def free(path: Path) -> float:
        looks.append(time.monotonic())
        return 1e12 if len(looks) <= 2 else 1.0

    monkeypatch.setattr(supervisor_module, "free_megabytes", free)
    yield looks


def test_supervisor_guard_while_running_stops_child_and_halts(
    settings: Settings, disk_fills_up: list[float]
) -> None:
    # Arrange: a child that ignores the stop control (it is no loop) but not SIGTERM
    notifier = NullNotifier()
    child = _python("import time; time.sleep(60)")

    # Act
    summary = _supervisor(settings, child, notifier, min_free_mb=10.0).run()

    # Assert
    assert (summary.status, summary.exit_code, summary.starts) == ("guard", 1, 1)
    assert "ended by signal" in summary.message
    events = _events(settings)
    pid = events[0].pid
    assert pid is not None and not process_running(pid)
    assert [e.kind for e in events] == ["start", "guard"]
    assert _halted(settings)
    assert [n.kind for n in notifier.sent] == [NoticeKind.SUPERVISOR_GAVE_UP]
    with StateDB.open(settings) as db:
        stops = [c for c in db.controls(SESSION) if c.action == "stop"]
    assert len(stops) == 1 and stops[0].who == "supervisor"


def test_supervisor_damaged_state_db_fails_closed_and_keeps_the_file(settings: Settings) -> None:
    # Arrange
    damaged = _damage_pages(settings.state_db_path)
    notifier = NullNotifier()

    # Act
    summary = _supervisor(settings, _python("pass"), notifier).run()

    # Assert: nothing started, the alert went out, the damaged file is as it was
    assert (summary.status, summary.exit_code, summary.starts) == ("guard", 1, 0)
    assert "integrity" in summary.message or "cannot be checked" in summary.message
    assert [n.kind for n in notifier.sent] == [NoticeKind.SUPERVISOR_GAVE_UP]
    assert settings.state_db_path.read_bytes() == damaged


def test_supervisor_session_running_elsewhere_refused(settings: Settings) -> None:
    # Arrange: the session runs in a live process (this one's parent)
    with StateDB.open(settings) as db:
        db.update_session(SESSION, status="running", pid=os.getppid())
        db.commit()

    # Act / Assert
    with pytest.raises(UsageError, match="is running in process"):
        _supervisor(settings, _python("pass"), NullNotifier()).run()


def test_supervisor_no_command_refused(settings: Settings) -> None:
    with pytest.raises(UsageError, match="no command"):
        Supervisor(settings, SESSION, [], notifier=NullNotifier())

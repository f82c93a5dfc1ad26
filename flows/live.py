"""The live desk's flows: ``store-live-bars`` and ``trader``.

``store-live-bars`` moves the closed bars live sessions kept in the state database into the
bar store through the ordinary ingest path: each session's bars the store lacks are written
to a Parquet file in the session's drop folder (:func:`services.live_bars.export_live_bars`),
and the ``ingest`` flow runs on that folder as a subflow with the session's symbol,
timeframe, side and volume kind, moving the file to ``done/`` once stored. A file whose ingest
failed stays in the folder and is ingested by the next run: nothing is lost.

``trader`` starts, stops or reports on a trading session and returns at once: ``start`` runs
``solodesk supervise --session S -- ARGS`` detached (its own process group, output appended to
a log under the state folder), ``stop`` queues a ``stop`` control, ``status`` reads the
session's heartbeat, positions and risk standing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

from prefect import flow

from core.errors import SolodeskError, UsageError
from core.processes import process_running
from core.settings import Settings
from core.times import iso_z, iso_z_or_none, utc_now
from feature_store.state import Heartbeat, SessionRecord, StateDB, SupervisorEvent
from flows.common import desk, io_task, markdown, md_table, table
from flows.ingest import ingest_flow
from flows.notices import on_flow_failure
from services.live_bars import LiveBarsExport, check_session_name, export_live_bars, live_sessions
from services.runtime import list_sessions, request_control, risk_status, session_positions

#: How the trader flow runs the command line (a test points it at a stand-in).
SOLODESK_COMMAND: tuple[str, ...] = (sys.executable, "-m", "app.cli")

TraderAction = Literal["start", "stop", "status"]


# -- store-live-bars ---------------------------------------------------------------------------


@io_task
def live_sessions_step(settings: Settings, session: str | None) -> list[SessionRecord]:
    """Return the sessions that kept bars (only ``session`` when given)."""
    records = live_sessions(settings)
    if session is None:
        return records
    chosen = [r for r in records if r.session == session]
    if not chosen:
        kept = ", ".join(r.session for r in records) or "none"
        raise UsageError(f"session {session!r} kept no bars (sessions that did: {kept})")
    return chosen


@io_task
def export_step(settings: Settings, record: SessionRecord) -> LiveBarsExport:
    """Write the session's bars the store lacks to its drop folder (:func:`export_live_bars`)."""
    return export_live_bars(settings, record)


def _waiting(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.is_file() and not p.name.startswith(".") for p in folder.iterdir()
    )


@flow(name="store-live-bars", on_failure=[on_flow_failure], log_prints=True)
def store_live_bars_flow(
    session: str | None = None, reports: bool = True, home: str | None = None
) -> dict[str, Any]:
    """Store the closed bars live sessions kept (of ``session``, or of every one) in the bar store.

    Returns one entry per session: its series, the bars it kept, those new to the store, and
    what the ingest run stored.
    """
    settings = desk(home)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for record in live_sessions_step(settings, session):
        export = export_step(settings, record)
        row: dict[str, Any] = {
            "session": record.session, "series": str(export.key), "kept": export.kept,
            "new": export.new, "file": export.file.name if export.file else None,
            "run": None, "rows_added": 0, "rows_duplicate": 0, "rows_quarantined": 0,
        }  # fmt: skip
        if _waiting(export.folder):
            state = ingest_flow(
                folder=str(export.folder), symbol=export.key.symbol,
                timeframe=export.key.timeframe, side=export.key.side,
                volume_kind=export.volume_kind, reports=reports, home=home, return_state=True,
            )  # fmt: skip
            if state.is_completed():
                result = state.result()
                row["run"] = result["run"]
                for count in ("rows_added", "rows_duplicate", "rows_quarantined"):
                    row[count] = sum(s[count] for s in result["series"])
            else:
                failed.append(f"{record.session}: {state.message}")
        rows.append(row)
    table("store-live-bars", rows, "live bars stored, one row per session")
    body = "\n".join(
        ["# Live bars", f"{len(rows)} session(s) kept bars.", "", md_table(rows)]
        + [f"- ingest failed for {f}; its file waits in the session's folder" for f in failed]
    )
    markdown("store-live-bars-summary", body, "what the live sessions' bars added to the store")
    if failed:
        raise SolodeskError("live bars not stored: " + "; ".join(failed))
    return {"sessions": rows}


# -- trader ----------------------------------------------------------------------------------


def trader_log(settings: Settings, session: str) -> Path:
    """Return the log of a session's supervisor started by the trader flow."""
    return settings.trader_log_path(check_session_name(session))


def _session(settings: Settings, session: str) -> SessionRecord | None:
    return next((r for r in list_sessions(settings) if r.session == session), None)


def _running(record: SessionRecord | None) -> bool:
    return (
        record is not None
        and record.status == "running"
        and record.pid is not None
        and process_running(record.pid)
    )


@io_task(name="start_trader")
def start_step(settings: Settings, session: str, args: list[str]) -> dict[str, Any]:
    """Start ``solodesk supervise --session S -- ARGS`` detached; return its pid and log."""
    if _running(_session(settings, session)):
        raise UsageError(f"session {session!r} is running already: stop it first")
    log = trader_log(settings, session)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [*SOLODESK_COMMAND, "supervise", "--session", session, "--", *args]
    env = {**os.environ, "SOLODESK_HOME": str(settings.home.resolve())}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    return {"pid": process.pid, "log": str(log), "command": command}


@io_task(name="stop_trader")
def stop_step(settings: Settings, session: str) -> dict[str, Any]:
    """Queue a ``stop`` control for the session (:func:`services.runtime.request_control`)."""
    request = request_control(settings, "stop", session=session, why="stopped by the trader flow")
    return request.model_dump(mode="json")


def _heartbeat(settings: Settings, session: str) -> tuple[Heartbeat | None, SupervisorEvent | None]:
    with StateDB.open(settings) as db:
        events = db.supervisor_events(session)
        return db.heartbeat(session), (events[-1] if events else None)


@io_task(name="trader_status")
def status_step(settings: Settings, session: str) -> dict[str, Any]:
    """Return the session's record, heartbeat, last supervisor event, positions and risk."""
    record = _session(settings, session)
    if record is None:
        known = ", ".join(r.session for r in list_sessions(settings)[-5:]) or "none"
        raise UsageError(f"no session {session!r} (latest: {known})")
    beat, event = _heartbeat(settings, session)
    now = utc_now()
    age = None if beat is None else (now - beat.at).total_seconds()
    alive = (
        record.status == "running"
        and beat is not None
        and age is not None
        and age <= settings.supervisor.hang_seconds
        and process_running(beat.pid)
    )
    risk = risk_status(settings, session)
    return {
        "session": session,
        "status": record.status,
        "paused": record.paused,
        "pid": record.pid,
        "running": _running(record),
        "updated": iso_z_or_none(record.updated),
        "bars": record.bars,
        "heartbeat": None if beat is None else {**beat.model_dump(mode="json"), "age": age},
        "alive": alive,
        "supervisor": None if event is None else event.model_dump(mode="json"),
        "positions": session_positions(settings, session),
        "risk": risk.model_dump(mode="json"),
        "at": iso_z(now),
    }


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.4g}"


def _status_markdown(status: dict[str, Any]) -> str:
    beat = status["heartbeat"]
    beat_line = (
        f"heartbeat {beat['at']} ({beat['age']:.1f} s ago, pid {beat['pid']}, {beat['bars']} bars): "
        + ("alive" if status["alive"] else "silent")
        if beat
        else f"no heartbeat; the session record was last updated {status['updated'] or 'never'}"
    )
    risk = status["risk"]
    lines = [
        f"# Session {status['session']}: {status['status']}"
        + (" (paused)" if status["paused"] else ""),
        f"- {beat_line}",
        f"- bars processed: {status['bars']}",
        f"- risk: {risk['state']}"
        + (f" since {risk['since']}" if risk.get("since") else "")
        + (f" ({risk['reason']})" if risk.get("reason") else ""),
        f"- daily P&L {_figure(risk['daily_pnl'])}, drawdown {_figure(risk['drawdown'])}",
    ]
    if status["supervisor"]:
        event = status["supervisor"]
        lines.append(f"- supervisor: {event['kind']} at {event['at']} {event['reason']}".rstrip())
    lines += ["", "## Positions", "", md_table(status["positions"])]
    return "\n".join(lines)


@flow(name="trader", on_failure=[on_flow_failure], log_prints=True)
def trader_flow(
    action: TraderAction,
    session: str,
    args: list[str] | None = None,
    home: str | None = None,
) -> dict[str, Any]:
    """Start, stop or report on a trading session; return at once.

    ``start``: run ``solodesk supervise --session SESSION -- ARGS`` detached, ``args`` being
    the paper command's options (``["--symbol", "EURUSD", "--timeframe", "H1", ...]``).
    ``stop``: queue a ``stop`` control (applied between bars by the running loop).
    ``status``: the heartbeat (else the session record's last update), positions and risk.
    """
    settings = desk(home)
    if action == "start":
        started = start_step(settings, session, list(args or []))
        markdown(
            f"trader-start-{session}",
            f"# Session {session}: started\n\nSupervisor pid {started['pid']}, log "
            f"`{started['log']}`.\n\n`{' '.join(started['command'])}`",
            "the supervisor started",
        )
        return {"action": action, "session": session, **started}
    if args:
        raise UsageError(f"args are the paper options of start, not of {action}")
    if action == "stop":
        request = stop_step(settings, session)
        result = request.get("result") or "queued: the running loop applies it between bars"
        markdown(f"trader-stop-{session}", f"# Session {session}: stop\n\n{result}", "the stop")
        return {"action": action, "session": session, "control": request}
    status = status_step(settings, session)
    markdown(f"trader-status-{session}", _status_markdown(status), "the session's standing")
    return {"action": action, **status}

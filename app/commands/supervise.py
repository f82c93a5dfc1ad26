"""``solodesk supervise``: run a paper session as a child process and keep it running."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Annotated, Any, Optional

import typer

from app.options import JsonOpt, SessionOpt
from app.output import cell, emit, err, out, print_table
from core.errors import UsageError, options_error

MaxRestartsOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--max-restarts", min=0,
        help="Restarts allowed in the restart window (default: setting max_restarts, 5 an hour).",
    ),
]  # fmt: skip
HangSecondsOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--hang-seconds", min=0.0,
        help="Kill and restart a child silent this long (default: setting hang_seconds, 30).",
    ),
]  # fmt: skip
StartSecondsOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--start-seconds", min=0.0,
        help="A child's time for its first heartbeat (default: setting start_seconds, 120).",
    ),
]  # fmt: skip
BackoffOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--backoff", min=0.0,
        help="Seconds before the first restart, doubling with each (default: setting "
        "backoff_seconds, 1).",
    ),
]  # fmt: skip
PaperArgs = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(
        metavar="-- PAPER_OPTIONS",
        help="The options of solodesk paper, after --, without --session.",
        show_default=False,
    ),
]


def paper_command(paper_args: list[str], session: str) -> list[str]:
    """Return the command line of ``solodesk paper PAPER_ARGS --session SESSION --json``, run by
    this interpreter.

    Raises
    ------
    UsageError
        If no paper option is given, or ``--session`` is among them.
    """
    if not paper_args:
        msg = (
            "give the options of solodesk paper after --, e.g. solodesk supervise --session eu1 "
            "-- --symbol EURUSD --timeframe H1 --strategy sma_cross --spread 1.0"
        )
        raise UsageError(msg)
    if any(a == "--session" or a.startswith("--session=") for a in paper_args):
        raise UsageError("give --session before -- (the supervisor names the session it restarts)")
    extra = [] if "--json" in paper_args else ["--json"]
    return [sys.executable, "-m", "app.cli", "paper", *paper_args, "--session", session, *extra]


def supervise(
    paper_args: PaperArgs = None,
    session: SessionOpt = None,
    max_restarts: MaxRestartsOpt = None,
    hang_seconds: HangSecondsOpt = None,
    start_seconds: StartSecondsOpt = None,
    backoff: BackoffOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run solodesk paper as a child process; restart it when it crashes or hangs.

    The paper options come after --. A restart resumes the same session (named by --session,
    or a new name kept for every restart), reconciling it as any resume does. Crashes and
    hangs (no heartbeat for --hang-seconds) restart it after a doubling backoff while the
    restart budget lasts; then the account is halted, an alert sent and the exit status is 1.
    Too little disk space or a damaged state database stop the child and halt the account.
    Exit 0 when the session finishes or is stopped.
    """
    from pydantic import ValidationError

    from core.ids import new_run_id
    from core.settings import SupervisorSettings, load_settings
    from services.notify import open_notifier
    from services.supervisor import Supervisor

    settings = load_settings()
    name = session or new_run_id("paper")
    command = paper_command(list(paper_args or []), name)
    updates: dict[str, Any] = {
        "max_restarts": max_restarts, "hang_seconds": hang_seconds, "backoff_seconds": backoff,
        "start_seconds": start_seconds,
    }  # fmt: skip
    given = {k: v for k, v in updates.items() if v is not None}
    try:
        config = SupervisorSettings.model_validate({**settings.supervisor.model_dump(), **given})
    except ValidationError as exc:
        raise options_error("supervisor", exc) from None
    if session is None:
        err().print(f"supervising new session {name}", markup=False, highlight=False)
    notifier = open_notifier(settings)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None  # ends the child too
    try:
        supervisor = Supervisor(
            settings, name, command, notifier=notifier, config=config,
            say=lambda text: err().print(text, markup=False, highlight=False, soft_wrap=True),
        )  # fmt: skip
        summary = supervisor.run()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        notifier.close()
    if as_json:
        emit(summary)
    else:
        rows = [(k, cell(getattr(summary, k))) for k in (
            "session", "status", "starts", "restarts", "exit_code", "seconds")]  # fmt: skip
        print_table(f"supervised session {summary.session}", ("", "value"), rows,
                    right=("value",), console=out())  # fmt: skip
        out().print(summary.message, markup=False, highlight=False, soft_wrap=True)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")

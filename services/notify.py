"""Notifications: the runtime's notifier, and the test notice ``solodesk notify test`` sends.

The trading runtime's services get their :class:`core.ports.Notifier` from
:func:`open_notifier`: Apprise when URLs are configured (undelivered notices spooled at
``settings.notify_spool_path``), otherwise one that logs each notice; either way every notice
is recorded in the alert log, ``settings.notice_log_path``, with what became of it.
:func:`alert_log` reads its latest entries.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from core.errors import SolodeskError, UsageError
from core.ports import Notice, NoticeKind
from core.settings import Settings
from core.times import utc_now
from execution.notify import (
    AppriseNotifier,
    LoggedNotifier,
    LogNotifier,
    NoticeLog,
    NoticeLogEntry,
    NoticeOutcome,
    notice_modes,
    read_notice_log,
    send_now,
)

NO_URLS = (
    "no notification URLs configured: set urls in [notify] of solodesk.toml "
    '(e.g. urls = ["tgram://BOT_TOKEN/CHAT_ID"]) or SOLODESK_NOTIFY__URLS'
)


class NotifyTestResult(BaseModel):
    """What ``notify test`` did: how many targets, whether every one got the notice; the
    ``--json`` line. ``message`` says what happened (why not, when it was not sent)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: int
    sent: bool
    seconds: float
    message: str


def open_notifier(settings: Settings) -> LoggedNotifier:
    """Return the desk's notifier: Apprise when URLs are set (spooling at
    ``settings.notify_spool_path``), else one that logs each notice at INFO; wrapped so every
    notice, and what became of it, goes to the alert log (``settings.notice_log_path``).

    Raises
    ------
    UsageError
        If a URL is not one Apprise understands, or ``[notify] events`` is bad.
    """
    log = NoticeLog(settings.notice_log_path, notice_modes(settings.notify))
    if not settings.notify.urls:
        return LoggedNotifier(LogNotifier(settings.notify), log, NoticeOutcome.LOGGED)
    inner = AppriseNotifier(settings.notify, settings.notify_spool_path, on_outcome=log.settled)
    return LoggedNotifier(inner, log)


def alert_log(
    settings: Settings, limit: int = 200, kinds: tuple[str, ...] | None = None
) -> list[NoticeLogEntry]:
    """Return the latest ``limit`` notices of the desk's alert log (of ``kinds`` when given),
    newest first; none on a desk that has raised none."""
    return read_notice_log(settings.notice_log_path, limit, kinds)


def send_test(settings: Settings) -> NotifyTestResult:
    """Send one TEST notice to every configured URL and wait for the outcome; the notice and
    its outcome (delivered or dropped) go to the alert log.

    Raises
    ------
    UsageError
        If a URL is not one Apprise understands, or ``[notify] events`` is bad.
    """
    modes = notice_modes(settings.notify)  # a bad [notify] events is reported without URLs
    targets = len(settings.notify.urls)
    if not targets:
        return NotifyTestResult(targets=0, sent=False, seconds=0.0, message=NO_URLS)
    notice = Notice(
        kind=NoticeKind.TEST,
        title="solodesk test notice",
        body="Notifications from this desk reach you.",
        ts=utc_now(),
    )
    log = NoticeLog(settings.notice_log_path, modes)
    started = time.perf_counter()
    try:
        reached = send_now(settings.notify, notice)
    except UsageError:
        raise
    except SolodeskError as exc:
        seconds = time.perf_counter() - started
        log.raised(notice, NoticeOutcome.DROPPED)
        return NotifyTestResult(targets=targets, sent=False, seconds=seconds, message=str(exc))
    seconds = time.perf_counter() - started
    log.raised(notice, NoticeOutcome.DELIVERED)
    noun = "target" if reached == 1 else "targets"
    message = f"test notice sent to {reached} {noun} in {seconds:.2f} s"
    return NotifyTestResult(targets=targets, sent=True, seconds=seconds, message=message)


def listen(port: int, on_notice: Callable[[str, str], None], seconds: float | None = None) -> int:
    """Receive Apprise ``json://127.0.0.1:PORT/...`` posts on this machine; return how many.

    Each notice is handed to ``on_notice(title, body)`` as it arrives.
    """
    from execution.notify import NoticeListener

    listener = NoticeListener(port, on_notice)
    try:
        listener.serve(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
    return listener.received

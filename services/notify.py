"""Notifications: the runtime's notifier, and the test notice ``solodesk notify test`` sends.

The trading runtime's services get their :class:`core.ports.Notifier` from
:func:`open_notifier`: Apprise when URLs are configured (undelivered notices spooled at
``settings.notify_spool_path``), otherwise one that logs each notice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from core.errors import SolodeskError, UsageError
from core.ports import Notice, NoticeKind, Notifier
from core.settings import Settings
from core.times import utc_now
from execution.notify import AppriseNotifier, LogNotifier, notice_modes, send_now

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


def open_notifier(settings: Settings) -> Notifier:
    """Return the desk's notifier: Apprise when URLs are set (spooling at
    ``settings.notify_spool_path``), else one that logs each notice at INFO.

    Raises
    ------
    UsageError
        If a URL is not one Apprise understands, or ``[notify] events`` is bad.
    """
    if not settings.notify.urls:
        return LogNotifier(settings.notify)
    return AppriseNotifier(settings.notify, settings.notify_spool_path)


def send_test(settings: Settings) -> NotifyTestResult:
    """Send one TEST notice to every configured URL and wait for the outcome.

    Raises
    ------
    UsageError
        If a URL is not one Apprise understands, or ``[notify] events`` is bad.
    """
    notice_modes(settings.notify)  # a bad [notify] events is reported even without URLs
    targets = len(settings.notify.urls)
    if not targets:
        return NotifyTestResult(targets=0, sent=False, seconds=0.0, message=NO_URLS)
    notice = Notice(
        kind=NoticeKind.TEST,
        title="solodesk test notice",
        body="Notifications from this desk reach you.",
        ts=utc_now(),
    )
    started = time.perf_counter()
    try:
        reached = send_now(settings.notify, notice)
    except UsageError:
        raise
    except SolodeskError as exc:
        seconds = time.perf_counter() - started
        return NotifyTestResult(targets=targets, sent=False, seconds=seconds, message=str(exc))
    seconds = time.perf_counter() - started
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

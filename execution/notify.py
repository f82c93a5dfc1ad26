"""Notices to the trader's phone through Apprise: queued, de-duplicated, rate-limited, retried.

:class:`AppriseNotifier` implements :class:`core.ports.Notifier`. :meth:`~AppriseNotifier.notify`
only queues (a few microseconds); a daemon thread sends, one notice at a time in the order they
came, to every configured Apprise URL:

- each kind of notice is ``on``, ``off`` (never sent) or ``silent`` (:func:`notice_modes`).
  Silent is passed to the services that have Apprise's ``silent`` URL parameter (Telegram sends
  the message without sound, ``disable_notification``); other services show it as usual;
- the same kind and ``key`` within ``dedupe_seconds`` is sent once (an empty key is never
  de-duplicated);
- at most ``per_minute`` notices are sent (retries included) in any rolling minute; the excess
  waits its turn;
- a notice that fails is retried for the targets that failed, ``retries`` times, after 1, 2, 4 ...
  seconds (capped at a minute); one that still fails is appended to the spool;
- :meth:`~AppriseNotifier.close` sends what is queued (ignoring the rate limit, one attempt
  each) until its timeout, and appends whatever is left to the spool. The next notifier started
  with the same spool sends those notices first, to every target (a notice that had reached some
  targets reaches them twice). A notice whose delivery was cut off by the timeout may arrive as
  well as be spooled: delivery is at least once.

``timeout`` bounds one delivery attempt (Apprise's call timeout); the services' socket timeouts
are Apprise's own (``rto`` and ``cto`` URL parameters).

The URLs hold tokens. They never appear in a log record, an error message or the spool: every
part of a URL that could be a credential (:func:`url_secrets`) is masked (:func:`redact`) in the
records of the ``apprise``, ``urllib3`` and ``requests`` loggers and of this module, in every
error raised here and in every spooled line. The spool holds notices only (JSON Lines, no URL).

With no URL configured, :class:`LogNotifier` logs each notice at INFO and sends nothing.

The alert log: :class:`LoggedNotifier` wraps either notifier and appends every notice it is
given to a :class:`NoticeLog` (JSON Lines, one record a notice: when, kind, title, body,
session, the kind's mode and what became of it, :class:`NoticeOutcome`), secrets masked as in
the spool. An Apprise notifier reports each notice's fate (delivered, spooled, dropped, a
repeat) as it is known, and the log appends the record again with it; the last record of a
notice is the one that counts (:func:`read_notice_log`). Appending never raises: an I/O error
is logged. The file rotates past :data:`NOTICE_LOG_MAX_BYTES` (the previous one is kept as
``<name>.1``).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field

from core.errors import SolodeskError, UsageError
from core.ports import Notice, NoticeKind, Notifier
from core.processes import process_running
from core.times import iso_z, jsonable, parse_utc, utc_now

if TYPE_CHECKING:
    from types import TracebackType

    import apprise
    from pydantic import SecretStr

    from core.settings import NotifySettings

logger = logging.getLogger(__name__)

MASK = "***"
#: What an Apprise URL is cut into to find its secrets.
_URL_SEPARATORS = re.compile(r"[/:@?&=#,;+\s]+")
#: A URL part at least this long is taken for a credential (user and password at any length).
_SECRET_MIN_LENGTH = 6
#: Loggers whose records may carry a URL: Apprise's, the HTTP stack's, and this module's.
_GUARDED_LOGGERS = ("apprise", "urllib3", "requests", __name__)
#: How Apprise shows each kind of notice (its notify types: info, success, warning, failure).
_NOTIFY_TYPES = {
    NoticeKind.ORDER_REJECTED: "failure",
    NoticeKind.LOOP_CRASHED: "failure",
    NoticeKind.RISK_STATE: "warning",
    NoticeKind.STALE_FEED: "warning",
    NoticeKind.MODEL_RELOADED: "info",
    NoticeKind.MODEL_DRIFT: "warning",
    NoticeKind.MODEL_ROLLBACK: "warning",
    NoticeKind.SUPERVISOR_RESTART: "warning",
    NoticeKind.SUPERVISOR_GAVE_UP: "failure",
    NoticeKind.FLOW_FAILED: "failure",
    NoticeKind.DATA_QUALITY: "warning",
}
_SEEN_LIMIT = 4096


class NoticeMode(StrEnum):
    """What happens to a kind of notice: sent, never sent, or sent without sound."""

    ON = "on"
    OFF = "off"
    SILENT = "silent"


class NoticeOutcome(StrEnum):
    """What became of a notice, as the alert log records it.

    ``logged``: no URL is configured, the notice went to the process log only; ``queued``: handed
    to the sending thread; ``delivered``: every target has it; ``spooled``: not delivered, kept
    for the next start; ``dropped``: not delivered and no spool to keep it; ``repeat``: the same
    kind and key was sent within ``dedupe_seconds``; ``off``: its kind is off, nothing is sent.
    """

    LOGGED = "logged"
    QUEUED = "queued"
    DELIVERED = "delivered"
    SPOOLED = "spooled"
    DROPPED = "dropped"
    REPEAT = "repeat"
    OFF = "off"


def notice_modes(settings: NotifySettings) -> dict[NoticeKind, NoticeMode]:
    """Return the mode of every kind of notice: ``settings.events``, ``on`` where unnamed.

    Raises
    ------
    UsageError
        If ``events`` names a kind that does not exist or a mode other than on, off, silent.
    """
    modes = dict.fromkeys(NoticeKind, NoticeMode.ON)
    kinds = ", ".join(k.value for k in NoticeKind)
    for name, mode in settings.events.items():
        try:
            kind = NoticeKind(name.strip().lower())
        except ValueError:
            msg = f"notify.events: no kind of notice is called {name!r}; the kinds are {kinds}"
            raise UsageError(msg) from None
        try:
            modes[kind] = NoticeMode(str(mode).strip().lower())
        except ValueError:
            msg = f"notify.events.{name}: mode {mode!r} is not one of on, off, silent"
            raise UsageError(msg) from None
    return modes


def _field_text(value: object) -> str:
    if isinstance(value, float):
        return format(value, ".10g")
    if isinstance(value, Enum):
        return str(value.value)
    return str(jsonable(value))


def format_notice(notice: Notice) -> tuple[str, str]:
    """Return the title and body a notice is sent with.

    The title is the notice's own (its kind in words when empty). The body is the notice's
    body, then one ``name: value`` line per field, then a line with the session and the time
    (ISO-8601 UTC with ``Z``) where the notice has them.
    """
    title = notice.title or notice.kind.value.replace("_", " ").capitalize()
    parts = [notice.body] if notice.body else []
    if notice.fields:
        parts.append("\n".join(f"{k}: {_field_text(v)}" for k, v in notice.fields.items()))
    footer = [f"session {notice.session}"] if notice.session else []
    if notice.ts is not None:
        footer.append(iso_z(notice.ts))
    if footer:
        parts.append(" · ".join(footer))
    return title, "\n\n".join(parts)


# -- secrets ---------------------------------------------------------------------------------


def url_secrets(url: str) -> frozenset[str]:
    """Return every text that could give away the credentials in an Apprise URL.

    That is the URL itself, its user and password, and every other part of six characters or
    more: the host when it has no dot, the port (Telegram's bot token is read as host and port),
    path segments, query values, each also URL-encoded. A host name or address with a dot is where
    messages go, not a credential, and stays readable in logs.
    """
    secrets = {url, unquote(url)}
    _, sep, rest = url.partition("://")
    rest = unquote(rest if sep else url)
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    host, _, port = hostport.partition(":")
    pieces = [
        path,
        fragment,
        *(value for _, _, value in (p.partition("=") for p in query.split("&"))),
    ]
    if "." not in host:
        pieces.append(host)
    pieces.append(port)  # a real port is too short to count; Telegram's token lands here
    found = [
        p for text in pieces for p in _URL_SEPARATORS.split(text) if len(p) >= _SECRET_MIN_LENGTH
    ]
    if at:
        found += [p for p in _URL_SEPARATORS.split(userinfo) if len(p) >= 3]
        found.append(userinfo)
    for piece in found:
        secrets.update({piece, quote(piece, safe=""), quote(piece)})
    return frozenset(s for s in secrets if s)


def _mask(text: str, longest_first: tuple[str, ...]) -> str:
    for secret in longest_first:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every secret (longest first) replaced by ``***``."""
    return _mask(text, tuple(sorted(set(secrets), key=len, reverse=True)))


class _RedactingFilter(logging.Filter):
    """Masks the secrets of every configured URL in the records of the loggers it guards.

    A logger's filter sees the record before any handler does, so no handler, capture or
    Apprise's own result logs can see the secret.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()  # longest first
        self._lock = threading.Lock()

    def protect(self, secrets: Iterable[str]) -> None:
        with self._lock:
            known = set(self._secrets) | set(secrets)
            self._secrets = tuple(sorted(known, key=len, reverse=True))
        # Loggers are created on import: guard every one of the families that exists now.
        names = list(logging.Logger.manager.loggerDict)
        for name in names:
            if any(name == g or name.startswith(f"{g}.") for g in _GUARDED_LOGGERS):
                guarded = logging.getLogger(name)
                if self not in guarded.filters:
                    guarded.addFilter(self)
        for name in _GUARDED_LOGGERS:
            guarded = logging.getLogger(name)
            if self not in guarded.filters:
                guarded.addFilter(self)

    def redact(self, text: str) -> str:
        return _mask(text, self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it, without its arguments
            record.msg, record.args = _mask(str(record.msg), secrets), None
            return True
        record.msg, record.args = _mask(message, secrets), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, _mask(text, secrets)
        elif record.exc_text:
            record.exc_text = _mask(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = _mask(record.stack_info, secrets)
        return True


_REDACTOR = _RedactingFilter()


# -- the targets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    name: str
    normal: apprise.Apprise
    silent: apprise.Apprise


def _with_parameter(url: str, name: str, value: str) -> str:
    base, hash_, fragment = url.partition("#")
    return f"{base}{'&' if '?' in base else '?'}{name}={value}{hash_}{fragment}"


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,15}", scheme) else "?"


class _Targets:
    """One Apprise object per URL (and one that sends silently, where the service can)."""

    def __init__(self, urls: tuple[SecretStr, ...]) -> None:
        import apprise

        if not urls:
            msg = (
                "no notification URLs: set urls in [notify] of solodesk.toml "
                "or SOLODESK_NOTIFY__URLS"
            )
            raise UsageError(msg)
        raw = [u.get_secret_value().strip() for u in urls]
        _REDACTOR.protect(s for url in raw for s in url_secrets(url))
        asset = apprise.AppriseAsset(app_id="solodesk", app_desc="solodesk", storage_mode="memory")
        self.targets: list[_Target] = []
        for number, url in enumerate(raw, start=1):
            plugin = apprise.Apprise.instantiate(url, asset=asset)
            if plugin is None:
                msg = (
                    f"notify.urls, URL {number} of {len(raw)} (scheme {_scheme(url)}): not a "
                    "usable Apprise URL; see https://github.com/caronc/apprise/wiki for the format"
                )
                raise UsageError(_REDACTOR.redact(msg))
            # Apprise's own spelling of the URL (encoded differently); its query is only options.
            _REDACTOR.protect(url_secrets(plugin.url().partition("?")[0]))
            quiet = plugin
            if "silent" in plugin.template_args:
                quiet = (
                    apprise.Apprise.instantiate(_with_parameter(url, "silent", "yes"), asset=asset)
                    or plugin
                )
            name = f"{plugin.service_name} (target {number})"
            normal, silent = apprise.Apprise(asset=asset), apprise.Apprise(asset=asset)
            normal.add(plugin)
            silent.add(quiet)
            self.targets.append(_Target(name, normal, silent))

    def __len__(self) -> int:
        return len(self.targets)

    def send(
        self, notice: Notice, *, silent: bool, indexes: Iterable[int], timeout: float
    ) -> dict[int, str]:
        """Send to the targets at ``indexes`` within ``timeout`` seconds; return why each failed."""
        title, body = format_notice(notice)
        notify_type = _NOTIFY_TYPES.get(notice.kind, "info")
        deadline = time.monotonic() + timeout
        failures: dict[int, str] = {}
        for index in indexes:
            target = self.targets[index]
            left = deadline - time.monotonic()
            if left <= 0:
                failures[index] = "no time left"
                continue
            sender = target.silent if silent else target.normal
            try:
                with sender.notify(
                    body=body, title=title, notify_type=notify_type, body_format="text",
                    timeout=left,
                ) as result:  # fmt: skip
                    if not result:
                        failures[index] = _REDACTOR.redact(_reason(result))
            except Exception as exc:  # Apprise reports failures; this is a crash inside it
                failures[index] = f"{type(exc).__name__} inside Apprise"
        return failures

    def describe(self, failures: Mapping[int, str]) -> str:
        """Return which targets failed and why, without a URL."""
        return "; ".join(f"{self.targets[i].name}: {why}" for i, why in sorted(failures.items()))


def _reason(result: Any) -> str:
    status = getattr(getattr(result, "status", None), "name", "FAILURE").lower()
    problems = [e.message for e in result.logs() if e.level in {"WARNING", "ERROR", "CRITICAL"}]
    return f"{status}: {problems[-1].rstrip('.')}" if problems else status


def send_now(settings: NotifySettings, notice: Notice) -> int:
    """Send one notice to every target now, waiting for the outcome; return how many it reached.

    One attempt per target, at most ``settings.timeout`` seconds in all; a kind set to
    ``silent`` is sent silently, and a kind set to ``off`` is sent all the same (this is an
    explicit request). Nothing is queued or spooled.

    Raises
    ------
    UsageError
        If no URL is configured, a URL is not one Apprise understands, or ``events`` is bad.
    SolodeskError
        If a target could not be reached, naming the service and Apprise's reason (no URL).
    """
    modes = notice_modes(settings)
    targets = _Targets(settings.urls)
    if notice.ts is None:
        notice = replace(notice, ts=utc_now())
    failures = targets.send(
        notice,
        silent=modes[notice.kind] is NoticeMode.SILENT,
        indexes=range(len(targets)),
        timeout=settings.timeout,
    )
    if failures:
        reached = len(targets) - len(failures)
        msg = (
            f"notice {notice.kind.value} reached {reached} of {len(targets)} targets; "
            f"not delivered to {targets.describe(failures)}. Check the URL and that the service "
            "is reachable"
        )
        raise SolodeskError(_REDACTOR.redact(msg))
    return len(targets)


# -- the spool -------------------------------------------------------------------------------

_SPOOL_LOCK = threading.Lock()


def _json_value(value: object) -> object:
    converted = jsonable(value)
    if converted is not value:
        return converted
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _spool_line(notice: Notice) -> str:
    record = {
        "kind": notice.kind.value,
        "title": notice.title,
        "body": notice.body,
        "session": notice.session,
        "ts": None if notice.ts is None else iso_z(notice.ts, "microseconds"),
        "key": notice.key,
        "fields": dict(notice.fields),
        "spooled": iso_z(utc_now()),
    }
    return _REDACTOR.redact(json.dumps(record, default=_json_value, ensure_ascii=False))


def _append_to_spool(spool: Path, notices: list[Notice]) -> None:
    text = "".join(f"{_spool_line(n)}\n" for n in notices)
    with _SPOOL_LOCK:
        spool.parent.mkdir(parents=True, exist_ok=True)
        with spool.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def _read_spooled(path: Path) -> Iterator[Notice]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            ts = record.get("ts")
            yield Notice(
                kind=NoticeKind(record["kind"]),
                title=str(record.get("title", "")),
                body=str(record.get("body", "")),
                session=str(record.get("session", "")),
                ts=None if ts is None else parse_utc(ts, "ts"),
                key=str(record.get("key", "")),
                fields=dict(record.get("fields") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError, SolodeskError) as exc:
            logger.warning("%s:%d: not a spooled notice, skipped (%s)", path, number, exc)


def _claim_spool(spool: Path) -> list[Path]:
    """Move the spool (and what a process that died had claimed) aside for this notifier.

    The claimed files are deleted once their notices are delivered or spooled again, so a
    crash in between loses nothing; renaming makes sure two notifiers never send them both.
    """
    claims: list[Path] = []
    mine = f"{os.getpid()}-{time.monotonic_ns()}"
    candidates = [spool, *sorted(spool.parent.glob(f"{spool.name}.*.sending"))]
    for number, candidate in enumerate(candidates):
        if candidate != spool:
            owner = candidate.name[len(spool.name) + 1 :].split("-", 1)[0]
            if not owner.isdigit() or process_running(int(owner)):
                continue
        claim = spool.with_name(f"{spool.name}.{mine}-{number}.sending")
        try:
            os.replace(candidate, claim)
        except FileNotFoundError:  # no spool, or another notifier claimed it first
            continue
        claims.append(claim)
    return claims


# -- the alert log ---------------------------------------------------------------------------

#: The alert log's size past which it rotates (the previous file is kept as ``<name>.1``).
NOTICE_LOG_MAX_BYTES = 5 * 1024 * 1024
_LOG_SEQUENCE = itertools.count(1)


class NoticeLogEntry(BaseModel):
    """One notice in the alert log.

    ``id`` names the notice in the log (its later records carry the same id); ``at`` is when
    it was raised (wall clock, ISO-8601 UTC with Z) and ``ts`` the notice's own time (the
    loop's clock, simulated in a replay); ``mode`` is its kind's mode (on, silent, off) and
    ``outcome`` what became of it (:class:`NoticeOutcome`), known at ``updated``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    at: str
    ts: str | None = None
    kind: str
    title: str = ""
    body: str = ""
    session: str = ""
    fields: dict[str, object] = Field(default_factory=dict)
    mode: str
    outcome: str
    updated: str


def _new_entry() -> tuple[str, str]:
    """Return a new alert-log id (unique across processes) and the time it is raised."""
    now = utc_now()
    return f"{iso_z(now, 'microseconds')}-{os.getpid()}-{next(_LOG_SEQUENCE)}", iso_z(now)


def rotated_path(path: Path) -> Path:
    """Return where the alert log at ``path`` keeps its previous file, ``<name>.1``."""
    return path.with_name(f"{path.name}.1")


class NoticeLog:
    """The alert log: every notice raised, one JSON line each (:class:`NoticeLogEntry`).

    Several processes append to the same file (the loop, the supervisor, flows): each line is
    written whole under an exclusive lock of the file, and the file rotates to ``<name>.1``
    once a line would take it past ``max_bytes``. Writing never raises: an error is logged.

    Parameters
    ----------
    path
        The log file (``Settings.notice_log_path``); its folder is created on the first line.
    modes
        The mode of each kind of notice (:func:`notice_modes`).
    max_bytes
        The size past which the file rotates.
    """

    def __init__(
        self,
        path: Path,
        modes: Mapping[NoticeKind, NoticeMode],
        *,
        max_bytes: int = NOTICE_LOG_MAX_BYTES,
    ) -> None:
        self.path = path
        self._modes = dict(modes)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        # Notices whose outcome is still to come: id(notice) -> (notice, log id, raised at).
        # Holding the notice keeps it alive, so its id() is not reused until it is told.
        self._pending: dict[int, tuple[Notice, str, str]] = {}

    def mode(self, kind: NoticeKind) -> NoticeMode:
        """Return the mode of a kind of notice."""
        return self._modes.get(kind, NoticeMode.ON)

    def raised(self, notice: Notice, outcome: NoticeOutcome) -> None:
        """Append a notice just raised; a ``queued`` one awaits :meth:`settled`."""
        try:
            ident, at = _new_entry()
            if outcome is NoticeOutcome.QUEUED:
                with self._lock:
                    self._pending[id(notice)] = (notice, ident, at)
            self._append(self._line(notice, ident, at, outcome))
        except Exception:  # never into the loop: the log is a record, not a control
            logger.exception("could not record notice %s in the alert log", notice.kind.value)

    def settled(self, notice: Notice, outcome: NoticeOutcome) -> None:
        """Append what became of a notice (one it never saw, resent from the spool by a later
        start, is recorded as new)."""
        try:
            with self._lock:
                known = self._pending.pop(id(notice), None)
            ident, at = _new_entry() if known is None else known[1:]
            self._append(self._line(notice, ident, at, outcome))
        except Exception:
            logger.exception("could not record notice %s in the alert log", notice.kind.value)

    def _line(self, notice: Notice, ident: str, at: str, outcome: NoticeOutcome) -> str:
        record = {
            "id": ident,
            "at": at,
            "ts": None if notice.ts is None else iso_z(notice.ts),
            "kind": notice.kind.value,
            "title": notice.title,
            "body": notice.body,
            "session": notice.session,
            "fields": dict(notice.fields),
            "mode": self.mode(notice.kind).value,
            "outcome": outcome.value,
            "updated": iso_z(utc_now()),
        }
        return _REDACTOR.redact(json.dumps(record, default=_json_value, ensure_ascii=False))

    def _append(self, line: str) -> None:
        data = f"{line}\n".encode()
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                for _ in range(3):  # again after a rotation, by this process or another
                    if self._append_once(data):
                        return
                logger.error("could not append to the alert log %s: it keeps moving", self.path)
        except OSError as exc:
            logger.error("could not append to the alert log %s: %s", self.path, exc)

    def _append_once(self, data: bytes) -> bool:
        with self.path.open("ab") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            mine = os.fstat(handle.fileno())
            try:
                named = os.stat(self.path)
            except FileNotFoundError:
                return False
            if (named.st_dev, named.st_ino) != (mine.st_dev, mine.st_ino):
                return False  # rotated between opening and locking: open the new file
            if mine.st_size and mine.st_size + len(data) > self._max_bytes:
                os.replace(self.path, rotated_path(self.path))
                return False
            handle.write(data)
            handle.flush()
            return True


def _log_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


def read_notice_log(
    path: Path, limit: int = 200, kinds: Collection[str] | None = None
) -> list[NoticeLogEntry]:
    """Return the latest ``limit`` notices of the alert log at ``path``, newest first.

    Each notice is its last record (its latest outcome); ``kinds``, when given, keeps only
    those kinds. The rotated file is read too when the current one holds fewer. A line that is
    not a record is skipped.
    """
    wanted = None if kinds is None else set(kinds)
    found: dict[str, NoticeLogEntry] = {}
    for source in (path, rotated_path(path)):
        for number, line in reversed(list(enumerate(_log_lines(source), start=1))):
            if not line.strip():
                continue
            try:
                entry = NoticeLogEntry.model_validate_json(line)
            except ValueError as exc:
                logger.warning("%s:%d: not an alert log record, skipped (%s)", source, number, exc)
                continue
            if entry.id in found or (wanted is not None and entry.kind not in wanted):
                continue
            found[entry.id] = entry
            if len(found) >= limit:
                break
        if len(found) >= limit:
            break
    return sorted(found.values(), key=lambda e: (e.at, e.id), reverse=True)


# -- the notifiers ---------------------------------------------------------------------------


@dataclass
class _Outgoing:
    notice: Notice
    silent: bool
    attempts: int = 0
    remaining: tuple[int, ...] | None = None  # targets still to reach; None: all
    from_spool: bool = False
    failures: dict[int, str] = field(default_factory=dict)


class AppriseNotifier:
    """A :class:`core.ports.Notifier` that sends through Apprise from a daemon thread.

    Parameters
    ----------
    settings
        The URLs, the mode of each kind, the rate limit, de-duplication, retries and timeout.
    spool
        The JSON Lines file undeliverable notices are appended to and re-sent from at the next
        start (None: they are logged and dropped).
    window
        The rate limit's rolling window in seconds (``per_minute`` per ``window``).
    backoff, max_backoff
        The first wait before a retry, doubled at each retry up to ``max_backoff`` seconds.
    on_outcome
        Told what became of each notice once it is known: delivered, spooled, dropped (no
        spool) or a repeat not sent (:class:`NoticeOutcome`); from the sending thread for the
        first three. It must not block; what it raises is logged.

    Raises
    ------
    UsageError
        If no URL is configured, a URL is not one Apprise understands, or ``events`` is bad.
    """

    def __init__(
        self,
        settings: NotifySettings,
        spool: Path | None = None,
        *,
        window: float = 60.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        on_outcome: Callable[[Notice, NoticeOutcome], None] | None = None,
    ) -> None:
        if window <= 0 or backoff < 0 or max_backoff < backoff:
            msg = (
                f"window {window} must be > 0, and backoff {backoff} between 0 and "
                f"max_backoff {max_backoff}"
            )
            raise UsageError(msg)
        self._modes = notice_modes(settings)
        self._targets = _Targets(settings.urls)
        self._per_window = settings.per_minute
        self._window = window
        self._dedupe = settings.dedupe_seconds
        self._retries = settings.retries
        self._timeout = settings.timeout
        self._backoff, self._max_backoff = backoff, max_backoff
        self._spool = spool
        self._on_outcome = on_outcome
        # Everything below is guarded by the condition's lock; the worker owns _sent_at.
        self._cond = threading.Condition()
        self._queue: deque[_Outgoing] = deque()
        self._current: _Outgoing | None = None
        self._seen: dict[tuple[NoticeKind, str], float] = {}
        self._closed = False
        self._abandoned = False
        self._deadline = float("inf")
        self._sent_at: deque[float] = deque()
        self._claims: list[Path] = []
        self._spooled_left = 0
        if spool is not None:
            self._resume(spool)
        self._worker = threading.Thread(target=self._run, name="solodesk-notify", daemon=True)
        self._worker.start()

    def _resume(self, spool: Path) -> None:
        self._claims = _claim_spool(spool)
        for claim in self._claims:
            try:
                spooled = list(_read_spooled(claim))
            except OSError as exc:
                logger.error("could not read the notification spool %s: %s", claim, exc)
                continue
            for notice in spooled:
                mode = self._modes[notice.kind]
                if mode is not NoticeMode.OFF:
                    self._queue.append(
                        _Outgoing(notice, mode is NoticeMode.SILENT, from_spool=True)
                    )
        self._spooled_left = len(self._queue)
        if self._queue:
            logger.info("%d spooled notices from %s are sent first", len(self._queue), spool)
        else:
            self._release_claims()

    # -- the caller's side

    def notify(self, notice: Notice) -> None:
        """Queue a notice (dropped if its kind is off or it repeats a recent one); never block.

        A notice without a time is stamped with the current UTC time.
        """
        mode = self._modes[notice.kind]
        if mode is NoticeMode.OFF:
            return
        if notice.ts is None:
            notice = replace(notice, ts=utc_now())
        item = _Outgoing(notice, mode is NoticeMode.SILENT)
        with self._cond:
            repeat = bool(notice.key) and self._dedupe > 0 and self._repeats(notice)
            if not repeat and not self._closed:
                self._queue.append(item)
                self._cond.notify()
                return
        if repeat:
            self._tell(notice, NoticeOutcome.REPEAT)
            return
        self._keep([item], "the notifier was closed")

    def _tell(self, notice: Notice, outcome: NoticeOutcome) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(notice, outcome)
        except Exception:  # the sending thread and the loop go on whatever the observer does
            logger.exception("reporting the outcome of notice %s", notice.kind.value)

    def _repeats(self, notice: Notice) -> bool:
        now = time.monotonic()
        seen = (notice.kind, notice.key)
        last = self._seen.get(seen)
        if last is not None and now - last < self._dedupe:
            return True
        self._seen[seen] = now
        if len(self._seen) > _SEEN_LIMIT:
            self._seen = {k: t for k, t in self._seen.items() if now - t < self._dedupe}
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued within ``timeout`` seconds, ignoring the rate limit; spool the rest.

        Each queued notice gets one more attempt; what fails or is still waiting when the time
        is up is appended to the spool (logged and dropped without one). Closing twice does
        nothing; a notice given after closing goes straight to the spool.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._deadline = time.monotonic() + max(0.0, timeout)
            self._cond.notify_all()
        self._worker.join(max(0.0, timeout))
        with self._cond:
            self._abandoned = True  # from here on the worker touches nothing
            leftovers = ([self._current] if self._current else []) + list(self._queue)
            self._current = None
            self._queue.clear()
        if leftovers:
            self._keep(leftovers, f"not delivered within the {timeout:g} s given to close")
        self._release_claims()

    def __enter__(self) -> AppriseNotifier:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # -- the worker's side

    def _run(self) -> None:
        try:
            while (item := self._take()) is not None:
                if not self._deliver(item):
                    break
            self._drain()
        except Exception:
            logger.exception("the notification thread stopped; close() spools what is queued")

    def _take(self) -> _Outgoing | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            self._current = self._queue.popleft()
            return self._current

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; return True at once if the notifier is closing."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed, timeout=seconds)

    def _rate_delay(self) -> float:
        now = time.monotonic()
        while self._sent_at and now - self._sent_at[0] >= self._window:
            self._sent_at.popleft()
        if len(self._sent_at) < self._per_window:
            return 0.0
        return self._sent_at[0] + self._window - now

    def _attempt(self, item: _Outgoing, timeout: float) -> bool:
        """Send to the targets not reached yet; return True when every target has it."""
        indexes = range(len(self._targets)) if item.remaining is None else item.remaining
        self._sent_at.append(time.monotonic())
        item.failures = self._targets.send(
            item.notice, silent=item.silent, indexes=indexes, timeout=timeout
        )
        item.remaining = tuple(sorted(item.failures))
        return not item.failures

    def _deliver(self, item: _Outgoing) -> bool:
        """Send with retries; return False when closing interrupted it (the item stays current)."""
        while True:
            while (delay := self._rate_delay()) > 0:
                if self._pause(delay):
                    return False
            if self._attempt(item, self._timeout):
                self._done(item, delivered=True)
                return True
            item.attempts += 1
            title = item.notice.title or item.notice.kind.value
            if item.attempts > self._retries:
                why = self._targets.describe(item.failures)
                self._done(item, delivered=False, why=f"{item.attempts} attempts failed ({why})")
                return True
            delay = min(self._max_backoff, self._backoff * 2 ** (item.attempts - 1))
            logger.debug(
                "notice %s %r, attempt %d failed (%s); retrying in %.3g s",
                item.notice.kind.value, title, item.attempts,
                self._targets.describe(item.failures), delay,
            )  # fmt: skip
            if self._pause(delay):
                return False

    def _drain(self) -> None:
        while True:
            with self._cond:
                if self._abandoned:
                    return
                if self._current is None and self._queue:
                    self._current = self._queue.popleft()
                item = self._current
            if item is None:
                return
            left = self._deadline - time.monotonic()
            if left <= 0:
                return  # close() spools what is left
            delivered = self._attempt(item, min(self._timeout, left))
            why = "" if delivered else self._targets.describe(item.failures)
            self._done(item, delivered=delivered, why=f"failed while closing ({why})")

    def _done(self, item: _Outgoing, *, delivered: bool, why: str = "") -> None:
        with self._cond:
            if self._abandoned:
                return  # close() has taken over (and spooled) this notice
            if self._current is item:
                self._current = None
        if delivered:
            self._tell(item.notice, NoticeOutcome.DELIVERED)
        else:
            self._keep([item], why)
        if item.from_spool:
            with self._cond:
                self._spooled_left -= 1
                release = self._spooled_left == 0
            if release:
                self._release_claims()

    def _keep(self, items: list[_Outgoing], why: str) -> None:
        """Append notices that could not be delivered to the spool (log them without one)."""
        for item in items:
            notice = item.notice
            where = f"kept in {self._spool}" if self._spool else "dropped (no spool)"
            logger.warning(
                "notice %s %r could not be delivered: %s; %s",
                notice.kind.value, notice.title, why, where,
            )  # fmt: skip
        outcome = NoticeOutcome.DROPPED
        if self._spool is not None:
            try:
                _append_to_spool(self._spool, [i.notice for i in items])
                outcome = NoticeOutcome.SPOOLED
            except OSError as exc:
                logger.error("could not write the notification spool %s: %s", self._spool, exc)
        for item in items:
            self._tell(item.notice, outcome)

    def _release_claims(self) -> None:
        with self._cond:
            claims, self._claims = self._claims, []
        for claim in claims:
            claim.unlink(missing_ok=True)


class LogNotifier:
    """A :class:`core.ports.Notifier` for a desk without notification URLs: logs at INFO.

    Kinds set to ``off`` are not logged; nothing is sent, queued or spooled.

    Raises
    ------
    UsageError
        If ``settings.events`` names an unknown kind or mode.
    """

    def __init__(self, settings: NotifySettings) -> None:
        self._modes = notice_modes(settings)

    def notify(self, notice: Notice) -> None:
        """Log the notice (its title and body) at INFO."""
        mode = self._modes[notice.kind]
        if mode is NoticeMode.OFF:
            return
        title, body = format_notice(notice)
        quiet = " (silent)" if mode is NoticeMode.SILENT else ""
        logger.info("notice %s%s: %s\n%s", notice.kind.value, quiet, title, body)

    def close(self, timeout: float = 10.0) -> None:
        """Nothing to deliver."""


class LoggedNotifier:
    """A :class:`core.ports.Notifier` that records every notice in the alert log, then hands it
    to the notifier it wraps.

    Parameters
    ----------
    inner
        The notifier that sends (or logs) the notices.
    log
        The alert log; an :class:`AppriseNotifier` wrapped reports outcomes to
        :meth:`NoticeLog.settled` (its ``on_outcome``).
    outcome
        What the inner notifier does with a notice: ``queued`` (it sends from a thread and
        reports the outcome later) or ``logged`` (it only logs). A kind set to ``off`` is
        recorded as ``off`` either way.
    """

    def __init__(
        self, inner: Notifier, log: NoticeLog, outcome: NoticeOutcome = NoticeOutcome.QUEUED
    ) -> None:
        self.inner = inner
        self.log = log
        self._outcome = outcome

    def notify(self, notice: Notice) -> None:
        """Record the notice (stamped with the current UTC time when it has none), then pass
        it on; never block, never raise for the log."""
        if notice.ts is None:
            notice = replace(notice, ts=utc_now())
        off = self.log.mode(notice.kind) is NoticeMode.OFF
        self.log.raised(notice, NoticeOutcome.OFF if off else self._outcome)
        self.inner.notify(notice)

    def close(self, timeout: float = 10.0) -> None:
        """Close the inner notifier (what it spools on closing is recorded as spooled)."""
        self.inner.close(timeout)


class NoticeListener:
    """A local HTTP endpoint that takes Apprise ``json://`` posts and hands each one on.

    For seeing notices on this machine (the demo, a dry run before a phone is configured):
    point ``SOLODESK_NOTIFY__URLS`` at ``json://127.0.0.1:PORT/desk`` and every notice arrives
    here as ``(title, body)``. Binds 127.0.0.1 only.
    """

    def __init__(self, port: int, on_notice: Callable[[str, str], None]) -> None:
        import http.server

        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    payload = json.loads(raw or b"{}")
                except ValueError:
                    payload = {"title": "", "message": raw.decode(errors="replace")}
                listener.received += 1
                on_notice(str(payload.get("title", "")), str(payload.get("message", "")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: the notices are the output

        self.received = 0
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])

    def serve(self, seconds: float | None = None) -> None:
        """Serve until ``seconds`` have passed (forever when None) or :meth:`close`."""
        if seconds is not None:
            threading.Timer(seconds, self._server.shutdown).start()
        self._server.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

"""A local HTTP endpoint that notifications can be sent to: Apprise's ``json://`` posts and any
service whose API address a test points at it (Telegram's, for one).

:class:`Receiver` listens on 127.0.0.1 at a free port and records every POST it is sent (path,
JSON body, arrival time, the status it answered). It can answer the first requests with an error
and make every request wait, to play a failing or slow service::

    with Receiver(delay=0.2) as receiver:
        notifier = AppriseNotifier(NotifySettings(urls=(SecretStr(receiver.url()),)))
        ...
        assert receiver.wait_for(3)
        titles = receiver.titles()

:func:`receivers` starts as many as a test asks for and stops them all afterwards (the body of a
pytest fixture). The request line is never logged: a path can hold a token.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it: where it was posted, what, when, and the answer.

    ``body`` is the parsed JSON object, or ``{"raw": text}`` when the body is not JSON; ``at``
    is :func:`time.monotonic` on arrival (before any ``delay``).
    """

    path: str
    body: dict[str, Any]
    at: float
    status: int

    @property
    def ok(self) -> bool:
        """Return whether the receiver answered with success."""
        return self.status < 400


def _parse(raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"raw": text}
    return value if isinstance(value, dict) else {"raw": text}


class Receiver:
    """A local HTTP server that records each POST and answers it (see the module docstring).

    Parameters
    ----------
    fail_first
        How many of the first requests are answered ``fail_status`` instead of 200.
    delay
        Seconds each request waits before its answer (requests are served side by side).
    fail_status
        The status failing requests get.
    """

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0, fail_status: int = 500) -> None:
        if fail_first < 0 or delay < 0 or not 400 <= fail_status <= 599:
            msg = (
                f"fail_first {fail_first} and delay {delay} must be >= 0 and fail_status "
                f"{fail_status} an HTTP error status (400-599)"
            )
            raise ValueError(msg)
        self.fail_first = fail_first
        self.delay = delay
        self.fail_status = fail_status
        self._requests: list[Received] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.server = ThreadingHTTPServer((HOST, 0), self._handler())
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = _parse(self.rfile.read(length))
                status = receiver._record(self.path, body)
                if receiver.delay:
                    time.sleep(receiver.delay)
                ok = status < 400
                reply = json.dumps({"ok": ok, "description": "" if ok else "failing on purpose"})
                payload = reply.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Log nothing: the request line holds the path, which may hold a token."""

        return Handler

    def _record(self, path: str, body: dict[str, Any]) -> int:
        with self._arrived:
            failing = len(self._requests) < self.fail_first
            status = self.fail_status if failing else 200
            self._requests.append(Received(path, body, time.monotonic(), status))
            self._arrived.notify_all()
        return status

    # -- addresses

    def url(self, path: str = "/hook") -> str:
        """Return the Apprise URL that posts JSON here (``json://127.0.0.1:PORT/path``)."""
        return f"json://{HOST}:{self.port}{_slash(path)}"

    def http_url(self, path: str = "") -> str:
        """Return the plain address of ``path`` here (to point a service's API at)."""
        return f"http://{HOST}:{self.port}{_slash(path) if path else ''}"

    # -- what arrived

    @property
    def requests(self) -> list[Received]:
        """Return every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Return the bodies of the requests answered with success, in arrival order."""
        return [r.body for r in self.requests if r.ok]

    def titles(self) -> list[str]:
        """Return the ``title`` of each delivered body (Apprise's JSON posts have one)."""
        return [str(body.get("title", "")) for body in self.delivered]

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until ``count`` requests have arrived (answered or not); return whether they did."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(left)
        return True

    # -- life

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def _slash(path: str) -> str:
    return path if path.startswith("/") else f"/{path}"


@contextmanager
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Yield a function starting receivers (with :class:`Receiver`'s options); stop them all at
    the end.

    As a pytest fixture::

        @pytest.fixture
        def serve() -> Iterator[Callable[..., Receiver]]:
            with receivers() as start:
                yield start
    """
    started: list[Receiver] = []

    def start(*, fail_first: int = 0, delay: float = 0.0, fail_status: int = 500) -> Receiver:
        receiver = Receiver(fail_first=fail_first, delay=delay, fail_status=fail_status)
        started.append(receiver)
        return receiver

    try:
        yield start
    finally:
        for receiver in started:
            receiver.stop()

"""The dashboard server before it listens: what the pages load is loaded and out of the garbage
collector's sight (in a process of its own: freezing is process-wide), and its listening socket
sends small replies at once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from testkit.cli import REPO

from app.dashboard.server import reply_at_once

PROBE = """
import gc, json, sys
from app.dashboard.server import settle
before = gc.get_freeze_count()
settle()
print(json.dumps({"before": before, "after": gc.get_freeze_count(),
                  "loaded": "app.dashboard.common" in sys.modules and "streamlit.web.server" in sys.modules}))
"""


def test_settle_loads_the_pages_module_and_freezes_what_is_loaded() -> None:
    # Act
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip

    # Assert: tens of thousands of objects frozen (Streamlit and Polars alone), none before
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before"] == 0
    assert seen["after"] > 50_000
    assert seen["loaded"] is True


def test_reply_at_once_listening_socket_and_the_connections_it_accepts_have_no_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: Streamlit's own binding, restored after the test
    from streamlit.web.server.starlette import starlette_server

    monkeypatch.setattr(starlette_server, "_bind_socket", starlette_server._bind_socket)
    plain = starlette_server._bind_socket("127.0.0.1", 0, 8)
    plain_delay = plain.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    plain.close()

    # Act
    patched = reply_at_once()
    listener = starlette_server._bind_socket("127.0.0.1", 0, 8)
    listener.setblocking(True)
    with listener, socket.create_connection(listener.getsockname()[:2]) as client:
        accepted, _ = listener.accept()
        with accepted:
            accepted_delay = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            listening_delay = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert client.fileno() > 0

    # Assert: Streamlit's socket leaves Nagle's algorithm on; the server's turns it off, and
    # the connection it accepts inherits that
    assert patched is True
    assert plain_delay == 0
    assert listening_delay != 0 and accepted_delay != 0

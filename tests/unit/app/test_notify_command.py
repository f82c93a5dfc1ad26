"""``solodesk notify test`` in process against a local receiver, and the notifier the runtime's
services open (``services.notify.open_notifier``)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from testkit.cli import invoke, json_lines

from core.ports import Notice, NoticeKind
from core.settings import NotifySettings, Settings
from execution.notify import AppriseNotifier, LoggedNotifier, LogNotifier
from services.notify import open_notifier


class _Hook(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet."""


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An Apprise ``json://`` URL on 127.0.0.1 and the bodies POSTed to it."""
    bodies: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()
    server.server_close()


def _dead_url() -> str:
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"json://127.0.0.1:{port}/hook"


def _urls(*urls: str) -> dict[str, str]:
    return {"SOLODESK_NOTIFY__URLS": json.dumps(list(urls))}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def test_notify_test_with_receiver_sends_one_notice_and_prints_json(
    home: Path, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    # Arrange
    url, bodies = receiver

    # Act
    run = invoke(["notify", "test", "--json"], home, env=_urls(url))

    # Assert
    assert run.returncode == 0, run.stderr
    (line,) = json_lines(run.stdout)
    assert line["targets"] == 1
    assert line["sent"] is True
    assert 0 < line["seconds"] < 10
    assert [b["title"] for b in bodies] == ["solodesk test notice"]


def test_notify_test_with_receiver_prints_how_many_targets(
    home: Path, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    # Act
    run = invoke(["notify", "test"], home, env=_urls(receiver[0]))

    # Assert
    assert run.returncode == 0, run.stderr
    assert "test notice sent to 1 target in" in run.stdout


def test_notify_test_dead_target_exits_1_naming_the_service(home: Path) -> None:
    # Act
    run = invoke(["notify", "test", "--json"], home, env=_urls(_dead_url()))

    # Assert
    assert run.returncode == 1
    (line,) = json_lines(run.stdout)
    assert (line["targets"], line["sent"]) == (1, False)
    assert "reached 0 of 1 targets" in line["message"]
    assert "(target 1)" in line["message"]


def test_notify_test_without_urls_exits_1_saying_how_to_set_them(home: Path) -> None:
    # Act
    run = invoke(["notify", "test"], home)

    # Assert
    assert run.returncode == 1
    assert "SOLODESK_NOTIFY__URLS" in run.stderr


def test_notify_test_unknown_event_kind_exits_2_naming_it(home: Path) -> None:
    # Act
    run = invoke(["notify", "test"], home, env={"SOLODESK_NOTIFY__EVENTS": '{"trade_open": "off"}'})

    # Assert
    assert run.returncode == 2
    assert "trade_open" in run.stderr


def test_open_notifier_without_urls_logs_instead(home: Path) -> None:
    # Act
    notifier = open_notifier(Settings(home=home))

    # Assert: it logs, and the alert log keeps what it is given
    assert isinstance(notifier, LoggedNotifier) and isinstance(notifier.inner, LogNotifier)


def test_open_notifier_with_urls_spools_at_the_desk_spool_path(home: Path) -> None:
    # Arrange
    settings = Settings(home=home, notify=NotifySettings(urls=(SecretStr(_dead_url()),), retries=0))
    notifier = open_notifier(settings)

    # Act
    notifier.notify(Notice(kind=NoticeKind.LOOP_STOPPED, title="stopped", body="by the trader"))
    notifier.close(2)

    # Assert
    assert isinstance(notifier, LoggedNotifier) and isinstance(notifier.inner, AppriseNotifier)
    spooled = [json.loads(line) for line in settings.notify_spool_path.read_text().splitlines()]
    assert [s["title"] for s in spooled] == ["stopped"]

"""The local notice receiver behind ``solodesk notify listen`` and the demo."""

from __future__ import annotations

import threading

from core.ports import Notice, NoticeKind
from core.settings import NotifySettings
from execution.notify import AppriseNotifier, NoticeListener


def test_listener_receives_what_an_apprise_json_url_posts() -> None:
    # Arrange
    got: list[tuple[str, str]] = []
    listener = NoticeListener(0, lambda title, body: got.append((title, body)))
    server = threading.Thread(target=listener.serve, daemon=True)
    server.start()
    settings = NotifySettings(urls=(f"json://127.0.0.1:{listener.port}/desk",), retries=0)  # type: ignore[arg-type]
    notifier = AppriseNotifier(settings, None)

    # Act
    notifier.notify(Notice(NoticeKind.TRADE_OPENED, "trade opened", "buy 1 lot", session="s1"))
    notifier.close(timeout=10)
    listener.close()
    server.join(timeout=5)

    # Assert
    assert listener.received == 1
    assert got[0][0] == "trade opened"
    assert "buy 1 lot" in got[0][1] and "s1" in got[0][1]


def test_listener_serve_with_seconds_stops_by_itself() -> None:
    # Arrange
    listener = NoticeListener(0, lambda title, body: None)

    # Act
    listener.serve(0.3)
    listener.close()

    # Assert
    assert listener.received == 0

"""Notices through Apprise: delivery, modes, de-duplication, rate limit, retries, the spool, and
secrets kept out of everything written.

Each test starts its own receivers: ``http.server`` on 127.0.0.1, port 0, recording what is
POSTed. Apprise's ``json://127.0.0.1:PORT/path`` posts there; Telegram is pointed at a receiver
by changing the plugin's API address for the test, so the real Telegram code path (token in
the URL path) runs without the network.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from core.errors import SolodeskError, UsageError
from core.ports import Notice, NoticeKind
from core.settings import NotifySettings
from execution.notify import (
    AppriseNotifier,
    LogNotifier,
    NoticeMode,
    format_notice,
    notice_modes,
    redact,
    send_now,
    url_secrets,
)

TOKEN = "SECRETTOKENxyz"
TELEGRAM_URL = f"tgram://123456789:{TOKEN}/12345"
FAST = {"backoff": 0.01, "max_backoff": 0.05}


class Receiver:
    """A local HTTP endpoint: records each POST (path, JSON body, arrival time).

    The first ``fail_first`` requests get a 500; each request waits ``delay`` seconds first.
    """

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0) -> None:
        self.fail_first, self.delay = fail_first, delay
        self.requests: list[tuple[str, dict[str, Any], float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver.lock:
                    receiver.requests.append((self.path, body, time.monotonic()))
                    failing = len(receiver.requests) <= receiver.fail_first
                time.sleep(receiver.delay)
                reply = {"ok": not failing, "description": "failing on purpose"}
                payload = json.dumps(reply).encode()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep quiet: the request line holds the path (a Telegram token)."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The bodies of the requests that were answered 200, in arrival order."""
        with self.lock:
            return [body for _, body, _ in self.requests[self.fail_first :]]

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.requests) >= count:
                    return True
            time.sleep(0.005)
        return False

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(*, fail_first: int = 0, delay: float = 0.0) -> Receiver:
        started.append(Receiver(fail_first=fail_first, delay=delay))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def telegram_api(monkeypatch: pytest.MonkeyPatch) -> Callable[[Receiver], None]:
    """Point Apprise's Telegram plugin at a receiver instead of api.telegram.org."""
    from apprise.plugins.telegram import NotifyTelegram

    def point(receiver: Receiver) -> None:
        monkeypatch.setattr(NotifyTelegram, "notify_url", f"http://127.0.0.1:{receiver.port}/bot")

    return point


def _dead_url() -> str:
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"json://127.0.0.1:{port}/hook"


def _settings(*urls: str, **values: Any) -> NotifySettings:
    return NotifySettings(urls=tuple(SecretStr(u) for u in urls), **values)


def _notice(
    kind: NoticeKind = NoticeKind.TRADE_OPENED, title: str = "EURUSD long 0.10 lots", key: str = ""
) -> Notice:
    return Notice(
        kind=kind,
        title=title,
        body="Bought 10000 EURUSD at 1.08345.",
        session="paper:t1",
        ts=datetime(2024, 1, 2, 9, 30, tzinfo=UTC),
        key=key,
        fields={"price": 1.08345, "units": 10000},
    )


def _spooled(spool: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in spool.read_text().splitlines()]


# -- formatting and modes --------------------------------------------------------------------


def test_format_notice_with_session_and_time_ends_body_with_both() -> None:
    # Arrange
    notice = _notice()

    # Act
    title, body = format_notice(notice)

    # Assert
    assert title == "EURUSD long 0.10 lots"
    assert body.startswith("Bought 10000 EURUSD at 1.08345.")
    assert "price: 1.08345\nunits: 10000" in body
    assert body.endswith("session paper:t1 · 2024-01-02T09:30:00Z")


def test_format_notice_without_title_uses_kind_in_words() -> None:
    # Arrange
    notice = Notice(kind=NoticeKind.STALE_FEED, title="", body="no bars for 120 s")

    # Act
    title, body = format_notice(notice)

    # Assert
    assert (title, body) == ("Stale feed", "no bars for 120 s")


def test_notice_modes_unnamed_kinds_on_named_as_set() -> None:
    # Arrange
    settings = _settings(events={"trade_opened": "off", "DAILY_SUMMARY": "Silent"})

    # Act
    modes = notice_modes(settings)

    # Assert
    assert modes[NoticeKind.TRADE_OPENED] is NoticeMode.OFF
    assert modes[NoticeKind.DAILY_SUMMARY] is NoticeMode.SILENT
    assert {modes[k] for k in NoticeKind} - {NoticeMode.OFF, NoticeMode.SILENT} == {NoticeMode.ON}


@pytest.mark.parametrize(
    ("events", "named"),
    [({"trade_open": "on"}, "'trade_open'"), ({"trade_opened": "loud"}, "'loud'")],
    ids=["unknown kind", "unknown mode"],
)
def test_notice_modes_unknown_kind_or_mode_raises_usage_error_naming_it(
    events: dict[str, str], named: str
) -> None:
    # Arrange
    settings = _settings(events=events)

    # Act
    with pytest.raises(UsageError) as raised:
        notice_modes(settings)

    # Assert
    assert named in str(raised.value)


# -- delivery --------------------------------------------------------------------------------


def test_notifier_notice_delivered_as_title_and_body(serve: Callable[..., Receiver]) -> None:
    # Arrange
    receiver = serve()
    notifier = AppriseNotifier(_settings(receiver.url()))

    # Act
    notifier.notify(_notice())
    delivered = receiver.wait_for(1)
    notifier.close(5)

    # Assert
    assert delivered
    (body,) = receiver.delivered
    assert body["title"] == "EURUSD long 0.10 lots"
    assert body["message"] == format_notice(_notice())[1]
    assert body["type"] == "info"


def test_notifier_notice_without_time_stamped_when_queued(serve: Callable[..., Receiver]) -> None:
    # Arrange
    receiver = serve()
    notifier = AppriseNotifier(_settings(receiver.url()))
    before = datetime.now(UTC).replace(microsecond=0)

    # Act
    notifier.notify(Notice(kind=NoticeKind.CONTROL, title="pause", body="paused by the trader"))
    notifier.close(5)

    # Assert
    (body,) = receiver.delivered
    stamp = body["message"].rsplit("\n", 1)[-1]
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) >= before


def test_notifier_same_kind_and_key_within_dedupe_sent_once(serve: Callable[..., Receiver]) -> None:
    # Arrange
    receiver = serve()
    notifier = AppriseNotifier(_settings(receiver.url(), dedupe_seconds=60))
    stale = NoticeKind.STALE_FEED

    # Act
    for notice in [
        _notice(stale, "feed stale", key="EURUSD"),
        _notice(stale, "feed stale again", key="EURUSD"),  # same kind and key: dropped
        _notice(stale, "other feed stale", key="GBPUSD"),
        _notice(NoticeKind.RISK_STATE, "same key, other kind", key="EURUSD"),
        _notice(stale, "no key"),
        _notice(stale, "no key"),  # no key: never de-duplicated
    ]:
        notifier.notify(notice)
    notifier.close(5)

    # Assert
    titles = [b["title"] for b in receiver.delivered]
    assert titles == ["feed stale", "other feed stale", "same key, other kind", "no key", "no key"]


def test_notifier_same_key_after_dedupe_window_sent_again(serve: Callable[..., Receiver]) -> None:
    # Arrange
    receiver = serve()
    notifier = AppriseNotifier(_settings(receiver.url(), dedupe_seconds=0.2))

    # Act
    notifier.notify(_notice(key="k"))
    time.sleep(0.3)
    notifier.notify(_notice(key="k"))
    notifier.close(5)

    # Assert
    assert len(receiver.delivered) == 2


def test_notifier_over_per_minute_delays_excess_not_dropped(
    serve: Callable[..., Receiver],
) -> None:
    # Arrange
    receiver = serve()
    window = 0.6
    notifier = AppriseNotifier(_settings(receiver.url(), per_minute=2), window=window)

    # Act
    for number in range(3):
        notifier.notify(_notice(title=f"fill {number}"))
    all_arrived = receiver.wait_for(3)
    notifier.close(5)

    # Assert
    assert all_arrived
    times = [at for _, _, at in receiver.requests]
    assert times[1] - times[0] < window / 2
    assert times[2] - times[0] >= window * 0.9
    assert [b["title"] for b in receiver.delivered] == ["fill 0", "fill 1", "fill 2"]


def test_notifier_receiver_failing_twice_retried_until_delivered(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    # Arrange
    receiver = serve(fail_first=2)
    spool = tmp_path / "spool.jsonl"
    notifier = AppriseNotifier(_settings(receiver.url(), retries=3), spool, **FAST)

    # Act
    notifier.notify(_notice())
    arrived = receiver.wait_for(3)
    notifier.close(5)

    # Assert
    assert arrived
    assert len(receiver.requests) == 3
    assert [b["title"] for b in receiver.delivered] == ["EURUSD long 0.10 lots"]
    assert not spool.exists()


def test_notifier_retries_exhausted_keeps_notice_in_spool(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    # Arrange
    receiver = serve(fail_first=1000)
    spool = tmp_path / "spool.jsonl"
    notifier = AppriseNotifier(_settings(receiver.url(), retries=2), spool, **FAST)

    # Act
    notifier.notify(_notice())
    receiver.wait_for(3)
    time.sleep(0.2)
    notifier.close(5)

    # Assert
    assert len(receiver.requests) == 3  # the first attempt and two retries
    assert [r["title"] for r in _spooled(spool)] == ["EURUSD long 0.10 lots"]


def test_notifier_one_target_failing_retries_only_that_target(
    serve: Callable[..., Receiver],
) -> None:
    # Arrange
    good, flaky = serve(), serve(fail_first=1)
    notifier = AppriseNotifier(_settings(good.url(), flaky.url(), retries=2), None, **FAST)

    # Act
    notifier.notify(_notice())
    flaky.wait_for(2)
    notifier.close(5)

    # Assert
    assert (len(good.requests), len(flaky.requests)) == (1, 2)


def test_notifier_off_kind_not_sent(serve: Callable[..., Receiver]) -> None:
    # Arrange
    receiver = serve()
    notifier = AppriseNotifier(_settings(receiver.url(), events={"trade_opened": "off"}))

    # Act
    notifier.notify(_notice(NoticeKind.TRADE_OPENED, "opened"))
    notifier.notify(_notice(NoticeKind.TRADE_CLOSED, "closed"))
    notifier.close(5)

    # Assert
    assert [b["title"] for b in receiver.delivered] == ["closed"]


def test_notifier_silent_kind_sent_to_telegram_without_sound(
    serve: Callable[..., Receiver], telegram_api: Callable[[Receiver], None]
) -> None:
    # Arrange
    api = serve()
    telegram_api(api)
    settings = _settings(TELEGRAM_URL, events={"daily_summary": "silent"})
    notifier = AppriseNotifier(settings)

    # Act
    notifier.notify(_notice(NoticeKind.TRADE_OPENED, "opened"))
    notifier.notify(_notice(NoticeKind.DAILY_SUMMARY, "summary"))
    notifier.close(5)

    # Assert
    sent = {b["text"].split("\n", 1)[0]: b["disable_notification"] for b in api.delivered}
    assert len(sent) == 2
    assert [quiet for text, quiet in sent.items() if "summary" in text] == [True]
    assert [quiet for text, quiet in sent.items() if "opened" in text] == [False]


# -- never blocking, shutdown and the spool --------------------------------------------------


def test_notify_returns_within_5ms_while_receiver_sleeps(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    # Arrange
    receiver = serve(delay=2.0)
    spool = tmp_path / "spool.jsonl"
    notifier = AppriseNotifier(_settings(receiver.url()), spool)
    notifier.notify(_notice(title="first"))
    receiver.wait_for(1)  # the worker is now inside a 2 s request

    # Act
    took = []
    for number in range(20):
        started = time.perf_counter()
        notifier.notify(_notice(title=f"fill {number}"))
        took.append(time.perf_counter() - started)
    started = time.perf_counter()
    notifier.close(0.3)
    closing = time.perf_counter() - started

    # Assert
    assert max(took) < 0.005
    assert closing < 1.0
    assert len(_spooled(spool)) == 21  # the one in flight may arrive too: at least once


def test_close_drains_queue_ignoring_rate_limit(serve: Callable[..., Receiver]) -> None:
    # Arrange
    receiver = serve()
    notifier = AppriseNotifier(_settings(receiver.url(), per_minute=1))
    for number in range(3):
        notifier.notify(_notice(title=f"fill {number}"))

    # Act
    started = time.perf_counter()
    notifier.close(5)
    closing = time.perf_counter() - started

    # Assert
    assert [b["title"] for b in receiver.delivered] == ["fill 0", "fill 1", "fill 2"]
    assert closing < 3.0


def test_close_dead_receiver_spools_then_next_notifier_sends_them_first(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    # Arrange
    spool = tmp_path / "state" / "spool.jsonl"
    dead = AppriseNotifier(_settings(_dead_url(), retries=0), spool, **FAST)
    dead.notify(_notice(title="opened"))
    dead.notify(_notice(NoticeKind.TRADE_CLOSED, title="closed"))
    dead.close(2)
    raw = spool.read_text()
    receiver = serve()

    # Act
    notifier = AppriseNotifier(_settings(receiver.url()), spool)
    notifier.notify(_notice(NoticeKind.LOOP_STOPPED, title="stopped"))
    notifier.close(5)

    # Assert
    spooled = [json.loads(line) for line in raw.splitlines()]
    assert [(r["kind"], r["title"]) for r in spooled] == [
        ("trade_opened", "opened"),
        ("trade_closed", "closed"),
    ]
    assert "json://" not in raw and "127.0.0.1" not in raw
    assert [b["title"] for b in receiver.delivered] == ["opened", "closed", "stopped"]
    assert receiver.delivered[0]["message"] == format_notice(_notice(title="opened"))[1]
    assert list(spool.parent.iterdir()) == []


def test_notifier_claim_left_by_dead_process_resent(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    # Arrange
    spool = tmp_path / "spool.jsonl"
    dead = AppriseNotifier(_settings(_dead_url(), retries=0), spool, **FAST)
    dead.notify(_notice(title="left behind"))
    dead.close(2)
    gone = next(p for p in range(4_194_303, 4_000_000, -1) if _no_process(p))
    spool.rename(spool.with_name(f"{spool.name}.{gone}-1-0.sending"))
    receiver = serve()

    # Act
    AppriseNotifier(_settings(receiver.url()), spool).close(5)

    # Assert
    assert [b["title"] for b in receiver.delivered] == ["left behind"]
    assert list(tmp_path.iterdir()) == []


def _no_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def test_notify_after_close_goes_to_spool(serve: Callable[..., Receiver], tmp_path: Path) -> None:
    # Arrange
    receiver = serve()
    spool = tmp_path / "spool.jsonl"
    notifier = AppriseNotifier(_settings(receiver.url()), spool)
    notifier.close(5)

    # Act
    notifier.notify(_notice(title="late"))

    # Assert
    assert receiver.requests == []
    assert [r["title"] for r in _spooled(spool)] == ["late"]


# -- secrets ---------------------------------------------------------------------------------


def test_secret_token_not_in_logs_output_spool_or_errors(
    serve: Callable[..., Receiver],
    telegram_api: Callable[[Receiver], None],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Arrange
    api = serve(fail_first=1000)  # Telegram answers every request with an error
    telegram_api(api)
    receiver = serve()
    settings = _settings(TELEGRAM_URL, receiver.url(), retries=1)
    spool = tmp_path / "spool.jsonl"
    caplog.set_level(1)  # everything, Apprise's TRACE level too

    # Act
    notifier = AppriseNotifier(settings, spool, **FAST)
    notifier.notify(_notice())
    api.wait_for(2)
    notifier.close(5)
    with pytest.raises(SolodeskError) as raised:
        send_now(settings, _notice(NoticeKind.TEST, "test"))
    with pytest.raises(UsageError) as refused:
        AppriseNotifier(_settings(f"nosuchservice://{TOKEN}/x"))

    # Assert
    assert all(TOKEN in path for path, _, _ in api.requests)  # the token really was used
    assert any("Telegram POST URL" in r.getMessage() for r in caplog.records)
    assert "Telegram (target 1)" in str(raised.value)
    captured = capsys.readouterr()
    written = {
        "log text": caplog.text,
        "log records": "\n".join(f"{r.getMessage()} {r.exc_text}" for r in caplog.records),
        "stdout": captured.out,
        "stderr": captured.err,
        "spool": spool.read_text(),
        "error": "".join(traceback.format_exception(raised.value)),
        "usage error": "".join(traceback.format_exception(refused.value)),
    }
    assert {where: TOKEN in text for where, text in written.items()} == dict.fromkeys(
        written, False
    )


@given(
    token=st.text(
        alphabet=st.characters(codec="ascii", categories=("L", "N"), include_characters="_-"),
        min_size=6,
        max_size=40,
    )
)
def test_url_secrets_telegram_token_masked_in_any_spelling(token: str) -> None:
    # Arrange
    url = f"tgram://123456789:{token}/12345"
    secrets = url_secrets(url)
    texts = [
        f"POST https://api.telegram.org/bot123456789:{token}/sendMessage",
        f"loaded {url}",
        f"tgram://123456789%3A{token}/12345/?format=text",
    ]

    # Act
    cleaned = [redact(text, secrets) for text in texts]

    # Assert
    assert all(token not in text for text in cleaned)


def test_url_secrets_dotted_host_and_port_stay_readable() -> None:
    # Arrange
    url = "json://user:pa55word@hooks.example.com:8443/v1/webhook-abcdef?key=k3y-value"

    # Act
    cleaned = redact(
        "POST https://hooks.example.com:8443/v1/webhook-abcdef k3y-value", url_secrets(url)
    )

    # Assert
    assert cleaned == "POST https://hooks.example.com:8443/v1/*** ***"
    assert {"pa55word", "user:pa55word"} <= url_secrets(url)


# -- without URLs ----------------------------------------------------------------------------


def test_log_notifier_logs_each_notice_at_info(caplog: pytest.LogCaptureFixture) -> None:
    # Arrange
    notifier = LogNotifier(_settings(events={"trade_closed": "off"}))
    caplog.set_level(logging.INFO, logger="execution.notify")

    # Act
    notifier.notify(_notice(NoticeKind.TRADE_OPENED, "opened"))
    notifier.notify(_notice(NoticeKind.TRADE_CLOSED, "closed"))
    notifier.close()

    # Assert
    messages = [r.getMessage() for r in caplog.records if r.name == "execution.notify"]
    assert len(messages) == 1
    assert messages[0].startswith("notice trade_opened: opened")
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "execution.notify")


def test_apprise_notifier_without_urls_raises_usage_error() -> None:
    # Act
    with pytest.raises(UsageError) as raised:
        AppriseNotifier(_settings())

    # Assert
    assert "SOLODESK_NOTIFY__URLS" in str(raised.value)

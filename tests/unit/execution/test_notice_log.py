"""The alert log: every notice the desk raises, one JSON line each, with its mode and what became
of it; secrets masked, whole lines from many writers, rotation past its size, never raising into
the loop; and the reader the dashboard uses."""

from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from testkit.receiver import Receiver

from core.ports import Notice, NoticeKind
from core.settings import NotifySettings, Settings
from execution.notify import (
    AppriseNotifier,
    LoggedNotifier,
    LogNotifier,
    NoticeLog,
    NoticeMode,
    NoticeOutcome,
    notice_modes,
    read_notice_log,
    rotated_path,
)
from services.notify import alert_log, open_notifier

TOKEN = "SECRETTOKENxyz"


def _dead_url(path: str = "/hook") -> str:
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"json://127.0.0.1:{port}{path}"


def _notice(
    kind: NoticeKind = NoticeKind.TRADE_OPENED, title: str = "EURUSD long", key: str = ""
) -> Notice:
    return Notice(
        kind=kind, title=title, body="Bought 10000 EURUSD at 1.08345.", session="paper:t1",
        ts=datetime(2017, 3, 6, 9, 0, tzinfo=UTC), key=key, fields={"units": 10000},
    )  # fmt: skip


def _log(path: Path, **events: str) -> NoticeLog:
    return NoticeLog(path, notice_modes(NotifySettings(events=events)))


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_logged_notifier_without_urls_records_each_notice_as_logged(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "state" / "notices.jsonl"
    log = _log(path)
    notifier = LoggedNotifier(LogNotifier(NotifySettings()), log, NoticeOutcome.LOGGED)

    # Act
    notifier.notify(_notice(title="first"))
    notifier.notify(_notice(NoticeKind.RISK_STATE, title="second"))
    notifier.close()

    # Assert
    first, second = _lines(path)
    assert (first["title"], first["kind"], first["outcome"], first["mode"]) == (
        "first", "trade_opened", "logged", "on",
    )  # fmt: skip
    assert second["kind"] == "risk_state"
    assert first["session"] == "paper:t1" and first["body"].startswith("Bought")
    assert first["ts"] == "2017-03-06T09:00:00Z"
    assert first["at"].endswith("Z") and first["updated"].endswith("Z")
    assert first["fields"] == {"units": 10000}


def test_logged_notifier_notice_without_time_stamped_in_utc(tmp_path: Path) -> None:
    # Arrange
    log = _log(tmp_path / "notices.jsonl")
    notifier = LoggedNotifier(LogNotifier(NotifySettings()), log, NoticeOutcome.LOGGED)

    # Act
    notifier.notify(Notice(NoticeKind.CONTROL, "paused", "by the trader"))

    # Assert
    (entry,) = read_notice_log(log.path)
    assert entry.ts is not None and entry.ts.endswith("Z")


def test_logged_notifier_off_kind_recorded_as_off_and_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Arrange
    settings = NotifySettings(events={"trade_opened": "off", "risk_state": "silent"})
    log = NoticeLog(tmp_path / "notices.jsonl", notice_modes(settings))
    notifier = LoggedNotifier(LogNotifier(settings), log, NoticeOutcome.LOGGED)

    # Act
    with caplog.at_level(logging.INFO, logger="execution.notify"):
        notifier.notify(_notice())
        notifier.notify(_notice(NoticeKind.RISK_STATE))

    # Assert
    silent, off = read_notice_log(log.path)
    assert (off.kind, off.mode, off.outcome) == ("trade_opened", "off", "off")
    assert (silent.kind, silent.mode, silent.outcome) == ("risk_state", "silent", "logged")
    assert "trade_opened" not in caplog.text


def test_logged_notifier_apprise_delivered_recorded_after_queued(tmp_path: Path) -> None:
    # Arrange
    log = _log(tmp_path / "notices.jsonl")
    with Receiver() as receiver:
        settings = NotifySettings(urls=(SecretStr(receiver.url()),))
        notifier = LoggedNotifier(AppriseNotifier(settings, on_outcome=log.settled), log)

        # Act
        notifier.notify(_notice())
        assert receiver.wait_for(1)
        notifier.close(5)

    # Assert
    queued, delivered = _lines(log.path)
    assert (queued["outcome"], delivered["outcome"]) == ("queued", "delivered")
    assert queued["id"] == delivered["id"] and queued["at"] == delivered["at"]
    (entry,) = read_notice_log(log.path)
    assert entry.outcome == "delivered"


def test_logged_notifier_dead_target_spooled_and_repeat_recorded(tmp_path: Path) -> None:
    # Arrange
    log = _log(tmp_path / "notices.jsonl")
    settings = NotifySettings(urls=(SecretStr(_dead_url()),), retries=0, dedupe_seconds=60)
    inner = AppriseNotifier(settings, tmp_path / "spool.jsonl", on_outcome=log.settled)
    notifier = LoggedNotifier(inner, log)

    # Act
    notifier.notify(_notice(title="once", key="k"))
    notifier.notify(_notice(title="again", key="k"))
    notifier.close(5)

    # Assert
    outcomes = {e.title: e.outcome for e in read_notice_log(log.path)}
    assert outcomes == {"once": "spooled", "again": "repeat"}
    assert [
        json.loads(x)["title"] for x in (tmp_path / "spool.jsonl").read_text().splitlines()
    ] == ["once"]


def test_notice_log_url_secret_in_a_notice_masked(tmp_path: Path) -> None:
    # Arrange
    log = _log(tmp_path / "notices.jsonl")
    settings = NotifySettings(urls=(SecretStr(_dead_url(f"/{TOKEN}")),), retries=0)
    notifier = LoggedNotifier(AppriseNotifier(settings, on_outcome=log.settled), log)

    # Act
    notifier.notify(_notice(title=f"token {TOKEN} leaked"))
    notifier.close(5)

    # Assert
    text = log.path.read_text()
    assert TOKEN not in text
    assert "token *** leaked" in text


def test_notice_log_past_max_bytes_rotates_and_reader_reads_both(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "notices.jsonl"
    log = NoticeLog(path, notice_modes(NotifySettings()), max_bytes=2_000)

    # Act
    for n in range(12):
        log.raised(_notice(title=f"n{n}"), NoticeOutcome.LOGGED)

    # Assert
    assert rotated_path(path).exists()
    assert path.stat().st_size <= 2_000
    kept = [e.title for e in read_notice_log(path, limit=100)]
    assert kept[0] == "n11"
    assert kept == [f"n{n}" for n in range(11, 11 - len(kept), -1)]
    assert len(kept) > len(_lines(path))


def _write_concurrently(path: Path, max_bytes: int, workers: int = 6, each: int = 150) -> None:
    # Two logs on one file play two processes: each has its own lock, the file lock is shared.
    logs = [NoticeLog(path, notice_modes(NotifySettings()), max_bytes=max_bytes) for _ in range(2)]

    def write(log: NoticeLog, worker: int) -> None:
        for n in range(each):
            log.raised(_notice(title=f"w{worker}-{n}"), NoticeOutcome.LOGGED)

    threads = [threading.Thread(target=write, args=(logs[w % 2], w)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_notice_log_many_writers_append_every_line_whole(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "notices.jsonl"

    # Act
    _write_concurrently(path, max_bytes=10_000_000)

    # Assert
    lines = _lines(path)
    assert len(lines) == 6 * 150
    assert len({line["id"] for line in lines}) == len(lines)


def test_notice_log_many_writers_rotating_keep_whole_lines_under_the_cap(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "notices.jsonl"

    # Act
    _write_concurrently(path, max_bytes=40_000)

    # Assert
    lines = [*_lines(rotated_path(path)), *_lines(path)]
    assert path.stat().st_size <= 40_000 and rotated_path(path).stat().st_size <= 40_000
    assert len({line["id"] for line in lines}) == len(lines) > 100


def test_notice_log_unwritable_path_logs_error_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Arrange: the log's path is a folder
    path = tmp_path / "notices.jsonl"
    path.mkdir()
    notifier = LoggedNotifier(LogNotifier(NotifySettings()), _log(path), NoticeOutcome.LOGGED)

    # Act
    with caplog.at_level(logging.ERROR, logger="execution.notify"):
        notifier.notify(_notice())

    # Assert
    assert "could not append to the alert log" in caplog.text


def test_read_notice_log_newest_first_limited_and_of_kinds(tmp_path: Path) -> None:
    # Arrange
    log = _log(tmp_path / "notices.jsonl")
    kinds = [NoticeKind.TRADE_OPENED, NoticeKind.RISK_STATE, NoticeKind.TRADE_CLOSED] * 3
    for n, kind in enumerate(kinds):
        log.raised(_notice(kind, title=f"n{n}"), NoticeOutcome.LOGGED)

    # Act
    latest = read_notice_log(log.path, limit=4)
    risky = read_notice_log(log.path, kinds=("risk_state",))

    # Assert
    assert [e.title for e in latest] == ["n8", "n7", "n6", "n5"]
    assert [e.title for e in risky] == ["n7", "n4", "n1"]


def test_read_notice_log_bad_line_skipped_missing_file_empty(tmp_path: Path) -> None:
    # Arrange
    log = _log(tmp_path / "notices.jsonl")
    log.raised(_notice(title="good"), NoticeOutcome.LOGGED)
    with log.path.open("a") as handle:
        handle.write("{not json\n")

    # Act
    entries = read_notice_log(log.path)
    none = read_notice_log(tmp_path / "absent.jsonl")

    # Assert
    assert [e.title for e in entries] == ["good"]
    assert none == []


def test_open_notifier_records_in_the_desk_alert_log(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")
    notifier = open_notifier(settings)

    # Act
    notifier.notify(_notice(NoticeKind.LOOP_STARTED, title="session started"))
    notifier.close()

    # Assert
    assert isinstance(notifier.inner, LogNotifier)
    (entry,) = alert_log(settings)
    assert (entry.title, entry.outcome) == ("session started", "logged")
    assert settings.notice_log_path.exists()


def test_open_notifier_with_urls_records_spooled_outcome(tmp_path: Path) -> None:
    # Arrange
    notify = NotifySettings(urls=(SecretStr(_dead_url()),), retries=0)
    settings = Settings(home=tmp_path / "home", notify=notify)
    notifier = open_notifier(settings)

    # Act
    notifier.notify(_notice(NoticeKind.LOOP_STOPPED, title="stopped"))
    notifier.close(2)

    # Assert
    assert isinstance(notifier.inner, AppriseNotifier)
    (entry,) = alert_log(settings)
    assert (entry.title, entry.outcome, entry.mode) == ("stopped", "spooled", NoticeMode.ON.value)

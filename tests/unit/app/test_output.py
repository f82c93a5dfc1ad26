"""The one JSON emitter and the one table printer of the command line."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel

from app.output import cell, emit, print_table
from core.types import Side


class _Row(BaseModel):
    side: Side
    at: datetime
    folder: Path


def test_emit_every_time_iso_utc_with_z_and_values_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Arrange
    east = timezone(timedelta(hours=2))
    record = {
        "aware": datetime(2017, 1, 2, 11, 0, tzinfo=east),
        "naive": datetime(2017, 1, 2, 9, 0),
        "day": date(2017, 1, 2),
        "side": Side.BID,
        "path": Path("/tmp/x"),
        "nested": {"when": datetime(2017, 1, 2, 9, 0, tzinfo=UTC)},
    }

    # Act
    emit(record)
    emit(_Row(side=Side.ASK, at=datetime(2017, 1, 2, 9, 0, tzinfo=UTC), folder=Path("d")))
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())

    # Assert
    assert first == {
        "aware": "2017-01-02T09:00:00Z", "naive": "2017-01-02T09:00:00Z", "day": "2017-01-02",
        "side": "bid", "path": "/tmp/x", "nested": {"when": "2017-01-02T09:00:00Z"},
    }  # fmt: skip
    assert second == {"side": "ask", "at": "2017-01-02T09:00:00Z", "folder": "d"}


def test_print_table_cells_shown_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    # Act
    print_table("t", ("name", "value"), [("a", 0.123456), ("b", None), ("c", 12345.678)])
    shown = capsys.readouterr().out

    # Assert
    assert "0.1235" in shown and "12,345.68" in shown and " - " in shown
    assert cell(Side.MID) == "mid"

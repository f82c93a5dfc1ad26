"""Run ids: one format for every kind of run, unique within a second, sorted by time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.errors import UsageError
from core.ids import RUN_PREFIXES, new_run_id, registered_model_name
from core.timeframes import Timeframe

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [
        ("ingest", "in"),
        ("resample", "rs"),
        ("backtest", "bt"),
        ("sweep", "sw"),
        ("portfolio", "pf"),
        ("walkforward", "wf"),
        ("train", "tr"),
        ("paper", "pp"),
        ("mt4_sim", "ms"),
    ],
)
def test_new_run_id_every_kind_has_the_one_format(kind: str, prefix: str) -> None:
    # Act
    run_id = new_run_id(kind, WHEN)

    # Assert
    assert re.fullmatch(rf"{prefix}-20260102T030405-[0-9a-f]{{6}}", run_id), run_id


def test_new_run_id_prefixes_cover_every_kind_once() -> None:
    # Act
    prefixes = list(RUN_PREFIXES.values())

    # Assert
    assert set(RUN_PREFIXES) == {
        "ingest", "resample", "backtest", "sweep", "portfolio", "walkforward", "train",
        "paper", "mt4_sim",
    }  # fmt: skip
    assert len(set(prefixes)) == len(prefixes)


def test_new_run_id_unknown_kind_raises_usage_error_listing_kinds() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"unknown kind of run 'optimize' \(known: ingest, "):
        new_run_id("optimize", WHEN)


def test_new_run_id_same_moment_differs_and_sorts_by_time() -> None:
    # Act
    ids = {new_run_id("backtest", WHEN) for _ in range(20)}
    later = new_run_id("backtest", WHEN + timedelta(seconds=1))

    # Assert
    assert len(ids) > 1
    assert all(i.startswith("bt-20260102T030405-") for i in ids)
    assert all(later > i for i in ids)


def test_new_run_id_ids_of_one_kind_sort_by_time() -> None:
    # Arrange: moments given out of order, across a day, a month and a year boundary.
    moments = [
        datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
        datetime(2026, 10, 1, 9, 0, 0, tzinfo=UTC),
    ]

    # Act
    ids = {moment: new_run_id("sweep", moment) for moment in moments}

    # Assert
    assert sorted(ids.values()) == [ids[m] for m in sorted(moments)]


def test_new_run_id_moment_with_an_offset_or_naive_is_written_in_utc() -> None:
    # Arrange
    paris = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    naive = datetime(2026, 1, 2, 3, 4, 5)

    # Act / Assert
    assert new_run_id("train", paris).startswith("tr-20260102T030405-")
    assert new_run_id("train", naive).startswith("tr-20260102T030405-")


def test_new_run_id_without_moment_uses_now() -> None:
    # Arrange
    before = datetime.now(UTC).replace(microsecond=0)

    # Act
    run_id = new_run_id("ingest")

    # Assert
    stamp = datetime.strptime(run_id.split("-")[1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    assert before <= stamp <= datetime.now(UTC)


def test_registered_model_name_joins_symbol_timeframe_and_set() -> None:
    # Act / Assert
    assert registered_model_name("EURUSD", Timeframe.H1, "default") == "EURUSD-H1-default"

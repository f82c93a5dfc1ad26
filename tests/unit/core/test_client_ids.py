"""Client order ids and execution ids: short, printable, deterministic, sorted by sequence."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.errors import UsageError
from core.ids import (
    CLIENT_ORDER_ID_MAX,
    EXECUTION_ID_MAX,
    RUN_PREFIXES,
    client_order_id,
    execution_id,
    new_run_id,
)

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LAST_SEQ = 36**10 - 1
ID_CHARS = set(string.ascii_lowercase + string.digits + "-")

moments = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
)
seqs = st.integers(min_value=0, max_value=LAST_SEQ)


def test_client_order_id_known_moment_and_seq_gives_time_dash_base36() -> None:
    # Act
    cid = client_order_id(WHEN, 71)

    # Assert
    assert cid == "c260102030405-000000001z"


@given(moment=moments, seq=seqs)
@example(moment=datetime(2000, 1, 2, tzinfo=UTC), seq=0)
@example(moment=datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), seq=LAST_SEQ)
def test_client_order_id_any_moment_and_seq_fits_an_mt4_comment(moment: datetime, seq: int) -> None:
    # Act
    cid = client_order_id(moment, seq)

    # Assert
    assert len(cid) <= CLIENT_ORDER_ID_MAX
    assert cid.isascii() and cid.isprintable() and ";" not in cid
    assert cid[0] == "c" and set(cid[1:]) <= ID_CHARS
    assert re.fullmatch(r"c\d{12}-[0-9a-z]+", cid)
    assert int(cid.split("-")[1], 36) == seq


@given(moment=moments, first=seqs, second=seqs)
@example(moment=WHEN, first=35, second=36)
@example(moment=WHEN, first=0, second=LAST_SEQ)
def test_client_order_id_greater_seq_sorts_after(moment: datetime, first: int, second: int) -> None:
    # Act
    ids = client_order_id(moment, first), client_order_id(moment, second)

    # Assert: the ids order as the sequence does (and differ when it does).
    assert (ids[0] < ids[1]) == (first < second)
    assert (ids[0] == ids[1]) == (first == second)


@given(moment=moments, seq=seqs, later_seq=seqs)
def test_client_order_id_later_second_sorts_after_whatever_the_seq(
    moment: datetime, seq: int, later_seq: int
) -> None:
    # Act
    earlier = client_order_id(moment, seq)
    later = client_order_id(moment + timedelta(seconds=1), later_seq)

    # Assert
    assert earlier < later


def test_client_order_id_same_arguments_same_id_in_any_offset() -> None:
    # Arrange: the same instant in Paris and naive (taken as UTC).
    paris = WHEN.astimezone(timezone(timedelta(hours=1)))
    naive = WHEN.replace(tzinfo=None)

    # Act
    ids = {client_order_id(WHEN, 7), client_order_id(paris, 7), client_order_id(naive, 7)}

    # Assert
    assert ids == {"c260102030405-0000000007"}


@pytest.mark.parametrize("seq", [-1, -(36**10)])
def test_client_order_id_negative_seq_raises_usage_error(seq: int) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=rf"order sequence {seq} is negative"):
        client_order_id(WHEN, seq)


def test_client_order_id_seq_past_ten_base36_digits_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="longer than 24 characters"):
        client_order_id(WHEN, LAST_SEQ + 1)


@given(moment=moments, seq=seqs, part=st.integers(min_value=0, max_value=999_999))
@example(moment=WHEN, seq=LAST_SEQ, part=999_999)
def test_execution_id_any_fill_of_any_order_fits_31_characters(
    moment: datetime, seq: int, part: int
) -> None:
    # Arrange
    cid = client_order_id(moment, seq)

    # Act
    fill_id = execution_id(cid, part)

    # Assert
    assert fill_id == f"{cid}.{part}"
    assert len(fill_id) <= EXECUTION_ID_MAX
    assert fill_id.isascii() and fill_id.isprintable() and ";" not in fill_id


def test_execution_id_too_long_raises_usage_error() -> None:
    # Arrange
    cid = client_order_id(WHEN, 0)

    # Act / Assert
    with pytest.raises(UsageError, match=r"32 characters, longer than 31"):
        execution_id(cid, 1_000_000)


@pytest.mark.parametrize(
    ("cid", "part", "message"),
    [
        ("c260102030405-0000000001", -1, "fill number -1 .* is negative"),
        ("", 0, "is not an order id"),
        ("c1;2", 0, "is not an order id"),
        ("c1 2", 0, "is not an order id"),
        ("c1é", 0, "is not an order id"),
    ],
)
def test_execution_id_bad_input_raises_usage_error(cid: str, part: int, message: str) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=message):
        execution_id(cid, part)


def test_new_run_id_paper_session_has_pp_prefix() -> None:
    # Act
    session = new_run_id("paper", WHEN)

    # Assert
    assert RUN_PREFIXES["paper"] == "pp"
    assert re.fullmatch(r"pp-20260102T030405-[0-9a-f]{6}", session)

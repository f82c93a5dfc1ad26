"""ISO-8601 UTC with Z: the one way instants are written, and the one way dates are read."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import polars as pl
import pytest

from core.errors import UsageError
from core.times import (
    iso_z,
    iso_z_expr,
    iso_z_ns,
    iso_z_or_none,
    jsonable,
    parse_utc,
    reformat_iso_z,
)


def test_iso_z_aware_naive_and_offset_times_all_end_in_z() -> None:
    # Arrange
    aware = datetime(2017, 1, 2, 9, 0, tzinfo=UTC)
    naive = datetime(2017, 1, 2, 9, 0)
    offset = datetime(2017, 1, 2, 11, 0, tzinfo=timezone(timedelta(hours=2)))

    # Act
    written = {iso_z(aware), iso_z(naive), iso_z(offset)}

    # Assert
    assert written == {"2017-01-02T09:00:00Z"}


def test_iso_z_sub_second_instant_cut_to_the_second_unless_asked() -> None:
    moment = datetime(2017, 1, 2, 9, 0, 0, 123456, tzinfo=UTC)

    assert iso_z(moment) == "2017-01-02T09:00:00Z"
    assert iso_z(moment, "microseconds") == "2017-01-02T09:00:00.123456Z"


def test_iso_z_ns_and_expression_agree_with_iso_z() -> None:
    # Arrange
    moment = datetime(2024, 3, 10, 7, 0, tzinfo=UTC)
    ns = int(moment.timestamp()) * 1_000_000_000

    # Act
    frame = pl.DataFrame({"ts": [moment]}).select(iso_z_expr(pl.col("ts")))

    # Assert
    assert iso_z_ns(ns) == iso_z(moment) == frame["ts"][0]
    assert iso_z_or_none(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2017-01-02", datetime(2017, 1, 2, tzinfo=UTC)),
        ("2017-01-02T09:00Z", datetime(2017, 1, 2, 9, tzinfo=UTC)),
        ("2017-01-02T09:00", datetime(2017, 1, 2, 9, tzinfo=UTC)),
        ("2017-01-02T11:00+02:00", datetime(2017, 1, 2, 9, tzinfo=UTC)),
        (" 2017-01-02 09:00:00Z ", datetime(2017, 1, 2, 9, tzinfo=UTC)),
    ],
)
def test_parse_utc_every_accepted_form_gives_the_utc_instant(text: str, expected: datetime) -> None:
    assert parse_utc(text) == expected


def test_parse_utc_not_a_date_names_the_option() -> None:
    with pytest.raises(UsageError, match=r"--from '2017-13-45' is not a date"):
        parse_utc("2017-13-45", "--from")


def test_reformat_iso_z_old_offset_forms_become_z_other_text_kept() -> None:
    assert reformat_iso_z("2026-11-24T10:15:00.123456+00:00") == "2026-11-24T10:15:00.123456Z"
    assert reformat_iso_z("2017-01-02 09:00:00+00:00") == "2017-01-02T09:00:00Z"
    assert reformat_iso_z("2017-01-02T09:00:00Z") == "2017-01-02T09:00:00Z"
    assert reformat_iso_z("not a time") == "not a time"


def test_jsonable_instants_and_dates_written_iso_others_untouched() -> None:
    assert jsonable(datetime(2017, 1, 2, tzinfo=UTC)) == "2017-01-02T00:00:00Z"
    assert jsonable(date(2017, 1, 2)) == "2017-01-02"
    assert jsonable(1.5) == 1.5

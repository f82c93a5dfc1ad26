"""Damaged rows inside readable files, in process: exit 0, clean rows stored, bad rows
quarantined."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from testkit.cli import Invocation, invoke, json_lines
from testkit.files import hourly_bars, hst_bytes, mt4_csv, utc, write
from testkit.store import assert_store_consistent, stored_series

# GBPUSD_H1.csv: a generic CSV (UTC) with one damage of each kind. (line, reason) of bad rows.
GBPUSD_ROWS = [
    "time,open,high,low,close,volume",
    "2017-01-03 00:00,1.2300,1.2310,1.2290,1.2305,10",  # 2
    "2017-01-03 01:00,1.2305,1.2315,1.2295,nan,11",  # 3 NaN close
    "2017-01-03 02:00,1.2305,1.2290,1.2315,1.2300,12",  # 4 high < low
    "2017-01-03 04:00,1.2310,1.2320,1.2300,1.2315,14",  # 5 (before 03:00: unsorted)
    "2017-01-03 03:00,1.2300,1.2312,1.2298,1.2310,13",  # 6
    "2017-01-03 03:00,1.2300,1.2312,1.2298,1.2310,13",  # 7 exact duplicate of 6
    "2017-01-03 05:00,1.2315,1.2325,1.2305,1.2320,15",  # 8
    "2017-01-03 05:00,1.2315,1.2330,1.2305,1.2325,30",  # 9 conflicts with 8, larger volume wins
    "2017-01-03 06:00,1.2320,1.2330,1.2310,1.2325,16",  # 10
    "2017-01-03 07:00,1.2325,1.2335,1.2315,1.2330,17",  # 11
]
GBPUSD_BAD = {
    ("GBPUSD_H1.csv", 3, "NaN price"),
    ("GBPUSD_H1.csv", 4, "high 1.229 below low 1.2315"),
    ("GBPUSD_H1.csv", 12, "unreadable open price"),  # garbage bytes
    ("GBPUSD_H1.csv", 13, "expected at least 6 fields"),  # truncated last line
}


def _gbpusd() -> bytes:
    garbage = b"2017-01-03 08:00,\x00\xff\xfe\x9c\x80zz\x07,1.2,1.1,1.2,5"
    text = "\n".join(GBPUSD_ROWS).encode() + b"\n" + garbage + b"\n" + b"2017-01-03 09:00,1.23,1.2"
    return text


@pytest.fixture(scope="module")
def corrupted_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Invocation, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("corrupted")
    inputs = folder / "inputs"
    write(inputs / "GBPUSD_H1.csv", _gbpusd())
    # EURUSD60.csv: MT4 export with a garbage line and a broken date; broker clock.
    bars = mt4_csv(hourly_bars(datetime(2017, 1, 3, 9), 4)).splitlines()
    write(inputs / "EURUSD60.csv", "\n".join([bars[0], "\x1b[31m\xc3(garbage", bars[1],
                                              "2017.13.45,10:00,1,1,1,1,1", bars[2], bars[3]]) + "\n")  # fmt: skip
    # USDJPY60.hst: three records, the last cut short.
    write(
        inputs / "USDJPY60.hst",
        hst_bytes(hourly_bars(datetime(2017, 1, 3, 9), 3, price=115.0), symbol="USDJPY", digits=3)[
            :-20
        ],
    )
    home = folder / "home"
    run = invoke(["ingest", str(inputs), "--as-of", "2030-01-01", "--json"], home, cwd=folder)
    quarantine = invoke(["data", "quarantine", "--json", "--limit", "0"], home, cwd=folder)
    assert quarantine.returncode == 0, quarantine.stderr
    return home, run, json_lines(quarantine.stdout)


def test_cli_corrupted_rows_exit_0_and_counts_add_up(
    corrupted_run: tuple[Path, Invocation, list[dict[str, Any]]],
) -> None:
    # Arrange
    _, run, _ = corrupted_run

    # Assert
    assert run.returncode == 0, run.stderr
    lines = {f"{s['symbol']} {s['timeframe']}": s for s in json_lines(run.stdout)}
    assert sorted(lines) == ["EURUSD H1", "GBPUSD H1", "USDJPY H1"]
    for s in lines.values():
        assert (
            s["rows_read"]
            == s["rows_added"] + s["rows_duplicate"] + s["rows_conflicting"] + s["rows_quarantined"]
        )
    gbp = lines["GBPUSD H1"]
    # 12 data lines: 4 bad, 1 exact repeat, 1 losing version, 6 bars.
    assert (gbp["rows_read"], gbp["rows_added"], gbp["rows_duplicate"]) == (12, 6, 1)
    assert (gbp["rows_conflicting"], gbp["rows_quarantined"]) == (1, 4)


def test_cli_corrupted_clean_rows_stored_sorted(
    corrupted_run: tuple[Path, Invocation, list[dict[str, Any]]],
) -> None:
    # Arrange
    home, _, _ = corrupted_run

    # Act
    series = stored_series(home / "store")

    # Assert
    gbp = series["GBPUSD.H1.bid"][1]
    assert gbp["ts"].to_list() == [utc(2017, 1, 3, h) for h in (0, 3, 4, 5, 6, 7)]
    assert gbp.filter(gbp["ts"] == utc(2017, 1, 3, 5))["volume"].to_list() == [30.0]
    assert series["EURUSD.H1.bid"][1]["ts"].to_list() == [utc(2017, 1, 3, h) for h in (7, 8, 9, 10)]
    assert series["USDJPY.H1.bid"][1]["ts"].to_list() == [utc(2017, 1, 3, 7), utc(2017, 1, 3, 8)]
    assert_store_consistent(home / "store")


def test_cli_corrupted_bad_rows_quarantined_with_source_line_reason(
    corrupted_run: tuple[Path, Invocation, list[dict[str, Any]]],
) -> None:
    # Arrange
    _, _, quarantine = corrupted_run

    # Act
    found = {(Path(q["source"]).name, q["line"], q["reason"]) for q in quarantine}

    # Assert
    assert found >= GBPUSD_BAD
    assert ("EURUSD60.csv", 2, "expected at least 7 fields") in found
    assert ("EURUSD60.csv", 4, "unreadable timestamp") in found
    assert ("USDJPY60.hst", 3, "truncated record") in found
    assert all(q["run"] and q["raw"] is not None for q in quarantine)
    conflict = [q for q in quarantine if q["reason"].startswith("conflict")]
    assert [(Path(q["source"]).name, q["line"]) for q in conflict] == [("GBPUSD_H1.csv", 8)]


def test_cli_corrupted_quarantine_table_and_symbol_filter(
    corrupted_run: tuple[Path, Invocation, list[dict[str, Any]]],
) -> None:
    # Arrange
    home, _, quarantine = corrupted_run

    # Act
    only_eur = invoke(["data", "quarantine", "--symbol", "eurusd", "--json"], home)
    table = invoke(["data", "quarantine", "--limit", "3"], home)

    # Assert
    rows = json_lines(only_eur.stdout)
    assert {r["symbol"] for r in rows} == {"EURUSD"}
    assert len(rows) == sum(q["symbol"] == "EURUSD" for q in quarantine) == 2
    assert table.returncode == 0, table.stderr
    assert f"{len(quarantine)} quarantined rows (first 3)" in table.stdout


def test_cli_corrupted_quarantine_json_times_written_with_z(
    corrupted_run: tuple[Path, Invocation, list[dict[str, Any]]],
) -> None:
    # Arrange
    _, _, quarantine = corrupted_run

    # Act
    times = {(Path(q["source"]).name, q["line"]): q["ts"] for q in quarantine}

    # Assert: rows whose time was read carry it ISO-8601 UTC with Z; unreadable times are null.
    assert times[("GBPUSD_H1.csv", 3)] == "2017-01-03T01:00:00Z"
    assert times[("EURUSD60.csv", 4)] is None
    written = [t for t in times.values() if t is not None]
    assert written and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in written)

"""End to end on the bundled sample, in process: ingest --json, re-ingest, data list/show/sql,
resample. One ``data list`` runs as a real process, for the exit status of a success."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
from conftest import SampleDesk
from testkit.cli import invoke, json_lines, run_solodesk
from testkit.store import assert_store_consistent, manifest_rows

SAMPLE_ROWS = 6225  # data lines of gym-anytrading's FOREX_EURUSD_1H_ASK.csv


def test_cli_ingest_sample_json_one_line_per_series_counts_add_up(sample_desk: SampleDesk) -> None:
    # Arrange
    (line,) = sample_desk.first

    # Assert
    assert (line["symbol"], line["timeframe"], line["side"]) == ("EURUSD", "H1", "ask")
    assert line["rows_read"] == (
        line["rows_added"]
        + line["rows_duplicate"]
        + line["rows_conflicting"]
        + line["rows_quarantined"]
    )
    assert line["rows_read"] == line["rows_added"] == SAMPLE_ROWS
    assert (line["first"], line["last"]) == ("2017-01-01T22:00:00Z", "2017-12-29T21:00:00Z")
    assert line["expectations"].endswith("passed")
    assert line["sources"] == ["sample:eurusd-h1"]


def test_cli_ingest_sample_again_adds_nothing_same_version(sample_desk: SampleDesk) -> None:
    # Arrange
    (first,), (second,) = sample_desk.first, sample_desk.second

    # Assert
    assert second["rows_added"] == 0
    assert second["rows_duplicate"] == second["rows_read"] == SAMPLE_ROWS
    assert second["version"] == first["version"]
    manifest = assert_store_consistent(sample_desk.home / "store")
    assert manifest_rows(manifest) == SAMPLE_ROWS
    assert len(manifest["runs"]) == 2


def test_cli_data_list_json_describes_the_series(sample_desk: SampleDesk) -> None:
    # Act
    run = invoke(["data", "list", "--json"], sample_desk.home)

    # Assert
    assert run.returncode == 0, run.stderr
    (series,) = json_lines(run.stdout)
    assert series == {
        "symbol": "EURUSD", "timeframe": "H1", "side": "ask", "rows": SAMPLE_ROWS,
        "first": "2017-01-01T22:00:00Z", "last": "2017-12-29T21:00:00Z", "volume_kind": "tick",
        "spread": False, "version": sample_desk.first[0]["version"],
        "sources": ["sample:eurusd-h1"],
    }  # fmt: skip


def test_cli_data_list_as_process_exit_0_json_only_on_stdout(sample_desk: SampleDesk) -> None:
    # Act
    run = run_solodesk(["data", "list", "--json"], sample_desk.home)

    # Assert
    assert run.returncode == 0, run.stderr
    (series,) = json_lines(run.stdout)
    assert (series["symbol"], series["rows"]) == ("EURUSD", SAMPLE_ROWS)
    assert "Traceback" not in run.stderr


def test_cli_data_show_json_window_and_tail(sample_desk: SampleDesk) -> None:
    # Act
    run = invoke(
        ["data", "show", "--symbol", "eurusd", "--timeframe", "60", "--from", "2017-03-01",
         "--to", "2017-03-01T03:00Z", "--tail", "10", "--json"],
        sample_desk.home,
    )  # fmt: skip
    tail = invoke(
        ["data", "show", "--symbol", "EURUSD", "--timeframe", "H1", "--tail", "2", "--json"],
        sample_desk.home,
    )

    # Assert
    assert run.returncode == 0, run.stderr
    bars = json_lines(run.stdout)
    assert [b["ts"] for b in bars] == [
        "2017-03-01T00:00:00Z", "2017-03-01T01:00:00Z", "2017-03-01T02:00:00Z",
    ]  # fmt: skip
    assert all(
        b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]
        for b in bars
    )
    assert [b["ts"] for b in json_lines(tail.stdout)] == [
        "2017-12-29T20:00:00Z",
        "2017-12-29T21:00:00Z",
    ]


def test_cli_data_show_table_names_series_and_version(sample_desk: SampleDesk) -> None:
    # Act
    run = invoke(["data", "show", "--symbol", "EURUSD", "--timeframe", "H1"], sample_desk.home)

    # Assert
    assert run.returncode == 0, run.stderr
    assert (
        f"EURUSD H1 ask ({SAMPLE_ROWS} bars, version {sample_desk.first[0]['version']})"
        in run.stdout
    )


def test_cli_data_show_unknown_series_exit_2_listing_stored(sample_desk: SampleDesk) -> None:
    # Act
    run = invoke(["data", "show", "--symbol", "GBPUSD", "--timeframe", "H1"], sample_desk.home)

    # Assert
    assert run.returncode == 2
    assert "no stored series GBPUSD H1 (stored: EURUSD H1 ask)" in run.stderr
    assert run.stdout == ""


def test_cli_resample_h1_to_h4_and_d1_on_broker_day(
    sample_desk: SampleDesk, copy_desk: Callable[[Path], Path]
) -> None:
    # Arrange
    home = copy_desk(sample_desk.home)
    args = ["resample", "--symbol", "EURUSD", "--source", "H1", "--side", "ask",
            "--timeframe", "H4", "--timeframe", "D1", "--json"]  # fmt: skip

    # Act
    first = invoke(args, home)
    again = invoke(args, home)

    # Assert
    assert first.returncode == 0, first.stderr
    h4, d1 = json_lines(first.stdout)
    assert (h4["timeframe"], d1["timeframe"]) == ("H4", "D1")
    assert d1["first"] == "2017-01-01T22:00:00Z"  # 17:00 New York, winter
    assert d1["rows_added"] == d1["rows_read"] > 250
    assert h4["rows_added"] == h4["rows_read"] > 4 * 250
    assert [line["rows_added"] for line in json_lines(again.stdout)] == [0, 0]
    listed = json_lines(invoke(["data", "list", "--json"], home).stdout)
    assert [(s["timeframe"], s["rows"]) for s in listed] == [
        ("H1", SAMPLE_ROWS), ("H4", h4["rows_added"]), ("D1", d1["rows_added"]),
    ]  # fmt: skip
    summer = json_lines(
        invoke(["data", "show", "--symbol", "EURUSD", "--timeframe", "D1", "--from",
                      "2017-07-03", "--to", "2017-07-05", "--json"], home).stdout
    )  # fmt: skip
    assert [b["ts"] for b in summer] == ["2017-07-03T21:00:00Z", "2017-07-04T21:00:00Z"]
    assert_store_consistent(home / "store")


def test_cli_resample_with_other_anchor_refused_exit_2(
    sample_desk: SampleDesk, copy_desk: Callable[[Path], Path]
) -> None:
    # Arrange
    home = copy_desk(sample_desk.home)
    base = [
        "resample",
        "--symbol",
        "EURUSD",
        "--source",
        "H1",
        "--side",
        "ask",
        "--timeframe",
        "D1",
    ]
    assert invoke(base, home).returncode == 0
    before = (home / "store" / "manifest.json").read_text()

    # Act
    run = invoke([*base, "--anchor", "utc"], home)

    # Assert
    assert run.returncode == 2
    assert "--anchor" in run.stderr
    assert (home / "store" / "manifest.json").read_text() == before


def test_cli_catalog_bars_count_equals_manifest_rows(sample_desk: SampleDesk) -> None:
    # Arrange
    manifest = json.loads((sample_desk.home / "store" / "manifest.json").read_text())

    # Act
    run = invoke(["data", "sql", "select count(*) as n from bars", "--json"], sample_desk.home)
    con = duckdb.connect(str(sample_desk.home / "catalog.duckdb"), read_only=True)
    try:
        direct = con.execute("select count(*) from bars").fetchone()
        series = con.execute("select symbol, timeframe, side, rows from series").fetchall()
    finally:
        con.close()

    # Assert
    assert run.returncode == 0, run.stderr
    assert json_lines(run.stdout) == [{"n": manifest_rows(manifest)}]
    assert direct == (manifest_rows(manifest),)
    assert series == [("EURUSD", "H1", "ask", SAMPLE_ROWS)]


def test_cli_data_sql_json_times_written_with_z(sample_desk: SampleDesk) -> None:
    # Act
    run = invoke(
        ["data", "sql", "select min(ts) as first, max(ts) as last from bars", "--json"],
        sample_desk.home,
    )

    # Assert
    assert run.returncode == 0, run.stderr
    assert json_lines(run.stdout) == [
        {"first": "2017-01-01T22:00:00Z", "last": "2017-12-29T21:00:00Z"}
    ]


def test_cli_data_sql_bad_query_exit_2(sample_desk: SampleDesk) -> None:
    # Act
    run = invoke(["data", "sql", "select nope from bars"], sample_desk.home)

    # Assert
    assert run.returncode == 2
    assert "query failed" in run.stderr


def test_cli_instruments_json_lists_registry(tmp_path: Path) -> None:
    # Act
    run = invoke(["instruments", "--json"], tmp_path / "home")

    # Assert
    assert run.returncode == 0, run.stderr
    by_symbol = {i["symbol"]: i for i in json_lines(run.stdout)}
    assert by_symbol["EURUSD"]["digits"] == 5
    assert "USA500IDXUSD" in by_symbol["US500"]["aliases"]

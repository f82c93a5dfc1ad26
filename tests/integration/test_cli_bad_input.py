"""Bad input: exit 2, a message naming the file (and line), and nothing from the run stored.

The invocations are independent, so each group runs side by side once per module and the
tests read their results.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from testkit.cli import run_many, run_solodesk
from testkit.files import hourly_bars, hst_bytes, hst_header, mt4_csv, write, zip_bytes

GOOD = mt4_csv(hourly_bars(datetime(2017, 1, 3, 9), 5))
HEADER_ONLY = b"time,open,high,low,close\n"
ONE_ROW = HEADER_ONLY + b"2017-01-03 09:00,1,1,1,1\n"


def _damaged_zip() -> bytes:
    data = zip_bytes({"EURUSD60.csv": (GOOD * 40).encode()})
    return data[: len(data) // 2]


# case -> (bad file name, its content (None: missing), text expected right after its path)
BAD_INPUTS: dict[str, tuple[str, Callable[[], bytes] | None, str]] = {
    "missing file": ("GBPUSD60.csv", None, ": no such file or folder"),
    "unknown format": ("GBPUSD60.dat", lambda: b"hello world\nno separators here\n", ":1: unknown format"),
    "no usable columns": ("GBPUSD_H1.csv", lambda: b"when,bid,ask\n2017-01-03 09:00,1.1,1.2\n",
                          ":1: no usable time, open, high, low, close column"),
    "damaged zip": ("GBPUSD60.zip", _damaged_zip, ": damaged zip archive"),
    "hst bad header": ("GBPUSD60.hst", lambda: hst_header(version=7) + b"\0" * 120,
                       ":1: not a MetaTrader 4 history file"),
    "hst bad period": ("GBPUSD.hst", lambda: hst_bytes(hourly_bars(datetime(2017, 1, 3), 2), period=7),
                       ":1: bad period in the header"),
    "no symbol": ("export.csv", lambda: ONE_ROW, ": no symbol in the file name or content: give --symbol"),
    "no timeframe": ("GBPUSD.csv", lambda: ONE_ROW, ": no timeframe in the file name or content: give --timeframe"),
    "header only": ("GBPUSD_H1.csv", lambda: HEADER_ONLY, ":1: no data lines"),
}  # fmt: skip


def _stored_files(home: Path) -> list[Path]:
    return [
        p for p in (home / "store").rglob("*") if p.is_file() and p.suffix in (".parquet", ".json")
    ]


@pytest.fixture(scope="module")
def bad_input_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, Path, subprocess.CompletedProcess[str]]]:
    jobs, cases = [], []
    for case, (name, content, _) in sorted(BAD_INPUTS.items()):
        folder = tmp_path_factory.mktemp("bad")
        good = write(folder / "in" / "EURUSD60.csv", GOOD)
        bad = folder / "in" / name
        if content is not None:
            write(bad, content())
        # A good file named before the bad one; --timeframe H1 also suits the good file and
        # leaves "no symbol" the only fault of export.csv.
        extra = ["--timeframe", "H1"] if case == "no symbol" else []
        jobs.append((["ingest", str(good), str(bad), "--json", *extra], folder / "home"))
        cases.append((case, bad, folder / "home"))
    runs = run_many(jobs)
    return {case: (bad, home, run) for (case, bad, home), run in zip(cases, runs, strict=True)}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_cli_ingest_bad_input_exit_2_names_file_and_stores_nothing(
    bad_input_runs: dict[str, tuple[Path, Path, subprocess.CompletedProcess[str]]], case: str
) -> None:
    # Arrange
    bad, home, run = bad_input_runs[case]
    expected = BAD_INPUTS[case][2]

    # Assert
    assert run.returncode == 2, run.stderr
    assert f"{bad}{expected}" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert _stored_files(home) == []
    assert not (home / "catalog.duckdb").exists()


def test_cli_ingest_bad_input_leaves_existing_store_unchanged(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    first = write(tmp_path / "in" / "EURUSD60.csv", GOOD)
    assert run_solodesk(["ingest", str(first)], home).returncode == 0
    before = {p: p.read_bytes() for p in _stored_files(home)}
    more = write(tmp_path / "in" / "EURUSD240.csv", mt4_csv(hourly_bars(datetime(2017, 2, 1), 5)))

    # Act
    run = run_solodesk(["ingest", str(more), str(tmp_path / "in" / "missing.csv")], home)

    # Assert
    assert run.returncode == 2
    assert {p: p.read_bytes() for p in _stored_files(home)} == before


BAD_USAGE: list[tuple[list[str], str]] = [
    (["ingest"], "nothing to ingest"),
    (["ingest", "x.csv", "--anchor", "noon"], "--anchor 'noon': use utc or broker"),
    (["ingest", "x.csv", "--date-order", "ymd"], "--date-order 'ymd': use dmy or mdy"),
    (["ingest", "x.csv", "--timeframe", "H2"], "unknown timeframe 'H2'"),
    (["ingest", "x.csv", "--as-of", "yesterday"], "--as-of 'yesterday' is not a date"),
    (["ingest", "x.csv", "--side", "last"], "'last' is not a valid Side"),
    (["ingest", "sample:eurusd-h1", "--tz", "Mars/Base"], "unknown clock 'Mars/Base'"),
    (["ingest", "--params", "missing.yaml"], "missing.yaml: cannot read parameters"),
    (["resample", "--symbol", "EURUSD", "--timeframe", "H4"], "no stored series EURUSD M1 bid"),
    (["ingest", "--colour", "red"], "No such option: --colour"),
    (["data", "show"], "Missing option '--symbol'"),
]


@pytest.fixture(scope="module")
def bad_usage_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[tuple[Path, subprocess.CompletedProcess[str]]]:
    homes = [tmp_path_factory.mktemp("usage") / "home" for _ in BAD_USAGE]
    runs = run_many([(args, home) for (args, _), home in zip(BAD_USAGE, homes, strict=True)])
    return list(zip(homes, runs, strict=True))


@pytest.mark.parametrize("index", range(len(BAD_USAGE)), ids=[m for _, m in BAD_USAGE])
def test_cli_bad_usage_exit_2_with_message(
    bad_usage_runs: list[tuple[Path, subprocess.CompletedProcess[str]]], index: int
) -> None:
    # Arrange
    home, run = bad_usage_runs[index]
    message = BAD_USAGE[index][1]

    # Assert
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert _stored_files(home) == []

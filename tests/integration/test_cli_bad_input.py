"""Bad input: exit 2, a message naming the file (and line), and nothing from the run stored.

The commands run in process; two runs go through a real process, for the exit status and the
stderr of ``main()`` as a shell sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from conftest import SampleDesk
from testkit.cli import invoke, run_solodesk
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


def _message(stderr: str) -> str:
    """Return stderr as one line, without the frame typer draws around usage errors."""
    return " ".join(stderr.replace("│", " ").split())


def _bad_input_args(case: str, folder: Path) -> tuple[list[str], Path]:
    """Write a good file and the case's bad file under ``folder``; return the ingest arguments
    (the good file named first) and the bad file."""
    name, content, _ = BAD_INPUTS[case]
    good = write(folder / "in" / "EURUSD60.csv", GOOD)
    bad = folder / "in" / name
    if content is not None:
        write(bad, content())
    # --timeframe H1 also suits the good file and leaves "no symbol" the only fault of export.csv.
    extra = ["--timeframe", "H1"] if case == "no symbol" else []
    return ["ingest", str(good), str(bad), "--json", *extra], bad


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_cli_ingest_bad_input_exit_2_names_file_and_stores_nothing(
    tmp_path: Path, case: str
) -> None:
    # Arrange
    args, bad = _bad_input_args(case, tmp_path)
    home = tmp_path / "home"

    # Act
    run = invoke(args, home)

    # Assert
    assert run.returncode == 2, run.stderr
    assert f"{bad}{BAD_INPUTS[case][2]}" in run.stderr
    assert run.exception is None
    assert run.stdout == ""
    assert _stored_files(home) == []
    assert not (home / "catalog.duckdb").exists()


def test_cli_ingest_bad_input_as_process_exit_2_without_traceback(tmp_path: Path) -> None:
    # Arrange
    args, bad = _bad_input_args("unknown format", tmp_path)
    home = tmp_path / "home"

    # Act
    run = run_solodesk(args, home)

    # Assert
    assert run.returncode == 2, run.stderr
    assert f"{bad}:1: unknown format" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert _stored_files(home) == []


def test_cli_ingest_bad_input_leaves_existing_store_unchanged(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    first = write(tmp_path / "in" / "EURUSD60.csv", GOOD)
    assert invoke(["ingest", str(first)], home).returncode == 0
    before = {p: p.read_bytes() for p in _stored_files(home)}
    more = write(tmp_path / "in" / "EURUSD240.csv", mt4_csv(hourly_bars(datetime(2017, 2, 1), 5)))

    # Act
    run = invoke(["ingest", str(more), str(tmp_path / "in" / "missing.csv")], home)

    # Assert
    assert run.returncode == 2
    assert f"{tmp_path / 'in' / 'missing.csv'}: no such file or folder" in run.stderr
    assert {p: p.read_bytes() for p in _stored_files(home)} == before


# (arguments, what the message says: every fragment appears in it)
BAD_USAGE: list[tuple[list[str], tuple[str, ...]]] = [
    (["ingest"], ("nothing to ingest",)),
    (["ingest", "x.csv", "--anchor", "noon"], ("'--anchor'", "'noon' is not one of 'utc', 'broker'")),
    (["ingest", "x.csv", "--date-order", "ymd"], ("'--date-order'", "'ymd' is not one of 'dmy', 'mdy'")),
    (["ingest", "x.csv", "--timeframe", "H2"], ("'--timeframe'", "unknown timeframe 'H2'")),
    (["ingest", "x.csv", "--as-of", "yesterday"], ("'--as-of'", "'yesterday' is not a date")),
    (["ingest", "x.csv", "--side", "last"], ("'--side'", "'last' is not one of 'bid', 'ask', 'mid'")),
    (["ingest", "x.csv", "--format", "xls"], ("'--format'", "'xls' is not one of 'mt4-csv'")),
    (["ingest", "x.csv", "--volume-kind", "lots"], ("'--volume-kind'", "'lots' is not one of 'none'")),
    (["ingest", "sample:eurusd-h1", "--tz", "Mars/Base"], ("unknown clock 'Mars/Base'",)),
    (["ingest", "--params", "missing.yaml"], ("missing.yaml: not found",)),
    (["resample", "--symbol", "EURUSD", "--timeframe", "H4"], ("no stored series EURUSD M1 bid",)),
    (["resample", "--symbol", "EURUSD", "--timeframe", "H4", "--side", "foo"],
     ("'--side'", "'foo' is not one of 'bid', 'ask', 'mid'")),
    (["resample", "--symbol", "EURUSD", "--timeframe", "H4", "--anchor", "noon"],
     ("'--anchor'", "'noon' is not one of 'utc', 'broker'")),
    (["data", "show", "--symbol", "EURUSD", "--timeframe", "H1", "--side", "last"],
     ("'--side'", "'last' is not one of 'bid', 'ask', 'mid'")),
    (["data", "show", "--symbol", "EURUSD", "--timeframe", "H1", "--from", "March"],
     ("'--from'", "'March' is not a date")),
    (["ingest", "--colour", "red"], ("No such option: --colour",)),
    (["data", "show"], ("Missing option '--symbol'",)),
    ([], ("Usage: solodesk",)),
]  # fmt: skip


@pytest.mark.parametrize(
    "index", range(len(BAD_USAGE)), ids=[" ".join(args) or "solodesk" for args, _ in BAD_USAGE]
)
def test_cli_bad_usage_exit_2_with_message(tmp_path: Path, index: int) -> None:
    # Arrange
    args, fragments = BAD_USAGE[index]
    home = tmp_path / "home"

    # Act
    run = invoke(args, home)

    # Assert
    assert run.returncode == 2, run.stderr
    message = _message(run.stderr + run.stdout)
    assert all(fragment in message for fragment in fragments), message
    assert run.exception is None
    assert _stored_files(home) == []


RESAMPLE_BAD_SIDE = ["resample", "--symbol", "EURUSD", "--source", "H1", "--side", "foo",
                     "--timeframe", "H4"]  # fmt: skip


def test_cli_resample_bad_side_exit_2_names_sides_and_stores_nothing(
    sample_desk: SampleDesk, copy_desk: Callable[[Path], Path]
) -> None:
    # Arrange: a desk holding EURUSD H1 ask, which the resample could have read.
    home = copy_desk(sample_desk.home)
    before = {p: p.read_bytes() for p in _stored_files(home)}

    # Act
    run = invoke(RESAMPLE_BAD_SIDE, home)

    # Assert
    assert run.returncode == 2, run.stderr
    assert "Usage: solodesk resample" in run.stderr
    assert "'foo' is not one of 'bid', 'ask', 'mid'" in _message(run.stderr)
    assert run.exception is None
    assert run.stdout == ""
    assert {p: p.read_bytes() for p in _stored_files(home)} == before


def test_cli_resample_bad_side_as_process_exit_2_without_traceback(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"

    # Act
    run = run_solodesk(RESAMPLE_BAD_SIDE, home)

    # Assert
    assert run.returncode == 2, run.stderr
    assert "'foo' is not one of 'bid', 'ask', 'mid'" in _message(run.stderr)
    assert "Traceback" not in run.stderr
    assert _stored_files(home) == []

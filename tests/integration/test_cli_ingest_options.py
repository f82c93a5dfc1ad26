"""How ``solodesk ingest`` reads its options, in process: the forms of timeframes and dates,
``--params`` files, and the run id and report folder it names."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from conftest import SampleDesk
from testkit.cli import invoke, json_lines
from testkit.files import header_csv, hourly_bars, write
from testkit.store import stored_series

from core.settings import Settings

# Five hourly bars, 2017-01-02 05:00 .. 09:00 UTC, in a file whose name says neither symbol nor
# timeframe.
BARS = header_csv(hourly_bars(datetime(2017, 1, 2, 5), 5))
RUN_ID = r"in-\d{8}T\d{6}-[0-9a-f]{6}"


def _message(stderr: str) -> str:
    return " ".join(stderr.split())


@pytest.mark.parametrize("timeframe", ["60", "1h", "H1"])
def test_cli_ingest_timeframe_and_as_of_forms_accepted(tmp_path: Path, timeframe: str) -> None:
    # Arrange
    path = write(tmp_path / "in" / "bars.csv", BARS)
    home = tmp_path / "home"

    # Act
    run = invoke(
        ["ingest", str(path), "--symbol", "GBPUSD", "--timeframe", timeframe,
         "--as-of", "2017-01-02T09:00Z", "--json"],
        home,
    )  # fmt: skip

    # Assert: at 09:00 UTC the 08:00 bar has closed and the 09:00 bar is still forming.
    assert run.returncode == 0, run.stderr
    (line,) = json_lines(run.stdout)
    assert (line["symbol"], line["timeframe"]) == ("GBPUSD", "H1")
    assert (line["rows_added"], line["rows_quarantined"]) == (4, 1)
    assert (line["first"], line["last"]) == ("2017-01-02T05:00:00Z", "2017-01-02T08:00:00Z")


@pytest.mark.parametrize("timeframe", ["60", "1h", "h1"])
def test_cli_data_show_timeframe_forms_name_same_series(
    sample_desk: SampleDesk, timeframe: str
) -> None:
    # Act
    run = invoke(
        ["data", "show", "--symbol", "EURUSD", "--timeframe", timeframe, "--tail", "1",
         "--to", "2017-03-01T03:00Z", "--json"],
        sample_desk.home,
    )  # fmt: skip

    # Assert
    assert run.returncode == 0, run.stderr
    assert [b["ts"] for b in json_lines(run.stdout)] == ["2017-03-01T02:00:00Z"]


def test_cli_ingest_table_names_run_id_and_its_report_folder(tmp_path: Path) -> None:
    # Arrange
    path = write(tmp_path / "in" / "bars.csv", BARS)
    home = tmp_path / "home"

    # Act
    run = invoke(["ingest", str(path), "--symbol", "GBPUSD", "--timeframe", "H1"], home)

    # Assert
    assert run.returncode == 0, run.stderr
    found = re.search(rf"ingest ({RUN_ID})", run.stderr)
    assert found, run.stderr
    report = Settings(home=home).ingest_report_dir(found.group(1)) / "index.html"
    assert f"validation report: {report}" in run.stderr
    assert report.is_file()


def test_cli_ingest_params_reads_sources_and_options_of_ingest_section(tmp_path: Path) -> None:
    # Arrange: the file says which symbol and timeframe the source holds, and a resample.
    path = write(tmp_path / "in" / "bars.csv", BARS)
    params = write(
        tmp_path / "params.yaml",
        f"ingest:\n  sources: ['{path}']\n  symbol: GBPUSD\n  timeframe: 60\n  resample: [D1]\n",
    )
    home = tmp_path / "home"

    # Act
    run = invoke(["ingest", "--params", str(params), "--json"], home)

    # Assert
    assert run.returncode == 0, run.stderr
    assert [(s["symbol"], s["timeframe"]) for s in json_lines(run.stdout)] == [
        ("GBPUSD", "H1"),
        ("GBPUSD", "D1"),
    ]
    assert sorted(stored_series(home / "store")) == ["GBPUSD.D1.bid", "GBPUSD.H1.bid"]


def test_cli_ingest_params_unknown_key_exit_2_names_key_and_file(tmp_path: Path) -> None:
    # Arrange
    path = write(tmp_path / "in" / "bars.csv", BARS)
    params = write(
        tmp_path / "params.yaml",
        f"ingest:\n  sources: ['{path}']\n  symbol: GBPUSD\n  timeframe: H1\n  colour: red\n",
    )
    home = tmp_path / "home"

    # Act
    run = invoke(["ingest", "--params", str(params)], home)

    # Assert
    assert run.returncode == 2, run.stderr
    message = _message(run.stderr)
    assert str(params) in message
    assert "ingest.colour" in message
    assert not (home / "store").exists()


def test_cli_ingest_params_without_ingest_section_exit_2(tmp_path: Path) -> None:
    # Arrange: a parameters file that declares feature sets only.
    params = write(tmp_path / "params.yaml", "features:\n  sets:\n    tiny: {}\n")
    home = tmp_path / "home"

    # Act
    run = invoke(["ingest", "--params", str(params)], home)

    # Assert
    assert run.returncode == 2, run.stderr
    message = _message(run.stderr)
    assert f"{params}: needs an 'ingest' section" in message
    assert not (home / "store").exists()

"""Every command answers --help with its usage and options, quickly and with exit status 0.

The help texts are read in process; the start-up time is measured on the console script, as
a person meets it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from testkit.cli import invoke, solodesk_command, solodesk_env

COMMANDS: dict[str, list[str]] = {
    "": ["ingest", "resample", "data", "features", "instruments"],
    "ingest": ["--symbol", "--timeframe", "--format", "--tz", "--side", "--date-order",
               "--volume-kind", "--as-of", "--resample", "--anchor", "--params", "--json"],
    "resample": ["--symbol", "--timeframe", "--source", "--side", "--anchor", "--json"],
    "data": ["list", "show", "quarantine", "sql"],
    "data list": ["--json"],
    "data show": ["--symbol", "--timeframe", "--side", "--tail", "--from", "--to", "--json"],
    "data quarantine": ["--symbol", "--limit", "--json"],
    "data sql": ["query", "--json"],
    "features": ["build", "list", "show", "specs"],
    "features build": ["--feature-set", "--symbol", "--timeframe", "--side", "--params", "--all",
                       "--json"],
    "features list": ["--feature-set", "--symbol", "--latest", "--json"],
    "features show": ["--feature-set", "--symbol", "--timeframe", "--side", "--version",
                      "--columns", "--rows", "--json"],
    "features specs": ["--json"],
    "instruments": ["--json"],
}  # fmt: skip
# Closed sets list their choices in the help.
CHOICES: dict[str, list[str]] = {
    "ingest": ["bid|ask|mid", "utc|broker", "dmy|mdy"],
    "resample": ["bid|ask|mid", "utc|broker"],
}
# Libraries that take a second or more to import: no --help may load them.
HEAVY = ("great_expectations", "mlflow", "prefect", "streamlit", "optuna", "lightgbm", "sklearn")
# Best of three starts: about half a second on a quiet machine; the bound leaves room for a
# machine busy with the rest of the suite (the import check below is the exact guard).
HELP_SECONDS = 2.0


@pytest.mark.parametrize("command", list(COMMANDS), ids=lambda c: c or "solodesk")
def test_cli_help_lists_usage_and_options(tmp_path: Path, command: str) -> None:
    # Act
    run = invoke([*command.split(), "--help"], tmp_path / "home")

    # Assert
    assert run.returncode == 0, run.stderr
    assert f"Usage: solodesk {command}".rstrip() in run.stdout
    for word in [*COMMANDS[command], *CHOICES.get(command, [])]:
        assert word in run.stdout, f"{command!r} --help does not mention {word}"


def test_cli_without_arguments_shows_help_exit_2(tmp_path: Path) -> None:
    # Act
    run = invoke([], tmp_path / "home")

    # Assert: no_args_is_help prints the usage and exits 2, as for any other missing input.
    assert run.returncode == 2
    assert "Usage: solodesk" in run.stdout + run.stderr
    assert run.exception is None


def test_cli_help_as_process_answers_within_budget(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    seconds = []

    # Act
    for _ in range(3):
        started = time.perf_counter()
        run = subprocess.run(
            [*solodesk_command(), "ingest", "--help"],
            cwd=tmp_path,
            env=solodesk_env(home),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        seconds.append(time.perf_counter() - started)

    # Assert
    assert run.returncode == 0, run.stderr
    assert "Usage: solodesk ingest" in run.stdout
    assert min(seconds) < HELP_SECONDS, seconds


def test_cli_help_as_process_imports_no_heavy_library(tmp_path: Path) -> None:
    # Arrange: the command line's main() in a fresh interpreter, then what it loaded.
    probe = (
        "import sys\n"
        "from app.cli import main\n"
        "try:\n"
        "    main(['ingest', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )

    # Act
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=solodesk_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Assert
    loaded = set(run.stderr.split())
    assert "app" in loaded, run.stderr
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))

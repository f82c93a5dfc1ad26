"""Every command answers --help with its usage and options, quickly and with exit status 0."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from testkit.cli import run_many

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


@pytest.fixture(scope="module")
def help_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    home = tmp_path_factory.mktemp("help") / "home"
    runs = run_many([([*command.split(), "--help"], home) for command in COMMANDS])
    return dict(zip(COMMANDS, runs, strict=True))


@pytest.mark.parametrize("command", list(COMMANDS), ids=lambda c: c or "solodesk")
def test_cli_help_lists_usage_and_options(
    help_runs: dict[str, subprocess.CompletedProcess[str]], command: str
) -> None:
    # Arrange
    run = help_runs[command]

    # Assert
    assert run.returncode == 0, run.stderr
    assert f"Usage: solodesk {command}".rstrip() in run.stdout
    for word in COMMANDS[command]:
        assert word in run.stdout, f"{command!r} --help does not mention {word}"


def test_cli_without_arguments_shows_help(tmp_path: Path) -> None:
    # Act
    (run,) = run_many([([], tmp_path / "home")])

    # Assert: no_args_is_help prints the usage and exits 2, as for any other missing input.
    assert run.returncode == 2
    assert "Usage: solodesk" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr

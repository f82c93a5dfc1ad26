"""Fixtures of the end-to-end suite: a desk holding the ingested sample, shared per module."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testkit.cli import json_lines, run_solodesk


@dataclass(frozen=True)
class SampleDesk:
    """A desk after ``ingest sample:eurusd-h1 --json`` was run twice."""

    home: Path
    first: list[dict[str, Any]]
    second: list[dict[str, Any]]


@pytest.fixture(scope="session")
def sample_desk(tmp_path_factory: pytest.TempPathFactory) -> SampleDesk:
    home = tmp_path_factory.mktemp("sample") / "home"
    runs = [run_solodesk(["ingest", "sample:eurusd-h1", "--json"], home) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    return SampleDesk(home, json_lines(runs[0].stdout), json_lines(runs[1].stdout))


@pytest.fixture
def copy_desk(tmp_path: Path) -> Callable[[Path], Path]:
    """Return a function copying a desk into this test's folder, so the test may change it."""

    def copy(home: Path) -> Path:
        target = tmp_path / "home"
        shutil.copytree(home, target)
        return target

    return copy

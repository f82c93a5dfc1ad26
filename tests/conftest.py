"""What every suite shares: the sample desk, built once per session for all workers, and the
markers of the real-data suite."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testkit.cli import invoke, json_lines
from testkit.desk import shared_desk, shared_folder

REALDATA = Path(__file__).resolve().parent / "realdata"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the real-data suite ``realdata`` and ``slow``: ``make test`` runs it, the fast lane
    (``make test-fast``) leaves it out."""
    for item in items:
        if item.path.is_relative_to(REALDATA):
            item.add_marker(pytest.mark.realdata)
            item.add_marker(pytest.mark.slow)


@dataclass(frozen=True)
class SampleDesk:
    """A desk after ``ingest sample:eurusd-h1 --json`` was run twice (shared: read only)."""

    home: Path
    first: list[dict[str, Any]]
    second: list[dict[str, Any]]


def _ingest_twice(home: Path) -> dict[str, Any]:
    runs = [invoke(["ingest", "sample:eurusd-h1", "--json"], home) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    return {"first": json_lines(runs[0].stdout), "second": json_lines(runs[1].stdout)}


@pytest.fixture(scope="session")
def sample_desk(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> SampleDesk:
    home, facts = shared_desk(shared_folder(tmp_path_factory, worker_id), "sample", _ingest_twice)
    return SampleDesk(home, facts["first"], facts["second"])


@pytest.fixture
def copy_desk(tmp_path: Path) -> Callable[[Path], Path]:
    """Return a function copying a desk into this test's folder, so the test may change it."""

    def copy(home: Path) -> Path:
        target = tmp_path / "home"
        shutil.copytree(home, target)
        return target

    return copy

"""Fixtures of the real-data suite: where the shared data lives and a one-call ingest.

The real data sets sit beside the project (``../shared/data`` from the repository root), not in
it; ``SOLODESK_SHARED_DATA`` points elsewhere. Every test here skips, with the reason, when the
folder or the file it needs is missing, and fails instead when ``SOLODESK_REQUIRE_SERVICES``
names ``shared-data`` (a run that must use the real data).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from testkit.services import service_missing

from core.settings import Settings
from core.types import SeriesKey
from feature_store.store import BarStore
from services.ingest import IngestOptions, IngestResult, SeriesIngest, ingest

SHARED_DATA_ENV = "SOLODESK_SHARED_DATA"
SHARED_DATA = "shared-data"  # the service name SOLODESK_REQUIRE_SERVICES may list


def shared_data_root() -> Path:
    """Return where the shared real data should be (env override, else ``../shared/data``)."""
    override = os.environ.get(SHARED_DATA_ENV)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the shared data folder, or skip when it is absent (fail when it is required)."""
    root = shared_data_root()
    if not root.is_dir():
        service_missing(
            SHARED_DATA,
            f"real data not found at {root}: put the shared data sets there or set "
            f"{SHARED_DATA_ENV} to their folder",
        )
    return root


@pytest.fixture(scope="session")
def data_file(shared_data: Path) -> Callable[[str], Path]:
    """Return a function that resolves a path under the shared data, skipping when missing
    (failing when the data is required)."""

    def resolve(relative: str) -> Path:
        path = shared_data / relative
        if not path.exists():
            service_missing(
                SHARED_DATA, f"real data file {relative} is missing under {shared_data}"
            )
        return path

    return resolve


@dataclass
class Desk:
    """A fresh desk (its own SOLODESK_HOME) that ingests files and reads what it stored."""

    settings: Settings

    @property
    def store(self) -> BarStore:
        """Return the desk's bar store."""
        return BarStore(self.settings.store_dir)

    def ingest(self, paths: list[Path], **options: object) -> IngestResult:
        """Ingest ``paths`` with HTML reports off and the given IngestOptions fields."""
        chosen = IngestOptions(reports=False, **options)  # type: ignore[arg-type]
        return ingest([str(p) for p in paths], chosen, self.settings)

    def ingest_one(self, paths: list[Path], **options: object) -> SeriesIngest:
        """Ingest ``paths`` and return the outcome of the one series they hold."""
        outcome = self.ingest(paths, **options)
        assert len(outcome.series) == 1, [str(s.key) for s in outcome.series]
        return outcome.series[0]

    def bars(self, key: SeriesKey) -> pl.DataFrame:
        """Return the stored bars of one series."""
        return self.store.read(key)

    def quarantine(self) -> pl.DataFrame:
        """Return every quarantined row."""
        return self.store.quarantine()


@pytest.fixture
def new_desk(tmp_path: Path) -> Callable[[], Desk]:
    """Return a factory of fresh desks, each with its own home under ``tmp_path``."""
    made = 0

    def make() -> Desk:
        nonlocal made
        made += 1
        return Desk(Settings(home=tmp_path / f"home{made}"))

    return make

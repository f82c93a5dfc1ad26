"""An ingest killed with SIGKILL at a random moment leaves a consistent store that heals.

Each killed run either committed (the new manifest) or did not (the previous one); files no
manifest names are left for the next commit to remove. Checked: the manifest parses, every file
it names exists, matches its digest and reads; series rows are the sum of their partitions; a
later ingest of the same input succeeds and stores exactly what an uninterrupted run stores,
versions included; and the DuckDB catalog counts as many bars as the manifest.

The kill moments are random: 0.05-2 s after the run is ready (one in each half of that range), 0.05-2 s
after a plain start (mostly inside Python's start-up), and 0-0.4 s after the ingest takes the
store's writer lock, since the writing phase is a small part of a run. The seed is printed with
any failure and can be fixed with SOLODESK_CRASH_SEED.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from testkit.cli import solodesk_command, solodesk_env
from testkit.store import assert_store_consistent, manifest_rows, stored_series

from core.settings import Settings
from core.timeframes import Timeframe
from services.ingest import IngestOptions, ingest

pytestmark = pytest.mark.slow  # five killed processes and three full ingests: about 30 s

DRIVER = Path(__file__).with_name("ingest_driver.py")
RESAMPLE = (Timeframe.H1, Timeframe.D1)
CLI_OPTIONS = ["--resample", "H1", "--resample", "D1", "--json"]
SEED = int(os.environ.get("SOLODESK_CRASH_SEED", random.SystemRandom().randrange(10**6)))
PLAN = [  # (name, kill after, desk holds data before)
    ("ready-1", "ready", False),
    ("ready-2", "ready", True),
    ("start-1", "start", False),
    ("store-1", "store", False),
    ("store-2", "store", True),
]
CASES = [name for name, _, _ in PLAN]


def _write_m1(path: Path, seed: int, rows: int) -> None:
    # MT4 M1 export from 2017-10 into 2018: two year partitions per series.
    ts = pl.datetime_range(datetime(2017, 10, 1), datetime(2018, 12, 31), "1m", eager=True)
    ts = ts.filter(ts.dt.weekday() <= 5).head(rows)
    close = 1.2 + np.cumsum(np.random.default_rng(seed).normal(0, 0.0001, ts.len()))
    frame = pl.DataFrame(
        {"d": ts.dt.strftime("%Y.%m.%d"), "t": ts.dt.strftime("%H:%M"),
         "o": np.concatenate([[1.2], close[:-1]]).round(5), "c": close.round(5)}
    )  # fmt: skip
    frame.with_columns(
        h=(pl.max_horizontal("o", "c") + 0.0001).round(5),
        l=(pl.min_horizontal("o", "c") - 0.0001).round(5),
        v=pl.lit(7),
    ).select("d", "t", "o", "h", "l", "c", "v").write_csv(path, include_header=False)


@dataclass(frozen=True)
class Crash:
    """One killed run: its desk, the moment it was killed, whether the desk held data before."""

    name: str
    home: Path
    after: str  # "ready" or "store" (announced by ingest_driver.py), or "start" (plain start)
    delay: float
    prefilled: bool

    def __str__(self) -> str:
        return f"{self.name} (kill {self.delay:.2f} s after {self.after}, seed {SEED})"


def _kill_after(crash: Crash, inputs: Path) -> int:
    env = solodesk_env(crash.home)
    if crash.after == "start":
        command = solodesk_command()
    else:
        command = [sys.executable, str(DRIVER)]
        env["PYTHONPATH"] = os.pathsep.join([str(DRIVER.parents[2]), env.get("PYTHONPATH", "")])
    process = subprocess.Popen(
        [*command, "ingest", str(inputs), *CLI_OPTIONS],
        env=env,
        cwd=crash.home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        if crash.after != "start":
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n", str(crash)
        if crash.after == "store":
            assert process.stdout is not None
            # "" would mean the run ended before storing: every run here stores something.
            assert process.stdout.readline() == "store\n", str(crash)
        time.sleep(crash.delay)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=120)
        if process.stdout is not None:
            process.stdout.close()
    return process.returncode


@pytest.fixture(scope="module")
def crash_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inputs = tmp_path_factory.mktemp("crash") / "inputs"
    inputs.mkdir()
    _write_m1(inputs / "EURUSD1.csv", 1, 200_000)
    _write_m1(inputs / "GBPUSD1.csv", 2, 200_000)
    return inputs


@pytest.fixture(scope="module")
def reference(crash_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A desk after one uninterrupted ingest of the inputs."""
    home = tmp_path_factory.mktemp("reference") / "home"
    ingest([str(crash_inputs)], IngestOptions(resample=RESAMPLE), Settings(home=home))
    return home


@pytest.fixture(scope="module")
def crashes(
    crash_inputs: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[Crash, int]]:
    rng = random.Random(SEED)
    span = (2.0 - 0.05) / 2
    crashes = []
    for name, after, prefilled in PLAN:
        if after == "ready":  # spread over 0.05-2 s, one half each
            delay = 0.05 + span * (int(name[-1]) - 1) + rng.uniform(0, span)
        elif after == "store":
            delay = rng.uniform(0, 0.4)
        else:
            delay = rng.uniform(0.05, 2.0)
        home = tmp_path_factory.mktemp(name) / "home"
        if prefilled:
            # A desk that already holds part of the input: the kill hits a second commit.
            ingest([str(crash_inputs / "EURUSD1.csv")], IngestOptions(resample=RESAMPLE, reports=False),
                   Settings(home=home))  # fmt: skip
        crashes.append(Crash(name, home, after, delay, prefilled))
    with ThreadPoolExecutor(max_workers=len(crashes)) as pool:
        codes = list(pool.map(lambda c: _kill_after(c, crash_inputs), crashes))
    return list(zip(crashes, codes, strict=True))


def _crash(crashes: list[tuple[Crash, int]], name: str) -> tuple[Crash, int]:
    return next((c, code) for c, code in crashes if c.name == name)


@pytest.mark.parametrize("name", CASES)
def test_sigkill_during_ingest_leaves_consistent_store(
    crashes: list[tuple[Crash, int]], name: str
) -> None:
    # Arrange
    crash, code = _crash(crashes, name)

    # Act
    manifest = assert_store_consistent(crash.home / "store")

    # Assert: killed (-9), or done before the signal came (0); nothing else.
    assert code in (-signal.SIGKILL, 0), str(crash)
    if crash.prefilled:
        assert manifest["series"], f"{crash}: the earlier commit was lost"


@pytest.mark.parametrize("name", CASES)
def test_sigkill_then_ingest_again_matches_uninterrupted_run(
    crashes: list[tuple[Crash, int]], crash_inputs: Path, reference: Path, name: str
) -> None:
    # Arrange
    crash, _ = _crash(crashes, name)
    settings = Settings(home=crash.home)

    # Act
    ingest([str(crash_inputs)], IngestOptions(resample=RESAMPLE, reports=False), settings)

    # Assert
    manifest = assert_store_consistent(settings.store_dir)
    expected, actual = stored_series(reference / "store"), stored_series(settings.store_dir)
    assert actual.keys() == expected.keys(), str(crash)
    for slug, (version, bars) in expected.items():
        assert actual[slug][1].equals(bars), f"{crash}: {slug} bars differ"
        assert actual[slug][0] == version, f"{crash}: {slug} version differs"
    assert list((settings.store_dir / "bars").rglob("*.tmp")) == [], "next commit removes leftovers"
    con = duckdb.connect(str(settings.catalog_path), read_only=True)
    try:
        (count,) = con.execute("select count(*) from bars").fetchone() or (None,)
        (generation,) = con.execute("select generation from catalog_meta").fetchone() or (None,)
    finally:
        con.close()
    assert count == manifest_rows(manifest), str(crash)
    assert generation == manifest["generation"], str(crash)

"""A DuckDB client holding the catalog does not make a committed ingest fail.

The client is a second process (DuckDB's file lock is held per process); the ingest runs in
process. The ingest waits about five seconds for the lock before it gives up, hence ``slow``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SampleDesk
from testkit.cli import invoke, json_lines

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.slow
def test_ingest_catalog_held_by_other_process_warns_and_stores(
    sample_desk: SampleDesk, copy_desk: Callable[[Path], Path], tmp_path: Path
) -> None:
    # Arrange: a copy of the sample desk, its catalog opened for writing by another process.
    home = copy_desk(sample_desk.home)
    extra = tmp_path / "GBPUSD60.csv"
    extra.write_text(
        "".join(f"2017.01.03,{h:02d}:00,1.23,1.24,1.22,1.235,10\n" for h in range(10, 16))
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home / "catalog.duckdb"), "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"

        # Act
        run = invoke(["ingest", str(extra), "--json"], home)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    # Assert: exit 0, the warning names the catalog, the bars are in the manifest.
    assert run.returncode == 0, run.stderr
    message = " ".join(run.stderr.split())
    assert "catalog" in message and "held by another process" in message
    (line,) = json_lines(run.stdout)
    assert (line["symbol"], line["rows_added"]) == ("GBPUSD", 5)  # the last bar is held back
    manifest = json.loads((home / "store" / "manifest.json").read_text())
    assert manifest["series"]["GBPUSD.H1.bid"]["rows"] == 5

    # And once the other process is gone, the catalog catches up on its own.
    query = invoke(
        ["data", "sql", "select count(*) as n from bars where symbol = 'GBPUSD'", "--json"], home
    )
    assert query.returncode == 0, query.stderr
    assert json_lines(query.stdout) == [{"n": 5}]

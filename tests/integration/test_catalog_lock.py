"""A DuckDB client holding the catalog does not make a committed ingest fail."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from testkit.cli import json_lines, run_solodesk

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_ingest_catalog_held_by_other_process_warns_and_stores(
    sample_desk: object, copy_desk: Callable[[Path], Path], tmp_path: Path
) -> None:
    # Arrange: a copy of the sample desk, its catalog opened for writing by another process.
    home = copy_desk(sample_desk.home)  # type: ignore[attr-defined]
    extra = tmp_path / "GBPUSD60.csv"
    extra.write_text(
        "".join(f"2017.01.03,{h:02d}:00,1.23,1.24,1.22,1.235,10\n" for h in range(10, 16))
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home / "catalog.duckdb"), "30"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"

        # Act
        run = run_solodesk(["ingest", str(extra), "--json"], home)
    finally:
        holder.kill()
        holder.wait()

    # Assert: exit 0, the warning names the catalog, the bars are in the manifest.
    assert run.returncode == 0, run.stderr
    assert "catalog" in run.stderr and "held by another process" in run.stderr
    (line,) = json_lines(run.stdout)
    assert (line["symbol"], line["rows_added"]) == ("GBPUSD", 5)  # the last bar is held back
    manifest = json.loads((home / "store" / "manifest.json").read_text())
    assert manifest["series"]["GBPUSD.H1.bid"]["rows"] == 5

    # And once the other process is gone, the catalog catches up on its own.
    time.sleep(0.2)
    query = run_solodesk(
        ["data", "sql", "select count(*) as n from bars where symbol = 'GBPUSD'", "--json"], home
    )
    assert query.returncode == 0, query.stderr
    assert json_lines(query.stdout) == [{"n": 5}]

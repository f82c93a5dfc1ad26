"""Pieces the benchmark scripts share: where the data is, worker processes, the run's context.

Each benchmark runs its measured side in a fresh interpreter (``--worker``) that prints one
line ``RESULT_MARK + JSON``; :func:`run_worker` starts it and reads that line back.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.settings import Settings
from core.times import COMPACT, iso_z, utc_now

ROOT = Path(__file__).resolve().parents[1]
HISTORY = Path("histdata_m1") / "eurusd"
RESULT_MARK = "BENCH-RESULT "


def emit(result: dict[str, Any]) -> None:
    """Print a worker's result for :func:`run_worker`."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def shared_data_root(given: str | None) -> Path:
    """Return the shared data folder: ``--data``, ``$SOLODESK_SHARED_DATA`` or ``../shared/data``."""
    if given:
        return Path(given).expanduser()
    override = os.environ.get("SOLODESK_SHARED_DATA")
    if override:
        return Path(override).expanduser()
    return ROOT.parent / "shared" / "data"


def run_worker(script: str, *args: str) -> dict[str, Any]:
    """Run ``script --worker ARGS`` in a fresh interpreter and return its result.

    The result gains ``process_seconds`` (the worker's wall time), ``started_utc`` and
    ``load_before``, the 1-minute load average when it started.
    """
    command = [sys.executable, str(Path(script).resolve()), "--worker", *args]
    at = datetime.now(UTC).strftime("%H:%M:%S")
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - started
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout + done.stderr)
        msg = f"benchmark worker {args[0]} failed with exit status {done.returncode}"
        raise SystemExit(msg)
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    result["process_seconds"] = wall
    result["started_utc"] = at
    result["load_before"] = load
    return result


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write a benchmark's result as JSON under ``$SOLODESK_HOME/bench`` (or a temp folder)."""
    home = os.environ.get("SOLODESK_HOME")
    folder = (
        Settings(home=Path(home)).bench_dir
        if home
        else Path(tempfile.gettempdir()) / "solodesk-bench"
    )
    if not folder.is_absolute():
        folder = ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{utc_now().strftime(COMPACT)}Z.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def git_state() -> dict[str, Any]:
    """Return the commit measured and whether the work tree had changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--short"))}


def machine() -> dict[str, Any]:
    """Return the CPU count, memory, platform and Python of this machine."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(memory / 1024**3, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def run_context() -> dict[str, Any]:
    """Return the start of a result: when it started, the commit and the machine."""
    return {"started": iso_z(utc_now()), **git_state(), "machine": machine()}


def gb(n: float) -> str:
    """Format a byte count in GB (10^9)."""
    return f"{n / 1e9:.2f} GB"


def rate(n: float) -> str:
    """Format a row rate."""
    return f"{n:,.0f} rows/s"

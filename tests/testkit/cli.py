"""Run the ``solodesk`` command line in a subprocess, as a person or a DVC stage would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def solodesk_command() -> list[str]:
    """Return the console script beside the running interpreter, else ``python -m app.cli``."""
    script = Path(sys.executable).parent / "solodesk"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def solodesk_env(home: Path, **extra: str) -> dict[str, str]:
    """Return the environment of a run whose desk lives in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLODESK_")}
    env["SOLODESK_HOME"] = str(home)
    env.update(extra)
    return env


def run_solodesk(
    args: list[str], home: Path, *, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``solodesk ARGS`` with ``SOLODESK_HOME=home`` and return the finished process."""
    return subprocess.run(
        [*solodesk_command(), *args],
        cwd=cwd or home.parent,
        env=solodesk_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_many(
    jobs: list[tuple[list[str], Path]], *, workers: int = 4, timeout: float = 120
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent ``(args, home)`` invocations side by side; return them in order.

    Each runs in the parent folder of its home, as :func:`run_solodesk` does.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_solodesk, args, home, timeout=timeout) for args, home in jobs]
        return [f.result() for f in futures]


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Parse JSON Lines; fail on any line that is not JSON (``--json`` prints nothing else)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]

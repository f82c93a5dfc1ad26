"""Run the ``solodesk`` command line: in this process (typer's test runner), or in a subprocess
for what only a process shows (start-up time, exit statuses, crash safety)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Invocation:
    """A finished command: its exit status and what it wrote (as a finished process has)."""

    returncode: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


@contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def invoke(
    args: list[str], home: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Invocation:
    """Run ``solodesk ARGS`` in this process with ``SOLODESK_HOME=home``; return what it did.

    It runs in ``cwd`` (default: the parent folder of ``home``, where ``params.yaml`` and
    ``solodesk.toml`` are looked for), with every other ``SOLODESK_*`` variable cleared unless
    ``env`` sets it. Errors solodesk raises on purpose give their exit statuses as from a shell;
    an unexpected exception gives status 1 and is kept in ``exception``.
    """
    from typer.testing import CliRunner

    from app.cli import app

    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("SOLODESK_")}
    overrides: dict[str, str | None] = {**cleared, "SOLODESK_HOME": str(home), **(env or {})}
    with _working_dir(cwd or home.parent):
        result = CliRunner().invoke(app, args, env=overrides)
    unexpected = result.exception if not isinstance(result.exception, SystemExit) else None
    return Invocation(result.exit_code, result.stdout, result.stderr, unexpected)


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
    """Run ``solodesk ARGS`` in a subprocess with ``SOLODESK_HOME=home``; return the process."""
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
    """Run independent ``(args, home)`` invocations side by side in subprocesses, in order.

    Each runs in the parent folder of its home, as :func:`run_solodesk` does.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_solodesk, args, home, timeout=timeout) for args, home in jobs]
        return [f.result() for f in futures]


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Parse JSON Lines; fail on any line that is not JSON (``--json`` prints nothing else)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]

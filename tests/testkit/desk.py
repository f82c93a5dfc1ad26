"""Desks built once per test session and shared by every xdist worker.

The first worker to ask builds the desk, in process, under a file lock in the session's shared
temporary folder; the others wait for the lock and read what it left. Tests read a shared desk
and never change it: they copy it first (``copy_desk``) when they need to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

DONE = "built.json"


def shared_folder(tmp_path_factory: Any, worker_id: str) -> Path:
    """Return the temporary folder every worker of this session sees."""
    base: Path = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def shared_desk(
    root: Path, name: str, build: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    """Return the home of desk ``name`` under ``root`` and what building it returned.

    ``build(home)`` makes the desk and returns JSON-ready facts about it; it runs once per
    session whichever worker asks first.
    """
    folder = root / f"desk-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        done = folder / DONE
        if not done.exists():
            facts = build(folder / "home")
            done.write_text(json.dumps(facts))
    return folder / "home", json.loads(done.read_text())

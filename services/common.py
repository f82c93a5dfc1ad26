"""What every job shares: progress callbacks, the code's version, strategies from settings."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

from core.settings import Settings, config_file
from models.strategies.base import Strategy
from pipelines.backtest.sweep import StrategyRef

#: Called with (stage, done, total) as a job advances.
Progress = Callable[[str, int, int], None]


@cache
def git_commit() -> str | None:
    """Return the commit of the code that runs, when it runs from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def strategy_ref(settings: Settings, name: str) -> StrategyRef:
    """Return how to load a strategy: entry points plus the user's files named in settings."""
    return StrategyRef(name, dict(settings.strategies), config_file().resolve().parent)


def load_user_strategy(settings: Settings, name: str) -> type[Strategy]:
    """Return a strategy class by name (entry points and the user's files from settings).

    Raises
    ------
    UsageError
        If no strategy has that name.
    """
    return strategy_ref(settings, name).load()

"""Processes of this machine, as the runtime's records name them (by pid)."""

from __future__ import annotations

import os


def process_running(pid: int) -> bool:
    """Return whether a process with this pid exists (one owned by another user included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True

"""Report files under ``SOLODESK_HOME/reports``: written whole, so a reader never sees half.

The pages themselves are rendered by :mod:`pipelines` (:mod:`pipelines.report_kit` and the
report modules that use it); this module only writes them.
"""

from __future__ import annotations

from pathlib import Path

from feature_store.store import write_atomic


def write_report(folder: Path, name: str, text: str) -> Path:
    """Write one report file atomically and return its path."""
    path = folder / name
    write_atomic(path, text.encode())
    return path

"""Stored backtests, sweeps and portfolio runs: one folder per run, written once.

Layout under ``SOLODESK_HOME/backtests``::

    run=<id>/run.json         what ran (kind, strategy, parameters, series and its version,
                              settings), its metrics and the paths of its reports
    run=<id>/equity.parquet   ts, equity, drawdown, position, exposure (one row per bar)
    run=<id>/trades.parquet   one row per trade
    run=<id>/results.parquet  sweeps: one row per parameter combination
    run=<id>/weights.parquet  portfolios: ts and one weight column per symbol
    run=<id>/risk.parquet     portfolios: exposure, volatility, VaR and ES per bar

A run is written into a temporary folder and renamed into place when complete, so a crash
leaves either the whole run or nothing (the temporary folder is removed the next time a run is
written). Tearsheets go to ``SOLODESK_HOME/reports/backtests/<id>.html``. The DuckDB catalog
views ``backtest_runs``, ``backtest_equity`` and ``backtest_trades`` read these files.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from core.errors import UsageError
from feature_store.store import _fsync_dir, write_atomic

RUN_FILE = "run.json"
_TEMP_PREFIX = ".tmp-"


def new_run_id(kind: str, created: datetime | None = None) -> str:
    """Return a sortable, unique run id such as ``bt-20261124T101500-3f9a``."""
    when = (created or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    prefix = {"backtest": "bt", "sweep": "sw", "portfolio": "pf", "walkforward": "wf"}.get(
        kind, kind[:2]
    )
    return f"{prefix}-{when}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class StoredRun:
    """A run as listed: its id, folder and record."""

    id: str
    folder: Path
    record: dict[str, Any]

    @property
    def kind(self) -> str:
        """Return ``backtest``, ``sweep`` or ``portfolio``."""
        return str(self.record.get("kind", ""))


class BacktestStore:
    """Write and read runs under ``root`` (``SOLODESK_HOME/backtests``)."""

    def __init__(self, root: Path, reports: Path, report_folder: str = "backtests") -> None:
        self.root = root
        self.reports = reports
        self.report_folder = report_folder

    def report_path(self, run_id: str) -> Path:
        """Return where a run's HTML report goes."""
        return self.reports / self.report_folder / f"{run_id}.html"

    def write(
        self,
        run_id: str,
        record: dict[str, Any],
        tables: dict[str, pl.DataFrame],
        report_html: str | None = None,
    ) -> StoredRun:
        """Store a run's tables and record, then its report; return the stored run.

        Raises
        ------
        UsageError
            If a run with this id already exists.
        """
        final = self.root / f"run={run_id}"
        if final.exists():
            raise UsageError(f"backtest run {run_id} already exists in {self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(f"{_TEMP_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        temp = self.root / f"{_TEMP_PREFIX}{run_id}"
        temp.mkdir()
        files = {}
        for name, table in tables.items():
            path = temp / f"{name}.parquet"
            table.write_parquet(path)
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
            files[name] = f"{name}.parquet"
        report = None
        if report_html is not None:
            report = self.report_path(run_id)
            report.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(report, report_html.encode())
        full = {**record, "id": run_id, "files": files,
                "report": str(report.resolve()) if report else None}  # fmt: skip
        write_atomic(temp / RUN_FILE, json.dumps(full, indent=2, default=str).encode())
        temp.rename(final)
        _fsync_dir(self.root)
        return StoredRun(run_id, final, full)

    def runs(self, kind: str | None = None) -> list[StoredRun]:
        """Return stored runs, oldest first, optionally of one kind."""
        found = []
        for path in sorted(self.root.glob(f"run=*/{RUN_FILE}")):
            record = json.loads(path.read_text())
            run = StoredRun(record["id"], path.parent, record)
            if kind is None or run.kind == kind:
                found.append(run)
        return sorted(found, key=lambda r: str(r.record.get("created", "")))

    def get(self, run_id: str) -> StoredRun:
        """Return one run by id (a unique prefix is enough)."""
        runs = [r for r in self.runs() if r.id.startswith(run_id)]
        if len(runs) != 1:
            known = ", ".join(r.id for r in self.runs()[-5:]) or "none stored"
            what = "no" if not runs else "more than one"
            msg = f"{what} backtest run matches {run_id!r} (latest: {known})"
            raise UsageError(msg)
        return runs[0]

    def table(self, run: StoredRun, name: str) -> pl.DataFrame:
        """Return one of a run's tables."""
        if name not in run.record.get("files", {}):
            raise UsageError(f"run {run.id} has no {name} table")
        return pl.read_parquet(run.folder / run.record["files"][name])

    def has_runs(self) -> bool:
        """Return whether any run is stored."""
        return any(self.root.glob(f"run=*/{RUN_FILE}"))

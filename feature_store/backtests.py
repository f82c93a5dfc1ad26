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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import polars as pl

from core.errors import UsageError
from core.settings import Settings
from core.times import reformat_iso_z
from feature_store.store import fsync_dir, write_atomic

RUN_FILE = "run.json"
_TEMP_PREFIX = ".tmp-"
# Times a run record holds; records written before every time ended in Z are read as if it did.
_TIME_FIELDS = ("created", "first", "last")


def _read_record(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text())
    for name in _TIME_FIELDS:
        if isinstance(record.get(name), str):
            record[name] = reformat_iso_z(record[name])
    return record


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
    """Write and read runs under ``root``, their reports under ``reports``."""

    def __init__(self, root: Path, reports: Path) -> None:
        self.root = root
        self.reports = reports

    @classmethod
    def backtests(cls, settings: Settings) -> Self:
        """Return the store of backtests, sweeps and portfolios under ``SOLODESK_HOME``."""
        return cls(settings.backtests_dir, settings.backtest_reports_dir)

    @classmethod
    def research(cls, settings: Settings) -> Self:
        """Return the store of walk-forward runs under ``SOLODESK_HOME``."""
        return cls(settings.research_dir, settings.research_reports_dir)

    def report_path(self, run_id: str) -> Path:
        """Return where a run's HTML report goes."""
        return self.reports / f"{run_id}.html"

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
        fsync_dir(self.root)
        return StoredRun(run_id, final, full)

    def runs(self, kind: str | None = None) -> list[StoredRun]:
        """Return stored runs, oldest first, optionally of one kind."""
        found = []
        for path in sorted(self.root.glob(f"run=*/{RUN_FILE}")):
            record = _read_record(path)
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

"""What the desk holds: stored series and their bars, quarantined rows, SQL over the catalog,
the instruments, the strategies and the stored backtest runs.

These are the read-only use cases of the command line (and of the dashboard): each reads through
:mod:`feature_store` and returns typed rows or frames.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from core.errors import SolodeskError, UsageError
from core.settings import Settings, config_file
from core.timeframes import Timeframe
from core.types import Instrument, Side, VolumeKind
from feature_store.backtests import BacktestStore, StoredRun
from feature_store.series import find_series
from feature_store.store import BarStore, SeriesInfo


class SeriesRow(BaseModel):
    """One stored series as ``data list`` shows it; the ``--json`` line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    timeframe: Timeframe
    side: Side
    rows: int
    first: str | None
    last: str | None
    volume_kind: VolumeKind
    spread: bool
    version: str
    sources: tuple[str, ...]


def list_series(settings: Settings) -> list[SeriesRow]:
    """Return every stored series: side, rows, first and last bar, volume kind, version."""
    return [
        SeriesRow(
            symbol=s.key.symbol,
            timeframe=s.key.timeframe,
            side=s.key.side,
            rows=s.rows,
            first=s.first,
            last=s.last,
            volume_kind=s.volume_kind,
            spread=s.has_spread,
            version=s.version,
            sources=tuple(src["name"] for src in s.sources),
        )
        for s in BarStore(settings.store_dir).series()
    ]


def show_bars(
    settings: Settings,
    symbol: str,
    timeframe: Timeframe,
    *,
    side: Side | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    tail: int = 10,
) -> tuple[SeriesInfo, pl.DataFrame]:
    """Return a stored series and its last ``tail`` bars in ``[start, end)``.

    Raises
    ------
    UsageError
        If the series is not stored, or several sides are and ``side`` is not given.
    """
    store = BarStore(settings.store_dir)
    info = find_series(store, settings.registry, symbol, timeframe, side)
    return info, store.read(info.key, start, end, info=info).tail(tail)


def quarantined(settings: Settings, symbol: str | None = None) -> pl.DataFrame:
    """Return the quarantined rows (newest run first), of one symbol when given."""
    rows = BarStore(settings.store_dir).quarantine()
    if symbol:
        rows = rows.filter(pl.col("symbol") == settings.registry.canonical(symbol))
    return rows


def query(settings: Settings, sql: str) -> pl.DataFrame:
    """Run SQL over the DuckDB catalog (views ``bars``, ``series``, ``quarantine``, ...).

    Raises
    ------
    UsageError
        If the query fails (bad SQL, unknown view or column).
    SolodeskError
        If another process holds the catalog.
    """
    import duckdb

    from feature_store.catalog import open_catalog

    try:
        con = open_catalog(settings)
    except duckdb.IOException as exc:
        msg = f"cannot open the catalog {settings.catalog_path}: {exc}; close the other process"
        raise SolodeskError(msg) from None
    try:
        try:
            return con.sql(sql).pl()
        except duckdb.Error as exc:
            raise UsageError(f"query failed: {exc}") from None
    finally:
        con.close()


def instruments(settings: Settings) -> list[Instrument]:
    """Return the instrument registry: built-ins plus the instruments of ``solodesk.toml``."""
    return list(settings.registry)


class StrategyRow(BaseModel):
    """One strategy of the vault: its name, origin, parameters and first docstring line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    origin: str
    params: tuple[dict[str, Any], ...]
    doc: str


def strategies(settings: Settings) -> list[StrategyRow]:
    """Return the strategies: entry points, installed plug-ins and the user's own files."""
    from models.strategies.registry import available_strategies, load_strategy

    base = config_file().resolve().parent
    found = available_strategies(dict(settings.strategies), base)
    rows = []
    for name, origin in sorted(found.items()):
        cls = load_strategy(name, user=dict(settings.strategies), base_dir=base)
        rows.append(
            StrategyRow(
                name=name,
                origin=origin,
                params=tuple(s.model_dump() for s in cls.params),
                doc=(cls.__doc__ or "").strip().splitlines()[0],
            )
        )
    return rows


def backtest_runs(settings: Settings, kind: str | None = None) -> list[StoredRun]:
    """Return the stored backtests, sweeps and portfolios (of one kind), oldest first."""
    return BacktestStore.backtests(settings).runs(kind)


def backtest_run(settings: Settings, run_id: str) -> StoredRun:
    """Return one stored run by id (a unique prefix is enough).

    Raises
    ------
    UsageError
        If no run or several runs match.
    """
    return BacktestStore.backtests(settings).get(run_id)

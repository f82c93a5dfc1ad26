"""The DuckDB catalog: views over the Parquet store, rebuilt from the manifest.

The catalog is derived data. It records the manifest generation it was built from and is rebuilt
whenever that differs, so a crash between a commit and the rebuild heals on the next open.

Views: ``bars`` (every series, with symbol, timeframe, side and year from the partition paths),
``series`` (one row per series), ``quarantine`` and ``ingest_runs``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feature_store.store import BarStore

if TYPE_CHECKING:
    import duckdb


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p.resolve()).replace("'", "''") + "'" for p in paths) + "]"


def _is_damaged(exc: Exception) -> bool:
    text = str(exc).lower()
    return "not a valid duckdb database" in text or "corrupt" in text


def _connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(50):
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            con.execute("SET TimeZone = 'UTC'")
            return con
        except duckdb.IOException as exc:
            if attempt == 49 or _is_damaged(exc):
                raise
            time.sleep(0.1)  # another process holds the file for a moment
    raise AssertionError("unreachable")


def rebuild_catalog(store: BarStore, path: Path) -> int:
    """Recreate the catalog's views from the store's manifest; return its generation."""
    import duckdb

    manifest = store.manifest()
    try:
        con = _connect(path)
    except duckdb.IOException as exc:
        if not _is_damaged(exc):
            raise
        # The catalog is derived data: a damaged file is replaced by a new one.
        path.unlink()
        path.with_name(f"{path.name}.wal").unlink(missing_ok=True)
        con = _connect(path)
    try:
        bar_files = [
            store.root / part["file"]
            for series in manifest["series"].values()
            for part in series["partitions"].values()
        ]
        con.execute("BEGIN")
        if bar_files:
            con.execute(
                "CREATE OR REPLACE VIEW bars AS SELECT symbol, timeframe, side, ts, open, high, "
                "low, close, volume, spread, year FROM read_parquet("
                f"{_sql_list(bar_files)}, hive_partitioning = true, union_by_name = true)"
            )
        else:
            con.execute(
                "CREATE OR REPLACE VIEW bars AS SELECT NULL::VARCHAR AS symbol, NULL::VARCHAR AS "
                "timeframe, NULL::VARCHAR AS side, NULL::TIMESTAMPTZ AS ts, NULL::DOUBLE AS open, "
                "NULL::DOUBLE AS high, NULL::DOUBLE AS low, NULL::DOUBLE AS close, "
                'NULL::DOUBLE AS volume, NULL::DOUBLE AS spread, NULL::BIGINT AS "year" WHERE false'
            )
        con.execute(
            "CREATE OR REPLACE TABLE series (symbol VARCHAR, timeframe VARCHAR, side VARCHAR, "
            "volume_kind VARCHAR, rows BIGINT, first TIMESTAMPTZ, last TIMESTAMPTZ, "
            "version VARCHAR, has_spread BOOLEAN, sources VARCHAR)"
        )
        rows: list[tuple[Any, ...]] = [
            (s["symbol"], s["timeframe"], s["side"], s["volume_kind"], s["rows"], s["first"],
             s["last"], s["version"], s["has_spread"], json.dumps(s["sources"]))
            for s in manifest["series"].values()
        ]  # fmt: skip
        if rows:
            con.executemany("INSERT INTO series VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        quarantine = [store.root / f for f in manifest["quarantine"]]
        if quarantine:
            con.execute(
                f"CREATE OR REPLACE VIEW quarantine AS SELECT * FROM read_parquet("
                f"{_sql_list(quarantine)}, union_by_name = true)"
            )
        else:
            con.execute(
                "CREATE OR REPLACE VIEW quarantine AS SELECT NULL::VARCHAR AS run, NULL::VARCHAR AS "
                "source, NULL::BIGINT AS line, NULL::VARCHAR AS symbol, NULL::VARCHAR AS "
                "timeframe, NULL::VARCHAR AS side, NULL::TIMESTAMPTZ AS ts, NULL::VARCHAR AS "
                "reason, NULL::VARCHAR AS raw WHERE false"
            )
        runs = [store.root / f for f in manifest["runs"]]
        if runs:
            con.execute(
                "CREATE OR REPLACE VIEW ingest_runs AS SELECT * FROM read_json_auto("
                f"{_sql_list(runs)}, union_by_name = true)"
            )
        con.execute("CREATE OR REPLACE TABLE catalog_meta (generation BIGINT)")
        con.execute("INSERT INTO catalog_meta VALUES (?)", [manifest["generation"]])
        con.execute("COMMIT")
    finally:
        con.close()
    return int(manifest["generation"])


def catalog_generation(path: Path) -> int | None:
    """Return the manifest generation a catalog was built from, or None."""
    if not path.exists():
        return None
    import duckdb

    try:
        con = _connect(path, read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute("SELECT generation FROM catalog_meta").fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return int(row[0]) if row else None


def open_catalog(store: BarStore, path: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Return a connection to an up-to-date catalog, rebuilding it first if it is stale."""
    if catalog_generation(path) != store.manifest()["generation"]:
        rebuild_catalog(store, path)
    return _connect(path, read_only=read_only)

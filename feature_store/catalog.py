"""The DuckDB catalog: views over the Parquet store, rebuilt from the manifest and feature index.

The catalog is derived data. It records the generations of the bar store's manifest and of the
feature store's index it was built from, and is rebuilt whenever either differs, so a crash
between a commit and the rebuild heals on the next open.

Views: ``bars`` (every series, with symbol, timeframe, side and year from the partition paths),
``series`` (one row per series), ``quarantine`` and ``ingest_runs``; ``feature_builds`` (one
row per feature build) and, for each feature set with a build, ``features_<set>``: the latest
build of the set on every series, joined with its bars (symbol, timeframe, side, version, ts,
OHLC, volume, spread, then the feature and label columns). Once a backtest is stored:
``backtest_runs`` (one row per run record), ``backtest_equity`` and ``backtest_trades`` (with a
``run`` column), read from the run folders at query time. Once the trading runtime's state
database exists: ``live_orders``, ``live_fills``, ``live_equity``, ``risk_events``,
``live_trades`` and ``live_sessions``, over Parquet snapshots of it that every rebuild and every
open of the catalog write afresh (:func:`refresh_state_views`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from feature_store.feature_index import FeatureBuild, FeatureStore
from feature_store.state import SNAPSHOT_VIEWS, snapshot_state
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


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _backtest_tables(root: Path) -> str:
    """Return which backtest tables are stored, e.g. ``run,equity,trades``."""
    return ",".join(
        name for name in ("run", "equity", "trades")
        if any(root.glob(f"run=*/{name}.{'json' if name == 'run' else 'parquet'}"))
    )  # fmt: skip


def _backtest_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Create the backtest views over every stored run's files (globbed at query time)."""
    for view in ("backtest_runs", "backtest_equity", "backtest_trades"):
        con.execute(f"DROP VIEW IF EXISTS {view}")
    present = _backtest_tables(root).split(",")
    base = str(root.resolve()).replace("'", "''")
    if "run" in present:
        con.execute(
            "CREATE VIEW backtest_runs AS SELECT * FROM read_json_auto("
            f"'{base}/run=*/run.json', union_by_name = true)"
        )
    for view, name in (("backtest_equity", "equity"), ("backtest_trades", "trades")):
        if name not in present:
            continue
        con.execute(
            f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{base}/run=*/{name}.parquet', "
            "hive_partitioning = true, union_by_name = true)"
        )


def refresh_state_views(settings: Settings) -> bool:
    """Write fresh Parquet snapshots of the state database for the catalog's live views.

    The views themselves read the files at query time, so a fresh snapshot is all a query
    needs. Returns whether there is a state database (and so whether the views exist).

    Raises
    ------
    SolodeskError
        If the state database exists but cannot be read.
    """
    if not settings.state_db_path.is_file():
        return False
    snapshot_state(settings.state_db_path, settings.state_snapshots_dir)
    return True


def _state_views(con: duckdb.DuckDBPyConnection, snapshots: Path, present: bool) -> None:
    """Create the live views over the state snapshots, or drop them when there is no state."""
    for view in SNAPSHOT_VIEWS:
        con.execute(f"DROP VIEW IF EXISTS {view}")
        if present:
            con.execute(
                f"CREATE VIEW {view} AS SELECT * FROM read_parquet("
                f"{_quote(str((snapshots / f'{view}.parquet').resolve()))})"
            )


def _feature_views(con: duckdb.DuckDBPyConnection, features: FeatureStore) -> None:
    """Create ``feature_builds`` and one ``features_<set>`` view per set with a build."""
    builds = features.builds()
    con.execute(
        "CREATE OR REPLACE TABLE feature_builds (feature_set VARCHAR, symbol VARCHAR, "
        "timeframe VARCHAR, side VARCHAR, version VARCHAR, latest BOOLEAN, rows BIGINT, "
        "features BIGINT, first TIMESTAMPTZ, last TIMESTAMPTZ, created TIMESTAMPTZ, "
        "seconds DOUBLE, definition VARCHAR, sources VARCHAR, validation VARCHAR, file VARCHAR)"
    )
    rows: list[tuple[Any, ...]] = [
        (b.feature_set, b.symbol, b.timeframe, b.side, b.version, b.latest, b.rows, b.features,
         b.first, b.last, b.created, b.seconds, b.definition, json.dumps(b.sources),
         json.dumps(b.validation), str(features.path(b).resolve()))
        for b in builds
    ]  # fmt: skip
    if rows:
        con.executemany(
            "INSERT INTO feature_builds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    stale = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW' "
        "AND table_name LIKE 'features\\_%' ESCAPE '\\'"
    ).fetchall()
    for (name,) in stale:
        con.execute(f'DROP VIEW IF EXISTS "{name}"')
    latest: dict[str, list[FeatureBuild]] = {}
    for build in builds:
        # A build whose file was removed by hand is listed in feature_builds but not viewed.
        if build.latest and features.path(build).is_file():
            latest.setdefault(build.feature_set, []).append(build)
    for feature_set, chosen in sorted(latest.items()):
        union = " UNION ALL BY NAME ".join(
            f"SELECT {_quote(b.symbol)} AS symbol, {_quote(b.timeframe)} AS timeframe, "
            f"{_quote(b.side)} AS side, {_quote(b.version)} AS version, * "
            f"FROM read_parquet({_quote(str(features.path(b).resolve()))}, "
            "hive_partitioning = false)"
            for b in chosen
        )
        con.execute(
            f'CREATE OR REPLACE VIEW "features_{feature_set}" AS SELECT f.symbol, f.timeframe, '
            "f.side, f.version, f.ts, b.open, b.high, b.low, b.close, b.volume, b.spread, "
            "f.* EXCLUDE (symbol, timeframe, side, version, ts)"
            f" FROM ({union}) AS f JOIN bars AS b ON b.symbol = f.symbol AND "
            "b.timeframe = f.timeframe AND b.side = f.side AND b.ts = f.ts"
        )


def rebuild_catalog(settings: Settings) -> int:
    """Recreate the catalog's views from the store's manifest, the feature index, the runs and
    fresh snapshots of the state database.

    Returns the manifest generation.
    """
    return _rebuild(settings, refresh_state_views(settings))


def _rebuild(settings: Settings, state: bool) -> int:
    """Recreate the catalog; ``state`` says whether the state snapshots are there to view."""
    import duckdb

    store = BarStore(settings.store_dir)
    features = FeatureStore(settings.features_dir)
    path = settings.catalog_path
    manifest = store.manifest()
    feature_generation = features.generation()
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
        _feature_views(con, features)
        backtests = settings.backtests_dir
        _backtest_views(con, backtests)
        _state_views(con, settings.state_snapshots_dir, state)
        con.execute(
            "CREATE OR REPLACE TABLE catalog_meta (generation BIGINT, feature_generation BIGINT, "
            "backtests VARCHAR, state BOOLEAN)"
        )
        con.execute(
            "INSERT INTO catalog_meta VALUES (?, ?, ?, ?)",
            [manifest["generation"], feature_generation, _backtest_tables(backtests), state],
        )
        con.execute("COMMIT")
    finally:
        con.close()
    return int(manifest["generation"])


def catalog_generation(path: Path) -> int | None:
    """Return the manifest generation a catalog was built from, or None."""
    stamp = catalog_stamp(path)
    return stamp[0] if stamp else None


def catalog_stamp(path: Path) -> tuple[int, int, str] | None:
    """Return what a catalog was built from, or None.

    That is the manifest and feature index generations and which backtest tables existed.
    """
    stamp = _stamp(path)
    return (stamp[0], stamp[1], stamp[2]) if stamp else None


def _stamp(path: Path) -> tuple[int, int, str, bool] | None:
    """Return :func:`catalog_stamp` and whether the live views over the state were made."""
    if not path.exists():
        return None
    import duckdb

    try:
        con = _connect(path, read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute(
            "SELECT generation, feature_generation, backtests, state FROM catalog_meta"
        ).fetchone()
    except duckdb.Error:
        return None  # no catalog, or one made before the live views: rebuilt
    finally:
        con.close()
    return (int(row[0]), int(row[1]), str(row[2]), bool(row[3])) if row else None


def open_catalog(settings: Settings, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Return a connection to an up-to-date catalog, rebuilding it first if it is stale.

    The state database's snapshots are written afresh first, so the live views show what the
    runtime has committed up to now.
    """
    store = BarStore(settings.store_dir)
    features = FeatureStore(settings.features_dir)
    state = refresh_state_views(settings)
    wanted = (
        store.manifest()["generation"],
        features.generation(),
        _backtest_tables(settings.backtests_dir),
        state,
    )
    if _stamp(settings.catalog_path) != wanted:
        _rebuild(settings, state)
    return _connect(settings.catalog_path, read_only=read_only)


def refresh_catalog(settings: Settings, what: str) -> list[str]:
    """Rebuild the catalog after a commit; return a warning instead when it is held elsewhere
    (another process, or a connection of this one opened with other settings).

    ``what`` names what was just stored (``the bars``, ``the features``): it is committed
    whatever happens here, and the catalog rebuilds itself the next time it is opened.
    """
    import duckdb

    try:
        rebuild_catalog(settings)
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        return [
            f"the DuckDB catalog {settings.catalog_path} is held by another process ({exc}); "
            f"{what} are stored and the catalog will be rebuilt when it is next opened"
        ]
    return []

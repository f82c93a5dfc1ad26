"""The DuckDB catalog: views rebuilt from the manifest, healed when stale."""

from __future__ import annotations

from pathlib import Path

from testkit.files import bar_frame, utc

from core.timeframes import Timeframe
from core.types import SeriesKey, Side, VolumeKind
from feature_store.catalog import catalog_generation, open_catalog, rebuild_catalog
from feature_store.store import BarStore, SeriesInfo


def _commit(store: BarStore, hours: list[int]) -> None:
    key = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)
    bars = bar_frame((utc(2017, 1, 3, h), 1.1, 1.2, 1.0, 1.1, 1.0, None) for h in hours)
    with store.transaction() as tx:
        entry = tx.manifest["series"].get(key.slug)
        info = SeriesInfo.from_dict(entry) if entry else SeriesInfo(key, VolumeKind.TICK)
        tx.put_series(info, {2017: bars})
        tx.commit()


def test_catalog_empty_store_views_answer_zero_rows(tmp_path: Path) -> None:
    # Arrange
    store = BarStore(tmp_path / "store")

    # Act
    con = open_catalog(store, tmp_path / "catalog.duckdb")
    try:
        counts = [
            con.execute(f"select count(*) from {v}").fetchone()
            for v in ("bars", "series", "quarantine")
        ]
    finally:
        con.close()

    # Assert
    assert counts == [(0,), (0,), (0,)]


def test_catalog_rebuild_exposes_bars_with_partition_columns(tmp_path: Path) -> None:
    # Arrange
    store = BarStore(tmp_path / "store")
    _commit(store, [9, 10, 11])

    # Act
    generation = rebuild_catalog(store, tmp_path / "catalog.duckdb")
    con = open_catalog(store, tmp_path / "catalog.duckdb")
    try:
        rows = con.execute(
            "select symbol, timeframe, side, year, count(*) from bars group by all"
        ).fetchall()
        series = con.execute("select symbol, rows from series").fetchall()
    finally:
        con.close()

    # Assert
    assert generation == 1
    assert rows == [("EURUSD", "H1", "bid", 2017, 3)]
    assert series == [("EURUSD", 3)]


def test_catalog_stale_after_commit_rebuilt_on_open(tmp_path: Path) -> None:
    # Arrange: the catalog was built, then another commit happened (a crash before rebuild).
    store = BarStore(tmp_path / "store")
    path = tmp_path / "catalog.duckdb"
    _commit(store, [9])
    rebuild_catalog(store, path)
    _commit(store, [10, 11])

    # Act
    stale = catalog_generation(path)
    con = open_catalog(store, path)
    try:
        row = con.execute("select count(*) from bars").fetchone()
    finally:
        con.close()

    # Assert
    assert stale == 1
    assert catalog_generation(path) == 2
    assert row == (2,)  # the second commit replaced 2017 with hours 10 and 11


def test_catalog_generation_of_missing_or_foreign_file_is_none(tmp_path: Path) -> None:
    # Arrange
    foreign = tmp_path / "other.duckdb"
    foreign.write_bytes(b"not a database")

    # Act / Assert
    assert catalog_generation(tmp_path / "none.duckdb") is None
    assert catalog_generation(foreign) is None


def test_catalog_damaged_file_replaced_on_rebuild(tmp_path: Path) -> None:
    # Arrange: the catalog is derived data; a damaged file must not block the store.
    store = BarStore(tmp_path / "store")
    _commit(store, [9, 10])
    path = tmp_path / "catalog.duckdb"
    path.write_bytes(b"\0garbage, not a database" * 100)

    # Act
    con = open_catalog(store, path)
    try:
        row = con.execute("select count(*) from bars").fetchone()
    finally:
        con.close()

    # Assert
    assert row == (2,)
    assert catalog_generation(path) == 1

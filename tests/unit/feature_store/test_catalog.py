"""The DuckDB catalog: views rebuilt from the manifest, healed when stale."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from testkit.files import bar_frame, utc

from core.settings import Settings
from core.timeframes import Timeframe
from core.types import SeriesKey, Side, VolumeKind
from feature_store.catalog import (
    catalog_generation,
    open_catalog,
    rebuild_catalog,
)
from feature_store.store import BarStore, SeriesInfo


def _commit(settings: Settings, hours: list[int]) -> None:
    store = BarStore(settings.store_dir)
    key = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)
    bars = bar_frame((utc(2017, 1, 3, h), 1.1, 1.2, 1.0, 1.1, 1.0, None) for h in hours)
    with store.transaction() as tx:
        entry = tx.manifest["series"].get(key.slug)
        info = SeriesInfo.from_dict(entry) if entry else SeriesInfo(key, VolumeKind.TICK)
        tx.put_series(info, {2017: bars})
        tx.commit()


def test_catalog_empty_store_views_answer_zero_rows(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")

    # Act
    con = open_catalog(settings)
    try:
        counts = [
            con.execute(f"select count(*) from {v}").fetchone()
            for v in ("bars", "series", "quarantine", "feature_builds")
        ]
    finally:
        con.close()

    # Assert
    assert counts == [(0,), (0,), (0,), (0,)]
    assert settings.catalog_path.is_file()


def test_catalog_rebuild_exposes_bars_with_partition_columns(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")
    _commit(settings, [9, 10, 11])

    # Act
    generation = rebuild_catalog(settings)
    con = open_catalog(settings)
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
    settings = Settings(home=tmp_path / "home")
    _commit(settings, [9])
    rebuild_catalog(settings)
    _commit(settings, [10, 11])

    # Act
    stale = catalog_generation(settings.catalog_path)
    con = open_catalog(settings)
    try:
        row = con.execute("select count(*) from bars").fetchone()
    finally:
        con.close()

    # Assert
    assert stale == 1
    assert catalog_generation(settings.catalog_path) == 2
    assert row == (2,)  # the second commit replaced 2017 with hours 10 and 11


def test_catalog_open_read_only_refuses_writes_writable_accepts_them(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")
    _commit(settings, [9])

    # Act
    reader = open_catalog(settings)
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            reader.execute("create table scratch (x int)")
    finally:
        reader.close()
    writer = open_catalog(settings, read_only=False)
    try:
        writer.execute("create temp table scratch (x int)")
        row = writer.execute("select count(*) from bars").fetchone()
    finally:
        writer.close()

    # Assert
    assert row == (1,)


def test_catalog_generation_of_missing_or_foreign_file_is_none(tmp_path: Path) -> None:
    # Arrange
    foreign = tmp_path / "other.duckdb"
    foreign.write_bytes(b"not a database")

    # Act / Assert
    assert catalog_generation(tmp_path / "none.duckdb") is None
    assert catalog_generation(foreign) is None


def test_catalog_damaged_file_replaced_on_rebuild(tmp_path: Path) -> None:
    # Arrange: the catalog is derived data; a damaged file must not block the store.
    settings = Settings(home=tmp_path / "home")
    _commit(settings, [9, 10])
    settings.catalog_path.parent.mkdir(parents=True, exist_ok=True)
    settings.catalog_path.write_bytes(b"\0garbage, not a database" * 100)

    # Act
    con = open_catalog(settings)
    try:
        row = con.execute("select count(*) from bars").fetchone()
    finally:
        con.close()

    # Assert
    assert row == (2,)
    assert catalog_generation(settings.catalog_path) == 1

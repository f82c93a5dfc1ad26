"""The feature store: build versions, files written once, the index and the catalog's views of it."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from testkit.files import HOUR_BARS_START, bar_frame

from core.settings import Settings
from core.timeframes import Timeframe
from core.types import SeriesKey, Side, VolumeKind
from feature_store.catalog import catalog_stamp, open_catalog
from feature_store.feature_index import FeatureBuild, FeatureStore, build_version, feature_file
from feature_store.store import BarStore, SeriesInfo

H1 = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)
ROWS = 48


def _bars(n: int = ROWS) -> pl.DataFrame:
    return bar_frame(
        (HOUR_BARS_START + timedelta(hours=i), 1.1 + i * 1e-4, 1.2, 1.0, 1.1, 10.0, None)
        for i in range(n)
    )


def _table(bars: pl.DataFrame, *names: str) -> pl.DataFrame:
    """A feature table on ``bars``: ts, then one column per name (row number times its rank)."""
    rows = pl.int_range(pl.len(), dtype=pl.Int64).cast(pl.Float64)
    return bars.select("ts", *(((n + 1) * rows).alias(name) for n, name in enumerate(names)))


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _build(
    store: FeatureStore, feature_set: str, version: str, table: pl.DataFrame, key: SeriesKey = H1
) -> FeatureBuild:
    """Write a build's file and return its index entry (not yet recorded)."""
    relative = feature_file(feature_set, key, version)
    columns = [
        {"name": c, "role": "label" if c == "label" else "feature"} for c in table.columns[1:]
    ]
    return FeatureBuild(
        feature_set=feature_set, symbol=key.symbol, timeframe=key.timeframe.value,
        side=key.side.value, version=version, definition=f"def-{version}", file=relative,
        sha256=store.write_file(relative, _parquet(table)), rows=table.height,
        features=sum(c["role"] == "feature" for c in columns), columns=columns,
        sources={key.slug: "v1"}, first="2024-01-02T09:00:00Z", last=None,
        created="2026-01-01T00:00:00Z", seconds=0.1, validation={"success": True},
    )  # fmt: skip


def _record(store: FeatureStore, *builds: FeatureBuild) -> int:
    generation = 0
    for build in builds:
        with store.transaction() as tx:
            tx.record(build)
            generation = tx.commit()
    return generation


def _desk(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    bars = BarStore(settings.store_dir)
    with bars.transaction() as tx:
        tx.put_series(SeriesInfo(H1, VolumeKind.TICK), {2024: _bars()})
        tx.commit()
    return settings


def test_build_version_changes_with_definition_or_any_source_not_with_order() -> None:
    # Arrange
    sources = {"EURUSD.H1.bid": "a", "EURUSD.H4.bid": "b"}

    # Act
    version = build_version("def", sources)

    # Assert
    assert len(version) == 16 and int(version, 16) >= 0
    assert build_version("def", dict(reversed(sources.items()))) == version
    assert build_version("other", sources) != version
    assert build_version("def", {**sources, "EURUSD.H4.bid": "c"}) != version
    assert build_version("def", {"EURUSD.H1.bid": "a"}) != version


def test_feature_file_names_set_series_and_version() -> None:
    # Act
    relative = feature_file("default", H1, "abc123")

    # Assert
    assert relative == "set=default/symbol=EURUSD/timeframe=H1/side=bid/abc123.parquet"


def test_feature_store_new_folder_has_an_empty_index(tmp_path: Path) -> None:
    # Arrange
    store = FeatureStore(tmp_path / "features")

    # Act / Assert
    assert store.index() == {"format": 1, "generation": 0, "builds": []}
    assert store.builds() == []
    assert store.latest("default", H1) is None
    assert not (tmp_path / "features").exists()


def test_feature_store_recorded_build_reads_back_complete_and_latest(tmp_path: Path) -> None:
    # Arrange
    store = FeatureStore(tmp_path / "features")
    table = _table(_bars(), "rsi_14", "label")
    build = _build(store, "default", "v1", table)

    # Act
    generation = _record(store, build)

    # Assert
    assert generation == store.generation() == 1
    found = store.find("default", H1, "v1")
    assert found is not None and found.latest
    assert store.latest("default", H1) == found
    assert found.labels == ["label"] and found.key == H1
    assert store.is_complete(found)
    assert store.read(found).equals(table)
    assert store.path(found) == tmp_path / "features" / build.file
    index = json.loads((tmp_path / "features" / "index.json").read_text())
    assert [entry["version"] for entry in index["builds"]] == ["v1"]


def test_feature_store_damaged_or_missing_file_is_not_complete(tmp_path: Path) -> None:
    # Arrange
    store = FeatureStore(tmp_path / "features")
    damaged = _build(store, "default", "v1", _table(_bars(), "rsi_14"))
    missing = _build(store, "default", "v2", _table(_bars(), "rsi_14"))
    store.path(damaged).write_bytes(b"truncated")
    store.path(missing).unlink()

    # Act / Assert
    assert not store.is_complete(damaged)
    assert not store.is_complete(missing)


def test_feature_store_new_version_takes_latest_and_old_one_gets_it_back(tmp_path: Path) -> None:
    # Arrange
    store = FeatureStore(tmp_path / "features")
    table = _table(_bars(), "rsi_14")
    first, second = (_build(store, "default", v, table) for v in ("v1", "v2"))
    other = _build(store, "other", "v1", table)
    _record(store, first, second, other)

    # Act
    with store.transaction() as tx:
        tx.mark_latest("default", H1, "v1")
        tx.commit()

    # Assert
    assert [(b.feature_set, b.version, b.latest) for b in store.builds()] == [
        ("default", "v1", True),
        ("default", "v2", False),
        ("other", "v1", True),
    ]
    assert store.generation() == 4


def test_feature_store_recording_a_version_again_replaces_its_entry(tmp_path: Path) -> None:
    # Arrange
    store = FeatureStore(tmp_path / "features")
    table = _table(_bars(), "rsi_14")
    _record(store, _build(store, "default", "v1", table))

    # Act
    _record(store, _build(store, "default", "v1", table.head(10)))

    # Assert
    (build,) = store.builds()
    assert build.rows == 10 and build.latest


def test_feature_store_transaction_without_commit_changes_nothing(tmp_path: Path) -> None:
    # Arrange
    store = FeatureStore(tmp_path / "features")
    build = _build(store, "default", "v1", _table(_bars(), "rsi_14"))

    # Act
    with store.transaction() as tx:
        tx.record(build)

    # Assert
    assert store.builds() == []
    assert store.generation() == 0


def test_feature_store_transactions_from_threads_lose_no_build(tmp_path: Path) -> None:
    # Arrange
    store = FeatureStore(tmp_path / "features")

    def record(n: int) -> None:
        build = FeatureBuild(
            feature_set="s", symbol="EURUSD", timeframe="H1", side="bid", version=f"v{n}",
            definition="d", file=f"v{n}.parquet", sha256="0", rows=0, features=0, columns=[],
            sources={}, first=None, last=None, created="", seconds=0.0,
        )  # fmt: skip
        with store.transaction() as tx:
            tx.record(build)
            tx.commit()

    # Act
    threads = [threading.Thread(target=record, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Assert
    builds = store.builds()
    assert sorted(b.version for b in builds) == [f"v{n}" for n in range(8)]
    assert sum(b.latest for b in builds) == 1
    assert store.generation() == 8


def test_catalog_exposes_feature_builds_and_the_latest_build_per_set(tmp_path: Path) -> None:
    # Arrange
    desk = _desk(tmp_path)
    store = FeatureStore(desk.features_dir)
    bars = _bars()
    new_table = _table(bars, "rsi_14", "h4_rsi_7", "label").with_columns(
        pl.when(pl.col("h4_rsi_7") > 20).then(pl.col("h4_rsi_7"))
    )
    old = _build(store, "small", "old", _table(bars, "rsi_7"))
    new = _build(store, "small", "new", new_table)
    other = _build(store, "other", "oth", _table(bars, "log_return_1"))
    _record(store, old, new, other)

    # Act
    con = open_catalog(desk)
    try:
        builds = con.execute("select feature_set, version, latest from feature_builds").fetchall()
        joined = con.execute(
            "select f.version, count(*), count(h4_rsi_7), min(f.close = b.close) "
            "from features_small f join bars b using (symbol, timeframe, side, ts) group by all"
        ).fetchall()
        columns = [d[0] for d in con.execute("select * from features_small limit 0").description]
        views = con.execute(
            "select table_name from information_schema.tables where table_name like 'features_%' "
            "order by 1"
        ).fetchall()
    finally:
        con.close()

    # Assert
    assert sorted(builds) == [
        ("other", "oth", True),
        ("small", "new", True),
        ("small", "old", False),
    ]
    assert joined == [("new", ROWS, new_table["h4_rsi_7"].count(), True)]
    assert columns[:11] == ["symbol", "timeframe", "side", "version", "ts", "open", "high",
                            "low", "close", "volume", "spread"]  # fmt: skip
    assert columns[11:] == new_table.columns[1:]
    assert views == [("features_other",), ("features_small",)]
    assert catalog_stamp(desk.catalog_path) == (
        BarStore(desk.store_dir).manifest()["generation"],
        store.generation(),
        "",
    )


def test_catalog_build_with_its_file_removed_listed_but_not_viewed(tmp_path: Path) -> None:
    # Arrange
    desk = _desk(tmp_path)
    store = FeatureStore(desk.features_dir)
    gone = _build(store, "gone", "v1", _table(_bars(), "rsi_14"))
    _record(store, gone)
    store.path(gone).unlink()

    # Act
    con = open_catalog(desk)
    try:
        listed = con.execute("select feature_set, version from feature_builds").fetchall()
        views = con.execute(
            "select count(*) from information_schema.tables where table_name = 'features_gone'"
        ).fetchone()
    finally:
        con.close()

    # Assert
    assert listed == [("gone", "v1")]
    assert views == (0,)


@pytest.mark.parametrize("change", ["bars", "features"])
def test_catalog_stale_after_a_feature_or_bar_commit_rebuilt_on_open(
    tmp_path: Path, change: str
) -> None:
    # Arrange
    desk = _desk(tmp_path)
    store = FeatureStore(desk.features_dir)
    _record(store, _build(store, "small", "v1", _table(_bars(), "rsi_14")))
    open_catalog(desk).close()
    before = catalog_stamp(desk.catalog_path)

    # Act: a commit the catalog did not see (a crash before its rebuild).
    if change == "features":
        _record(store, _build(store, "small", "v2", _table(_bars(), "rsi_7")))
    else:
        with BarStore(desk.store_dir).transaction() as tx:
            tx.put_series(SeriesInfo(H1, VolumeKind.TICK), {2024: _bars(24)})
            tx.commit()
    con = open_catalog(desk)
    try:
        rows = con.execute("select version, count(*) from features_small group by 1").fetchall()
    finally:
        con.close()

    # Assert
    assert before == (1, 1, "")
    assert catalog_stamp(desk.catalog_path) == ((2, 1, "") if change == "bars" else (1, 2, ""))
    assert rows == ([("v1", 24)] if change == "bars" else [("v2", ROWS)])

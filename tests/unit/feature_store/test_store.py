"""The bar store: staged writes invisible until commit, content-addressed files, one manifest."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from testkit.files import bar_frame, utc
from testkit.store import assert_store_consistent

from core.timeframes import Timeframe
from core.types import SeriesKey, Side, VolumeKind
from feature_store.store import BarStore, SeriesInfo, write_atomic
from pipelines.ingest.normalize import QUARANTINE_SCHEMA

KEY = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)


def _bars(*hours: tuple[int, int]) -> dict[int, pl.DataFrame]:
    frames: dict[int, list[tuple[object, ...]]] = {}
    for year, hour in hours:
        frames.setdefault(year, []).append((utc(year, 1, 3, hour), 1.1, 1.2, 1.0, 1.1, 1.0, None))
    return {year: bar_frame(rows) for year, rows in frames.items()}


def _commit_series(store: BarStore, bars_by_year: dict[int, pl.DataFrame]) -> SeriesInfo:
    with store.transaction() as tx:
        info = SeriesInfo(KEY, VolumeKind.TICK)
        info = tx.put_series(info, bars_by_year, {"name": "test"})
        tx.commit()
    return info


def test_store_new_store_has_empty_manifest(tmp_path: Path) -> None:
    # Act
    store = BarStore(tmp_path / "store")

    # Assert
    assert store.manifest()["series"] == {}
    assert store.series() == []
    assert store.read(KEY).height == 0
    assert store.quarantine().height == 0


def test_store_commit_makes_series_readable_with_rows_and_version(tmp_path: Path) -> None:
    # Arrange
    store = BarStore(tmp_path / "store")

    # Act
    info = _commit_series(store, _bars((2017, 9), (2017, 10), (2018, 9)))

    # Assert
    assert info.rows == 3
    assert (info.first, info.last) == ("2017-01-03T09:00:00Z", "2018-01-03T09:00:00Z")
    assert sorted(info.partitions) == ["2017", "2018"]
    assert store.read(KEY)["ts"].to_list() == [
        utc(2017, 1, 3, 9),
        utc(2017, 1, 3, 10),
        utc(2018, 1, 3, 9),
    ]
    assert store.read(KEY, start=utc(2017, 1, 3, 10), end=utc(2018, 1, 1)).height == 1
    assert store.manifest()["generation"] == 1
    assert_store_consistent(store.root)


def test_store_uncommitted_transaction_leaves_previous_manifest(tmp_path: Path) -> None:
    # Arrange
    store = BarStore(tmp_path / "store")
    _commit_series(store, _bars((2017, 9)))
    before = store.manifest()

    # Act: stage more bars and leave without committing.
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.put_series(SeriesInfo(KEY, VolumeKind.TICK), _bars((2017, 9), (2017, 10)))
        raise RuntimeError("interrupted")

    # Assert
    assert store.manifest() == before
    assert store.read(KEY).height == 1


def test_store_next_commit_removes_files_no_manifest_names(tmp_path: Path) -> None:
    # Arrange: an interrupted transaction leaves a staged file behind.
    store = BarStore(tmp_path / "store")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.put_series(SeriesInfo(KEY, VolumeKind.TICK), _bars((2016, 9)))
        raise RuntimeError("interrupted")
    orphans = list((store.root / "bars").rglob("*.parquet"))

    # Act
    _commit_series(store, _bars((2017, 9)))

    # Assert
    assert len(orphans) == 1
    assert not orphans[0].exists()
    assert len(list((store.root / "bars").rglob("*.parquet"))) == 1


def test_store_same_content_gives_same_file_and_version(tmp_path: Path) -> None:
    # Act
    first = _commit_series(BarStore(tmp_path / "a"), _bars((2017, 9), (2017, 10)))
    second = _commit_series(BarStore(tmp_path / "b"), _bars((2017, 9), (2017, 10)))
    other = _commit_series(BarStore(tmp_path / "c"), _bars((2017, 9)))

    # Assert
    assert first.version == second.version
    assert first.partitions == second.partitions
    assert other.version != first.version


def test_store_quarantine_and_runs_recorded(tmp_path: Path) -> None:
    # Arrange
    store = BarStore(tmp_path / "store")
    rows = pl.DataFrame(
        {"source": ["a.csv"], "line": [3], "symbol": ["EURUSD"], "timeframe": ["H1"],
         "side": ["bid"], "ts": [None], "reason": ["NaN price"], "raw": ["x"]},
        schema=QUARANTINE_SCHEMA,
    )  # fmt: skip

    # Act
    with store.transaction() as tx:
        tx.put_quarantine("run-1", rows)
        tx.put_run("run-1", {"run": "run-1", "series": []})
        tx.commit()

    # Assert
    quarantine = store.quarantine()
    assert quarantine.select("run", "source", "line", "reason").rows() == [
        ("run-1", "a.csv", 3, "NaN price")
    ]
    assert store.runs() == [{"run": "run-1", "series": []}]
    assert_store_consistent(store.root)


def test_write_atomic_replaces_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "m.json"
    write_atomic(path, json.dumps({"v": 1}).encode())

    # Act
    write_atomic(path, json.dumps({"v": 2}).encode())

    # Assert
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]

"""Feature builds: version, cache hit, checks that refuse a build, index, catalog views."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from testkit.files import HOUR_BARS_START, bar_frame

from core.clocks import UTC
from core.errors import SolodeskError, UsageError
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import SeriesKey, Side, VolumeKind
from feature_store.catalog import catalog_stamp, open_catalog
from feature_store.feature_index import FeatureBuild, FeatureStore
from feature_store.features import (
    build_all,
    build_feature_set,
    build_version,
    column_summary,
    features_root,
    read_build,
)
from feature_store.store import BarStore, SeriesInfo
from pipelines.features import BUILDERS
from pipelines.features.sets import FeatureSetConfig, parse_feature_sets
from pipelines.resample import resample_bars

H1 = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)
H4 = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H4, side=Side.BID)
GBP_H1 = SeriesKey(symbol="GBPUSD", timeframe=Timeframe.H1, side=Side.BID)
SMALL: dict[str, Any] = {
    "features": ["log_return_1", "rsi_14", "realized_vol_10"],
    "context": [{"timeframe": "H4", "features": ["rsi_7", "log_return_1"]}],
    "label": {"kind": "horizon", "horizon": 4},
    "weights": True,
}


def _config(**fields: Any) -> FeatureSetConfig:
    return parse_feature_sets({"sets": {"small": fields}})["small"]


def _hourly(n: int, seed: int, start_price: float = 1.1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate(([start_price], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 5e-4, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 5e-4, n))
    volume = rng.integers(1, 500, n).astype(np.float64)
    return bar_frame(
        (HOUR_BARS_START + timedelta(hours=i), *map(float, row), None)
        for i, row in enumerate(zip(open_, high, low, close, volume, strict=True))
    )


def _put(settings: Settings, key: SeriesKey, bars: pl.DataFrame, source: dict[str, Any]) -> str:
    store = BarStore(settings.store_dir)
    with store.transaction() as tx:
        entry = tx.manifest["series"].get(key.slug)
        info = SeriesInfo.from_dict(entry) if entry else SeriesInfo(key, VolumeKind.TICK)
        info = tx.put_series(info, {2024: bars}, source)
        tx.commit()
    return info.version


def _desk(tmp_path: Path, n: int = 300) -> Settings:
    """A desk holding EURUSD H1 and its H4 resample, and GBPUSD H1."""
    settings = Settings(home=tmp_path / "home")
    bars = _hourly(n, seed=1)
    _put(settings, H1, bars, {"name": "test"})
    h4 = resample_bars(bars, Timeframe.H1, Timeframe.H4, anchor=UTC, volume_kind=VolumeKind.TICK)
    _put(settings, H4, h4, {"name": "resample:EURUSD.H1.bid", "anchor": "UTC"})
    _put(settings, GBP_H1, _hourly(n, seed=2, start_price=1.3), {"name": "test"})
    return settings


def _build(settings: Settings, config: FeatureSetConfig, name: str = "small") -> Any:
    return build_feature_set(settings, name, config, "EURUSD", Timeframe.H1)


@pytest.fixture
def desk(tmp_path: Path) -> Settings:
    return _desk(tmp_path)


def test_build_feature_set_stores_checked_table_and_latest_build(desk: Settings) -> None:
    # Act
    outcome = _build(desk, _config(**SMALL))

    # Assert
    build = outcome.build
    assert not outcome.cache_hit
    store = BarStore(desk.store_dir)
    sources = {k.slug: store.info(k).version for k in (H1, H4)}  # type: ignore[union-attr]
    assert build.sources == sources
    assert build.version == build_version(_config(**SMALL).definition_hash(), sources)
    assert build.file == f"set=small/symbol=EURUSD/timeframe=H1/side=bid/{build.version}.parquet"
    assert build.latest and build.rows == 300 and build.features == 5
    assert build.validation["success"] and build.validation["evaluated"] == 4
    frame = read_build(desk, build)
    assert frame.columns == [
        "ts", "log_return_1", "rsi_14", "realized_vol_10", "h4_rsi_7", "h4_log_return_1",
        "label", "label_log_return", "label_end", "label_weight",
    ]  # fmt: skip
    assert frame["ts"].equals(store.read(H1)["ts"])
    index = json.loads((features_root(desk) / "index.json").read_text())
    assert [b["version"] for b in index["builds"]] == [build.version]
    assert index["generation"] == 1


def test_build_feature_set_again_is_a_cache_hit_computing_nothing(
    desk: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    first = _build(desk, _config(**SMALL))
    index = features_root(desk) / "index.json"
    before = index.read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not compute")

    monkeypatch.setattr("pipelines.features.sets.feature_table", fail)

    # Act
    second = _build(desk, _config(**SMALL))

    # Assert
    assert second.cache_hit
    assert second.build.version == first.build.version
    assert index.read_bytes() == before


def test_build_feature_set_damaged_file_is_built_again(desk: Settings) -> None:
    # Arrange
    first = _build(desk, _config(**SMALL))
    path = FeatureStore(features_root(desk)).path(first.build)
    path.write_bytes(b"truncated")

    # Act
    second = _build(desk, _config(**SMALL))

    # Assert
    assert not second.cache_hit
    assert second.build.version == first.build.version
    assert read_build(desk, second.build).height == 300
    assert len(FeatureStore(features_root(desk)).builds()) == 1


def test_build_feature_set_new_definition_or_source_is_a_new_latest_version(
    desk: Settings,
) -> None:
    # Arrange
    first = _build(desk, _config(**SMALL)).build
    changed = _config(**{**SMALL, "features": ["log_return_1", "rsi_7"]})

    # Act: a new definition, then a change to the H4 series only, then the first again.
    second = _build(desk, changed).build
    h4 = BarStore(desk.store_dir).read(H4)
    _put(desk, H4, h4.with_columns(pl.col("volume") + 1.0), {"name": "edit"})
    third = _build(desk, changed).build
    _put(desk, H4, h4, {"name": "undo"})
    back = _build(desk, changed)

    # Assert
    assert len({first.version, second.version, third.version}) == 3
    assert third.sources[H1.slug] == second.sources[H1.slug]
    assert third.sources[H4.slug] != second.sources[H4.slug]
    assert back.cache_hit and back.build.version == second.version
    builds = FeatureStore(features_root(desk)).builds()
    assert [(b.version, b.latest) for b in builds] == [
        (first.version, False),
        (second.version, True),
        (third.version, False),
    ]
    for build in builds:
        assert FeatureStore(features_root(desk)).is_complete(build)


def test_build_feature_set_missing_context_series_names_it_and_the_command(
    tmp_path: Path,
) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")
    _put(settings, H1, _hourly(50, seed=1), {"name": "test"})

    # Act / Assert
    with pytest.raises(UsageError) as error:
        _build(settings, _config(**SMALL))
    assert "needs the context series EURUSD H4 bid" in str(error.value)
    assert "solodesk resample --symbol EURUSD --source H1 --side bid --timeframe H4" in str(
        error.value
    )
    assert not features_root(settings).exists()


def test_build_feature_set_missing_cross_asset_names_it_and_the_command(desk: Settings) -> None:
    # Act / Assert
    with pytest.raises(UsageError) as error:
        _build(desk, _config(features=["rsi_14"], cross_assets=["USDJPY"]))
    assert "needs the cross-asset series USDJPY H1" in str(error.value)
    assert "solodesk ingest FILE --symbol USDJPY" in str(error.value)


def test_build_feature_set_unknown_series_raises_usage_error(desk: Settings) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"no stored series EURUSD D1 \(stored: EURUSD H1 bid"):
        build_feature_set(desk, "small", _config(**SMALL), "EURUSD", Timeframe.D1)


def test_build_feature_set_cross_asset_log_returns_joined_on_the_same_bars(
    desk: Settings,
) -> None:
    # Act
    build = _build(desk, _config(features=["log_return_1"], cross_assets=["gbpusd"])).build

    # Assert
    frame = read_build(desk, build)
    gbp = BarStore(desk.store_dir).read(GBP_H1)
    expected = gbp.select((pl.col("close") / pl.col("close").shift(1)).log())
    assert frame["gbpusd_log_return_1"].to_list() == pytest.approx(
        expected.to_series().to_list(), nan_ok=True
    )
    assert GBP_H1.slug in build.sources


def _refused(desk: Settings, config: FeatureSetConfig) -> str:
    with pytest.raises(SolodeskError) as error:
        _build(desk, config)
    assert not isinstance(error.value, UsageError)  # exit status 1, not 2
    assert FeatureStore(features_root(desk)).builds() == []
    assert not list(features_root(desk).rglob("*.parquet"))
    return str(error.value)


def test_build_feature_set_infinite_value_refused_nothing_stored(
    desk: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: a feature that divides by zero on one bar.
    monkeypatch.setitem(
        BUILDERS, "spike", lambda p: 1.0 / (pl.int_range(pl.len()) - 40).cast(pl.Float64)
    )
    config = _config(features=["rsi_14", {"kind": "spike", "name": "spike", "family": "trend"}])

    # Act
    message = _refused(desk, config)

    # Assert
    assert "the feature checks failed, nothing was stored" in message
    assert "expect_column_values_to_be_between [no infinite value]: 1 value(s)" in message
    assert "spike at 2024-01-04T01:00Z inf" in message


def test_build_feature_set_value_outside_documented_range_refused(
    desk: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: an RSI off by a factor of two breaks its documented [0, 100].
    rsi = BUILDERS["rsi"]
    monkeypatch.setitem(BUILDERS, "rsi", lambda p: rsi(p) * 2.0)

    # Act
    message = _refused(desk, _config(features=["rsi_14"]))

    # Assert
    assert "[at or below the documented upper bound]" in message
    assert "rsi_14 in [0, 100] at" in message
    assert "report:" in message


def test_build_feature_set_null_after_warmup_refused(
    desk: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: a log return that loses one value in the middle of the series.
    log_return = BUILDERS["log_return"]
    monkeypatch.setitem(
        BUILDERS,
        "log_return",
        lambda p: pl.when(pl.int_range(pl.len()) == 100).then(None).otherwise(log_return(p)),
    )

    # Act
    message = _refused(desk, _config(features=["log_return_1", "rsi_14"]))

    # Assert
    assert "expect_column_values_to_not_be_null [no null after the warm-up]: 1 value(s)" in message
    assert "log_return_1 at 2024-01-06T13:00Z null" in message


def test_catalog_exposes_feature_builds_and_the_latest_build_per_set(desk: Settings) -> None:
    # Arrange
    old = _build(desk, _config(features=["rsi_7"])).build
    new = _build(desk, _config(**SMALL)).build
    other = _build(desk, _config(features=["log_return_1"]), name="other").build

    # Act
    con = open_catalog(BarStore(desk.store_dir), desk.catalog_path)
    try:
        builds = con.execute(
            "select feature_set, version, latest from feature_builds order by created, version"
        ).fetchall()
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
    assert sorted(builds) == sorted(
        [
            ("small", old.version, False),
            ("small", new.version, True),
            ("other", other.version, True),
        ]
    )
    frame = read_build(desk, new)
    assert joined == [(new.version, 300, frame["h4_rsi_7"].count(), True)]
    assert columns[:11] == ["symbol", "timeframe", "side", "version", "ts", "open", "high",
                            "low", "close", "volume", "spread"]  # fmt: skip
    assert columns[11:] == frame.columns[1:]
    assert views == [("features_other",), ("features_small",)]
    assert catalog_stamp(desk.catalog_path) == (
        BarStore(desk.store_dir).manifest()["generation"],
        FeatureStore(features_root(desk)).generation(),
        "",
    )


def test_build_all_builds_every_series_leaving_out_context_not_longer(desk: Settings) -> None:
    # Arrange
    gbp = BarStore(desk.store_dir).read(GBP_H1)
    gbp_h4 = resample_bars(gbp, Timeframe.H1, Timeframe.H4, anchor=UTC, volume_kind=VolumeKind.TICK)
    _put(desk, GBP_H1.model_copy(update={"timeframe": Timeframe.H4}), gbp_h4, {"name": "test"})

    # Act
    outcome = build_all(desk, {"small": _config(**SMALL), "plain": _config(features=["rsi_7"])})

    # Assert
    built = sorted((o.build.feature_set, o.build.symbol, o.build.timeframe) for o in outcome.builds)
    assert built == [
        ("plain", "EURUSD", "H1"),
        ("plain", "EURUSD", "H4"),
        ("plain", "GBPUSD", "H1"),
        ("plain", "GBPUSD", "H4"),
        ("small", "EURUSD", "H1"),
        ("small", "EURUSD", "H4"),
        ("small", "GBPUSD", "H1"),
        ("small", "GBPUSD", "H4"),
    ]
    assert outcome.skipped == []
    on_h4 = next(
        o for o in outcome.builds if o.build.feature_set == "small" and o.build.timeframe == "H4"
    )
    on_h1 = next(
        o for o in outcome.builds if o.build.feature_set == "small" and o.build.timeframe == "H1"
    )
    assert not any(c["name"].startswith("h4_") for c in on_h4.build.columns)
    assert any(c["name"].startswith("h4_") for c in on_h1.build.columns)


def test_build_all_missing_context_series_raises_usage_error(desk: Settings) -> None:
    # Arrange: GBPUSD H1 has no H4 beside it.
    config = _config(**SMALL)

    # Act / Assert
    with pytest.raises(UsageError, match="needs the context series GBPUSD H4 bid"):
        build_all(desk, {"small": config})


def test_column_summary_counts_nulls_and_ranges(desk: Settings) -> None:
    # Arrange
    build = _build(desk, _config(**SMALL)).build
    frame = read_build(desk, build)

    # Act
    summary = column_summary(frame, build)

    # Assert
    rsi = summary.filter(pl.col("column") == "rsi_14").row(0, named=True)
    assert (rsi["role"], rsi["warmup"], rsi["nulls"]) == ("feature", 14, 14)
    assert 0.0 <= rsi["min"] <= rsi["max"] <= 100.0
    end = summary.filter(pl.col("column") == "label_end").row(0, named=True)
    assert end["min"] is None and end["nulls"] == 4


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

"""The feature build job: version, cache hit, checks that refuse a build, context and cross assets."""

from __future__ import annotations

import json
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
from feature_store.feature_index import FeatureBuild, FeatureStore, build_version
from feature_store.store import BarStore, SeriesInfo
from pipelines.features import BUILDERS
from pipelines.features.sets import FeatureSetConfig, parse_feature_sets
from pipelines.resample import resample_bars
from services.features import (
    FeatureBuildResult,
    build_all,
    build_feature_set,
    list_builds,
    show_build,
)

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


def _build(settings: Settings, config: FeatureSetConfig, name: str = "small") -> FeatureBuildResult:
    return build_feature_set(settings, name, config, "EURUSD", Timeframe.H1)


def _stored(settings: Settings, result: FeatureBuildResult) -> FeatureBuild:
    """Return the index entry of the build a result names."""
    key = SeriesKey(
        symbol=result.symbol, timeframe=Timeframe(result.timeframe), side=Side(result.side)
    )
    build = FeatureStore(settings.features_dir).find(result.feature_set, key, result.version)
    assert build is not None, result
    return build


@pytest.fixture
def desk(tmp_path: Path) -> Settings:
    return _desk(tmp_path)


def test_build_feature_set_new_build_stores_checked_table_marked_latest(desk: Settings) -> None:
    # Act
    result = _build(desk, _config(**SMALL))

    # Assert
    build = _stored(desk, result)
    assert not result.cache_hit
    store = BarStore(desk.store_dir)
    sources = {k.slug: store.info(k).version for k in (H1, H4)}  # type: ignore[union-attr]
    assert result.sources == build.sources == sources
    assert result.version == build_version(_config(**SMALL).definition_hash(), sources)
    assert result.file == f"set=small/symbol=EURUSD/timeframe=H1/side=bid/{result.version}.parquet"
    assert build.latest and result.rows == build.rows == 300
    assert result.features == build.features == 5
    assert result.expectations == "4/4 passed"
    assert build.validation["success"] and build.validation["evaluated"] == 4
    frame = FeatureStore(desk.features_dir).read(build)
    assert frame.columns == [
        "ts", "log_return_1", "rsi_14", "realized_vol_10", "h4_rsi_7", "h4_log_return_1",
        "label", "label_log_return", "label_end", "label_weight",
    ]  # fmt: skip
    assert result.labels == ("label", "label_log_return", "label_end", "label_weight")
    assert frame["ts"].equals(store.read(H1)["ts"])
    index = json.loads((desk.features_dir / "index.json").read_text())
    assert [b["version"] for b in index["builds"]] == [result.version]
    assert index["generation"] == 1


def test_build_feature_set_result_dump_is_the_json_line_without_warnings(desk: Settings) -> None:
    # Act
    result = _build(desk, _config(features=["rsi_7"]))
    dumped = result.model_dump(mode="json")

    # Assert
    assert "warnings" not in dumped
    assert dumped["first"] == "2024-01-02T09:00:00Z"
    assert dumped["labels"] == list(result.labels)
    with pytest.raises(ValueError, match="frozen"):
        result.rows = 0  # type: ignore[misc]


def test_build_feature_set_again_is_a_cache_hit_computing_nothing(
    desk: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    first = _build(desk, _config(**SMALL))
    index = desk.features_dir / "index.json"
    before = index.read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not compute")

    monkeypatch.setattr("services.features.compute_table", fail)

    # Act
    second = _build(desk, _config(**SMALL))

    # Assert
    assert second.cache_hit
    assert second.version == first.version
    assert index.read_bytes() == before


def test_build_feature_set_damaged_file_is_built_again(desk: Settings) -> None:
    # Arrange
    first = _build(desk, _config(**SMALL))
    (desk.features_dir / first.file).write_bytes(b"truncated")

    # Act
    second = _build(desk, _config(**SMALL))

    # Assert
    assert not second.cache_hit
    assert second.version == first.version
    features = FeatureStore(desk.features_dir)
    assert features.read(_stored(desk, second)).height == 300
    assert len(features.builds()) == 1


def test_build_feature_set_new_definition_or_source_is_a_new_latest_version(
    desk: Settings,
) -> None:
    # Arrange
    first = _build(desk, _config(**SMALL))
    changed = _config(**{**SMALL, "features": ["log_return_1", "rsi_7"]})

    # Act: a new definition, then a change to the H4 series only, then the first again.
    second = _build(desk, changed)
    h4 = BarStore(desk.store_dir).read(H4)
    _put(desk, H4, h4.with_columns(pl.col("volume") + 1.0), {"name": "edit"})
    third = _build(desk, changed)
    _put(desk, H4, h4, {"name": "undo"})
    back = _build(desk, changed)

    # Assert
    assert len({first.version, second.version, third.version}) == 3
    assert third.sources[H1.slug] == second.sources[H1.slug]
    assert third.sources[H4.slug] != second.sources[H4.slug]
    assert back.cache_hit and back.version == second.version
    features = FeatureStore(desk.features_dir)
    builds = features.builds()
    assert [(b.version, b.latest) for b in builds] == [
        (first.version, False),
        (second.version, True),
        (third.version, False),
    ]
    assert all(features.is_complete(build) for build in builds)


def test_list_builds_changed_source_marks_the_build_stale(desk: Settings) -> None:
    # Arrange
    built = _build(desk, _config(features=["rsi_7"]))
    h1 = BarStore(desk.store_dir).read(H1)

    # Act
    before = list_builds(desk)
    _put(desk, H1, h1.with_columns(pl.col("volume") + 1.0), {"name": "edit"})
    after = list_builds(desk, feature_set="small", symbol="eurusd", latest=True)

    # Assert
    assert [(r.version, r.cache) for r in before] == [(built.version, "fresh")]
    assert [(r.version, r.cache) for r in after] == [(built.version, "stale")]
    assert list_builds(desk, feature_set="other") == []


def test_build_feature_set_missing_context_series_names_it_and_the_command(
    tmp_path: Path,
) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")
    _put(settings, H1, _hourly(50, seed=1), {"name": "test"})

    # Act
    with pytest.raises(UsageError) as error:
        _build(settings, _config(**SMALL))

    # Assert
    assert "needs the context series EURUSD H4 bid" in str(error.value)
    assert "solodesk resample --symbol EURUSD --source H1 --side bid --timeframe H4" in str(
        error.value
    )
    assert not settings.features_dir.exists()


def test_build_feature_set_missing_cross_asset_names_it_and_the_command(desk: Settings) -> None:
    # Act
    with pytest.raises(UsageError) as error:
        _build(desk, _config(features=["rsi_14"], cross_assets=["USDJPY"]))

    # Assert
    assert "needs the cross-asset series USDJPY H1" in str(error.value)
    assert "solodesk ingest FILE --symbol USDJPY" in str(error.value)


def test_build_feature_set_own_symbol_as_cross_asset_raises_usage_error(desk: Settings) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="names EURUSD, the series' own symbol, as a cross asset"):
        _build(desk, _config(features=["rsi_14"], cross_assets=["eurusd"]))


def test_build_feature_set_unknown_series_raises_usage_error(desk: Settings) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"no stored series EURUSD D1 \(stored: EURUSD H1 bid"):
        build_feature_set(desk, "small", _config(**SMALL), "EURUSD", Timeframe.D1)


def test_build_feature_set_cross_asset_log_returns_joined_on_the_same_bars(
    desk: Settings,
) -> None:
    # Act
    result = _build(desk, _config(features=["log_return_1"], cross_assets=["gbpusd"]))

    # Assert
    frame = FeatureStore(desk.features_dir).read(_stored(desk, result))
    gbp = BarStore(desk.store_dir).read(GBP_H1)
    expected = gbp.select((pl.col("close") / pl.col("close").shift(1)).log())
    assert frame["gbpusd_log_return_1"].to_list() == pytest.approx(
        expected.to_series().to_list(), nan_ok=True
    )
    assert GBP_H1.slug in result.sources


def _refused(desk: Settings, config: FeatureSetConfig) -> str:
    with pytest.raises(SolodeskError) as error:
        _build(desk, config)
    assert not isinstance(error.value, UsageError)  # exit status 1, not 2
    assert FeatureStore(desk.features_dir).builds() == []
    assert not list(desk.features_dir.rglob("*.parquet"))
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
    assert "spike at 2024-01-04T01:00:00Z inf" in message


def test_build_feature_set_value_outside_documented_range_refused_with_report(
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
    report = Path(message.rsplit("report: ", 1)[1].strip())
    assert report.is_dir() and list(report.glob("validation-*.html"))


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
    assert "log_return_1 at 2024-01-06T13:00:00Z null" in message


def test_build_all_builds_every_series_leaving_out_context_not_longer(desk: Settings) -> None:
    # Arrange
    gbp = BarStore(desk.store_dir).read(GBP_H1)
    gbp_h4 = resample_bars(gbp, Timeframe.H1, Timeframe.H4, anchor=UTC, volume_kind=VolumeKind.TICK)
    _put(desk, GBP_H1.model_copy(update={"timeframe": Timeframe.H4}), gbp_h4, {"name": "test"})

    # Act
    outcome = build_all(desk, {"small": _config(**SMALL), "plain": _config(features=["rsi_7"])})

    # Assert
    built = sorted((b.feature_set, b.symbol, b.timeframe) for b in outcome.builds)
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
    assert outcome.skipped == ()
    on_h4 = next(b for b in outcome.builds if b.feature_set == "small" and b.timeframe == "H4")
    on_h1 = next(b for b in outcome.builds if b.feature_set == "small" and b.timeframe == "H1")
    assert not any(c["name"].startswith("h4_") for c in _stored(desk, on_h4).columns)
    assert any(c["name"].startswith("h4_") for c in _stored(desk, on_h1).columns)


def test_build_all_cross_asset_symbol_is_skipped_not_built(desk: Settings) -> None:
    # Arrange: EURUSD H4 reads GBPUSD H4 as its cross asset.
    gbp = BarStore(desk.store_dir).read(GBP_H1)
    gbp_h4 = resample_bars(gbp, Timeframe.H1, Timeframe.H4, anchor=UTC, volume_kind=VolumeKind.TICK)
    _put(desk, GBP_H1.model_copy(update={"timeframe": Timeframe.H4}), gbp_h4, {"name": "test"})

    # Act
    outcome = build_all(desk, {"small": _config(features=["rsi_7"], cross_assets=["GBPUSD"])})

    # Assert
    assert sorted((b.symbol, b.timeframe) for b in outcome.builds) == [
        ("EURUSD", "H1"),
        ("EURUSD", "H4"),
    ]
    assert outcome.skipped == (
        "small on GBPUSD H1 bid: the symbol is one of its cross assets",
        "small on GBPUSD H4 bid: the symbol is one of its cross assets",
    )


def test_build_all_missing_context_series_raises_usage_error(desk: Settings) -> None:
    # Arrange: GBPUSD H1 has no H4 beside it.
    config = _config(**SMALL)

    # Act / Assert
    with pytest.raises(UsageError, match="needs the context series GBPUSD H4 bid"):
        build_all(desk, {"small": config})


def test_build_all_empty_store_raises_usage_error(tmp_path: Path) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="no series stored yet"):
        build_all(Settings(home=tmp_path / "home"), {"small": _config(features=["rsi_7"])})


def test_show_build_summary_counts_nulls_and_ranges(desk: Settings) -> None:
    # Arrange
    _build(desk, _config(**SMALL))

    # Act
    view = show_build(desk, "small", "eurusd", Timeframe.H1, rows=2)

    # Assert
    rsi = view.summary.filter(pl.col("column") == "rsi_14").row(0, named=True)
    assert (rsi["role"], rsi["warmup"], rsi["nulls"]) == ("feature", 14, 14)
    assert 0.0 <= rsi["min"] <= rsi["max"] <= 100.0
    end = view.summary.filter(pl.col("column") == "label_end").row(0, named=True)
    assert end["min"] is None and end["nulls"] == 4
    assert view.tail.height == 2 and view.tail.columns[0] == "ts"


def test_show_build_unknown_column_or_missing_build_raises_usage_error(desk: Settings) -> None:
    # Arrange
    _build(desk, _config(features=["rsi_7"]))

    # Act / Assert
    with pytest.raises(UsageError, match="--columns: nope not in the build"):
        show_build(desk, "small", "EURUSD", Timeframe.H1, columns=["nope"])
    with pytest.raises(UsageError, match="solodesk features build --feature-set small"):
        show_build(desk, "small", "EURUSD", Timeframe.H4)

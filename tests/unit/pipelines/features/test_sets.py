"""Feature sets: parsing params.yaml, resolving specs, the definition hash, the computed table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from core.errors import UsageError
from core.timeframes import Timeframe
from core.types import VolumeKind
from pipelines.features import default_feature_set
from pipelines.features import sets as sets_module
from pipelines.features.sets import (
    FeatureSetConfig,
    SeriesFrame,
    feature_table,
    measured_warmup,
    parse_feature_sets,
)
from pipelines.labels import HorizonLabelConfig
from pipelines.resample import resample_bars

from ._bars import random_bars

REPO = Path(__file__).resolve().parents[4]


def _set(**fields: Any) -> FeatureSetConfig:
    return parse_feature_sets({"sets": {"s": fields}})["s"]


def _hash(**fields: Any) -> str:
    return _set(**fields).definition_hash()


def test_parse_feature_sets_project_params_default_set_resolves() -> None:
    # Arrange
    section = yaml.safe_load((REPO / "params.yaml").read_text())["features"]

    # Act
    resolved = parse_feature_sets(section)["default"].resolve()

    # Assert
    assert [s.name for s in resolved.specs] == [s.name for s in default_feature_set()]
    assert [(c.timeframe, c.prefix) for c in resolved.context] == [
        (Timeframe.H4, "h4_"),
        (Timeframe.D1, "d1_"),
    ]
    assert [s.name for s in resolved.context[0].specs] == ["rsi_14", "atr_rel_14", "log_return_1"]
    assert resolved.label is not None and resolved.label.kind == "triple_barrier"
    assert resolved.weights is True


def test_parse_feature_sets_entries_and_plain_cross_asset_symbols() -> None:
    # Arrange
    fields = {
        "features": ["rsi_14", {"kind": "rsi", "params": {"n": 21}},
                     {"kind": "rsi", "name": "my_rsi", "params": {"n": 14}}],
        "cross_assets": ["gbpusd", {"symbol": "USDJPY", "features": ["log_return_4"]}],
    }  # fmt: skip

    # Act
    resolved = _set(**fields).resolve()

    # Assert
    by_name = {s.name: s for s in resolved.specs}
    rsi_14 = next(s for s in default_feature_set() if s.name == "rsi_14")
    assert list(by_name) == ["rsi_14", "rsi_21", "my_rsi"]
    assert by_name["rsi_21"].warmup == 21 and by_name["rsi_21"].recursive
    assert (by_name["my_rsi"].warmup, by_name["my_rsi"].lookback) == (
        rsi_14.warmup,
        rsi_14.lookback,
    )
    assert (by_name["rsi_21"].lower, by_name["rsi_21"].upper) == (0.0, 100.0)
    assert [(c.symbol, c.prefix, [s.name for s in c.specs]) for c in resolved.cross_assets] == [
        ("GBPUSD", "gbpusd_", ["log_return_1"]),
        ("USDJPY", "usdjpy_", ["log_return_4"]),
    ]


@pytest.mark.parametrize(
    ("kind", "params", "warmup"),
    [
        ("rsi", {"n": 21}, 21),
        ("stochastic_d", {"n": 9, "d": 3}, 10),
        ("close_to_ema", {"n": 30}, 29),
        ("log_return", {"horizon": 3}, 3),
    ],
)
def test_measured_warmup_matches_the_documented_formula(
    kind: str, params: dict[str, int], warmup: int
) -> None:
    # Act / Assert
    assert measured_warmup(kind, params) == warmup


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"sets": {"s": {"features": ["rsi_15"]}}}, "unknown feature 'rsi_15': did you mean"),
        ({"sets": {"s": {"features": [{"kind": "rsx"}]}}}, "unknown kind 'rsx'"),
        ({"sets": {"s": {"features": [{"kind": "rsi", "params": {"m": 3}}]}}},
         "kind rsi takes parameters ['n'], got ['m']"),
        ({"sets": {"s": {"features": [{"kind": "rsi", "params": {"n": 2.5}}]}}},
         "parameter n = 2.5 must be a whole number >= 1"),
        ({"sets": {"s": {"features": [{"kind": "rsi", "params": {"n": 0}}]}}},
         "parameter n = 0 must be a whole number >= 1"),
        ({"sets": {"s": {"features": [{"kind": "rsi", "params": {"n": 14}, "colour": 1}]}}},
         "colour: Extra inputs are not permitted"),
        ({"sets": {"s": {"features": "all"}}}, "expected 'default' or a list"),
        ({"sets": {"s": {"context": [{"timeframe": "H3", "features": ["rsi_14"]}]}}},
         "features.sets.s.context.0.timeframe: unknown timeframe 'H3'"),
        ({"sets": {"s": {"context": [{"timeframe": "H4", "features": ["rsi_14"]},
                                     {"timeframe": "240", "features": ["rsi_7"]}]}}},
         "context names a timeframe twice"),
        ({"sets": {"s": {"weights": True}}}, "weights: true needs a label"),
        ({"sets": {"s": {"label": {"kind": "triple_barrier", "pt": -1, "sl": 1,
                                   "max_holding": 3, "vol_span": 5}}}},
         "label.triple_barrier.pt: Input should be greater than 0"),
        ({"sets": {"s": {"colour": "red"}}}, "features.sets.s.colour: Extra inputs"),
        ({"sets": {"s": {"features": ["rsi_14", "rsi_14"]}}}, "['rsi_14'] listed twice"),
        ({"sets": {"s": {"features": ["rsi_14"],
                         "context": [{"timeframe": "H4", "features": ["rsi_14"],
                                      "prefix": "d1_"}],
                         "cross_assets": [{"symbol": "GBPUSD", "prefix": "d1_"}]}}},
         "share a column prefix"),
        ({"sets": {"s": {"features": ["log_return_1"],
                         "cross_assets": [{"symbol": "GBPUSD", "prefix": ""}]}}},
         "['log_return_1'] used twice"),
        ({"sets": {"s": {"features": []}}}, "the set has no features"),
        ({"sets": {"Bad-Name": {}}}, "set names ['Bad-Name']"),
        ({"sets": {}}, "declare at least one feature set"),
        ([1, 2], "needs a 'features' section"),
    ],
)  # fmt: skip
def test_parse_feature_sets_bad_section_raises_usage_error_naming_the_key(
    section: object, message: str
) -> None:
    # Act / Assert
    with pytest.raises(UsageError) as error:
        parse_feature_sets(section, "my.yaml")
    assert str(error.value).startswith("my.yaml: ")
    assert message in str(error.value)


def test_definition_hash_same_definition_written_differently_is_equal() -> None:
    # Arrange: key order, 14 vs 14.0, the symbol's case and a plain symbol vs a mapping.
    first = yaml.safe_load(
        """
        features: [rsi_7, {kind: rsi, name: r, params: {n: 14}}]
        cross_assets: [gbpusd]
        label: {kind: horizon, horizon: 4}
        """
    )
    second = yaml.safe_load(
        """
        label: {horizon: 4, kind: horizon, threshold: 0.0}
        cross_assets: [{features: [log_return_1], symbol: GBPUSD}]
        features: [rsi_7, {params: {n: 14.0}, name: r, kind: rsi}]
        """
    )

    # Act / Assert
    assert _hash(**first) == _hash(**second) == _hash(**first)
    assert len(_hash(**first)) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"features": ["rsi_7", {"kind": "rsi", "name": "r", "params": {"n": 15}}]},
        {"features": [{"kind": "rsi", "name": "r", "params": {"n": 14}}, "rsi_7"]},
        {"context": [{"timeframe": "H4", "features": ["rsi_7"]}]},
        {"cross_assets": ["USDJPY"]},
        {"label": {"kind": "horizon", "horizon": 5}},
        {"weights": True},
    ],
)
def test_definition_hash_changes_with_the_definition(change: dict[str, Any]) -> None:
    # Arrange
    base = {
        "features": ["rsi_7", {"kind": "rsi", "name": "r", "params": {"n": 14}}],
        "label": {"kind": "horizon", "horizon": 4},
    }

    # Act / Assert
    assert _hash(**base) != _hash(**{**base, **change})


def test_definition_hash_changes_with_the_library_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    before = _hash(features=["rsi_14"])

    # Act
    monkeypatch.setattr(
        sets_module, "FEATURE_LIBRARY_VERSION", sets_module.FEATURE_LIBRARY_VERSION + 1
    )

    # Assert
    assert _hash(features=["rsi_14"]) != before


def _series(n: int, seed: int) -> tuple[SeriesFrame, SeriesFrame]:
    bars = random_bars(n, seed)
    m15 = resample_bars(
        bars, Timeframe.M1, Timeframe.M15, anchor=sets_module.UTC, volume_kind=VolumeKind.TICK
    )
    return (
        SeriesFrame(bars, Timeframe.M1, has_spread=True, volume_kind=VolumeKind.TICK),
        SeriesFrame(m15, Timeframe.M15, has_spread=True, volume_kind=VolumeKind.TICK),
    )


SMALL = {
    "features": ["log_return_1", "rsi_7", "relative_spread", "volume_ratio_20"],
    "context": [{"timeframe": "M15", "features": ["rsi_7", "log_return_1"]}],
    "label": {"kind": "horizon", "horizon": 3},
    "weights": True,
}


def test_feature_table_columns_rules_and_context_nulls() -> None:
    # Arrange
    series, m15 = _series(400, seed=3)

    # Act
    table = feature_table(_set(**SMALL).resolve(), series, {Timeframe.M15: m15})

    # Assert
    frame = table.frame
    assert frame.columns == [
        "ts", "log_return_1", "rsi_7", "relative_spread", "volume_ratio_20", "m15_rsi_7",
        "m15_log_return_1", "label", "label_log_return", "label_end", "label_weight",
    ]  # fmt: skip
    assert frame.height == series.bars.height
    columns = {c.name: c for c in table.columns}
    assert [c.role for c in table.columns].count("context") == 2
    for name in ("log_return_1", "rsi_7", "m15_rsi_7", "m15_log_return_1"):
        # Nulls exactly up to the first row that must hold a value, none after it.
        nulls = frame[name].is_null()
        assert nulls.sum() == columns[name].required_from, name
        assert not nulls.slice(columns[name].required_from).any(), name
    assert columns["m15_rsi_7"].required_from > columns["rsi_7"].required_from
    assert (columns["label"].lower, columns["label"].upper) == (-1.0, 1.0)
    assert columns["label"].required_from == frame.height


def test_feature_table_on_a_prefix_equals_the_full_table_point_in_time() -> None:
    # Arrange: cut the bars; the M15 bars are rebuilt from the cut bars, as a live feed would.
    series, m15 = _series(500, seed=11)
    resolved = _set(**{k: v for k, v in SMALL.items() if k not in ("label", "weights")}).resolve()
    full = feature_table(resolved, series, {Timeframe.M15: m15}).frame
    cut = 333

    # Act
    head = series.bars.head(cut + 1)
    head_m15 = resample_bars(
        head, Timeframe.M1, Timeframe.M15, anchor=sets_module.UTC, volume_kind=VolumeKind.TICK
    )
    truncated = feature_table(
        resolved,
        SeriesFrame(head, Timeframe.M1, has_spread=True, volume_kind=VolumeKind.TICK),
        {Timeframe.M15: SeriesFrame(head_m15, Timeframe.M15, has_spread=True,
                                    volume_kind=VolumeKind.TICK)},
    ).frame  # fmt: skip

    # Assert: the last M15 bar of the cut may still be forming, but a row only sees M15 bars
    # that had ended by its own end, so every row of the prefix is the same.
    assert head_m15.height < m15.bars.height
    assert truncated.equals(full.head(cut + 1))


def test_feature_table_context_not_longer_than_series_raises_usage_error() -> None:
    # Arrange
    series, _ = _series(50, seed=1)
    resolved = _set(features=["rsi_7"], context=[{"timeframe": "M1", "features": ["rsi_7"]}])

    # Act / Assert
    with pytest.raises(UsageError, match="context timeframe M1 is not longer"):
        feature_table(resolved.resolve(), series, {Timeframe.M1: series})


def test_feature_table_skips_spread_and_volume_features_the_series_lacks() -> None:
    # Arrange
    series, _ = _series(60, seed=2)
    plain = SeriesFrame(series.bars, Timeframe.M1, has_spread=False, volume_kind=VolumeKind.NONE)
    resolved = _set(features=SMALL["features"], label={"kind": "horizon", "horizon": 2}).resolve()

    # Act
    table = feature_table(resolved, plain)

    # Assert
    assert [c.name for c in table.columns] == [
        "log_return_1", "rsi_7", "label", "label_log_return", "label_end",
    ]  # fmt: skip
    assert isinstance(resolved.label, HorizonLabelConfig)
    assert table.frame.schema["label"] == pl.Int8


def test_resolved_set_for_a_timeframe_keeps_only_longer_context() -> None:
    # Arrange
    resolved = _set(
        features=["rsi_7"],
        context=[
            {"timeframe": "H4", "features": ["rsi_7"]},
            {"timeframe": "D1", "features": ["rsi_7"]},
        ],
    ).resolve()

    # Act
    kept = {tf: [c.timeframe for c in resolved.for_timeframe(tf).context] for tf in Timeframe}

    # Assert
    assert kept[Timeframe.H1] == [Timeframe.H4, Timeframe.D1]
    assert kept[Timeframe.H4] == [Timeframe.D1]
    assert kept[Timeframe.D1] == []
    assert resolved.for_timeframe(Timeframe.D1).specs == resolved.specs

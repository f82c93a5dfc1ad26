"""The feature registry: default set, skipping rules, errors."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from core.errors import UsageError
from core.types import VolumeKind
from pipelines.features import (
    BUILDERS,
    Family,
    FeatureSpec,
    compute_features,
    default_feature_set,
)

from ._bars import random_bars


def test_default_feature_set_covers_every_family_with_unique_names() -> None:
    # Arrange / Act
    specs = default_feature_set()

    # Assert
    names = [s.name for s in specs]
    assert len(specs) >= 60
    assert len(set(names)) == len(names)
    assert {s.family for s in specs} == set(Family)
    assert all(s.kind in BUILDERS for s in specs)


def test_default_feature_set_recursive_specs_are_the_smoothed_ones() -> None:
    # Arrange / Act
    recursive = {s.kind for s in default_feature_set() if s.recursive}

    # Assert
    assert recursive == {
        "atr_rel",
        "rsi",
        "macd_line_rel",
        "macd_signal_rel",
        "macd_histogram_rel",
        "close_to_ema",
        "close_to_sma_atr",
        "close_to_ema_atr",
        "plus_di",
        "minus_di",
        "adx",
    }
    assert all(s.lookback > s.warmup + 1 for s in default_feature_set() if s.recursive)


def test_feature_spec_is_frozen() -> None:
    # Arrange
    spec = default_feature_set()[0]

    # Act / Assert
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.warmup = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("has_spread", "volume_kind", "spread_cols", "volume_cols"),
    [
        (True, VolumeKind.TICK, 3, 4),
        (True, VolumeKind.REAL, 3, 4),
        (False, VolumeKind.M1_COUNT, 0, 0),
        (False, VolumeKind.NONE, 0, 0),
    ],
)
def test_compute_features_spread_and_volume_families_only_when_they_apply(
    has_spread: bool, volume_kind: VolumeKind, spread_cols: int, volume_cols: int
) -> None:
    # Arrange
    bars = random_bars(30, seed=1)
    specs = default_feature_set()

    # Act
    out = compute_features(bars, specs, has_spread=has_spread, volume_kind=volume_kind)

    # Assert
    assert out.columns[0] == "ts"
    assert sum(c.startswith("relative_spread") for c in out.columns) == spread_cols
    assert sum(c.startswith("volume_") for c in out.columns) == volume_cols
    assert all(dtype == pl.Float64 for dtype in out.schema.dtypes()[1:])
    assert out.height == bars.height


def test_compute_features_without_spread_column_does_not_need_it() -> None:
    # Arrange
    bars = random_bars(10, seed=2).drop("spread")

    # Act
    out = compute_features(
        bars, default_feature_set(), has_spread=False, volume_kind=VolumeKind.NONE
    )

    # Assert
    assert "relative_spread" not in out.columns


def test_compute_features_missing_spread_column_raises_usage_error() -> None:
    # Arrange
    bars = random_bars(10, seed=2).drop("spread")

    # Act / Assert
    with pytest.raises(UsageError, match="spread"):
        compute_features(bars, default_feature_set(), has_spread=True, volume_kind=VolumeKind.NONE)


def test_compute_features_unknown_kind_raises_usage_error() -> None:
    # Arrange
    spec = FeatureSpec("x", Family.TREND, "no_such_kind", (), 0, False, 0.0, 1)

    # Act / Assert
    with pytest.raises(UsageError, match="no_such_kind"):
        compute_features(
            random_bars(5, seed=0), [spec], has_spread=False, volume_kind=VolumeKind.NONE
        )


def test_compute_features_duplicate_names_raise_usage_error() -> None:
    # Arrange
    spec = default_feature_set()[0]

    # Act / Assert
    with pytest.raises(UsageError, match=spec.name):
        compute_features(
            random_bars(5, seed=0), [spec, spec], has_spread=False, volume_kind=VolumeKind.NONE
        )

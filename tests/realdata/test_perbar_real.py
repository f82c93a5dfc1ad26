"""Real bars: the per-bar feature engine gives the batch features bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.types import VolumeKind
from pipelines.features import BarFeatures, compute_features, default_feature_set

from .conftest import Desk

pytestmark = pytest.mark.realdata

# Past the deepest warm-up of the default set (close_to_sma_200) every value is present.
WARM = 200


def features_both_ways(
    bars: pl.DataFrame, *, has_spread: bool, volume_kind: VolumeKind
) -> tuple[np.ndarray, np.ndarray]:
    """Return the default set's values pushed bar by bar and computed in batch."""
    specs = default_feature_set()
    engine = BarFeatures(specs, has_spread=has_spread, volume_kind=volume_kind)
    got = engine.push_frame(bars)
    want = compute_features(bars, specs, has_spread=has_spread, volume_kind=volume_kind)
    assert tuple(want.columns[1:]) == engine.names
    return got, want.drop("ts").to_numpy()


def assert_same_bits(got: np.ndarray, want: np.ndarray) -> None:
    """Assert NaN exactly where the batch is null and the same float64 bits elsewhere."""
    missing = np.isnan(got)
    np.testing.assert_array_equal(missing, np.isnan(want))
    differ = got.view(np.int64) != want.view(np.int64)
    assert not (differ & ~missing).any(), np.argwhere(differ & ~missing)[:5]


def test_default_set_on_mt4_eurusd_h1_equals_batch_bit_for_bit(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange: the whole 2010-2018 series, its volume read as tick counts.
    desk = new_desk()
    bars = desk.bars(desk.ingest_one([data_file("mt4/EURUSD60.csv")]).key)

    # Act
    got, want = features_both_ways(bars, has_spread=False, volume_kind=VolumeKind.TICK)

    # Assert
    assert bars.height > 50_000
    assert got.shape[1] == 68
    assert_same_bits(got, want)
    assert not np.isnan(got[WARM:]).any()


def test_default_set_on_oanda_eurusd_h1_with_spread_equals_batch_bit_for_bit(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange: bid bars with the quoted spread; LEAN's sizes are 0, so volume is all zeros.
    desk = new_desk()
    stored = desk.ingest_one([data_file("lean/Data/forex/oanda/hour/eurusd.zip")])
    bars = desk.bars(stored.key).head(20_000)

    # Act
    got, want = features_both_ways(bars, has_spread=True, volume_kind=VolumeKind.TICK)

    # Assert
    assert bars["spread"].null_count() == 0
    assert got.shape == (20_000, 71)
    assert_same_bits(got, want)
    assert not np.isnan(got[WARM:]).any()


def test_default_set_on_mt4_gbpusd_m1_equals_batch_bit_for_bit(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange: 20k one-minute bars, with their flat minutes and weekend gap.
    desk = new_desk()
    stored = desk.ingest_one([data_file("mt4/GBPUSD1.csv.gz")])
    bars = desk.bars(stored.key).head(20_000)

    # Act
    got, want = features_both_ways(bars, has_spread=False, volume_kind=VolumeKind.TICK)

    # Assert
    flat = bars.filter(pl.col("high") == pl.col("low")).height
    assert flat > 100
    assert_same_bits(got, want)
    assert not np.isnan(got[WARM:]).any()

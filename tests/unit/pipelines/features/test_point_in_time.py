"""Point in time: a feature on bars cut at t equals the feature on all bars, rows <= t.

A deliberately leaky feature (the next bar's return) proves the check catches a leak.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.types import VolumeKind
from pipelines.features import Family, FeatureSpec, compute_features, default_feature_set

from ._bars import random_bars

SPECS = default_feature_set()
RANGE_0_100 = ("rsi_", "stochastic_", "adx_", "plus_di_", "minus_di_")
Features = Callable[[pl.DataFrame], pl.DataFrame]


def default_features(bars: pl.DataFrame) -> pl.DataFrame:
    return compute_features(bars, SPECS, has_spread=True, volume_kind=VolumeKind.TICK)


def leaky_features(bars: pl.DataFrame) -> pl.DataFrame:
    # Uses the next bar's close: unknown at the end of bar t.
    leak = (pl.col("close").shift(-1) / pl.col("close")).log()
    return bars.select(pl.col("ts"), leak.alias("next_log_return"))


def point_in_time_mismatches(features: Features, bars: pl.DataFrame, cut: int) -> list[str]:
    """Return the feature columns whose values on ``bars[: cut + 1]`` differ from the full run.

    Exact comparison: same values bit for bit and the same null mask.
    """
    full = features(bars).head(cut + 1)
    truncated = features(bars.head(cut + 1))
    assert truncated.columns == full.columns
    bad = []
    for name in full.columns:
        a, b = full[name], truncated[name]
        same_nulls = a.is_null().equals(b.is_null())
        same_values = a.equals(b, check_names=True, null_equal=True)
        if not (same_nulls and same_values):
            bad.append(name)
    return bad


@st.composite
def bars_and_cut(draw: st.DrawFn) -> tuple[pl.DataFrame, int]:
    n = draw(st.integers(1, 320))
    seed = draw(st.integers(0, 2**32 - 1))
    flat_share = draw(st.sampled_from([0.0, 0.1, 0.5]))
    bars = random_bars(n, seed, flat_share=flat_share, spread_null_share=0.1)
    return bars, draw(st.integers(0, n - 1))


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(bars_and_cut())
def test_default_features_truncated_at_random_cut_equal_full_run(
    case: tuple[pl.DataFrame, int],
) -> None:
    # Arrange
    bars, cut = case

    # Act
    bad = point_in_time_mismatches(default_features, bars, cut)

    # Assert
    assert bad == []


def test_leaky_feature_point_in_time_check_names_it() -> None:
    # Arrange
    bars = random_bars(50, seed=7)

    # Act
    bad = point_in_time_mismatches(leaky_features, bars, cut=30)

    # Assert
    assert bad == ["next_log_return"]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 200), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_leaky_feature_any_cut_before_last_bar_is_caught(
    n: int, seed: int, data: st.DataObject
) -> None:
    # Arrange
    bars = random_bars(n, seed)
    cut = data.draw(st.integers(0, n - 2))

    # Act
    bad = point_in_time_mismatches(leaky_features, bars, cut)

    # Assert
    assert bad == ["next_log_return"]


def _check_warmup_and_ranges(bars: pl.DataFrame) -> None:
    out = default_features(bars)
    for spec in SPECS:
        values = out[spec.name]
        expected_nulls = np.arange(len(values)) < spec.warmup
        assert np.array_equal(values.is_null().to_numpy(), expected_nulls), spec.name
        valid = values.drop_nulls()
        assert valid.is_finite().all(), spec.name
        if spec.name.startswith(RANGE_0_100):
            assert valid.is_between(0.0, 100.0).all(), spec.name
        if spec.name.startswith("kbar_close_position"):
            assert valid.is_between(0.0, 1.0).all(), spec.name
        if spec.family is Family.CALENDAR:
            assert valid.is_between(-1.0, 1.0).all(), spec.name


def test_default_features_clean_bars_nulls_exactly_warmup_and_finite() -> None:
    # Arrange
    bars = random_bars(400, seed=11)

    # Act / Assert: %b, like every feature, is finite after the warm-up.
    _check_warmup_and_ranges(bars)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), flat_share=st.sampled_from([0.0, 0.2, 0.9, 1.0]))
def test_default_features_random_bars_with_flat_bars_nulls_exactly_warmup_ranges_hold(
    seed: int, flat_share: float
) -> None:
    # Arrange: flat bars exercise every zero denominator (range, std, ATR, DI sum).
    bars = random_bars(260, seed, flat_share=flat_share)

    # Act / Assert
    _check_warmup_and_ranges(bars)


def test_default_features_tail_of_lookback_bars_within_tolerance() -> None:
    # Arrange
    bars = random_bars(3000, seed=3)
    full = default_features(bars).tail(1)

    # Act
    errors: dict[str, float] = {}
    for spec in SPECS:
        tail = compute_features(
            bars.tail(spec.lookback), [spec], has_spread=True, volume_kind=VolumeKind.TICK
        )
        a, b = full[spec.name][-1], tail[spec.name][-1]
        assert a is not None and b is not None, spec.name
        if abs(a - b) > spec.tolerance:
            errors[spec.name] = abs(a - b)

    # Assert
    assert errors == {}


def test_recursive_features_tail_shorter_than_lookback_differs() -> None:
    # Arrange: a recursive feature restarted from just past its warm-up misses its history,
    # proving the ``recursive`` flag describes something real.
    bars = random_bars(3000, seed=5)
    recursive: list[FeatureSpec] = [s for s in SPECS if s.recursive]
    full = default_features(bars).tail(1)

    # Act
    short = compute_features(
        bars.tail(max(s.warmup for s in recursive) + 1),
        recursive,
        has_spread=True,
        volume_kind=VolumeKind.TICK,
    )

    # Assert
    assert all(full[s.name][-1] != short[s.name][-1] for s in recursive)

"""Indicators of the built-in strategies: averages, crossings, channels, RSI, the cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UsageError
from models.strategies.indicators import (
    IndicatorCache,
    crossed_above,
    crossed_below,
    crossings,
    prior_max,
    prior_min,
    sma,
    wilder_rsi,
)

NAN = math.nan


def crossings_by_loop(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return the crossings bar by bar, as the written rule says (the reference of the tests).

    A crossing at i: first > second at i, not above at i - 1, and strictly below at some bar
    since the last NaN of either series.
    """
    out = np.zeros(first.shape[0], dtype=bool)
    below_since_nan = False
    above_before = False
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        if math.isnan(a) or math.isnan(b):
            below_since_nan = False
            above_before = False
            continue
        above = a > b
        out[i] = above and not above_before and below_since_nan and i > 0
        below_since_nan = below_since_nan or a < b
        above_before = above
    return out


def test_sma_full_windows_equal_plain_means() -> None:
    # Arrange
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])

    # Act
    result = sma(values, 2)

    # Assert
    np.testing.assert_array_equal(result, [NAN, 1.5, 2.5, 3.5, 4.5])


def test_sma_window_holding_nan_is_nan() -> None:
    # Arrange
    values = np.array([1.0, NAN, 3.0, 4.0, 5.0])

    # Act
    result = sma(values, 2)

    # Assert
    np.testing.assert_array_equal(result, [NAN, NAN, NAN, 3.5, 4.5])


def test_sma_series_shorter_than_window_all_nan() -> None:
    # Act
    result = sma(np.array([1.0, 2.0]), 3)

    # Assert
    assert result.shape == (2,)
    assert np.isnan(result).all()


def test_sma_running_sum_form_reproduces_its_rounding() -> None:
    # Arrange: a window reached after a long history differs in the last bits from a fresh
    # mean; the running-sum form is what vectorbt computes.
    values = np.array([0.1, 0.2, 0.3, 1e6, 0.7, 0.1, 0.2])
    running = np.cumsum(np.concatenate(([0.0], values)))
    expected = (running[3:] - running[:-3]) / 3.0

    # Act
    result = sma(values, 3)

    # Assert
    np.testing.assert_array_equal(result[2:], expected)


def test_sma_window_below_one_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="window 0"):
        sma(np.ones(3), 0)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        pytest.param([1, 3], [2, 2], [False, True], id="below-above"),
        pytest.param([1, 2, 3], [2, 2, 2], [False, False, True], id="below-equal-above"),
        pytest.param([3, 2, 3], [2, 2, 2], [False, False, False], id="never-below"),
        pytest.param([1, 3, 2, 3], [2, 2, 2, 2], [False, True, False, True], id="re-cross-tie"),
        pytest.param([1, NAN, 3], [2, 2, 2], [False, False, False], id="nan-resets"),
        pytest.param([NAN, 1, 3], [2, 2, 2], [False, False, True], id="warm-up"),
        pytest.param([1, 3, 4, 1, 3], [2] * 5, [False, True, False, False, True], id="twice"),
    ],
)
def test_crossed_above_hand_made_cases_match_the_rule(
    first: list[float], second: list[float], expected: list[bool]
) -> None:
    # Act
    result = crossed_above(np.array(first, dtype=float), np.array(second, dtype=float))

    # Assert
    assert result.tolist() == expected


def test_crossed_below_is_crossed_above_reversed() -> None:
    # Arrange
    first = np.array([3.0, 2.0, 1.0, 2.0, 1.0])
    second = np.full(5, 2.0)

    # Act
    result = crossed_below(first, second)

    # Assert
    assert result.tolist() == [False, False, True, False, True]


def test_crossed_above_lengths_differ_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="lengths 2 and 3"):
        crossed_above(np.ones(2), np.ones(3))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 1.0, 2.0, NAN]),
            st.sampled_from([0.0, 1.0, 2.0, NAN]),
        ),
        max_size=40,
    )
)
def test_crossed_above_random_series_equals_bar_by_bar_rule(
    pairs: list[tuple[float, float]],
) -> None:
    # Arrange: few distinct values, so ties and NaN runs are frequent
    first = np.array([p[0] for p in pairs], dtype=float)
    second = np.array([p[1] for p in pairs], dtype=float)

    # Act
    result = crossed_above(first, second)

    # Assert
    np.testing.assert_array_equal(result, crossings_by_loop(first, second))


def test_prior_max_excludes_current_bar() -> None:
    # Arrange
    values = np.array([1.0, 5.0, 2.0, 3.0, 9.0, 0.0])

    # Act
    result = prior_max(values, 2)

    # Assert
    np.testing.assert_array_equal(result, [NAN, NAN, 5.0, 5.0, 3.0, 9.0])


def test_prior_min_excludes_current_bar() -> None:
    # Arrange
    values = np.array([4.0, 1.0, 2.0, 3.0, 0.0, 5.0])

    # Act
    result = prior_min(values, 3)

    # Assert
    np.testing.assert_array_equal(result, [NAN, NAN, NAN, 1.0, 1.0, 0.0])


def test_wilder_rsi_hand_computed_values() -> None:
    # Arrange: moves +1 +1 -1 -1; window 2: G = 1, 0.5, 0.25 and L = 0, 0.5, 0.75
    close = np.array([1.0, 2.0, 3.0, 2.0, 1.0])

    # Act
    result = wilder_rsi(close, 2)

    # Assert
    np.testing.assert_array_equal(result, [NAN, NAN, 100.0, 50.0, 25.0])


def test_wilder_rsi_no_move_is_fifty() -> None:
    # Act
    result = wilder_rsi(np.ones(6), 3)

    # Assert
    np.testing.assert_array_equal(result[3:], [50.0, 50.0, 50.0])


def test_wilder_rsi_long_series_equals_recursive_definition() -> None:
    # Arrange
    rng = np.random.default_rng(7)
    close = 100.0 + np.cumsum(rng.normal(size=300))
    window = 14
    moves = np.diff(close)
    gain, loss = moves[:window].clip(min=0).mean(), (-moves[:window]).clip(min=0).mean()
    expected = [100.0 * gain / (gain + loss)]
    for move in moves[window:]:
        gain = (gain * (window - 1) + max(move, 0.0)) / window
        loss = (loss * (window - 1) + max(-move, 0.0)) / window
        expected.append(100.0 * gain / (gain + loss))

    # Act
    result = wilder_rsi(close, window)

    # Assert
    assert np.isnan(result[:window]).all()
    np.testing.assert_allclose(result[window:], expected, rtol=0, atol=1e-9)


def test_indicator_cache_computes_each_key_once() -> None:
    # Arrange
    cache = IndicatorCache()
    calls: list[int] = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.ones(4)

    # Act
    first = cache.get(("sma", 5), compute)
    second = cache.get(("sma", 5), compute)

    # Assert
    assert first is second
    assert len(calls) == 1
    assert cache.computed == 1


def test_indicator_cache_over_budget_drops_least_recently_used() -> None:
    # Arrange: room for two arrays of 10 float64
    cache = IndicatorCache(max_bytes=160)
    cache.get("a", lambda: np.zeros(10))
    cache.get("b", lambda: np.zeros(10))
    cache.get("a", lambda: np.zeros(10))

    # Act
    cache.get("c", lambda: np.zeros(10))

    # Assert
    assert "a" in cache
    assert "c" in cache
    assert "b" not in cache
    assert len(cache) == 2


def _crossed_above_by_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # The rule written with whole-array operations, to check the compiled one-pass version.
    n = a.shape[0]
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    missing = np.isnan(a) | np.isnan(b)
    above, below = a > b, a < b
    index = np.arange(n)
    last_below = np.maximum.accumulate(np.where(below, index, -1))
    last_missing = np.maximum.accumulate(np.where(missing, index, -1))
    out[1:] = above[1:] & ~above[:-1] & ~missing[:-1] & (last_below > last_missing)[:-1]
    return out


@pytest.mark.parametrize("seed", range(30))
def test_crossings_random_ties_and_nans_equal_array_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, 300).astype(float)
    b = rng.integers(0, 4, 300).astype(float)
    a[rng.random(300) < 0.05] = np.nan
    b[rng.random(300) < 0.05] = np.nan

    up, down = crossings(a, b)

    assert up.tolist() == _crossed_above_by_arrays(a, b).tolist()
    assert down.tolist() == _crossed_above_by_arrays(b, a).tolist()

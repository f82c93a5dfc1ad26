"""The compiled kernels: against plain NumPy, across restarts, and resumed from their state."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.features import kernels

RNG = np.random.default_rng(11)
PRICES = 1.1 + np.cumsum(RNG.normal(0.0, 1e-4, 3000))


def naive(x: np.ndarray, n: int, stat: str) -> np.ndarray:
    out = np.full(x.shape[0], np.nan)
    for i in range(n - 1, x.shape[0]):
        window = x[i - n + 1 : i + 1]
        if not np.isfinite(window).all():
            continue
        out[i] = {
            "sum": window.sum,
            "mean": window.mean,
            "std": lambda w=window: w.std(ddof=1),
        }[stat]()
    return out


def sliding(stat: str, x: np.ndarray, n: int) -> np.ndarray:
    kernel = getattr(kernels, f"rolling_{stat}")
    return kernel(x, n, *kernels.new_state(stat, n))


@pytest.mark.parametrize("stat", ["sum", "mean", "std"])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 20, 61])
def test_window_statistics_match_numpy_with_gaps(stat: str, n: int) -> None:
    if stat == "std" and n == 1:
        pytest.skip("a one-value sample has no standard deviation")
    x = PRICES.copy()
    x[[7, 500, 501, 1200]] = np.nan
    got = sliding(stat, x, n)
    want = naive(x, n, stat)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    scale = np.abs(want[finite]).max() if stat != "std" else want[finite].max()
    assert np.abs(got[finite] - want[finite]).max() <= 1e-12 * scale


def test_std_is_exactly_zero_on_equal_values_and_never_negative() -> None:
    x = np.concatenate((PRICES[:50], np.full(40, 1.23456789), PRICES[50:100]))
    got = sliding("std", x, 20)
    assert (got[50 + 19 : 90] == 0.0).all()
    assert got[70 - 1] == 0.0
    assert (got[~np.isnan(got)] >= 0.0).all()
    assert (got[90:109] > 0.0).all()


def test_ewm_recurrence_and_minimum_samples() -> None:
    x = np.array([np.nan, np.nan, 2.0, 4.0, np.nan, 8.0, 16.0])
    got = kernels.ewm(x, 0.5, 3, np.zeros(2))
    # y: 2, 3, (skip), 5.5, 10.75; valid from the third finite input.
    expected = [np.nan, np.nan, np.nan, np.nan, np.nan, 5.5, 10.75]
    assert np.array_equal(got, np.array(expected), equal_nan=True)


@pytest.mark.parametrize("stat", ["sum", "mean", "std", "ewm"])
def test_resuming_from_the_state_equals_one_run_bit_for_bit(stat: str) -> None:
    x = PRICES.copy()
    x[900] = np.nan
    if stat == "ewm":
        whole = kernels.ewm(x, 0.1, 14, np.zeros(2))
        state = np.zeros(2)
        parts = [
            kernels.ewm(np.ascontiguousarray(x[i : i + 1]), 0.1, 14, state)
            for i in range(x.shape[0])
        ]
    else:
        kernel = getattr(kernels, f"rolling_{stat}")
        whole = kernel(x, 20, *kernels.new_state(stat, 20))
        state, ring = kernels.new_state(stat, 20)
        parts = [
            kernel(np.ascontiguousarray(x[i : i + 7]), 20, state, ring)
            for i in range(0, x.shape[0], 7)
        ]
    assert np.array_equal(np.concatenate(parts), whole, equal_nan=True)


def test_divide_zero_denominator_and_missing_values() -> None:
    got = kernels.divide(np.array([1.0, 1.0, np.nan, 3.0]), np.array([4.0, 0.0, 1.0, np.nan]), 0.5)
    assert np.array_equal(got, np.array([0.25, 0.5, np.nan, np.nan]), equal_nan=True)


@pytest.mark.parametrize("stat", ["mean", "std"])
def test_a_spike_leaves_no_trace_once_it_left_the_window(stat: str) -> None:
    x = PRICES[:400].copy() * 0.77
    x[100] = 1965.0001  # a bad tick among prices near 0.85
    got = sliding(stat, x, 20)
    want = naive(x, 20, stat)
    after = slice(120, 400)
    assert np.abs(got[after] - want[after]).max() <= 1e-12 * np.abs(want[after]).max()


def test_sums_of_a_window_emptied_to_zeros_are_exactly_zero() -> None:
    squares = np.concatenate((RNG.normal(0.0, 1e-4, 300) ** 2, np.zeros(50)))
    assert (sliding("sum", squares, 20)[300 + 19 :] == 0.0).all()
    assert (sliding("mean", squares, 20)[300 + 19 :] == 0.0).all()
    level = np.concatenate((PRICES[:60], np.full(30, 0.1 + 0.2)))
    assert (sliding("mean", level, 20)[60 + 19 :] == 0.1 + 0.2).all()

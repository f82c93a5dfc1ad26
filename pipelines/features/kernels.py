"""Compiled kernels behind every stateful feature step: smoothing and sliding windows.

The batch computation and the bar-by-bar path call the very same compiled functions on the
same float64 inputs, so they agree bit for bit. Missing values are NaN on the way in and out
(:mod:`pipelines.features._common` turns them into nulls).

Smoothing (:func:`ewm`) carries its state (``[count, y]``) in a small array the caller owns:
the batch path starts from a fresh state and runs the whole column; the bar-by-bar path keeps
the array and runs one new value at a time. Both apply::

    y = x_0 at the first finite x,   then y = y + α·(x - y)

and output NaN until ``min_samples`` finite values have been seen; a NaN input outputs NaN
and leaves the state unchanged.

Sliding window statistics (:func:`rolling_sum`, :func:`rolling_mean`, :func:`rolling_std`)
carry their state the same way, plus a ring of the last ``n`` inputs (:func:`new_state`):
sums slide with Kahan compensation and are recomputed from the window every ``n`` rows and
when a leaving value cancels most of them; the standard deviation slides compensated sums of the deviations from
a reference near the window's mean, recentred and recomputed from the window every ``n``
rows and after a spike leaves. A window of ``n`` equal values has exactly their value as
mean and a standard deviation of exactly 0. A value thus
depends, in its last bits, on where the series started: a recomputation from the last bars
agrees to rounding (``FeatureSpec.tolerance``), a replay from the same first bar exactly.
A NaN input restarts the window; a window with a NaN gives NaN. ``rolling_std`` (ddof 1) is
exactly 0 on a window of equal values.

"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

Array = npt.NDArray[np.float64]

# Cached on disk, releasing the GIL (Polars runs expressions on several threads), and with
# NumPy's float semantics: a division by zero gives inf or NaN instead of raising.
_jit = njit(cache=True, nogil=True, error_model="numpy")


@_jit
def ewm(x: Array, alpha: float, min_samples: int, state: Array) -> Array:  # pragma: no cover
    """Smooth ``x`` by ``y = y + alpha·(x - y)`` from ``state`` (``[count, y]``), updated in place."""
    out = np.empty(x.shape[0])
    count = state[0]
    y = state[1]
    for i in range(x.shape[0]):
        v = x[i]
        if math.isnan(v):
            out[i] = np.nan
            continue
        y = v if count == 0.0 else y + alpha * (v - y)
        count += 1.0
        out[i] = y if count >= min_samples else np.nan
    state[0] = count
    state[1] = y
    return out


# State of the sliding kernels, a float64 array the caller owns: rows seen, length of the
# current run of finite values, then the kernel's own entries.
SUM_STATE = 6  # rows, run, equal run, previous value, sum, compensation
STD_STATE = 9  # rows, run, equal run, previous value, reference, Σd and Σd² with compensations

# A sliding sum is recomputed from its window every n rows, and when the value leaving it is
# this many times larger than what remains (10 of the 53 bits cancelled): after a spike
# leaves the window, or when the window empties to zeros, the rounding of the larger sums
# would otherwise linger in the smaller one.
CANCELLATION = float(2**10)


def new_state(kind: str, n: int) -> tuple[Array, Array]:
    """Return a fresh ``(state, ring)`` pair for sliding kernel ``kind`` over ``n`` values."""
    size = {"sum": SUM_STATE, "mean": SUM_STATE, "std": STD_STATE}[kind]
    return np.zeros(size), np.zeros(n)


@_jit
def _kahan(
    total: float, compensation: float, value: float
) -> tuple[float, float]:  # pragma: no cover
    y = value - compensation
    t = total + y
    return t, (t - total) - y


@_jit
def _window_sum(ring: Array, rows: int, n: int) -> tuple[float, float]:  # pragma: no cover
    """Kahan sum of the ring's ``n`` values, oldest first (the oldest sits at ``rows % n``)."""
    total = 0.0
    compensation = 0.0
    for j in range(n):
        total, compensation = _kahan(total, compensation, ring[(rows + j) % n])
    return total, compensation


@_jit
def _sliding_sum(
    x: Array, n: int, state: Array, ring: Array, mean: bool
) -> Array:  # pragma: no cover
    out = np.empty(x.shape[0])
    rows = int(state[0])
    run = int(state[1])
    equal_run = int(state[2])
    previous = state[3]
    total = state[4]
    compensation = state[5]
    for i in range(x.shape[0]):
        v = x[i]
        slot = rows % n
        leaving = ring[slot]
        ring[slot] = v
        rows += 1
        if not math.isfinite(v):
            run = 0
            equal_run = 0
            total = 0.0
            compensation = 0.0
            out[i] = np.nan
            continue
        equal_run = equal_run + 1 if run > 0 and v == previous else 1
        previous = v
        run += 1
        total, compensation = _kahan(total, compensation, v)
        if run > n:
            total, compensation = _kahan(total, compensation, -leaving)
            if rows % n == 0 or abs(leaving) > CANCELLATION * abs(total):
                total, compensation = _window_sum(ring, rows, n)
        if run < n:
            out[i] = np.nan
        elif equal_run >= n:
            # n equal values: their sum and mean, without rounding left by earlier windows.
            out[i] = v if mean else v * n
        else:
            out[i] = total / n if mean else total
    state[0] = rows
    state[1] = run
    state[2] = equal_run
    state[3] = previous
    state[4] = total
    state[5] = compensation
    return out


@_jit
def rolling_sum(x: Array, n: int, state: Array, ring: Array) -> Array:  # pragma: no cover
    """Sum of the last ``n`` values, slid with Kahan compensation; NaN until ``n`` finite in a row."""
    return _sliding_sum(x, n, state, ring, False)


@_jit
def rolling_mean(x: Array, n: int, state: Array, ring: Array) -> Array:  # pragma: no cover
    """Mean of the last ``n`` values: their sliding sum divided by ``n``."""
    return _sliding_sum(x, n, state, ring, True)


@_jit
def _window_in_order(ring: Array, rows: int, n: int) -> Array:  # pragma: no cover
    window = np.empty(n)
    for j in range(n):
        window[j] = ring[(rows + j) % n]
    return window


@_jit
def _deviation_sums(
    window: Array, ref: float
) -> tuple[float, float, float, float]:  # pragma: no cover
    s1 = 0.0
    c1 = 0.0
    s2 = 0.0
    c2 = 0.0
    for j in range(window.shape[0]):
        d = window[j] - ref
        s1, c1 = _kahan(s1, c1, d)
        s2, c2 = _kahan(s2, c2, d * d)
    return s1, c1, s2, c2


@_jit
def rolling_std(x: Array, n: int, state: Array, ring: Array) -> Array:  # pragma: no cover
    """Sample standard deviation (ddof 1) of the last ``n`` values; 0 when they are all equal.

    Slides Kahan sums of the deviations ``d = x - ref`` and of ``d²`` from a reference
    ``ref`` near the window's mean: ``var = (Σd² - (Σd)²/n) / (n - 1)``. Every ``n`` rows
    (counted from the first row), when the leaving ``d²`` dwarfs what remains of ``Σd²`` (a
    spike left the window), and when ``(Σd)²/n`` cancels most of ``Σd²`` (``ref`` far from
    the mean), ``ref`` moves to the window's mean
    and both sums are recomputed from the window: rounding errors never build up over more
    than ``n`` steps.
    """
    out = np.empty(x.shape[0])
    rows = int(state[0])
    run = int(state[1])
    equal_run = int(state[2])
    previous = state[3]
    ref = state[4]
    s1 = state[5]
    c1 = state[6]
    s2 = state[7]
    c2 = state[8]
    for i in range(x.shape[0]):
        v = x[i]
        slot = rows % n
        leaving = ring[slot]
        ring[slot] = v
        rows += 1
        if not math.isfinite(v):
            run = 0
            equal_run = 0
            s1 = c1 = s2 = c2 = 0.0
            out[i] = np.nan
            continue
        equal_run = equal_run + 1 if run > 0 and v == previous else 1
        previous = v
        run += 1
        if run == 1:
            ref = v
        d = v - ref
        s1, c1 = _kahan(s1, c1, d)
        s2, c2 = _kahan(s2, c2, d * d)
        if run > n:
            e = leaving - ref
            s1, c1 = _kahan(s1, c1, -e)
            s2, c2 = _kahan(s2, c2, -(e * e))
            spike_left = e * e > CANCELLATION * abs(s2)
            cancelled = s2 - s1 * s1 / n < s2 / CANCELLATION and equal_run < n
            if rows % n == 0 or spike_left or cancelled:
                window = _window_in_order(ring, rows, n)
                total, _ = _window_sum(ring, rows, n)
                ref = total / n
                s1, c1, s2, c2 = _deviation_sums(window, ref)
        if run < n:
            out[i] = np.nan
        elif equal_run >= n:
            out[i] = 0.0
        else:
            out[i] = math.sqrt(max(s2 - s1 * s1 / n, 0.0) / (n - 1))
    state[0] = rows
    state[1] = run
    state[2] = equal_run
    state[3] = previous
    state[4] = ref
    state[5] = s1
    state[6] = c1
    state[7] = s2
    state[8] = c2
    return out


@_jit
def divide(num: Array, den: Array, when_zero: float) -> Array:  # pragma: no cover
    """``num / den``, ``when_zero`` where ``den`` is 0, NaN where either is NaN."""
    out = np.empty(num.shape[0])
    for i in range(num.shape[0]):
        a = num[i]
        b = den[i]
        if math.isnan(a) or math.isnan(b):
            out[i] = np.nan
        elif b == 0.0:
            out[i] = when_zero
        else:
            out[i] = a / b
    return out


@_jit
def share(a: Array, b: Array, when_zero: float) -> Array:  # pragma: no cover
    """``a / (a + b)``, ``when_zero`` where ``a + b`` is 0, NaN where either is NaN."""
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        total = a[i] + b[i]
        if math.isnan(total):
            out[i] = np.nan
        elif total == 0.0:
            out[i] = when_zero
        else:
            out[i] = a[i] / total
    return out


@_jit
def position(x: Array, low: Array, high: Array, when_flat: float) -> Array:  # pragma: no cover
    """``(x - low) / (high - low)``, ``when_flat`` where ``high == low``, NaN where any is NaN."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        span = high[i] - low[i]
        above = x[i] - low[i]
        if math.isnan(span) or math.isnan(above):
            out[i] = np.nan
        elif span == 0.0:
            out[i] = when_flat
        else:
            out[i] = above / span
    return out


@_jit
def directional_index(plus: Array, minus: Array, true_range: Array) -> Array:  # pragma: no cover
    """DX = 100·|+DI - -DI| / (+DI + -DI) from smoothed +DM, -DM and TR; 0 where undefined.

    ``±DI = 100·smoothed ±DM / smoothed TR`` (0 when TR is 0); DX is 0 when ``+DI + -DI`` is 0.
    """
    out = np.empty(plus.shape[0])
    for i in range(plus.shape[0]):
        p = plus[i]
        m = minus[i]
        t = true_range[i]
        if math.isnan(p) or math.isnan(m) or math.isnan(t):
            out[i] = np.nan
            continue
        pdi = 100.0 * (p / t) if t != 0.0 else 0.0
        mdi = 100.0 * (m / t) if t != 0.0 else 0.0
        total = pdi + mdi
        out[i] = 100.0 * (abs(pdi - mdi) / total) if total != 0.0 else 0.0
    return out

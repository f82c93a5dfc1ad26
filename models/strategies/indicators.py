"""Indicators the built-in strategies compute for themselves, point in time, on NumPy arrays.

Every function here returns, at bar i, a value computed from bars 0..i only, so its result on
``x[:k]`` equals the first k values of its result on ``x``. Warm-up bars are NaN.

The simple moving average and the crossing detectors reproduce vectorbt 1.2.0 bit for bit
(``MA.run`` with ``ewm=False`` and ``crossed_above``): on flat one-minute FX stretches two
averages are often exactly equal, and the way equality and rounding are treated decides whether
a crossing happens at all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numba import njit

from core.errors import UsageError

DEFAULT_CACHE_BYTES = 256 * 2**20


def as_float_array(values: np.ndarray | pl.Series, what: str = "values") -> np.ndarray:
    """Return ``values`` as a contiguous one-dimensional float64 array (nulls become NaN).

    Raises
    ------
    UsageError
        If ``values`` is not one-dimensional.
    """
    if isinstance(values, pl.Series):
        values = values.cast(pl.Float64).to_numpy()
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise UsageError(f"{what}: expected a one-dimensional series, got shape {array.shape}")
    return array


def sma(values: np.ndarray, window: int) -> np.ndarray:
    """Return the simple moving average: mean of the last ``window`` values.

    sma[i] = (S[i] - S[i - window]) / window with S[i] = x[0] + ... + x[i] accumulated left to
    right (S[-1] = 0), the running-sum form vectorbt's ``rolling_mean_1d_nb`` uses, so the
    results are the same floating-point numbers. sma[i] is NaN for i < window - 1 and wherever
    the window holds a NaN.

    Parameters
    ----------
    values
        One-dimensional prices.
    window
        Number of values averaged, at least 1.

    Raises
    ------
    UsageError
        If ``window`` is below 1.
    """
    if window < 1:
        raise UsageError(f"moving-average window {window}: must be at least 1")
    x = as_float_array(values)
    n = x.shape[0]
    out = np.full(n, np.nan)
    if n < window:
        return out
    missing = np.isnan(x)
    # S[-1] = 0 in front, so that S[i] - S[i - window] also covers i = window - 1; adding the
    # leading 0.0 first matches the loop that starts its sum at 0.
    running = np.cumsum(np.concatenate(([0.0], np.where(missing, 0.0, x))))
    out[window - 1 :] = (running[window:] - running[: n - window + 1]) / float(window)
    if missing.any():
        counts = np.concatenate(([0], np.cumsum(missing)))
        holes = (counts[window:] - counts[: n - window + 1]) > 0
        out[window - 1 :][holes] = np.nan
    return out


@njit(cache=True, nogil=True)
def _crossings(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    # One pass for both directions. For "above": crossed[i] = a[i] > b[i], bar i-1 neither
    # above nor missing, and a bar strictly below since the last missing one (up to i-1);
    # "below" is the same with a and b swapped.
    n = a.shape[0]
    up = np.zeros(n, dtype=np.bool_)
    down = np.zeros(n, dtype=np.bool_)
    last_missing = -1
    last_below = -1
    last_above = -1
    prev_above = False
    prev_below = False
    prev_missing = True
    for i in range(n):
        x = a[i]
        y = b[i]
        missing = np.isnan(x) or np.isnan(y)
        above = x > y
        below = x < y
        if i > 0:
            up[i] = above and not prev_above and not prev_missing and last_below > last_missing
            down[i] = below and not prev_below and not prev_missing and last_above > last_missing
        if missing:
            last_missing = i
        if below:
            last_below = i
        if above:
            last_above = i
        prev_above = above
        prev_below = below
        prev_missing = missing
    return up, down


def crossings(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(crossed_above(first, second), crossed_below(first, second))`` in one pass.

    Raises
    ------
    UsageError
        If the two arrays differ in length.
    """
    a = as_float_array(first, "first")
    b = as_float_array(second, "second")
    if a.shape != b.shape:
        raise UsageError(f"crossing of series of lengths {a.shape[0]} and {b.shape[0]}")
    up, down = _crossings(np.ascontiguousarray(a), np.ascontiguousarray(b))
    return np.asarray(up), np.asarray(down)


def crossed_above(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return where ``first`` crosses above ``second``, with vectorbt's semantics.

    crossed[i] is True when first[i] > second[i], the bar before was not above (first[i-1] <=
    second[i-1]) and, since the last bar where either value was NaN, first was strictly below
    second at some bar before i. Hence below → equal → above is a crossing, above → equal →
    above is one too once first has been below since the last NaN, and NaN → above or
    NaN → equal → above is not. This equals vectorbt's ``crossed_above_1d_nb`` with ``wait=0``.

    Raises
    ------
    UsageError
        If the two arrays differ in length.
    """
    return crossings(first, second)[0]


def crossed_below(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return where ``first`` crosses below ``second``: ``crossed_above(second, first)``."""
    return crossings(first, second)[1]


def prior_max(values: np.ndarray, window: int) -> np.ndarray:
    """Return the highest of the ``window`` values before each bar, the bar itself excluded.

    out[i] = max(x[i - window], ..., x[i - 1]); NaN for i < window.

    Raises
    ------
    UsageError
        If ``window`` is below 1.
    """
    return _prior_extreme(values, window, highest=True)


def prior_min(values: np.ndarray, window: int) -> np.ndarray:
    """Return the lowest of the ``window`` values before each bar, the bar itself excluded.

    out[i] = min(x[i - window], ..., x[i - 1]); NaN for i < window.

    Raises
    ------
    UsageError
        If ``window`` is below 1.
    """
    return _prior_extreme(values, window, highest=False)


def _prior_extreme(values: np.ndarray, window: int, *, highest: bool) -> np.ndarray:
    if window < 1:
        raise UsageError(f"channel window {window}: must be at least 1")
    series = pl.Series(as_float_array(values))
    rolled = series.rolling_max(window) if highest else series.rolling_min(window)
    return as_float_array(rolled.shift(1))


def wilder_rsi(close: np.ndarray, window: int) -> np.ndarray:
    """Return Wilder's relative strength index, 0 to 100.

    With d[i] = c[i] - c[i-1], G and L are Wilder averages of max(d, 0) and max(-d, 0):
    G[window] = mean(gain[1..window]), then G[i] = G[i-1] + (gain[i] - G[i-1]) / window
    (an exponential average with alpha = 1/window), and likewise L.
    RSI = 100 · G / (G + L), which is 100 - 100 / (1 + G/L); 50 where G + L = 0 (no move).
    NaN for i < window.

    Raises
    ------
    UsageError
        If ``window`` is below 1.
    """
    if window < 1:
        raise UsageError(f"RSI window {window}: must be at least 1")
    c = as_float_array(close, "close")
    n = c.shape[0]
    out = np.full(n, np.nan)
    if n <= window:
        return out
    delta = np.diff(c)
    gains = np.maximum(delta, 0.0)
    losses = np.maximum(-delta, 0.0)
    avg_gain = _wilder_average(gains, window)
    avg_loss = _wilder_average(losses, window)
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(total > 0.0, 100.0 * avg_gain / np.where(total > 0.0, total, 1.0), 50.0)
    out[window:] = rsi
    return out


def _wilder_average(moves: np.ndarray, window: int) -> np.ndarray:
    # moves[k] is the move into bar k + 1; the average is defined from moves[window - 1] on.
    seeded = np.concatenate(([moves[:window].mean()], moves[window:]))
    alpha = 1.0 / window
    smoothed = pl.Series(seeded).ewm_mean(alpha=alpha, adjust=False)
    return as_float_array(smoothed)


class IndicatorCache:
    """Indicator arrays of one series by key, each computed once while it stays cached.

    A sweep asks for the same moving average or channel for many parameter combinations; the
    cache keeps the most recently used arrays up to ``max_bytes`` and drops the least recently
    used beyond that (one-minute series are long: 500 windows of 370,000 bars take 1.5 GB).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._arrays: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.computed = 0

    def get(self, key: Hashable, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Return the array cached under ``key``, computing and caching it when absent."""
        if key in self._arrays:
            self._arrays.move_to_end(key)
            return self._arrays[key]
        array = compute()
        self.computed += 1
        self._arrays[key] = array
        self._bytes += array.nbytes
        while self._bytes > self.max_bytes and len(self._arrays) > 1:
            _, dropped = self._arrays.popitem(last=False)
            self._bytes -= dropped.nbytes
        return array

    def __len__(self) -> int:
        return len(self._arrays)

    def __contains__(self, key: object) -> bool:
        return key in self._arrays


@dataclass
class SweepContext:
    """What a sweep reuses across the parameter combinations of one strategy on one series.

    ``columns`` holds the bar (or feature) columns as float64 arrays; ``cache`` the indicators
    computed from them so far.
    """

    columns: Mapping[str, np.ndarray]
    cache: IndicatorCache = field(default_factory=IndicatorCache)


def bar_columns(bars: pl.DataFrame, names: tuple[str, ...], strategy: str) -> dict[str, np.ndarray]:
    """Return the named columns of ``bars`` as float64 arrays.

    Raises
    ------
    UsageError
        If a column is missing, naming the strategy and the columns it reads.
    """
    missing = [name for name in names if name not in bars.columns]
    if missing:
        msg = (
            f"strategy {strategy} reads bar columns {', '.join(names)}; "
            f"missing: {', '.join(missing)}"
        )
        raise UsageError(msg)
    return {name: as_float_array(bars[name], name) for name in names}

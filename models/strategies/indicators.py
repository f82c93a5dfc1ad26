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


# ---------------------------------------------------------------------------------------------
# Running indicators: the same numbers, one batch of new values at a time
# ---------------------------------------------------------------------------------------------
#
# Each class below carries the state its batch function above keeps from bar to bar, so the
# concatenated results of ``update`` on consecutive batches equal the batch function on all
# the values so far, bit for bit. Work per value is constant (amortized for the channels). The
# one-value steps are numba functions that only this module's kernels call: numba's cache does
# not notice a change to a function of another module, so kernels using them stay here.


def batch_columns(
    bars: Mapping[str, np.ndarray], names: tuple[str, ...], strategy: str
) -> dict[str, np.ndarray]:
    """Return the named arrays of a batch of new bars as float64 arrays of one length.

    Raises
    ------
    UsageError
        If a column is missing (naming the strategy and the columns it reads), or the columns
        differ in length.
    """
    try:
        columns = {name: as_float_array(bars[name], name) for name in names}
    except KeyError:
        missing = [name for name in names if name not in bars]
        msg = (
            f"strategy {strategy} reads bar columns {', '.join(names)}; "
            f"missing from the new bars: {', '.join(missing)}"
        )
        raise UsageError(msg) from None
    if len(names) > 1 and len({array.shape[0] for array in columns.values()}) > 1:
        lengths = {name: array.shape[0] for name, array in columns.items()}
        raise UsageError(f"strategy {strategy}: new bar columns differ in length: {lengths}")
    return columns


@njit(cache=True, nogil=True, inline="always")
def _sma_step(
    value: float, window: int, sums: np.ndarray, counts: np.ndarray
) -> float:  # pragma: no cover
    # sums[:window] and counts[:window] are rings: slot j % window holds S[j - window] and the
    # NaNs before value j - window until S[j] overwrites it (S[0] = 0 starts in slot 0).
    # sums[window] = S, counts[window] = values seen, counts[window + 1] = NaNs seen. A NaN
    # adds 0.0, as the batch form's np.where does.
    seen = counts[window] + 1
    missing = counts[window + 1]
    total = sums[window]
    if np.isnan(value):
        missing += 1
        total = total + 0.0
    else:
        total = total + value
    slot = seen % window
    before_total = sums[slot]
    before_missing = counts[slot]
    sums[slot] = total
    counts[slot] = missing
    sums[window] = total
    counts[window] = seen
    counts[window + 1] = missing
    if seen >= window and missing == before_missing:
        return (total - before_total) / float(window)
    return np.nan


@njit(cache=True, nogil=True, inline="always")
def _crossing_step(x: float, y: float, marks: np.ndarray) -> tuple[bool, bool]:  # pragma: no cover
    # One bar of _crossings, its variables kept in marks = [bars seen, last missing, last
    # below, last above, previous above, previous below, previous missing] (flags as 0/1).
    i = marks[0]
    missing = np.isnan(x) or np.isnan(y)
    above = x > y
    below = x < y
    up = False
    down = False
    if i > 0:
        fresh = marks[6] == 0
        up = above and marks[4] == 0 and fresh and marks[2] > marks[1]
        down = below and marks[5] == 0 and fresh and marks[3] > marks[1]
    if missing:
        marks[1] = i
    if below:
        marks[2] = i
    if above:
        marks[3] = i
    marks[4] = 1 if above else 0
    marks[5] = 1 if below else 0
    marks[6] = 1 if missing else 0
    marks[0] = i + 1
    return up, down


@njit(cache=True, nogil=True, inline="always")
def _prior_extreme_step(
    value: float, window: int, highest: bool, ring: np.ndarray, values: np.ndarray
) -> float:  # pragma: no cover
    # A monotonic deque of the window's non-NaN values in size = window + 1 slots: ring[slot]
    # is a bar index, values[slot] its value; from the front on, indices increase and values
    # fall (rise for the lowest). ring[size:] = [bars seen, last NaN, front slot, length]. A
    # NaN among the window's values makes the channel NaN, as Polars' rolling max and min do.
    size = window + 1
    i = ring[size]
    last_nan = ring[size + 1]
    front = ring[size + 2]
    length = ring[size + 3]
    while length > 0 and ring[front] < i - window:
        front = front + 1 if front + 1 < size else 0
        length -= 1
    out = np.nan if i < window or last_nan >= i - window else values[front]
    if np.isnan(value):
        last_nan = i
        length = 0
    else:
        back = front + length if front + length < size else front + length - size
        while length > 0:
            last = back - 1 if back > 0 else size - 1
            if not (values[last] <= value if highest else values[last] >= value):
                break
            back = last
            length -= 1
        ring[back] = i
        values[back] = value
        length += 1
    ring[size] = i + 1
    ring[size + 1] = last_nan
    ring[size + 2] = front
    ring[size + 3] = length
    return out


@njit(cache=True, nogil=True, inline="always")
def _rsi_step(close: float, rate: float, state: np.ndarray) -> float:  # pragma: no cover
    # state = [previous close, average gain, average loss]. Gain and loss are np.maximum(d, 0)
    # and np.maximum(-d, 0); each average steps as Polars' ewm_mean (adjust=False) does:
    # mean + (x - mean) * rate, rate = alpha / ((1 - alpha) + alpha).
    move = close - state[0]
    up = move if (move >= 0.0 or np.isnan(move)) else 0.0
    fall = -move
    down = fall if (fall >= 0.0 or np.isnan(fall)) else 0.0
    gain = state[1] + (up - state[1]) * rate
    loss = state[2] + (down - state[2]) * rate
    state[0] = close
    state[1] = gain
    state[2] = loss
    total = gain + loss
    return 100.0 * gain / total if total > 0.0 else 50.0


@njit(cache=True, nogil=True)
def _running_sma(
    x: np.ndarray, window: int, sums: np.ndarray, counts: np.ndarray
) -> np.ndarray:  # pragma: no cover
    out = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        out[k] = _sma_step(x[k], window, sums, counts)
    return out


@njit(cache=True, nogil=True)
def _running_crossings(
    a: np.ndarray, b: np.ndarray, marks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    up = np.zeros(a.shape[0], dtype=np.bool_)
    down = np.zeros(a.shape[0], dtype=np.bool_)
    for k in range(a.shape[0]):
        up[k], down[k] = _crossing_step(a[k], b[k], marks)
    return up, down


@njit(cache=True, nogil=True)
def _running_sma_crossings(
    x: np.ndarray,
    fast: int,
    fast_sums: np.ndarray,
    fast_counts: np.ndarray,
    slow: int,
    slow_sums: np.ndarray,
    slow_counts: np.ndarray,
    marks: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    up = np.zeros(x.shape[0], dtype=np.bool_)
    down = np.zeros(x.shape[0], dtype=np.bool_)
    for k in range(x.shape[0]):
        first = _sma_step(x[k], fast, fast_sums, fast_counts)
        second = _sma_step(x[k], slow, slow_sums, slow_counts)
        up[k], down[k] = _crossing_step(first, second, marks)
    return up, down


@njit(cache=True, nogil=True)
def _running_prior_extreme(
    x: np.ndarray, window: int, highest: bool, ring: np.ndarray, values: np.ndarray
) -> np.ndarray:  # pragma: no cover
    out = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        out[k] = _prior_extreme_step(x[k], window, highest, ring, values)
    return out


@njit(cache=True, nogil=True)
def _running_breakouts(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    entry: int,
    exit_: int,
    both_sides: bool,
    rings: np.ndarray,
    values: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    # Channels by row: highest high over entry, lowest low over exit, then (both sides) the
    # lowest low over entry and the highest high over exit.
    n = close.shape[0]
    above_entry = np.zeros(n, dtype=np.bool_)
    below_exit = np.zeros(n, dtype=np.bool_)
    below_entry = np.zeros(n if both_sides else 0, dtype=np.bool_)
    above_exit = np.zeros(n if both_sides else 0, dtype=np.bool_)
    ring0, ring1, ring2, ring3 = rings[0], rings[1], rings[2], rings[3]
    values0, values1, values2, values3 = values[0], values[1], values[2], values[3]
    for k in range(n):
        c = close[k]
        above_entry[k] = c > _prior_extreme_step(high[k], entry, True, ring0, values0)
        below_exit[k] = c < _prior_extreme_step(low[k], exit_, False, ring1, values1)
        if both_sides:
            below_entry[k] = c < _prior_extreme_step(low[k], entry, False, ring2, values2)
            above_exit[k] = c > _prior_extreme_step(high[k], exit_, True, ring3, values3)
    return above_entry, below_exit, below_entry, above_exit


@njit(cache=True, nogil=True)
def _running_rsi(
    close: np.ndarray, start: int, rate: float, out: np.ndarray, state: np.ndarray
) -> None:  # pragma: no cover
    for k in range(start, close.shape[0]):
        out[k] = _rsi_step(close[k], rate, state)


def _sma_state(window: int) -> tuple[np.ndarray, np.ndarray]:
    if window < 1:
        raise UsageError(f"moving-average window {window}: must be at least 1")
    return np.zeros(window + 1), np.zeros(window + 2, dtype=np.int64)


def _channel_state(window: int) -> tuple[np.ndarray, np.ndarray]:
    if window < 1:
        raise UsageError(f"channel window {window}: must be at least 1")
    ring = np.zeros(window + 5, dtype=np.int64)
    ring[window + 2] = -1  # no NaN seen
    return ring, np.zeros(window + 1)


def _crossing_state() -> np.ndarray:
    # nothing seen; no missing, below or above bar yet; "previous bar missing" set
    return np.array([0, -1, -1, -1, 0, 0, 1], dtype=np.int64)


class RunningSma:
    """Simple moving average of a growing series: :func:`sma` one batch at a time.

    It carries the running sum S accumulated left to right from 0 and the last ``window``
    values of S, so each average is (S[i] - S[i - window]) / window, the same floating-point
    number :func:`sma` computes on all values so far.

    Raises
    ------
    UsageError
        If ``window`` is below 1.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._sums, self._counts = _sma_state(window)

    def update(self, values: np.ndarray) -> np.ndarray:
        """Return the averages at the new values (NaN in warm-up and where a NaN is in range)."""
        x = as_float_array(values)
        return np.asarray(_running_sma(x, self.window, self._sums, self._counts))


class RunningCrossings:
    """Crossings of two growing series: :func:`crossings` one batch at a time.

    It carries the detector's few variables (the last bars where the pair was missing, below
    and above, and the previous bar's relation), so the events equal those of
    :func:`crossings` on all values so far.
    """

    def __init__(self) -> None:
        self._marks = _crossing_state()

    def update(self, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(crossed_above, crossed_below)`` of ``first`` and ``second`` at new values.

        Raises
        ------
        UsageError
            If the two arrays differ in length.
        """
        a = as_float_array(first, "first")
        b = as_float_array(second, "second")
        if a.shape != b.shape:
            raise UsageError(f"crossing of series of lengths {a.shape[0]} and {b.shape[0]}")
        up, down = _running_crossings(a, b, self._marks)
        return np.asarray(up), np.asarray(down)


class RunningSmaCrossings:
    """Crossings of a fast and a slow simple moving average, one batch of values at a time.

    ``crossings(sma(x, fast), sma(x, slow))`` on all values so far, bit for bit: a
    :class:`RunningSma` for each window and a :class:`RunningCrossings`, fused into one pass.

    Raises
    ------
    UsageError
        If a window is below 1.
    """

    def __init__(self, fast: int, slow: int) -> None:
        self.fast = fast
        self.slow = slow
        self._fast = _sma_state(fast)
        self._slow = _sma_state(slow)
        self._marks = _crossing_state()

    def update(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(crossed_above, crossed_below)`` of the fast average at the new values."""
        up, down = _running_sma_crossings(
            as_float_array(values), self.fast, *self._fast, self.slow, *self._slow, self._marks
        )
        return np.asarray(up), np.asarray(down)


class RunningPriorExtreme:
    """Highest (or lowest) of the ``window`` values before each bar, one batch at a time.

    Equals :func:`prior_max` (``highest``) or :func:`prior_min` on all values so far: NaN for
    the first ``window`` bars and wherever a NaN is among the ``window`` values before. A
    monotonic deque makes the work per value constant, amortized.

    Raises
    ------
    UsageError
        If ``window`` is below 1.
    """

    def __init__(self, window: int, *, highest: bool) -> None:
        self.window = window
        self.highest = highest
        self._ring, self._values = _channel_state(window)

    def update(self, values: np.ndarray) -> np.ndarray:
        """Return the channel at the new values (the values themselves excluded)."""
        x = as_float_array(values)
        return np.asarray(
            _running_prior_extreme(x, self.window, self.highest, self._ring, self._values)
        )


class RunningBreakouts:
    """Closes beyond the Donchian channels of the bars before, one batch of bars at a time.

    :meth:`update` returns, on all bars so far and bit for bit as the batch functions give:
    ``close > prior_max(high, entry_window)``, ``close < prior_min(low, exit_window)`` and,
    with ``both_sides``, ``close < prior_min(low, entry_window)`` and
    ``close > prior_max(high, exit_window)`` (empty arrays without). Each channel is a
    :class:`RunningPriorExtreme`, fused into one pass.

    Raises
    ------
    UsageError
        If a window is below 1.
    """

    def __init__(self, entry_window: int, exit_window: int, *, both_sides: bool) -> None:
        self.entry_window = entry_window
        self.exit_window = exit_window
        self.both_sides = both_sides
        # rows: highest high over entry, lowest low over exit, lowest low over entry, highest
        # high over exit; each row holds its channel's ring and state from its start
        windows = (entry_window, exit_window, entry_window, exit_window)
        self._rings = np.zeros((4, max(windows) + 5), dtype=np.int64)
        self._values = np.zeros((4, max(windows) + 5))
        for row, window in enumerate(windows):
            ring, _ = _channel_state(window)
            self._rings[row, : ring.shape[0]] = ring

    def update(
        self, high: np.ndarray, low: np.ndarray, close: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return the four breakout arrays at the new bars (see the class).

        Raises
        ------
        UsageError
            If the three arrays differ in length.
        """
        h, lo, c = as_float_array(high, "high"), as_float_array(low, "low"), as_float_array(close)
        if not h.shape == lo.shape == c.shape:
            msg = f"high, low and close of lengths {h.shape[0]}, {lo.shape[0]}, {c.shape[0]}"
            raise UsageError(msg)
        result = _running_breakouts(
            h,
            lo,
            c,
            self.entry_window,
            self.exit_window,
            self.both_sides,
            self._rings,
            self._values,
        )
        return (
            np.asarray(result[0]),
            np.asarray(result[1]),
            np.asarray(result[2]),
            np.asarray(result[3]),
        )


class RunningWilderRsi:
    """Wilder's RSI of a growing close series: :func:`wilder_rsi` one batch at a time.

    It keeps the first ``window + 1`` closes until the averages can be seeded (their mean is
    taken with NumPy, as :func:`wilder_rsi` takes it), then carries the previous close and the
    two Wilder averages, stepping them with the arithmetic of Polars' ``ewm_mean``
    (``adjust=False``): ``mean + (x - mean) * (alpha / ((1 - alpha) + alpha))``.

    Raises
    ------
    UsageError
        If ``window`` is below 1.
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise UsageError(f"RSI window {window}: must be at least 1")
        self.window = window
        alpha = 1.0 / window
        self._rate = alpha / ((1.0 - alpha) + alpha)
        self._head: list[float] = []
        self._state = np.zeros(3)
        self._seeded = False

    def update(self, close: np.ndarray) -> np.ndarray:
        """Return the RSI at the new closes (NaN before bar ``window``)."""
        c = as_float_array(close, "close")
        out = np.full(c.shape[0], np.nan)
        start = 0 if self._seeded else self._seed(c, out)
        if start < c.shape[0]:
            _running_rsi(c, start, self._rate, out, self._state)
        return out

    def _seed(self, c: np.ndarray, out: np.ndarray) -> int:
        # Collect closes 0..window; at close ``window`` seed both averages and write its RSI.
        taken = min(self.window + 1 - len(self._head), c.shape[0])
        self._head.extend(c[:taken].tolist())
        if len(self._head) <= self.window:
            return taken
        head = np.array(self._head)
        delta = np.diff(head)
        gain = float(np.maximum(delta, 0.0)[: self.window].mean())
        loss = float(np.maximum(-delta, 0.0)[: self.window].mean())
        total = gain + loss
        out[taken - 1] = 100.0 * gain / total if total > 0.0 else 50.0
        self._state[:] = (head[-1], gain, loss)
        self._seeded = True
        self._head = []
        return taken

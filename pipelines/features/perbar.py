"""Features of one series computed bar by bar, equal bit for bit to the batch computation.

:class:`BarFeatures` compiles a feature set once into a plan of small steps, one per distinct
sub-expression of the batch expressions of :mod:`pipelines.features.registry` (``c / c₋₁``, a
log, an ATR, a sliding mean of the close...), each computed once per bar however many
features share it. A new bar runs the plan in plain Python float arithmetic, which is IEEE
double arithmetic like the batch path's, and performs exactly the operations of the batch
path in the same order, so that fed every bar from the series' first, each value equals what
:func:`~pipelines.features.registry.compute_features` gives for that bar, float64 bits and
all; a null there is NaN here.

What "the same operations" means, step by step:

- Elementwise arithmetic as Polars does it: ``x.pow(2)`` is ``x * x``; constants multiply
  (the family modules never divide by one); a division by zero gives ±inf or NaN; a log of 0
  gives -inf and of a negative number NaN; ``clip`` keeps a NaN and a ``-0.0``;
  ``max_horizontal`` / ``min_horizontal`` skip missing values. Logs, square roots, sines and
  cosines come from :mod:`math`, the same C library Polars calls (NumPy's vectorised versions
  may differ in the last bit).
- The smoothing and sliding-window kernels of :mod:`pipelines.features.kernels` (EWM, sliding
  sum / mean with Kahan compensation, sliding standard deviation with its recentring rules,
  divide, share, position, directional index) are replayed operation for operation, with
  the state those kernels carry between rows.
- Polars' own windows: ``rolling_min`` / ``rolling_max`` are exact (null while the window
  holds a null or is short); the weighted ``rolling_sum`` of ``log_close_slope`` adds
  ``value·weight`` from the oldest value to the newest, from 0.
- Calendar values come from the bar's open time in UTC (weekday 1 = Monday).

Missing inputs: a NaN volume or spread is a null one (the batch path turns nulls into NaN
before every kernel and back after). Prices are expected present; a NaN price propagates as a
null one would, except through ``log_close_slope``, whose Polars window refuses nulls (here
its value is NaN while the window holds one).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from core.errors import UsageError
from core.types import VolumeKind
from pipelines.features import calendar, volatility
from pipelines.features.kernels import CANCELLATION
from pipelines.features.registry import (
    BUILDERS,
    OHLC,
    FeatureSpec,
    checked_specs,
)

Floats = npt.NDArray[np.float64]
Values = list[float]
Step = Callable[[Values], None]

_NAN = math.nan
_INF = math.inf
_isfinite = math.isfinite
_log = math.log
_sqrt = math.sqrt

# Slots of the bar's inputs at the head of the plan's value list.
_OPEN, _HIGH, _LOW, _CLOSE, _VOLUME, _SPREAD, _WEEKDAY, _HOUR, _MINUTE = range(9)
_INPUTS = 9
_NS_PER_MINUTE = 60_000_000_000
_NS_PER_HOUR = 60 * _NS_PER_MINUTE
_NS_PER_DAY = 24 * _NS_PER_HOUR


def _quotient_by_zero(a: float) -> float:
    """Return ``a / 0.0`` as IEEE 754 gives it (Python raises instead)."""
    return _NAN if a == 0.0 or a != a else math.copysign(_INF, a)


def _ln(x: float) -> float:
    """Return ln(x) as Polars gives it: -inf at 0, NaN below (``math.log`` raises there)."""
    try:
        return _log(x)
    except ValueError:
        return -_INF if x == 0.0 else _NAN


def _root(x: float) -> float:
    """Return sqrt(x) as Polars gives it: NaN below 0."""
    try:
        return _sqrt(x)
    except ValueError:
        return _NAN


def _kahan_window(window: list[float]) -> tuple[float, float]:
    """Return the Kahan sum of ``window`` in order and its compensation, as the kernels add."""
    total = 0.0
    compensation = 0.0
    for value in window:
        y = value - compensation
        t = total + y
        compensation = (t - total) - y
        total = t
    return total, compensation


class _History:
    """The last values of one slot, and the step writing its shifted copies into their slots.

    The step runs where the first shift of the slot was added to the plan: after the slot's
    own step and before any step reading one of its shifts.
    """

    def __init__(self, source: int) -> None:
        self.source = source
        self.lags: list[tuple[int, int]] = []  # (k, slot of the value k bars ago)
        self.values: deque[float] = deque()

    def finish(self) -> None:
        self.values = deque(maxlen=max(k for k, _ in self.lags) + 1)

    def step(self, v: Values) -> None:
        values = self.values
        values.append(v[self.source])
        seen = len(values)
        for k, slot in self.lags:
            v[slot] = values[-1 - k] if seen > k else _NAN


class _Plan:
    """Steps computing every distinct sub-expression once per bar, in dependency order."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.slots: dict[Hashable, int] = {}
        self.size = _INPUTS
        self.histories: dict[int, _History] = {}
        self.calendar = False

    def node(self, key: Hashable, make: Callable[[int], Step]) -> int:
        """Return the slot of ``key``; when new, add the step ``make(slot)`` that fills it."""
        found = self.slots.get(key)
        if found is not None:
            return found
        out = self.size
        self.size += 1
        self.steps.append(make(out))
        self.slots[key] = out
        return out

    def finish(self) -> None:
        """Size the shift histories now that every shift is known."""
        for history in self.histories.values():
            history.finish()

    # Elementwise steps ------------------------------------------------------------------

    def sub(self, a: int, b: int) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                v[o] = v[a] - v[b]

            return step

        return self.node(("sub", a, b), make)

    def sub_const(self, a: int, k: float) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                v[o] = v[a] - k

            return step

        return self.node(("sub_const", a, k), make)

    def mul_const(self, k: float, a: int) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                v[o] = k * v[a]

            return step

        return self.node(("mul_const", k, a), make)

    def div(self, a: int, b: int) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                try:
                    v[o] = v[a] / v[b]
                except ZeroDivisionError:
                    v[o] = _quotient_by_zero(v[a])

            return step

        return self.node(("div", a, b), make)

    def square(self, a: int) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                x = v[a]
                v[o] = x * x

            return step

        return self.node(("square", a), make)

    def neg(self, a: int) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                v[o] = -v[a]

            return step

        return self.node(("neg", a), make)

    def abs(self, a: int) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                v[o] = abs(v[a])

            return step

        return self.node(("abs", a), make)

    def log(self, a: int) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                x = v[a]
                v[o] = _log(x) if x > 0.0 else _ln(x)

            return step

        return self.node(("log", a), make)

    def sqrt(self, a: int) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                x = v[a]
                v[o] = _sqrt(x) if x >= 0.0 else _root(x)

            return step

        return self.node(("sqrt", a), make)

    def clip(self, a: int, lower: float, upper: float) -> int:
        """Polars' ``clip``: NaN and a signed zero pass through."""

        def make(o: int) -> Step:
            def step(v: Values) -> None:
                x = v[a]
                v[o] = lower if x < lower else upper if x > upper else x

            return step

        return self.node(("clip", a, lower, upper), make)

    def extreme(self, a: int, b: int, *, largest: bool) -> int:
        """Polars' ``max_horizontal`` / ``min_horizontal`` of two slots: NaN (null) skipped."""

        def make(o: int) -> Step:
            def step(v: Values) -> None:
                x = v[a]
                y = v[b]
                if x != x:
                    v[o] = y
                elif y != y:
                    v[o] = x
                elif largest:
                    v[o] = y if y > x else x
                else:
                    v[o] = y if y < x else x

            return step

        return self.node(("extreme", a, b, largest), make)

    def shift(self, a: int, k: int) -> int:
        """Value of slot ``a`` ``k`` bars ago (NaN on the first ``k`` bars)."""
        if k == 0:
            return a
        key = ("shift", a, k)
        found = self.slots.get(key)
        if found is not None:
            return found
        history = self.histories.get(a)
        if history is None:
            history = self.histories[a] = _History(a)
            self.steps.append(history.step)
        out = self.slots[key] = self.size
        self.size += 1
        history.lags.append((k, out))
        return out

    def when_present(self, condition: int, a: int) -> int:
        """``pl.when(condition.is_not_null()).then(a)``."""

        def make(o: int) -> Step:
            def step(v: Values) -> None:
                v[o] = _NAN if v[condition] != v[condition] else v[a]

            return step

        return self.node(("when_present", condition, a), make)

    def directional_move(self, previous: int, move: int, other: int) -> int:
        """``when(previous present).then(when((move > other) & (move > 0)).then(move).otherwise(0))``."""

        def make(o: int) -> Step:
            def step(v: Values) -> None:
                if v[previous] != v[previous]:
                    v[o] = _NAN
                    return
                m = v[move]
                v[o] = m if m > v[other] and m > 0.0 else 0.0

            return step

        return self.node(("directional_move", previous, move, other), make)

    def true_range(self) -> int:
        """``max_horizontal(h - l, |h - c₋₁|, |l - c₋₁|)``."""
        previous = self.shift(_CLOSE, 1)
        span = self.sub(_HIGH, _LOW)
        up = self.abs(self.sub(_HIGH, previous))
        down = self.abs(self.sub(_LOW, previous))
        return self.extreme(self.extreme(span, up, largest=True), down, largest=True)

    # Kernel steps (pipelines.features.kernels) ------------------------------------------

    def divide(self, a: int, b: int, when_zero: float) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                x = v[a]
                y = v[b]
                if x != x or y != y:
                    v[o] = _NAN
                elif y == 0.0:
                    v[o] = when_zero
                else:
                    v[o] = x / y

            return step

        return self.node(("divide", a, b, when_zero), make)

    def share(self, a: int, b: int, when_zero: float) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                x = v[a]
                total = x + v[b]
                if total != total:
                    v[o] = _NAN
                elif total == 0.0:
                    v[o] = when_zero
                else:
                    v[o] = x / total

            return step

        return self.node(("share", a, b, when_zero), make)

    def position(self, x: int, low: int, high: int, when_flat: float) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                lo = v[low]
                span = v[high] - lo
                above = v[x] - lo
                if span != span or above != above:
                    v[o] = _NAN
                elif span == 0.0:
                    v[o] = when_flat
                else:
                    v[o] = above / span

            return step

        return self.node(("position", x, low, high, when_flat), make)

    def directional_index(self, plus: int, minus: int, true_range: int) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                p = v[plus]
                m = v[minus]
                t = v[true_range]
                if p != p or m != m or t != t:
                    v[o] = _NAN
                    return
                pdi = 100.0 * (p / t) if t != 0.0 else 0.0
                mdi = 100.0 * (m / t) if t != 0.0 else 0.0
                total = pdi + mdi
                v[o] = 100.0 * (abs(pdi - mdi) / total) if total != 0.0 else 0.0

            return step

        return self.node(("directional_index", plus, minus, true_range), make)

    def ewm(self, a: int, alpha: float, min_samples: int) -> int:
        """``kernels.ewm``: y = x₀ at the first non-NaN x, then y + α(x - y)."""

        def make(o: int) -> Step:
            count = 0
            y = 0.0

            def step(v: Values) -> None:
                nonlocal count, y
                x = v[a]
                if x != x:
                    v[o] = _NAN
                    return
                y = x if count == 0 else y + alpha * (x - y)
                count += 1
                v[o] = y if count >= min_samples else _NAN

            return step

        return self.node(("ewm", a, alpha, min_samples), make)

    def ema(self, a: int, span: int) -> int:
        return self.ewm(a, 2.0 / (span + 1), span)

    def wilder(self, a: int, n: int) -> int:
        return self.ewm(a, 1.0 / n, n)

    def rolling_mean(self, a: int, n: int) -> int:
        """``kernels.rolling_mean``: a Kahan sum slid over ``n`` values, divided by ``n``."""

        def make(o: int) -> Step:
            ring = [0.0] * n
            rows = 0
            run = 0
            equal_run = 0
            previous = 0.0
            total = 0.0
            compensation = 0.0

            def step(v: Values) -> None:
                nonlocal rows, run, equal_run, previous, total, compensation
                x = v[a]
                slot = rows % n
                leaving = ring[slot]
                ring[slot] = x
                rows += 1
                if not _isfinite(x):
                    run = 0
                    equal_run = 0
                    total = 0.0
                    compensation = 0.0
                    v[o] = _NAN
                    return
                equal_run = equal_run + 1 if run > 0 and x == previous else 1
                previous = x
                run += 1
                y = x - compensation
                t = total + y
                compensation = (t - total) - y
                total = t
                if run > n:
                    y = -leaving - compensation
                    t = total + y
                    compensation = (t - total) - y
                    total = t
                    if rows % n == 0 or abs(leaving) > CANCELLATION * abs(total):
                        start = rows % n
                        total, compensation = _kahan_window(ring[start:] + ring[:start])
                if run < n:
                    v[o] = _NAN
                elif equal_run >= n:
                    v[o] = x
                else:
                    v[o] = total / n

            return step

        return self.node(("rolling_mean", a, n), make)

    def rolling_std(self, a: int, n: int) -> int:
        """``kernels.rolling_std``: sliding sums of deviations from a reference, recentred."""

        def make(o: int) -> Step:
            ring = [0.0] * n
            rows = 0
            run = 0
            equal_run = 0
            previous = 0.0
            ref = 0.0
            s1 = c1 = s2 = c2 = 0.0

            def step(v: Values) -> None:
                nonlocal rows, run, equal_run, previous, ref, s1, c1, s2, c2
                x = v[a]
                slot = rows % n
                leaving = ring[slot]
                ring[slot] = x
                rows += 1
                if not _isfinite(x):
                    run = 0
                    equal_run = 0
                    s1 = c1 = s2 = c2 = 0.0
                    v[o] = _NAN
                    return
                equal_run = equal_run + 1 if run > 0 and x == previous else 1
                previous = x
                run += 1
                if run == 1:
                    ref = x
                d = x - ref
                y = d - c1
                t = s1 + y
                c1 = (t - s1) - y
                s1 = t
                y = d * d - c2
                t = s2 + y
                c2 = (t - s2) - y
                s2 = t
                if run > n:
                    e = leaving - ref
                    y = -e - c1
                    t = s1 + y
                    c1 = (t - s1) - y
                    s1 = t
                    y = -(e * e) - c2
                    t = s2 + y
                    c2 = (t - s2) - y
                    s2 = t
                    spike_left = e * e > CANCELLATION * abs(s2)
                    cancelled = s2 - s1 * s1 / n < s2 / CANCELLATION and equal_run < n
                    if rows % n == 0 or spike_left or cancelled:
                        start = rows % n
                        window = ring[start:] + ring[:start]
                        ref = _kahan_window(window)[0] / n
                        s1 = c1 = s2 = c2 = 0.0
                        for value in window:
                            d = value - ref
                            y = d - c1
                            t = s1 + y
                            c1 = (t - s1) - y
                            s1 = t
                            y = d * d - c2
                            t = s2 + y
                            c2 = (t - s2) - y
                            s2 = t
                if run < n:
                    v[o] = _NAN
                elif equal_run >= n:
                    v[o] = 0.0
                else:
                    v[o] = _sqrt(max(s2 - s1 * s1 / n, 0.0) / (n - 1))

            return step

        return self.node(("rolling_std", a, n), make)

    # Polars' own windows ----------------------------------------------------------------

    def rolling_extreme(self, a: int, n: int, *, largest: bool) -> int:
        """Polars' ``rolling_max`` / ``rolling_min`` over ``n`` values, null on short windows."""

        def make(o: int) -> Step:
            window: deque[tuple[int, float]] = deque()  # candidates, oldest first
            count = 0
            last_missing = -1

            def step(v: Values) -> None:
                nonlocal count, last_missing
                x = v[a]
                i = count
                count += 1
                if x != x:
                    last_missing = i
                    window.clear()
                    v[o] = _NAN
                    return
                if largest:
                    while window and window[-1][1] <= x:
                        window.pop()
                else:
                    while window and window[-1][1] >= x:
                        window.pop()
                window.append((i, x))
                if window[0][0] <= i - n:
                    window.popleft()
                v[o] = window[0][1] if i - last_missing >= n else _NAN

            return step

        return self.node(("rolling_extreme", a, n, largest), make)

    def rolling_dot(self, a: int, weights: tuple[float, ...]) -> int:
        """Polars' weighted ``rolling_sum``: Σ value·weight from the oldest value, from 0."""
        n = len(weights)

        def make(o: int) -> Step:
            window: deque[float] = deque(maxlen=n)
            count = 0
            last_missing = -1

            def step(v: Values) -> None:
                nonlocal count, last_missing
                x = v[a]
                if x != x:
                    last_missing = count
                window.append(x)
                count += 1
                if count - last_missing <= n:
                    v[o] = _NAN
                    return
                total = 0.0
                for value, weight in zip(window, weights, strict=True):
                    total += value * weight
                v[o] = total

            return step

        return self.node(("rolling_dot", a, weights), make)

    # Calendar ---------------------------------------------------------------------------

    def fractional_hour_angle(self) -> int:
        """``(hour + minute·(1/60))·(2π/24)`` of the bar's open time in UTC."""
        self.calendar = True
        per_minute = calendar.HOURS_PER_MINUTE
        per_hour = calendar.PER_HOUR

        def make(o: int) -> Step:
            def step(v: Values) -> None:
                v[o] = (v[_HOUR] + v[_MINUTE] * per_minute) * per_hour

            return step

        return self.node("hour_angle", make)

    def weekday_angle(self) -> int:
        """``(weekday - 1)·(2π/7)`` of the bar's open time in UTC, weekday 1 = Monday."""
        self.calendar = True
        per_day = calendar.PER_DAY

        def make(o: int) -> Step:
            def step(v: Values) -> None:
                v[o] = (v[_WEEKDAY] - 1.0) * per_day

            return step

        return self.node("weekday_angle", make)

    def trig(self, a: int, function: Callable[[float], float]) -> int:
        def make(o: int) -> Step:
            def step(v: Values) -> None:
                v[o] = function(v[a])

            return step

        return self.node(("trig", a, function.__name__), make)

    def session(self, name: str) -> int:
        self.calendar = True
        start, end = calendar.SESSIONS[name]
        first, stop = float(start), float(end)

        def make(o: int) -> Step:
            def step(v: Values) -> None:
                hour = v[_HOUR]
                v[o] = 1.0 if first <= hour < stop else 0.0

            return step

        return self.node(("session", name), make)


# Feature kinds: each builds, on the plan, the slots of the batch expression of its builder.


def _int(p: Mapping[str, float], key: str, least: int) -> int:
    value = int(p[key])
    if value < least:
        msg = f"parameter {key}={p[key]} must be at least {least}"
        raise ValueError(msg)
    return value


def _atr(plan: _Plan, n: int) -> int:
    return plan.wilder(plan.true_range(), n)


def _macd_line(plan: _Plan, fast: int, slow: int) -> int:
    return plan.sub(plan.ema(_CLOSE, fast), plan.ema(_CLOSE, slow))


def _log_ratio_squared(plan: _Plan, a: int, b: int) -> int:
    return plan.square(plan.log(plan.div(a, b)))


def _stochastic_k(plan: _Plan, n: int) -> int:
    lowest = plan.rolling_extreme(_LOW, n, largest=False)
    highest = plan.rolling_extreme(_HIGH, n, largest=True)
    return plan.mul_const(100.0, plan.position(_CLOSE, lowest, highest, 0.5))


def _directional(plan: _Plan, n: int) -> tuple[int, int, int]:
    """Wilder-smoothed +DM, -DM and true range (null on the first bar for all three)."""
    previous = plan.shift(_CLOSE, 1)
    up = plan.sub(_HIGH, plan.shift(_HIGH, 1))
    down = plan.sub(plan.shift(_LOW, 1), _LOW)
    plus_dm = plan.directional_move(previous, up, down)
    minus_dm = plan.directional_move(previous, down, up)
    tr = plan.wilder(plan.when_present(previous, plan.true_range()), n)
    return plan.wilder(plus_dm, n), plan.wilder(minus_dm, n), tr


def _realized_vol(plan: _Plan, p: Mapping[str, float]) -> int:
    returns = plan.log(plan.div(_CLOSE, plan.shift(_CLOSE, 1)))
    return plan.rolling_std(returns, _int(p, "window", 1))


def _parkinson_vol(plan: _Plan, p: Mapping[str, float]) -> int:
    mean = plan.rolling_mean(_log_ratio_squared(plan, _HIGH, _LOW), _int(p, "window", 1))
    clipped = plan.clip(mean, 0.0, _INF)
    return plan.sqrt(plan.mul_const(volatility.PARKINSON, clipped))


def _garman_klass_vol(plan: _Plan, p: Mapping[str, float]) -> int:
    term = plan.sub(
        plan.mul_const(0.5, _log_ratio_squared(plan, _HIGH, _LOW)),
        plan.mul_const(volatility.GK_CLOSE, _log_ratio_squared(plan, _CLOSE, _OPEN)),
    )
    mean = plan.rolling_mean(term, _int(p, "window", 1))
    return plan.sqrt(plan.clip(mean, 0.0, _INF))


def _rsi(plan: _Plan, p: Mapping[str, float]) -> int:
    n = _int(p, "n", 1)
    d = plan.sub(_CLOSE, plan.shift(_CLOSE, 1))
    gain = plan.wilder(plan.clip(d, 0.0, _INF), n)
    loss = plan.wilder(plan.clip(plan.neg(d), 0.0, _INF), n)
    return plan.mul_const(100.0, plan.share(gain, loss, 0.5))


def _macd_signal(plan: _Plan, p: Mapping[str, float]) -> int:
    line = _macd_line(plan, _int(p, "fast", 1), _int(p, "slow", 1))
    return plan.ema(line, _int(p, "signal", 1))


def _macd_histogram(plan: _Plan, p: Mapping[str, float]) -> int:
    line = _macd_line(plan, _int(p, "fast", 1), _int(p, "slow", 1))
    return plan.sub(line, plan.ema(line, _int(p, "signal", 1)))


def _stochastic_d(plan: _Plan, p: Mapping[str, float]) -> int:
    k = _stochastic_k(plan, _int(p, "n", 1))
    return plan.clip(plan.rolling_mean(k, _int(p, "d", 1)), 0.0, 100.0)


def _close_to_average_atr(plan: _Plan, average: int, p: Mapping[str, float]) -> int:
    return plan.divide(plan.sub(_CLOSE, average), _atr(plan, _int(p, "atr_n", 1)), 0.0)


def _log_close_slope(plan: _Plan, p: Mapping[str, float]) -> int:
    window = _int(p, "window", 2)
    mean_i = (window - 1) / 2.0
    sxx = sum((i - mean_i) ** 2 for i in range(window))
    weights = tuple((i - mean_i) / sxx for i in range(window))
    return plan.rolling_dot(plan.log(_CLOSE), weights)


def _zscore(plan: _Plan, a: int, window: int) -> int:
    deviation = plan.sub(a, plan.rolling_mean(a, window))
    return plan.divide(deviation, plan.rolling_std(a, window), 0.0)


def _bollinger_pct_b(plan: _Plan, p: Mapping[str, float]) -> int:
    window = _int(p, "window", 1)
    k = p["k"]
    mean = plan.rolling_mean(_CLOSE, window)
    std = plan.rolling_std(_CLOSE, window)
    lower = plan.sub(mean, plan.mul_const(k, std))
    return plan.divide(plan.sub(_CLOSE, lower), plan.mul_const(2.0 * k, std), 0.5)


def _kbar(plan: _Plan, value: int, p: Mapping[str, float]) -> int:
    return plan.shift(value, _int(p, "lag", 0))


def _upper_shadow(plan: _Plan) -> int:
    top = plan.extreme(_OPEN, _CLOSE, largest=True)
    return plan.div(plan.sub(_HIGH, top), _OPEN)


def _lower_shadow(plan: _Plan) -> int:
    bottom = plan.extreme(_OPEN, _CLOSE, largest=False)
    return plan.div(plan.sub(bottom, _LOW), _OPEN)


def _volume_ratio(plan: _Plan, p: Mapping[str, float]) -> int:
    mean = plan.rolling_mean(_VOLUME, _int(p, "window", 1))
    return plan.divide(_VOLUME, mean, 1.0)


Kind = Callable[[_Plan, Mapping[str, float]], int]

KINDS: dict[str, Kind] = {
    "log_return": lambda plan, p: plan.log(
        plan.div(_CLOSE, plan.shift(_CLOSE, _int(p, "horizon", 0)))
    ),
    "realized_vol": _realized_vol,
    "parkinson_vol": _parkinson_vol,
    "garman_klass_vol": _garman_klass_vol,
    "atr_rel": lambda plan, p: plan.div(_atr(plan, _int(p, "n", 1)), _CLOSE),
    "rsi": _rsi,
    "macd_line_rel": lambda plan, p: plan.div(
        _macd_line(plan, _int(p, "fast", 1), _int(p, "slow", 1)), _CLOSE
    ),
    "macd_signal_rel": lambda plan, p: plan.div(_macd_signal(plan, p), _CLOSE),
    "macd_histogram_rel": lambda plan, p: plan.div(_macd_histogram(plan, p), _CLOSE),
    "rate_of_change": lambda plan, p: plan.sub_const(
        plan.div(_CLOSE, plan.shift(_CLOSE, _int(p, "n", 0))), 1.0
    ),
    "stochastic_k": lambda plan, p: _stochastic_k(plan, _int(p, "n", 1)),
    "stochastic_d": _stochastic_d,
    "close_to_sma": lambda plan, p: plan.div(
        plan.sub(_CLOSE, plan.rolling_mean(_CLOSE, _int(p, "n", 1))), _CLOSE
    ),
    "close_to_ema": lambda plan, p: plan.div(
        plan.sub(_CLOSE, plan.ema(_CLOSE, _int(p, "n", 1))), _CLOSE
    ),
    "close_to_sma_atr": lambda plan, p: _close_to_average_atr(
        plan, plan.rolling_mean(_CLOSE, _int(p, "n", 1)), p
    ),
    "close_to_ema_atr": lambda plan, p: _close_to_average_atr(
        plan, plan.ema(_CLOSE, _int(p, "n", 1)), p
    ),
    "plus_di": lambda plan, p: plan.mul_const(
        100.0, plan.divide(*_directional(plan, _int(p, "n", 1))[::2], 0.0)
    ),
    "minus_di": lambda plan, p: plan.mul_const(
        100.0, plan.divide(*_directional(plan, _int(p, "n", 1))[1:], 0.0)
    ),
    "adx": lambda plan, p: plan.wilder(
        plan.directional_index(*_directional(plan, _int(p, "n", 1))), _int(p, "n", 1)
    ),
    "log_close_slope": _log_close_slope,
    "close_zscore": lambda plan, p: _zscore(plan, _CLOSE, _int(p, "window", 1)),
    "bollinger_pct_b": _bollinger_pct_b,
    "kbar_body": lambda plan, p: _kbar(plan, plan.div(plan.sub(_CLOSE, _OPEN), _OPEN), p),
    "kbar_upper_shadow": lambda plan, p: _kbar(plan, _upper_shadow(plan), p),
    "kbar_lower_shadow": lambda plan, p: _kbar(plan, _lower_shadow(plan), p),
    "kbar_close_position": lambda plan, p: _kbar(plan, plan.position(_CLOSE, _LOW, _HIGH, 0.5), p),
    "hour_sin": lambda plan, p: plan.trig(plan.fractional_hour_angle(), math.sin),
    "hour_cos": lambda plan, p: plan.trig(plan.fractional_hour_angle(), math.cos),
    "weekday_sin": lambda plan, p: plan.trig(plan.weekday_angle(), math.sin),
    "weekday_cos": lambda plan, p: plan.trig(plan.weekday_angle(), math.cos),
    "session_asia": lambda plan, p: plan.session("asia"),
    "session_london": lambda plan, p: plan.session("london"),
    "session_new_york": lambda plan, p: plan.session("new_york"),
    "relative_spread": lambda plan, p: plan.div(_SPREAD, _CLOSE),
    "relative_spread_mean": lambda plan, p: plan.rolling_mean(
        plan.div(_SPREAD, _CLOSE), _int(p, "window", 1)
    ),
    "volume_zscore": lambda plan, p: _zscore(plan, _VOLUME, _int(p, "window", 1)),
    "volume_ratio": _volume_ratio,
}


class BarFeatures:
    """Features of one series, one bar at a time, equal bit for bit to the batch computation.

    Fed every bar of a series from its first, :meth:`push` returns for each bar the row
    :func:`~pipelines.features.registry.compute_features` gives for it on the whole series
    (NaN where the batch value is null). Every kind of
    :data:`~pipelines.features.registry.BUILDERS` is supported, with any parameters; features
    that share a sub-expression (an ATR, a moving average, a shifted close) compute it once.

    Parameters
    ----------
    specs
        The feature set, e.g. :func:`~pipelines.features.registry.default_feature_set`.
    has_spread, volume_kind
        As for :func:`~pipelines.features.registry.compute_features`: spread features need a
        spread, volume features a ``tick`` or ``real`` volume; the others are skipped.

    Attributes
    ----------
    names
        The applicable features, in the order of ``compute_features``' columns.
    count
        Bars pushed so far.

    Raises
    ------
    UsageError
        If two specs share a name, a kind is unknown or a parameter is missing or out of range.

    Examples
    --------
    >>> engine = BarFeatures(default_feature_set(), has_spread=True,
    ...                      volume_kind=VolumeKind.TICK)  # doctest: +SKIP
    >>> row = engine.push(ts_ns, o, h, l, c, volume=v, spread=s)  # doctest: +SKIP
    """

    def __init__(
        self, specs: Iterable[FeatureSpec], *, has_spread: bool, volume_kind: VolumeKind
    ) -> None:
        self._specs = list(specs)
        self._has_spread = has_spread
        self._volume_kind = volume_kind
        columns = ["ts", *OHLC, "volume", "spread"]
        chosen = checked_specs(self._specs, columns, has_spread=has_spread, volume_kind=volume_kind)
        plan = _Plan()
        outputs = [_build(plan, spec) for spec in chosen]
        plan.finish()
        self.names: tuple[str, ...] = tuple(s.name for s in chosen)
        self.count = 0
        self._steps = tuple(plan.steps)
        self._values: Values = [_NAN] * plan.size
        self._calendar = plan.calendar
        self._gather: Callable[[Values], Any] = _gatherer(outputs)
        self._last_ts: int | None = None

    def push(
        self,
        ts_ns: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float = _NAN,
        spread: float = _NAN,
    ) -> Floats:
        """Add the next bar and return its features.

        Parameters
        ----------
        ts_ns
            The bar's open time, nanoseconds since the epoch (UTC); later than the last bar's.
        open, high, low, close, volume, spread
            The bar; NaN for a missing volume or spread (ignored when the set does not use it).

        Returns
        -------
        numpy.ndarray
            A new float64 vector, one value per name of :attr:`names`, NaN where the batch
            value is null (warm-up, missing inputs).

        Raises
        ------
        UsageError
            If ``ts_ns`` is not later than the previous bar's; nothing changes then.
        """
        ts = int(ts_ns)
        last = self._last_ts
        if last is not None and ts <= last:
            msg = (
                f"bars must arrive in strictly increasing time: got ts_ns={ts} after "
                f"{last}; push each bar once, oldest first"
            )
            raise UsageError(msg)
        self._last_ts = ts
        v = self._values
        # As Python floats: a NumPy scalar would warn where IEEE arithmetic divides by zero.
        v[_OPEN] = float(open)
        v[_HIGH] = float(high)
        v[_LOW] = float(low)
        v[_CLOSE] = float(close)
        v[_VOLUME] = float(volume)
        v[_SPREAD] = float(spread)
        if self._calendar:
            days, of_day = divmod(ts, _NS_PER_DAY)
            v[_WEEKDAY] = float((days + 3) % 7 + 1)  # 1970-01-01 was a Thursday (4)
            v[_HOUR] = float(of_day // _NS_PER_HOUR)
            v[_MINUTE] = float(of_day % _NS_PER_HOUR // _NS_PER_MINUTE)
        for step in self._steps:
            step(v)
        self.count += 1
        return np.array(self._gather(v), dtype=np.float64)

    def push_frame(self, bars: pl.DataFrame) -> Floats:
        """Push every bar of ``bars`` in order and return one row of features per bar.

        Parameters
        ----------
        bars
            Bars as :func:`~pipelines.features.registry.compute_features` takes them: ``ts``
            (datetime, UTC when naive), ``open``, ``high``, ``low``, ``close``, and
            ``volume`` / ``spread`` when the set uses them; nulls are read as NaN.

        Returns
        -------
        numpy.ndarray
            ``(bars.height, len(names))`` float64 values, as :meth:`push` gives row by row.

        Raises
        ------
        UsageError
            If a needed column is missing, or the bars are not in strictly increasing time
            after the last bar pushed; no bar is pushed then.
        """
        checked_specs(
            self._specs,
            bars.columns,
            has_spread=self._has_spread,
            volume_kind=self._volume_kind,
        )
        dtype = bars.schema.get("ts")
        if not isinstance(dtype, pl.Datetime) or dtype.time_zone not in (None, "UTC"):
            msg = f"bars' ts column is {dtype}: give the open times as UTC datetimes"
            raise UsageError(msg)
        ts = bars["ts"].dt.epoch("ns")
        if ts.null_count():
            msg = "bars' ts column has nulls: every bar needs its open time"
            raise UsageError(msg)
        stamps = ts.to_list()
        previous = [self._last_ts, *stamps[:-1]]
        late = next(
            (
                i
                for i, (a, b) in enumerate(zip(previous, stamps, strict=True))
                if a is not None and b <= a
            ),
            None,
        )
        if late is not None:
            msg = (
                f"bars must arrive in strictly increasing time: row {late} at "
                f"{bars['ts'][late]} follows {previous[late]} ns; sort the bars and drop repeats"
            )
            raise UsageError(msg)
        columns = [_floats(bars, name) for name in (*OHLC, "volume", "spread")]
        out = np.empty((bars.height, len(self.names)))
        push = self.push
        for i, row in enumerate(zip(stamps, *columns, strict=True)):
            out[i] = push(*row)
        return out


def _floats(bars: pl.DataFrame, name: str) -> list[float]:
    """Return column ``name`` as floats with nulls as NaN (all NaN when absent)."""
    if name not in bars.columns:
        return [_NAN] * bars.height
    values = bars[name].cast(pl.Float64).fill_null(_NAN)
    return values.to_list()


def _gatherer(outputs: list[int]) -> Callable[[Values], Any]:
    """Return a function taking the output slots' values from the value list, as a sequence."""
    if not outputs:
        return lambda v: ()
    if len(outputs) == 1:
        only = outputs[0]
        return lambda v: (v[only],)
    return operator.itemgetter(*outputs)


def _build(plan: _Plan, spec: FeatureSpec) -> int:
    """Add ``spec``'s steps to ``plan`` and return the slot of its value."""
    kind = KINDS.get(spec.kind)
    if kind is None:
        msg = f"feature {spec.name!r}: unknown kind {spec.kind!r}; use one of {sorted(BUILDERS)}"
        raise UsageError(msg)
    try:
        return kind(plan, spec.parameters)
    except KeyError as missing:
        msg = f"feature {spec.name!r} ({spec.kind}) lacks parameter {missing}: add it to its params"
        raise UsageError(msg) from None
    except ValueError as error:
        msg = f"feature {spec.name!r} ({spec.kind}): {error}"
        raise UsageError(msg) from None

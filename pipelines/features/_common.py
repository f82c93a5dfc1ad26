"""Smoothing, window and division helpers shared by the feature families.

Every stateful step of a feature is one of the compiled kernels of
:mod:`pipelines.features.kernels`, wrapped here as a Polars expression. An expression built
inside :func:`online_build` belongs to a bar-by-bar computation: its smoothing and sliding
window steps keep their kernel state between evaluations and consume only the bars appended
since the last one (:class:`OnlineState`). Windows whose value depends on their own values
only (min, max, weighted sums) are Polars' own and recompute from the retained bars. Built outside, every evaluation starts from a fresh state, so the expression is a pure
function of its input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from pipelines.features import kernels

Array = kernels.Array


@dataclass
class OnlineState:
    """Shared clock of the smoothing steps of one bar-by-bar computation.

    Attributes
    ----------
    tick
        Number of evaluations so far; a step advances once per tick however often the
        expression tree refers to it.
    new_rows
        Bars appended to the retained frame since the previous evaluation (every row on the
        first one).
    keep
        Outputs each step retains, at least the number of retained bars.
    """

    keep: int
    tick: int = 0
    new_rows: int = 0


_ONLINE: ContextVar[OnlineState | None] = ContextVar("solodesk_online_features", default=None)


@contextmanager
def online_build(state: OnlineState) -> Iterator[None]:
    """Build feature expressions whose smoothing steps carry their state in ``state``'s clock."""
    token = _ONLINE.set(state)
    try:
        yield
    finally:
        _ONLINE.reset(token)


def _values(series: pl.Series) -> Array:
    # Nulls become NaN inside Polars first: faster than NumPy's conversion of a masked column.
    values = series.cast(pl.Float64).fill_null(np.nan).to_numpy()
    return np.ascontiguousarray(values, dtype=np.float64)


def _series(values: Array) -> pl.Series:
    return pl.Series("", values, dtype=pl.Float64, nan_to_null=True)


State = tuple[Array, ...]
Kernel = Callable[[Array, State], Array]


class _Step:
    """A stateful kernel step: fresh per evaluation, or carried across an online computation."""

    def __init__(
        self, kernel: Kernel, new_state: Callable[[], State], online: OnlineState | None
    ) -> None:
        self.kernel = kernel
        self.new_state = new_state
        self.online = online
        self.state = new_state()
        self.outputs: Array = np.empty(0)
        self.tick = -1

    def __call__(self, series: pl.Series) -> pl.Series:
        x = _values(series)
        if self.online is None:
            return _series(self.kernel(x, self.new_state()))
        clock = self.online
        if self.tick != clock.tick:
            fresh = x if self.tick < 0 else x[x.shape[0] - clock.new_rows :]
            out = self.kernel(np.ascontiguousarray(fresh), self.state)
            self.outputs = np.concatenate((self.outputs, out))
            self.tick = clock.tick
        rows = x.shape[0]
        tail = self.outputs[-rows:]
        if tail.shape[0] < rows:
            tail = np.concatenate((np.full(rows - tail.shape[0], np.nan), tail))
        self.outputs = self.outputs[-max(clock.keep, rows) :]
        return _series(tail)


@cache
def _step_parts(name: str, alpha: float, n: int) -> tuple[Kernel, Callable[[], State]]:
    """Kernel and state factory of ``ewm`` (``alpha``, ``n`` samples) or sliding ``sum/mean/std``."""
    if name == "ewm":

        def smooth(x: Array, state: State) -> Array:
            return kernels.ewm(x, alpha, n, state[0])

        return smooth, lambda: (np.zeros(2),)
    sliding = getattr(kernels, f"rolling_{name}")

    def slide(x: Array, state: State) -> Array:
        return sliding(x, n, state[0], state[1])

    return slide, lambda: kernels.new_state(name, n)


@cache
def _batch_step(name: str, alpha: float, n: int) -> _Step:
    # Shared by every use: with a fresh state per evaluation it is a pure function of its input.
    return _Step(*_step_parts(name, alpha, n), None)


def _stateful(x: pl.Expr, name: str, alpha: float, n: int) -> pl.Expr:
    online = _ONLINE.get()
    step = (
        _batch_step(name, alpha, n)
        if online is None
        else _Step(*_step_parts(name, alpha, n), online)
    )
    return x.map_batches(step, return_dtype=pl.Float64)


def ema(x: pl.Expr, span: int) -> pl.Expr:
    """Exponential moving average: y_t = y_{t-1} + α(x_t - y_{t-1}), α = 2/(span+1).

    Starts at the first non-null ``x``; the first ``span - 1`` values from there are null.
    """
    return _stateful(x, "ewm", 2.0 / (span + 1), span)


def wilder(x: pl.Expr, n: int) -> pl.Expr:
    """Wilder smoothing: y_t = y_{t-1} + (x_t - y_{t-1})/n from the first non-null ``x``.

    The first ``n - 1`` values from the first non-null ``x`` are null.
    """
    return _stateful(x, "ewm", 1.0 / n, n)


def rolling_sum(x: pl.Expr, n: int) -> pl.Expr:
    """Sum of the last ``n`` values; null unless all ``n`` are present."""
    return _stateful(x, "sum", 0.0, n)


def rolling_mean(x: pl.Expr, n: int) -> pl.Expr:
    """Mean of the last ``n`` values; null unless all ``n`` are present."""
    return _stateful(x, "mean", 0.0, n)


def rolling_std(x: pl.Expr, n: int) -> pl.Expr:
    """Sample standard deviation (ddof 1) of the last ``n`` values, exactly 0 if all are equal."""
    return _stateful(x, "std", 0.0, n)


def rolling_min(x: pl.Expr, n: int) -> pl.Expr:
    """Smallest of the last ``n`` values (exact, so Polars' own window serves both paths)."""
    return x.rolling_min(n)


def rolling_max(x: pl.Expr, n: int) -> pl.Expr:
    """Largest of the last ``n`` values (exact, so Polars' own window serves both paths)."""
    return x.rolling_max(n)


def rolling_dot(x: pl.Expr, weights: list[float]) -> pl.Expr:
    """Σ weights[j]·x over the last ``len(weights)`` values, oldest first.

    Polars computes each weighted window from its own values, so both paths agree.
    """
    return x.rolling_sum(len(weights), weights=weights)


@cache
def _divide_step(when_zero: float) -> Callable[[Sequence[pl.Series]], pl.Series]:
    def run(columns: Sequence[pl.Series]) -> pl.Series:
        num, den = columns
        return _series(kernels.divide(_values(num), _values(den), when_zero))

    return run


def ratio(num: pl.Expr, den: pl.Expr, when_zero: float) -> pl.Expr:
    """Return ``num / den``, or ``when_zero`` where ``den`` is 0 (null where either is null).

    One step over both columns, so ``den`` is evaluated once.
    """
    return pl.map_batches([num, den], _divide_step(when_zero), return_dtype=pl.Float64)


@cache
def _combine_step(name: str, constant: float) -> Callable[[Sequence[pl.Series]], pl.Series]:
    kernel = getattr(kernels, name)

    def run(columns: Sequence[pl.Series]) -> pl.Series:
        arrays = [_values(c) for c in columns]
        if name == "directional_index":
            return _series(kernel(*arrays))
        return _series(kernel(*arrays, constant))

    return run


def share(a: pl.Expr, b: pl.Expr, when_zero: float) -> pl.Expr:
    """Return ``a / (a + b)``, or ``when_zero`` where ``a + b`` is 0; each input evaluated once."""
    return pl.map_batches([a, b], _combine_step("share", when_zero), return_dtype=pl.Float64)


def position(x: pl.Expr, low: pl.Expr, high: pl.Expr, when_flat: float) -> pl.Expr:
    """Return ``(x - low) / (high - low)``, or ``when_flat`` where ``high == low``.

    Each input is evaluated once (``low`` would otherwise be computed for both terms).
    """
    return pl.map_batches(
        [x, low, high], _combine_step("position", when_flat), return_dtype=pl.Float64
    )


def directional_index(plus: pl.Expr, minus: pl.Expr, true_range: pl.Expr) -> pl.Expr:
    """Return DX from smoothed +DM, -DM and true range (see the kernel)."""
    return pl.map_batches(
        [plus, minus, true_range],
        _combine_step("directional_index", 0.0),
        return_dtype=pl.Float64,
    )

"""Turn a strategy's signals into the direction it wants, bar by bar (+1, -1, 0 or NaN).

The portfolio runner sizes every symbol itself, so it needs only each strategy's wanted
direction. Event signals follow the engine's rules (:mod:`pipelines.backtest.engine`): an
entry opens when flat, the matching exit closes, an entry and an exit of one side on the same
bar cancel, as do a long and a short entry; with ``direction="both"`` an opposite entry
reverses, with ``"long"`` or ``"short"`` the other side's signals are ignored. A target's sign
is its direction, NaN kept as NaN (hold what is held).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from core.errors import UsageError
from models.strategies.base import Signals

_jit = njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _event_directions(
    entries: np.ndarray,
    exits: np.ndarray,
    short_entries: np.ndarray,
    short_exits: np.ndarray,
    allow_long: bool,
    allow_short: bool,
) -> np.ndarray:
    n = entries.shape[0]
    out = np.zeros(n)
    state = 0.0
    for i in range(n):
        long_in = allow_long and entries[i] and not exits[i]
        long_out = allow_long and exits[i] and not entries[i]
        short_in = allow_short and short_entries[i] and not short_exits[i]
        short_out = allow_short and short_exits[i] and not short_entries[i]
        if long_in and short_in:
            long_in = False
            short_in = False
        if state == 0.0:
            if long_in:
                state = 1.0
            elif short_in:
                state = -1.0
        elif state > 0.0:
            if short_in:
                state = -1.0
            elif long_out:
                state = 0.0
        else:
            if long_in:
                state = 1.0
            elif short_out:
                state = 0.0
        out[i] = state
    return out


def signal_directions(signals: Signals, n: int, direction: str = "both") -> np.ndarray:
    """Return the wanted direction at each of ``n`` bars: +1 long, -1 short, 0 flat, NaN keep.

    Raises
    ------
    UsageError
        If an array's length differs from ``n`` or ``direction`` is unknown.
    """
    if direction not in ("both", "long", "short"):
        raise UsageError(f"direction {direction!r}: use both, long or short")
    allow_long, allow_short = direction != "short", direction != "long"
    if signals.target is not None:
        target = np.asarray(signals.target, dtype=np.float64)
        if target.shape != (n,):
            raise UsageError(f"target has {target.shape[0]} values for {n} bars")
        wanted = np.sign(target)
        if not allow_long:
            wanted = np.where(wanted > 0, 0.0, wanted)
        if not allow_short:
            wanted = np.where(wanted < 0, 0.0, wanted)
        return wanted
    arrays = []
    for name in ("entries", "exits", "short_entries", "short_exits"):
        given = getattr(signals, name)
        array = np.zeros(n, dtype=np.bool_) if given is None else np.asarray(given, dtype=bool)
        if array.shape != (n,):
            raise UsageError(f"{name} has {array.shape[0]} values for {n} bars")
        arrays.append(array)
    kernel: Any = _event_directions
    return np.asarray(kernel(*arrays, allow_long, allow_short))


@_jit
def _traded(position: np.ndarray, close: np.ndarray, rates: np.ndarray) -> np.ndarray:
    out = np.empty(position.shape[0])
    before = 0.0
    one_rate = rates.shape[0] == 1
    for i in range(position.shape[0]):
        rate = rates[0] if one_rate else rates[i]
        out[i] = abs(position[i] - before) * close[i] * rate
        before = position[i]
    return out


def traded_notional(
    position: np.ndarray, close: np.ndarray, to_account: np.ndarray | float = 1.0
) -> np.ndarray:
    """Return the notional traded at each bar: ``|Δ position| × close × to_account``.

    Valued at the bar's close (fills at an open or a stop are valued at the close of their
    bar); the first bar's change is from flat. ``to_account`` is a number or one rate per bar.
    """
    rates = np.atleast_1d(np.asarray(to_account, dtype=np.float64))
    kernel: Any = _traded
    return np.asarray(
        kernel(
            np.ascontiguousarray(position, dtype=np.float64),
            np.ascontiguousarray(close, dtype=np.float64),
            np.ascontiguousarray(rates),
        )
    )

"""Compiled core of the vectorized backtest: one pass over the bars, plain NumPy in and out.

:func:`simulate` is the whole simulation. It takes float64/bool/int64 arrays and scalars, does
no Polars work and allocates only its outputs, so a parameter sweep can call it thousands of
times; :func:`simulate_into` writes into buffers the caller owns. The read-only arrays that
Polars hands out and writable ones are distinct types to Numba, each compiled once (and
cached): a sweep gets the fewest compilations by passing the same kinds every time.
:mod:`pipelines.backtest.engine` documents the semantics and wraps it for data frames.

Accounting, in account currency: ``balance`` holds everything realized (cash, fees,
commissions, swap, closed P&L); ``accrued`` holds the open position's P&L, accrued bar by bar
as ``units × (mark_t - mark_{t-1}) × to_account_t`` where ``mark`` is the price the position
is valued at (the sell price for longs, the buy price for shorts). Equity is
``balance + accrued``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]

# Cached on disk, releasing the GIL, and with NumPy's float semantics (x / 0 gives inf or NaN).
_jit = njit(cache=True, nogil=True, error_model="numpy")

# Codes of the scalar arguments.
DIRECTION_BOTH = 0
DIRECTION_LONG = 1
DIRECTION_SHORT = 2
SIZING_ALL_IN = 0
SIZING_LOTS = 1
SIZING_FRACTION = 2
SIZING_VOL_TARGET = 3
SIZING_KELLY = 4

# Exit reasons, in the order of ``EXIT_REASONS``.
EXIT_SIGNAL = 0
EXIT_REVERSE = 1
EXIT_STOP_LOSS = 2
EXIT_TAKE_PROFIT = 3
EXIT_TRAILING_STOP = 4
EXIT_OPEN = 5
EXIT_REASONS = ("signal", "reverse", "stop_loss", "take_profit", "trailing_stop", "open")

# Columns of the trade records :func:`simulate` returns (one row per trade, float64).
TR_ENTRY_IDX = 0  # bar of the first entry fill
TR_EXIT_IDX = 1  # bar of the closing fill, -1 while open
TR_DIRECTION = 2  # +1 long, -1 short
TR_UNITS = 3  # largest absolute position of the trade
TR_ENTRY_PRICE = 4  # units-weighted mean entry fill price
TR_EXIT_PRICE = 5  # units-weighted mean exit fill price (the last mark for what is open)
TR_PNL = 6  # account currency, net of fees, commissions, spread, slippage and swap
TR_RETURN = 7  # pnl / entry notional in account currency
TR_COSTS = 8  # fees + commissions + spread (half per leg) + slippage - swap credited
TR_EXIT_REASON = 9  # an index into EXIT_REASONS
TRADE_FIELDS = 10

# Account state (a small array the helpers update in place).
_BAL = 0
_ACC = 1
_UNITS = 2
_REF = 3

# The open trade's state.
_T_ENTRY_IDX = 0
_T_DIR = 1
_T_PEAK = 2
_T_IN_UNITS = 3
_T_ENTRY_PX = 4
_T_OUT_UNITS = 5
_T_EXIT_PX = 6
_T_PNL = 7
_T_COSTS = 8
_T_NOTIONAL = 9
_T_STOP = 10
_T_TP = 11
_T_BEST = 12
_TRADE_STATE = 13

# Closed-trade statistics behind Kelly sizing.
_K_CLOSED = 0
_K_WINS = 1
_K_SUM_WIN = 2
_K_LOSSES = 3
_K_SUM_LOSS = 4

# Constant parameters, packed once so the helpers take one array.
_P_FEES = 0
_P_COMM_UNIT = 1  # commission per unit: commission_per_lot / contract_size
_P_BUY_SPREAD = 2
_P_SELL_SPREAD = 3
_P_PIP = 4
_P_SL = 5
_P_TP = 6
_P_TRAIL = 7
_P_KIND = 8
_P_VALUE = 9
_P_LOOKBACK = 10
_P_MAX_LEV = 11
_P_BARS_PER_YEAR = 12
_P_CONTRACT = 13
_PARAMS = 14

KELLY_MIN_TRADES = 20
_NO_EXPOSURE = np.zeros(0)
_DAY_NS = 86_400_000_000_000
_HOUR_NS = 3_600_000_000_000


@_jit
def _push_record(
    recs: Floats, count: int, trade: Floats, exit_idx: int, reason: int
) -> None:  # pragma: no cover
    row = recs[count]
    row[TR_ENTRY_IDX] = trade[_T_ENTRY_IDX]
    row[TR_EXIT_IDX] = exit_idx
    row[TR_DIRECTION] = trade[_T_DIR]
    row[TR_UNITS] = trade[_T_PEAK]
    row[TR_ENTRY_PRICE] = trade[_T_ENTRY_PX]
    row[TR_EXIT_PRICE] = trade[_T_EXIT_PX]
    row[TR_PNL] = trade[_T_PNL]
    row[TR_RETURN] = trade[_T_PNL] / trade[_T_NOTIONAL]
    row[TR_COSTS] = trade[_T_COSTS]
    row[TR_EXIT_REASON] = reason


@_jit
def _kelly_fraction(stats: Floats, max_leverage: float) -> float:  # pragma: no cover
    """Kelly fraction ``p - (1 - p) / b`` of the closed trades' returns, clipped to [0, max]."""
    wins = stats[_K_WINS]
    if wins == 0.0:
        return 0.0
    p = wins / stats[_K_CLOSED]
    losses = stats[_K_LOSSES]
    k = p
    if losses > 0.0:
        b = (stats[_K_SUM_WIN] / wins) / (stats[_K_SUM_LOSS] / losses)
        k = p - (1.0 - p) / b
    return min(max(k, 0.0), max_leverage)


@_jit
def _annual_vol(
    close: Floats, last: int, lookback: int, bars_per_year: float
) -> float:  # pragma: no cover
    """Sample stdev of the ``lookback`` log returns ending at bar ``last``, × √bars_per_year."""
    if last < lookback:
        return np.nan
    mean = 0.0
    for k in range(last - lookback + 1, last + 1):
        mean += math.log(close[k] / close[k - 1])
    mean /= lookback
    var = 0.0
    for k in range(last - lookback + 1, last + 1):
        d = math.log(close[k] / close[k - 1]) - mean
        var += d * d
    return math.sqrt(var / (lookback - 1) * bars_per_year)


@_jit
def _full_units(
    equity: float, px: float, r: float, i_sig: int, close: Floats, stats: Floats, prm: Floats
) -> float:  # pragma: no cover
    """Units of a full position bought or sold at ``px`` (quote) when equity is ``equity``."""
    if not equity > 0.0:
        return 0.0
    kind = int(prm[_P_KIND])
    pa = px * r
    if kind == SIZING_ALL_IN:
        # vectorbt's size=inf: (cash / (1 + fees)) / price, with room left for commissions.
        grossed = 1.0 + prm[_P_FEES]
        return (equity / grossed) / (pa + prm[_P_COMM_UNIT] / grossed)
    if kind == SIZING_LOTS:
        return prm[_P_VALUE] * prm[_P_CONTRACT]
    if kind == SIZING_FRACTION:
        return prm[_P_VALUE] * equity / pa
    cap = prm[_P_MAX_LEV] * equity
    if kind == SIZING_VOL_TARGET:
        vol = _annual_vol(close, i_sig, int(prm[_P_LOOKBACK]), prm[_P_BARS_PER_YEAR])
        if math.isnan(vol):
            return 0.0
        notional = cap if vol == 0.0 else min(equity * prm[_P_VALUE] / vol, cap)
        return notional / pa
    # Kelly: the strategy's own closed trades, F alone until enough have closed.
    fraction = prm[_P_VALUE]
    if stats[_K_CLOSED] >= KELLY_MIN_TRADES:
        fraction *= _kelly_fraction(stats, prm[_P_MAX_LEV])
    return equity * fraction / pa


@_jit
def _open(
    acct: Floats,
    trade: Floats,
    d: float,
    px: float,
    mark: float,
    s: float,
    slip: float,
    r: float,
    i: int,
    prm: Floats,
) -> None:  # pragma: no cover
    """Buy (d > 0) or sell (d < 0) ``|d|`` units at ``px`` into a flat or same-side position."""
    u = acct[_UNITS]
    q = abs(d)
    if u == 0.0:
        trade[:] = 0.0
        trade[_T_ENTRY_IDX] = i
        side = 1.0 if d > 0.0 else -1.0
        trade[_T_DIR] = side
        trade[_T_STOP] = px - side * prm[_P_SL] * prm[_P_PIP]
        trade[_T_TP] = px + side * prm[_P_TP] * prm[_P_PIP]
        trade[_T_BEST] = px
        acct[_ACC] = 0.0
    else:
        acct[_ACC] += u * (mark - acct[_REF]) * r
    acct[_ACC] += d * (mark - px) * r
    acct[_REF] = mark
    notional = q * px * r
    fee = prm[_P_FEES] * notional + prm[_P_COMM_UNIT] * q
    acct[_BAL] -= fee
    held = u + d
    acct[_UNITS] = held
    trade[_T_PEAK] = max(trade[_T_PEAK], abs(held))
    total = trade[_T_IN_UNITS] + q
    trade[_T_ENTRY_PX] += (px - trade[_T_ENTRY_PX]) * (q / total)
    trade[_T_IN_UNITS] = total
    trade[_T_NOTIONAL] += notional
    trade[_T_PNL] -= fee
    trade[_T_COSTS] += fee + q * (0.5 * s + slip) * r


@_jit
def _reduce(
    acct: Floats,
    trade: Floats,
    q: float,
    px: float,
    mark: float,
    s: float,
    slip: float,
    r: float,
    prm: Floats,
) -> None:  # pragma: no cover
    """Close ``q`` of the position's units at ``px``; all of them when ``q = |units|``."""
    u = acct[_UNITS]
    held = abs(u)
    side = 1.0 if u > 0.0 else -1.0
    acc = acct[_ACC] + u * (mark - acct[_REF]) * r
    if q >= held:
        q = held
        realized = acc + u * (px - mark) * r
        acct[_ACC] = 0.0
        acct[_UNITS] = 0.0
    else:
        share = acc * (q / held)
        realized = share + side * q * (px - mark) * r
        acct[_ACC] = acc - share
        acct[_UNITS] = side * (held - q)
    acct[_REF] = mark
    fee = prm[_P_FEES] * q * px * r + prm[_P_COMM_UNIT] * q
    acct[_BAL] += realized - fee
    total = trade[_T_OUT_UNITS] + q
    trade[_T_EXIT_PX] += (px - trade[_T_EXIT_PX]) * (q / total)
    trade[_T_OUT_UNITS] = total
    trade[_T_PNL] += realized - fee
    trade[_T_COSTS] += fee + q * (0.5 * s + slip) * r


@_jit
def _close_trade(
    acct: Floats,
    trade: Floats,
    stats: Floats,
    recs: Floats,
    count: int,
    px: float,
    s: float,
    slip: float,
    r: float,
    i: int,
    reason: int,
    prm: Floats,
) -> None:  # pragma: no cover
    """Close the whole position at ``px``, record the trade and count it for Kelly sizing."""
    _reduce(acct, trade, abs(acct[_UNITS]), px, px, s, slip, r, prm)
    _push_record(recs, count, trade, i, reason)
    ret = recs[count, TR_RETURN]
    stats[_K_CLOSED] += 1.0
    if ret > 0.0:
        stats[_K_WINS] += 1.0
        stats[_K_SUM_WIN] += ret
    elif ret < 0.0:
        stats[_K_LOSSES] += 1.0
        stats[_K_SUM_LOSS] -= ret


@_jit
def _execute(
    acct: Floats,
    trade: Floats,
    stats: Floats,
    recs: Floats,
    count: int,
    t: float,
    x: float,
    s: float,
    slip: float,
    r: float,
    i: int,
    i_sig: int,
    close: Floats,
    prm: Floats,
) -> int:  # pragma: no cover
    """Move the position to ``t`` × the full size with market fills around the price ``x``."""
    buy_px = x + prm[_P_BUY_SPREAD] * s + slip
    sell_px = x - prm[_P_SELL_SPREAD] * s - slip
    long_mark = x - prm[_P_SELL_SPREAD] * s
    short_mark = x + prm[_P_BUY_SPREAD] * s
    u = acct[_UNITS]
    if u != 0.0 and (t == 0.0 or (t > 0.0) != (u > 0.0)):
        reason = EXIT_SIGNAL if t == 0.0 else EXIT_REVERSE
        px = sell_px if u > 0.0 else buy_px
        _close_trade(acct, trade, stats, recs, count, px, s, slip, r, i, reason, prm)
        count += 1
        u = 0.0
    if t == 0.0:
        return count
    new_px = buy_px if t > 0.0 else sell_px
    new_mark = long_mark if t > 0.0 else short_mark
    if u != 0.0:
        acct[_ACC] += u * (new_mark - acct[_REF]) * r
        acct[_REF] = new_mark
    equity = acct[_BAL] + acct[_ACC]
    wanted = t * _full_units(equity, new_px, r, i_sig, close, stats, prm)
    out_px = sell_px if u > 0.0 else buy_px
    if u == 0.0:
        if wanted != 0.0:
            _open(acct, trade, wanted, new_px, new_mark, s, slip, r, i, prm)
    elif wanted == 0.0:
        # Nothing to hold at this size (no equity, or no volatility estimate yet): close.
        _close_trade(acct, trade, stats, recs, count, out_px, s, slip, r, i, EXIT_SIGNAL, prm)
        count += 1
    elif abs(wanted) > abs(u):
        _open(acct, trade, wanted - u, new_px, new_mark, s, slip, r, i, prm)
    elif abs(wanted) < abs(u):
        _reduce(acct, trade, abs(u) - abs(wanted), out_px, new_mark, s, slip, r, prm)
    return count


@_jit
def _rollovers(ts: Ints, i: int, offset: int) -> int:  # pragma: no cover
    """Daily rollovers (at ``offset`` ns past midnight UTC) in ``[ts[i], ts[i + 1])``.

    The last bar is taken to last as long as the one before it. The count of instants
    ``T = day + offset`` with ``a <= T < b`` is ``⌊(b - offset - 1) / day⌋ - ⌊(a - offset - 1) / day⌋``.
    """
    n = ts.shape[0]
    start = ts[i]
    if i + 1 < n:
        end = ts[i + 1]
    elif n > 1:
        end = start + (start - ts[i - 1])
    else:
        return 0
    return (end - offset - 1) // _DAY_NS - (start - offset - 1) // _DAY_NS


@_jit
def _trade_capacity(
    entries: Bools, short_entries: Bools, target: Floats, long_ok: bool, short_ok: bool
) -> int:  # pragma: no cover
    """Upper bound of the trades: bars that may open one (entries, or finite targets), plus 1."""
    bound = 1
    for i in range(target.shape[0]):
        if not math.isnan(target[i]):
            bound += 1
    if long_ok:
        for i in range(entries.shape[0]):
            bound += entries[i]
    if short_ok:
        for i in range(short_entries.shape[0]):
            bound += short_entries[i]
    return bound


@_jit
def simulate_into(
    equity: Floats,
    position: Floats,
    exposure: Floats,
    open_: Floats,
    high: Floats,
    low: Floats,
    close: Floats,
    spread: Floats,
    ts: Ints,
    to_account: Floats,
    entries: Bools,
    exits: Bools,
    short_entries: Bools,
    short_exits: Bools,
    target: Floats,
    cash: float,
    fees: float,
    commission_per_lot: float,
    contract_size: float,
    pip_size: float,
    buy_spread: float,
    sell_spread: float,
    slippage_pips: float,
    slippage_vol: float,
    swap_long_pips: float,
    swap_short_pips: float,
    rollover_hour: int,
    fill_next_open: bool,
    direction: int,
    sizing_kind: int,
    sizing_value: float,
    lookback: int,
    max_leverage: float,
    bars_per_year: float,
    stop_loss_pips: float,
    take_profit_pips: float,
    trailing_stop_pips: float,
) -> Floats:  # pragma: no cover
    """Simulate into caller-owned ``equity``, ``position`` and ``exposure``; return the trades.

    The compiled kernel behind :func:`simulate`, which documents the other arguments.
    ``equity`` and ``position`` are float64 arrays of n bars (a sweep may reuse them from call
    to call); ``exposure`` is one too, receiving ``|units| × mark × to_account / equity`` at
    each close, or an empty array to skip it.

    The loop runs a full step (swap, fill at the open, stops, the close's decision, mark) on
    the bars where something may happen, and fast-forwards through the others: while flat until
    the next entry or change of target, in a position until the next signal, rollover or bar
    whose range reaches a stop or take-profit level.
    """
    n = close.shape[0]
    want_exposure = exposure.shape[0] > 0
    prm = np.empty(_PARAMS)
    prm[_P_FEES] = fees
    prm[_P_COMM_UNIT] = commission_per_lot / contract_size
    prm[_P_BUY_SPREAD] = buy_spread
    prm[_P_SELL_SPREAD] = sell_spread
    prm[_P_PIP] = pip_size
    prm[_P_SL] = stop_loss_pips
    prm[_P_TP] = take_profit_pips
    prm[_P_TRAIL] = trailing_stop_pips
    prm[_P_KIND] = sizing_kind
    prm[_P_VALUE] = sizing_value
    prm[_P_LOOKBACK] = lookback
    prm[_P_MAX_LEV] = max_leverage
    prm[_P_BARS_PER_YEAR] = bars_per_year
    prm[_P_CONTRACT] = contract_size

    s_step = 1 if spread.shape[0] > 1 else 0
    r_step = 1 if to_account.shape[0] > 1 else 0
    use_target = target.shape[0] > 0
    has_le = entries.shape[0] > 0 and direction != DIRECTION_SHORT and not use_target
    has_lx = exits.shape[0] > 0 and direction != DIRECTION_SHORT and not use_target
    has_se = short_entries.shape[0] > 0 and direction != DIRECTION_LONG and not use_target
    has_sx = short_exits.shape[0] > 0 and direction != DIRECTION_LONG and not use_target
    slip_fixed = slippage_pips * pip_size
    trailing = not math.isnan(trailing_stop_pips)
    trail_px = trailing_stop_pips * pip_size
    stop_reason = EXIT_TRAILING_STOP if trailing else EXIT_STOP_LOSS
    stops_on = trailing or not (math.isnan(stop_loss_pips) and math.isnan(take_profit_pips))
    swap_on = (swap_long_pips != 0.0 or swap_short_pips != 0.0) and ts.shape[0] == n
    swap_long = swap_long_pips * pip_size
    swap_short = swap_short_pips * pip_size
    roll_offset = rollover_hour * _HOUR_NS

    acct = np.zeros(4)
    trade = np.zeros(_TRADE_STATE)
    stats = np.zeros(5)
    # Every trade starts with an entry signal or a change of target: that bounds their number.
    recs = np.empty((_trade_capacity(entries, short_entries, target, has_le, has_se), TRADE_FIELDS))
    count = 0
    bal = cash
    acc = 0.0
    u = 0.0
    ref = 0.0
    pending = False
    pending_t = 0.0
    last_target = 0.0

    i = 0
    while i < n:
        # The full step of bar i: swap, a fill at the open, stops, the close's decision, mark.
        s = spread[i * s_step]
        r = to_account[i * r_step]
        if pending:
            pending = False
            slip = slip_fixed + slippage_vol * (high[i] - low[i])
            acct[_BAL] = bal
            acct[_ACC] = acc
            acct[_UNITS] = u
            acct[_REF] = ref
            r_prev = to_account[(i - 1) * r_step]
            count = _execute(
                acct, trade, stats, recs, count, pending_t, open_[i], s, slip, r_prev, i, i - 1,
                close, prm,
            )  # fmt: skip
            bal = acct[_BAL]
            acc = acct[_ACC]
            u = acct[_UNITS]
            ref = acct[_REF]

        if swap_on and u != 0.0:
            nights = _rollovers(ts, i, roll_offset)
            if nights > 0:
                per_unit = swap_long if u > 0.0 else swap_short
                credit = abs(u) * per_unit * r * nights
                bal += credit
                trade[_T_PNL] += credit
                trade[_T_COSTS] -= credit

        if stops_on and u != 0.0:
            # Longs against the bid, shorts against the ask; d = +1 long, -1 short.
            d = 1.0 if u > 0.0 else -1.0
            shift = -sell_spread * s if u > 0.0 else buy_spread * s
            o = open_[i] + shift
            adverse = (low[i] if u > 0.0 else high[i]) + shift
            favorable = (high[i] if u > 0.0 else low[i]) + shift
            best = trade[_T_BEST]
            stop = best - d * trail_px if trailing else trade[_T_STOP]
            tp = trade[_T_TP]
            slip = d * (slip_fixed + slippage_vol * (high[i] - low[i]))
            hit = -1
            fill = 0.0
            if d * (o - stop) <= 0.0:
                hit, fill = stop_reason, o - slip
            elif d * (o - tp) >= 0.0:
                hit, fill, slip = EXIT_TAKE_PROFIT, o, 0.0
            elif d * (adverse - stop) <= 0.0:
                hit, fill = stop_reason, stop - slip
            elif d * (favorable - tp) >= 0.0:
                hit, fill, slip = EXIT_TAKE_PROFIT, tp, 0.0
            elif trailing and d * (favorable - best) > 0.0:
                trade[_T_BEST] = favorable
            if hit >= 0:
                acct[_BAL] = bal
                acct[_ACC] = acc
                acct[_UNITS] = u
                acct[_REF] = ref
                _close_trade(acct, trade, stats, recs, count, fill, s, abs(slip), r, i, hit, prm)
                count += 1
                bal = acct[_BAL]
                acc = 0.0
                u = 0.0

        act = False
        t = 0.0
        if use_target:
            t = target[i]
            if not math.isnan(t):
                if direction == DIRECTION_LONG:
                    t = max(t, 0.0)
                elif direction == DIRECTION_SHORT:
                    t = min(t, 0.0)
                if t != last_target:
                    act = True
                    last_target = t
        else:
            le = has_le and entries[i]
            lx = has_lx and exits[i]
            se = has_se and short_entries[i]
            sx = has_sx and short_exits[i]
            if le or lx or se or sx:
                if le and lx:
                    le = lx = False
                if se and sx:
                    se = sx = False
                if le and se:
                    le = se = False
                if u > 0.0:
                    if se:
                        act, t = True, -1.0
                    elif lx:
                        act = True
                elif u < 0.0:
                    if le:
                        act, t = True, 1.0
                    elif sx:
                        act = True
                elif le:
                    act, t = True, 1.0
                elif se:
                    act, t = True, -1.0

        if act:
            if fill_next_open:
                pending = i + 1 < n
                pending_t = t
            else:
                slip = slip_fixed + slippage_vol * (high[i] - low[i])
                acct[_BAL] = bal
                acct[_ACC] = acc
                acct[_UNITS] = u
                acct[_REF] = ref
                count = _execute(
                    acct, trade, stats, recs, count, t, close[i], s, slip, r, i, i, close, prm
                )
                bal = acct[_BAL]
                acc = acct[_ACC]
                u = acct[_UNITS]
                ref = acct[_REF]

        if u != 0.0:
            mark = close[i] + (-sell_spread * s if u > 0.0 else buy_spread * s)
            acc += u * (mark - ref) * r
            ref = mark
        equity[i] = bal + acc
        position[i] = u
        if want_exposure:
            exposure[i] = abs(u) * ref * r / (bal + acc) if u != 0.0 else 0.0
        i += 1
        if pending:
            continue

        # Fast-forward over the bars where nothing can happen but marking the position.
        if u == 0.0:
            if use_target:
                while i < n and (math.isnan(target[i]) or target[i] == last_target):
                    equity[i] = bal
                    position[i] = 0.0
                    if want_exposure:
                        exposure[i] = 0.0
                    i += 1
            else:
                while i < n and not ((has_le and entries[i]) or (has_se and short_entries[i])):
                    equity[i] = bal
                    position[i] = 0.0
                    if want_exposure:
                        exposure[i] = 0.0
                    i += 1
            continue
        side_share = -sell_spread if u > 0.0 else buy_spread
        if not (use_target or stops_on or swap_on):
            # The common case, kept apart so that the compiler sees a small loop.
            while i < n:
                if (
                    (has_le and entries[i])
                    or (has_lx and exits[i])
                    or (has_se and short_entries[i])
                    or (has_sx and short_exits[i])
                ):
                    break
                mark = close[i] + side_share * spread[i * s_step]
                r = to_account[i * r_step]
                acc += u * (mark - ref) * r
                ref = mark
                equity[i] = bal + acc
                position[i] = u
                if want_exposure:
                    exposure[i] = abs(u) * mark * r / (bal + acc)
                i += 1
            continue
        d = 1.0 if u > 0.0 else -1.0
        best = trade[_T_BEST]
        fixed_stop = trade[_T_STOP]
        tp = trade[_T_TP]
        while i < n:
            if use_target:
                if not (math.isnan(target[i]) or target[i] == last_target):
                    break
            elif (
                (has_le and entries[i])
                or (has_lx and exits[i])
                or (has_se and short_entries[i])
                or (has_sx and short_exits[i])
            ):
                break
            if swap_on and _rollovers(ts, i, roll_offset) > 0:
                break
            shift = side_share * spread[i * s_step]
            if stops_on:
                adverse = (low[i] if d > 0.0 else high[i]) + shift
                favorable = (high[i] if d > 0.0 else low[i]) + shift
                stop = best - d * trail_px if trailing else fixed_stop
                if d * (adverse - stop) <= 0.0 or d * (favorable - tp) >= 0.0:
                    break
                if trailing and d * (favorable - best) > 0.0:
                    best = favorable
            mark = close[i] + shift
            r = to_account[i * r_step]
            acc += u * (mark - ref) * r
            ref = mark
            equity[i] = bal + acc
            position[i] = u
            if want_exposure:
                exposure[i] = abs(u) * mark * r / (bal + acc)
            i += 1
        trade[_T_BEST] = best

    if u != 0.0:
        held = abs(u)
        total = trade[_T_OUT_UNITS] + held
        trade[_T_EXIT_PX] += (ref - trade[_T_EXIT_PX]) * (held / total)
        trade[_T_PNL] += acc
        _push_record(recs, count, trade, -1, EXIT_OPEN)
        count += 1
    return recs[:count].copy()


def simulate(
    open_: Floats,
    high: Floats,
    low: Floats,
    close: Floats,
    spread: Floats,
    ts: Ints,
    to_account: Floats,
    entries: Bools,
    exits: Bools,
    short_entries: Bools,
    short_exits: Bools,
    target: Floats,
    cash: float,
    fees: float,
    commission_per_lot: float,
    contract_size: float,
    pip_size: float,
    buy_spread: float,
    sell_spread: float,
    slippage_pips: float,
    slippage_vol: float,
    swap_long_pips: float,
    swap_short_pips: float,
    rollover_hour: int,
    fill_next_open: bool,
    direction: int,
    sizing_kind: int,
    sizing_value: float,
    lookback: int,
    max_leverage: float,
    bars_per_year: float,
    stop_loss_pips: float,
    take_profit_pips: float,
    trailing_stop_pips: float,
) -> tuple[Floats, Floats, Floats]:
    """Simulate one instrument's account bar by bar; return ``(equity, position, trades)``.

    Plain arrays and numbers in and out, no validation (:func:`~pipelines.backtest.engine.run_backtest`
    validates): prices must be finite and positive and the arrays aligned. The semantics are
    those of :mod:`pipelines.backtest.engine`. The outputs are allocated here with NumPy (large
    NumPy allocations get huge pages, which matters at millions of bars); a sweep that wants
    to reuse its buffers calls :func:`simulate_into` instead.

    Parameters
    ----------
    open_, high, low, close
        float64 (n,): the bars' prices, quote currency per unit.
    spread
        float64 (n,) or (1,) for one value for every bar: the spread in price units.
    ts
        int64 (n,): bar open times in ns UTC; may be empty when there is no swap.
    to_account
        float64 (n,) or (1,): account currency per unit of quote currency.
    entries, exits, short_entries, short_exits
        bool (n,), or empty for a signal never given.
    target
        float64 (n,): signed fractions of the full size, NaN = keep; empty to use the events.
    cash
        Starting equity, account currency.
    fees, commission_per_lot
        Fraction of notional per leg; account currency per lot per leg.
    contract_size, pip_size
        Units per lot; price units per pip.
    buy_spread, sell_spread
        Share of the spread added to a buy and taken off a sell: bid bars 1 and 0, mid bars
        0.5 and 0.5, ask bars 0 and 1.
    slippage_pips, slippage_vol
        Adverse slippage ``slippage_pips × pip_size + slippage_vol × (high - low)`` per fill.
    swap_long_pips, swap_short_pips, rollover_hour
        Carry per unit per daily rollover, in pips; the rollover's UTC hour.
    fill_next_open
        Fill at the next bar's open instead of the signal bar's close.
    direction
        ``DIRECTION_BOTH``, ``DIRECTION_LONG`` or ``DIRECTION_SHORT``.
    sizing_kind, sizing_value, lookback, max_leverage, bars_per_year
        A ``SIZING_*`` code and the rule's parameters.
    stop_loss_pips, take_profit_pips, trailing_stop_pips
        Distances from the entry fill price in pips, NaN when unused; a stop loss and a
        trailing stop exclude each other.

    Returns
    -------
    equity : float64 (n,)
        Account currency at each bar's close.
    position : float64 (n,)
        Signed units held after each bar.
    trades : float64 (trades, TRADE_FIELDS)
        One row per trade, columns ``TR_*``; a position still open at the end is the last row,
        with exit index -1 and reason ``EXIT_OPEN``.
    """
    n = close.shape[0]
    equity = np.empty(n)
    position = np.empty(n)
    trades = simulate_into(
        equity, position, _NO_EXPOSURE, open_, high, low, close, spread, ts, to_account,
        entries, exits, short_entries, short_exits, target, float(cash), float(fees),
        float(commission_per_lot), float(contract_size), float(pip_size), float(buy_spread),
        float(sell_spread), float(slippage_pips), float(slippage_vol), float(swap_long_pips),
        float(swap_short_pips), int(rollover_hour), bool(fill_next_open), int(direction),
        int(sizing_kind), float(sizing_value), int(lookback), float(max_leverage),
        float(bars_per_year), float(stop_loss_pips), float(take_profit_pips),
        float(trailing_stop_pips),
    )  # fmt: skip
    return equity, position, trades


@_jit
def _any_bad_price(x: Floats) -> bool:  # pragma: no cover
    bad = False
    for i in range(x.shape[0]):
        v = x[i]
        # Without branches, so that the loop vectorizes; NaN is the one value unequal to itself.
        bad |= (v <= 0.0) | (v != v) | (v == np.inf)
    return bad


@_jit
def bars_ok(
    raw_ts: Ints,
    per_unit: int,
    ts: Ints,
    open_: Floats,
    high: Floats,
    low: Floats,
    close: Floats,
    ohl: bool,
) -> bool:  # pragma: no cover
    """Convert and check the bars: ``ts = raw_ts × per_unit``, ordered, prices positive.

    Return whether ``raw_ts`` strictly increases and the prices are finite and positive: the
    close always, the open, high and low when ``ohl``; :func:`first_bad_bar` then finds the
    culprit. ``ts`` is written only when ``per_unit`` is not 1 (it may then be empty). The raw
    timestamps are read once.
    """
    n = raw_ts.shape[0]
    bad = False
    if per_unit == 1:
        for i in range(1, n):
            bad |= raw_ts[i] <= raw_ts[i - 1]
    elif n > 0:
        ts[0] = raw_ts[0] * per_unit
        for i in range(1, n):
            bad |= raw_ts[i] <= raw_ts[i - 1]
            ts[i] = raw_ts[i] * per_unit
    bad |= _any_bad_price(close)
    if ohl:
        bad |= _any_bad_price(open_) | _any_bad_price(high) | _any_bad_price(low)
    return not bad


@_jit
def first_bad_bar(
    ts: Ints, open_: Floats, high: Floats, low: Floats, close: Floats, ohl: bool
) -> tuple[int, int]:  # pragma: no cover
    """Return the first bad bar and why, ``(-1, 0)`` when every bar is fine.

    Reasons: 1, ``ts`` not after the bar before; 2, a price not finite and positive (the close,
    and the open, high and low when ``ohl``).
    """
    for i in range(close.shape[0]):
        if i > 0 and ts[i] <= ts[i - 1]:
            return i, 1
        # NaN fails every comparison, inf the upper bound.
        if not 0.0 < close[i] < np.inf:
            return i, 2
        if ohl and not (
            0.0 < open_[i] < np.inf and 0.0 < high[i] < np.inf and 0.0 < low[i] < np.inf
        ):
            return i, 2
    return -1, 0

"""Vectorized backtest: one instrument, one pass over its bars, costs and stops included.

:func:`run_backtest` takes bars, a strategy's :class:`~models.strategies.base.Signals` and a
:class:`~pipelines.backtest.config.BacktestConfig` and returns a :class:`BacktestResult`
(equity, position and exposure per bar, one row per trade). :func:`simulate` is its compiled
core on plain NumPy arrays, for sweeps that call it thousands of times (:func:`simulate_into`
writes into buffers the caller keeps); both are documented in :mod:`pipelines.backtest._kernels`.

Signals
    *Events* behave as vectorbt's ``Portfolio.from_signals`` with its defaults: when flat, an
    entry (``entries`` long, ``short_entries`` short) opens a full position; in a position, the
    matching exit closes it. An entry and an exit of one side on the same bar cancel each other,
    as do a long and a short entry on the same bar. With ``direction="both"`` a short entry
    while long (or a long entry while short) reverses: the position is closed (exit reason
    ``"reverse"``) and a full one opened the other way. With ``"long"`` or ``"short"`` the other
    side's signals are ignored; ``direction="long"`` with only ``entries``/``exits`` is
    vectorbt's long-only mode. Unlike vectorbt's ``direction="both"``, ``exits`` only ever close
    longs: shorts come from ``short_entries`` alone.
    A *target* is the wanted position as a signed fraction of the sizing rule's full size,
    NaN keeping the last one. The position is rebalanced only on the bars where the target
    changes (to ``target × full size`` at that fill; a change of sign closes the trade and opens
    a new one). ``"long"`` clips targets at 0 from below, ``"short"`` from above. A trade closed
    by a stop is not reopened until the target changes.

Fills
    ``fill="close"``: at the signal bar's close. ``fill="next_open"``: at the next bar's open; a
    signal on the last bar is not filled. Decisions use the position held at the signal bar's
    close. Every fill is whole (no partial fills, no margin calls).

Prices
    ``side`` says which price the bars carry. With spread ``s``: ``bid`` series buy at
    ``price + s`` and sell at ``price``; ``mid`` buy at ``price + s/2`` and sell at
    ``price - s/2``; ``ask`` buy at ``price`` and sell at ``price - s``. ``s`` is the bars'
    ``spread`` column (nulls count as 0) when ``costs.spread_from_data``, else
    ``costs.spread_pips × pip_size``. Longs are valued at the sell (bid) price, shorts at the buy
    (ask) price, so a position opened at the close shows its spread as an immediate loss.

Costs
    Per leg: ``fees × notional`` and ``commission_per_lot × units / contract_size`` (account
    currency). Slippage ``slippage_pips × pip_size + slippage_vol × (high - low)`` of the fill
    bar moves every market fill and every stop fill against the trade; a take-profit is a limit
    and fills at its level without slippage. Swap: ``units × swap_{long,short}_pips ×
    pip_size × to_account`` is credited (a negative value charged) for each daily rollover, at
    ``rollover_hour`` UTC, that falls inside a bar (from its open time to the next bar's; the
    last bar lasts as long as the one before) on the position held during that bar, that is
    after a fill at its open and before a fill at its close. Weekends count their calendar
    nights (the Friday, Saturday and Sunday rollovers fall inside Friday's last bar) instead of
    a triple Wednesday: the same seven nights a week. Spread and slippage default to 0.

Stops
    Distances in pips from the entry fill price: a stop loss (``entry ∓ sl``), a take profit
    (``entry ± tp``) and a trailing stop at ``trail`` pips from the best price since entry (the
    entry fill price, then the highest bid high for longs, the lowest ask low for shorts). They
    are checked inside each bar after the fill, from its OHLC: longs against the bid (bar price
    minus the sell share of the spread), shorts against the ask (plus the buy share). A level
    already crossed at the open fills at the open (a gap through the level). When the stop and
    the take profit could both have been hit inside one bar, the stop is assumed to have been
    hit first (the conservative reading of an OHLC bar). The trailing level used in a bar is the
    one set by the bars before it; the bar's own high (low) raises (lowers) it afterwards. A
    position filled at a close is first checked on the next bar, one filled at an open on that
    same bar. A stop exit leaves the bar's own signals to act at its close. Later additions to a
    position (targets) keep the stops of its first entry.

Sizing (``config.sizing``, at the fill price, with equity ``E`` at the fill)
    ``all-in``: ``units = (E / (1 + fees)) / price`` (vectorbt's ``size=np.inf``; commissions
    are also kept out of ``E``), no leverage. ``lots:N``: ``N × contract_size`` units.
    ``fraction:F``: notional ``F × E``. ``vol-target:X``: notional ``E × X / σ`` capped at
    ``max_leverage × E``, with ``σ`` the sample standard deviation (ddof 1) of the last
    ``lookback`` close-to-close log returns up to the signal bar, × √``bars_per_year``; no
    position is opened before ``lookback`` returns exist. ``kelly:F``: notional ``E × F × k``,
    ``k = p - (1 - p) / b`` clipped to ``[0, max_leverage]`` from the strategy's own closed
    trades so far (``p`` the share of trades with a positive return, ``b`` the mean positive
    return over the mean size of the negative ones, returns being pnl / entry notional); until
    20 trades have closed, notional ``E × F``. Money is turned into units with ``to_account``.
    A non-positive equity opens nothing.

Money and currencies
    Equity is ``balance + accrued P&L`` in account currency at each bar's close; for a
    ``to_account`` of 1 it equals vectorbt's cash + position value. Simplifications: the
    conversion rate is taken at each bar's close (at the previous close for fills at an open),
    and the P&L is converted as it accrues, bar by bar, not at the rate of the day it is closed.

Trades
    One row per position from entry to flat or reversal: ``entry_ts``/``exit_ts`` are the open
    times of the fill bars, ``units`` the largest size held, ``entry_price``/``exit_price`` the
    units-weighted mean fill prices, ``pnl`` in account currency net of every cost of the trade
    (fees, commissions, spread, slippage, swap), ``return = pnl / entry notional`` (account
    currency), ``costs`` = fees + commissions + half the spread per leg + slippage - swap
    credited, ``bars_held`` = exit bar - entry bar. A position still open at the end is not
    closed: it is valued at the last close (its sell or buy price) and listed with exit reason
    ``"open"``, a null ``exit_ts`` and no exit costs, as vectorbt's ``pf.trades.count()`` counts
    it.

Input checks
    Timestamps must strictly increase; the prices the run reads (the close; the open, high and
    low too when fills at the open, stops or range slippage read them) must be finite and
    positive; signal arrays, ``to_account`` and ``spread`` must align with the bars. A failed
    check raises :class:`~core.errors.UsageError` naming the row.

Speed
    The compiled loop runs a full step only on the bars where something can happen (a signal,
    a fill at the open, a rollover, a bar reaching a stop level) and fast-forwards through the
    others, marking the position; trade records go to an array sized once from the number of
    entry signals. On millions of bars the cost is mostly writing the three output series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl

from core.errors import UsageError
from core.instruments import CURRENCIES, OTHER_CURRENCIES
from core.types import Instrument
from models.strategies.base import Signals
from pipelines.backtest import _kernels
from pipelines.backtest._kernels import EXIT_REASONS, simulate, simulate_into
from pipelines.backtest.config import BacktestConfig

__all__ = [
    "EXIT_REASONS",
    "BacktestResult",
    "conversion_pair",
    "quote_to_account",
    "run_backtest",
    "simulate",
    "simulate_into",
]

# (share of the spread added to a buy, share taken off a sell) per price side of the bars.
SPREAD_SHARES: Final = {"bid": (1.0, 0.0), "mid": (0.5, 0.5), "ask": (0.0, 1.0)}
DIRECTIONS: Final = {
    "both": _kernels.DIRECTION_BOTH,
    "long": _kernels.DIRECTION_LONG,
    "short": _kernels.DIRECTION_SHORT,
}
SIZINGS: Final = {
    "all-in": _kernels.SIZING_ALL_IN,
    "lots": _kernels.SIZING_LOTS,
    "fraction": _kernels.SIZING_FRACTION,
    "vol-target": _kernels.SIZING_VOL_TARGET,
    "kelly": _kernels.SIZING_KELLY,
}
PRICE_COLUMNS: Final = ("open", "high", "low", "close")
STAMP: Final = pl.Datetime("ns", "UTC")
TRADE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "entry_ts": STAMP,
    "exit_ts": STAMP,
    "direction": pl.String(),
    "units": pl.Float64(),
    "entry_price": pl.Float64(),
    "exit_price": pl.Float64(),
    "pnl": pl.Float64(),
    "return": pl.Float64(),
    "costs": pl.Float64(),
    "exit_reason": pl.String(),
    "bars_held": pl.Int64(),
}

Floats = npt.NDArray[np.float64]
Prices = tuple[Floats, Floats, Floats, Floats]
Events = tuple[
    npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]
]
Array = TypeVar("Array", bound=np.ndarray)


@dataclass(frozen=True)
class BacktestResult:
    """What a backtest produced, one value per bar plus one row per trade.

    Attributes
    ----------
    ts : int64 ns UTC open time of each bar.
    equity : account currency at each bar's close.
    position : signed units held after each bar's close.
    exposure : gross notional / equity at each bar's close (account currency).
    trades : one row per trade (see the module's documentation for the columns).
    config : the settings the backtest ran with.
    """

    ts: npt.NDArray[np.int64]
    equity: Floats
    position: Floats
    exposure: Floats
    trades: pl.DataFrame
    config: BacktestConfig

    def returns(self) -> Floats:
        """Return per-bar simple returns ``(equity_t - equity_{t-1}) / |equity_{t-1}|``.

        The first bar is measured against the starting cash. As in vectorbt, a bar from 0 to 0
        returns 0 and one from 0 to anything else ±inf.
        """
        before = np.empty_like(self.equity)
        if before.shape[0]:
            before[0] = self.config.cash
            before[1:] = self.equity[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (self.equity - before) / np.abs(before)
        out[(before == 0.0) & (self.equity == 0.0)] = 0.0
        return out


def _rank(currency: str) -> int:
    order = CURRENCIES + OTHER_CURRENCIES
    return order.index(currency) if currency in order else len(order)


def conversion_pair(quote: str, account: str) -> str:
    """Return the conventional name of the pair of two currencies (``GBPUSD``, ``USDJPY``)."""
    if _rank(quote) <= _rank(account):
        return f"{quote}{account}"
    return f"{account}{quote}"


def quote_to_account(
    instrument: Instrument,
    account_currency: str,
    bars: pl.DataFrame,
    other_close: npt.NDArray[np.float64] | None = None,
) -> Floats | float:
    """Return the account currency one unit of ``instrument``'s quote currency is worth, per bar.

    - quote = account (EURUSD in a USD account): ``1.0``.
    - base = account (USDJPY in a USD account): ``1 / close`` of the bars themselves.
    - otherwise: from ``other_close``, the close series of the conventional pair joining the
      two currencies, aligned with ``bars``: ``close`` when the pair is quote/account (GBPUSD
      for EURGBP in a USD account), ``1 / close`` when it is account/quote (USDJPY for EURJPY).

    Raises
    ------
    UsageError
        When the conversion series is needed but missing, misaligned or not positive; the
        message names the pair to load.
    """
    account = account_currency.upper()
    quote = instrument.quote.upper()
    if quote == account:
        return 1.0
    if instrument.base.upper() == account:
        close = _price_column(bars, "close")
        if not (np.isfinite(close).all() and (close > 0).all()):
            raise UsageError(f"{instrument.symbol}: every close must be finite and positive")
        return 1.0 / close
    pair = conversion_pair(quote, account)
    if other_close is None:
        msg = (
            f"{instrument.symbol}: converting {quote} into the {account} account needs the "
            f"{pair} close series aligned with the bars; pass it as other_close"
        )
        raise UsageError(msg)
    series = np.asarray(other_close, dtype=np.float64)
    if series.shape != (bars.height,):
        msg = (
            f"{instrument.symbol}: the {pair} close series has {series.shape[0]} values for "
            f"{bars.height} bars; align it with the bars"
        )
        raise UsageError(msg)
    if not (np.isfinite(series).all() and (series > 0).all()):
        raise UsageError(f"{pair} close series: every value must be finite and positive")
    return series if pair.startswith(quote) else 1.0 / series


def _read_only(array: Array) -> Array:
    # One array type (C-contiguous, read-only: what Polars hands out) for every call, so the
    # kernel is compiled once.
    view = np.ascontiguousarray(array).view()
    view.flags.writeable = False
    return view  # type: ignore[return-value]


def _price_column(bars: pl.DataFrame, name: str) -> Floats:
    if name not in bars.columns:
        msg = f"bars: column {name!r} is missing; bars need ts, open, high, low, close"
        raise UsageError(msg)
    try:
        column = bars.get_column(name).cast(pl.Float64)
    except pl.exceptions.InvalidOperationError:
        msg = f"bars: column {name!r} is {bars.schema[name]}, not a number"
        raise UsageError(msg) from None
    return column.to_numpy()


def _raw_timestamps(bars: pl.DataFrame) -> tuple[npt.NDArray[np.int64], int]:
    """Return the ``ts`` column's integers as stored and the nanoseconds in one of them."""
    if "ts" not in bars.columns:
        raise UsageError("bars: column 'ts' is missing; bars need ts, open, high, low, close")
    column = bars.get_column("ts")
    if not isinstance(column.dtype, pl.Datetime):
        raise UsageError(f"bars: column 'ts' is {column.dtype}, expected a UTC Datetime")
    if column.null_count():
        raise UsageError("bars: column 'ts' has nulls")
    per_unit = {"ns": 1, "us": 1_000, "ms": 1_000_000}[column.dtype.time_unit or "us"]
    return _read_only(column.to_physical().to_numpy()), per_unit


def _checked_timestamps(
    bars: pl.DataFrame, prices: Prices, config: BacktestConfig
) -> npt.NDArray[np.int64]:
    """Return the bars' open times in ns after checking them and the prices the run reads."""
    raw, per_unit = _raw_timestamps(bars)
    # NumPy allocates the converted copy: its large allocations get huge pages.
    converted = np.empty(0 if per_unit == 1 else raw.shape[0], dtype=np.int64)
    # The open, high and low are read by fills at the open, stops and range slippage only.
    ohl = (
        config.fill == "next_open"
        or config.stop_loss_pips is not None
        or config.take_profit_pips is not None
        or config.trailing_stop_pips is not None
        or config.costs.slippage_vol > 0
    )
    if _kernels.bars_ok(raw, per_unit, converted, *prices, ohl):
        return raw if per_unit == 1 else _read_only(converted)
    bad, reason = _kernels.first_bad_bar(raw, *prices, ohl)
    when = bars.get_column("ts")[bad]
    if reason == 1:
        msg = f"bars: ts at row {bad} ({when}) is not after the row before; sort the bars"
        raise UsageError(msg)
    values = ", ".join(f"{name} {p[bad]}" for name, p in zip(PRICE_COLUMNS, prices, strict=True))
    msg = (
        f"bars: row {bad} ({when}) has {values}; prices must be finite and positive: drop or "
        f"repair the row"
    )
    raise UsageError(msg)


def _spread(bars: pl.DataFrame, config: BacktestConfig, instrument: Instrument) -> Floats:
    costs = config.costs
    if not costs.spread_from_data:
        return np.array([costs.spread_pips * instrument.pip_size])
    if "spread" not in bars.columns:
        msg = (
            "bars: costs.spread_from_data needs a 'spread' column (price units); load a series "
            "that carries one or give costs.spread_pips instead"
        )
        raise UsageError(msg)
    spread = bars.get_column("spread").cast(pl.Float64).fill_nan(0.0).fill_null(0.0).to_numpy()
    bad = np.flatnonzero(~(np.isfinite(spread) & (spread >= 0)))
    if bad.size:
        raise UsageError(f"bars: spread at row {bad[0]} is {spread[bad[0]]}; it must be >= 0")
    return spread


def _events(signals: Signals, n: int) -> Events:
    def read(name: str) -> npt.NDArray[np.bool_]:
        given = getattr(signals, name)
        if given is None:
            return _read_only(np.zeros(0, dtype=np.bool_))
        array = np.asarray(given)
        _check_length(f"signals.{name}", array, n)
        if array.dtype.kind == "f":
            array = np.nan_to_num(array, nan=0.0) != 0.0
        return _read_only(array.astype(np.bool_, copy=False))

    return read("entries"), read("exits"), read("short_entries"), read("short_exits")


def _check_length(what: str, array: np.ndarray, n: int) -> None:
    if array.ndim != 1 or array.shape[0] != n:
        msg = f"{what} has {array.shape} values for {n} bars; align the signals with the bars"
        raise UsageError(msg)


def _rates(to_account: Floats | float, n: int) -> Floats:
    rates = np.atleast_1d(np.asarray(to_account, dtype=np.float64))
    if rates.ndim != 1 or rates.shape[0] not in (1, n):
        msg = f"to_account has {rates.shape} values for {n} bars; give a number or one per bar"
        raise UsageError(msg)
    bad = np.flatnonzero(~(np.isfinite(rates) & (rates > 0)))
    if bad.size:
        msg = f"to_account at row {bad[0]} is {rates[bad[0]]}; it must be finite and positive"
        raise UsageError(msg)
    return rates


def _trades_frame(recs: Floats, ts: npt.NDArray[np.int64]) -> pl.DataFrame:
    if recs.shape[0] == 0:
        return pl.DataFrame(schema=TRADE_SCHEMA)
    entry_idx = recs[:, _kernels.TR_ENTRY_IDX].astype(np.int64)
    exit_idx = recs[:, _kernels.TR_EXIT_IDX].astype(np.int64)
    is_open = exit_idx < 0
    held_to = np.where(is_open, ts.shape[0] - 1, exit_idx)
    exit_ts = pl.Series("exit_ts", ts[held_to]).cast(STAMP)
    if is_open.any():
        exit_ts = exit_ts.scatter(np.flatnonzero(is_open), None)
    directions = pl.Series("direction", ["short", "long"], dtype=pl.String)
    reasons = pl.Series("exit_reason", EXIT_REASONS, dtype=pl.String)
    return pl.DataFrame(
        [
            pl.Series("entry_ts", ts[entry_idx]).cast(STAMP),
            exit_ts,
            directions.gather(recs[:, _kernels.TR_DIRECTION] > 0),
            pl.Series("units", recs[:, _kernels.TR_UNITS]),
            pl.Series("entry_price", recs[:, _kernels.TR_ENTRY_PRICE]),
            pl.Series("exit_price", recs[:, _kernels.TR_EXIT_PRICE]),
            pl.Series("pnl", recs[:, _kernels.TR_PNL]),
            pl.Series("return", recs[:, _kernels.TR_RETURN]),
            pl.Series("costs", recs[:, _kernels.TR_COSTS]),
            reasons.gather(recs[:, _kernels.TR_EXIT_REASON].astype(np.int64)),
            pl.Series("bars_held", held_to - entry_idx),
        ]
    )


def _stop(pips: float | None) -> float:
    return math.nan if pips is None else float(pips)


def run_backtest(
    bars: pl.DataFrame,
    signals: Signals,
    instrument: Instrument,
    config: BacktestConfig,
    *,
    side: str = "bid",
    bars_per_year: float,
    to_account: Floats | float = 1.0,
) -> BacktestResult:
    """Backtest ``signals`` on ``bars`` of ``instrument`` with the costs, fills and sizing of ``config``.

    Parameters
    ----------
    bars
        ``ts`` (UTC Datetime, bar open time, strictly increasing), ``open``, ``high``, ``low``,
        ``close``, optionally ``spread`` (price units, nulls as 0) and ``volume`` (unused).
    signals
        Event signals or a target, aligned with ``bars``.
    instrument
        Pip size and contract size of what is traded.
    config
        Cash, costs, fill, direction, sizing and stops.
    side
        The price side of the bars: ``"bid"``, ``"mid"`` or ``"ask"``.
    bars_per_year
        Bars in a year, to annualize volatility for ``vol-target`` sizing.
    to_account
        Account currency per unit of quote currency, a number or one value per bar
        (see :func:`quote_to_account`).

    Returns
    -------
    BacktestResult
        Equity, position and exposure per bar and the trades; the semantics are in this
        module's documentation.

    Raises
    ------
    UsageError
        On missing columns, misaligned signals or conversion rates, unordered timestamps, a
        price the run reads that is not finite and positive (the close always; the open, high
        and low when fills at the open, stops or range slippage read them), a missing spread
        column when the costs read the spread from the data, or an unknown side.
    """
    if side not in SPREAD_SHARES:
        raise UsageError(f"side {side!r}: expected 'bid', 'mid' or 'ask'")
    if not (math.isfinite(bars_per_year) and bars_per_year > 0):
        raise UsageError(f"bars_per_year {bars_per_year}: must be a positive number")
    n = bars.height
    if len(signals) != n:
        msg = f"signals have {len(signals)} values for {n} bars; align the signals with the bars"
        raise UsageError(msg)
    prices: Prices = (
        _read_only(_price_column(bars, "open")),
        _read_only(_price_column(bars, "high")),
        _read_only(_price_column(bars, "low")),
        _read_only(_price_column(bars, "close")),
    )
    ts = _checked_timestamps(bars, prices, config)
    spread = _read_only(_spread(bars, config, instrument))
    rates = _read_only(_rates(to_account, n))
    events = _events(signals, n)
    if signals.target is None:
        target = np.zeros(0)
    else:
        target = np.asarray(signals.target, dtype=np.float64)
        _check_length("signals.target", target, n)
        if np.isinf(target).any():
            raise UsageError("signals.target has infinite values; use fractions of the full size")
    buy_share, sell_share = SPREAD_SHARES[side]
    costs = config.costs
    sizing = config.sizing
    # NumPy allocates the outputs: large NumPy arrays get huge pages, which halves the cost of
    # touching them for the first time at millions of bars.
    equity, position, exposure = np.empty(n), np.empty(n), np.empty(n)
    recs = simulate_into(
        equity,
        position,
        exposure,
        *prices,
        spread,
        ts,
        rates,
        *events,
        _read_only(target),
        float(config.cash),
        float(costs.fees),
        float(costs.commission_per_lot),
        float(instrument.contract_size),
        float(instrument.pip_size),
        buy_share,
        sell_share,
        float(costs.slippage_pips),
        float(costs.slippage_vol),
        float(costs.swap_long_pips),
        float(costs.swap_short_pips),
        int(costs.rollover_hour),
        config.fill == "next_open",
        DIRECTIONS[config.direction],
        SIZINGS[sizing.kind],
        float(sizing.value),
        int(sizing.lookback),
        float(sizing.max_leverage),
        float(bars_per_year),
        _stop(config.stop_loss_pips),
        _stop(config.take_profit_pips),
        _stop(config.trailing_stop_pips),
    )
    return BacktestResult(
        ts=ts,
        equity=equity,
        position=position,
        exposure=exposure,
        trades=_trades_frame(recs, ts),
        config=config,
    )

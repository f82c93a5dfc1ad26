"""The simulated MT4 account the simulator answers trade commands from.

:class:`SimTerminal` is what the expert advisor sees inside MetaTrader 4: tickets, open trades
and pending orders, the account, the closed-trade history. Pure code: quotes and commands in,
replies out (:meth:`SimTerminal.handle`), no socket, no clock of its own (``now`` is given).

Its rules, MT4's where MT4 has one:

- **Tickets** start at :attr:`TerminalConfig.ticket_base` and grow by one per order; the rest
  of a partly closed trade gets a new ticket, as MT4 gives it.
- **Fills.** A market buy fills at the ask and a sell at the bid, each plus the cost model's
  fixed slippage (:meth:`execution.costs.CostModel.slip`, as the paper broker charges it);
  commission per lot and swap per rollover are the cost model's too. A pending order triggers
  on the quote (buy limit: ask at or below its price; sell limit: bid at or above; buy stop:
  ask at or above; sell stop: bid at or below) and fills at that quote.
- **SL and TP** arrive in points (``10 ** -digits``) from the fill price (OPEN), from PRICE or
  the open price (MODIFY); a level nearer the market than :attr:`TerminalConfig.stop_level`
  points, or on the wrong side, is refused with MT4's error 130. Longs are closed at the bid
  when it reaches the SL or the TP, shorts at the ask; the comment gets ``[sl]`` or ``[tp]``.
- **Money** in the account currency: P&L is (close - open) x units x the quote currency's value
  (1 for EURUSD in a USD account, 1 / USDJPY for USDJPY, the joining pair's quote otherwise);
  margin is notional / leverage, the paper broker's rule, at the open price; free margin is
  equity minus margin. An order whose margin exceeds the free margin is refused (134).
- **EA inputs** ``max_orders`` and ``max_lot_size`` (None: no limit; the DWX EA's defaults of 1
  order and 0.01 lot are not copied) refuse an order with the EA's codes.
- **State.** What lives at the broker (balance, open trades and pending orders, the history,
  the next ticket) is :meth:`SimTerminal.state`, a :class:`TerminalState` that
  :meth:`SimTerminal.restore` takes back, so a simulator restarted on a saved account goes on
  where it was; :attr:`SimTerminal.revision` counts the changes of that state (an order opened,
  modified, triggered or closed; the balance), so its keeper knows when to save it.
- **Faults** (:class:`execution.brokers.mt4.replay.FaultPlan`): ``context_busy`` answers a
  trade command with ``TRADE_CONTEXT_BUSY__``, ``reject_trade`` with a requote (138); with
  :attr:`SimTerminal.broker_connected` False every order command is aborted as the EA aborts it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from core.clocks import BROKER_NY_CLOSE
from core.errors import UsageError
from core.times import ns_from_utc
from core.types import Instrument, Side
from execution.brokers.mt4.protocol import (
    BAD_COMMAND,
    MAX_LOT_SIZE_EXCEEDED,
    MAX_ORDERS_REACHED,
    NO_BROKER_CONNECTION,
    NOT_AVAILABLE,
    TRADE_CONTEXT_BUSY,
    CloseResponse,
    Command,
    GetHistoryCommand,
    HeartbeatCommand,
    MT4Error,
    OrderKind,
    Reply,
    TradeAction,
    TradeCommand,
    account_reply,
    close_all_reply,
    close_reply,
    closed_entry,
    closed_trade,
    error_entry,
    error_reply,
    execution_reply,
    heartbeat_reply,
    history_reply,
    modify_reply,
    open_trade,
    open_trades_reply,
)
from execution.brokers.mt4.replay import FaultPlan
from execution.costs import CostModel
from pipelines.backtest.config import BacktestConfig
from pipelines.backtest.engine import conversion_pair

#: The first ticket a fresh terminal hands out.
TICKET_BASE: Final = 51234567
#: The MT4 error a ``reject_trade`` fault answers with: the price moved, ask again.
REJECT_CODE: Final = MT4Error.REQUOTE
#: The columns of the closed-trade history (:meth:`SimTerminal.history_frame`).
HISTORY_COLUMNS: Final = (
    "ticket", "symbol", "type", "lots", "open_time", "open_price", "close_time", "close_price",
    "sl", "tp", "pnl", "swap", "commission", "magic", "comment",
)  # fmt: skip
_LOT_EPS = 1e-9
_ORDER_ACTIONS = {
    TradeAction.OPEN: "EXECUTION",
    TradeAction.MODIFY: "MODIFY",
    TradeAction.CLOSE: "CLOSE",
    TradeAction.CLOSE_PARTIAL: "CLOSE",
    TradeAction.CLOSE_MAGIC: "CLOSE_ALL_MAGIC",
    TradeAction.CLOSE_ALL: "CLOSE_ALL",
}


class TerminalConfig(BaseModel):
    """The simulated account: money, leverage, the EA's inputs, the broker's stop level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cash: float = Field(default=10_000.0, gt=0)
    leverage: int = Field(default=30, gt=0)
    currency: str = "USD"
    account_number: int = 2090117
    account_name: str = "Solo Trader"
    ticket_base: int = Field(default=TICKET_BASE, gt=0)
    max_orders: int | None = Field(default=None, ge=0)
    max_lot_size: float | None = Field(default=None, gt=0)
    min_lot: float = Field(default=0.01, gt=0)
    stop_level: int = Field(default=10, ge=0, description="points")
    clock: str = BROKER_NY_CLOSE


@dataclass(frozen=True, slots=True)
class TerminalOrder:
    """An open trade or a pending order: ``sl`` and ``tp`` are price levels (0 for none)."""

    ticket: int
    symbol: str
    kind: OrderKind
    lots: float
    open_price: float
    open_time: datetime
    sl: float
    tp: float
    magic: int
    comment: str


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A trade (or part of one) closed: its P&L, swap and commission in the account currency."""

    order: TerminalOrder
    close_price: float
    close_time: datetime
    pnl: float
    swap: float
    commission: float


class TerminalState(BaseModel):
    """What a simulated account keeps across restarts: what MT4 keeps at the broker.

    ``cash`` and ``currency`` are the account's deposit and currency when it was opened;
    ``next_ticket`` the ticket the next order gets; ``history`` the closed trades, each with
    its ticket, in the order they closed. Times are UTC.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cash: float = Field(gt=0)
    currency: str
    balance: float
    next_ticket: int = Field(gt=0)
    orders: tuple[TerminalOrder, ...] = ()
    history: tuple[tuple[int, ClosedTrade], ...] = ()


class SimTerminal:
    """The simulated MT4 account: orders, quotes, money, history.

    Parameters
    ----------
    config
        The account and the EA's inputs.
    instruments
        The symbols the terminal trades (its Market Watch), by their MT4 names.
    costs
        Each symbol's :class:`execution.costs.CostModel`; missing ones cost nothing beyond the
        spread of the quotes.
    faults
        The fault plan whose ``context_busy`` and ``reject_trade`` strike trade commands.
    """

    def __init__(
        self,
        config: TerminalConfig,
        instruments: Mapping[str, Instrument],
        *,
        costs: Mapping[str, CostModel] | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        self.config = config
        self.instruments = dict(instruments)
        self.costs = {
            s: (costs or {}).get(s) or CostModel.of(BacktestConfig(), inst, Side.BID)
            for s, inst in self.instruments.items()
        }
        self.faults = faults or FaultPlan()
        #: Whether the terminal is connected to its broker (False aborts order commands).
        self.broker_connected = True
        self.balance = config.cash
        self.quotes: dict[str, tuple[float, float]] = {}
        self.orders: dict[int, TerminalOrder] = {}
        self.history: list[tuple[int, ClosedTrade]] = []
        self._next_ticket = config.ticket_base
        self._revision = 0

    # -- state ----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """Return how many times the account's state (:meth:`state`) has changed so far."""
        return self._revision

    @property
    def next_ticket(self) -> int:
        """Return the ticket the next order (or the rest of a partly closed trade) gets."""
        return self._next_ticket

    def state(self) -> TerminalState:
        """Return the account as the broker keeps it (:class:`TerminalState`)."""
        return TerminalState(
            cash=self.config.cash, currency=self.config.currency, balance=self.balance,
            next_ticket=self._next_ticket, orders=tuple(self.orders[t] for t in sorted(self.orders)),
            history=tuple(self.history),
        )  # fmt: skip

    def restore(self, state: TerminalState) -> None:
        """Take back an account saved by :meth:`state`: balance, orders, history, tickets.

        The deposit (``cash``) becomes the saved one; leverage, stop level and the EA's inputs
        stay this terminal's.

        Raises
        ------
        UsageError
            If the saved account is in another currency, holds orders on symbols this terminal
            does not trade, or its next ticket is not above every ticket it holds.
        """
        if state.currency.upper() != self.config.currency.upper():
            msg = (
                f"the saved account is in {state.currency}, this terminal in "
                f"{self.config.currency}: set account_currency to {state.currency} or use "
                "another account"
            )
            raise UsageError(msg)
        missing = sorted({o.symbol for o in state.orders} - set(self.instruments))
        if missing:
            msg = (
                f"the saved account holds orders on {', '.join(missing)}, which this terminal "
                "does not trade: add them to the symbols"
            )
            raise UsageError(msg)
        tickets = [o.ticket for o in state.orders] + [t for t, _ in state.history]
        if tickets and state.next_ticket <= max(tickets):
            msg = (
                f"the saved account's next ticket {state.next_ticket} is not above its ticket "
                f"{max(tickets)}: the account's file is damaged"
            )
            raise UsageError(msg)
        self.config = self.config.model_copy(update={"cash": state.cash})
        self.balance = state.balance
        self.orders = {o.ticket: _utc_order(o) for o in state.orders}
        self.history = [
            (t, replace(d, order=_utc_order(d.order), close_time=d.close_time.astimezone(UTC)))
            for t, d in state.history
        ]
        self._next_ticket = state.next_ticket
        self._revision += 1

    def set_quote(self, symbol: str, bid: float, ask: float) -> None:
        """Take a quote as the current one without acting on it (no trigger, no SL or TP).

        For the last quote a restored account had already seen and acted on.
        """
        self.quotes[symbol] = (bid, ask)

    # -- quotes ---------------------------------------------------------------------------

    def on_quote(self, symbol: str, bid: float, ask: float, now: datetime) -> list[ClosedTrade]:
        """Take a new quote: trigger pending orders, then SL and TP; return the trades closed."""
        self.quotes[symbol] = (bid, ask)
        closed: list[ClosedTrade] = []
        for ticket, order in list(self.orders.items()):
            if order.symbol != symbol:
                continue
            if order.kind.is_pending:
                if _pending_triggered(order, bid, ask):
                    buy = order.kind in (OrderKind.BUY_LIMIT, OrderKind.BUY_STOP)
                    kind = OrderKind.BUY if buy else OrderKind.SELL
                    self.orders[ticket] = replace(
                        order, kind=kind, open_price=ask if buy else bid, open_time=now
                    )
                    self._revision += 1
                continue
            buy = order.kind is OrderKind.BUY
            mark = bid if buy else ask
            hit_sl = order.sl > 0 and (mark <= order.sl if buy else mark >= order.sl)
            hit_tp = order.tp > 0 and (mark >= order.tp if buy else mark <= order.tp)
            if hit_sl or hit_tp:
                note = "[sl]" if hit_sl else "[tp]"
                tagged = replace(order, comment=(order.comment + note)[:31])
                self.orders[ticket] = tagged
                closed.append(self._close(ticket, order.lots, now))
        return closed

    # -- commands -------------------------------------------------------------------------

    def handle(self, command: Command, now: datetime) -> Reply:
        """Return the EA's answer to a command at ``now`` (UTC), changing the account as MT4 does.

        Trade commands, ``GET_HISTORY`` and ``HEARTBEAT`` are the terminal's; anything else is
        the server's (HIST, TRACK_*, HELLO) and is answered :data:`BAD_COMMAND`.
        """
        if isinstance(command, HeartbeatCommand):
            return heartbeat_reply()
        if isinstance(command, GetHistoryCommand):
            return self._history_reply(command)
        if not isinstance(command, TradeCommand):
            return error_reply(type(command).__name__, BAD_COMMAND)
        action = command.action
        if action is TradeAction.GET_OPEN_TRADES:
            return open_trades_reply(
                {t: self._open_entry(o) for t, o in sorted(self.orders.items())}
            )
        if action is TradeAction.GET_ACCOUNT_INFO:
            return self._account_reply(now)
        name = _ORDER_ACTIONS[action]
        # Both faults draw on every order command, so a run's draws do not depend on outcomes.
        busy = self.faults.context_busy()
        rejected = self.faults.reject_trade()
        if busy:
            return error_reply(name, TRADE_CONTEXT_BUSY)
        if not self.broker_connected:
            return error_reply(name, NO_BROKER_CONNECTION)
        if rejected:
            return error_reply(name, int(REJECT_CODE))
        if action is TradeAction.OPEN:
            return self._open(command, now)
        if action is TradeAction.MODIFY:
            return self._modify(command)
        if action in (TradeAction.CLOSE, TradeAction.CLOSE_PARTIAL):
            return self._close_reply(command, now)
        return self._close_many(command, now)

    # -- OPEN -----------------------------------------------------------------------------

    def _open(self, command: TradeCommand, now: datetime) -> Reply:
        name = "EXECUTION"
        inst = self.instruments.get(command.symbol)
        if inst is None:
            return error_reply(name, int(MT4Error.UNKNOWN_SYMBOL))
        quote = self.quotes.get(command.symbol)
        if quote is None:
            return error_reply(name, int(MT4Error.OFF_QUOTES))
        cfg = self.config
        if not _lots_ok(command.lots, inst, cfg.min_lot):
            return error_reply(name, int(MT4Error.INVALID_TRADE_VOLUME))
        if cfg.max_lot_size is not None and command.lots > cfg.max_lot_size + _LOT_EPS:
            return error_reply(name, MAX_LOT_SIZE_EXCEEDED)
        if cfg.max_orders is not None and len(self.orders) >= cfg.max_orders:
            return error_reply(name, MAX_ORDERS_REACHED)
        bid, ask = quote
        kind = command.type
        point = 10.0**-inst.digits
        costs = self.costs[command.symbol]
        if kind.is_pending:
            price = round(command.price, inst.digits)
            if not self._pending_price_ok(kind, price, bid, ask, point):
                return error_reply(name, int(MT4Error.INVALID_STOPS))
        else:
            slip = costs.slip(0.0, 0.0)
            price = ask + slip if kind is OrderKind.BUY else bid - slip
            price = round(price, inst.digits)
        buy = kind in (OrderKind.BUY, OrderKind.BUY_LIMIT, OrderKind.BUY_STOP)
        sl, tp = _levels(buy, price, command.sl, command.tp, inst.digits)
        if not self._stops_ok(
            buy, sl, tp, bid, ask, point, pending_at=price if kind.is_pending else None
        ):
            return error_reply(name, int(MT4Error.INVALID_STOPS))
        margin = self._margin(command.symbol, command.lots, price)
        if margin > self.free_margin() + 1e-9:
            return error_reply(name, int(MT4Error.NOT_ENOUGH_MONEY))
        ticket = self._new_ticket()
        order = TerminalOrder(
            ticket=ticket, symbol=command.symbol, kind=kind, lots=command.lots,
            open_price=price, open_time=now, sl=sl, tp=tp, magic=command.magic,
            comment=command.comment,
        )  # fmt: skip
        self.orders[ticket] = order
        self._revision += 1
        return execution_reply(
            magic=order.magic, ticket=ticket, open_time=now, open_price=price, sl=sl, tp=tp,
            clock=cfg.clock,
        )  # fmt: skip

    def _pending_price_ok(
        self, kind: OrderKind, price: float, bid: float, ask: float, point: float
    ) -> bool:
        gap = self.config.stop_level * point
        if price <= 0:
            return False
        if kind is OrderKind.BUY_LIMIT:
            return price <= ask - gap
        if kind is OrderKind.SELL_LIMIT:
            return price >= bid + gap
        if kind is OrderKind.BUY_STOP:
            return price >= ask + gap
        return price <= bid - gap  # sell stop

    def _stops_ok(
        self,
        buy: bool,
        sl: float,
        tp: float,
        bid: float,
        ask: float,
        point: float,
        *,
        pending_at: float | None = None,
    ) -> bool:
        # Levels are measured from where the order would close: the bid for a long, the ask
        # for a short; a pending order's from its own price.
        gap = self.config.stop_level * point - point / 2
        ref = pending_at if pending_at is not None else (bid if buy else ask)
        if sl > 0 and not (sl <= ref - gap if buy else sl >= ref + gap):
            return False
        return not (tp > 0 and not (tp >= ref + gap if buy else tp <= ref - gap))

    # -- MODIFY ---------------------------------------------------------------------------

    def _modify(self, command: TradeCommand) -> Reply:
        order = self.orders.get(command.ticket)
        if order is None:
            return error_reply("MODIFY", int(MT4Error.INVALID_TICKET))
        inst = self.instruments[order.symbol]
        base = round(command.price, inst.digits) if command.price > 0 else order.open_price
        buy = order.kind in (OrderKind.BUY, OrderKind.BUY_LIMIT, OrderKind.BUY_STOP)
        sl, tp = _levels(buy, base, command.sl, command.tp, inst.digits)
        quote = self.quotes.get(order.symbol)
        if quote is None:  # a restored order before its symbol's first quote
            return error_reply("MODIFY", int(MT4Error.OFF_QUOTES))
        bid, ask = quote
        point = 10.0**-inst.digits
        pending_at = order.open_price if order.kind.is_pending else None
        if not self._stops_ok(buy, sl, tp, bid, ask, point, pending_at=pending_at):
            return error_reply("MODIFY", int(MT4Error.INVALID_STOPS))
        self.orders[order.ticket] = replace(order, sl=sl, tp=tp)
        self._revision += 1
        return modify_reply(ticket=order.ticket, sl=sl, tp=tp)

    # -- CLOSE ----------------------------------------------------------------------------

    def _close_reply(self, command: TradeCommand, now: datetime) -> Reply:
        order = self.orders.get(command.ticket)
        if order is None:
            return error_reply("CLOSE", int(MT4Error.INVALID_TICKET))
        if order.kind.is_pending:
            if command.action is TradeAction.CLOSE_PARTIAL:
                return error_reply("CLOSE", int(MT4Error.INVALID_TICKET))
            del self.orders[order.ticket]
            self._revision += 1
            return close_reply(
                ticket=order.ticket, close_price=order.open_price, close_lots=order.lots,
                response=CloseResponse.CLOSE_PENDING,
            )  # fmt: skip
        if order.symbol not in self.quotes:  # a restored trade before its symbol's first quote
            return error_reply("CLOSE", int(MT4Error.OFF_QUOTES))
        lots = order.lots
        response = CloseResponse.CLOSE_MARKET
        if command.action is TradeAction.CLOSE_PARTIAL:
            inst = self.instruments[order.symbol]
            if not _lots_ok(command.lots, inst, self.config.min_lot):
                return error_reply("CLOSE", int(MT4Error.INVALID_TRADE_VOLUME))
            lots = min(command.lots, order.lots)
            response = CloseResponse.CLOSE_PARTIAL
        done = self._close(order.ticket, lots, now)
        return close_reply(
            ticket=order.ticket, close_price=done.close_price, close_lots=done.order.lots,
            response=response,
        )  # fmt: skip

    def _close_many(self, command: TradeCommand, now: datetime) -> Reply:
        by_magic = command.action is TradeAction.CLOSE_MAGIC
        responses: dict[int, Reply] = {}
        for ticket, order in sorted(self.orders.items()):
            if by_magic and order.magic != command.magic:
                continue
            if order.kind.is_pending:
                del self.orders[ticket]
                self._revision += 1
                responses[ticket] = closed_entry(
                    symbol=order.symbol, magic=order.magic, close_price=order.open_price,
                    close_lots=order.lots, response=CloseResponse.CLOSE_PENDING,
                )  # fmt: skip
                continue
            if order.symbol not in self.quotes:
                responses[ticket] = error_entry(int(MT4Error.OFF_QUOTES))
                continue
            done = self._close(ticket, order.lots, now)
            responses[ticket] = closed_entry(
                symbol=order.symbol, magic=order.magic, close_price=done.close_price,
                close_lots=done.order.lots, response=CloseResponse.CLOSE_MARKET,
            )  # fmt: skip
        return close_all_reply(responses, by_magic=by_magic)

    def _close(self, ticket: int, lots: float, now: datetime) -> ClosedTrade:
        # Close ``lots`` of an open trade at the market; the rest lives on under a new ticket.
        order = self.orders.pop(ticket)
        inst = self.instruments[order.symbol]
        costs = self.costs[order.symbol]
        bid, ask = self.quotes[order.symbol]
        buy = order.kind is OrderKind.BUY
        slip = costs.slip(0.0, 0.0)
        price = round(bid - slip if buy else ask + slip, inst.digits)
        lots = round(min(lots, order.lots), 8)
        part = replace(order, lots=lots)
        units = lots * inst.contract_size
        rate = self._to_account(order.symbol)
        direction = 1.0 if buy else -1.0
        pnl = round(direction * (price - order.open_price) * units * rate, 2)
        per_unit = costs.swap_long if buy else costs.swap_short
        # No negative nights: a restored trade may have opened after a replay started again.
        nights = max(0, costs.rollovers(ns_from_utc(order.open_time), ns_from_utc(now)))
        swap = round(units * per_unit * rate * nights, 2)
        commission = round(-2.0 * units * costs.commission_per_unit, 2)
        self.balance = round(self.balance + pnl + swap + commission, 2)
        done = ClosedTrade(part, price, now, pnl, swap, commission)
        self.history.append((ticket, done))
        self._revision += 1
        rest = round(order.lots - lots, 8)
        if rest > _LOT_EPS:
            new = self._new_ticket()
            self.orders[new] = replace(order, ticket=new, lots=rest)
        return done

    # -- money ----------------------------------------------------------------------------

    def _to_account(self, symbol: str) -> float:
        # The account currency one unit of the symbol's quote currency is worth, now.
        inst = self.instruments[symbol]
        account = self.config.currency.upper()
        if inst.quote == account:
            return 1.0
        if inst.base == account:
            bid, ask = self.quotes[symbol]
            return 1.0 / ((bid + ask) / 2)
        pair = conversion_pair(inst.quote, account)
        if pair in self.quotes:
            bid, ask = self.quotes[pair]
            mid = (bid + ask) / 2
            return mid if pair.startswith(inst.quote) else 1.0 / mid
        return math.nan

    def _margin(self, symbol: str, lots: float, price: float) -> float:
        inst = self.instruments[symbol]
        rate = self._to_account(symbol)
        return lots * inst.contract_size * price * rate / self.config.leverage

    def floating(self, order: TerminalOrder) -> float:
        """Return an order's floating P&L at the current quote (0 for a pending order)."""
        if order.kind.is_pending or order.symbol not in self.quotes:
            return 0.0
        inst = self.instruments[order.symbol]
        bid, ask = self.quotes[order.symbol]
        buy = order.kind is OrderKind.BUY
        mark = bid if buy else ask
        units = order.lots * inst.contract_size
        direction = 1.0 if buy else -1.0
        return round(
            direction * (mark - order.open_price) * units * self._to_account(order.symbol), 2
        )

    def profit(self) -> float:
        """Return the floating P&L of the open trades, account currency."""
        # Start from 0.0: with nothing open the profit is still a float (0.0), as MT4 writes it.
        return round(sum((self.floating(o) for o in self.orders.values()), 0.0), 2)

    def margin(self) -> float:
        """Return the margin the open trades hold (notional at the open price / leverage)."""
        return sum(
            self._margin(o.symbol, o.lots, o.open_price)
            for o in self.orders.values()
            if not o.kind.is_pending
        )

    def equity(self) -> float:
        """Return the balance plus the floating P&L."""
        return round(self.balance + self.profit(), 2)

    def free_margin(self) -> float:
        """Return the equity less the margin held."""
        return round(self.equity() - self.margin(), 2)

    # -- replies --------------------------------------------------------------------------

    def _open_entry(self, order: TerminalOrder) -> Reply:
        return open_trade(
            magic=order.magic, symbol=order.symbol, lots=order.lots, type=order.kind,
            open_price=order.open_price, open_time=order.open_time, sl=order.sl, tp=order.tp,
            pnl=self.floating(order), comment=order.comment, clock=self.config.clock,
        )  # fmt: skip

    def _account_reply(self, now: datetime) -> Reply:
        cfg = self.config
        return account_reply(
            account_number=cfg.account_number, current_time=now, name=cfg.account_name,
            balance=float(self.balance), equity=self.equity(), profit=self.profit(),
            free_margin=self.free_margin(), leverage=cfg.leverage, clock=cfg.clock,
        )  # fmt: skip

    def _history_reply(self, command: GetHistoryCommand) -> Reply:
        start, end = command.utc_range(self.config.clock)
        trades: dict[int, Reply] = {}
        for ticket, done in self.history:
            if not start <= done.close_time <= end:
                continue
            if command.magic is not None and done.order.magic != command.magic:
                continue
            o = done.order
            trades[ticket] = closed_trade(
                magic=o.magic, symbol=o.symbol, lots=o.lots, type=o.kind,
                open_price=o.open_price, open_time=o.open_time, close_price=done.close_price,
                close_time=done.close_time, sl=o.sl, tp=o.tp, pnl=done.pnl, swap=done.swap,
                commission=done.commission, comment=o.comment, clock=self.config.clock,
            )  # fmt: skip
        if not trades:
            return {"_action": "HISTORY", "_response": NOT_AVAILABLE}
        return history_reply(trades)

    def history_frame(self) -> pl.DataFrame:
        """Return the closed trades, one row each (:data:`HISTORY_COLUMNS`), times in UTC."""
        rows: list[dict[str, Any]] = [
            {
                "ticket": ticket, "symbol": d.order.symbol, "type": int(d.order.kind),
                "lots": d.order.lots, "open_time": d.order.open_time,
                "open_price": d.order.open_price, "close_time": d.close_time,
                "close_price": d.close_price, "sl": d.order.sl, "tp": d.order.tp,
                "pnl": d.pnl, "swap": d.swap, "commission": d.commission,
                "magic": d.order.magic, "comment": d.order.comment,
            }
            for ticket, d in self.history
        ]  # fmt: skip
        schema: dict[str, Any] = {
            "ticket": pl.Int64, "symbol": pl.String, "type": pl.Int8, "lots": pl.Float64,
            "open_time": pl.Datetime("us", "UTC"), "open_price": pl.Float64,
            "close_time": pl.Datetime("us", "UTC"), "close_price": pl.Float64,
            "sl": pl.Float64, "tp": pl.Float64, "pnl": pl.Float64, "swap": pl.Float64,
            "commission": pl.Float64, "magic": pl.Int64, "comment": pl.String,
        }  # fmt: skip
        return (
            pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
        )

    def _new_ticket(self) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket


def _utc_order(order: TerminalOrder) -> TerminalOrder:
    return replace(order, open_time=order.open_time.astimezone(UTC))


def _levels(
    buy: bool, price: float, sl_points: float, tp_points: float, digits: int
) -> tuple[float, float]:
    point = 10.0**-digits
    direction = 1.0 if buy else -1.0
    sl = round(price - direction * sl_points * point, digits) if sl_points > 0 else 0.0
    tp = round(price + direction * tp_points * point, digits) if tp_points > 0 else 0.0
    return sl, tp


def _lots_ok(lots: float, inst: Instrument, min_lot: float) -> bool:
    if lots < min_lot - _LOT_EPS:
        return False
    steps = lots / inst.lot_step
    return abs(steps - round(steps)) < 1e-6


def _pending_triggered(order: TerminalOrder, bid: float, ask: float) -> bool:
    if order.kind is OrderKind.BUY_LIMIT:
        return ask <= order.open_price
    if order.kind is OrderKind.SELL_LIMIT:
        return bid >= order.open_price
    if order.kind is OrderKind.BUY_STOP:
        return ask >= order.open_price
    return bid <= order.open_price

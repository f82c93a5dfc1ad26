"""An MT4 account as the trading loop's :class:`core.ports.Broker`, through the bridge.

:class:`MT4Broker` trades one symbol under one magic number. MT4 keeps each fill as a ticket of
its own (a hedging account); the broker port speaks of one net position per symbol, so:

- an order that opens or adds is ``TRADE;OPEN`` (buy or sell; a limit or stop order is a
  pending order), its client order id as the comment, its stop loss and take profit sent with
  it in points from the quote, so the position rests protected at the broker from its first
  fill; the loop then moves them to its levels from the fill price (:meth:`modify`);
- an order that reduces closes the oldest tickets first (``CLOSE``, or ``CLOSE_PARTIAL`` for the
  last one); one that reverses closes every ticket and opens the rest.

Each execution becomes a :class:`core.types.Fill` recorded in the state database's broker book
(``broker_fills``, ``broker_orders``) under the session's account, so a restarted session sees the
same fills. Trades the terminal closed by itself (a stop loss, a take profit, a person) are
found when the loop shows the broker a bar (:meth:`on_market`): a ticket of ours no longer open
is looked up in the account's history (extended dialect) and booked as a fill with its reason.

Nothing is sent twice: the bridge client looks an order up by its comment and magic number
before sending it again (:meth:`BridgeClient.send_order`), and after the process restarts, or
the bridge reconnects, an order the book does not know is looked for at the terminal first
(:meth:`order_status`). After a reconnect the book is reconciled with the terminal: tickets
closed meanwhile are booked, and protective levels that are missing at the terminal are put
back (``reconciled`` counts the repairs).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime
from typing import Any

from core.ids import execution_id
from core.ports import BarBatch, MarketStage
from core.times import utc_from_ns, utc_now
from core.types import (
    Account,
    Fill,
    Instrument,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
)
from execution.brokers.mt4.client import (
    LOOKUP_SPAN,
    BridgeClient,
    BridgeDownError,
    is_error,
    price_points,
)
from execution.brokers.mt4.protocol import (
    OrderKind,
    Reply,
    TradeAction,
    from_mt4_time_text,
    trade_command,
)
from execution.journal import Journal

logger = logging.getLogger(__name__)

#: The account is read from the terminal at most this often (seconds) between trades.
ACCOUNT_SECONDS = 0.5


class MT4Broker:
    """A :class:`core.ports.Broker` over the MT4 bridge for one symbol (see the module's notes).

    Parameters
    ----------
    client
        The connection (shared with the feed).
    journal
        The session's state database transaction; the book is kept in it under ``account``.
    account
        The session's account name (``mt4:<session>``).
    instrument
        The instrument traded; ``broker_symbol`` its name at the broker.
    currency
        The account currency.
    """

    name = "mt4"
    shares_journal = False

    def __init__(
        self,
        client: BridgeClient,
        journal: Journal,
        *,
        account: str,
        instrument: Instrument,
        currency: str,
        broker_symbol: str | None = None,
    ) -> None:
        self.client = client
        self.journal = journal
        self.db = journal.db
        self.account_name = account
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.broker_symbol = broker_symbol or instrument.symbol
        self.currency = currency
        self.magic = client.config.magic
        self.lot = instrument.contract_size
        self.point = 10.0**-instrument.digits
        self.orders: dict[str, Order] = {}
        #: Our open tickets: ticket -> (client order id, signed units, open price, open time).
        self.tickets: dict[int, dict[str, Any]] = {}
        self.fill_count = 0
        self.reconciled = 0
        #: The latest quote (bid, ask), which the feed keeps up to date.
        self.quote: tuple[float, float] | None = None
        # After a restart or a reconnect, orders the book does not know are looked for at the
        # terminal until the loop has moved on by a bar (a replayed stage asks again first).
        self._uncertain = True
        self._opens_seen = 0
        self._market_ns = 0
        self._last_fill_at = utc_from_ns(0)
        self._account: Account | None = None
        self._account_at = 0.0
        self._load()
        client.on_reconnect.append(self._after_reconnect)
        journal.before_commit(self.save)

    # -- the book --------------------------------------------------------------------------

    def _load(self) -> None:
        state = self.db.broker_state(self.account_name)
        if state is not None:
            self.fill_count = int(state.get("fill_count", 0))
            self._market_ns = int(state.get("market_ns", 0))
            self.tickets = {int(k): dict(v) for k, v in state.get("tickets", {}).items()}
        for body in self.db.broker_orders(self.account_name):
            order = Order.model_validate(body)
            self.orders[order.client_order_id] = order

    def save(self) -> None:
        """Write the tickets held into the transaction (orders and fills are written as made)."""
        self.db.broker_save_state(
            self.account_name,
            {
                "fill_count": self.fill_count,
                "tickets": {str(k): v for k, v in self.tickets.items()},
            },
        )

    def _store(self, order: Order) -> Order:
        self.orders[order.client_order_id] = order
        self.db.broker_save_order(
            self.account_name, order.client_order_id, order.model_dump(mode="json")
        )
        return order

    def _fill(
        self,
        order: Order,
        *,
        side: OrderSide,
        units: float,
        price: float,
        ts: datetime,
        ticket: int,
        realized: float = 0.0,
        reason: str = "",
    ) -> Fill:
        # Fills are in execution order: none before the last one, none before the market
        # time the loop has shown (a close's reply carries no time of its own).
        ts = max(ts, self._last_fill_at, utc_from_ns(self._market_ns))
        self._last_fill_at = ts
        fill = Fill(
            execution_id=execution_id(order.client_order_id, self.fill_count),
            client_order_id=order.client_order_id, ts=ts, symbol=self.symbol, side=side,
            units=units, price=price, realized=realized, reason=reason or order.reason,
            ticket=str(ticket),
        )  # fmt: skip
        self.fill_count += 1
        self.db.broker_add_fill(
            self.account_name, fill.execution_id, fill.ts, fill.model_dump(mode="json")
        )
        self._account = None
        return fill

    def _time(self, text: object) -> datetime:
        """Return a time the terminal gave (broker clock) in UTC, else the market's time."""
        if isinstance(text, str) and text:
            return from_mt4_time_text(text, self.client.clock)
        return utc_from_ns(self._market_ns)

    def _lots(self, units: float) -> float:
        step = self.instrument.lot_step
        return round(math.floor(units / self.lot / step + 1e-9) * step, 8)

    def _quote_currency_rate(self, price: float) -> float:
        """Return the account currency a unit of the quote currency is worth at ``price`` (NaN
        for a cross: the terminal's balance is then the account's truth)."""
        account = self.currency.upper()
        if self.instrument.quote.upper() == account:
            return 1.0
        if self.instrument.base.upper() == account and price > 0:
            return 1.0 / price
        return math.nan

    def _realized(self, held: dict[str, Any], units: float, price: float) -> float:
        rate = self._quote_currency_rate(price)
        if math.isnan(rate):
            return 0.0
        side = 1.0 if held["units"] > 0 else -1.0
        return side * units * (price - float(held["open"])) * rate

    # -- orders ----------------------------------------------------------------------------

    def submit(self, order: Order) -> Order:
        """Send an order: open, add, reduce or reverse the position (see the module's notes)."""
        known = self.order_status(order.client_order_id)
        if known is not None:
            return known
        order = self._store(order.model_copy(update={"updated": utc_now()}))
        try:
            if order.type is not OrderType.MARKET:
                return self._pending(order)
            position = self._net()
            sign = order.side.sign
            left = order.units
            if position * sign < 0:
                left = self._reduce(order, min(left, abs(position)))
            if left > 1e-9 and not order.reduce_only:
                return self._open(order, left)
        except BridgeDownError as exc:
            return self._store(
                order.model_copy(update={"status": OrderStatus.REJECTED, "reason": str(exc)})
            )
        current = self.orders[order.client_order_id]
        if current.status.is_open:
            status = OrderStatus.FILLED if current.filled_units > 0 else OrderStatus.REJECTED
            current = self._store(current.model_copy(update={"status": status}))
        return current

    def _open(self, order: Order, units: float) -> Order:
        lots = self._lots(units)
        if lots <= 0:
            why = f"{units:g} units is below the broker's lot step {self.instrument.lot_step:g}"
            return self._store(
                order.model_copy(update={"status": OrderStatus.REJECTED, "reason": why})
            )
        kind = OrderKind.BUY if order.side is OrderSide.BUY else OrderKind.SELL
        sl, tp = self._points(order, self._reference(order.side))
        reply = self._send_open(order, kind, 0.0, sl, tp, lots)
        return self._executed(order, reply, lots)

    def _reference(self, side: OrderSide) -> float:
        quote = self.quote
        if quote is None:
            return math.nan
        return float(quote[1] if side is OrderSide.BUY else quote[0])

    def _points(self, order: Order, reference: float) -> tuple[float, float]:
        if math.isnan(reference):
            return 0.0, 0.0
        sl = (
            price_points(abs(reference - order.stop_loss), self.instrument.digits)
            if order.stop_loss
            else 0.0
        )
        tp = (
            price_points(abs(order.take_profit - reference), self.instrument.digits)
            if order.take_profit
            else 0.0
        )
        return sl, tp

    def _send_open(
        self, order: Order, kind: OrderKind, price: float, sl: float, tp: float, lots: float
    ) -> Reply:
        cid = order.client_order_id
        symbol, magic = self.broker_symbol, self.magic

        def build(rid: str | None) -> str:
            return trade_command(
                TradeAction.OPEN, kind, symbol, price, sl, tp, cid, lots, magic, 0, request_id=rid
            )

        return self.client.send_order(build, ("EXECUTION",), cid)

    def _executed(self, order: Order, reply: Reply, lots: float) -> Order:
        if is_error(reply):
            why = f"MT4 refused the order: {reply.get('_response')}"
            return self._store(
                order.model_copy(update={"status": OrderStatus.REJECTED, "reason": why})
            )
        ticket = int(reply["_ticket"])
        price = float(reply.get("_open_price", 0.0))
        kind = int(reply.get("_type", 0 if order.side is OrderSide.BUY else 1))
        if kind > 1:  # still pending at the terminal
            self.tickets[ticket] = {
                "cid": order.client_order_id, "units": 0.0, "open": price, "pending": kind,
                "lots": lots,
            }  # fmt: skip
            return self._store(
                order.model_copy(update={"status": OrderStatus.WORKING, "ticket": str(ticket)})
            )
        units = float(reply.get("_lots", lots)) * self.lot
        ts = self._time(reply.get("_open_time"))
        signed = units * order.side.sign
        self.tickets[ticket] = {
            "cid": order.client_order_id, "units": signed, "open": price,
            "sl": float(reply.get("_sl", reply.get("_SL", 0.0)) or 0.0),
            "tp": float(reply.get("_tp", reply.get("_TP", 0.0)) or 0.0),
        }  # fmt: skip
        self._fill(order, side=order.side, units=units, price=price, ts=ts, ticket=ticket)
        if reply.get("_closed") == 1:  # found in the history: it has closed since
            self._book_closed(ticket, reply)
        filled = order.filled_units + units
        avg = (
            price
            if order.avg_price is None
            else ((order.avg_price * order.filled_units + price * units) / filled)
        )
        return self._store(order.model_copy(update={
            "status": OrderStatus.FILLED, "ticket": str(ticket), "filled_units": filled,
            "avg_price": avg, "updated": ts,
        }))  # fmt: skip

    def _reduce(self, order: Order, units: float) -> float:
        """Close ``units`` of the position, oldest tickets first; return what is left to do."""
        left = order.units
        want = units
        for ticket in sorted(t for t, h in self.tickets.items() if not h.get("pending")):
            if want <= 1e-9:
                break
            held = self.tickets[ticket]
            size = abs(float(held["units"]))
            take = min(size, want)
            full = take >= size - 1e-9
            action = TradeAction.CLOSE if full else TradeAction.CLOSE_PARTIAL
            lots = self._lots(take) if not full else round(size / self.lot, 8)
            reply = self.client.request(self._close_command(action, ticket, lots), ("CLOSE",))
            if is_error(reply):
                code = str(reply.get("_response"))
                if code in ("4108", "TICKET_NOT_FOUND") or not self._still_open(ticket):
                    self._book_closed(ticket, None)  # gone already: the terminal closed it
                    continue
                why = f"MT4 refused to close ticket {ticket}: {code}"
                self._store(
                    order.model_copy(update={"status": OrderStatus.REJECTED, "reason": why})
                )
                return 0.0
            closed_units = float(reply.get("_close_lots", lots)) * self.lot
            price = float(reply.get("_close_price", 0.0))
            realized = self._realized(held, closed_units, price)
            fill = self._fill(order, side=order.side, units=closed_units, price=price,
                              ts=self._time(None), ticket=ticket, realized=realized)  # fmt: skip
            if full:
                del self.tickets[ticket]
            else:
                held["units"] = float(held["units"]) - math.copysign(
                    closed_units, float(held["units"])
                )
            current = self.orders[order.client_order_id]
            filled = current.filled_units + closed_units
            avg = (
                fill.price
                if current.avg_price is None
                else (
                    (current.avg_price * current.filled_units + fill.price * closed_units) / filled
                )
            )
            self._store(current.model_copy(update={"filled_units": filled, "avg_price": avg}))
            want -= closed_units
            left -= closed_units
        return max(left, 0.0)

    def _close_command(self, action: TradeAction, ticket: int, lots: float) -> Any:
        symbol, magic = self.broker_symbol, self.magic

        def build(rid: str | None) -> str:
            return trade_command(
                action, 0, symbol, 0, 0, 0, "", lots, magic, ticket, request_id=rid
            )

        return build

    def _still_open(self, ticket: int) -> bool:
        return ticket in self.client.open_trades()

    def _pending(self, order: Order) -> Order:
        buy = order.side is OrderSide.BUY
        if order.type is OrderType.LIMIT:
            kind, price = (OrderKind.BUY_LIMIT if buy else OrderKind.SELL_LIMIT), order.limit_price
        else:
            kind, price = (OrderKind.BUY_STOP if buy else OrderKind.SELL_STOP), order.stop_price
        assert price is not None
        lots = self._lots(order.units)
        sl, tp = self._points(order, price)
        reply = self._send_open(order, kind, price, sl, tp, lots)
        return self._executed(order, reply, lots)

    def modify(
        self,
        client_order_id: str,
        *,
        limit_price: float | None = None,
        stop_price: float | None = None,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing: float | None = None,
    ) -> Order:
        """Move the protective levels of the tickets an order opened (absolute prices)."""
        order = self.orders[client_order_id]
        for ticket, held in list(self.tickets.items()):
            if held["cid"] != client_order_id:
                continue
            self._set_levels(ticket, held, stop_loss, take_profit)
        updated = order.model_copy(update={
            "stop_loss": stop_loss if stop_loss is not None else order.stop_loss,
            "take_profit": take_profit if take_profit is not None else order.take_profit,
            "updated": utc_now(),
        })  # fmt: skip
        return self._store(updated)

    def _set_levels(
        self, ticket: int, held: dict[str, Any], stop_loss: float | None, take_profit: float | None
    ) -> None:
        open_price = float(held["open"])
        digits = self.instrument.digits
        sl = price_points(abs(open_price - stop_loss), digits) if stop_loss else 0.0
        tp = price_points(abs(take_profit - open_price), digits) if take_profit else 0.0
        symbol, magic = self.broker_symbol, self.magic

        def build(rid: str | None) -> str:
            return trade_command(
                TradeAction.MODIFY, 0, symbol, 0, sl, tp, "", 0, magic, ticket, request_id=rid
            )

        reply = self.client.request(build, ("MODIFY",))
        if is_error(reply):
            logger.warning(
                "MT4 refused to move the levels of ticket %s: %s", ticket, reply.get("_response")
            )
            return
        held["sl"] = float(reply.get("_sl", 0.0) or 0.0)
        held["tp"] = float(reply.get("_tp", 0.0) or 0.0)
        held["want_sl"], held["want_tp"] = stop_loss or 0.0, take_profit or 0.0

    def cancel(self, client_order_id: str) -> Order:
        """Delete the pending order an order left at the terminal."""
        order = self.orders[client_order_id]
        for ticket, held in list(self.tickets.items()):
            if held["cid"] == client_order_id and held.get("pending"):
                reply = self.client.request(
                    self._close_command(TradeAction.CLOSE, ticket, float(held.get("lots", 0.0))),
                    ("CLOSE",),
                )
                if not is_error(reply):
                    del self.tickets[ticket]
        return self._store(
            order.model_copy(update={"status": OrderStatus.CANCELLED, "updated": utc_now()})
        )

    # -- what the terminal holds -------------------------------------------------------------

    def _held(self) -> list[dict[str, Any]]:
        return [h for h in self.tickets.values() if not h.get("pending")]

    def _net(self) -> float:
        return sum(float(h["units"]) for h in self._held())

    def positions(self) -> tuple[Position, ...]:
        """Return the net position of our tickets in the symbol (none when flat)."""
        held = self._held()
        units = self._net()
        if abs(units) <= 1e-9:
            return ()
        avg = sum(float(h["units"]) * float(h["open"]) for h in held) / units
        first = held[0]
        return (
            Position(
                symbol=self.symbol, units=units, avg_price=avg,
                stop_loss=float(first.get("want_sl") or first.get("sl") or 0.0) or None,
                take_profit=float(first.get("want_tp") or first.get("tp") or 0.0) or None,
            ),
        )  # fmt: skip

    def open_orders(self) -> tuple[Order, ...]:
        """Return the orders still working (pending at the terminal)."""
        return tuple(o for o in self.orders.values() if o.status.is_open)

    def account(self) -> Account:
        """Return balance, equity and margin as the terminal reports them (cached briefly)."""
        now = time.monotonic()
        if self._account is not None and now - self._account_at < ACCOUNT_SECONDS:
            return self._account
        info = self.client.account()
        equity = float(info.get("account_equity", 0.0))
        free = float(info.get("account_free_margin", equity))
        self._account = Account.model_construct(
            currency=self.currency, balance=float(info.get("account_balance", 0.0)),
            equity=equity, margin_used=max(equity - free, 0.0),
            leverage=float(info.get("account_leverage", 0) or 0) or None,
        )  # fmt: skip
        self._account_at = now
        return self._account

    def order_status(self, client_order_id: str) -> Order | None:
        """Return an order by the runtime's id; after a restart or a reconnect, one the book
        does not know is looked for at the terminal (and booked if found)."""
        known = self.orders.get(client_order_id)
        if known is not None or not self._uncertain:
            return known
        found = self.client.find_order(client_order_id)
        if found is None:
            return None
        side = OrderSide.BUY if int(found.get("_type", 0)) % 2 == 0 else OrderSide.SELL
        lots = float(found.get("_lots", 0.0))
        order = Order(
            client_order_id=client_order_id, ts=self._time(found.get("_open_time")),
            symbol=self.symbol, side=side, units=lots * self.lot, reason="found at the terminal",
        )  # fmt: skip
        self._store(order)
        reply = {**found, "_open_price": found.get("_open_price"), "_lots": lots}
        return self._executed(order, reply, lots)

    def fills_since(self, since: datetime | None) -> tuple[Fill, ...]:
        """Return the fills at or after ``since`` in execution order."""
        rows = self.db.broker_fills(self.account_name, since)
        return tuple(Fill.model_validate(row) for row in rows)

    def on_market(self, bars: BarBatch, index: int, stage: MarketStage) -> None:
        """At a bar's close, book what the terminal did by itself (stops hit, pending orders
        triggered, trades closed by hand)."""
        at = int(bars.ts[index]) if stage == "open" else int(bars.end[index])
        self._market_ns = max(self._market_ns, at)
        if stage == "open":
            self._opens_seen += 1
            if self._opens_seen >= 2:
                self._uncertain = False
        elif self.tickets:
            self.refresh()

    def refresh(self) -> int:
        """Compare our tickets with the terminal's; book closes and triggers; put missing
        protective levels back. Return how many differences were repaired."""
        terminal = self.client.open_trades()
        repaired = 0
        for ticket, held in list(self.tickets.items()):
            entry = terminal.get(ticket)
            if entry is None:
                self._book_closed(ticket, None)
                repaired += 1
                continue
            if held.get("pending") and int(entry.get("_type", held["pending"])) <= 1:
                order = self.orders[held["cid"]]
                lots = float(entry.get("_lots", held.get("lots", 0.0)))
                del self.tickets[ticket]
                self._executed(order, {**entry, "_ticket": ticket}, lots)
                repaired += 1
                continue
            for level, key in (("want_sl", "_SL"), ("want_tp", "_TP")):
                if held.get(level) and not float(entry.get(key, 0.0) or 0.0):
                    self._set_levels(
                        ticket, held, held.get("want_sl") or None, held.get("want_tp") or None
                    )
                    self.reconciled += 1
                    repaired += 1
                    break
        return repaired

    def _book_closed(self, ticket: int, entry: Reply | None) -> None:
        """Book a ticket the terminal closed by itself, from its history entry when it has one."""
        held = self.tickets.pop(ticket, None)
        if held is None or held.get("pending"):
            return
        if entry is None or "_close_price" not in entry:
            history = self.client.history(*LOOKUP_SPAN, magic=self.magic)
            entry = history.get(ticket)
        units = abs(float(held["units"]))
        if entry is not None and "_close_price" in entry:
            price = float(entry["_close_price"])
            ts = self._time(entry.get("_close_time"))
            closed_lots = float(entry.get("_lots", units / self.lot))
            units = min(units, closed_lots * self.lot) if closed_lots else units
        else:
            quote = self.quote
            price = (
                float(quote[0] if held["units"] > 0 else quote[1]) if quote else float(held["open"])
            )
            ts = utc_now()
        reason = "closed at the terminal"
        if held.get("sl") and math.isclose(price, float(held["sl"]), abs_tol=5 * self.point):
            reason = "stop_loss"
        elif held.get("tp") and math.isclose(price, float(held["tp"]), abs_tol=5 * self.point):
            reason = "take_profit"
        side = OrderSide.SELL if held["units"] > 0 else OrderSide.BUY
        order = self.orders.get(held["cid"])
        if order is None:
            return
        self._fill(order, side=side, units=units, price=price, ts=ts, ticket=ticket,
                   realized=self._realized(held, units, price), reason=reason)  # fmt: skip

    def _after_reconnect(self) -> None:
        self._uncertain = True
        self._opens_seen = 0
        self._account = None
        try:
            self.refresh()
        except BridgeDownError:
            logger.warning("the MT4 bridge went down again during reconciliation")

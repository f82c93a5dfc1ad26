"""The paper broker: a simulated account that fills orders against the bars it is shown.

:class:`PaperBroker` implements :class:`core.ports.Broker`. It keeps its own book (orders,
fills, the account, the position and its protective levels) in the state database, so a
restarted session finds it where the last commit left it, and answers the same order-status and
fill queries a live broker answers.

How it fills (every price in the series' own units, money in the account currency):

- **Quotes.** Within a bar it knows the open, the high, the low and the close. The bid and ask
  follow the engine's spread shares (:class:`execution.costs.CostModel`): a bid series buys at
  bid + spread, a mid series at ± half the spread, an ask series sells at ask − spread.
- **Market orders** fill at the first quote after they arrive: an order sent at a bar's close
  arrives after ``latency`` (fixed + seeded jitter) and fills at the next bar's open (at the
  open too when it arrives inside that bar: the bar's path between open and close is not
  known). With ``immediate`` (the event backtest) an order fills at the quote in force when it
  is sent, with no latency. Buys fill at the ask and sells at the bid, plus slippage (fixed,
  range-scaled and size impact). No fill while the instrument's market is closed.
- **Limit orders** fill when the price trades through the limit (a touch fills with
  ``touch_probability``); a bar that opens beyond the limit fills at the open. **Stop orders**
  trigger on touch and fill with slippage, at the open when gapped.
- **Protective levels** (stop loss, take profit, trailing stop) belong to the position and are
  checked inside every bar from its range before working orders: longs against the bid, shorts
  against the ask; a level gapped through fills at the open; when the stop and the take profit
  could both have been hit the stop is taken; the trailing level used in a bar is the one the
  bars before it set (the engine's conventions, :mod:`pipelines.backtest.engine`).
- **Partial fills**: with real traded volume and ``participation`` set, a fill takes at most
  that share of the bar's volume; the rest keeps working. **Rejects**: with probability
  ``reject_probability``, and on insufficient margin (notional / ``leverage`` above equity).
  **Lots**: with ``round_lots``, sizes are rounded down to the lot step and refused below the
  minimum lot.
- **Money**: fees and commission per fill, swap for each daily rollover a position is held
  across (counted to the next bar's open, the engine's convention), P&L accrued bar by bar at
  each bar's conversion rate, exactly as the vectorized engine accrues it.

Every random draw is keyed by the seed, the client order id and what is drawn, so a restarted
session draws the same numbers.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from core.calendars import get_calendar
from core.errors import UsageError
from core.ids import execution_id, is_client_order_id
from core.ports import BarBatch, MarketStage
from core.times import utc_from_ns
from core.types import Account, Fill, Order, OrderSide, OrderStatus, OrderType, Position
from execution.costs import CostModel
from execution.journal import Journal

_STAGE_ORDER = {"open": 0, "close": 1}


class PaperConfig(BaseModel):
    """How the paper broker simulates one instrument's account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str
    symbol: str
    currency: str = "USD"
    cash: float = Field(default=100_000.0, gt=0)
    costs: CostModel
    calendar: str | None = "fx"
    immediate: bool = False
    latency_submit: float = Field(default=0.05, ge=0, description="seconds")
    latency_modify: float = Field(default=0.05, ge=0)
    latency_cancel: float = Field(default=0.05, ge=0)
    jitter: float = Field(default=0.02, ge=0, description="seconds, uniform on [0, jitter)")
    reject_probability: float = Field(default=0.0, ge=0, lt=1)
    touch_probability: float = Field(default=0.0, ge=0, le=1)
    participation: float | None = Field(default=None, gt=0, le=1)
    volume_is_real: bool = False
    leverage: float | None = Field(default=30.0, gt=0)
    round_lots: bool = True
    lot_step: float = Field(default=0.01, gt=0)
    min_lot: float = Field(default=0.01, gt=0)
    seed: int = 0


@dataclass
class _Quote:
    """The broker's view of the market: a price of the bar it is in, and that bar."""

    ts: int = -1  # ns: when this quote holds
    stage: str = ""
    index: int = -1
    x: float = math.nan  # the series' own price
    spread: float = 0.0
    high: float = math.nan
    low: float = math.nan
    rate: float = 1.0  # to account currency
    end: int = -1  # ns: when the bar closes
    volume: float = 0.0


class PaperBroker:
    """A simulated broker account for one instrument, its book kept in the state database."""

    name = "paper"
    #: The book lives in the runtime's own transaction: an order and the intent behind it are
    #: committed together, so the loop need not commit between recording and sending.
    shares_journal = True

    def __init__(self, config: PaperConfig, journal: Journal) -> None:
        self.config = config
        self.costs = config.costs
        self.journal = journal
        self.db = journal.db
        self._calendar = get_calendar(config.calendar) if config.calendar else None
        self.quote = _Quote()
        # The account, as the engine keeps it: balance, accrued P&L of the open position, units,
        # the mark the accrual was last brought to.
        self.balance = config.cash
        self.accrued = 0.0
        self.units = 0.0
        self.ref = 0.0
        self.avg_price = 0.0
        self.opened: int | None = None
        self.stop_loss = math.nan
        self.take_profit = math.nan
        self.trailing = math.nan
        self.best = math.nan
        self.swap_since_fill = 0.0
        self.last_rate = 1.0
        self.cursor = (-1, -1)  # the last (bar ts, stage) processed
        self.fill_count = 0
        self.ticket_count = 0
        self.last_cid = ""  # the greatest client order id accepted
        self.last_arrival = -1  # when the last order sent reaches the broker (ns)
        self.last_fill_ns = -1  # when the last fill happened (ns)
        self.orders: dict[str, Order] = {}
        self.arrivals: dict[str, int] = {}
        self.cancels: dict[str, int] = {}  # cancels on their way: client order id -> arrival ns
        self.modifies: list[tuple[str, int, dict[str, Any]]] = []  # modifies on their way
        self.working: list[str] = []
        self._previewed: tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64]] = (
            0, np.zeros(0), np.zeros(0),
        )  # fmt: skip
        self._dirty: set[str] = set()
        self._recent: list[Fill] = []  # the fills made by this process, in order
        self._load()
        journal.before_commit(self.save)

    # -- persistence -----------------------------------------------------------------------

    def _load(self) -> None:
        state = self.db.broker_state(self.config.account)
        if state is None:
            return
        for name in ("balance", "accrued", "units", "ref", "avg_price", "stop_loss",
                     "take_profit", "trailing", "best", "swap_since_fill", "last_rate"):  # fmt: skip
            setattr(self, name, float(state[name]))
        self.opened = state["opened"]
        self.cursor = (int(state["cursor_ts"]), int(state["cursor_stage"]))
        self.fill_count = int(state["fill_count"])
        self.ticket_count = int(state["ticket_count"])
        self.last_cid = str(state.get("last_cid", ""))
        self.last_arrival = int(state.get("last_arrival", -1))
        self.last_fill_ns = int(state.get("last_fill_ns", -1))
        self.arrivals = {k: int(v) for k, v in state["arrivals"].items()}
        self.cancels = {k: int(v) for k, v in state.get("cancels", {}).items()}
        self.modifies = [(str(c), int(a), dict(ch)) for c, a, ch in state.get("modifies", [])]
        self.working = [str(c) for c in state["working"]]
        for cid in self.working:
            body = self.db.broker_order(self.config.account, cid)
            if body is not None:
                self.orders[cid] = Order.model_validate(body)
        for name, value in state.get("quote", {}).items():
            setattr(self.quote, name, value)

    def save(self) -> None:
        """Write the account and the orders changed since the last save into the transaction."""
        for cid in self._dirty:
            order = self.orders[cid]
            self.db.broker_save_order(self.config.account, cid, order.model_dump(mode="json"))
        self._dirty.clear()
        # Orders that can no longer change are kept on disk only.
        if len(self.orders) > 1024:
            working = set(self.working)
            self.orders = {c: o for c, o in self.orders.items() if c in working}
        self.db.broker_save_state(
            self.config.account,
            {
                "balance": self.balance, "accrued": self.accrued, "units": self.units,
                "ref": self.ref, "avg_price": self.avg_price, "stop_loss": self.stop_loss,
                "take_profit": self.take_profit, "trailing": self.trailing, "best": self.best,
                "swap_since_fill": self.swap_since_fill, "last_rate": self.last_rate,
                "opened": self.opened, "cursor_ts": self.cursor[0],
                "cursor_stage": self.cursor[1], "fill_count": self.fill_count,
                "ticket_count": self.ticket_count, "last_cid": self.last_cid,
                "last_arrival": self.last_arrival, "last_fill_ns": self.last_fill_ns,
                "arrivals": self.arrivals, "cancels": self.cancels,
                "modifies": [list(m) for m in self.modifies],
                "working": self.working, "quote": dict(self.quote.__dict__),
            },
        )  # fmt: skip

    def _store(self, order: Order) -> Order:
        cid = order.client_order_id
        self.orders[cid] = order
        self._dirty.add(cid)
        if is_client_order_id(cid) and cid > self.last_cid:
            self.last_cid = cid
        return order

    # -- draws -----------------------------------------------------------------------------

    def _draw(self, cid: str, what: str) -> float:
        """Return a uniform number in [0, 1) keyed by the seed, the order and what is drawn."""
        digest = hashlib.sha256(f"{self.config.seed}:{cid}:{what}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    def _latency_ns(self, cid: str, fixed: float, what: str) -> int:
        if self.config.immediate:
            return 0
        jitter = self.config.jitter * self._draw(cid, what)
        return round((fixed + jitter) * 1e9)

    # -- prices ----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return utc_from_ns(max(self.quote.ts, 0))

    def bid_ask(self) -> tuple[float, float]:
        """Return the bid and the ask of the current quote."""
        return self.costs.bid_ask(self.quote.x, self.quote.spread)

    def _mark_price(self, units: float) -> float:
        bid, ask = self.bid_ask()
        return bid if units > 0 else ask

    def _market_open(self, ts_ns: int) -> bool:
        if self._calendar is None:
            return True
        return self._calendar.is_open_at(utc_from_ns(ts_ns))

    # -- the account (the engine's arithmetic, :mod:`pipelines.backtest._kernels`) ---------------

    def _equity_at_quote(self) -> float:
        if self.units == 0.0:
            return self.balance + self.accrued
        mark = self._mark_price(self.units)
        return self.balance + (self.accrued + self.units * (mark - self.ref) * self.quote.rate)

    def _open(self, d: float, px: float, mark: float, r: float, slip: float) -> float:
        """Buy (d > 0) or sell (d < 0) into a flat or same-side position; return the fee."""
        u = self.units
        q = abs(d)
        if u == 0.0:
            self.accrued = 0.0
            self.avg_price = 0.0
            self.opened = self.quote.ts
            self.best = px
            self.stop_loss = math.nan
            self.take_profit = math.nan
            self.trailing = math.nan
            self.swap_since_fill = 0.0
            held_before = 0.0
        else:
            self.accrued += u * (mark - self.ref) * r
            held_before = abs(u)
        self.accrued += d * (mark - px) * r
        self.ref = mark
        notional = q * px * r
        fee = self.costs.fees * notional + self.costs.commission_per_unit * q
        self.balance -= fee
        self.units = u + d
        self.avg_price += (px - self.avg_price) * (q / (held_before + q))
        return fee

    def _reduce(self, q: float, px: float, mark: float, r: float) -> tuple[float, float]:
        """Close ``q`` units at ``px``; return the fee and the P&L realized."""
        u = self.units
        held = abs(u)
        side = 1.0 if u > 0.0 else -1.0
        acc = self.accrued + u * (mark - self.ref) * r
        if q >= held:
            q = held
            realized = acc + u * (px - mark) * r
            self.accrued = 0.0
            self.units = 0.0
        else:
            share = acc * (q / held)
            realized = share + side * q * (px - mark) * r
            self.accrued = acc - share
            self.units = side * (held - q)
        self.ref = mark
        fee = self.costs.fees * q * px * r + self.costs.commission_per_unit * q
        self.balance += realized - fee
        if self.units == 0.0:
            self.opened = None
            self.stop_loss = self.take_profit = self.trailing = self.best = math.nan
        return fee, realized

    def _trade(self, order: Order, units: float, px: float, slip: float, reason: str) -> Fill:
        """Fill ``units`` (signed) of ``order`` at ``px``; book the money; record the fill.

        The fill's time is the quote's, or the order's arrival when that is later (an order
        arriving inside a bar fills at its open price, at the time it arrives).
        """
        q = self.quote
        r = q.rate
        u = self.units
        fee = 0.0
        realized = 0.0
        swap = self.swap_since_fill
        remaining = units
        if u != 0.0 and (units > 0.0) != (u > 0.0):
            closing = min(abs(units), abs(u))
            full = closing >= abs(u)
            mark = px if full else self._mark_price(u)
            fee, realized = self._reduce(closing, px, mark, r)
            remaining = units - math.copysign(closing, units)
        if remaining != 0.0:
            opening = self.units == 0.0
            mark = self._mark_price(remaining)
            fee += self._open(remaining, px, mark, r, slip)
            if opening:  # the order's protective levels go to the position it opens
                if order.stop_loss is not None:
                    self.stop_loss = order.stop_loss
                if order.take_profit is not None:
                    self.take_profit = order.take_profit
            if order.trailing is not None and math.isnan(self.trailing):
                self.trailing = order.trailing
        self.swap_since_fill = 0.0
        self.fill_count += 1
        filled = order.filled_units + abs(units)
        avg = order.avg_price or 0.0
        avg += (px - avg) * (abs(units) / filled)
        status = OrderStatus.FILLED if filled >= order.units * (1 - 1e-12) else OrderStatus.PARTIAL
        # A broker's fills come in time order: never before the fill before this one.
        at = max(q.ts, self.arrivals.get(order.client_order_id, q.ts), self.last_fill_ns)
        self.last_fill_ns = at
        fill = Fill(
            execution_id=execution_id(order.client_order_id, self.fill_count),
            client_order_id=order.client_order_id, ts=utc_from_ns(at), symbol=order.symbol,
            side=OrderSide.BUY if units > 0 else OrderSide.SELL, units=abs(units), price=px,
            fees=fee, slippage=slip, swap=swap, realized=realized, reason=reason,
            ticket=order.ticket,
        )  # fmt: skip
        self._store(
            order.model_copy(
                update={
                    "filled_units": filled,
                    "avg_price": avg,
                    "status": status,
                    "updated": fill.ts,
                }
            )
        )
        if status is OrderStatus.FILLED and order.client_order_id in self.working:
            self.working.remove(order.client_order_id)
            self.arrivals.pop(order.client_order_id, None)
        self.db.broker_add_fill(
            self.config.account, fill.execution_id, fill.ts, fill.model_dump(mode="json")
        )
        self._recent.append(fill)
        return fill

    # -- the Broker port -------------------------------------------------------------------

    def submit(self, order: Order) -> Order:
        """Accept an order (idempotent by client order id); fill it now when it can fill."""
        known = self.order_status(order.client_order_id)
        if known is not None:
            return known
        cfg = self.config
        cid = order.client_order_id
        if order.symbol != cfg.symbol:
            return self._reject(order, f"{order.symbol} is not traded in account {cfg.account}")
        units = order.units
        if cfg.round_lots:
            lots = math.floor(units / cfg.costs.contract_size / cfg.lot_step + 1e-9) * cfg.lot_step
            if lots < cfg.min_lot - 1e-12:
                lots_asked = units / cfg.costs.contract_size
                return self._reject(
                    order, f"{lots_asked:.4f} lots is below the minimum lot {cfg.min_lot}"
                )
            units = round(lots / cfg.lot_step) * cfg.lot_step * cfg.costs.contract_size
        if math.isnan(self.quote.x) and order.type is OrderType.MARKET:
            return self._reject(order, "no quote yet: the broker has seen no market data")
        if cfg.reject_probability and self._draw(cid, "reject") < cfg.reject_probability:
            return self._reject(order, "rejected by the broker (simulated)")
        if cfg.leverage is not None and not order.reduce_only:
            after = abs(self.units + units * order.side.sign)
            if after > abs(self.units):
                price = self.quote.x if not math.isnan(self.quote.x) else (order.limit_price or 0.0)
                margin = after * price * self.quote.rate / cfg.leverage
                equity = self._equity_at_quote()
                if margin > equity:
                    msg = f"insufficient margin: {margin:.2f} needed, equity {equity:.2f}"
                    return self._reject(order, msg)
        self.ticket_count += 1
        accepted = order.model_copy(
            update={
                "units": units,
                "status": OrderStatus.WORKING,
                "ticket": str(self.ticket_count),
                "updated": self._now(),
            }
        )
        self._store(accepted)
        # Orders travel one connection: each arrives no earlier than the one sent before it.
        arrival = self.quote.ts + self._latency_ns(cid, cfg.latency_submit, "submit")
        self.last_arrival = max(arrival, self.last_arrival)
        self.arrivals[cid] = self.last_arrival
        self.working.append(cid)
        if accepted.type is OrderType.MARKET and cfg.immediate and self.quote.ts >= 0:
            self._fill_market(accepted)
        return self.orders[cid]

    def _reject(self, order: Order, why: str) -> Order:
        return self._store(
            order.model_copy(
                update={"status": OrderStatus.REJECTED, "reason": why, "updated": self._now()}
            )
        )

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
        """Change a working order's prices, or the protective levels of the position it opened.

        The change reaches the broker after the modify latency: a bar that opens after it
        arrives sees it, and so does the range of the bar it arrives in (the order as it was
        may still have filled at that bar's open).
        """
        order = self._known(client_order_id)
        changes: dict[str, Any] = {}
        for name, value in (("limit_price", limit_price), ("stop_price", stop_price),
                            ("stop_loss", stop_loss), ("take_profit", take_profit),
                            ("trailing", trailing)):  # fmt: skip
            if value is not None:
                changes[name] = value
        arrival = self.quote.ts + self._latency_ns(
            f"{client_order_id}:{self.ticket_count}", self.config.latency_modify, "modify"
        )
        self.ticket_count += 1
        self.modifies.append((client_order_id, arrival, changes))
        if self.config.immediate or arrival <= self.quote.ts:
            self._apply_requests(self.quote.ts)
        return self.orders.get(client_order_id, order)

    def cancel(self, client_order_id: str) -> Order:
        """Cancel what is left of a working order (a filled one is returned as it is).

        The cancel reaches the broker after the cancel latency; until then the order may still
        fill (a cancel arriving inside a bar takes effect after that bar's range).
        """
        order = self._known(client_order_id)
        if not order.status.is_open:
            return order
        arrival = self.quote.ts + self._latency_ns(
            client_order_id, self.config.latency_cancel, "cancel"
        )
        self.cancels[client_order_id] = arrival
        if self.config.immediate or arrival <= self.quote.ts:
            self._apply_requests(self.quote.ts)
        return self.orders.get(client_order_id, order)

    def _apply_requests(self, now: int) -> None:
        """Apply the modifies and cancels that have reached the broker by ``now`` (ns)."""
        if self.modifies:
            due = [m for m in self.modifies if m[1] <= now]
            self.modifies = [m for m in self.modifies if m[1] > now]
            for cid, _, changes in due:
                order = self.order_status(cid)
                if order is None:
                    continue
                if order.status in (OrderStatus.FILLED, OrderStatus.PARTIAL) and self.units != 0.0:
                    self.stop_loss = changes.get("stop_loss", self.stop_loss)
                    self.take_profit = changes.get("take_profit", self.take_profit)
                    self.trailing = changes.get("trailing", self.trailing)
                self._store(
                    order.model_copy(update={**changes, "updated": utc_from_ns(max(now, 0))})
                )
        for cid, arrival in list(self.cancels.items()):
            if arrival > now:
                continue
            del self.cancels[cid]
            order = self.order_status(cid)
            if order is None or not order.status.is_open:
                continue
            if cid in self.working:
                self.working.remove(cid)
                self.arrivals.pop(cid, None)
            self._store(
                order.model_copy(
                    update={"status": OrderStatus.CANCELLED, "updated": utc_from_ns(max(now, 0))}
                )
            )

    def _known(self, client_order_id: str) -> Order:
        order = self.order_status(client_order_id)
        if order is None:
            raise UsageError(f"order {client_order_id} is unknown to {self.config.account}")
        return order

    def positions(self) -> tuple[Position, ...]:
        """Return the position, if any."""
        if self.units == 0.0:
            return ()
        nan_none = lambda v: None if math.isnan(v) else v  # noqa: E731
        opened = None if self.opened is None else utc_from_ns(self.opened)
        return (
            Position(
                symbol=self.config.symbol, units=self.units, avg_price=self.avg_price,
                stop_loss=nan_none(self.stop_loss), take_profit=nan_none(self.take_profit),
                trailing=nan_none(self.trailing), opened=opened,
            ),
        )  # fmt: skip

    def open_orders(self) -> tuple[Order, ...]:
        """Return the orders still working."""
        return tuple(self.orders[c] for c in self.working)

    def account(self) -> Account:
        """Return balance, equity at the current quote and margin in use."""
        equity = self._equity_at_quote()
        margin = 0.0
        if self.units != 0.0 and self.config.leverage is not None:
            margin = abs(self.units) * self._mark_price(self.units) * self.quote.rate
            margin /= self.config.leverage
        # Built without validation: every field is the broker's own arithmetic.
        return Account.model_construct(
            currency=self.config.currency, balance=self.balance, equity=equity,
            margin_used=margin, leverage=self.config.leverage,
        )  # fmt: skip

    def order_status(self, client_order_id: str) -> Order | None:
        """Return an order by its client order id."""
        known = self.orders.get(client_order_id)
        if known is not None:
            return known
        if is_client_order_id(client_order_id) and client_order_id > self.last_cid:
            return None  # the runtime's ids grow with time and sequence: one above the last is new
        body = self.db.broker_order(self.config.account, client_order_id)
        return None if body is None else Order.model_validate(body)

    def fills_since(self, since: datetime | None) -> tuple[Fill, ...]:
        """Return the fills at or after ``since``, in execution order."""
        recent = self._recent
        if since is not None and recent and recent[0].ts <= since:
            # Everything asked for was made by this process: answer from memory.
            start = len(recent)
            while start > 0 and recent[start - 1].ts >= since:
                start -= 1
            return tuple(recent[start:])
        rows = self.db.broker_fills(self.config.account, since)
        return tuple(Fill.model_validate(row) for row in rows)

    # -- the market ------------------------------------------------------------------------

    def on_market(self, bars: BarBatch, index: int, stage: MarketStage) -> None:
        """Run the simulation to bar ``index``'s open, or through its range to its close.

        A stage already processed (a restarted session replaying bars) is skipped.
        """
        ts = int(bars.ts[index])
        step = (ts, _STAGE_ORDER[stage])
        if step <= self.cursor:
            return
        q = self.quote
        q.index = index
        q.high = float(bars.high[index])
        q.low = float(bars.low[index])
        q.spread = self.costs.spread_of(float(bars.spread[index]))
        q.volume = float(bars.volume[index])
        q.end = int(bars.end[index])
        rate = float(bars.to_account[index])
        if stage == "open":
            q.ts, q.stage, q.x = ts, "open", float(bars.open[index])
            q.rate = self.last_rate  # the rate known at the open is the last close's
            if self.cancels or self.modifies:
                self._apply_requests(ts)
            self._fill_arrived()
        else:
            q.stage = "close"
            q.rate = rate
            if self.modifies:  # a change arriving inside the bar holds for its range
                due = [m for m in self.modifies if m[1] < q.end]
                if due:
                    self._apply_requests(max(m[1] for m in due))
            self._swap(ts, int(bars.next_ts[index]))
            if self.units != 0.0 and self._market_open(ts):
                self._protective(float(bars.open[index]))
            if self.working and self._market_open(ts):
                self._working_orders(float(bars.open[index]))
            q.ts, q.x = q.end, float(bars.close[index])
            if self.cancels:  # cancels arriving inside the bar hold after its range
                self._apply_requests(q.end - 1)
            if self.units != 0.0:
                mark = self._mark_price(self.units)
                self.accrued += self.units * (mark - self.ref) * rate
                self.ref = mark
            self.last_rate = rate
        self.cursor = step

    # -- quiet bars, in bulk -----------------------------------------------------------------

    def preview_quiet(
        self, bars: BarBatch, start: int, stop: int
    ) -> tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Return how many bars from ``start`` pass quietly, with balance and equity after each.

        A quiet bar fills nothing: there are no working orders (the caller makes sure) and the
        bar's range reaches no protective level. Swap and marks are what such a bar does, and
        they are computed here for the bars ``start:stop`` at once, with the same arithmetic
        (and the same order of additions) as one bar at a time. Nothing changes until
        :meth:`apply_quiet`.
        """
        if (int(bars.ts[start]), 0) <= self.cursor or self.cancels or self.modifies:
            return 0, np.empty(0), np.empty(0)
        u = self.units
        costs = self.costs
        count = stop - start
        if u == 0.0:
            flat = np.full(count, self.balance + self.accrued)
            return count, flat, flat
        shift = self.mark_shifts(bars, start, stop, u)
        trailing = not math.isnan(self.trailing)
        if trailing or not (math.isnan(self.stop_loss) and math.isnan(self.take_profit)):
            d = 1.0 if u > 0.0 else -1.0
            o = bars.open[start:stop] + shift
            adverse = (bars.low if u > 0.0 else bars.high)[start:stop] + shift
            favorable = (bars.high if u > 0.0 else bars.low)[start:stop] + shift
            if trailing:
                best = np.empty(count)
                best[0] = self.best
                if count > 1:
                    extreme = np.maximum if d > 0 else np.minimum
                    best[1:] = extreme.accumulate(np.r_[self.best, favorable[:-1]])[1:]
                level = best - d * self.trailing
            else:
                level = np.full(count, self.stop_loss)
            tp = self.take_profit
            with np.errstate(invalid="ignore"):
                hit = (d * (o - level) <= 0.0) | (d * (o - tp) >= 0.0)
                hit |= (d * (adverse - level) <= 0.0) | (d * (favorable - tp) >= 0.0)
            first = np.flatnonzero(hit)
            if first.size:
                count = int(first[0])
                if count == 0:
                    return 0, np.empty(0), np.empty(0)
                stop = start + count
                shift = shift[:count]
        rate = bars.to_account[start:stop]
        marks = bars.close[start:stop] + shift
        before = np.empty(count)
        before[0] = self.ref
        before[1:] = marks[:-1]
        steps = u * (marks - before) * rate
        accrued = np.cumsum(np.r_[self.accrued, steps])[1:]
        balance = np.full(count, self.balance)
        credit = np.zeros(0)
        if costs.swap_long != 0.0 or costs.swap_short != 0.0:
            nights = costs.rollovers(bars.ts[start:stop], bars.next_ts[start:stop])
            per_unit = costs.swap_long if u > 0.0 else costs.swap_short
            credit = abs(u) * per_unit * rate * nights
            balance = np.cumsum(np.r_[self.balance, credit])[1:]
        self._previewed = (start, accrued, credit)
        return count, balance, balance + accrued

    def mark_shifts(
        self, bars: BarBatch, start: int, stop: int, units: float
    ) -> npt.NDArray[np.float64]:
        """Return what turns bar prices into the position's marks (minus the bid's share of the
        spread for longs, plus the ask's for shorts), bar by bar."""
        costs = self.costs
        if costs.spread is not None:
            spread = np.full(stop - start, costs.spread)
        else:
            spread = np.nan_to_num(bars.spread[start:stop], nan=0.0)
        return -costs.sell_share * spread if units > 0.0 else costs.buy_share * spread

    def apply_quiet(
        self, bars: BarBatch, start: int, count: int, balance: npt.NDArray[np.float64],
        equity: npt.NDArray[np.float64],
    ) -> None:  # fmt: skip
        """Move the account through ``count`` quiet bars from ``start`` (see :meth:`preview_quiet`)."""
        last = start + count - 1
        u = self.units
        if u != 0.0:
            first, accrued, credit = self._previewed
            if credit.shape[0]:
                # Added one bar at a time, as the bars would have.
                self.swap_since_fill = float(
                    np.cumsum(np.r_[self.swap_since_fill, credit[: start - first + count]])[-1]
                )
            self.balance = float(balance[-1])
            self.accrued = float(accrued[start - first + count - 1])
            spread = self.costs.spread_of(float(bars.spread[last]))
            shift = -self.costs.sell_share * spread if u > 0.0 else self.costs.buy_share * spread
            self.ref = float(bars.close[last]) + shift
            if not math.isnan(self.trailing):
                shifts = self.mark_shifts(bars, start, last + 1, u)
                favorable = (bars.high if u > 0.0 else bars.low)[start : last + 1] + shifts
                extreme = float(favorable.max() if u > 0.0 else favorable.min())
                if (u > 0.0 and extreme > self.best) or (u < 0.0 and extreme < self.best):
                    self.best = extreme
        q = self.quote
        q.index = last
        q.x = float(bars.close[last])
        q.spread = self.costs.spread_of(float(bars.spread[last]))
        q.high, q.low = float(bars.high[last]), float(bars.low[last])
        q.end = int(bars.end[last])
        q.ts, q.stage = q.end, "close"
        q.rate = float(bars.to_account[last])
        q.volume = float(bars.volume[last])
        self.last_rate = q.rate
        self.cursor = (int(bars.ts[last]), 1)

    def _fill_arrived(self) -> None:
        """Fill the market orders that have arrived by the current quote."""
        if not self.working or not self._market_open(self.quote.ts):
            return
        for cid in list(self.working):
            order = self.orders[cid]
            if order.type is OrderType.MARKET and self.arrivals.get(cid, 0) < self.quote.end:
                self._fill_market(order)

    def _fill_market(self, order: Order) -> None:
        q = self.quote
        want = order.remaining
        if self.config.participation is not None and self.config.volume_is_real:
            want = min(want, self.config.participation * q.volume)
            if want <= 0.0:
                return
        slip = self.costs.slip(q.high, q.low, want)
        bid, ask = self.bid_ask()
        px = ask + slip if order.side is OrderSide.BUY else bid - slip
        self._trade(order, want * order.side.sign, px, slip, order.reason or "signal")

    def _swap(self, start: int, end: int) -> None:
        if self.units == 0.0 or (self.costs.swap_long == 0.0 and self.costs.swap_short == 0.0):
            return
        nights = self.costs.rollovers(start, end)
        if nights > 0:
            per_unit = self.costs.swap_long if self.units > 0.0 else self.costs.swap_short
            credit = abs(self.units) * per_unit * self.quote.rate * nights
            self.balance += credit
            self.swap_since_fill += credit

    def _protective(self, open_: float) -> None:
        """Check the position's stop, take profit and trailing stop inside the bar."""
        u = self.units
        if u == 0.0:
            return
        stops = not (math.isnan(self.stop_loss) and math.isnan(self.take_profit))
        trailing = not math.isnan(self.trailing)
        if not (stops or trailing):
            return
        q = self.quote
        costs = self.costs
        d = 1.0 if u > 0.0 else -1.0
        shift = -costs.sell_share * q.spread if u > 0.0 else costs.buy_share * q.spread
        o = open_ + shift
        adverse = (q.low if u > 0.0 else q.high) + shift
        favorable = (q.high if u > 0.0 else q.low) + shift
        best = self.best
        stop = best - d * self.trailing if trailing else self.stop_loss
        tp = self.take_profit
        slip = d * costs.slip(q.high, q.low)
        reason = "trailing_stop" if trailing else "stop_loss"
        hit = ""
        fill = 0.0
        if d * (o - stop) <= 0.0:
            hit, fill = reason, o - slip
        elif d * (o - tp) >= 0.0:
            hit, fill, slip = "take_profit", o, 0.0
        elif d * (adverse - stop) <= 0.0:
            hit, fill = reason, stop - slip
        elif d * (favorable - tp) >= 0.0:
            hit, fill, slip = "take_profit", tp, 0.0
        elif trailing and d * (favorable - best) > 0.0:
            self.best = favorable
        if hit:
            self.ticket_count += 1
            cid = f"{hit[:2]}{self.fill_count + 1}-{self.ticket_count}"
            side = OrderSide.SELL if u > 0.0 else OrderSide.BUY
            order = self._store(
                Order(
                    client_order_id=cid, ts=self._now(), symbol=self.config.symbol, side=side,
                    units=abs(u), type=OrderType.STOP, stop_price=fill, reduce_only=True,
                    status=OrderStatus.WORKING, ticket=str(self.ticket_count), reason=hit,
                )
            )  # fmt: skip
            self._trade(order, -u, fill, abs(slip), hit)

    def _working_orders(self, open_: float) -> None:
        """Fill limit and stop orders the bar's range reaches."""
        q = self.quote
        costs = self.costs
        for cid in list(self.working):
            order = self.orders[cid]
            if order.type is OrderType.MARKET or self.arrivals.get(cid, 0) >= q.end:
                continue
            buy = order.side is OrderSide.BUY
            shift = costs.buy_share * q.spread if buy else -costs.sell_share * q.spread
            o, hi, lo = open_ + shift, q.high + shift, q.low + shift
            px = math.nan
            slip = 0.0
            if order.type is OrderType.LIMIT:
                limit = float(order.limit_price or 0.0)
                if (buy and o <= limit) or (not buy and o >= limit):
                    px = o
                elif (
                    (buy and lo < limit)
                    or (not buy and hi > limit)
                    or (
                        ((buy and lo == limit) or (not buy and hi == limit))
                        and (self._draw(cid, f"touch{q.index}") < self.config.touch_probability)
                    )
                ):
                    px = limit
            else:
                trigger = float(order.stop_price or 0.0)
                slip = costs.slip(q.high, q.low, order.remaining)
                if (buy and o >= trigger) or (not buy and o <= trigger):
                    px = o + slip if buy else o - slip
                elif (buy and hi >= trigger) or (not buy and lo <= trigger):
                    px = trigger + slip if buy else trigger - slip
            if not math.isnan(px):
                reason = order.reason or order.type.value
                self._trade(order, order.remaining * order.side.sign, px, slip, reason)

"""Risk engine invariants under random trading on a one-symbol account simulator.

The simulator holds cash (account currency) and units of one symbol. Orders are checked by the
engine and only allowed ones fill, at the last mark's price plus an adverse slippage of at most
``SLIP_CAP``; at most one order fills between two marks. Marks move the price and pass the
equity to the engine. An oracle beside it computes the daily loss and drawdown from its own
book (the day from ``core.clocks.day_start_at``) and checks:

1. the breaker trips at the first mark whose loss fraction is at or beyond a limit, never
   earlier and never later;
2. at the trip, the loss beyond the limit (money) is at most the units held through the move
   (open after the order filled at the previous mark) x the price move x ``to_account``, plus
   that order's worst-case slippage cost;
3. while REDUCING or HALTED (or cooling down), every allowed order reduces ``|position|``.

A run of marks :meth:`RiskEngine.quiet_marks` calls quiet, taken at once, leaves the state that
marking each one leaves.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from testkit.files import utc

from core.clocks import day_start_at
from core.settings import RiskSettings
from core.times import ns_from_utc
from execution.risk import OrderCheck, RiskEngine, RiskMode, increases_exposure

CONTRACT = 100_000.0
MAX_LOTS = 3.0
SLIP_CAP = 0.0005
CASH = 100_000.0
# Starts in plain winter and summer weeks and just before each daylight-saving change.
STARTS = [utc(2024, 1, 8), utc(2024, 3, 8), utc(2024, 7, 8), utc(2024, 11, 1)]


def _loss(base: float, equity: float) -> float:
    return (base - equity) / base


class RiskMachine(RuleBasedStateMachine):
    """One account: the engine under test, a simulated broker and the oracle's book."""

    @initialize(
        start=st.sampled_from(STARTS),
        daily=st.floats(0.002, 0.03),
        drawdown=st.none() | st.floats(0.005, 0.05),
        reduce_at=st.floats(0.5, 1.0),
        losses=st.none() | st.integers(1, 3),
        price=st.floats(0.5, 1.0),
        to_account=st.floats(0.5, 1.0),
        thousands=st.integers(-300, 300),
    )
    def start(
        self,
        start: datetime,
        daily: float,
        drawdown: float | None,
        reduce_at: float,
        losses: int | None,
        price: float,
        to_account: float,
        thousands: int,
    ) -> None:
        self.limits = RiskSettings(
            max_daily_loss=daily, max_trailing_drawdown=drawdown, reduce_at=reduce_at,
            cooldown_after_losses=losses, cooldown_bars=3, max_position_lots=MAX_LOTS,
        )  # fmt: skip
        self.engine = RiskEngine.fresh(self.limits, "paper:property")
        self.ts, self.price, self.to_account = start, price, to_account
        # The account starts with a position bought at the first price, equity CASH.
        self.units = thousands * 1_000.0
        self.cash = CASH - self.units * price * to_account
        self.trade_start_equity = CASH
        self.filled_since_mark = False
        self.slippage_since_mark = 0.0
        self.halted = False
        self.day = day_start_at(start)
        self.base = self.hwm = self.equity
        self.engine.on_mark(self.ts, self.equity)

    @property
    def equity(self) -> float:
        return self.cash + self.units * self.price * self.to_account

    # -- orders -------------------------------------------------------------------------------

    def _send(self, order_units: float, slip: float) -> bool:
        before = self.units
        grows = increases_exposure(before, order_units)
        state = self.engine.state
        verdict = self.engine.check(
            OrderCheck(
                ts=self.ts, symbol="EURUSD", position_units=before, order_units=order_units,
                price=self.price, to_account=self.to_account, contract_size=CONTRACT,
                equity=self.equity, gross_exposure=abs(before) * self.price * self.to_account,
                open_orders=0, orders_last_minute=0, is_entry=grows,
            )
        )  # fmt: skip
        too_big = abs(before + order_units) / CONTRACT > MAX_LOTS * (1 + 1e-9)
        blocked = state.mode is not RiskMode.ACTIVE or state.cooldown_bars_left > 0 or too_big
        assert verdict.allowed is not (grows and blocked), verdict.reason
        if not verdict.allowed:
            return False
        if state.mode is not RiskMode.ACTIVE or state.cooldown_bars_left:
            # Invariant 3: only reductions of |position| pass in these modes.
            after = before + order_units
            assert abs(after) <= abs(before) * (1 + 1e-9)
            assert before * after >= 0 or abs(after) <= 1e-9 * abs(before)
        equity_before = self.equity
        fill = self.price + math.copysign(slip * SLIP_CAP, order_units)
        self.cash -= order_units * fill * self.to_account
        self.units = before + order_units
        self.slippage_since_mark += abs(order_units) * slip * SLIP_CAP * self.to_account
        self.filled_since_mark = True
        closed = before != 0 and (self.units == 0 or before * self.units < 0)
        if closed:
            pnl = self.equity - self.trade_start_equity
            self.engine.on_trade_closed(self.ts, pnl)
        if before == 0:
            self.trade_start_equity = equity_before
        elif closed:
            self.trade_start_equity = self.equity  # a reverse opens the next trade
        return True

    @precondition(lambda self: not self.filled_since_mark)
    @rule(thousands=st.integers(-400, 400).filter(bool), slip=st.floats(0.0, 1.0))
    def submit(self, thousands: int, slip: float) -> None:
        self._send(thousands * 1_000.0, slip)

    @precondition(lambda self: not self.filled_since_mark and self.units != 0)
    @rule(slip=st.floats(0.0, 1.0))
    def flatten(self, slip: float) -> None:
        # Exits run whatever the account's mode.
        assert self._send(-self.units, slip)

    # -- time ---------------------------------------------------------------------------------

    @rule(basis_points=st.integers(-100, 100), minutes=st.integers(1, 720))
    def mark(self, basis_points: int, minutes: int) -> None:
        held, old_price = self.units, self.price
        self.price *= 1.0 + basis_points / 10_000
        self.ts += timedelta(minutes=minutes)
        equity = self.equity
        day = day_start_at(self.ts)
        if day > self.day:
            self.day, self.base = day, equity
        self.hwm = max(self.hwm, equity)
        daily, drawdown = _loss(self.base, equity), _loss(self.hwm, equity)
        limits = self.limits
        assert limits.max_daily_loss is not None
        daily_hit = daily >= limits.max_daily_loss
        drawdown_hit = limits.max_trailing_drawdown is not None and (
            drawdown >= limits.max_trailing_drawdown
        )

        events = self.engine.on_mark(self.ts, equity)

        kinds = [event.kind for event in events]
        mode = self.engine.state.mode
        if self.halted:
            assert mode is RiskMode.HALTED
            assert "breaker" not in kinds
        elif daily_hit or drawdown_hit:
            # Invariant 1, never later: the first mark at or beyond a limit trips.
            assert mode is RiskMode.HALTED
            assert kinds.count("breaker") == 1
            self.halted = True
            # Invariant 2: the overshoot is bounded by one move of the held units and the
            # slippage of the one order since the previous mark.
            bound = abs(held) * abs(self.price - old_price) * self.to_account
            bound += self.slippage_since_mark + 1e-9 * CASH
            if daily_hit:
                assert (self.base - equity) - limits.max_daily_loss * self.base <= bound
            if drawdown_hit:
                assert limits.max_trailing_drawdown is not None
                assert (self.hwm - equity) - limits.max_trailing_drawdown * self.hwm <= bound
        else:
            # Invariant 1, never earlier; and REDUCING exactly from reduce_at of a limit.
            warned = daily >= limits.reduce_at * limits.max_daily_loss or (
                limits.max_trailing_drawdown is not None
                and drawdown >= limits.reduce_at * limits.max_trailing_drawdown
            )
            assert mode is (RiskMode.REDUCING if warned else RiskMode.ACTIVE)
        self.filled_since_mark = False
        self.slippage_since_mark = 0.0

    @rule()
    def bar(self) -> None:
        left = self.engine.state.cooldown_bars_left
        events = self.engine.on_bar(self.ts)
        assert self.engine.state.cooldown_bars_left == max(left - 1, 0)
        assert [e.kind for e in events] == (["cooldown_cleared"] if left == 1 else [])

    @precondition(lambda self: self.halted)
    @rule()
    def reset(self) -> None:
        events = self.engine.reset(self.ts, "checked by the trader")
        assert [(e.kind, e.to_mode) for e in events] == [("reset", RiskMode.ACTIVE)]
        last = self.engine.state.last_equity
        assert last is not None
        self.base = self.hwm = last
        self.halted = False


def test_risk_engine_random_trading_keeps_breaker_invariants() -> None:
    # Arrange / Act / Assert: the machine's rules assert the invariants at every step.
    run_state_machine_as_test(
        RiskMachine, settings=settings(max_examples=100, stateful_step_count=30, deadline=None)
    )


@settings(max_examples=200, deadline=None)
@given(position=st.integers(-(10**6), 10**6), order=st.integers(-(10**6), 10**6))
def test_increases_exposure_whole_units_match_definition(position: int, order: int) -> None:
    # Arrange
    after = position + order
    expected = abs(after) > abs(position) or position * after < 0

    # Act
    result = increases_exposure(float(position), float(order))
    mirrored = increases_exposure(float(-position), float(-order))

    # Assert
    assert result is expected
    assert mirrored is result


@settings(max_examples=200, deadline=None)
@given(position=st.floats(-1e7, 1e7, allow_nan=False), parts=st.integers(1, 7))
def test_increases_exposure_flatten_in_parts_never_increases(position: float, parts: int) -> None:
    # Arrange: a flatten sent in equal parts leaves float dust behind.
    piece = -position / parts
    held = position
    results = []

    # Act
    for _ in range(parts):
        results.append(increases_exposure(held, piece))
        held += piece

    # Assert
    assert not any(results)


@settings(max_examples=150, deadline=None)
@given(
    daily=st.none() | st.floats(0.005, 0.05),
    drawdown=st.none() | st.floats(0.005, 0.05),
    reduce_at=st.floats(0.5, 1.0),
    start=st.sampled_from(STARTS),
    warmup=st.lists(st.integers(-300, 300), min_size=1, max_size=4),
    steps=st.lists(st.tuples(st.integers(1, 240), st.integers(-100, 100)), min_size=1,
                   max_size=40),
    halt=st.booleans(),
)  # fmt: skip
def test_quiet_marks_taken_at_once_leave_the_state_of_one_at_a_time(
    daily: float | None,
    drawdown: float | None,
    reduce_at: float,
    start: datetime,
    warmup: list[int],
    steps: list[tuple[int, int]],
    halt: bool,
) -> None:
    # Arrange: an engine in some mode after a few hourly marks, then a run of marks.
    limits = RiskSettings(max_daily_loss=daily, max_trailing_drawdown=drawdown, reduce_at=reduce_at)
    engine = RiskEngine.fresh(limits, "paper:quiet")
    ts, equity = start, CASH
    for change in warmup:
        ts, equity = ts + timedelta(hours=1), equity + change * 10.0
        engine.on_mark(ts, equity)
    if halt:
        engine.halt(ts, "trader stop")
    moments, marks = [], []
    for minutes, change in steps:
        ts, equity = ts + timedelta(minutes=minutes), equity + change * 25.0
        moments.append(ts)
        marks.append(equity)
    ends = np.array([ns_from_utc(m) for m in moments], dtype=np.int64)

    # Act
    count = engine.quiet_marks(ends, np.array(marks))
    one_by_one = RiskEngine(limits, engine.state)
    events = [one_by_one.on_mark(moments[k], marks[k]) for k in range(count)]
    at_once = RiskEngine(limits, engine.state)
    if count:
        top = int(np.argmax(marks[:count]))
        events.append(at_once.on_mark(moments[top], marks[top]))
        events.append(at_once.on_mark(moments[count - 1], marks[count - 1]))

    # Assert
    assert all(found == [] for found in events)
    assert at_once.state == one_by_one.state
    assert one_by_one.state.mode is engine.state.mode
    if count < len(marks):
        # The run ends where marking moves something, or within a hair of a threshold.
        moved = one_by_one.on_mark(moments[count], marks[count]) != []
        assert moved or _near_threshold(one_by_one, marks[count])


def _near_threshold(engine: RiskEngine, equity: float) -> bool:
    state, limits = engine.state, engine.limits
    assert state.day_start_equity is not None and state.equity_hwm is not None
    fractions = [
        (_loss(state.day_start_equity, equity), limits.max_daily_loss),
        (_loss(state.equity_hwm, equity), limits.max_trailing_drawdown),
    ]
    return any(
        abs(fraction - edge) < 1e-9
        for fraction, limit in fractions
        if limit is not None
        for edge in (limit, limits.reduce_at * limit)
    )

"""The risk engine: overrides, pre-trade checks, breakers, cooldowns and persistence."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from testkit.files import utc

from core.errors import DataError, UsageError
from core.settings import RiskSettings
from core.times import ns_from_utc
from execution.risk import (
    OrderCheck,
    RiskEngine,
    RiskEvent,
    RiskMode,
    RiskState,
    increases_exposure,
    parse_risk_overrides,
)

ACCOUNT = "paper:test"
# A Tuesday noon, inside any week and away from the day roll.
NOON = utc(2024, 1, 9, 12)


def _engine(**limits: Any) -> RiskEngine:
    return RiskEngine.fresh(RiskSettings(**limits), ACCOUNT)


def _order(**fields: Any) -> OrderCheck:
    values: dict[str, Any] = {
        "ts": NOON, "symbol": "EURUSD", "position_units": 0.0, "order_units": 100_000.0,
        "price": 1.1, "to_account": 1.0, "contract_size": 100_000.0, "equity": 100_000.0,
        "gross_exposure": 0.0, "open_orders": 0, "orders_last_minute": 0, "is_entry": True,
    }  # fmt: skip
    values.update(fields)
    return OrderCheck(**values)


def _exit(**fields: Any) -> OrderCheck:
    values: dict[str, Any] = {"position_units": 100_000.0, "order_units": -100_000.0}
    return _order(**(values | fields | {"is_entry": False}))


# -- parse_risk_overrides ---------------------------------------------------------------------


def test_parse_risk_overrides_values_read_as_their_types() -> None:
    # Arrange
    items = [
        "max_daily_loss=0.03", "max-trailing-drawdown=0.1", "max_open_orders=5",
        "flatten_on_halt=true", "allowed_symbols=eurusd, GBPUSD", "trading_hours='08:00-20:00'",
    ]  # fmt: skip

    # Act
    limits = parse_risk_overrides(RiskSettings(), items)

    # Assert
    assert limits.max_daily_loss == 0.03
    assert limits.max_trailing_drawdown == 0.1
    assert limits.max_open_orders == 5
    assert limits.flatten_on_halt is True
    assert limits.allowed_symbols == ("EURUSD", "GBPUSD")
    assert limits.trading_hours == "08:00-20:00"


@pytest.mark.parametrize("word", ["none", "off", "OFF"])
def test_parse_risk_overrides_none_or_off_switches_limit_off(word: str) -> None:
    # Arrange
    base = RiskSettings(max_daily_loss=0.03, flatten_on_halt=True)

    # Act
    limits = parse_risk_overrides(base, [f"max_daily_loss={word}", "flatten_on_halt=off"])

    # Assert
    assert limits.max_daily_loss is None
    assert limits.flatten_on_halt is False
    assert base.max_daily_loss == 0.03


def test_parse_risk_overrides_unknown_key_lists_known_keys() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"unknown risk limit 'max_loss'.*max_daily_loss"):
        parse_risk_overrides(RiskSettings(), ["max_loss=0.03"])


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ("max_daily_loss=2", "max_daily_loss"),
        ("max_open_orders=many", "max_open_orders"),
        ("reduce_at=off", "reduce_at"),
        ("flatten_on_halt=maybe", "flatten_on_halt"),
        ("trading_hours=8-20", "trading_hours"),
    ],
)
def test_parse_risk_overrides_bad_value_names_key(item: str, key: str) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=rf"bad risk options: {key}"):
        parse_risk_overrides(RiskSettings(), [item])


def test_parse_risk_overrides_item_without_equals_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="write KEY=VALUE"):
        parse_risk_overrides(RiskSettings(), ["max_daily_loss"])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("trading_hours=25:00-01:00", "trading_hours '25:00-01:00'"),
        ("day_start=17:75", "day_start '17:75'"),
        ("day_zone=Mars/Olympus", "no IANA time zone"),
    ],
)
def test_parse_risk_overrides_impossible_time_or_zone_raises(item: str, message: str) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=message):
        parse_risk_overrides(RiskSettings(), [item])


def test_risk_engine_impossible_trading_hours_in_settings_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="trading_hours '08:00-24:00'"):
        _engine(trading_hours="08:00-24:00")


# -- increases_exposure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "order", "expected"),
    [
        (0.0, 1.0, True),
        (0.0, -1.0, True),
        (1.0, 1.0, True),
        (-1.0, -0.5, True),
        (1.0, -0.5, False),
        (1.0, -1.0, False),
        (-1.0, 1.0, False),
        (1.0, -1.5, True),  # a reverse to a smaller short still opens the short side
        (-2.0, 3.0, True),
        (1.0, 0.0, False),
        (0.0, 0.0, False),
        (0.3, -(0.1 + 0.2), False),  # float dust of a flatten is flat
    ],
)
def test_increases_exposure_cases_match_table(
    position: float, order: float, expected: bool
) -> None:
    # Act
    result = increases_exposure(position, order)

    # Assert
    assert result is expected


# -- marks and breakers -----------------------------------------------------------------------


def test_on_mark_first_mark_sets_day_base_and_hwm() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03)

    # Act
    events = engine.on_mark(NOON, 100_000.0)

    # Assert
    state = engine.state
    assert events == []
    assert (state.day_start_equity, state.equity_hwm, state.last_equity) == (1e5, 1e5, 1e5)
    assert state.day_start == utc(2024, 1, 8, 22)
    assert state.last_mark == NOON


def test_on_mark_higher_equity_raises_hwm_only() -> None:
    # Arrange
    engine = _engine()
    engine.on_mark(NOON, 100_000.0)

    # Act
    engine.on_mark(utc(2024, 1, 9, 13), 110_000.0)
    engine.on_mark(utc(2024, 1, 9, 14), 105_000.0)

    # Assert
    assert engine.state.equity_hwm == 110_000.0
    assert engine.state.day_start_equity == 100_000.0


def test_on_mark_daily_loss_at_limit_halts() -> None:
    # Arrange: 3000 of 100000 is exactly the 3% limit.
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)

    # Act
    events = engine.on_mark(utc(2024, 1, 9, 13), 97_000.0)

    # Assert
    assert [(e.kind, e.from_mode, e.to_mode) for e in events] == [
        ("breaker", RiskMode.ACTIVE, RiskMode.HALTED)
    ]
    assert events[0].equity == 97_000.0
    assert "daily loss 3.000% >= max_daily_loss 3.000%" in events[0].reason
    assert engine.state.mode is RiskMode.HALTED
    assert engine.state.since == utc(2024, 1, 9, 13)


def test_on_mark_daily_loss_just_below_limit_reduces_only() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)

    # Act
    events = engine.on_mark(utc(2024, 1, 9, 13), 97_000.01)

    # Assert
    assert [e.kind for e in events] == ["reduce"]
    assert engine.state.mode is RiskMode.REDUCING


def test_on_mark_drawdown_at_limit_halts() -> None:
    # Arrange: 12500 below a high-water mark of 125000 is exactly 10%.
    engine = _engine(max_trailing_drawdown=0.1)
    engine.on_mark(NOON, 100_000.0)
    engine.on_mark(utc(2024, 1, 9, 13), 125_000.0)

    # Act
    events = engine.on_mark(utc(2024, 1, 9, 14), 112_500.0)

    # Assert
    assert [e.kind for e in events] == ["breaker"]
    assert "drawdown 10.000% >= max_trailing_drawdown 10.000%" in events[0].reason
    assert engine.state.mode is RiskMode.HALTED


def test_on_mark_reduce_at_fraction_reduces_then_recovers() -> None:
    # Arrange: reduce_at 0.8 of 3% is 2.4%.
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)

    # Act
    at_reduce = engine.on_mark(utc(2024, 1, 9, 13), 97_600.0)
    still = engine.on_mark(utc(2024, 1, 9, 14), 97_500.0)
    back = engine.on_mark(utc(2024, 1, 9, 15), 98_000.0)

    # Assert
    assert [(e.kind, e.to_mode) for e in at_reduce] == [("reduce", RiskMode.REDUCING)]
    assert still == []
    assert [(e.kind, e.from_mode, e.to_mode) for e in back] == [
        ("recover", RiskMode.REDUCING, RiskMode.ACTIVE)
    ]
    assert engine.state.mode is RiskMode.ACTIVE


def test_on_mark_limits_off_never_change_mode() -> None:
    # Arrange
    engine = _engine()
    engine.on_mark(NOON, 100_000.0)

    # Act
    events = engine.on_mark(utc(2024, 1, 9, 13), 1_000.0)

    # Assert
    assert events == []
    assert engine.state.mode is RiskMode.ACTIVE


def test_on_mark_new_day_rebases_daily_loss_and_recovers() -> None:
    # Arrange: REDUCING at a 2.5% daily loss on Tuesday.
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)
    engine.on_mark(utc(2024, 1, 9, 13), 97_500.0)

    # Act: the same equity after 17:00 New York is the new day's base.
    events = engine.on_mark(utc(2024, 1, 9, 22, 5), 97_500.0)

    # Assert
    assert [e.kind for e in events] == ["new_day", "recover"]
    assert engine.state.day_start_equity == 97_500.0
    assert engine.state.mode is RiskMode.ACTIVE


def test_on_mark_halted_stays_halted_on_new_day() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)
    engine.on_mark(utc(2024, 1, 9, 13), 96_000.0)

    # Act
    events = engine.on_mark(utc(2024, 1, 10, 12), 99_000.0)

    # Assert
    assert [(e.kind, e.to_mode) for e in events] == [("new_day", RiskMode.HALTED)]
    assert engine.state.mode is RiskMode.HALTED
    assert engine.state.day_start_equity == 99_000.0


@pytest.mark.parametrize(
    ("before", "roll"),
    [
        (utc(2024, 1, 9, 21, 59), utc(2024, 1, 9, 22, 0)),  # winter: 17:00 New York is 22:00 UTC
        (utc(2024, 7, 9, 20, 59), utc(2024, 7, 9, 21, 0)),  # summer: 17:00 New York is 21:00 UTC
    ],
    ids=["winter", "summer"],
)
def test_on_mark_day_rolls_at_1700_new_york(before: datetime, roll: datetime) -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(before.replace(hour=12, minute=0), 100_000.0)

    # Act
    not_yet = engine.on_mark(before, 98_000.0)
    rolled = engine.on_mark(roll, 98_000.0)

    # Assert
    assert not_yet == []
    assert [e.kind for e in rolled] == ["new_day"]
    assert engine.state.day_start == roll
    assert engine.state.day_start_equity == 98_000.0


def test_on_mark_day_start_in_utc_rolls_at_midnight() -> None:
    # Arrange
    engine = _engine(day_start="00:00", day_zone="UTC")
    engine.on_mark(NOON, 100_000.0)

    # Act
    late = engine.on_mark(utc(2024, 1, 9, 23, 59), 99_000.0)
    rolled = engine.on_mark(utc(2024, 1, 10, 0, 0), 99_500.0)

    # Assert
    assert late == []
    assert [e.kind for e in rolled] == ["new_day"]
    assert engine.state.day_start == utc(2024, 1, 10)


def test_on_mark_nan_equity_raises() -> None:
    # Act / Assert
    with pytest.raises(DataError, match="equity nan"):
        _engine().on_mark(NOON, float("nan"))


# -- halt and reset ---------------------------------------------------------------------------


def test_halt_moves_to_halted_once() -> None:
    # Arrange
    engine = _engine()
    engine.on_mark(NOON, 100_000.0)

    # Act
    first = engine.halt(utc(2024, 1, 9, 13), "trader stop")
    second = engine.halt(utc(2024, 1, 9, 14), "again")

    # Assert
    assert [(e.kind, e.from_mode, e.to_mode, e.reason) for e in first] == [
        ("halt", RiskMode.ACTIVE, RiskMode.HALTED, "trader stop")
    ]
    assert second == []
    assert engine.state.reason == "trader stop"


def test_reset_after_breaker_rebases_to_last_equity() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03, cooldown_after_losses=1)
    engine.on_mark(NOON, 100_000.0)
    engine.on_mark(utc(2024, 1, 9, 13), 96_000.0)
    engine.on_trade_closed(utc(2024, 1, 9, 13), -4_000.0)

    # Act
    events = engine.reset(utc(2024, 1, 9, 14), "checked")
    after = engine.on_mark(utc(2024, 1, 9, 15), 96_000.0)

    # Assert
    state = engine.state
    assert [(e.kind, e.from_mode, e.to_mode) for e in events] == [
        ("reset", RiskMode.HALTED, RiskMode.ACTIVE)
    ]
    assert (state.equity_hwm, state.day_start_equity) == (96_000.0, 96_000.0)
    assert (state.cooldown_bars_left, state.losses_in_row) == (0, 0)
    assert after == []
    assert state.mode is RiskMode.ACTIVE


# -- cooldown ---------------------------------------------------------------------------------


def test_on_trade_closed_losses_in_row_start_cooldown_that_clears() -> None:
    # Arrange
    engine = _engine(cooldown_after_losses=3, cooldown_bars=2)
    engine.on_mark(NOON, 100_000.0)

    # Act
    counted = [engine.on_trade_closed(NOON, -10.0) for _ in range(3)]
    entry_during = engine.check(_order())
    exit_during = engine.check(_exit())
    first_bar = engine.on_bar(utc(2024, 1, 9, 13))
    last_bar = engine.on_bar(utc(2024, 1, 9, 14))
    entry_after = engine.check(_order())

    # Assert
    assert [[e.kind for e in events] for events in counted] == [[], [], ["cooldown"]]
    assert not entry_during.allowed
    assert "cooldown after 3 losing trades" in entry_during.reason
    assert exit_during.allowed
    assert first_bar == []
    assert [e.kind for e in last_bar] == ["cooldown_cleared"]
    assert entry_after.allowed


def test_on_trade_closed_win_between_losses_ends_the_run() -> None:
    # Arrange
    engine = _engine(cooldown_after_losses=2)

    # Act
    events = [engine.on_trade_closed(NOON, pnl) for pnl in (-5.0, 3.0, -5.0)]

    # Assert
    assert events == [[], [], []]
    assert engine.state.losses_in_row == 1
    assert engine.state.cooldown_bars_left == 0


def test_on_bar_without_cooldown_does_nothing() -> None:
    # Arrange
    engine = _engine(cooldown_after_losses=2)

    # Act
    events = engine.on_bar(NOON)

    # Assert
    assert events == []
    assert engine.state.cooldown_bars_left == 0


# -- pre-trade checks -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["reduce", "halt"])
def test_check_reducing_or_halted_refuses_increase_allows_reduction(mode: str) -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)
    if mode == "reduce":
        engine.on_mark(utc(2024, 1, 9, 13), 97_500.0)
    else:
        engine.halt(utc(2024, 1, 9, 13), "trader stop")

    # Act
    entry = engine.check(_order())
    reverse = engine.check(_order(position_units=100_000.0, order_units=-150_000.0, is_entry=False))
    partial_exit = engine.check(_exit(order_units=-40_000.0))
    flatten = engine.check(_exit())

    # Assert
    assert not entry.allowed
    assert "only orders that reduce a position" in entry.reason
    assert not reverse.allowed
    assert partial_exit.allowed
    assert flatten.allowed
    assert flatten.reason == ""


def test_check_order_marked_entry_is_checked_even_if_arithmetic_reduces() -> None:
    # Arrange
    engine = _engine()
    engine.halt(NOON, "trader stop")

    # Act
    verdict = engine.check(_order(position_units=100_000.0, order_units=-50_000.0, is_entry=True))

    # Assert
    assert not verdict.allowed


@pytest.mark.parametrize(
    ("symbol", "allowed"), [("EURUSD", True), ("eurusd", True), ("GBPUSD", False)]
)
def test_check_allowed_symbols_refuse_others(symbol: str, allowed: bool) -> None:
    # Arrange
    engine = _engine(allowed_symbols=("EURUSD", "USDJPY"))

    # Act
    verdict = engine.check(_order(symbol=symbol))

    # Assert
    assert verdict.allowed is allowed
    assert allowed or "not in allowed_symbols (EURUSD, USDJPY)" in verdict.reason


@pytest.mark.parametrize(
    ("hours", "at", "allowed"),
    [
        ("08:00-20:00", utc(2024, 1, 9, 7, 59), False),
        ("08:00-20:00", utc(2024, 1, 9, 8, 0), True),
        ("08:00-20:00", utc(2024, 1, 9, 19, 59), True),
        ("08:00-20:00", utc(2024, 1, 9, 20, 0), False),
        ("22:00-06:00", utc(2024, 1, 9, 23, 0), True),
        ("22:00-06:00", utc(2024, 1, 9, 5, 59), True),
        ("22:00-06:00", utc(2024, 1, 9, 12, 0), False),
    ],
)
def test_check_trading_hours_on_the_given_ts(hours: str, at: datetime, allowed: bool) -> None:
    # Arrange
    engine = _engine(trading_hours=hours)

    # Act
    verdict = engine.check(_order(ts=at))
    exit_verdict = engine.check(_exit(ts=at))

    # Assert
    assert verdict.allowed is allowed
    assert allowed or f"outside trading_hours {hours} UTC" in verdict.reason
    assert exit_verdict.allowed


# Friday 17:00 New York is 22:00 UTC in winter, 21:00 UTC in summer; the week reopens on Sunday.
WEEKEND_CASES = [
    (utc(2024, 1, 12, 21, 44), False),
    (utc(2024, 1, 12, 21, 45), True),
    (utc(2024, 1, 13, 12, 0), True),
    (utc(2024, 1, 14, 21, 59), True),
    (utc(2024, 1, 14, 22, 0), False),
    (utc(2024, 7, 12, 20, 44), False),
    (utc(2024, 7, 12, 20, 45), True),
    (utc(2024, 7, 14, 21, 0), False),
    (utc(2024, 1, 11, 21, 50), False),  # Thursday at the same hour
]


@pytest.mark.parametrize(("at", "weekend"), WEEKEND_CASES)
def test_should_flatten_from_margin_before_fx_close_to_reopen(at: datetime, weekend: bool) -> None:
    # Arrange
    engine = _engine(flatten_before_weekend=True)

    # Act
    flatten = engine.should_flatten(at)

    # Assert
    assert flatten is weekend


@pytest.mark.parametrize(("at", "weekend"), WEEKEND_CASES)
def test_check_weekend_window_refuses_new_exposure(at: datetime, weekend: bool) -> None:
    # Arrange
    engine = _engine(flatten_before_weekend=True)

    # Act
    verdict = engine.check(_order(ts=at))

    # Assert
    assert verdict.allowed is not weekend
    assert not weekend or "flatten_before_weekend" in verdict.reason
    assert engine.check(_exit(ts=at)).allowed


def test_should_flatten_rule_off_is_false_at_weekend() -> None:
    # Arrange
    engine = _engine()

    # Act
    flatten = engine.should_flatten(utc(2024, 1, 12, 21, 50))

    # Assert
    assert flatten is False
    assert engine.check(_order(ts=utc(2024, 1, 12, 21, 50))).allowed


@pytest.mark.parametrize(("open_orders", "allowed"), [(1, True), (2, False)])
def test_check_max_open_orders_counts_this_order(open_orders: int, allowed: bool) -> None:
    # Arrange
    engine = _engine(max_open_orders=2)

    # Act
    verdict = engine.check(_order(open_orders=open_orders))

    # Assert
    assert verdict.allowed is allowed
    assert allowed or "max_open_orders 2 reached (2 open)" in verdict.reason


@pytest.mark.parametrize(("sent", "allowed"), [(2, True), (3, False)])
def test_check_max_orders_per_minute_counts_this_order(sent: int, allowed: bool) -> None:
    # Arrange
    engine = _engine(max_orders_per_minute=3)

    # Act
    verdict = engine.check(_order(orders_last_minute=sent))

    # Assert
    assert verdict.allowed is allowed
    assert allowed or "max_orders_per_minute 3 reached" in verdict.reason


@pytest.mark.parametrize(("order_units", "allowed"), [(100_000.0, True), (100_001.0, False)])
def test_check_max_position_lots_on_resulting_position(order_units: float, allowed: bool) -> None:
    # Arrange: 1 lot held, the limit is 2 lots.
    engine = _engine(max_position_lots=2.0)

    # Act
    verdict = engine.check(_order(position_units=100_000.0, order_units=order_units))

    # Assert
    assert verdict.allowed is allowed
    assert allowed or "2.00001 lots > limit 2" in verdict.reason


def test_check_max_position_lots_float_dust_at_limit_allowed() -> None:
    # Arrange
    engine = _engine(max_position_lots=0.3)

    # Act
    verdict = engine.check(_order(position_units=0.1, order_units=0.2, contract_size=1.0))

    # Assert
    assert verdict.allowed


@pytest.mark.parametrize(("limit", "allowed"), [(210_000.0, True), (209_999.0, False)])
def test_check_max_gross_exposure_after_order(limit: float, allowed: bool) -> None:
    # Arrange: 100000 held elsewhere, the order adds 100000 units at 1.1.
    engine = _engine(max_gross_exposure=limit)

    # Act
    verdict = engine.check(_order(gross_exposure=100_000.0))

    # Assert
    assert verdict.allowed is allowed
    assert allowed or "max_gross_exposure: 210,000.00 after the order" in verdict.reason


@pytest.mark.parametrize(("limit", "allowed"), [(2.2, True), (2.0, False)])
def test_check_max_leverage_gross_over_equity(limit: float, allowed: bool) -> None:
    # Arrange: gross after the order is 220000 in account currency (to_account 2), equity 100000.
    engine = _engine(max_leverage=limit)

    # Act
    verdict = engine.check(_order(to_account=2.0))

    # Assert
    assert verdict.allowed is allowed
    assert allowed or "max_leverage: 2.20x after the order > limit 2x" in verdict.reason


def test_check_max_leverage_without_equity_refuses() -> None:
    # Arrange
    engine = _engine(max_leverage=10.0)

    # Act
    verdict = engine.check(_order(equity=0.0))

    # Assert
    assert not verdict.allowed
    assert "equity 0.00 is not positive" in verdict.reason


def test_check_reducing_order_passes_every_limit() -> None:
    # Arrange: every limit is breached by the current position and clock.
    engine = _engine(
        max_position_lots=0.5, max_gross_exposure=1.0, max_open_orders=1,
        max_orders_per_minute=1, max_leverage=0.1, allowed_symbols=("USDJPY",),
        trading_hours="08:00-09:00", flatten_before_weekend=True,
    )  # fmt: skip
    friday_late = utc(2024, 1, 12, 21, 50)

    # Act
    late_exit = _exit(ts=friday_late, gross_exposure=110_000.0, open_orders=5,
                      orders_last_minute=9)  # fmt: skip
    verdict = engine.check(late_exit)

    # Assert
    assert verdict.allowed
    assert not engine.check(_order(ts=friday_late)).allowed


# -- quiet marks ------------------------------------------------------------------------------


def _ends(*moments: datetime) -> npt.NDArray[np.int64]:
    return np.array([ns_from_utc(m) for m in moments], dtype=np.int64)


def test_quiet_marks_safe_marks_in_the_day_all_quiet() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03, max_trailing_drawdown=0.05)
    engine.on_mark(NOON, 100_000.0)
    ends = _ends(utc(2024, 1, 9, 13), utc(2024, 1, 9, 14), utc(2024, 1, 9, 21, 59))

    # Act
    count = engine.quiet_marks(ends, np.array([101_000.0, 99_000.0, 100_500.0]))

    # Assert
    assert count == 3


def test_quiet_marks_stop_at_the_next_risk_day() -> None:
    # Arrange: the day rolls at 22:00 UTC in winter.
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)
    ends = _ends(utc(2024, 1, 9, 21), utc(2024, 1, 9, 22), utc(2024, 1, 9, 23))

    # Act
    count = engine.quiet_marks(ends, np.full(3, 100_000.0))

    # Assert
    assert count == 1


def test_quiet_marks_stop_at_reduce_threshold() -> None:
    # Arrange: reduce_at 0.8 of 3% is a 2.4% daily loss.
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)
    ends = _ends(*(utc(2024, 1, 9, hour) for hour in (13, 14, 15)))

    # Act
    count = engine.quiet_marks(ends, np.array([99_000.0, 97_600.0, 99_000.0]))

    # Assert
    assert count == 1


def test_quiet_marks_reducing_stop_at_recovery_or_trip() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)
    engine.on_mark(utc(2024, 1, 9, 13), 97_500.0)
    ends = _ends(*(utc(2024, 1, 9, hour) for hour in (14, 15, 16)))

    # Act
    recovering = engine.quiet_marks(ends, np.array([97_400.0, 98_000.0, 97_500.0]))
    tripping = engine.quiet_marks(ends, np.array([97_400.0, 97_000.0, 97_500.0]))

    # Assert
    assert (recovering, tripping) == (1, 1)


def test_quiet_marks_halted_quiet_until_next_day_unless_not_finite() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)
    engine.halt(NOON, "trader stop")
    ends = _ends(*(utc(2024, 1, 9, hour) for hour in (13, 14, 23)))

    # Act
    halted = engine.quiet_marks(ends, np.array([50_000.0, 150_000.0, 1.0]))
    with_nan = engine.quiet_marks(ends, np.array([50_000.0, np.nan, 1.0]))

    # Assert
    assert (halted, with_nan) == (2, 1)


def test_quiet_marks_none_before_first_mark_or_in_cooldown() -> None:
    # Arrange
    unmarked = _engine()
    cooling = _engine(cooldown_after_losses=1)
    cooling.on_mark(NOON, 100_000.0)
    cooling.on_trade_closed(NOON, -1.0)
    ends = _ends(utc(2024, 1, 9, 13))

    # Act
    counts = [engine.quiet_marks(ends, np.array([100_000.0])) for engine in (unmarked, cooling)]

    # Assert
    assert counts == [0, 0]


# -- status and persistence -------------------------------------------------------------------


def test_status_before_any_mark_has_no_figures() -> None:
    # Act
    status = _engine().status(paused=True)

    # Assert
    assert status.paused is True
    assert status.state is RiskMode.ACTIVE
    assert (status.daily_pnl, status.drawdown, status.equity_hwm) == (None, None, None)
    assert status.limits == {"day_start": "17:00", "day_zone": "America/New_York"}


def test_status_after_marks_reports_pnl_and_negative_drawdown() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.05, flatten_on_halt=True)
    engine.on_mark(NOON, 100_000.0)
    engine.on_mark(utc(2024, 1, 9, 13), 110_000.0)
    engine.on_mark(utc(2024, 1, 9, 14), 99_000.0)

    # Act
    status = engine.status(paused=False)

    # Assert
    assert status.account == ACCOUNT
    assert status.state == "active"
    assert status.daily_pnl == -1_000.0
    assert status.equity_hwm == 110_000.0
    assert status.drawdown == pytest.approx(99_000.0 / 110_000.0 - 1.0)
    assert status.drawdown is not None and status.drawdown < 0
    assert status.limits == {
        "max_daily_loss": 0.05, "reduce_at": 0.8, "flatten_on_halt": True,
        "day_start": "17:00", "day_zone": "America/New_York",
    }  # fmt: skip


def test_status_at_hwm_has_zero_drawdown() -> None:
    # Arrange
    engine = _engine()
    engine.on_mark(NOON, 100_000.0)

    # Act
    status = engine.status(paused=False)

    # Assert
    assert status.drawdown == 0.0


def test_risk_state_to_json_round_trips_with_z_times() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(datetime(2024, 1, 9, 12, 0, 0, 250_000, tzinfo=UTC), 100_000.0)
    engine.on_mark(utc(2024, 1, 9, 13), 96_000.0)
    state = engine.state

    # Act
    data = json.loads(json.dumps(state.to_json()))
    restored = RiskState.from_json(data)

    # Assert
    assert restored == state
    assert data["mode"] == "halted"
    assert data["since"] == "2024-01-09T13:00:00Z"
    assert data["day_start"] == "2024-01-08T22:00:00Z"


def test_risk_state_restored_engine_keeps_its_mode() -> None:
    # Arrange
    engine = _engine(max_daily_loss=0.03)
    engine.on_mark(NOON, 100_000.0)
    engine.on_mark(utc(2024, 1, 9, 13), 96_000.0)

    # Act
    restored = RiskEngine(engine.limits, RiskState.from_json(engine.state.to_json()))
    events = restored.on_mark(utc(2024, 1, 9, 14), 100_000.0)

    # Assert
    assert events == []
    assert restored.state.mode is RiskMode.HALTED


def test_risk_state_from_json_bad_mode_raises() -> None:
    # Arrange
    data = RiskState(account=ACCOUNT).to_json() | {"mode": "sleeping"}

    # Act / Assert
    with pytest.raises(DataError, match=r"account 'paper:test' is unreadable \(mode"):
        RiskState.from_json(data)


def test_risk_event_to_json_writes_z_time_and_mode_values() -> None:
    # Arrange
    event = RiskEvent(ts=NOON, account=ACCOUNT, kind="halt", from_mode=RiskMode.ACTIVE,
                      to_mode=RiskMode.HALTED, reason="x", equity=1.0)  # fmt: skip

    # Act
    data = event.to_json()

    # Assert
    assert data == {
        "ts": "2024-01-09T12:00:00Z", "account": ACCOUNT, "kind": "halt", "from_mode": "active",
        "to_mode": "halted", "reason": "x", "equity": 1.0,
    }  # fmt: skip

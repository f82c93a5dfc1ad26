"""The MT4 simulator's replay: bars as ticks, the replay clock, the fault plan."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clocks import BROKER, bar_end_at
from core.errors import DataError, UsageError
from core.instruments import InstrumentRegistry
from core.ports import BarBatch
from core.timeframes import Timeframe
from core.times import utc_from_ns
from core.types import Side
from execution.brokers.mt4.replay import (
    TICKS_PER_BAR,
    FaultKind,
    FaultPlan,
    ReplayClock,
    Ticks,
    bar_ticks,
    frame_batch,
    tick_spread,
)
from execution.feeds import bar_batch

MINUTE = 60_000_000_000
HOUR = 60 * MINUTE
T0 = 1_483_606_800_000_000_000  # 2017-01-05T09:00:00Z, a Thursday
REGISTRY = InstrumentRegistry.default()


def _bars(
    open_: list[float],
    high: list[float],
    low: list[float],
    close: list[float],
    *,
    spread: list[float] | None = None,
    step: int = HOUR,
) -> BarBatch:
    n = len(open_)
    ts = T0 + np.arange(n, dtype=np.int64) * step
    return bar_batch(
        ts, np.array(open_), np.array(high), np.array(low), np.array(close),
        spread=None if spread is None else np.array(spread), bar_ns=HOUR,
    )  # fmt: skip


def _random_bars(n: int, seed: int = 7, *, step: int = MINUTE) -> BarBatch:
    rng = np.random.default_rng(seed)
    open_ = 1.1 + np.cumsum(rng.normal(0.0, 2e-4, n))
    close = open_ + rng.normal(0.0, 2e-4, n)
    high = np.maximum(open_, close) + rng.uniform(0.0, 2e-4, n)
    low = np.minimum(open_, close) - rng.uniform(0.0, 2e-4, n)
    spread = rng.uniform(0.5e-4, 2e-4, n)
    ts = T0 + np.arange(n, dtype=np.int64) * step
    return bar_batch(ts, open_, high, low, close, spread=spread, bar_ns=step)


def _prices(ticks: Ticks, bar: int) -> list[float]:
    return ticks.bid[ticks.bar == bar].tolist()


# -- ticks -----------------------------------------------------------------------------------


def test_bar_ticks_up_bar_visits_the_low_before_the_high() -> None:
    # Arrange: an up bar, a down bar, and a flat one (close == open counts as up)
    bars = _bars([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], [0.5, 1.5, 2.5], [1.2, 1.8, 3.0])

    # Act
    ticks = bar_ticks(bars, spread=0.0)

    # Assert
    assert _prices(ticks, 0) == [1.0, 0.5, 1.5, 1.2]
    assert _prices(ticks, 1) == [2.0, 2.5, 1.5, 1.8]
    assert _prices(ticks, 2) == [3.0, 2.5, 3.5, 3.0]


def test_bar_ticks_many_bars_give_four_ticks_each_inside_their_bar_in_order() -> None:
    # Arrange: bars with a gap between them (a weekend-like hole)
    bars = _random_bars(1_000)
    ts = bars.ts.copy()
    ts[500:] += 3 * 24 * HOUR
    bars = bar_batch(
        ts, bars.open, bars.high, bars.low, bars.close, spread=bars.spread, bar_ns=MINUTE
    )

    # Act
    ticks = bar_ticks(bars, spread=None)

    # Assert
    assert TICKS_PER_BAR >= 4
    assert len(ticks) == TICKS_PER_BAR * len(bars)
    assert np.array_equal(np.bincount(ticks.bar), np.full(len(bars), TICKS_PER_BAR))
    assert np.all(np.diff(ticks.ts) > 0)
    opens, ends = bars.ts[ticks.bar], bars.end[ticks.bar]
    assert np.all(ticks.ts > opens)
    assert np.all(ticks.ts < ends)
    assert np.all(np.diff(ticks.bar) >= 0)


def test_bar_ticks_fixed_spread_in_pips_gives_ask_minus_bid_of_the_spread() -> None:
    # Arrange
    bars = _random_bars(200)
    eurusd, usdjpy = REGISTRY.get("EURUSD"), REGISTRY.get("USDJPY")

    # Act
    spread = tick_spread("0.8", eurusd)
    ticks = bar_ticks(bars, spread=spread)

    # Assert: bid is the bar's price itself; ask = bid + 0.8 pips
    assert spread == pytest.approx(0.8e-4)
    assert tick_spread(1.5, usdjpy) == pytest.approx(0.015)
    assert np.array_equal(ticks.bid[ticks.bar == 3], [bars.open[3], *sorted(
        [bars.low[3], bars.high[3]], reverse=bool(bars.close[3] < bars.open[3])
    ), bars.close[3]])  # fmt: skip
    assert np.allclose(ticks.ask - ticks.bid, 0.8e-4, rtol=0, atol=1e-12)


def test_bar_ticks_data_spread_uses_each_bars_own_spread() -> None:
    # Arrange: the second bar's spread is unknown (NaN counts as 0, as the cost model counts it)
    bars = _bars(
        [1.0, 1.0, 1.0], [1.1, 1.1, 1.1], [0.9, 0.9, 0.9], [1.05, 1.05, 1.05],
        spread=[2e-4, np.nan, 5e-5],
    )  # fmt: skip

    # Act
    ticks = bar_ticks(bars, spread=tick_spread("data", REGISTRY.get("EURUSD")))

    # Assert
    expected = np.repeat([2e-4, 0.0, 5e-5], TICKS_PER_BAR)
    assert np.allclose(ticks.ask - ticks.bid, expected, rtol=0, atol=1e-12)


def test_bar_ticks_data_spread_without_any_spread_says_to_give_pips() -> None:
    bars = _bars([1.0], [1.1], [0.9], [1.05])

    with pytest.raises(UsageError, match=r"no spread: give --spread PIPS"):
        bar_ticks(bars, spread=None)


def test_bar_ticks_mid_series_puts_half_the_spread_each_side_and_rounds_to_digits() -> None:
    # Arrange
    bars = _bars([1.10000], [1.10100], [1.09900], [1.10050])

    # Act
    ticks = bar_ticks(bars, spread=2e-4, side=Side.MID, digits=5)

    # Assert
    assert ticks.bid.tolist() == [1.0999, 1.0989, 1.1009, 1.1004]
    assert ticks.ask.tolist() == [1.1001, 1.0991, 1.1011, 1.1006]


def test_tick_spread_bad_option_is_a_usage_error() -> None:
    eurusd = REGISTRY.get("EURUSD")

    with pytest.raises(UsageError, match=r"give pips"):
        tick_spread("wide", eurusd)
    with pytest.raises(UsageError, match=r"at or above 0"):
        tick_spread("-1", eurusd)


def test_bar_ticks_overlapping_bars_name_the_bar() -> None:
    # Arrange: M1 bars given H1 ends (the wrong timeframe)
    ts = T0 + np.arange(2, dtype=np.int64) * MINUTE
    price = np.ones(2)
    bars = bar_batch(ts, price, price, price, price, end=ts + HOUR)

    with pytest.raises(DataError, match=r"bar 1 opens at 2017-01-05T09:01:00Z, before bar 0"):
        bar_ticks(bars, spread=0.0)


def test_frame_batch_broker_d1_bars_end_on_the_broker_clock() -> None:
    # Arrange: D1 bars on New York close, across the March 2024 change to daylight saving
    days = [datetime(2024, 3, 4, 22, tzinfo=UTC) + timedelta(days=i) for i in range(10)]
    opens = [d if d < datetime(2024, 3, 10, tzinfo=UTC) else d - timedelta(hours=1) for d in days]
    frame = pl.DataFrame(
        {"ts": opens, "open": 1.0, "high": 1.1, "low": 0.9, "close": 1.05, "spread": None},
        schema_overrides={"spread": pl.Float64},
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))

    # Act
    bars = frame_batch(frame, Timeframe.D1, BROKER)
    ticks = bar_ticks(bars, spread=1e-4)

    # Assert
    hours = ((bars.end - bars.ts) / HOUR).tolist()
    assert hours == [24, 24, 24, 24, 24, 23, 24, 24, 24, 24]
    for ts, end in zip(bars.ts, bars.end, strict=True):
        assert utc_from_ns(int(end)) == bar_end_at(utc_from_ns(int(ts)), Timeframe.D1, BROKER)
    assert bool(np.isnan(bars.spread).all())
    assert np.all(np.diff(ticks.ts) > 0) and np.all(ticks.ts < bars.end[ticks.bar])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 50),
    spread=st.floats(0.0, 1e-3, allow_nan=False),
)
def test_bar_ticks_any_bars_keep_the_bar_path_and_the_spread(
    seed: int, n: int, spread: float
) -> None:
    bars = _random_bars(n, seed)

    ticks = bar_ticks(bars, spread=spread)

    bid = ticks.bid.reshape(n, TICKS_PER_BAR)
    assert np.array_equal(bid[:, 0], bars.open) and np.array_equal(bid[:, -1], bars.close)
    assert np.array_equal(bid.max(axis=1), bars.high) and np.array_equal(bid.min(axis=1), bars.low)
    up = bars.close >= bars.open
    assert np.all(np.where(up, bid[:, 1] == bars.low, bid[:, 1] == bars.high))
    assert np.allclose(ticks.ask - ticks.bid, spread, rtol=0, atol=1e-12)
    assert np.all(np.diff(ticks.ts) > 0)


def test_bar_ticks_a_million_bars_run_fast() -> None:
    # Arrange
    bars = _random_bars(1_000_000)
    bar_ticks(_random_bars(10), spread=None)

    # Act
    started = time.perf_counter()
    ticks = bar_ticks(bars, spread=None)
    seconds = time.perf_counter() - started

    # Assert: a sanity bound only; the figure is printed (pytest -s)
    print(f"bar_ticks: 1,000,000 bars -> {len(ticks):,} ticks in {seconds:.3f} s")
    assert len(ticks) == 4_000_000
    assert seconds < 5.0


# -- the clock -------------------------------------------------------------------------------


def test_replay_clock_max_speed_is_always_due_and_holds_the_last_tick() -> None:
    clock = ReplayClock(None)

    clock.set_ns(T0)
    clock.set_ns(T0 + HOUR)

    assert clock.started
    assert clock.due_in(T0 + 1_000 * HOUR) == 0.0
    assert clock.now_ns() == T0 + HOUR


def test_replay_clock_paced_waits_market_time_over_speed_and_runs_on() -> None:
    # Arrange: ten times real time
    clock = ReplayClock(10.0)
    assert not clock.started and clock.due_in(T0 + HOUR) == 0.0

    # Act
    clock.set_ns(T0)
    wait = clock.due_in(T0 + 10_000_000_000)  # ten market seconds: one second of wall time
    time.sleep(0.05)
    now = clock.now_ns()

    # Assert
    assert 0.5 < wait <= 1.0
    assert T0 + 500_000_000 <= now < T0 + 10_000_000_000
    assert clock.now() >= utc_from_ns(now)
    assert clock.due_in(T0) == 0.0


def test_replay_clock_default_speed_is_real_time_and_bad_speed_is_refused() -> None:
    assert ReplayClock().speed == 1.0
    with pytest.raises(UsageError, match=r"--speed"):
        ReplayClock(0.0)


# -- faults ----------------------------------------------------------------------------------


def _draws(plan: FaultPlan, kind: FaultKind, n: int) -> list[bool]:
    return [plan.strikes(kind) for _ in range(n)]


def test_fault_plan_same_seed_same_faults_other_seed_other_faults() -> None:
    options = ["drop_reply=0.3", "reorder_tick=0.5"]

    first = _draws(FaultPlan.parse(options, seed=3), FaultKind.DROP_REPLY, 500)
    again = _draws(FaultPlan.parse(options, seed=3), FaultKind.DROP_REPLY, 500)
    other = _draws(FaultPlan.parse(options, seed=4), FaultKind.DROP_REPLY, 500)

    assert first == again
    assert first != other


def test_fault_plan_kinds_draw_independently() -> None:
    # Arrange: one plan asks about ticks between replies, the other does not
    busy, quiet = (
        FaultPlan.parse(["drop_reply=0.3", "duplicate_tick=0.5"], seed=1),
        FaultPlan.parse(["drop_reply=0.3", "duplicate_tick=0.5"], seed=1),
    )

    # Act
    mixed = []
    for _ in range(300):
        busy.duplicate_tick()
        mixed.append(busy.drop_reply())

    # Assert
    assert mixed == [quiet.drop_reply() for _ in range(300)]


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5, 0.9])
def test_fault_plan_rates_hold_over_ten_thousand_draws(rate: float) -> None:
    # Arrange
    plan = FaultPlan.parse([f"context_busy={rate}"], seed=11)
    n = 10_000

    # Act
    struck = sum(plan.context_busy() for _ in range(n))

    # Assert: within five standard deviations of the binomial count
    sd = (n * rate * (1 - rate)) ** 0.5
    assert abs(struck - n * rate) < 5 * sd
    assert plan.struck[FaultKind.CONTEXT_BUSY] == struck
    assert plan.events[FaultKind.CONTEXT_BUSY] == n


def test_fault_plan_rate_zero_never_one_always_unlisted_never() -> None:
    plan = FaultPlan.parse(["reject_trade=0", "duplicate_tick=1"])

    assert not any(plan.reject_trade() for _ in range(1000))
    assert all(plan.duplicate_tick() for _ in range(1000))
    assert not any(plan.disconnect() for _ in range(1000))


def test_fault_plan_timed_faults_give_their_seconds() -> None:
    plan = FaultPlan.parse(["delay_reply=1:2.5", "disconnect=1"])

    assert plan.delay_reply() == 2.5
    assert plan.disconnect() == 1.0
    assert plan.options() == ["delay_reply=1:2.5", "disconnect=1:1"]
    assert FaultPlan.parse(plan.options()).options() == plan.options()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("slow_feed=0.1", r"unknown fault 'slow_feed'; the kinds are drop_reply, delay_reply, "
         r"disconnect, drop_tick, duplicate_tick, reorder_tick, reject_trade, context_busy"),
        ("drop_reply=1.5", r"'drop_reply=1.5': the rate must be a fraction in \[0, 1\]"),
        ("drop_reply=-0.1", r"the rate must be a fraction in \[0, 1\]"),
        ("drop_reply=often", r"the rate must be a fraction"),
        ("drop_reply=nan", r"the rate must be a fraction"),
        ("drop_reply", r"give KIND=RATE"),
        ("drop_reply=0.1:3", r"only delay_reply and disconnect take :SECONDS"),
        ("delay_reply=0.1:-3", r"the seconds must be a positive number"),
    ],
)  # fmt: skip
def test_fault_plan_bad_option_names_the_problem(option: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        FaultPlan.parse([option])


def test_fault_plan_kind_given_twice_is_refused() -> None:
    with pytest.raises(UsageError, match=r"drop_reply is given twice"):
        FaultPlan.parse(["drop_reply=0.1", "Drop-Reply=0.2"])

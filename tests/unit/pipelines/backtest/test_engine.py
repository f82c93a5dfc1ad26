"""The vectorized backtest engine on small hand-computed bar series.

The test instrument has a pip of 0.01 and 100 units a lot, so ``lots:0.1`` is 10 units and
10 pips is 0.1 of price; the account starts with 1000 in the quote currency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl
import pytest

from core.errors import UsageError
from core.instruments import fx_pair
from core.types import AssetClass, Instrument
from models.strategies.base import Signals
from pipelines.backtest import _kernels
from pipelines.backtest.config import BacktestConfig, CostConfig, SizingConfig
from pipelines.backtest.engine import (
    BacktestResult,
    quote_to_account,
    run_backtest,
    simulate,
    simulate_into,
)

TEST = Instrument(
    symbol="TSTUSD",
    asset_class=AssetClass.FX,
    base="TST",
    quote="USD",
    digits=2,
    pip_size=0.01,
    contract_size=100.0,
)
START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
TEN_UNITS = SizingConfig(kind="lots", value=0.1)
REL = 1e-12


def make_bars(
    close: Sequence[float] | np.ndarray,
    *,
    open_: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    low: Sequence[float] | None = None,
    spread: Sequence[float | None] | None = None,
    ts: Sequence[datetime] | None = None,
    step: timedelta = HOUR,
) -> pl.DataFrame:
    c = np.asarray(close, dtype=np.float64)
    o = c if open_ is None else np.asarray(open_, dtype=np.float64)
    columns: dict[str, Any] = {
        "ts": list(ts) if ts is not None else [START + i * step for i in range(len(c))],
        "open": o,
        "high": np.maximum(o, c) if high is None else np.asarray(high, dtype=np.float64),
        "low": np.minimum(o, c) if low is None else np.asarray(low, dtype=np.float64),
        "close": c,
    }
    if spread is not None:
        columns["spread"] = pl.Series(list(spread), dtype=pl.Float64)
    return pl.DataFrame(columns)


def at(n: int, bars: Sequence[int]) -> np.ndarray:
    flags = np.zeros(n, dtype=bool)
    flags[list(bars)] = True
    return flags


def events(
    n: int,
    entries: Sequence[int] = (),
    exits: Sequence[int] = (),
    short_entries: Sequence[int] | None = None,
    short_exits: Sequence[int] | None = None,
) -> Signals:
    return Signals(
        entries=at(n, entries),
        exits=at(n, exits),
        short_entries=None if short_entries is None else at(n, short_entries),
        short_exits=None if short_exits is None else at(n, short_exits),
    )


def run(
    bars: pl.DataFrame,
    signals: Signals,
    *,
    side: str = "bid",
    instrument: Instrument = TEST,
    to_account: np.ndarray | float = 1.0,
    bars_per_year: float = 252 * 24,
    **config: Any,
) -> BacktestResult:
    settings = BacktestConfig(**{"cash": 1000.0, **config})
    return run_backtest(
        bars,
        signals,
        instrument,
        settings,
        side=side,
        bars_per_year=bars_per_year,
        to_account=to_account,
    )


def frozen(array: np.ndarray) -> np.ndarray:
    # Read-only, as run_backtest passes them: the same compiled kernel serves both.
    view = array.view()
    view.flags.writeable = False
    return view


def only_trade(result: BacktestResult) -> dict[str, Any]:
    assert result.trades.height == 1
    return result.trades.row(0, named=True)


# --- fills and all-in sizing -------------------------------------------------------------


def test_run_backtest_long_round_trip_at_close_gives_hand_computed_equity() -> None:
    # Arrange
    bars = make_bars([100, 100, 110, 120, 120])

    # Act
    result = run(bars, events(5, entries=[1], exits=[3]))

    # Assert: 1000 / 100 = 10 units bought at 100, sold at 120.
    assert result.position.tolist() == [0.0, 10.0, 10.0, 0.0, 0.0]
    assert result.equity.tolist() == pytest.approx([1000, 1000, 1100, 1200, 1200], rel=REL)
    trade = only_trade(result)
    assert trade["direction"] == "long"
    assert trade["units"] == pytest.approx(10.0, rel=REL)
    assert (trade["entry_price"], trade["exit_price"]) == (100.0, 120.0)
    assert trade["pnl"] == pytest.approx(200.0, rel=REL)
    assert trade["return"] == pytest.approx(0.2, rel=REL)
    assert (trade["exit_reason"], trade["bars_held"], trade["costs"]) == ("signal", 2, 0.0)
    assert trade["entry_ts"] == START + HOUR
    assert trade["exit_ts"] == START + 3 * HOUR


@pytest.mark.parametrize("unit", ["ns", "us", "ms"])
def test_run_backtest_ts_in_any_unit_comes_back_in_nanoseconds(
    unit: Literal["ns", "us", "ms"],
) -> None:
    # Arrange
    bars = make_bars([100, 101, 102]).with_columns(pl.col("ts").dt.cast_time_unit(unit))

    # Act
    result = run(bars, events(3, entries=[0]))

    # Assert
    start = int(START.timestamp()) * 10**9
    assert result.ts.dtype == np.int64
    assert result.ts.tolist() == [start, start + 3600 * 10**9, start + 7200 * 10**9]


def test_run_backtest_next_open_fill_uses_the_following_open() -> None:
    # Arrange
    bars = make_bars([100, 100, 100, 110, 120], open_=[100, 101, 102, 103, 104])

    # Act
    result = run(bars, events(5, entries=[1], exits=[3]), fill="next_open")

    # Assert: bought at bar 2's open (102), sold at bar 4's open (104).
    units = 1000 / 102
    trade = only_trade(result)
    assert (trade["entry_price"], trade["exit_price"]) == (102.0, 104.0)
    assert trade["entry_ts"] == START + 2 * HOUR
    assert trade["exit_ts"] == START + 4 * HOUR
    assert result.position.tolist() == pytest.approx([0, 0, units, units, 0], rel=REL)
    assert result.equity[2] == pytest.approx(1000 + units * (100 - 102), rel=REL)
    assert result.equity[-1] == pytest.approx(1000 + units * 2, rel=REL)


def test_run_backtest_next_open_signal_on_last_bar_is_not_filled() -> None:
    # Arrange
    bars = make_bars([100, 101, 102])

    # Act
    result = run(bars, events(3, entries=[2]), fill="next_open")

    # Assert
    assert result.trades.height == 0
    assert result.position.tolist() == [0.0, 0.0, 0.0]
    assert result.equity.tolist() == [1000.0, 1000.0, 1000.0]


def test_run_backtest_entry_and_exit_on_one_bar_cancel() -> None:
    # Arrange
    bars = make_bars([100, 100, 110, 120])

    # Act
    result = run(bars, events(4, entries=[1, 2], exits=[1, 3]))

    # Assert: bar 1 cancels, the entry of bar 2 holds until bar 3.
    trade = only_trade(result)
    assert (trade["entry_ts"], trade["exit_ts"]) == (START + 2 * HOUR, START + 3 * HOUR)


def test_run_backtest_position_open_at_end_is_listed_as_open_trade() -> None:
    # Arrange
    bars = make_bars([100, 100, 105, 108])

    # Act
    result = run(bars, events(4, entries=[1]))

    # Assert: valued at the last close, not closed, no exit costs.
    trade = only_trade(result)
    assert trade["exit_reason"] == "open"
    assert trade["exit_ts"] is None
    assert trade["exit_price"] == 108.0
    assert trade["pnl"] == pytest.approx(80.0, rel=REL)
    assert trade["bars_held"] == 2
    assert result.equity[-1] == pytest.approx(1080.0, rel=REL)
    assert result.position[-1] == pytest.approx(10.0, rel=REL)


def test_run_backtest_returns_start_from_cash() -> None:
    # Arrange
    bars = make_bars([100, 100, 110, 99])

    # Act
    returns = run(bars, events(4, entries=[0])).returns()

    # Assert
    assert returns.tolist() == pytest.approx([0.0, 0.0, 0.1, -0.1], rel=1e-12)


def test_backtest_result_returns_follow_vectorbt_at_zero_and_below() -> None:
    # Arrange
    equity = np.array([0.0, 0.0, 10.0, -5.0, -10.0])
    result = BacktestResult(
        ts=np.arange(5, dtype=np.int64),
        equity=equity,
        position=np.zeros(5),
        exposure=np.zeros(5),
        trades=pl.DataFrame(),
        config=BacktestConfig(cash=100.0),
    )

    # Act
    returns = result.returns()

    # Assert: changes over |previous equity|; 0 after 0, inf from 0.
    assert returns.tolist() == [-1.0, 0.0, math.inf, -1.5, -1.0]


def test_run_backtest_exposure_is_notional_over_equity() -> None:
    # Arrange
    bars = make_bars([100, 100, 110, 120])

    # Act
    result = run(bars, events(4, entries=[1]), sizing=SizingConfig(kind="fraction", value=2.0))

    # Assert: 20 units; at 110 the notional 2200 over equity 1200.
    assert result.exposure.tolist() == pytest.approx([0.0, 2.0, 2200 / 1200, 2400 / 1400])


# --- costs -------------------------------------------------------------------------------


def test_run_backtest_fees_charged_on_both_legs_as_vectorbt() -> None:
    # Arrange
    bars = make_bars([100, 100, 110, 120, 120])

    # Act
    result = run(bars, events(5, entries=[1], exits=[3]), costs=CostConfig(fees=0.01))

    # Assert: units = (1000 / 1.01) / 100; sold at 120 less 1 %.
    units = 1000 / 1.01 / 100
    trade = only_trade(result)
    assert result.position[1] == pytest.approx(units, rel=REL)
    assert result.equity[-1] == pytest.approx(units * 120 * 0.99, rel=1e-12)
    assert trade["costs"] == pytest.approx(0.01 * units * (100 + 120), rel=1e-12)
    assert trade["pnl"] == pytest.approx(units * 120 * 0.99 - 1000, rel=1e-12)
    assert trade["return"] == pytest.approx(trade["pnl"] / (units * 100), rel=1e-12)


def test_run_backtest_commission_per_lot_on_both_legs() -> None:
    # Arrange
    bars = make_bars([100, 100, 120])
    costs = CostConfig(commission_per_lot=5.0)

    # Act
    result = run(bars, events(3, entries=[1], exits=[2]), sizing=TEN_UNITS, costs=costs)

    # Assert: 0.1 lot x 5 per leg.
    trade = only_trade(result)
    assert trade["costs"] == pytest.approx(1.0, rel=REL)
    assert trade["pnl"] == pytest.approx(199.0, rel=REL)
    assert result.equity.tolist() == pytest.approx([1000, 999.5, 1199], rel=REL)


def test_run_backtest_all_in_leaves_room_for_commission() -> None:
    # Arrange: 100 per lot of 100 units is 1 per unit.
    bars = make_bars([100, 100, 100])

    # Act
    result = run(bars, events(3, entries=[1]), costs=CostConfig(commission_per_lot=100.0))

    # Assert: units x (100 + 1) = 1000.
    units = 1000 / 101
    assert result.position[1] == pytest.approx(units, rel=REL)
    assert result.equity[1] == pytest.approx(units * 100, rel=REL)


@pytest.mark.parametrize(
    ("side", "entry", "exit_", "equity_after_entry"),
    [
        ("bid", 100.1, 120.0, 999.0),
        ("mid", 100.05, 119.95, 999.0),
        ("ask", 100.0, 119.9, 999.0),
    ],
)
def test_run_backtest_spread_by_price_side_fills_at_bid_and_ask(
    side: str, entry: float, exit_: float, equity_after_entry: float
) -> None:
    # Arrange: a 10 pip (0.1) spread.
    bars = make_bars([100, 100, 120])

    # Act
    result = run(
        bars,
        events(3, entries=[1], exits=[2]),
        side=side,
        sizing=TEN_UNITS,
        costs=CostConfig(spread_pips=10),
    )

    # Assert: the long is marked to the bid at once, the round trip costs one spread.
    trade = only_trade(result)
    assert trade["entry_price"] == pytest.approx(entry, rel=REL)
    assert trade["exit_price"] == pytest.approx(exit_, rel=REL)
    assert trade["pnl"] == pytest.approx(199.0, rel=REL)
    assert trade["costs"] == pytest.approx(1.0, rel=REL)
    assert result.equity[1] == pytest.approx(equity_after_entry, rel=REL)


def test_run_backtest_spread_from_data_reads_column_and_null_is_zero() -> None:
    # Arrange: 0.2 at the entry bar, null at the exit bar; mid prices.
    bars = make_bars([100, 100, 120], spread=[0.2, 0.2, None])

    # Act
    result = run(
        bars,
        events(3, entries=[1], exits=[2]),
        side="mid",
        sizing=TEN_UNITS,
        costs=CostConfig(spread_from_data=True, spread_pips=50),
    )

    # Assert: bought at 100 + 0.1, sold at 120 - 0.
    trade = only_trade(result)
    assert trade["entry_price"] == pytest.approx(100.1, rel=REL)
    assert trade["exit_price"] == 120.0
    assert trade["pnl"] == pytest.approx(199.0, rel=REL)


def test_run_backtest_slippage_fixed_and_range_move_fills_adversely() -> None:
    # Arrange: the entry bar spans 99..101, the exit bar has no range.
    bars = make_bars(
        [100, 100, 120], open_=[100, 100, 120], high=[100, 101, 120], low=[100, 99, 120]
    )
    costs = CostConfig(slippage_pips=5, slippage_vol=0.5)

    # Act
    result = run(bars, events(3, entries=[1], exits=[2]), sizing=TEN_UNITS, costs=costs)

    # Assert: bought at 100 + 0.05 + 0.5 x 2, sold at 120 - 0.05.
    trade = only_trade(result)
    assert trade["entry_price"] == pytest.approx(101.05, rel=REL)
    assert trade["exit_price"] == pytest.approx(119.95, rel=REL)
    assert trade["pnl"] == pytest.approx(189.0, rel=REL)
    assert trade["costs"] == pytest.approx(11.0, rel=REL)


def test_run_backtest_swap_charged_per_rollover_held_on_daily_bars() -> None:
    # Arrange: daily bars; the 21:00 rollover falls inside every bar.
    bars = make_bars([100] * 6, step=timedelta(days=1))
    costs = CostConfig(swap_long_pips=-2.0, rollover_hour=21)

    # Act
    result = run(bars, events(6, entries=[1], exits=[4]), sizing=TEN_UNITS, costs=costs)

    # Assert: held during bars 2, 3 and 4: 3 nights x 10 units x -0.02.
    trade = only_trade(result)
    assert trade["pnl"] == pytest.approx(-0.6, rel=REL)
    assert trade["costs"] == pytest.approx(0.6, rel=REL)
    assert result.equity.tolist() == pytest.approx([1000, 1000, 999.8, 999.6, 999.4, 999.4])


def test_run_backtest_swap_over_weekend_counts_three_nights_for_shorts() -> None:
    # Arrange: Friday 19:00..21:00, then Sunday 22:00 and 23:00 (hourly bars).
    friday = datetime(2024, 1, 5, 19, tzinfo=UTC)
    sunday = datetime(2024, 1, 7, 22, tzinfo=UTC)
    stamps = [friday, friday + HOUR, friday + 2 * HOUR, sunday, sunday + HOUR]
    bars = make_bars([100] * 5, ts=stamps)
    costs = CostConfig(swap_short_pips=1.5)
    signals = events(5, short_entries=[0], short_exits=[4])

    # Act
    result = run(bars, signals, sizing=TEN_UNITS, costs=costs)

    # Assert: Friday's last bar holds the Friday, Saturday and Sunday rollovers: 3 x 0.15.
    trade = only_trade(result)
    assert trade["direction"] == "short"
    assert trade["pnl"] == pytest.approx(0.45, rel=REL)
    assert result.equity[1] == 1000.0
    assert result.equity[2] == pytest.approx(1000.45, rel=REL)


# --- shorts and reversals ----------------------------------------------------------------


def test_run_backtest_short_round_trip_profits_from_a_fall() -> None:
    # Arrange
    bars = make_bars([100, 100, 90, 80])

    # Act
    result = run(bars, events(4, short_entries=[1], short_exits=[3]))

    # Assert
    trade = only_trade(result)
    assert trade["direction"] == "short"
    assert result.position.tolist() == pytest.approx([0, -10, -10, 0], rel=REL)
    assert result.equity.tolist() == pytest.approx([1000, 1000, 1100, 1200], rel=REL)
    assert trade["pnl"] == pytest.approx(200.0, rel=REL)
    assert trade["return"] == pytest.approx(0.2, rel=REL)


def test_run_backtest_short_entry_while_long_reverses() -> None:
    # Arrange
    bars = make_bars([100, 100, 125, 100])

    # Act
    result = run(bars, events(4, entries=[1], short_entries=[2]))

    # Assert: the long closes at 125 (+250), a short of 1250 / 125 = 10 units opens.
    first, second = result.trades.rows(named=True)
    assert (first["direction"], first["exit_reason"]) == ("long", "reverse")
    assert first["pnl"] == pytest.approx(250.0, rel=REL)
    assert (second["direction"], second["exit_reason"]) == ("short", "open")
    assert second["units"] == pytest.approx(10.0, rel=REL)
    assert result.position[2] == pytest.approx(-10.0, rel=REL)
    assert result.equity[-1] == pytest.approx(1500.0, rel=REL)


def test_run_backtest_long_direction_ignores_short_signals() -> None:
    # Arrange
    bars = make_bars([100, 100, 125, 100])
    signals = events(4, entries=[1], short_entries=[0, 2], short_exits=[3])

    # Act
    result = run(bars, signals, direction="long")

    # Assert
    trade = only_trade(result)
    assert (trade["direction"], trade["exit_reason"]) == ("long", "open")


def test_run_backtest_short_direction_ignores_long_signals() -> None:
    # Arrange
    bars = make_bars([100, 100, 125, 100])
    signals = events(4, entries=[0], exits=[1], short_entries=[1], short_exits=[3])

    # Act
    result = run(bars, signals, direction="short")

    # Assert
    trade = only_trade(result)
    assert (trade["direction"], trade["exit_reason"]) == ("short", "signal")
    assert trade["pnl"] == pytest.approx(0.0, abs=1e-9)


def test_run_backtest_long_and_short_entry_on_one_bar_cancel() -> None:
    # Arrange
    bars = make_bars([100, 100, 125, 100])

    # Act
    result = run(bars, events(4, entries=[1], short_entries=[1]))

    # Assert
    assert result.trades.height == 0
    assert not result.position.any()


# --- stops -------------------------------------------------------------------------------


def stop_bars(
    opens: Sequence[float], highs: Sequence[float], lows: Sequence[float], closes: Sequence[float]
) -> pl.DataFrame:
    # Bar 0 is the entry bar at 100; the others are given.
    return make_bars([100, *closes], open_=[100, *opens], high=[100, *highs], low=[100, *lows])


def test_run_backtest_stop_loss_fills_at_level_with_slippage() -> None:
    # Arrange: bought at 100 + 0.05 of slippage, so the stop sits 100 pips lower at 99.05.
    bars = stop_bars(opens=[99.5], highs=[99.8], lows=[98.5], closes=[99.0])
    costs = CostConfig(slippage_pips=5)

    # Act
    result = run(bars, events(2, entries=[0]), stop_loss_pips=100, costs=costs)

    # Assert
    trade = only_trade(result)
    assert trade["exit_reason"] == "stop_loss"
    assert trade["entry_price"] == pytest.approx(100.05, rel=REL)
    assert trade["exit_price"] == pytest.approx(99.05 - 0.05, rel=REL)
    assert result.position[-1] == 0.0


def test_run_backtest_stop_loss_gap_through_fills_at_open() -> None:
    # Arrange
    bars = stop_bars(opens=[98.0], highs=[98.5], lows=[97.0], closes=[98.2])

    # Act
    result = run(bars, events(2, entries=[0]), stop_loss_pips=100)

    # Assert
    trade = only_trade(result)
    assert (trade["exit_reason"], trade["exit_price"]) == ("stop_loss", 98.0)
    assert trade["pnl"] == pytest.approx(-20.0, rel=REL)


def test_run_backtest_take_profit_fills_at_level_without_slippage() -> None:
    # Arrange: bought at 100.05 (slippage), so the limit sits 200 pips higher at 102.05.
    bars = stop_bars(opens=[100.5], highs=[102.5], lows=[100.2], closes=[101.0])
    costs = CostConfig(slippage_pips=5)

    # Act
    result = run(bars, events(2, entries=[0]), take_profit_pips=200, costs=costs, sizing=TEN_UNITS)

    # Assert
    trade = only_trade(result)
    assert trade["exit_reason"] == "take_profit"
    assert trade["exit_price"] == pytest.approx(102.05, rel=REL)
    assert trade["pnl"] == pytest.approx(20.0, rel=1e-9)


def test_run_backtest_take_profit_gap_fills_at_better_open() -> None:
    # Arrange
    bars = stop_bars(opens=[103.0], highs=[103.5], lows=[102.5], closes=[103.0])

    # Act
    result = run(bars, events(2, entries=[0]), take_profit_pips=200, sizing=TEN_UNITS)

    # Assert
    trade = only_trade(result)
    assert (trade["exit_reason"], trade["exit_price"]) == ("take_profit", 103.0)


def test_run_backtest_stop_and_take_profit_in_one_bar_assumes_stop_first() -> None:
    # Arrange: the bar reaches both 99 and 102.
    bars = stop_bars(opens=[100.0], highs=[102.5], lows=[98.5], closes=[101.0])

    # Act
    result = run(
        bars, events(2, entries=[0]), stop_loss_pips=100, take_profit_pips=200, sizing=TEN_UNITS
    )

    # Assert
    trade = only_trade(result)
    assert (trade["exit_reason"], trade["exit_price"]) == ("stop_loss", 99.0)


def test_run_backtest_stop_not_checked_on_the_entry_bar_of_a_close_fill() -> None:
    # Arrange: the entry bar itself dipped to 90 before closing at 100.
    bars = make_bars([100, 100.5], open_=[95, 100], high=[100, 100.8], low=[90, 99.5])

    # Act
    result = run(bars, events(2, entries=[0]), stop_loss_pips=100)

    # Assert
    assert only_trade(result)["exit_reason"] == "open"


def test_run_backtest_stop_checked_on_the_bar_of_a_next_open_fill() -> None:
    # Arrange: filled at bar 1's open (100), which then falls to 98.
    bars = make_bars([100, 98.5], open_=[100, 100], high=[100, 100.2], low=[100, 98.0])

    # Act
    result = run(bars, events(2, entries=[0]), stop_loss_pips=100, fill="next_open")

    # Assert
    trade = only_trade(result)
    assert (trade["exit_reason"], trade["exit_price"], trade["bars_held"]) == ("stop_loss", 99.0, 0)


def test_run_backtest_short_stop_checked_against_the_ask() -> None:
    # Arrange: bid bars with a 0.1 spread; the short sells at the bid 100, stop at 101.
    bars = stop_bars(opens=[100.2], highs=[100.95], lows=[100.0], closes=[100.5])
    costs = CostConfig(spread_pips=10)
    signals = events(2, short_entries=[0])

    # Act
    hit = run(bars, signals, stop_loss_pips=100, costs=costs, sizing=TEN_UNITS)
    missed = run(bars, signals, stop_loss_pips=100, sizing=TEN_UNITS)

    # Assert: the ask high 101.05 reaches 101, the bid high 100.95 does not.
    trade = only_trade(hit)
    assert (trade["exit_reason"], trade["exit_price"]) == ("stop_loss", 101.0)
    assert only_trade(missed)["exit_reason"] == "open"


def test_run_backtest_trailing_stop_follows_the_best_bid_high() -> None:
    # Arrange: highs 101 then 103 (level 102 from then on), then a dip to 101.5.
    bars = stop_bars(
        opens=[100.2, 101.0, 102.8], highs=[101.0, 103.0, 102.9], lows=[100.1, 100.5, 101.5],
        closes=[100.8, 102.9, 101.6],
    )  # fmt: skip

    # Act
    result = run(bars, events(4, entries=[0]), trailing_stop_pips=100, sizing=TEN_UNITS)

    # Assert: bar 2 dipped to 100.5, above the level of 100 set by bar 1's high.
    trade = only_trade(result)
    assert (trade["exit_reason"], trade["exit_price"]) == ("trailing_stop", 102.0)
    assert trade["exit_ts"] == START + 3 * HOUR
    assert trade["pnl"] == pytest.approx(20.0, rel=REL)


def test_run_backtest_trailing_stop_for_shorts_follows_the_best_ask_low() -> None:
    # Arrange: lows 99 then 97 (level 98), then a rise to 98.5.
    bars = stop_bars(
        opens=[99.8, 99.0, 97.2], highs=[99.9, 99.5, 98.5], lows=[99.0, 97.0, 97.1],
        closes=[99.2, 97.1, 98.4],
    )  # fmt: skip

    # Act
    result = run(bars, events(4, short_entries=[0]), trailing_stop_pips=100, sizing=TEN_UNITS)

    # Assert
    trade = only_trade(result)
    assert (trade["exit_reason"], trade["exit_price"]) == ("trailing_stop", 98.0)
    assert trade["pnl"] == pytest.approx(20.0, rel=REL)


def test_run_backtest_with_stops_marks_longs_to_bid_and_shorts_to_ask() -> None:
    # Arrange: bid bars with a 0.1 spread and stops too far away to matter.
    bars = make_bars([100, 101, 103, 102])
    costs = CostConfig(spread_pips=10)

    # Act
    long = run(bars, events(4, entries=[0]), stop_loss_pips=5000, costs=costs, sizing=TEN_UNITS)
    short = run(
        bars, events(4, short_entries=[0]), stop_loss_pips=5000, costs=costs, sizing=TEN_UNITS
    )

    # Assert: bought at 100.1 and valued at the bid; sold at 100 and valued at the ask.
    closes = np.array([100, 101, 103, 102])
    assert long.equity.tolist() == pytest.approx(1000 + 10 * (closes - 100.1), rel=REL)
    assert short.equity.tolist() == pytest.approx(1000 - 10 * (closes + 0.1 - 100), rel=REL)


def test_run_backtest_unreachable_stops_change_nothing() -> None:
    # Arrange: random walk and signals; stops that can never be reached.
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 2000)))
    bars = make_bars(close)
    signals = Signals(
        entries=rng.random(2000) < 0.03,
        exits=rng.random(2000) < 0.03,
        short_entries=rng.random(2000) < 0.03,
        short_exits=rng.random(2000) < 0.03,
    )
    costs = CostConfig(fees=0.0005)

    # Act
    plain = run(bars, signals, costs=costs)
    guarded = run(bars, signals, costs=costs, stop_loss_pips=1e7, take_profit_pips=1e7)

    # Assert
    assert plain.trades.height > 50
    assert np.array_equal(plain.equity, guarded.equity)
    assert np.array_equal(plain.position, guarded.position)
    assert plain.trades.equals(guarded.trades)


def test_run_backtest_target_of_one_and_zero_equals_long_events() -> None:
    # Arrange
    rng = np.random.default_rng(8)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 1000)))
    bars = make_bars(close)
    entries, exits = rng.random(1000) < 0.05, rng.random(1000) < 0.05
    entries &= ~exits
    target = np.where(entries, 1.0, np.where(exits, 0.0, np.nan))

    # Act
    by_events = run(bars, Signals(entries=entries, exits=exits), direction="long")
    by_target = run(bars, Signals(target=target), direction="long")

    # Assert
    assert by_events.trades.height > 10
    assert np.array_equal(by_events.equity, by_target.equity)
    assert by_events.trades.equals(by_target.trades)


def _cash_reference(
    close: np.ndarray, spread: np.ndarray, signals: Signals, fees: float, cash: float
) -> np.ndarray:
    """Equity of all-in event trading by plain cash accounting, bar by bar in Python."""
    balance, units, out = cash, 0.0, []
    assert signals.short_entries is not None and signals.short_exits is not None
    for i, (bid, s) in enumerate(zip(close, spread, strict=True)):
        ask = bid + s
        le, lx = bool(signals.entries[i]), bool(signals.exits[i])  # type: ignore[index]
        se, sx = bool(signals.short_entries[i]), bool(signals.short_exits[i])
        le, lx = (False, False) if le and lx else (le, lx)
        se, sx = (False, False) if se and sx else (se, sx)
        le, se = (False, False) if le and se else (le, se)
        want = None
        if units > 0 and (se or lx):
            want = -1 if se else 0
        elif units < 0 and (le or sx):
            want = 1 if le else 0
        elif units == 0 and (le or se):
            want = 1 if le else -1
        if want is not None:
            if units > 0:
                balance += units * bid * (1 - fees)
            elif units < 0:
                balance += units * ask * (1 + fees)
            units = 0.0
            if want == 1:
                units = balance / (1 + fees) / ask
                balance -= units * ask * (1 + fees)
            elif want == -1:
                units = -balance / (1 + fees) / bid
                balance -= units * bid * (1 - fees)
        out.append(balance + units * (bid if units > 0 else ask))
    return np.array(out)


def test_run_backtest_matches_cash_accounting_with_spread_fees_and_reversals() -> None:
    # Arrange: a random walk, a data spread and random long and short events.
    rng = np.random.default_rng(11)
    n = 3000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    spread = rng.uniform(0.0, 0.05, n)
    flags = rng.random((4, n)) < 0.02
    signals = Signals(
        entries=flags[0], exits=flags[1], short_entries=flags[2], short_exits=flags[3]
    )
    costs = CostConfig(fees=0.0004, spread_from_data=True)

    # Act
    result = run(make_bars(close, spread=spread.tolist()), signals, costs=costs)

    # Assert
    expected = _cash_reference(close, spread, signals, 0.0004, 1000.0)
    assert result.trades.height > 50
    assert (result.trades["exit_reason"] == "reverse").sum() > 5
    assert np.max(np.abs(result.equity / expected - 1)) < 1e-9


# --- sizing ------------------------------------------------------------------------------


def test_run_backtest_lots_sizing_holds_lots_times_contract_size() -> None:
    # Arrange
    bars = make_bars([100, 100, 101])

    # Act
    result = run(bars, events(3, entries=[1]), sizing=SizingConfig(kind="lots", value=2))

    # Assert
    assert result.position[1] == 200.0
    assert result.equity[-1] == pytest.approx(1200.0, rel=REL)


def test_run_backtest_fraction_sizing_uses_equity_at_the_fill() -> None:
    # Arrange: a first trade of 5 units wins 50, the second is sized on 1050.
    bars = make_bars([100, 110, 100, 100])
    sizing = SizingConfig(kind="fraction", value=0.5)

    # Act
    result = run(bars, events(4, entries=[0, 2], exits=[1]), sizing=sizing)

    # Assert
    assert result.position[0] == pytest.approx(5.0, rel=REL)
    assert result.position[2] == pytest.approx(0.5 * 1050 / 100, rel=REL)


def test_run_backtest_vol_target_sizing_from_recent_log_returns() -> None:
    # Arrange: two log returns known at bar 2, 4 bars a year.
    closes = [100.0, 110.0, 99.0, 99.0]
    bars = make_bars(closes)
    sizing = SizingConfig(kind="vol-target", value=0.1, lookback=2, max_leverage=50)

    # Act
    result = run(bars, events(4, entries=[2]), sizing=sizing, bars_per_year=4)

    # Assert: notional = 1000 x 0.1 / (stdev x 2).
    rets = np.log(np.array(closes[1:3]) / np.array(closes[0:2]))
    vol = rets.std(ddof=1) * 2.0
    assert result.position[2] == pytest.approx(1000 * 0.1 / vol / 99.0, rel=1e-12)


def test_run_backtest_vol_target_sizing_is_capped_and_waits_for_lookback() -> None:
    # Arrange: a near-flat series would ask for a huge position.
    bars = make_bars([100.0, 100.0001, 100.0, 100.0001, 100.0])
    sizing = SizingConfig(kind="vol-target", value=0.5, lookback=2, max_leverage=3)

    # Act
    early = run(bars, events(5, entries=[1]), sizing=sizing)
    capped = run(bars, events(5, entries=[3]), sizing=sizing)

    # Assert: bar 1 has one return only; bar 3 is capped at 3 x equity.
    assert early.trades.height == 0
    assert capped.position[3] == pytest.approx(3 * 1000 / 100.0001, rel=1e-12)


def test_run_backtest_kelly_sizing_uses_fraction_until_twenty_trades_then_kelly() -> None:
    # Arrange: 20 round trips (15 of +10 %, 5 of -5 %), then a 21st entry at 100.
    closes = []
    for k in range(20):
        closes += [100.0, 95.0 if k % 4 == 3 else 110.0]
    closes += [100.0, 100.0]
    n = len(closes)
    bars = make_bars(closes)
    signals = events(n, entries=list(range(0, n, 2)), exits=list(range(1, n - 2, 2)))
    sizing = SizingConfig(kind="kelly", value=0.5, max_leverage=10)

    # Act
    result = run(bars, signals, sizing=sizing)

    # Assert: p = 0.75, b = 0.10 / 0.05 = 2, k = 0.75 - 0.25 / 2 = 0.625.
    assert result.position[0] == pytest.approx(0.5 * 1000 / 100, rel=REL)
    equity = result.equity[n - 3]
    assert result.position[n - 2] == pytest.approx(equity * 0.5 * 0.625 / 100, rel=1e-12)


# --- targets -----------------------------------------------------------------------------


def test_run_backtest_target_rebalances_reduces_and_reverses() -> None:
    # Arrange
    closes = [100, 100, 110, 110, 120, 120, 115, 115]
    target = np.array([0, 1, np.nan, 0.5, 0.5, -1, np.nan, 0])
    sizing = SizingConfig(kind="fraction", value=1.0)

    # Act
    result = run(make_bars(closes), Signals(target=target), sizing=sizing)

    # Assert: 10 units; at 110 (equity 1100) down to 5; reversed at 120 (equity 1150).
    short = 1150 / 120
    assert result.position.tolist() == pytest.approx([0, 10, 10, 5, 5, -short, -short, 0], rel=REL)
    first, second = result.trades.rows(named=True)
    assert (first["exit_reason"], first["units"]) == ("reverse", 10.0)
    assert first["pnl"] == pytest.approx(150.0, rel=REL)
    assert first["exit_price"] == pytest.approx(115.0, rel=REL)
    assert (second["direction"], second["exit_reason"]) == ("short", "signal")
    assert second["pnl"] == pytest.approx(short * 5, rel=REL)
    assert result.equity[-1] == pytest.approx(1150 + short * 5, rel=REL)


def test_run_backtest_unchanged_target_does_not_rebalance() -> None:
    # Arrange
    target = np.array([1.0, 1.0, np.nan, 1.0])

    # Act
    result = run(make_bars([100, 200, 50, 100]), Signals(target=target))

    # Assert
    assert result.position.tolist() == [10.0, 10.0, 10.0, 10.0]


def test_run_backtest_target_stopped_out_waits_for_a_new_target() -> None:
    # Arrange: stopped at 99 on bar 1; the target stays 1 until it turns 0.5 on bar 3.
    bars = stop_bars(opens=[99.5, 99.0, 99.0], highs=[99.6, 99.2, 99.0], lows=[98.0, 98.8, 99.0],
                     closes=[99.0, 99.0, 99.0])  # fmt: skip
    target = np.array([1.0, 1.0, np.nan, 0.5])

    # Act
    result = run(bars, Signals(target=target), stop_loss_pips=100, sizing=TEN_UNITS)

    # Assert
    assert result.position.tolist() == [10.0, 0.0, 0.0, 5.0]
    assert result.trades["exit_reason"].to_list() == ["stop_loss", "open"]


def test_run_backtest_target_with_no_equity_left_closes_the_trade() -> None:
    # Arrange: 5:1 leverage, then a 25 % fall leaves equity at -250 when the target halves.
    target = np.array([1.0, np.nan, 0.5, np.nan])
    sizing = SizingConfig(kind="fraction", value=5.0)

    # Act
    result = run(make_bars([100, 90, 75, 80]), Signals(target=target), sizing=sizing)

    # Assert
    assert result.position.tolist() == [50.0, 50.0, 0.0, 0.0]
    assert result.equity.tolist() == pytest.approx([1000, 500, -250, -250], rel=REL)
    trade = only_trade(result)
    assert (trade["exit_reason"], trade["pnl"]) == ("signal", pytest.approx(-1250.0, rel=REL))


def test_run_backtest_long_direction_clips_negative_targets() -> None:
    # Arrange
    target = np.array([1.0, -1.0, 0.0])

    # Act
    result = run(make_bars([100, 100, 100]), Signals(target=target), direction="long")

    # Assert
    assert result.position.tolist() == [10.0, 0.0, 0.0]
    assert only_trade(result)["exit_reason"] == "signal"


# --- currencies --------------------------------------------------------------------------


def test_run_backtest_to_account_converts_pnl_as_it_accrues() -> None:
    # Arrange: the rate halves on bar 2.
    bars = make_bars([100, 100, 110, 120])
    rates = np.array([1.0, 1.0, 0.5, 0.5])

    # Act
    result = run(bars, events(4, entries=[1]), sizing=TEN_UNITS, to_account=rates)

    # Assert: +100 quote at 0.5, then +100 quote at 0.5.
    assert result.equity.tolist() == pytest.approx([1000, 1000, 1050, 1100], rel=REL)


def test_quote_to_account_each_case_gives_its_rate() -> None:
    # Arrange
    bars = make_bars([150.0, 160.0])
    other = np.array([1.25, 1.30])

    # Act
    same = quote_to_account(fx_pair("EUR", "USD"), "usd", bars)
    base = quote_to_account(fx_pair("USD", "JPY"), "USD", bars)
    via_quote = quote_to_account(fx_pair("EUR", "GBP"), "USD", bars, other)
    via_account = quote_to_account(fx_pair("EUR", "JPY"), "USD", bars, other)

    # Assert
    assert same == 1.0
    assert np.asarray(base).tolist() == pytest.approx([1 / 150, 1 / 160], rel=REL)
    assert np.asarray(via_quote).tolist() == [1.25, 1.30]
    assert np.asarray(via_account).tolist() == pytest.approx([1 / 1.25, 1 / 1.30], rel=REL)


@pytest.mark.parametrize(
    ("pair", "needed"), [(("EUR", "GBP"), "GBPUSD"), (("EUR", "JPY"), "USDJPY")]
)
def test_quote_to_account_without_conversion_series_names_the_pair(
    pair: tuple[str, str], needed: str
) -> None:
    # Arrange
    bars = make_bars([1.0, 1.0])

    # Act / Assert
    with pytest.raises(UsageError, match=needed):
        quote_to_account(fx_pair(*pair), "USD", bars)


def test_quote_to_account_rejects_a_non_positive_close() -> None:
    # Arrange
    bars = make_bars([150.0, 0.0])

    # Act / Assert
    with pytest.raises(UsageError, match="finite and positive"):
        quote_to_account(fx_pair("USD", "JPY"), "USD", bars)


# --- bad input ---------------------------------------------------------------------------


def test_run_backtest_signal_length_mismatch_raises() -> None:
    # Arrange
    bars = make_bars([100, 101, 102])

    # Act / Assert
    with pytest.raises(UsageError, match="2 values for 3 bars"):
        run(bars, events(2, entries=[0]))


def test_run_backtest_one_misaligned_event_array_raises_naming_it() -> None:
    # Arrange
    bars = make_bars([100, 101, 102])
    signals = Signals(entries=at(3, [0]), exits=at(2, [1]))

    # Act / Assert
    with pytest.raises(UsageError, match=r"signals\.exits"):
        run(bars, signals)


def test_run_backtest_spread_from_data_without_column_raises() -> None:
    # Arrange
    bars = make_bars([100, 101, 102])

    # Act / Assert
    with pytest.raises(UsageError, match="'spread' column"):
        run(bars, events(3, entries=[0]), costs=CostConfig(spread_from_data=True))


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -1.0])
def test_run_backtest_bad_close_raises_naming_the_row(bad: float) -> None:
    # Arrange
    bars = make_bars([100, bad, 102])

    # Act / Assert
    with pytest.raises(UsageError, match=r"row 1 \(2024-01-01 01:00:00"):
        run(bars, events(3, entries=[0]))


def test_run_backtest_nan_high_raises_when_stops_read_it() -> None:
    # Arrange
    bars = make_bars([100, 101, 102], high=[100, math.nan, 102])

    # Act / Assert
    with pytest.raises(UsageError, match="high nan"):
        run(bars, events(3, entries=[0]), stop_loss_pips=10)


def test_run_backtest_null_price_raises() -> None:
    # Arrange
    bars = make_bars([100, 101, 102]).with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise(pl.col("close")).alias("close")
    )

    # Act / Assert
    with pytest.raises(UsageError, match="row 2"):
        run(bars, events(3, entries=[0]))


def test_run_backtest_unsorted_timestamps_raise() -> None:
    # Arrange
    bars = make_bars([100, 101, 102], ts=[START, START + 2 * HOUR, START + HOUR])

    # Act / Assert
    with pytest.raises(UsageError, match="not after the row before"):
        run(bars, events(3, entries=[0]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"side": "last"}, "side 'last'"),
        ({"to_account": np.ones(2)}, "to_account"),
        ({"to_account": -1.0}, "finite and positive"),
        ({"bars_per_year": 0.0}, "bars_per_year"),
    ],
)
def test_run_backtest_bad_arguments_raise(change: dict[str, Any], message: str) -> None:
    # Arrange
    bars = make_bars([100, 101, 102])

    # Act / Assert
    with pytest.raises(UsageError, match=message):
        run(bars, events(3, entries=[0]), **change)


def test_run_backtest_missing_column_raises() -> None:
    # Arrange
    bars = make_bars([100, 101, 102]).drop("low")

    # Act / Assert
    with pytest.raises(UsageError, match="'low' is missing"):
        run(bars, events(3, entries=[0]))


# --- the low-level kernel ----------------------------------------------------------------


def test_simulate_on_plain_arrays_matches_run_backtest() -> None:
    # Arrange
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    entries, exits = rng.random(300) < 0.05, rng.random(300) < 0.05
    bars = make_bars(close)
    expected = run(bars, Signals(entries=entries, exits=exits), costs=CostConfig(fees=0.001))
    price, none = frozen(close), frozen(np.zeros(0, dtype=bool))

    # Act
    equity, position, trades = simulate(
        price, price, price, price, frozen(np.zeros(1)), frozen(np.zeros(0, dtype=np.int64)),
        frozen(np.ones(1)), frozen(entries), frozen(exits), none, none, frozen(np.zeros(0)), 1000.0, 0.001, 0.0, 100.0, 0.01, 1.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 21, False, _kernels.DIRECTION_BOTH, _kernels.SIZING_ALL_IN, 1.0,
        100, 10.0, 252.0, math.nan, math.nan, math.nan,
    )  # fmt: skip

    # Assert
    assert np.array_equal(equity, expected.equity)
    assert np.array_equal(position, expected.position)
    assert trades.shape == (expected.trades.height, _kernels.TRADE_FIELDS)
    assert trades[:, _kernels.TR_PNL].tolist() == expected.trades["pnl"].to_list()


def test_simulate_into_writes_caller_buffers_and_skips_empty_exposure() -> None:
    # Arrange
    close = frozen(np.array([100.0, 100.0, 110.0]))
    equity, position = np.full(3, np.nan), np.full(3, np.nan)
    entries = frozen(np.array([False, True, False]))
    none = frozen(np.zeros(0, dtype=bool))

    # Act
    trades = simulate_into(
        equity, position, np.zeros(0), close, close, close, close, frozen(np.zeros(1)),
        frozen(np.zeros(0, dtype=np.int64)), frozen(np.ones(1)), entries, none, none, none,
        frozen(np.zeros(0)),
        1000.0, 0.0, 0.0, 100.0, 0.01, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 21, False,
        _kernels.DIRECTION_LONG, _kernels.SIZING_ALL_IN, 1.0, 100, 10.0, 252.0, math.nan,
        math.nan, math.nan,
    )  # fmt: skip

    # Assert
    assert equity.tolist() == [1000.0, 1000.0, 1100.0]
    assert position.tolist() == [0.0, 10.0, 10.0]
    assert trades[0, _kernels.TR_EXIT_REASON] == _kernels.EXIT_OPEN

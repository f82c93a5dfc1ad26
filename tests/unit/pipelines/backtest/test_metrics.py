"""Backtest metrics on small equity curves whose figures are worked out by hand."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from core.errors import UsageError
from core.timeframes import Timeframe
from core.types import AssetClass
from pipelines.backtest.metrics import (
    Metrics,
    bar_returns,
    bars_per_year,
    drawdown,
    monthly_returns,
    performance,
)

DAY_NS = 86_400 * 10**9


def _days(*days: int) -> np.ndarray:
    """Return timestamps at midnight UTC of the given days of January 2021."""
    return np.array([f"2021-01-{d:02d}" for d in days], dtype="datetime64[ns]")


# Returns 0.1, -0.1, 0.2, 0, -0.05 on an initial cash of 100.
EQUITY = np.array([110.0, 99.0, 118.8, 118.8, 112.86])
# Bar 4 comes ten days after bar 3: the last drawdown is short in bars, long in time.
TS = _days(4, 5, 6, 7, 17)


def _trades(pnl: list[float], reasons: list[str]) -> pl.DataFrame:
    n = len(pnl)
    entry = datetime(2021, 1, 4, tzinfo=UTC)
    return pl.DataFrame(
        {
            "entry_ts": [entry] * n,
            "exit_ts": [entry + timedelta(hours=5)] * n,
            "direction": ["long"] * n,
            "pnl": pnl,
            "return": [p / 1000 for p in pnl],
            "exit_reason": reasons,
        }
    )


@pytest.mark.parametrize(
    ("timeframe", "asset_class", "expected"),
    [
        (Timeframe.H1, AssetClass.FX, 260 * 24),
        (Timeframe.M1, AssetClass.FX, 260 * 1440),
        (Timeframe.H4, AssetClass.METAL, 260 * 6),
        (Timeframe.D1, AssetClass.INDEX, 260),
        (Timeframe.M15, AssetClass.COMMODITY, 260 * 96),
        (Timeframe.M1, AssetClass.EQUITY, 252 * 390),
        (Timeframe.M30, AssetClass.EQUITY, 252 * 13),
        (Timeframe.H1, AssetClass.EQUITY, 252 * 7),
        (Timeframe.H4, AssetClass.EQUITY, 252 * 2),
        (Timeframe.D1, AssetClass.EQUITY, 252),
        (Timeframe.H1, AssetClass.CRYPTO, 365 * 24),
        (Timeframe.D1, AssetClass.CRYPTO, 365),
    ],
)
def test_bars_per_year_timeframe_and_class_gives_calendar_count(
    timeframe: Timeframe, asset_class: AssetClass, expected: float
) -> None:
    # Arrange: the expected counts are days a year times bars a day.

    # Act
    result = bars_per_year(timeframe, asset_class)

    # Assert
    assert result == expected


@pytest.mark.parametrize("asset_class", list(AssetClass))
def test_bars_per_year_weekly_and_monthly_same_for_every_class(asset_class: AssetClass) -> None:
    # Arrange / Act
    weekly = bars_per_year(Timeframe.W1, asset_class)
    monthly = bars_per_year(Timeframe.MN1, asset_class)

    # Assert
    assert (weekly, monthly) == (52.0, 12.0)


def test_bars_per_year_text_inputs_normalized() -> None:
    # Arrange / Act
    result = bars_per_year("60", "FX")

    # Assert
    assert result == 6240.0


def test_bars_per_year_unknown_asset_class_raises_usage_error() -> None:
    # Arrange / Act / Assert
    with pytest.raises(UsageError, match="unknown asset class 'bonds'"):
        bars_per_year("H1", "bonds")


def test_bar_returns_first_bar_measured_against_initial_cash() -> None:
    # Arrange / Act
    returns = bar_returns(EQUITY, 100.0)

    # Assert
    assert returns == pytest.approx([0.1, -0.1, 0.2, 0.0, -0.05], rel=1e-12)


def test_performance_hand_computed_curve_matches_formulas() -> None:
    # Arrange: mean 0.03; squared deviations sum to 0.058, variance 0.0145 (ddof 1);
    # downside squares 0.01 + 0.0025 over 5 bars, downside deviation 0.05.
    per_year = 252.0

    # Act
    m = performance(EQUITY, ts=TS, bars_per_year=per_year, initial_cash=100.0)

    # Assert
    annual = 1.1286 ** (252 / 5) - 1
    assert m.n_bars == 5
    assert m.final_equity == 112.86
    assert m.total_return == pytest.approx(0.1286, rel=1e-12)
    assert m.annualized_return == pytest.approx(annual, rel=1e-12)
    assert m.volatility == pytest.approx(math.sqrt(0.0145) * math.sqrt(252), rel=1e-12)
    assert m.sharpe == pytest.approx(0.03 / math.sqrt(0.0145) * math.sqrt(252), rel=1e-12)
    assert m.sortino == pytest.approx(0.03 / 0.05 * math.sqrt(252), rel=1e-12)
    assert m.max_drawdown == pytest.approx(-0.1, rel=1e-12)
    assert m.calmar == pytest.approx(annual / 0.1, rel=1e-12)


def test_performance_drawdown_durations_bars_and_time_measured_separately() -> None:
    # Arrange: 110 (bar 0) is regained at bar 2: 2 bars, 2 days. 118.8 (bar 3) is not
    # regained by the end (bar 4): 1 bar, but 10 days.

    # Act
    m = performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0)

    # Assert
    assert m.max_drawdown_duration == 2
    assert m.max_drawdown_duration_ns == 10 * DAY_NS
    assert m.max_drawdown_timedelta == timedelta(days=10)


def test_performance_first_bar_below_cash_is_a_drawdown_from_the_cash() -> None:
    # Arrange: the cash (100) is the first peak, regained at bar 1.
    equity = np.array([95.0, 100.0, 101.0])

    # Act
    m = performance(equity, ts=_days(4, 5, 6), bars_per_year=252.0, initial_cash=100.0)

    # Assert
    assert m.max_drawdown == pytest.approx(-0.05)
    assert m.max_drawdown_duration == 2
    assert m.max_drawdown_duration_ns == DAY_NS


def test_performance_never_recovered_duration_runs_to_last_bar() -> None:
    # Arrange
    equity = np.array([100.0, 90.0, 80.0, 85.0])

    # Act
    m = performance(equity, ts=_days(4, 5, 6, 8), bars_per_year=252.0, initial_cash=100.0)

    # Assert
    assert m.max_drawdown == pytest.approx(-0.2)
    assert m.max_drawdown_duration == 3
    assert m.max_drawdown_duration_ns == 4 * DAY_NS


def test_performance_constant_equity_gives_nan_ratios_without_error() -> None:
    # Arrange
    equity = np.full(4, 100.0)

    # Act
    m = performance(equity, ts=_days(4, 5, 6, 7), bars_per_year=252.0, initial_cash=100.0)

    # Assert
    assert math.isnan(m.sharpe)
    assert math.isnan(m.sortino)
    assert math.isnan(m.calmar)
    assert m.volatility == 0.0
    assert m.total_return == 0.0
    assert m.annualized_return == 0.0
    assert m.max_drawdown == 0.0
    assert m.max_drawdown_duration == 0
    assert m.max_drawdown_duration_ns == 0


def test_performance_one_bar_gives_return_and_nan_dispersion() -> None:
    # Arrange
    equity = np.array([101.0])

    # Act
    m = performance(equity, ts=_days(4), bars_per_year=12.0, initial_cash=100.0)

    # Assert
    assert m.total_return == pytest.approx(0.01)
    assert m.annualized_return == pytest.approx(1.01**12 - 1)
    assert math.isnan(m.volatility)
    assert math.isnan(m.sharpe)
    assert math.isnan(m.sortino)
    assert m.start == m.end == datetime(2021, 1, 4, tzinfo=UTC)


def test_performance_no_losing_bar_gives_infinite_sortino() -> None:
    # Arrange
    equity = np.array([101.0, 102.0, 104.0])

    # Act
    m = performance(equity, ts=_days(4, 5, 6), bars_per_year=252.0, initial_cash=100.0)

    # Assert
    assert m.sortino == math.inf
    assert m.to_dict()["sortino"] is None


def test_performance_wiped_out_account_annualizes_to_minus_one() -> None:
    # Arrange
    equity = np.array([50.0, 0.0])

    # Act
    m = performance(equity, ts=_days(4, 5), bars_per_year=252.0, initial_cash=100.0)

    # Assert
    assert m.annualized_return == -1.0
    assert m.max_drawdown == -1.0


def test_performance_trades_open_trade_counted_only_in_n_trades() -> None:
    # Arrange: closed pnl 10, -5, 20, -5 and one open trade at +7.
    trades = _trades([10.0, -5.0, 20.0, -5.0, 7.0], ["signal", "stop", "signal", "signal", "open"])

    # Act
    m = performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0, trades=trades)

    # Assert
    assert m.n_trades == 5
    assert m.hit_rate == 0.5
    assert m.profit_factor == pytest.approx(30.0 / 10.0)
    assert m.expectancy == pytest.approx(20.0 / 4)


def test_performance_only_winning_trades_gives_infinite_profit_factor() -> None:
    # Arrange
    trades = _trades([3.0, 4.0], ["signal", "signal"])

    # Act
    m = performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0, trades=trades)

    # Assert
    assert m.profit_factor == math.inf
    assert m.hit_rate == 1.0


@pytest.mark.parametrize(
    "trades", [None, _trades([], []), _trades([7.0], ["open"])], ids=["none", "empty", "open"]
)
def test_performance_no_closed_trades_gives_nan_trade_figures(
    trades: pl.DataFrame | None,
) -> None:
    # Arrange
    expected_count = 0 if trades is None else trades.height

    # Act
    m = performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0, trades=trades)

    # Assert
    assert m.n_trades == expected_count
    assert math.isnan(m.hit_rate)
    assert math.isnan(m.profit_factor)
    assert math.isnan(m.expectancy)


def test_performance_position_gives_share_of_bars_in_the_market() -> None:
    # Arrange
    position = np.array([0.0, 1000.0, 1000.0, -500.0, 0.0])

    # Act
    m = performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0, position=position)

    # Assert
    assert m.exposure == pytest.approx(0.6)


def test_performance_traded_notional_gives_turnover_per_year() -> None:
    # Arrange: 200 traded over 4 bars on a mean equity of 100, 252 bars a year.
    equity = np.array([100.0, 90.0, 110.0, 100.0])
    traded = np.array([100.0, 0.0, -100.0, 0.0])

    # Act
    m = performance(
        equity,
        ts=_days(4, 5, 6, 7),
        bars_per_year=252.0,
        initial_cash=100.0,
        traded_notional=traded,
    )

    # Assert
    assert m.turnover == pytest.approx(200.0 / 100.0 * 252.0 / 4)


def test_performance_without_positions_or_notional_gives_nan() -> None:
    # Arrange / Act
    m = performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0)

    # Assert
    assert math.isnan(m.exposure)
    assert math.isnan(m.turnover)


def test_performance_integer_nanosecond_timestamps_same_as_datetimes() -> None:
    # Arrange
    ns = TS.astype(np.int64)

    # Act
    from_ints = performance(EQUITY, ts=ns, bars_per_year=252.0, initial_cash=100.0)
    from_dates = performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0)

    # Assert
    assert from_ints == from_dates
    assert from_ints.end == datetime(2021, 1, 17, tzinfo=UTC)


def test_performance_mismatched_lengths_raise_value_error() -> None:
    # Arrange / Act / Assert
    with pytest.raises(ValueError, match="position has 2 values but equity has 5"):
        performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0, position=np.zeros(2))


def test_metrics_to_dict_is_strict_json_with_utc_times() -> None:
    # Arrange
    m = performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0)

    # Act
    data = m.to_dict()
    text = json.dumps(data, allow_nan=False)

    # Assert
    assert data["start"] == "2021-01-04T00:00:00Z"
    assert data["hit_rate"] is None
    assert data["max_drawdown_duration"] == 2
    assert json.loads(text)["sharpe"] == pytest.approx(m.sharpe)
    assert set(data) == {f.name for f in dataclasses.fields(Metrics)}


def test_metrics_frozen_assignment_raises() -> None:
    # Arrange
    m = performance(EQUITY, ts=TS, bars_per_year=252.0, initial_cash=100.0)

    # Act / Assert
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.sharpe = 1.0  # type: ignore[misc]


def test_drawdown_running_peak_gives_fall_from_peak() -> None:
    # Arrange
    equity = np.array([100.0, 120.0, 90.0, 130.0])

    # Act
    plain = drawdown(equity)
    from_cash = drawdown(equity, initial_cash=110.0)

    # Assert
    assert plain == pytest.approx([0.0, 0.0, -0.25, 0.0])
    assert from_cash == pytest.approx([100 / 110 - 1, 0.0, -0.25, 0.0])


def test_monthly_returns_chain_month_ends_from_initial_cash() -> None:
    # Arrange
    ts = np.array(
        ["2021-01-15", "2021-01-31T23:00", "2021-02-10", "2021-03-01", "2021-03-20"],
        dtype="datetime64[ns]",
    )
    equity = np.array([105.0, 110.0, 99.0, 100.0, 121.0])

    # Act
    months = monthly_returns(ts, equity, 100.0)

    # Assert
    assert months["year"].to_list() == [2021, 2021, 2021]
    assert months["month"].to_list() == [1, 2, 3]
    assert months["return"].to_list() == pytest.approx([0.1, -0.1, 121 / 99 - 1])

"""The runtime's sizing rules against the compiled engine's and against their formulas.

:class:`execution.sizing.Sizer` must size a full position as the vectorized engine's kernel
does (``pipelines.backtest._kernels._full_units``), or the event-driven backtest drifts from
the vectorized one. The kernel is compiled, so it is reached through tiny backtests: one entry
at a bar's close, whose trade records the units the kernel chose from the equity before it,
the fill price and the bar's conversion rate.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.files import utc

from core.instruments import fx_pair
from execution.sizing import KellyStats, Sizer
from models.strategies.base import Signals
from pipelines.backtest._kernels import KELLY_MIN_TRADES
from pipelines.backtest.config import BacktestConfig, CostConfig, SizingConfig
from pipelines.backtest.engine import run_backtest

EURUSD = fx_pair("EUR", "USD")
CONTRACT = EURUSD.contract_size
PIP = EURUSD.pip_size
BARS_PER_YEAR = 6240.0
CASH = 100_000.0


def _sizer(sizing: str | SizingConfig, fees: float = 0.0, commission: float = 0.0) -> Sizer:
    config = SizingConfig.parse(sizing) if isinstance(sizing, str) else sizing
    return Sizer(config, fees=fees, commission_per_lot=commission, contract_size=CONTRACT,
                 bars_per_year=BARS_PER_YEAR)  # fmt: skip


def _frame(close: np.ndarray) -> pl.DataFrame:
    start = utc(2024, 1, 8)
    return pl.DataFrame(
        {
            "ts": [start + timedelta(hours=k) for k in range(close.shape[0])],
            "open": close, "high": close * 1.0004, "low": close * 0.9996, "close": close,
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("ns"))  # fmt: skip


def _walk(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1.1 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))


def _entry_at(n: int, bar: int) -> Signals:
    entries = np.zeros(n, dtype=bool)
    entries[bar] = True
    return Signals(entries=entries, exits=np.zeros(n, dtype=bool))


# -- by formula ------------------------------------------------------------------------------


def test_all_in_leaves_room_for_fees_and_commission() -> None:
    # Arrange
    sizer = _sizer("all-in", fees=0.0002, commission=7.0)

    # Act
    units = sizer.full_units(100_000.0, 1.25, 0.8)

    # Assert: (E / (1 + f)) / (p r + c_unit / (1 + f))
    grossed = 1.0002
    assert units == pytest.approx((100_000.0 / grossed) / (1.25 * 0.8 + 7e-5 / grossed), rel=1e-15)
    notional = units * 1.25 * 0.8
    assert notional + 0.0002 * notional + 7.0 * units / CONTRACT == pytest.approx(100_000.0)


def test_lots_is_the_lots_times_the_contract_size_whatever_the_equity() -> None:
    # Arrange
    sizer = _sizer("lots:2.5")

    # Act
    sizes = {sizer.full_units(e, 1.1, 1.0) for e in (10_000.0, 1e6)}

    # Assert
    assert sizes == {250_000.0}


def test_fraction_is_that_share_of_equity_as_notional() -> None:
    # Arrange
    sizer = _sizer("fraction:3")

    # Act
    units = sizer.full_units(50_000.0, 150.0, 1 / 150.0)

    # Assert
    assert units == pytest.approx(150_000.0, rel=1e-12)


@pytest.mark.parametrize("kind", ["all-in", "lots:1", "fraction:1", "vol-target:0.1", "kelly:1"])
@pytest.mark.parametrize("equity", [0.0, -5.0, math.nan])
def test_full_units_without_positive_equity_is_zero(kind: str, equity: float) -> None:
    # Arrange
    sizer = _sizer(kind)
    for close in _walk(200):
        sizer.observe_close(float(close))

    # Act
    units = sizer.full_units(equity, 1.1, 1.0)

    # Assert
    assert units == 0.0


def test_vol_target_is_nan_before_lookback_returns_and_sizes_nothing() -> None:
    # Arrange: a lookback of 5 returns needs 6 closes
    sizer = _sizer(SizingConfig(kind="vol-target", value=0.1, lookback=5))
    closes = _walk(6)

    # Act
    early = []
    for close in closes[:5]:
        sizer.observe_close(float(close))
        early.append((sizer.annual_vol(), sizer.full_units(CASH, 1.1, 1.0)))
    sizer.observe_close(float(closes[5]))

    # Assert
    assert all(math.isnan(vol) and units == 0.0 for vol, units in early)
    logs = np.diff(np.log(closes))
    sigma = float(np.std(logs, ddof=1) * math.sqrt(BARS_PER_YEAR))
    assert sizer.annual_vol() == pytest.approx(sigma, rel=1e-12)
    assert sizer.full_units(CASH, 1.1, 1.0) == pytest.approx(CASH * 0.1 / sigma / 1.1, rel=1e-12)


def test_vol_target_is_capped_at_max_leverage() -> None:
    # Arrange: an almost flat series asks for far more than 10x
    sizer = _sizer(SizingConfig(kind="vol-target", value=0.5, lookback=3))
    for close in (1.1, 1.10000001, 1.1, 1.10000001):
        sizer.observe_close(close)

    # Act
    units = sizer.full_units(CASH, 1.1, 1.0)

    # Assert
    assert units == pytest.approx(10 * CASH / 1.1, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    closes=st.lists(st.floats(0.5, 2.0), min_size=3, max_size=60),
    lookback=st.integers(2, 20),
)
def test_vol_target_volatility_is_the_sample_stdev_of_the_last_log_returns(
    closes: list[float], lookback: int
) -> None:
    # Arrange
    sizer = _sizer(SizingConfig(kind="vol-target", value=0.1, lookback=lookback))

    # Act
    for close in closes:
        sizer.observe_close(close)
    vol = sizer.annual_vol()

    # Assert
    if len(closes) <= lookback:
        assert math.isnan(vol)
    else:
        logs = np.diff(np.log(np.asarray(closes[-(lookback + 1) :])))
        expected = float(np.std(logs, ddof=1) * math.sqrt(BARS_PER_YEAR))
        assert vol == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_kelly_fraction_is_p_minus_q_over_b_clipped() -> None:
    # Arrange: 6 wins of 2% and 4 losses of 1%: p 0.6, b 2, k = 0.6 - 0.4 / 2
    stats = KellyStats()
    for r in [0.02] * 6 + [-0.01] * 4:
        stats.add(r)
    losing = KellyStats()
    for r in [0.01] * 2 + [-0.02] * 8:
        losing.add(r)

    # Act
    k = stats.fraction(10.0)

    # Assert
    assert k == pytest.approx(0.4, rel=1e-12)
    assert losing.fraction(10.0) == 0.0
    assert stats.fraction(0.25) == 0.25


def test_kelly_uses_the_fraction_alone_before_20_closed_trades() -> None:
    # Arrange
    sizer = _sizer("kelly:0.5")
    for r in [0.02] * 12 + [-0.01] * (KELLY_MIN_TRADES - 13):
        sizer.trade_closed(r)
    before = sizer.full_units(CASH, 1.25, 1.0)

    # Act
    sizer.trade_closed(-0.01)
    after = sizer.full_units(CASH, 1.25, 1.0)

    # Assert: 19 trades: F alone; 20 (12 wins of 2%, 8 losses of 1%): F x (0.6 - 0.4 / 2)
    assert before == pytest.approx(CASH * 0.5 / 1.25, rel=1e-15)
    assert after == pytest.approx(CASH * 0.5 * 0.4 / 1.25, rel=1e-12)


# -- against the compiled engine ---------------------------------------------------------------


@pytest.mark.parametrize(
    "sizing", ["all-in", "lots:1.5", "fraction:2", "vol-target:0.15", "kelly:0.7"]
)
def test_full_units_equal_the_engines_for_one_entry(sizing: str) -> None:
    # Arrange: an entry at bar 150's close on a bid series with spread, slippage, fees,
    # commission and a conversion rate that varies bar by bar
    n = 160
    close = _walk(n)
    rate = np.linspace(0.8, 0.9, n)
    costs = CostConfig(fees=0.0001, commission_per_lot=3.5, spread_pips=0.8, slippage_pips=0.2)
    config = BacktestConfig(cash=CASH, costs=costs, sizing=SizingConfig.parse(sizing))
    sizer = _sizer(sizing, fees=0.0001, commission=3.5)
    bar = 150
    for c in close[: bar + 1]:
        sizer.observe_close(float(c))

    # Act
    result = run_backtest(_frame(close), _entry_at(n, bar), EURUSD, config,
                          bars_per_year=BARS_PER_YEAR, to_account=rate)  # fmt: skip
    price = close[bar] + 0.8 * PIP + 0.2 * PIP
    expected = sizer.full_units(CASH, float(price), float(rate[bar]))

    # Assert
    (units,) = result.trades["units"].to_list()
    assert result.trades["entry_price"][0] == pytest.approx(price, rel=1e-15)
    assert units == pytest.approx(expected, rel=1e-12)


def test_vol_target_engine_opens_nothing_before_lookback_returns_exist() -> None:
    # Arrange: lookback 5; entries at bar 4 (4 returns known) and bar 6 (6 known)
    n = 12
    close = _walk(n)
    config = BacktestConfig(cash=CASH, sizing=SizingConfig(kind="vol-target", value=0.1,
                                                           lookback=5))  # fmt: skip
    early = run_backtest(_frame(close), _entry_at(n, 4), EURUSD, config,
                         bars_per_year=BARS_PER_YEAR)  # fmt: skip
    sizer = _sizer(config.sizing)

    # Act
    late = run_backtest(_frame(close), _entry_at(n, 6), EURUSD, config,
                        bars_per_year=BARS_PER_YEAR)  # fmt: skip
    for c in close[:7]:
        sizer.observe_close(float(c))

    # Assert
    assert early.trades.height == 0 and not early.position.any()
    assert late.trades["units"][0] == pytest.approx(
        sizer.full_units(CASH, float(close[6]), 1.0), rel=1e-12
    )


def test_kelly_units_equal_the_engines_before_and_after_20_trades() -> None:
    # Arrange: 24 round trips, entering at odd bars and leaving at the next; the first 20 win
    # 2% (12 of them) or lose 1% (8)
    moves = [0.02, -0.01, 0.02, 0.02, -0.01] * 4 + [0.01, -0.01, 0.01, 0.01]
    close = [1.0]
    for move in moves:
        close += [1.0, 1.0 * (1.0 + move)]
    prices = np.asarray(close)
    n = prices.shape[0]
    entries = np.zeros(n, dtype=bool)
    exits = np.zeros(n, dtype=bool)
    entries[1::2] = True
    exits[2::2] = True
    config = BacktestConfig(cash=CASH, sizing=SizingConfig.parse("kelly:0.5"))

    # Act
    result = run_backtest(_frame(prices), Signals(entries=entries, exits=exits), EURUSD, config,
                          bars_per_year=BARS_PER_YEAR)  # fmt: skip
    trades = result.trades
    sizer = _sizer("kelly:0.5")
    expected = []
    for k, ret in enumerate(trades["return"].to_list()):
        entry = 1 + 2 * k
        expected.append(sizer.full_units(float(result.equity[entry - 1]), 1.0, 1.0))
        sizer.trade_closed(ret)

    # Assert
    assert trades.height == len(moves)
    assert trades["units"].to_list() == pytest.approx(expected, rel=1e-12)
    assert trades["units"][19] == pytest.approx(result.equity[38] * 0.5, rel=1e-12)
    assert trades["units"][20] == pytest.approx(result.equity[40] * 0.5 * 0.4, rel=1e-9)

"""Backtest metrics on real prices, checked against empyrical (empyrical-reloaded).

Equity curves are built with numpy from real closes: buy and hold and a long/flat rule on a
50-bar simple moving average of EURUSD H1 (MT4 history 2010-2018), and buy and hold of one
S&P 500 stock's daily closes (2013-2018). empyrical receives the per-bar returns computed from
the prices, solodesk the equity curve and the initial cash.

Where the definitions coincide (every figure compared here), they must agree to 1e-10
relative:

- Sharpe: mean / stdev (ddof 1) × √annualization, risk-free 0 (``sharpe_ratio``);
- Sortino: mean / √mean(min(r, 0)²) × √annualization, required return 0 (``sortino_ratio``);
- volatility: stdev (ddof 1) × √annualization (``annual_volatility``);
- max drawdown: both anchor the running peak at the starting value, which solodesk takes to be
  the initial cash (``max_drawdown``, and the whole ``drawdown_series``);
- annualized return: (1 + total)^(annualization / n) − 1 (``annual_return``, i.e. ``cagr``);
- Calmar: annualized return / |max drawdown| (``calmar_ratio``);
- monthly returns: compounded returns by calendar month (``aggregate_returns``).

The one definitional difference, Sharpe of returns that do not vary (empyrical: ±inf or NaN;
solodesk: NaN), does not arise on real prices.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import empyrical as ep
import numpy as np
import pandas as pd
import polars as pl
import pytest
from empyrical.stats import drawdown_series

from core.timeframes import Timeframe
from core.types import AssetClass
from pipelines.backtest.metrics import (
    Metrics,
    bars_per_year,
    drawdown,
    monthly_returns,
    performance,
)

pytestmark = pytest.mark.realdata

CASH = 100_000.0
REL = 1e-10
SMA_BARS = 50


def _close_returns(close: np.ndarray) -> np.ndarray:
    """Return per-bar returns of holding from the first close: 0, then cᵢ / cᵢ₋₁ − 1."""
    returns = np.zeros_like(close)
    returns[1:] = close[1:] / close[:-1] - 1.0
    return returns


@pytest.fixture(scope="module")
def eurusd_h1(data_file: Callable[[str], Path]) -> pl.DataFrame:
    path = data_file("mt4/EURUSD60.csv")
    names = ["date", "time", "open", "high", "low", "close", "volume"]
    frame = pl.read_csv(path, has_header=False, new_columns=names)
    return frame.select(
        (pl.col("date") + " " + pl.col("time"))
        .str.strptime(pl.Datetime("ns"), "%Y.%m.%d %H:%M")
        .alias("ts"),
        pl.col("close").cast(pl.Float64),
    )


@pytest.fixture(scope="module")
def stock_daily(data_file: Callable[[str], Path]) -> pl.DataFrame:
    path = data_file("sp500_daily_5yr/all_stocks_5yr.csv.gz")
    frame = pl.read_csv(path.read_bytes(), schema_overrides={"date": pl.Date})
    return (
        frame.filter(pl.col("Name") == "AAPL")
        .sort("date")
        .select(pl.col("date").cast(pl.Datetime("ns")).alias("ts"), pl.col("close"))
    )


def _buy_and_hold(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    close = frame["close"].to_numpy()
    return frame["ts"].to_numpy(), CASH * close / close[0], _close_returns(close)


def _sma_long_flat(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    close = frame["close"].to_numpy()
    sums = np.cumsum(np.concatenate(([0.0], close)))
    sma = np.full(close.size, np.nan)
    sma[SMA_BARS - 1 :] = (sums[SMA_BARS:] - sums[:-SMA_BARS]) / SMA_BARS
    signal = (close > sma).astype(np.float64)  # decided at a bar's close
    held = np.zeros_like(signal)
    held[1:] = signal[:-1]  # held through the next bar
    returns = held * _close_returns(close)
    equity = CASH * np.cumprod(1.0 + returns)
    return frame["ts"].to_numpy(), equity, returns, held


def _assert_matches_empyrical(m: Metrics, returns: np.ndarray, per_year: float) -> None:
    assert m.sharpe == pytest.approx(ep.sharpe_ratio(returns, annualization=per_year), rel=REL)
    assert m.sortino == pytest.approx(ep.sortino_ratio(returns, annualization=per_year), rel=REL)
    assert m.volatility == pytest.approx(
        ep.annual_volatility(returns, annualization=per_year), rel=REL
    )
    assert m.max_drawdown == pytest.approx(ep.max_drawdown(returns), rel=REL)
    assert m.annualized_return == pytest.approx(
        ep.annual_return(returns, annualization=per_year), rel=REL
    )
    assert m.calmar == pytest.approx(ep.calmar_ratio(returns, annualization=per_year), rel=REL)
    assert m.total_return == pytest.approx(ep.cum_returns_final(returns), rel=REL)


def test_performance_eurusd_h1_buy_and_hold_matches_empyrical(eurusd_h1: pl.DataFrame) -> None:
    # Arrange
    ts, equity, returns = _buy_and_hold(eurusd_h1)
    per_year = bars_per_year(Timeframe.H1, AssetClass.FX)

    # Act
    m = performance(equity, ts=ts, bars_per_year=per_year, initial_cash=CASH)

    # Assert
    assert m.n_bars > 50_000
    assert m.max_drawdown < -0.2  # EURUSD fell from 1.43 to about 1.04 over these years
    _assert_matches_empyrical(m, returns, per_year)


def test_performance_eurusd_h1_sma_long_flat_matches_empyrical(eurusd_h1: pl.DataFrame) -> None:
    # Arrange
    ts, equity, returns, held = _sma_long_flat(eurusd_h1)
    per_year = bars_per_year(Timeframe.H1, AssetClass.FX)

    # Act
    m = performance(equity, ts=ts, bars_per_year=per_year, initial_cash=CASH, position=held)

    # Assert
    assert 0.3 < m.exposure < 0.7
    assert m.exposure == pytest.approx(float(np.mean(held != 0)))
    _assert_matches_empyrical(m, returns, per_year)


def test_drawdown_eurusd_h1_sma_long_flat_matches_empyrical_series(
    eurusd_h1: pl.DataFrame,
) -> None:
    # Arrange
    _, equity, returns, _ = _sma_long_flat(eurusd_h1)

    # Act
    under = drawdown(equity, initial_cash=CASH)

    # Assert
    expected = drawdown_series(returns)
    np.testing.assert_allclose(under, expected, rtol=REL, atol=1e-13)


def test_performance_stock_daily_buy_and_hold_matches_empyrical(
    stock_daily: pl.DataFrame,
) -> None:
    # Arrange
    ts, equity, returns = _buy_and_hold(stock_daily)
    per_year = bars_per_year(Timeframe.D1, AssetClass.EQUITY)

    # Act
    m = performance(equity, ts=ts, bars_per_year=per_year, initial_cash=CASH)

    # Assert
    assert per_year == 252.0
    assert m.n_bars > 1200
    _assert_matches_empyrical(m, returns, per_year)


def test_monthly_returns_eurusd_h1_sma_long_flat_match_empyrical(eurusd_h1: pl.DataFrame) -> None:
    # Arrange
    ts, equity, returns, _ = _sma_long_flat(eurusd_h1)
    series = pd.Series(returns, index=pd.DatetimeIndex(ts))

    # Act
    months = monthly_returns(ts, equity, CASH)

    # Assert
    expected = ep.aggregate_returns(series, "monthly")
    assert [tuple(k) for k in expected.index] == list(
        zip(months["year"].to_list(), months["month"].to_list(), strict=True)
    )
    np.testing.assert_allclose(
        months["return"].to_numpy(), expected.to_numpy(), rtol=REL, atol=1e-13
    )

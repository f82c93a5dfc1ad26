"""The vectorized engine against vectorbt's ``Portfolio.from_signals`` on real EURUSD series.

Long only, all-in sizing, fees as a fraction of notional on both legs, fills at the close, no
spread or slippage: the settings in which both engines do the same arithmetic. The final
equity, the equity curve, the number of trades (the one left open included) and each trade's
P&L must agree to 1e-9 relative, on an MT4 H1 history and on a HistData M1 month, with SMA
cross signals and with random signals of a fixed seed.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from core.clocks import BROKER
from core.instruments import fx_pair
from models.strategies.base import Signals
from pipelines.backtest.config import BacktestConfig, CostConfig
from pipelines.backtest.engine import run_backtest

pytestmark = pytest.mark.realdata

CASH = 100_000.0
RELATIVE = 1e-9
EURUSD = fx_pair("EUR", "USD")
PRICES = ("open", "high", "low", "close")


def _mt4_h1(path: Path) -> pl.DataFrame:
    """MT4 history-center CSV (date,time,o,h,l,c,v, no header, broker clock) as UTC bars."""
    raw = pl.read_csv(path, has_header=False, new_columns=["date", "time", *PRICES, "volume"])
    local = (pl.col("date") + " " + pl.col("time")).str.strptime(
        pl.Datetime("us"), "%Y.%m.%d %H:%M"
    )
    return raw.select(BROKER.to_utc(local).alias("ts"), *PRICES)


def _histdata_m1(path: Path) -> pl.DataFrame:
    """A HistData generic ASCII zip (``;``-separated, EST = UTC-5 fixed) as UTC bars."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".csv"))
        data = archive.read(name)
    raw = pl.read_csv(
        io.BytesIO(data), separator=";", has_header=False, new_columns=["stamp", *PRICES, "volume"]
    )
    est = pl.col("stamp").str.strptime(pl.Datetime("us"), "%Y%m%d %H%M%S")
    return raw.select((est + timedelta(hours=5)).dt.replace_time_zone("UTC").alias("ts"), *PRICES)


@pytest.fixture(scope="module")
def series(data_file: Callable[[str], Path]) -> dict[str, tuple[pl.DataFrame, str]]:
    return {
        "mt4_h1": (_mt4_h1(data_file("mt4/EURUSD60.csv")), "1h"),
        "histdata_m1": (
            _histdata_m1(data_file("histdata_m1/eurusd/HISTDATA_COM_ASCII_EURUSD_M1_201801.zip")),
            "1min",
        ),
    }


def _sma(x: np.ndarray, n: int) -> np.ndarray:
    sums = np.cumsum(np.concatenate(([0.0], x)))
    out = np.full(x.shape[0], np.nan)
    out[n - 1 :] = (sums[n:] - sums[:-n]) / n
    return out


def _sma_cross(close: np.ndarray, fast: int = 12, slow: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Entries where the fast SMA crosses above the slow one, exits where it crosses below."""
    f, s = _sma(close, fast), _sma(close, slow)
    valid = ~(np.isnan(f) | np.isnan(s))
    above = valid & (f > s)
    below = valid & (f < s)
    entries = np.zeros(close.shape[0], dtype=bool)
    exits = np.zeros(close.shape[0], dtype=bool)
    entries[1:] = above[1:] & ~above[:-1] & valid[:-1]
    exits[1:] = below[1:] & ~below[:-1] & valid[:-1]
    return entries, exits


def _random(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20240601)
    return rng.random(n) < 0.02, rng.random(n) < 0.02


@pytest.mark.parametrize("fees", [0.0, 0.0002])
@pytest.mark.parametrize("signal_kind", ["sma_cross", "random"])
@pytest.mark.parametrize("name", ["mt4_h1", "histdata_m1"])
def test_long_all_in_matches_vectorbt_from_signals(
    series: dict[str, tuple[pl.DataFrame, str]], name: str, signal_kind: str, fees: float
) -> None:
    # Arrange
    import vectorbt as vbt

    bars, freq = series[name]
    close = bars["close"].to_numpy()
    entries, exits = _sma_cross(close) if signal_kind == "sma_cross" else _random(close.shape[0])
    config = BacktestConfig(cash=CASH, direction="long", costs=CostConfig(fees=fees))
    index = pd.DatetimeIndex(bars["ts"].to_numpy())

    # Act
    ours = run_backtest(
        bars,
        Signals(entries=entries, exits=exits),
        EURUSD,
        config,
        bars_per_year=252 * (24 if freq == "1h" else 1440),
    )
    theirs = vbt.Portfolio.from_signals(
        pd.Series(close, index=index),
        pd.Series(entries, index=index),
        pd.Series(exits, index=index),
        fees=fees,
        init_cash=CASH,
        freq=freq,
        engine="numba",
    )

    # Assert
    value = theirs.value().to_numpy()
    assert theirs.trades.count() > 50
    assert ours.trades.height == theirs.trades.count()
    assert ours.equity[-1] == pytest.approx(value[-1], rel=RELATIVE)
    assert np.max(np.abs(ours.equity - value) / value) <= RELATIVE
    pnl = theirs.trades.pnl.values
    assert np.max(np.abs(ours.trades["pnl"].to_numpy() - pnl)) <= RELATIVE * CASH
    assert np.allclose(ours.returns(), theirs.returns().to_numpy(), rtol=0, atol=1e-9)

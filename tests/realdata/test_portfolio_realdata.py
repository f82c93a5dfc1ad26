"""A risk-parity portfolio of five HistData FX pairs, January 2017 at M5, SMA-sign directions."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.instruments import InstrumentRegistry
from pipelines.backtest.config import CostConfig
from pipelines.backtest.portfolio import PortfolioConfig, PortfolioResult, run_portfolio

pytestmark = pytest.mark.realdata

PAIRS = ("EURUSD", "GBPUSD", "AUDUSD", "USDJPY", "USDCHF")
USD_BASE = ("USDJPY", "USDCHF")  # quoted in JPY / CHF: converted to USD by 1 / close
WARM_UP = 300  # past the 288-bar lookback and VaR window
TARGET_VOL = 0.08
VOL_LIMIT = 0.12


def _january_m5(path: Path) -> pl.DataFrame:
    """Read a HistData M1 zip (EST = UTC-5, ';', no header) and resample January to M5."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".csv"))
        raw = archive.read(name)
    minutes = pl.read_csv(
        io.BytesIO(raw),
        separator=";",
        has_header=False,
        new_columns=["ts", "open", "high", "low", "close", "volume"],
        schema_overrides={"ts": pl.String},
    ).with_columns(
        (pl.col("ts").str.strptime(pl.Datetime("us"), "%Y%m%d %H%M%S") + pl.duration(hours=5))
        .dt.replace_time_zone("UTC")
        .alias("ts")
    )
    january = minutes.filter(pl.col("ts").dt.month() == 1).sort("ts")
    return january.group_by_dynamic("ts", every="5m", closed="left", label="left").agg(
        pl.col("open").first(),
        pl.col("high").max(),
        pl.col("low").min(),
        pl.col("close").last(),
    )


def _sma_sign(bars: pl.DataFrame, fast: int = 12, slow: int = 48) -> np.ndarray:
    """+1 when the fast SMA of closes is above the slow one, -1 below, NaN while warming up."""
    gap = bars["close"].rolling_mean(fast) - bars["close"].rolling_mean(slow)
    return np.sign(gap.fill_null(np.nan).to_numpy())


@pytest.fixture(scope="module")
def january(data_file: Callable[[str], Path]) -> dict[str, pl.DataFrame]:
    return {
        pair: _january_m5(
            data_file(f"histdata_m1/{pair.lower()}/HISTDATA_COM_ASCII_{pair}_M1_2017.zip")
        )
        for pair in PAIRS
    }


CONFIG = PortfolioConfig(
    bars_per_year=74_880,  # 260 days x 288 M5 bars
    cash=100_000.0,
    costs=CostConfig(spread_pips=0.5, fees=2e-5, commission_per_lot=3.5),
    sizing="risk-parity",
    target_vol=TARGET_VOL,
    max_weight=0.6,
    max_gross=2.0,
    max_portfolio_vol=VOL_LIMIT,
    rebalance="daily",
    lookback=288,
    var_window=288,
)


@pytest.fixture(scope="module")
def result(january: dict[str, pl.DataFrame]) -> PortfolioResult:
    registry = InstrumentRegistry.default()
    signals = {pair: _sma_sign(bars) for pair, bars in january.items()}
    to_account = {pair: 1.0 / january[pair]["close"].to_numpy() for pair in USD_BASE}
    instruments = {pair: registry.get(pair) for pair in PAIRS}
    return run_portfolio(january, signals, instruments, CONFIG, to_account=to_account)


def _closes(result: PortfolioResult, january: dict[str, pl.DataFrame]) -> np.ndarray:
    timeline = pl.DataFrame({"ts": result.ts})
    return np.column_stack(
        [
            timeline.join(january[s].select("ts", "close"), on="ts", how="left")["close"]
            .forward_fill()
            .to_numpy()
            for s in result.symbols
        ]
    )


def test_portfolio_january_m5_equity_is_cash_plus_converted_positions(
    result: PortfolioResult, january: dict[str, pl.DataFrame]
) -> None:
    # Arrange
    closes = _closes(result, january)
    usd_base = np.array([s in USD_BASE for s in result.symbols])
    fx = np.where(usd_base, 1.0 / closes, 1.0)

    # Act
    value = result.cash + np.nansum(result.units * closes * fx, axis=1)

    # Assert
    assert result.equity.shape[0] >= max(bars.height for bars in january.values())
    np.testing.assert_allclose(result.equity, value, rtol=1e-10)
    np.testing.assert_allclose(result.pnl.sum(axis=1), result.equity - CONFIG.cash, atol=1e-5)
    assert (result.equity > 0).all()
    assert (result.n_trades > 0).all()
    assert result.sizing_fallbacks == 0


def test_portfolio_january_m5_caps_and_limit_hold_at_rebalance_bars(
    result: PortfolioResult,
) -> None:
    # Arrange
    rows = np.isin(result.ts.to_numpy(), result.rebalance_ts.to_numpy())
    lift = ((result.equity + result.costs) / result.equity)[rows]

    # Act
    magnitude = np.abs(result.weights[rows])
    vol = result.risk["portfolio_vol"].to_numpy()[rows]

    # Assert
    assert 20 <= rows.sum() <= 31  # one per UTC day with bars
    assert (magnitude <= CONFIG.max_weight * lift[:, None] + 1e-12).all()
    assert (magnitude.sum(axis=1) <= CONFIG.max_gross * lift + 1e-12).all()
    assert (vol <= VOL_LIMIT * lift + 1e-9).all()
    held = magnitude.sum(axis=1) > 0
    assert held.sum() >= 15
    # Caps and the limit only lower the book's volatility below the 0.08 target.
    assert (vol[held] <= TARGET_VOL * lift[held] + 1e-9).all()
    assert np.median(vol[held]) == pytest.approx(TARGET_VOL, rel=0.01)


def test_portfolio_january_m5_risk_frame_finite_after_warm_up(result: PortfolioResult) -> None:
    # Act
    settled = result.risk.slice(WARM_UP).drop("ts")

    # Assert
    assert np.isfinite(settled.to_numpy()).all()
    assert (settled["es_hist_99"] >= settled["var_hist_99"]).all()
    assert (settled["es_param_95"] >= settled["var_param_95"]).all()
    held = settled.filter(pl.col("gross_exposure") > 0)
    assert held.height > 0.8 * settled.height
    assert np.mean(held["var_hist_95"].to_numpy() > 0) > 0.95

"""Compile the desk's Numba kernels once, at install, into Numba's on-disk cache.

Every compiled kernel (features, strategy indicators, the backtest engine, metrics, positions,
portfolio risk) is declared ``cache=True``: the first process to call one compiles it, about
8 s for the backtest path alone on the 2-core machine, and later processes load it in
milliseconds. :func:`warm_up` calls each of them on a small synthetic series with the dtypes
real data has, so a new desk's first feature build, sweep or backtest does not pay for
compilation. ``make install`` runs it (``python -m pipelines.warmup``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from core.clocks import BROKER
from core.instruments import fx_pair
from core.timeframes import Timeframe
from core.types import VolumeKind
from models.strategies.registry import available_strategies
from pipelines.backtest.config import BacktestConfig, CostConfig, PortfolioSizing, SizingConfig
from pipelines.backtest.portfolio import PortfolioConfig, run_portfolio
from pipelines.backtest.sweep import StrategyRef, SweepJob, run_sweep
from pipelines.evaluate.dataset import FeatureRecipe
from pipelines.features.sets import FeatureSetConfig, SeriesFrame
from pipelines.ingest.normalize import BAR_SCHEMA

BARS = 1500
PER_YEAR = 6240.0


def synthetic_bars(n: int = BARS, seed: int = 0) -> pl.DataFrame:
    """Return ``n`` hourly bars of a random walk in the store's schema (spread and volume too)."""
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    opens = np.concatenate(([close[0]], close[:-1]))
    start = datetime(2021, 3, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "ts": pl.datetime_range(start, start + timedelta(hours=n - 1), "1h", eager=True),
            "open": opens,
            "high": np.maximum(opens, close) * 1.0004,
            "low": np.minimum(opens, close) * 0.9996,
            "close": close,
            "volume": rng.integers(50, 500, n).astype(np.float64),
            "spread": np.full(n, 0.00008),
        }
    ).cast(BAR_SCHEMA)  # type: ignore[arg-type]


def _features(bars: pl.DataFrame) -> None:
    config = FeatureSetConfig.model_validate(
        {
            "features": "default",
            "context": [
                {"timeframe": "H4", "features": "default"},
                {"timeframe": "D1", "features": "default"},
            ],
            "label": {
                "kind": "triple_barrier",
                "pt": 2.0,
                "sl": 2.0,
                "max_holding": 24,
                "vol_span": 50,
            },
            "weights": True,
        }
    )
    frame = SeriesFrame(bars, Timeframe.H1, has_spread=True, volume_kind=VolumeKind.TICK)
    clocks = {Timeframe.H4: BROKER, Timeframe.D1: BROKER}
    FeatureRecipe(config.resolve(), clocks).table(frame)


def _strategies(bars: pl.DataFrame) -> None:
    instrument = fx_pair("EUR", "USD")
    names = [
        name
        for name in available_strategies()
        if not getattr(StrategyRef(name).load(), "needs_features", ())
    ]
    for sizing in ("all-in", "fraction:1", "lots:1", "vol-target:0.1", "kelly:0.5"):
        config = BacktestConfig(
            costs=CostConfig(fees=0.00002, spread_pips=1.0), sizing=SizingConfig.parse(sizing)
        )
        for name in names:
            job = SweepJob(StrategyRef(name), bars, None, instrument, config, "bid", PER_YEAR)
            run_sweep(job, [{}], jobs=1)


def _portfolio(bars: pl.DataFrame) -> None:
    other = synthetic_bars(seed=1)
    directions = {s: np.sign(np.sin(np.arange(BARS) / 50.0)) for s in ("EURUSD", "GBPUSD")}
    config = PortfolioConfig(
        bars_per_year=PER_YEAR, sizing=PortfolioSizing.RISK_PARITY, target_vol=0.1,
        lookback=200, var_window=200,
    )  # fmt: skip
    run_portfolio(
        {"EURUSD": bars, "GBPUSD": other},
        directions,
        {"EURUSD": fx_pair("EUR", "USD"), "GBPUSD": fx_pair("GBP", "USD")},
        config,
    )


def warm_up() -> dict[str, float]:
    """Call every compiled kernel once; return the seconds each part took (compiling included)."""
    bars = synthetic_bars()
    seconds = {}
    for name, part in (("features", _features), ("strategies and backtests", _strategies),
                       ("portfolio", _portfolio)):  # fmt: skip
        started = time.perf_counter()
        part(bars)
        seconds[name] = time.perf_counter() - started
    return seconds


if __name__ == "__main__":
    for part, took in warm_up().items():
        print(f"compiled kernels loaded: {part} in {took:.1f} s")

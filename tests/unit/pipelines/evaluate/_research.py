"""Synthetic series for the research tests: H1 bars with or without a real, learnable edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from core.instruments import InstrumentRegistry
from core.timeframes import Timeframe
from core.types import VolumeKind
from pipelines.backtest.config import BacktestConfig, CostConfig, SizingConfig
from pipelines.evaluate.dataset import ExtraFeatures, FeatureRecipe, ResearchData, research_data
from pipelines.features.sets import SeriesFrame, parse_feature_sets
from pipelines.train.config import RuleConfig
from pipelines.train.tuning import TradeContext

SMALL_SET = {
    "features": ["log_return_1", "log_return_2", "rsi_7", "realized_vol_20"],
    "label": {"kind": "horizon", "horizon": 1},
    "weights": True,
}


def momentum_bars(n: int, seed: int, *, phi: float = 0.0, vol: float = 1e-3) -> pl.DataFrame:
    """Return ``n`` hourly bars whose log returns follow r_t = phi · r_t−1 + noise."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, vol, n)
    r = np.empty(n)
    r[0] = noise[0]
    for i in range(1, n):
        r[i] = phi * r[i - 1] + noise[i]
    close = 1.2 * np.exp(np.cumsum(r))
    open_ = np.r_[1.2, close[:-1]]
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 2e-4, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 2e-4, n))
    start = datetime(2015, 1, 5, tzinfo=UTC)
    ts = [start + timedelta(hours=i) for i in range(n)]
    return pl.DataFrame(
        {"ts": ts, "open": open_, "high": high, "low": low, "close": close},
        schema={"ts": pl.Datetime("us", "UTC"), "open": pl.Float64, "high": pl.Float64,
                "low": pl.Float64, "close": pl.Float64},
    )  # fmt: skip


def recipe(extra: ExtraFeatures | None = None, **changes: object) -> FeatureRecipe:
    """Return the small feature set's recipe (hourly, no context)."""
    config = parse_feature_sets({"sets": {"s": {**SMALL_SET, **changes}}})["s"]
    return FeatureRecipe(config.resolve(), extra=extra)


def frame(bars: pl.DataFrame) -> SeriesFrame:
    """Return hourly bars as a series frame."""
    return SeriesFrame(bars, Timeframe.H1, volume_kind=VolumeKind.NONE)


def dataset(bars: pl.DataFrame, extra: ExtraFeatures | None = None) -> ResearchData:
    """Return the research rows of ``bars`` under the small set."""
    return research_data(recipe(extra).table(frame(bars)), bars)


def trade(spread_pips: float = 0.0) -> TradeContext:
    """Return a EURUSD trade context with the given spread and 1:1 notional."""
    return TradeContext(
        instrument=InstrumentRegistry.default().get("EURUSD"),
        backtest=BacktestConfig(
            costs=CostConfig(spread_pips=spread_pips), sizing=SizingConfig.parse("fraction:1")
        ),
        rule=RuleConfig(upper=0.52, lower=0.48, allow_short=True),
        side="bid",
        bars_per_year=6240.0,
    )


def leaky(bars: pl.DataFrame) -> pl.DataFrame:
    """Return the next bar's log return as a feature: unknown at the end of bar t."""
    leak = (pl.col("close").shift(-1) / pl.col("close")).log()
    return bars.select(pl.col("ts"), leak.alias("next_log_return"))

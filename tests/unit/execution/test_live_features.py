"""Live features: the research feature table's rows, built one closed bar at a time.

Synthetic hourly bars with gaps (weekends, missing hours) stand in for a feed; the reference
is :meth:`FeatureRecipe.table` on the whole series, labels aside, compared bit for bit (a null
there is NaN here). Context is cut on the broker day as training cuts it, and a cross asset
with its own gaps comes from its own bars.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import numpy as np
import polars as pl
import pytest

from core.clocks import BROKER
from core.clocks import UTC as UTC_CLOCK
from core.errors import UsageError
from core.ports import BarBatch
from core.timeframes import Timeframe
from core.types import VolumeKind
from execution.feeds import bar_batch, slice_batch
from execution.live_features import FeedSpec, LiveFeatures
from pipelines.evaluate.dataset import LABEL_COLUMNS, FeatureRecipe
from pipelines.features.sets import ResolvedFeatureSet, SeriesFrame, parse_feature_sets

HOUR_NS = 3_600 * 1_000_000_000
START = datetime(2021, 3, 1, tzinfo=UTC)  # spans the switch to New York summer time


def hourly(n: int, seed: int, *, drop: float = 0.03) -> pl.DataFrame:
    """Return about ``n`` hourly bars of a random walk, weekends and a share of hours missing."""
    rng = np.random.default_rng(seed)
    ts = np.datetime64(START.replace(tzinfo=None), "ns") + np.arange(n) * np.timedelta64(1, "h")
    weekday = (ts.astype("datetime64[D]").view("int64") + 3) % 7  # 0 Monday
    keep = (weekday < 5) & (rng.uniform(size=n) > drop)
    close = 1.2 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate(([1.2], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 5e-4, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 5e-4, n))
    frame = pl.DataFrame(
        {
            "ts": pl.Series(ts).dt.cast_time_unit("us").dt.replace_time_zone("UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1, 900, n).astype(np.float64),
            "spread": rng.uniform(1e-5, 3e-5, n),
        }
    )
    return frame.filter(pl.Series(keep))


def batch_of(bars: pl.DataFrame) -> BarBatch:
    ts = bars["ts"].dt.cast_time_unit("ns").to_physical().to_numpy()
    return bar_batch(
        ts, bars["open"].to_numpy(), bars["high"].to_numpy(), bars["low"].to_numpy(),
        bars["close"].to_numpy(), volume=bars["volume"].to_numpy(),
        spread=bars["spread"].to_numpy(), bar_ns=HOUR_NS,
    )  # fmt: skip


def resolved_set(cross: bool = True) -> ResolvedFeatureSet:
    section = {
        "sets": {
            "live": {
                "features": "default",
                "context": [
                    {"timeframe": "H4", "features": ["rsi_14", "atr_rel_14", "log_return_1"]},
                    {"timeframe": "D1", "features": ["rsi_14", "realized_vol_20", "adx_14"]},
                ],
                "cross_assets": ["GBPUSD"] if cross else [],
                "label": {
                    "kind": "triple_barrier",
                    "pt": 2.0,
                    "sl": 2.0,
                    "max_holding": 24,
                    "vol_span": 50,
                },
            }
        }
    }
    return parse_feature_sets(section)["live"].resolve().for_timeframe(Timeframe.H1)


def reference(resolved: ResolvedFeatureSet, bars: pl.DataFrame, other: pl.DataFrame) -> np.ndarray:
    frame = SeriesFrame(bars, Timeframe.H1, UTC_CLOCK, True, VolumeKind.TICK)
    cross = {"GBPUSD": SeriesFrame(other, Timeframe.H1, UTC_CLOCK, True, VolumeKind.TICK)}
    recipe = FeatureRecipe(resolved, {Timeframe.H4: BROKER, Timeframe.D1: BROKER}, cross)
    table = recipe.table(frame).frame
    columns = [c for c in table.columns if c != "ts" and c not in LABEL_COLUMNS]
    values = table.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()
    return np.where(np.isfinite(values), values, np.nan), columns


def live(resolved: ResolvedFeatureSet) -> LiveFeatures:
    spec = FeedSpec(Timeframe.H1, UTC_CLOCK, True, VolumeKind.TICK)
    return LiveFeatures(
        resolved, spec, {Timeframe.H4: BROKER, Timeframe.D1: BROKER}, {"GBPUSD": spec}
    )


def same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    both_nan = np.isnan(got) & np.isnan(want)
    differ = ~both_nan & (got.view(np.int64) != want.view(np.int64))
    rows, cols = np.nonzero(differ)
    assert rows.size == 0, f"{rows.size} values differ, first at row {rows[:3]}, column {cols[:3]}"


@pytest.fixture(scope="module")
def series() -> tuple[pl.DataFrame, pl.DataFrame]:
    return hourly(2_400, seed=7), hourly(2_400, seed=8, drop=0.08)


def test_live_features_bar_by_bar_equal_the_research_table_bit_for_bit(
    series: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    # Arrange
    bars, other = series
    resolved = resolved_set()
    want, columns = reference(resolved, bars, other)
    features = live(resolved)
    features.add_cross("GBPUSD", batch_of(other))
    batch = batch_of(bars)

    # Act
    got = np.vstack([features.push(slice_batch(batch, k, k + 1)) for k in range(len(batch))])

    # Assert
    assert list(features.columns) == columns
    assert any(c.startswith("h4_") for c in columns) and any(c.startswith("d1_") for c in columns)
    assert any(c.lower().startswith("gbpusd_") for c in columns)
    same_bits(got, want)
    assert np.isfinite(got[-1]).all()


def test_live_features_in_uneven_batches_equal_one_bar_at_a_time(
    series: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    # Arrange
    bars, other = series
    resolved = resolved_set()
    want, _ = reference(resolved, bars, other)
    features = live(resolved)
    features.add_cross("GBPUSD", batch_of(other))
    batch = batch_of(bars)
    cuts = [0, 1, 5, 300, 301, 1_000, 2_000, len(batch)]

    # Act
    got = np.vstack([features.push(slice_batch(batch, a, b)) for a, b in pairwise(cuts)])

    # Assert
    same_bits(got, want)


def test_live_features_from_a_window_approach_the_table_within_the_declared_tolerance(
    series: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    # Arrange: start 1,400 bars in, as a session warmed up on a window of history does
    bars, _ = series
    resolved = resolved_set(cross=False)
    frame = SeriesFrame(bars, Timeframe.H1, UTC_CLOCK, True, VolumeKind.TICK)
    recipe = FeatureRecipe(resolved, {Timeframe.H4: BROKER, Timeframe.D1: BROKER})
    table = recipe.table(frame).frame
    names = [c for c in table.columns if c != "ts" and c not in LABEL_COLUMNS]
    features = LiveFeatures(
        resolved, FeedSpec(Timeframe.H1, UTC_CLOCK, True, VolumeKind.TICK),
        {Timeframe.H4: BROKER, Timeframe.D1: BROKER},
    )  # fmt: skip
    batch = batch_of(bars)
    lookback = max(s.lookback for s in resolved.specs)
    start = 1_400 - lookback

    # Act
    got = features.push(slice_batch(batch, start, len(batch)))[lookback:]

    # Assert: the series' own features within their tolerance once their lookback has passed
    want = table.select(names).to_numpy()[1_400:]
    for k, spec in enumerate(resolved.specs):
        diff = np.nanmax(np.abs(got[:, k] - want[:, k]))
        assert diff <= spec.tolerance, (spec.name, diff)


def test_live_features_refuse_a_context_not_longer_than_the_series() -> None:
    # Arrange
    section = {
        "sets": {
            "s": {
                "features": ["rsi_14"],
                "context": [{"timeframe": "H1", "features": ["rsi_14"]}],
                "label": {
                    "kind": "triple_barrier",
                    "pt": 2.0,
                    "sl": 2.0,
                    "max_holding": 24,
                    "vol_span": 50,
                },
            }
        }
    }
    resolved = parse_feature_sets(section)["s"].resolve()

    # Act / Assert
    with pytest.raises(UsageError, match="context timeframe H1 is not longer"):
        LiveFeatures(resolved, FeedSpec(Timeframe.H4))


def test_live_features_refuse_bars_of_an_unknown_cross_asset() -> None:
    # Arrange
    features = live(resolved_set())

    # Act / Assert
    with pytest.raises(UsageError, match="USDJPY is not a cross asset"):
        features.add_cross("USDJPY", batch_of(hourly(10, seed=1)))

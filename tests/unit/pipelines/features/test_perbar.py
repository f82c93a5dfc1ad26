"""The per-bar engine gives the batch feature values bit for bit, one bar at a time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest

from core.errors import UsageError
from core.times import ns_from_utc
from core.types import VolumeKind
from pipelines.features import (
    BUILDERS,
    BarFeatures,
    Family,
    FeatureSpec,
    compute_features,
    default_feature_set,
)
from pipelines.features.perbar import KINDS
from pipelines.features.registry import OHLC, windowed_spec

from ._bars import MINUTE, START, random_bars

FULL: dict[str, Any] = {"has_spread": True, "volume_kind": VolumeKind.TICK}


def assert_same_bits(got: np.ndarray, want: pl.DataFrame, names: tuple[str, ...]) -> None:
    """Assert ``got`` holds ``want``'s features bit for bit, NaN exactly where they are null."""
    assert tuple(want.columns[1:]) == names
    expected = want.drop("ts").to_numpy().astype(np.float64).reshape(want.height, len(names))
    assert got.shape == expected.shape
    missing = np.isnan(got)
    differ = (missing != np.isnan(expected)) | (
        ~missing & (got.view(np.int64) != np.where(missing, 0.0, expected).view(np.int64))
    )
    if differ.any():
        rows, cols = np.nonzero(differ)
        worst = {names[c]: int((cols == c).sum()) for c in set(cols.tolist())}
        r, c = rows[0], cols[0]
        msg = f"{names[c]} row {r}: got {got[r, c]!r}, batch {expected[r, c]!r}; differing: {worst}"
        raise AssertionError(msg)


def assert_equals_batch(
    bars: pl.DataFrame, specs: list[FeatureSpec], **kinds: Any
) -> dict[str, np.ndarray]:
    """Assert the engine fed ``bars`` equals the batch bit for bit; return its values by name."""
    engine = BarFeatures(specs, **kinds)
    got = engine.push_frame(bars)
    want = compute_features(bars, specs, **kinds)
    assert_same_bits(got, want, engine.names)
    assert engine.count == bars.height
    return {name: got[:, j] for j, name in enumerate(engine.names)}


def varied_specs() -> list[FeatureSpec]:
    """Return every kind with the default set's and other parameters (short, long, odd windows)."""
    f = Family
    specs: list[FeatureSpec] = []

    def add(kind: str, family: Family, **params: float) -> None:
        name = "_".join([kind, *(f"{k}{v}" for k, v in params.items())])
        specs.append(windowed_spec(name, family, kind, 0, **params))

    for h in (0, 1, 3, 64, 100):
        add("log_return", f.RETURNS, horizon=h)
    for w in (1, 2, 3, 10, 60, 250):
        add("realized_vol", f.VOLATILITY, window=w)
    for w in (1, 2, 5, 10, 33):
        add("parkinson_vol", f.VOLATILITY, window=w)
        add("garman_klass_vol", f.VOLATILITY, window=w)
    for n in (1, 2, 7, 14, 50, 100):
        add("atr_rel", f.VOLATILITY, n=n)
        add("rsi", f.MOMENTUM, n=n)
    for fast, slow, signal in ((1, 2, 1), (3, 10, 4), (12, 26, 9), (26, 12, 9)):
        add("macd_line_rel", f.MOMENTUM, fast=fast, slow=slow)
        add("macd_signal_rel", f.MOMENTUM, fast=fast, slow=slow, signal=signal)
        add("macd_histogram_rel", f.MOMENTUM, fast=fast, slow=slow, signal=signal)
    for n in (0, 1, 5, 50):
        add("rate_of_change", f.MOMENTUM, n=n)
    for n in (1, 2, 5, 14, 60):
        add("stochastic_k", f.MOMENTUM, n=n)
        for d in (1, 3, 5):
            add("stochastic_d", f.MOMENTUM, n=n, d=d)
    for n in (1, 2, 20, 200, 300):
        add("close_to_sma", f.TREND, n=n)
        add("close_to_ema", f.TREND, n=n)
    for n, atr_n in ((1, 1), (5, 3), (20, 14), (50, 14), (2, 40)):
        add("close_to_sma_atr", f.TREND, n=n, atr_n=atr_n)
        add("close_to_ema_atr", f.TREND, n=n, atr_n=atr_n)
    for n in (1, 2, 5, 14, 30):
        add("plus_di", f.TREND, n=n)
        add("minus_di", f.TREND, n=n)
        add("adx", f.TREND, n=n)
    for w in (2, 3, 4, 10, 30, 90):
        add("log_close_slope", f.TREND, window=w)
    for w in (1, 2, 3, 20, 50, 120):
        add("close_zscore", f.MEAN_REVERSION, window=w)
    for w, k in ((1, 2.0), (2, 1.0), (20, 2.0), (50, 0.5), (21, 3.0)):
        add("bollinger_pct_b", f.MEAN_REVERSION, window=w, k=k)
    for lag in (0, 1, 2, 7):
        for part in ("body", "upper_shadow", "lower_shadow", "close_position"):
            add(f"kbar_{part}", f.KBAR, lag=lag)
    for kind in (
        "hour_sin", "hour_cos", "weekday_sin", "weekday_cos",
        "session_asia", "session_london", "session_new_york",
    ):  # fmt: skip
        add(kind, f.CALENDAR)
    add("relative_spread", f.SPREAD)
    for w in (1, 2, 20, 60):
        add("relative_spread_mean", f.SPREAD, window=w)
    for w in (1, 2, 5, 20, 60):
        add("volume_zscore", f.VOLUME, window=w)
        add("volume_ratio", f.VOLUME, window=w)
    return specs


def rough_bars(n: int, seed: int) -> pl.DataFrame:
    """Return random bars with the awkward cases: flat bars and a long flat stretch (equal
    prices, high = low), zero-volume runs, constant volume, null volumes and spreads."""
    bars = random_bars(n, seed, flat_share=0.15, spread_null_share=0.1)
    holes = np.random.default_rng(seed).integers(0, n, n // 50).tolist()
    row = pl.int_range(pl.len())
    flat = row.is_between(n // 3, n // 3 + 260)
    level = bars["close"][n // 3]
    volume = (
        pl.when(row.is_in(holes))
        .then(None)
        .when(row.is_between(n // 2, n // 2 + 80))
        .then(0.0)
        .when(row.is_between(n // 2 + 200, n // 2 + 240))
        .then(7.0)
        .otherwise(pl.col("volume"))
    )
    prices = [pl.when(flat).then(level).otherwise(pl.col(c)).alias(c) for c in OHLC]
    return bars.with_columns(*prices, volume.alias("volume"))


def test_every_batch_kind_has_a_per_bar_counterpart() -> None:
    # Arrange / Act
    covered = {s.kind for s in varied_specs()}

    # Assert
    assert set(KINDS) == set(BUILDERS)
    assert covered == set(BUILDERS)


@pytest.mark.parametrize(
    ("seed", "flat_share", "spread_null_share"), [(5, 0.05, 0.02), (11, 0.4, 0.3), (12, 0.0, 0.0)]
)
def test_default_set_equals_batch_bit_for_bit(
    seed: int, flat_share: float, spread_null_share: float
) -> None:
    # Arrange
    bars = random_bars(1500, seed, flat_share=flat_share, spread_null_share=spread_null_share)

    # Act / Assert
    assert_equals_batch(bars, default_feature_set(), **FULL)


def test_varied_parameters_on_rough_bars_equal_batch_bit_for_bit() -> None:
    # Arrange
    bars = rough_bars(2400, seed=21)
    specs = varied_specs()

    # Act
    got = assert_equals_batch(bars, specs, **FULL)

    # Assert: the flat stretch and the volume runs reached the kernels' special cases.
    assert (got["realized_vol_window60"] == 0.0).sum() > 150
    assert (got["close_zscore_window120"] == 0.0).sum() > 100
    assert (got["volume_ratio_window20"] == 1.0).sum() > 40
    assert (got["stochastic_k_n14"] == 50.0).sum() > 200
    assert (got["rsi_n1"] == 50.0).sum() > 200


@pytest.mark.parametrize("height", [1, 2, 3])
def test_a_few_bars_equal_batch(height: int) -> None:
    # Arrange
    bars = random_bars(height, seed=height)

    # Act / Assert
    assert_equals_batch(bars, varied_specs(), **FULL)


def test_push_bar_by_bar_equals_push_frame_and_returns_fresh_vectors() -> None:
    # Arrange
    bars = rough_bars(400, seed=4)
    specs = default_feature_set()
    engine = BarFeatures(specs, **FULL)
    stamps = bars["ts"].dt.epoch("ns").to_list()
    rows = bars.select("open", "high", "low", "close", "volume", "spread").fill_null(np.nan)

    # Act
    pushed = [
        engine.push(ts, o, h, lo, c, volume=v, spread=s)
        for ts, (o, h, lo, c, v, s) in zip(stamps, rows.iter_rows(), strict=True)
    ]

    # Assert
    got = np.vstack(pushed)
    assert_same_bits(got, compute_features(bars, specs, **FULL), engine.names)
    again = BarFeatures(specs, **FULL).push_frame(bars)
    assert np.array_equal(got, again, equal_nan=True)
    assert pushed[0] is not pushed[1]
    assert not np.shares_memory(pushed[-1], pushed[-2])


def test_calendar_features_from_any_open_time_equal_batch() -> None:
    # Arrange: open times with seconds and microseconds, over years, before and after 1970.
    rng = np.random.default_rng(3)
    steps = rng.integers(1, 40 * 86_400_000_000, 1200)
    first = datetime(1969, 6, 1, tzinfo=UTC)
    base = random_bars(1200, seed=3).drop("ts")
    ts = pl.Series("ts", np.cumsum(steps)).cast(pl.Duration("us")) + first
    bars = base.with_columns(ts)
    specs = [s for s in default_feature_set() if s.family is Family.CALENDAR]

    # Act / Assert
    assert_equals_batch(bars, specs, **FULL)
    assert bars["ts"].dt.year().min() == 1969
    assert bars["ts"].dt.weekday().n_unique() == 7
    assert bars["ts"].dt.hour().n_unique() == 24


def test_missing_prices_propagate_as_batch_nulls() -> None:
    # Arrange: Polars' weighted window refuses nulls, so log_close_slope is left out here.
    bars = rough_bars(900, seed=8)
    holes = {"close": [50, 51, 400], "high": [100, 600], "low": [200], "open": [300, 301]}
    for column, rows in holes.items():
        bars = bars.with_columns(bars[column].scatter(rows, None))
    specs = [s for s in varied_specs() if s.kind != "log_close_slope"]

    # Act / Assert
    assert_equals_batch(bars, specs, **FULL)


def test_log_close_slope_is_nan_while_its_window_holds_a_missing_close() -> None:
    # Arrange
    bars = random_bars(60, seed=2)
    bars = bars.with_columns(bars["close"].scatter([20], None))
    slope = [s for s in default_feature_set() if s.name == "log_close_slope_10"]
    engine = BarFeatures(slope, **FULL)

    # Act
    got = engine.push_frame(bars)[:, 0]

    # Assert
    assert np.isnan(got[:9]).all()
    assert np.isfinite(got[9:20]).all()
    assert np.isnan(got[20:30]).all()
    want = compute_features(bars.slice(21), slope, **FULL)["log_close_slope_10"].to_numpy()
    assert np.isfinite(got[30:]).all()
    assert np.array_equal(got[30:].view(np.int64), want[9:].view(np.int64))


@pytest.mark.parametrize("volume_kind", [VolumeKind.NONE, VolumeKind.M1_COUNT])
def test_series_without_spread_or_tick_volume_skip_those_families(volume_kind: VolumeKind) -> None:
    # Arrange
    bars = rough_bars(500, seed=6).drop("spread")
    specs = default_feature_set()
    kinds: dict[str, Any] = {"has_spread": False, "volume_kind": volume_kind}

    # Act
    engine = BarFeatures(specs, **kinds)

    # Assert
    assert not any(n.startswith(("relative_spread", "volume_")) for n in engine.names)
    assert len(engine.names) == len(specs) - 7
    assert_equals_batch(bars, specs, **kinds)


def test_bar_not_later_than_the_previous_is_refused_and_changes_nothing() -> None:
    # Arrange
    bars = random_bars(200, seed=7)
    engine = BarFeatures(default_feature_set(), **FULL)
    first = engine.push_frame(bars.head(150))
    last_ts = bars["ts"].dt.epoch("ns")[149]
    o, h, lo, c = bars.row(150)[1:5]

    # Act / Assert
    with pytest.raises(UsageError, match="strictly increasing"):
        engine.push(last_ts, o, h, lo, c, 1.0, 1e-5)
    with pytest.raises(UsageError, match="strictly increasing"):
        engine.push(last_ts - 60_000_000_000, o, h, lo, c, 1.0, 1e-5)
    with pytest.raises(UsageError, match="strictly increasing"):
        engine.push_frame(bars.slice(149))
    assert engine.count == 150
    rest = engine.push_frame(bars.slice(150))
    want = compute_features(bars, default_feature_set(), **FULL)
    assert_same_bits(np.vstack([first, rest]), want, engine.names)


def test_unsorted_or_repeated_bars_in_a_frame_push_nothing() -> None:
    # Arrange
    bars = random_bars(20, seed=1)
    repeated = pl.concat([bars.head(10), bars.slice(9)])
    engine = BarFeatures(default_feature_set(), **FULL)

    # Act / Assert
    with pytest.raises(UsageError, match="row 10"):
        engine.push_frame(repeated)
    with pytest.raises(UsageError, match="strictly increasing"):
        engine.push_frame(bars.reverse())
    assert engine.count == 0


def test_bad_feature_sets_and_frames_are_refused() -> None:
    # Arrange
    rsi = next(s for s in default_feature_set() if s.kind == "rsi")
    unknown = dataclasses.replace(rsi, name="x", kind="nonexistent")
    no_param = dataclasses.replace(rsi, name="y", params=())
    zero_window = dataclasses.replace(rsi, name="z", params=(("n", 0),))
    spread = next(s for s in default_feature_set() if s.kind == "relative_spread")

    # Act / Assert
    with pytest.raises(UsageError, match="more than once"):
        BarFeatures([rsi, rsi], **FULL)
    with pytest.raises(UsageError, match="unknown kind 'nonexistent'"):
        BarFeatures([unknown], **FULL)
    with pytest.raises(UsageError, match="lacks parameter 'n'"):
        BarFeatures([no_param], **FULL)
    with pytest.raises(UsageError, match="n=0 must be at least 1"):
        BarFeatures([zero_window], **FULL)
    engine = BarFeatures([spread], **FULL)
    with pytest.raises(UsageError, match="lack column"):
        engine.push_frame(random_bars(5, seed=1).drop("spread"))
    local = random_bars(5, seed=1).with_columns(pl.col("ts").dt.convert_time_zone("Europe/Paris"))
    with pytest.raises(UsageError, match="UTC datetimes"):
        engine.push_frame(local)
    assert engine.count == 0


def test_an_empty_set_gives_empty_rows() -> None:
    # Arrange
    engine = BarFeatures([], has_spread=False, volume_kind=VolumeKind.NONE)

    # Act
    row = engine.push(ns_from_utc(START + MINUTE), 1.0, 1.0, 1.0, 1.0)

    # Assert
    assert engine.names == ()
    assert row.shape == (0,)
    assert engine.count == 1

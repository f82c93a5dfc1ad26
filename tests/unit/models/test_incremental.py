"""Signal streams: updates fed the new bars only equal ``signals()`` on all bars, bit for bit.

Every built-in strategy's ``incremental()`` and the fallback (``PrefixSignals``, for strategies
without one) are run over random walks with flat stretches (so averages tie exactly) under
random batch splits, and their concatenated outputs compared with one ``signals()`` call on
the whole series. The running indicators behind them are compared with the batch indicators,
NaN included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UsageError
from models.strategies.base import ParamSpec, Signals, SignalStream, Strategy
from models.strategies.donchian import DonchianBreakout, DonchianStream
from models.strategies.incremental import PrefixSignals, has_incremental, signal_stream
from models.strategies.indicators import (
    RunningCrossings,
    RunningPriorExtreme,
    RunningSma,
    RunningWilderRsi,
    crossings,
    prior_max,
    prior_min,
    sma,
    wilder_rsi,
)
from models.strategies.ml_model import MlModel, MlModelStream
from models.strategies.rsi_reversion import RsiReversion, RsiReversionStream
from models.strategies.sma_cross import SmaCross, SmaCrossStream

FIELDS = ("entries", "exits", "short_entries", "short_exits", "target")
START_NS = 1_704_186_000_000_000_000  # 2024-01-02 09:00 UTC
MINUTE_NS = 60_000_000_000
N_BARS = 3_000

Arrays = dict[str, np.ndarray]
Splits = list[tuple[int, int]]


# -- data --------------------------------------------------------------------------------------


def random_walk(n: int, seed: int, flat_share: float = 0.5) -> tuple[Arrays, Arrays]:
    """Return one-minute bars of a random walk (``flat_share`` of bars unchanged) as arrays,
    and a probability feature for them (5% NaN, some exactly on the default thresholds)."""
    rng = np.random.default_rng(seed)
    moves = np.where(rng.random(n) < flat_share, 0.0, rng.normal(0.0, 1e-4, n))
    close = np.round(1.1 + np.cumsum(moves), 5)
    open_ = np.concatenate(([1.1], close[:-1]))[:n]
    high = np.maximum(open_, close) + np.round(rng.uniform(0, 1e-4, n), 5)
    low = np.minimum(open_, close) - np.round(rng.uniform(0, 1e-4, n), 5)
    bars = {
        "ts": START_NS + MINUTE_NS * np.arange(n, dtype=np.int64),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": np.ones(n),
        "spread": np.full(n, 1e-5),
    }
    proba = rng.uniform(0.3, 0.7, n)
    proba[rng.random(n) < 0.05] = 0.55
    proba[rng.random(n) < 0.05] = 0.45
    proba[rng.random(n) < 0.05] = np.nan
    return bars, {"proba": proba}


def frame(arrays: Mapping[str, np.ndarray]) -> pl.DataFrame:
    """Return the arrays as the frame ``signals()`` reads (``ts`` a UTC datetime in µs)."""
    data = pl.DataFrame(dict(arrays))
    if "ts" not in data.columns:
        return data
    return data.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")).dt.cast_time_unit("us"))


def feature_frame(bars: Arrays, features: Arrays) -> pl.DataFrame:
    return frame({"ts": bars["ts"], **features})


def random_splits(n: int, seed: int, low: int = 1, high: int = 500, empty: float = 0.0) -> Splits:
    """Return consecutive ``(start, stop)`` batches of sizes low..high (``empty`` share of 0)."""
    rng = np.random.default_rng(seed)
    splits, start = [], 0
    while start < n:
        size = 0 if rng.random() < empty else int(rng.integers(low, high + 1))
        splits.append((start, min(n, start + size)))
        start += size
    return splits


def one_at_a_time(n: int) -> Splits:
    return [(i, i + 1) for i in range(n)]


def run_stream(
    stream: SignalStream, bars: Arrays, features: Arrays | None, splits: Splits
) -> dict[str, np.ndarray]:
    """Feed ``stream`` the batches and return its outputs concatenated, by signal field."""
    outputs: dict[str, list[np.ndarray]] = {}
    for start, stop in splits:
        new_bars = {name: values[start:stop] for name, values in bars.items()}
        new_features = (
            None
            if features is None
            else {name: values[start:stop] for name, values in features.items()}
        )
        signals = stream.update(new_bars, new_features)
        assert len(signals) == stop - start
        for name in FIELDS:
            values = getattr(signals, name)
            if values is not None:
                outputs.setdefault(name, []).append(values)
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def expected_signals(strategy: Strategy, bars: Arrays, features: Arrays) -> dict[str, np.ndarray]:
    signals = strategy.signals(frame(bars), feature_frame(bars, features))
    return {name: v for name in FIELDS if (v := getattr(signals, name)) is not None}


def mismatches(got: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> list[str]:
    """Return the fields whose presence, dtype or values differ."""
    bad = sorted(set(got) ^ set(expected))
    for name in sorted(set(got) & set(expected)):
        same_dtype = got[name].dtype == np.asarray(expected[name]).dtype
        if not (same_dtype and np.array_equal(got[name], expected[name], equal_nan=True)):
            bad.append(name)
    return bad


# -- the built-ins -----------------------------------------------------------------------------

BUILT_INS: dict[str, Callable[[], Strategy]] = {
    "sma_2_3": lambda: SmaCross(fast=2, slow=3),
    "sma_3_4_short": lambda: SmaCross(fast=3, slow=4, allow_short=True),
    "sma_5_20_short": lambda: SmaCross(fast=5, slow=20, allow_short=True),
    "sma_10_50": lambda: SmaCross(fast=10, slow=50),
    "sma_50_200_short": lambda: SmaCross(fast=50, slow=200, allow_short=True),
    "donchian_2_1": lambda: DonchianBreakout(entry_window=2, exit_window=1),
    "donchian_6_3_short": lambda: DonchianBreakout(entry_window=6, exit_window=3, allow_short=True),
    "donchian_5_5_short": lambda: DonchianBreakout(entry_window=5, exit_window=5, allow_short=True),
    "donchian_20_10_short": lambda: DonchianBreakout(
        entry_window=20, exit_window=10, allow_short=True
    ),
    "donchian_55_20": lambda: DonchianBreakout(entry_window=55, exit_window=20),
    "rsi_2_short": lambda: RsiReversion(window=2, allow_short=True),
    "rsi_5_short": lambda: RsiReversion(window=5, lower=35, upper=65, allow_short=True),
    "rsi_14": lambda: RsiReversion(window=14),
    "rsi_21_short": lambda: RsiReversion(
        window=21, lower=40, upper=60, exit_level=45, allow_short=True
    ),
    "rsi_150_short": lambda: RsiReversion(window=150, lower=45, upper=55, allow_short=True),
    "ml": lambda: MlModel(),
    "ml_short": lambda: MlModel(allow_short=True),
    "ml_hold": lambda: MlModel(hold_between=True),
    "ml_short_hold": lambda: MlModel(allow_short=True, hold_between=True),
    "ml_column_short_hold": lambda: MlModel.for_column("p_up")(
        upper=0.6, lower=0.4, allow_short=True, hold_between=True
    ),
}

SCHEMES: dict[str, Callable[[int], Splits]] = {
    "one_at_a_time": one_at_a_time,
    "random_1_to_500": lambda n: random_splits(n, seed=n + 1),
    "random_1_to_20_with_empty": lambda n: random_splits(n, seed=n + 2, high=20, empty=0.1),
    "whole": lambda n: [(0, n)],
}


def features_for(strategy: Strategy, features: Arrays) -> Arrays:
    return {name: features["proba"] for name in strategy.needs_features}


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("name", list(BUILT_INS))
def test_update_built_in_split_batches_equal_signals_on_all_bars(name: str, scheme: str) -> None:
    # Arrange
    strategy = BUILT_INS[name]()
    bars, proba = random_walk(N_BARS, seed=len(name))
    features = features_for(strategy, proba)
    expected = expected_signals(strategy, bars, features)
    assert any(np.any(values != 0) for values in expected.values())  # not a trivial series

    # Act
    assert has_incremental(strategy)
    got = run_stream(strategy.incremental(), bars, features or None, SCHEMES[scheme](N_BARS))

    # Assert
    assert mismatches(got, expected) == []


def test_random_walk_flat_stretches_make_averages_tie() -> None:
    # Arrange
    bars, _ = random_walk(N_BARS, seed=7)

    # Act
    ties = np.sum(sma(bars["close"], 3) == sma(bars["close"], 4))

    # Assert: the crossing detector sees equal averages, where exactness decides events
    assert ties > 10


@pytest.mark.parametrize(
    ("make", "stream_type"),
    [
        (lambda: SmaCross(), SmaCrossStream),
        (lambda: DonchianBreakout(), DonchianStream),
        (lambda: RsiReversion(), RsiReversionStream),
        (lambda: MlModel(), MlModelStream),
    ],
)
def test_signal_stream_built_in_uses_its_own_stream(
    make: Callable[[], Strategy], stream_type: type
) -> None:
    # Arrange
    strategy = make()

    # Act
    stream = signal_stream(strategy)

    # Assert
    assert has_incremental(strategy)
    assert isinstance(stream, stream_type)
    assert isinstance(stream, SignalStream)


@pytest.mark.parametrize("name", ["sma_3_4_short", "donchian_6_3_short", "rsi_5_short", "ml_hold"])
@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(0, 400),
    seed=st.integers(0, 2**32 - 1),
    flat_share=st.sampled_from([0.0, 0.5, 0.9]),
    sizes=st.lists(st.integers(0, 60), min_size=1, max_size=30),
)
def test_update_any_batch_sizes_equal_signals_on_all_bars(
    name: str, n: int, seed: int, flat_share: float, sizes: list[int]
) -> None:
    # Arrange: the drawn sizes repeat until the series is covered
    strategy = BUILT_INS[name]()
    bars, proba = random_walk(n, seed, flat_share)
    features = features_for(strategy, proba)
    splits, start, k = [], 0, 0
    while start < n:
        stop = min(n, start + sizes[k % len(sizes)] + (k // len(sizes)))
        splits.append((start, stop))
        start, k = stop, k + 1

    # Act
    got = run_stream(signal_stream(strategy), bars, features or None, [*splits, (n, n)])

    # Assert
    assert mismatches(got, expected_signals(strategy, bars, features)) == []


def test_signal_stream_each_call_fresh_and_independent() -> None:
    # Arrange
    strategy = SmaCross(fast=3, slow=8, allow_short=True)
    bars, _ = random_walk(500, seed=11)
    first, second = signal_stream(strategy), signal_stream(strategy)
    first.update({name: values[:300] for name, values in bars.items()})

    # Act: the second stream starts from the first bar although the first has run ahead
    got = run_stream(second, bars, None, random_splits(500, seed=3, high=50))

    # Assert
    assert first is not second
    assert mismatches(got, expected_signals(strategy, bars, {})) == []


def test_update_empty_batch_before_any_bar_returns_empty_events() -> None:
    # Arrange
    stream = signal_stream(DonchianBreakout(allow_short=True))
    empty = {name: values[:0] for name, values in random_walk(1, seed=0)[0].items()}

    # Act
    signals = stream.update(empty)

    # Assert
    assert len(signals) == 0
    assert signals.short_exits is not None
    assert signals.target is None


@pytest.mark.parametrize(
    ("strategy", "bars", "message"),
    [
        (SmaCross(), {"open": np.ones(2)}, "reads bar columns close; missing"),
        (DonchianBreakout(), {"high": np.ones(2), "close": np.ones(2)}, "missing.*low"),
        (RsiReversion(), {"ts": np.zeros(2, dtype=np.int64)}, "rsi_reversion reads bar"),
        (
            DonchianBreakout(),
            {"high": np.ones(2), "low": np.ones(3), "close": np.ones(2)},
            "differ in length",
        ),
    ],
)
def test_update_bars_missing_columns_raise_naming_them(
    strategy: Strategy, bars: Arrays, message: str
) -> None:
    # Arrange
    stream = signal_stream(strategy)

    # Act / Assert
    with pytest.raises(UsageError, match=message):
        stream.update(bars)


def test_update_ml_model_without_features_raises_naming_column() -> None:
    # Arrange
    stream = signal_stream(MlModel())

    # Act / Assert
    with pytest.raises(UsageError, match="reads the feature column 'proba'"):
        stream.update({"close": np.ones(2)}, None)


def test_update_ml_model_misaligned_features_raise() -> None:
    # Arrange
    stream = signal_stream(MlModel())

    # Act / Assert
    with pytest.raises(UsageError, match="1 feature rows for 2 new bars"):
        stream.update({"close": np.ones(2)}, {"proba": np.array([0.6])})


# -- the fallback ------------------------------------------------------------------------------


class SessionMomentum:
    """A user strategy without ``incremental()``: a target from a Polars expression and ts."""

    name: ClassVar[str] = "session_momentum"
    params: ClassVar[tuple[ParamSpec, ...]] = ()
    needs_features: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lookback: int = 5) -> None:
        self.lookback = lookback

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        change = pl.col("close") - pl.col("close").rolling_mean(self.lookback)
        hour = pl.col("ts").dt.hour()
        target = (
            pl.when(hour.is_between(8, 20))
            .then(pl.when(change > 0).then(1.0).when(change < 0).then(-1.0).otherwise(0.0))
            .otherwise(0.0)
        )
        values = bars.select(target.alias("target"))["target"].cast(pl.Float64).to_numpy()
        return Signals(target=values.copy())


class FeatureBreakout:
    """A user strategy without ``incremental()`` that reads a feature and gives events."""

    name: ClassVar[str] = "feature_breakout"
    params: ClassVar[tuple[ParamSpec, ...]] = ()
    needs_features: ClassVar[tuple[str, ...]] = ("proba",)

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        assert features is not None
        assert features["ts"].equals(bars["ts"])
        proba = features["proba"].fill_nan(None).forward_fill().fill_null(0.5).to_numpy()
        high = bars["close"].rolling_max(10).shift(1).to_numpy()
        return Signals(entries=(bars["close"].to_numpy() > high) & (proba > 0.5), exits=proba < 0.4)


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("make", [SessionMomentum, FeatureBreakout])
def test_prefix_signals_user_strategy_split_batches_equal_signals(
    make: Callable[[], Strategy], scheme: str
) -> None:
    # Arrange
    strategy = make()
    bars, proba = random_walk(600, seed=5)
    features = features_for(strategy, proba)
    expected = expected_signals(strategy, bars, features)
    assert any(np.any(values != 0) for values in expected.values())

    # Act
    stream = signal_stream(strategy)
    got = run_stream(stream, bars, features or None, SCHEMES[scheme](600))

    # Assert
    assert not has_incremental(strategy)
    assert isinstance(stream, PrefixSignals)
    assert mismatches(got, expected) == []


@pytest.mark.parametrize("name", ["sma_5_20_short", "donchian_20_10_short", "rsi_14", "ml_hold"])
def test_prefix_signals_built_in_equals_its_own_stream(name: str) -> None:
    # Arrange
    strategy = BUILT_INS[name]()
    bars, proba = random_walk(800, seed=21)
    features = features_for(strategy, proba) or None
    splits = random_splits(800, seed=4, high=100)

    # Act
    fallback = run_stream(PrefixSignals(strategy), bars, features, splits)
    own = run_stream(signal_stream(strategy), bars, features, splits)

    # Assert
    assert mismatches(fallback, own) == []


def test_prefix_signals_empty_batch_returns_empty_of_same_kind() -> None:
    # Arrange
    stream = PrefixSignals(SessionMomentum())
    bars, _ = random_walk(10, seed=1)
    stream.update(bars)

    # Act
    signals = stream.update({name: values[:0] for name, values in bars.items()})

    # Assert
    assert signals.target is not None
    assert signals.target.shape == (0,)
    assert signals.entries is None


def test_prefix_signals_changed_columns_refused_and_stream_unchanged() -> None:
    # Arrange
    stream = PrefixSignals(SessionMomentum())
    bars, _ = random_walk(20, seed=2)
    stream.update({name: values[:10] for name, values in bars.items()})

    # Act
    with pytest.raises(UsageError, match="differ from the first update's"):
        stream.update({"ts": bars["ts"][10:], "close": bars["close"][10:]})
    tail = stream.update({name: values[10:] for name, values in bars.items()})

    # Assert
    assert len(stream) == 20
    expected = expected_signals(SessionMomentum(), bars, {})["target"][10:]
    assert np.array_equal(tail.target, expected, equal_nan=True)  # type: ignore[arg-type]


def test_prefix_signals_features_on_some_updates_only_refused() -> None:
    # Arrange
    stream = PrefixSignals(FeatureBreakout())
    bars, proba = random_walk(20, seed=2)
    stream.update(
        {name: values[:10] for name, values in bars.items()}, {"proba": proba["proba"][:10]}
    )

    # Act / Assert
    with pytest.raises(UsageError, match="features were given with the earlier bars"):
        stream.update({name: values[10:] for name, values in bars.items()}, None)


def test_prefix_signals_wrong_signal_length_raises_naming_strategy() -> None:
    # Arrange
    class Short(SessionMomentum):
        name: ClassVar[str] = "short_by_one"

        def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
            return Signals(target=np.zeros(max(bars.height - 1, 0)))

    stream = PrefixSignals(Short())
    bars, _ = random_walk(5, seed=2)

    # Act / Assert
    with pytest.raises(UsageError, match="short_by_one: signals\\(\\) returned 4 rows for 5"):
        stream.update(bars)


def test_signal_stream_incremental_without_update_raises() -> None:
    # Arrange
    class Broken(SessionMomentum):
        name: ClassVar[str] = "broken_stream"

        def incremental(self) -> object:
            return object()

    # Act / Assert
    with pytest.raises(UsageError, match="broken_stream: incremental\\(\\) returned object"):
        signal_stream(Broken())


# -- the running indicators --------------------------------------------------------------------


def holed_walk(n: int, seed: int, nan_share: float) -> np.ndarray:
    values, _ = random_walk(n, seed)
    close = values["close"].copy()
    close[np.random.default_rng(seed).random(n) < nan_share] = np.nan
    return close


def run_batches(
    update: Callable[[np.ndarray], np.ndarray], x: np.ndarray, splits: Splits
) -> Sequence[np.ndarray]:
    return [update(x[start:stop]) for start, stop in splits] + [update(x[:0])]


@pytest.mark.parametrize("window", [1, 2, 3, 7, 50, 129])
@pytest.mark.parametrize("nan_share", [0.0, 0.01])
def test_running_sma_equals_sma(window: int, nan_share: float) -> None:
    # Arrange
    x = holed_walk(1500, seed=window, nan_share=nan_share)

    # Act
    got = np.concatenate(run_batches(RunningSma(window).update, x, random_splits(1500, 8, high=40)))

    # Assert
    assert np.array_equal(got, sma(x, window), equal_nan=True)


@pytest.mark.parametrize("window", [1, 2, 5, 20, 130])
@pytest.mark.parametrize("highest", [True, False])
@pytest.mark.parametrize("nan_share", [0.0, 0.01])
def test_running_prior_extreme_equals_prior_max_and_min(
    window: int, highest: bool, nan_share: float
) -> None:
    # Arrange
    x = holed_walk(1500, seed=window, nan_share=nan_share)
    expected = prior_max(x, window) if highest else prior_min(x, window)

    # Act
    running = RunningPriorExtreme(window, highest=highest)
    got = np.concatenate(run_batches(running.update, x, random_splits(1500, 9, high=40)))

    # Assert
    assert np.array_equal(got, expected, equal_nan=True)


@pytest.mark.parametrize("window", [1, 2, 14, 127, 128, 129, 200])
@pytest.mark.parametrize("nan_share", [0.0, 0.002])
def test_running_wilder_rsi_equals_wilder_rsi(window: int, nan_share: float) -> None:
    # Arrange: windows around 128 cross NumPy's pairwise-summation block of the seed mean
    x = holed_walk(1500, seed=window, nan_share=nan_share)

    # Act
    running = RunningWilderRsi(window)
    got = np.concatenate(run_batches(running.update, x, random_splits(1500, 10, high=40)))

    # Assert
    assert np.array_equal(got, wilder_rsi(x, window), equal_nan=True)


@pytest.mark.parametrize("nan_share", [0.0, 0.01])
def test_running_crossings_equal_crossings(nan_share: float) -> None:
    # Arrange: averages of a walk with flat stretches tie often
    x = holed_walk(2000, seed=4, nan_share=nan_share)
    fast, slow = sma(x, 3), sma(x, 4)
    splits = random_splits(2000, 12, high=40)
    running = RunningCrossings()

    # Act
    parts = [running.update(fast[a:b], slow[a:b]) for a, b in splits]

    # Assert
    up, down = crossings(fast, slow)
    assert np.array_equal(np.concatenate([p[0] for p in parts]), up)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), down)
    assert up.any() and down.any()


@pytest.mark.parametrize(
    "make",
    [
        lambda: RunningSma(0),
        lambda: RunningPriorExtreme(0, highest=True),
        lambda: RunningWilderRsi(0),
    ],
)
def test_running_indicator_window_below_one_raises(make: Callable[[], object]) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="must be at least 1"):
        make()

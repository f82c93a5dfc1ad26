"""sma_cross: crossing bars of the two averages, shorts, the sweep path and its cache."""

from __future__ import annotations

import numpy as np
import pytest
from testkit.files import close_bars

from core.errors import UsageError
from models.strategies.indicators import IndicatorCache
from models.strategies.sma_cross import SmaCross

# sma2 vs sma3: equal at bar 2, above at 3-6 (never below before: no entry), below at 7-9,
# equal at 10, above again at 11 (below → equal → above: an entry).
CLOSES = [1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 2.0]


def indices(mask: np.ndarray | None) -> list[int]:
    assert mask is not None
    return np.flatnonzero(mask).tolist()


def test_signals_long_only_entries_and_exits_at_crossing_bars() -> None:
    # Arrange
    strategy = SmaCross(fast=2, slow=3)

    # Act
    signals = strategy.signals(close_bars(CLOSES))

    # Assert
    assert indices(signals.entries) == [11]
    assert indices(signals.exits) == [7]
    assert signals.short_entries is None
    assert signals.short_exits is None
    assert len(signals) == len(CLOSES)


def test_signals_allow_short_mirrors_crossings() -> None:
    # Arrange
    strategy = SmaCross(fast=2, slow=3, allow_short=True)

    # Act
    signals = strategy.signals(close_bars(CLOSES))

    # Assert
    assert indices(signals.short_entries) == [7]
    assert indices(signals.short_exits) == [11]


def test_signals_no_crossing_during_warm_up() -> None:
    # Arrange: the slow average exists from bar 4 on
    closes = [5.0, 1.0, 9.0, 1.0, 2.0, 3.0, 4.0]

    # Act
    signals = SmaCross(fast=2, slow=5).signals(close_bars(closes))

    # Assert
    assert not np.asarray(signals.entries)[:4].any()
    assert not np.asarray(signals.exits)[:4].any()


def test_signal_arrays_equal_signals_on_bars() -> None:
    # Arrange
    rng = np.random.default_rng(1)
    closes = np.round(1.1 + np.cumsum(rng.normal(0, 1e-4, 500)), 4)
    strategy = SmaCross(fast=4, slow=9, allow_short=True)

    # Act
    from_bars = strategy.signals(close_bars(closes.tolist()))
    from_arrays = SmaCross.signal_arrays(closes, 4, 9, allow_short=True)

    # Assert
    assert np.asarray(from_bars.entries).any()
    for field in ("entries", "exits", "short_entries", "short_exits"):
        assert np.array_equal(getattr(from_bars, field), getattr(from_arrays, field))


def test_signals_from_context_reuses_each_average() -> None:
    # Arrange
    bars = close_bars(CLOSES * 5)
    context = SmaCross.sweep_context(bars)
    pairs = [(2, 3), (2, 5), (3, 5), (2, 3)]

    # Act
    results = [SmaCross(fast=f, slow=s).signals_from(context) for f, s in pairs]

    # Assert
    assert context.cache.computed == 3
    for (fast, slow), signals in zip(pairs, results, strict=True):
        direct = SmaCross(fast=fast, slow=slow).signals(bars)
        assert np.array_equal(np.asarray(signals.entries), np.asarray(direct.entries))
        assert np.array_equal(np.asarray(signals.exits), np.asarray(direct.exits))


def test_signal_arrays_shared_cache_holds_windows() -> None:
    # Arrange
    cache = IndicatorCache()
    closes = np.array(CLOSES)

    # Act
    SmaCross.signal_arrays(closes, 2, 3, cache=cache)

    # Assert
    assert ("sma", 2) in cache
    assert ("sma", 3) in cache


def test_constructor_fast_not_below_slow_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="fast=50 must be below slow=50"):
        SmaCross(fast=50, slow=50)


def test_signals_without_close_column_raises() -> None:
    # Arrange
    bars = close_bars(CLOSES).drop("close")

    # Act / Assert
    with pytest.raises(UsageError, match="sma_cross reads bar columns close; missing: close"):
        SmaCross().signals(bars)

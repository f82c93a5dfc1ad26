"""rsi_reversion: entries as the RSI climbs out of oversold, exits at the middle level."""

from __future__ import annotations

import numpy as np
import pytest
from testkit.files import close_bars

from core.errors import UsageError
from models.strategies.rsi_reversion import RsiReversion

# Moves -1 -1 -1 +1 +1 +1 +1 -1; with window 2 the RSI from bar 2 is
# 0, 0, 50, 75, 87.5, 93.75, 46.875.
CLOSES = [10.0, 9.0, 8.0, 7.0, 8.0, 9.0, 10.0, 11.0, 10.0]


def indices(mask: np.ndarray | None) -> list[int]:
    assert mask is not None
    return np.flatnonzero(mask).tolist()


def test_signals_long_entry_crossing_up_through_lower_and_exit_at_level() -> None:
    # Arrange
    strategy = RsiReversion(window=2, lower=30, upper=70, exit_level=60)

    # Act
    signals = strategy.signals(close_bars(CLOSES))

    # Assert: 0 → 50 crosses 30 at bar 4; 75 >= 60 from bar 5 on, until bar 8
    assert indices(signals.entries) == [4]
    assert indices(signals.exits) == [5, 6, 7]
    assert signals.short_entries is None


def test_signals_allow_short_entry_falling_back_through_upper() -> None:
    # Arrange
    strategy = RsiReversion(window=2, lower=30, upper=70, exit_level=60, allow_short=True)

    # Act
    signals = strategy.signals(close_bars(CLOSES))

    # Assert: 93.75 → 46.875 falls through 70 at bar 8; RSI <= 60 at bars 2, 3, 4, 8
    assert indices(signals.short_entries) == [8]
    assert indices(signals.short_exits) == [2, 3, 4, 8]


def test_signals_landing_exactly_on_lower_is_a_crossing() -> None:
    # Arrange: RSI 0 then 50 with lower = 50
    strategy = RsiReversion(window=2, lower=50, upper=70, exit_level=60)

    # Act
    signals = strategy.signals(close_bars(CLOSES))

    # Assert
    assert indices(signals.entries) == [4]


def test_signals_from_context_reuses_rsi_per_window() -> None:
    # Arrange
    rng = np.random.default_rng(2)
    bars = close_bars((100 + np.cumsum(rng.normal(size=300))).tolist())
    context = RsiReversion.sweep_context(bars)
    levels = [(20.0, 80.0), (30.0, 70.0), (25.0, 75.0)]

    # Act
    swept = [RsiReversion(lower=lo, upper=up).signals_from(context) for lo, up in levels]

    # Assert
    assert context.cache.computed == 1
    for (lower, upper), signals in zip(levels, swept, strict=True):
        direct = RsiReversion(lower=lower, upper=upper).signals(bars)
        assert np.array_equal(np.asarray(signals.entries), np.asarray(direct.entries))


@pytest.mark.parametrize(
    ("lower", "exit_level", "upper"), [(50.0, 50.0, 70.0), (30.0, 70.0, 70.0), (40, 35, 70)]
)
def test_constructor_unordered_levels_raise(lower: float, exit_level: float, upper: float) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"lower=.* < exit_level=.* < upper="):
        RsiReversion(lower=lower, exit_level=exit_level, upper=upper)

"""donchian_breakout: breakouts of the channel of the previous bars, shorts, the sweep path."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from testkit.files import ohlc_bars

from core.errors import UsageError
from models.strategies.donchian import DonchianBreakout

# close c, high c + 0.5, low c - 0.5. With entry_window 3 and exit_window 2:
# bar 4 closes at 12 above the highest high of bars 1-3 (11.5): long entry;
# bar 6 closes at 9 below the lowest low of bars 4-5 (10.5): exit; bar 8 (8 < 8.5) again.
CLOSES = [10.0, 11.0, 10.0, 10.8, 12.0, 11.0, 9.0, 9.5, 8.0]


def channel_bars(closes: list[float]) -> pl.DataFrame:
    return ohlc_bars([(c, c + 0.5, c - 0.5, c) for c in closes])


def indices(mask: np.ndarray | None) -> list[int]:
    assert mask is not None
    return np.flatnonzero(mask).tolist()


def test_signals_long_breakouts_at_hand_computed_bars() -> None:
    # Arrange
    strategy = DonchianBreakout(entry_window=3, exit_window=2)

    # Act
    signals = strategy.signals(channel_bars(CLOSES))

    # Assert
    assert indices(signals.entries) == [4]
    assert indices(signals.exits) == [6, 8]
    assert signals.short_entries is None


def test_signals_allow_short_breaks_below_lowest_low() -> None:
    # Arrange: bar 6 (9 < 10.3 = lowest low of bars 3-5), bar 8 (8 < 8.5); short exit at
    # bar 4 (12 > 11.3 = highest high of bars 2-3)
    strategy = DonchianBreakout(entry_window=3, exit_window=2, allow_short=True)

    # Act
    signals = strategy.signals(channel_bars(CLOSES))

    # Assert
    assert indices(signals.short_entries) == [6, 8]
    assert indices(signals.short_exits) == [4]


def test_signals_close_at_its_own_high_still_breaks_prior_channel() -> None:
    # Arrange: the current bar's high is not part of its channel
    closes = [1.0, 1.0, 1.0, 2.0]
    bars = ohlc_bars([(c, c, c, c) for c in closes])

    # Act
    signals = DonchianBreakout(entry_window=3, exit_window=1).signals(bars)

    # Assert
    assert indices(signals.entries) == [3]


def test_signals_equal_to_channel_is_no_breakout() -> None:
    # Arrange
    bars = ohlc_bars([(1.0, 2.0, 1.0, 1.5), (1.5, 2.0, 1.0, 2.0), (1.5, 2.0, 1.0, 1.0)])

    # Act
    signals = DonchianBreakout(entry_window=1, exit_window=1).signals(bars)

    # Assert
    assert indices(signals.entries) == []
    assert indices(signals.exits) == []


def test_signals_from_context_equal_direct_and_cache_channels() -> None:
    # Arrange
    rng = np.random.default_rng(4)
    closes = (100 + np.cumsum(rng.normal(size=400))).tolist()
    bars = channel_bars(closes)
    context = DonchianBreakout.sweep_context(bars)
    windows = [(20, 10), (20, 5), (30, 10)]

    # Act
    swept = [
        DonchianBreakout(entry_window=e, exit_window=x, allow_short=True).signals_from(context)
        for e, x in windows
    ]

    # Assert: highs and lows of windows 5, 10, 20 and 30, each computed once
    assert context.cache.computed == 8
    for (entry, exit_), signals in zip(windows, swept, strict=True):
        direct = DonchianBreakout(entry_window=entry, exit_window=exit_, allow_short=True)
        expected = direct.signals(bars)
        for field in ("entries", "exits", "short_entries", "short_exits"):
            assert np.array_equal(getattr(signals, field), getattr(expected, field))


def test_signals_missing_high_low_raises() -> None:
    # Arrange
    bars = channel_bars(CLOSES).drop("high", "low")

    # Act / Assert
    with pytest.raises(UsageError, match="missing: high, low"):
        DonchianBreakout().signals(bars)

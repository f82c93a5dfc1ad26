"""Point in time: a strategy's signals on the first k bars equal its first k signals on all bars.

A deliberately leaky strategy (it buys when the next close is higher) proves the check
catches a leak.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.files import ohlc_bars

from models.strategies.base import ParamSpec, Signals, Strategy
from models.strategies.donchian import DonchianBreakout
from models.strategies.ml_model import MlModel
from models.strategies.rsi_reversion import RsiReversion
from models.strategies.sma_cross import SmaCross

FIELDS = ("entries", "exits", "short_entries", "short_exits", "target")


class NextBarPeek:
    """Leaky on purpose: enters when the next close is higher."""

    name: ClassVar[str] = "next_bar_peek"
    params: ClassVar[tuple[ParamSpec, ...]] = ()
    needs_features: ClassVar[tuple[str, ...]] = ()

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        close = bars["close"].to_numpy()
        ahead = np.append(close[1:], np.nan)
        return Signals(entries=ahead > close, exits=ahead < close)


STRATEGIES: dict[str, Strategy] = {
    "sma_cross": SmaCross(fast=3, slow=8, allow_short=True),
    "donchian_breakout": DonchianBreakout(entry_window=6, exit_window=3, allow_short=True),
    "rsi_reversion": RsiReversion(window=5, lower=35, upper=65, allow_short=True),
    "ml_model": MlModel(allow_short=True, hold_between=True),
}


def random_frames(n: int, seed: int, flat_share: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return bars of a random walk (some bars flat) and a probability column aligned to them."""
    rng = np.random.default_rng(seed)
    moves = np.where(rng.random(n) < flat_share, 0.0, rng.normal(0.0, 1e-4, n))
    close = np.round(1.1 + np.cumsum(moves), 5)
    open_ = np.concatenate(([1.1], close[:-1]))
    high = np.maximum(open_, close) + np.round(rng.uniform(0, 1e-4, n), 5)
    low = np.minimum(open_, close) - np.round(rng.uniform(0, 1e-4, n), 5)
    bars = ohlc_bars(list(zip(open_, high, low, close, strict=True)))
    proba = np.where(rng.random(n) < 0.05, np.nan, rng.uniform(0.3, 0.7, n))
    return bars, bars.select("ts").with_columns(pl.Series("proba", proba))


def point_in_time_mismatches(
    strategy: Strategy, bars: pl.DataFrame, features: pl.DataFrame, cut: int
) -> list[str]:
    """Return the signal arrays whose values on the first ``cut`` bars differ from the full run."""
    full = strategy.signals(bars, features)
    part = strategy.signals(bars.head(cut), features.head(cut))
    bad = []
    for field in FIELDS:
        whole, head = getattr(full, field), getattr(part, field)
        if whole is None or head is None:
            same = whole is None and head is None
        else:
            same = np.array_equal(whole[:cut], head, equal_nan=True)
        if not same:
            bad.append(field)
    return bad


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 200),
    seed=st.integers(0, 2**32 - 1),
    flat_share=st.sampled_from([0.0, 0.5, 0.9]),
    cut_share=st.floats(0.0, 1.0),
)
def test_signals_on_first_bars_equal_first_signals_on_all(
    name: str, n: int, seed: int, flat_share: float, cut_share: float
) -> None:
    # Arrange
    bars, features = random_frames(n, seed, flat_share)
    cut = max(1, round(cut_share * n))

    # Act
    mismatches = point_in_time_mismatches(STRATEGIES[name], bars, features, cut)

    # Assert
    assert mismatches == []


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_signals_every_cut_of_a_series_point_in_time(name: str) -> None:
    # Arrange
    bars, features = random_frames(120, seed=17, flat_share=0.5)

    # Act
    bad_cuts = [
        cut
        for cut in range(1, 121)
        if point_in_time_mismatches(STRATEGIES[name], bars, features, cut)
    ]

    # Assert
    assert bad_cuts == []


def test_point_in_time_check_catches_leaky_strategy() -> None:
    # Arrange
    bars, features = random_frames(60, seed=3, flat_share=0.0)

    # Act
    mismatches = point_in_time_mismatches(NextBarPeek(), bars, features, 30)

    # Assert: the last bar of the cut cannot see the next close, so entries or exits differ
    assert mismatches in (["entries"], ["exits"])

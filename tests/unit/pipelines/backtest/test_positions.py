"""Directions from signals agree with the positions the engine takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UsageError
from core.instruments import fx_pair
from models.strategies.base import Signals
from pipelines.backtest.config import BacktestConfig
from pipelines.backtest.engine import run_backtest
from pipelines.backtest.positions import signal_directions, traded_notional

N = 60


def _bars(n: int) -> pl.DataFrame:
    close = 1.1 + 0.001 * np.sin(np.arange(n) / 3.0)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    ts = pl.datetime_range(start, start + timedelta(hours=n - 1), "1h", eager=True)
    return pl.DataFrame({"ts": ts, "open": close, "high": close + 0.0005,
                         "low": close - 0.0005, "close": close})  # fmt: skip


def test_signal_directions_events_hand_made_sequence() -> None:
    entries = np.array([0, 1, 0, 0, 0, 0, 1, 1], dtype=bool)
    exits = np.array([0, 0, 0, 1, 0, 0, 0, 1], dtype=bool)
    short_entries = np.array([0, 0, 1, 0, 1, 0, 0, 0], dtype=bool)
    short_exits = np.zeros(8, dtype=bool)
    signals = Signals(entries=entries, exits=exits, short_entries=short_entries,
                      short_exits=short_exits)  # fmt: skip

    both = signal_directions(signals, 8, "both")
    long_only = signal_directions(signals, 8, "long")

    assert both.tolist() == [0, 1, -1, -1, -1, -1, 1, 1]
    assert long_only.tolist() == [0, 1, 1, 0, 0, 0, 1, 1]


def test_signal_directions_target_sign_and_nan_kept() -> None:
    target = np.array([np.nan, 0.5, -0.2, 0.0, np.nan])

    out = signal_directions(Signals(target=target), 5, "long")

    assert np.isnan(out[0]) and np.isnan(out[4])
    assert out[1:4].tolist() == [1.0, 0.0, 0.0]


def test_signal_directions_length_mismatch_raises() -> None:
    with pytest.raises(UsageError, match="entries has 3 values for 4 bars"):
        signal_directions(Signals(entries=np.zeros(3, dtype=bool)), 4)
    with pytest.raises(UsageError, match="direction 'up'"):
        signal_directions(Signals(target=np.zeros(4)), 4, "up")


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    direction=st.sampled_from(["both", "long", "short"]),
)
def test_signal_directions_random_events_match_engine_position_sign(
    seed: int, direction: str
) -> None:
    rng = np.random.default_rng(seed)
    flags = [rng.random(N) < 0.15 for _ in range(4)]
    signals = Signals(entries=flags[0], exits=flags[1], short_entries=flags[2],
                      short_exits=flags[3])  # fmt: skip
    config = BacktestConfig(direction=direction)  # type: ignore[arg-type]

    result = run_backtest(_bars(N), signals, fx_pair("EUR", "USD"), config, bars_per_year=6240.0)
    wanted = signal_directions(signals, N, direction)

    assert wanted.tolist() == np.sign(result.position).tolist()


def test_traded_notional_changes_times_close_and_rate() -> None:
    position = np.array([0.0, 2.0, 2.0, -1.0, 0.0])
    close = np.array([1.0, 1.5, 2.0, 2.5, 3.0])

    scalar = traded_notional(position, close, 2.0)
    per_bar = traded_notional(position, close, np.array([1.0, 1.0, 1.0, 0.5, 0.5]))

    assert scalar.tolist() == [0.0, 6.0, 0.0, 15.0, 6.0]
    assert per_bar.tolist() == [0.0, 3.0, 0.0, 3.75, 1.5]

"""The leakage audit: its controls destroy any edge, its verdict catches a leaky feature."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.evaluate.audit import (
    block_shuffled_labels,
    control_verdict,
    leakage_audit,
    random_walk_bars,
)
from pipelines.evaluate.dataset import ResearchData
from pipelines.evaluate.walkforward import run_walk_forward
from pipelines.train.config import SplitConfig, StatsConfig, TuningConfig, WalkForwardConfig

from ._research import dataset, frame, leaky, momentum_bars, recipe, trade

CONFIG = WalkForwardConfig(
    model="logistic",
    split=SplitConfig(folds=3),
    tuning=TuningConfig(trials=2, inner_folds=2),
    stats=StatsConfig(n_boot=200, candidates=()),
    threads=1,
)


def test_block_shuffled_labels_moves_targets_in_blocks_and_keeps_the_rest() -> None:
    # Arrange
    data = dataset(momentum_bars(1000, seed=1))

    # Act
    shuffled = block_shuffled_labels(data, block=50, seed=3)

    # Assert
    assert sorted(shuffled.returns.tolist()) == sorted(data.returns.tolist())
    assert not np.array_equal(shuffled.returns, data.returns)
    np.testing.assert_array_equal(shuffled.X, data.X)
    np.testing.assert_array_equal(shuffled.ts, data.ts)
    np.testing.assert_array_equal(shuffled.label_end, data.label_end)
    np.testing.assert_array_equal(shuffled.y, (shuffled.returns > 0).astype(np.int64))
    # Inside a block the order is kept: consecutive differences survive in runs of 50.
    same = np.isin(shuffled.returns[:50], data.returns)
    assert same.all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(3, 400))
def test_random_walk_bars_same_moves_in_another_order_ohlc_consistent(seed: int, n: int) -> None:
    # Arrange
    bars = momentum_bars(n, seed=seed % 1000, phi=0.2)

    # Act
    walk = random_walk_bars(bars, seed=seed)

    # Assert
    assert walk.columns == bars.columns
    assert walk.schema == bars.schema
    assert walk["ts"].equals(bars["ts"])
    moves = np.diff(np.log(bars["close"].to_numpy()))
    new_moves = np.diff(np.log(walk["close"].to_numpy()))
    np.testing.assert_allclose(np.sort(new_moves), np.sort(moves), atol=1e-12)
    top = np.maximum(walk["open"].to_numpy(), walk["close"].to_numpy())
    bottom = np.minimum(walk["open"].to_numpy(), walk["close"].to_numpy())
    assert (walk["high"].to_numpy() >= top * (1 - 1e-12)).all()
    assert (walk["low"].to_numpy() <= bottom * (1 + 1e-12)).all()


def test_random_walk_bars_removes_momentum() -> None:
    # Arrange
    bars = momentum_bars(20_000, seed=2, phi=0.4)

    # Act
    walk = random_walk_bars(bars, seed=0)

    # Assert: lag-1 autocorrelation of the moves drops from about 0.4 to about 0.
    def lag1(frame: pl.DataFrame) -> float:
        r = np.diff(np.log(frame["close"].to_numpy()))
        return float(np.corrcoef(r[:-1], r[1:])[0, 1])

    assert lag1(bars) > 0.35
    assert abs(lag1(walk)) < 0.03


def test_control_verdict_no_trades_passes_and_a_clear_edge_fails() -> None:
    # Arrange
    rng = np.random.default_rng(0)
    flat = np.zeros(2000)
    edge = rng.normal(5e-4, 1e-3, 2000)

    # Act
    none = control_verdict("c", flat, flat, bars_per_year=6240, n_boot=200, seed=0)
    found = control_verdict("c", edge, edge, bars_per_year=6240, n_boot=200, seed=0)

    # Assert
    assert none.passed
    assert not found.passed
    assert found.gross_ci[0] > 0.0
    assert "excludes 0" in found.reason


def _runner(config: WalkForwardConfig):  # type: ignore[no-untyped-def]
    def run(name: str, data: ResearchData) -> tuple[np.ndarray, np.ndarray]:
        result = run_walk_forward(data, config, trade(spread_pips=0.2), embargo=2,
                                  final_model=False)  # fmt: skip
        return result.gross_returns, result.oos_returns

    return run


def _audit(extra: object = None) -> object:
    bars = momentum_bars(3000, seed=7, phi=0.0)
    data = dataset(bars, extra)  # type: ignore[arg-type]
    walk_bars = random_walk_bars(bars, seed=0)
    walk = recipe(extra).table(frame(walk_bars))  # type: ignore[arg-type]
    from pipelines.evaluate.dataset import research_data

    return leakage_audit(
        block_shuffled_labels(data, block=50, seed=0),
        research_data(walk, walk_bars),
        _runner(CONFIG),
        bars_per_year=6240,
        n_boot=200,
        seed=0,
    )


@pytest.mark.slow
def test_leakage_audit_honest_pipeline_passes_both_controls() -> None:
    # Act
    audit = _audit()

    # Assert
    assert audit.passed  # type: ignore[attr-defined]
    assert [c.name for c in audit.controls] == ["shuffled_labels", "random_walk"]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_leakage_audit_leaky_feature_fails_on_the_random_walk() -> None:
    # Act
    audit = _audit(leaky)

    # Assert
    assert not audit.passed  # type: ignore[attr-defined]
    walk = next(c for c in audit.controls if c.name == "random_walk")  # type: ignore[attr-defined]
    assert not walk.passed
    assert walk.gross_ci[0] > 0.0

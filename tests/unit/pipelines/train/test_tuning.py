"""Tuning inside a training window: search spaces, trial records, the final fit."""

from __future__ import annotations

import pickle

import lightgbm
import numpy as np
import optuna
import pytest

from core.errors import UsageError
from models.learners.base import Dist
from pipelines.train.config import RegimeConfig, TuningConfig, WalkForwardConfig
from pipelines.train.tuning import (
    TrainedModel,
    build_learner,
    fit_window,
    inner_splits,
    rule_targets,
    strategy_returns,
    suggest,
    tune_window,
)
from tests.unit.pipelines.evaluate._research import dataset, momentum_bars, trade

LGB = WalkForwardConfig(
    model="lightgbm",
    params={"num_boost_round": 80, "early_stopping_rounds": 10},
    tuning=TuningConfig(trials=4, inner_folds=3),
    threads=1,
)


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return dataset(momentum_bars(2500, seed=4, phi=0.3))


def test_suggest_draws_every_kind_inside_its_range() -> None:
    # Arrange
    space = {
        "a": Dist("int", 2, 9),
        "b": Dist("float", 1e-3, 1.0, log=True),
        "c": Dist("categorical", choices=("x", "y")),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))

    # Act
    values = [suggest(study.ask(), space) for _ in range(30)]

    # Assert
    assert all(2 <= v["a"] <= 9 and isinstance(v["a"], int) for v in values)
    assert all(1e-3 <= v["b"] <= 1.0 for v in values)
    assert {v["c"] for v in values} == {"x", "y"}


def test_tune_window_records_each_completed_trial_over_the_whole_window(data) -> None:  # type: ignore[no-untyped-def]
    # Arrange
    rows = np.arange(data.n, dtype=np.int64)
    config = LGB.model_copy(update={"tuning": TuningConfig(trials=4, pruning=False)})

    # Act
    outcome = tune_window(data, rows, config, trade(), study_name="t", storage=None,
                          n_trials=4, embargo=1, seed=0)  # fmt: skip

    # Assert
    assert outcome.n_trials == 4
    assert len(outcome.trial_returns) == 4
    inner = inner_splits(data, rows, config, 1)
    assert sum(s.test.shape[0] for s in inner) == rows.shape[0]
    assert all(r.shape == (rows.shape[0],) for r in outcome.trial_returns.values())
    assert set(outcome.best_params) == {
        "learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction",
        "bagging_fraction", "lambda_l1", "lambda_l2",
    } - set(config.params)  # fmt: skip
    assert np.isfinite(outcome.best_value)


def test_tune_window_lightgbm_bins_the_window_once_for_all_trials(
    data,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    # Arrange
    calls = []
    original = lightgbm.Dataset._lazy_init

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(lightgbm.Dataset, "_lazy_init", counting)
    rows = np.arange(data.n, dtype=np.int64)
    config = LGB.model_copy(update={"tuning": TuningConfig(trials=5, pruning=False)})

    # Act
    tune_window(data, rows, config, trade(), study_name="t", storage=None, n_trials=5,
                embargo=1, seed=0)  # fmt: skip

    # Assert: one binning of raw features for the window, none per trial or inner fold.
    assert len(calls) == 1


def test_tune_window_sharpe_objective_maximizes(data) -> None:  # type: ignore[no-untyped-def]
    # Arrange
    rows = np.arange(data.n, dtype=np.int64)
    config = LGB.model_copy(update={"tuning": TuningConfig(trials=3, objective="sharpe")})

    # Act
    outcome = tune_window(data, rows, config, trade(), study_name="s", storage=None,
                          n_trials=3, embargo=1, seed=0)  # fmt: skip

    # Assert
    assert outcome.best_value == pytest.approx(max(outcome.trial_sharpes.values()))


def test_fit_window_lightgbm_stops_early_on_the_purged_tail(data) -> None:  # type: ignore[no-untyped-def]
    # Arrange
    config = LGB.model_copy(update={"params": {"num_boost_round": 400, "early_stopping_rounds": 5}})
    rows = np.arange(data.n, dtype=np.int64)

    # Act
    learner = fit_window(data, rows, config, {"learning_rate": 0.2}, embargo=1, seed=0)

    # Assert
    assert 0 < learner.best_iteration < 400  # type: ignore[attr-defined]


def test_trained_model_pickles_and_predicts_the_same(data) -> None:  # type: ignore[no-untyped-def]
    # Arrange
    rows = np.arange(data.n, dtype=np.int64)
    learner = fit_window(data, rows, LGB, {}, embargo=1, seed=0)
    model = TrainedModel(learner, data.feature_names, LGB.rule, "lightgbm", {})

    # Act
    again = pickle.loads(pickle.dumps(model))

    # Assert
    np.testing.assert_array_equal(
        again.predict_proba(data.X[:50]), model.predict_proba(data.X[:50])
    )
    assert again.feature_names == data.feature_names


def test_strategy_returns_follow_the_rule_and_costs(data) -> None:  # type: ignore[no-untyped-def]
    # Arrange
    rows = np.arange(200, 400, dtype=np.int64)
    always_long = np.ones(rows.shape[0])

    # Act
    free, _ = strategy_returns(always_long, rows, data, trade())
    costly, _ = strategy_returns(always_long, rows, data, trade(spread_pips=2.0))

    # Assert
    assert (rule_targets(always_long, trade().rule) == 1.0).all()
    assert costly.sum() < free.sum()
    close = data.bars["close"].to_numpy()[rows]
    np.testing.assert_allclose(free[1:], close[1:] / close[:-1] - 1.0, rtol=1e-9, atol=1e-12)


def test_build_learner_regime_columns_not_in_the_set_raise(data) -> None:  # type: ignore[no-untyped-def]
    # Arrange
    config = LGB.model_copy(update={"regime": RegimeConfig(columns=("missing_feature",))})

    # Act / Assert
    with pytest.raises(UsageError, match="missing_feature"):
        build_learner(config, {}, data.feature_names, 0, rows=data.n)


def test_build_learner_regime_gate_wraps_the_learner(data) -> None:  # type: ignore[no-untyped-def]
    # Arrange
    config = LGB.model_copy(
        update={"regime": RegimeConfig(columns=("realized_vol_20", "log_return_2"), allowed=(0,))}
    )

    # Act
    learner = build_learner(config, {}, data.feature_names, 0, rows=data.n)
    learner.fit(data.X, data.y, weight=data.weight)
    p = learner.predict_proba(data.X)

    # Assert
    assert learner.name == "regime"
    assert ((p >= 0.0) & (p <= 1.0)).all()
    assert (p != 0.5).any()  # rows in regime 0 get the model's view
    assert (p == 0.5).any()  # rows outside regime 0 get no view


@pytest.mark.parametrize(
    ("cores", "jobs", "rows", "expected"),
    [
        (2, 1, 3_000, 1),  # a small window: waking a second thread costs more than it gives
        (2, 1, 9_999, 1),
        (2, 1, 10_000, 2),
        (2, 1, 200_000, 2),  # never more than the cores
        (2, 2, 200_000, 1),  # two jobs share two cores
        (8, 2, 200_000, 4),
        (8, 1, 15_000, 3),
    ],
)
def test_threads_for_left_open_follow_window_size_and_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, jobs: int, rows: int, expected: int
) -> None:
    # Arrange
    monkeypatch.setattr("pipelines.train.config.os.cpu_count", lambda: cores)
    config = WalkForwardConfig(jobs=jobs)

    # Act / Assert
    assert config.threads is None
    assert config.threads_for(rows) == expected


def test_threads_for_explicit_threads_win(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    monkeypatch.setattr("pipelines.train.config.os.cpu_count", lambda: 2)
    config = WalkForwardConfig(threads=3, jobs=2)

    # Act / Assert
    assert config.threads_for(100) == 3
    assert config.threads_for(1_000_000) == 3


def test_build_learner_threads_follow_the_window(monkeypatch: pytest.MonkeyPatch, data) -> None:  # type: ignore[no-untyped-def]
    # Arrange
    monkeypatch.setattr("pipelines.train.config.os.cpu_count", lambda: 2)
    config = LGB.model_copy(update={"threads": None})

    # Act
    small = build_learner(config, {}, data.feature_names, 0, rows=2_000)
    large = build_learner(config, {}, data.feature_names, 0, rows=50_000)

    # Assert
    assert small.threads == 1  # type: ignore[attr-defined]
    assert large.threads == 2  # type: ignore[attr-defined]

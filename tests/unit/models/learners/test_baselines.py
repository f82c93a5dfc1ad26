"""Baselines (logistic, forest) and the input checks every learner shares."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.errors import UsageError
from models.learners.base import Floats, Validation
from models.learners.baselines import (
    ForestLearner,
    LogisticLearner,
    check_features,
    check_target,
    check_weight,
    resolve_params,
)

FOREST = {"n_estimators": 30, "min_samples_leaf": 20}
Baseline = type[LogisticLearner] | type[ForestLearner]
PARAMS: dict[str, dict[str, Any]] = {"logistic": {}, "forest": FOREST}


def signal_data(n: int = 3000, seed: int = 7) -> tuple[Floats, np.ndarray]:
    """Return X (5 columns, 5% NaN) and a class label driven by columns 0 and 1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = (0.8 * X[:, 0] - 0.6 * X[:, 1] + rng.normal(size=n) > 0).astype(np.int64)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, y


@pytest.mark.parametrize("cls", [LogisticLearner, ForestLearner])
def test_baseline_signal_columns_beats_chance_on_held_out_rows(cls: Baseline) -> None:
    # Arrange
    X, y = signal_data()

    # Act
    proba = cls(PARAMS[cls.name]).fit(X[:2200], y[:2200]).predict_proba(X[2200:])

    # Assert
    assert roc_auc_score(y[2200:], proba) > 0.75
    assert proba.shape == (800,)
    assert ((proba >= 0) & (proba <= 1)).all()


@pytest.mark.parametrize("cls", [LogisticLearner, ForestLearner])
def test_baseline_fit_same_seed_twice_gives_identical_proba(cls: Baseline) -> None:
    # Arrange
    X, y = signal_data(n=1200)

    # Act
    first = cls(PARAMS[cls.name], seed=4).fit(X, y).predict_proba(X)
    second = cls(PARAMS[cls.name], seed=4).fit(X, y).predict_proba(X)

    # Assert
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("cls", [LogisticLearner, ForestLearner])
def test_baseline_valid_given_is_ignored(cls: Baseline) -> None:
    # Arrange
    X, y = signal_data(n=1200)
    valid = Validation(X[1000:], y[1000:])

    # Act
    with_valid = cls(PARAMS[cls.name]).fit(X[:1000], y[:1000], valid=valid).predict_proba(X)
    without = cls(PARAMS[cls.name]).fit(X[:1000], y[:1000]).predict_proba(X)

    # Assert
    np.testing.assert_array_equal(with_valid, without)


@pytest.mark.parametrize("cls", [LogisticLearner, ForestLearner])
def test_baseline_sample_weight_changes_fit(cls: Baseline) -> None:
    # Arrange
    X, y = signal_data(n=1200)
    weight = np.where(np.arange(1200) % 2 == 0, 1.0, 0.1)

    # Act
    weighted = cls(PARAMS[cls.name]).fit(X, y, weight=weight).predict_proba(X)
    plain = cls(PARAMS[cls.name]).fit(X, y).predict_proba(X)

    # Assert
    assert not np.allclose(weighted, plain)


@pytest.mark.parametrize("cls", [LogisticLearner, ForestLearner])
def test_baseline_pickled_fitted_and_unfitted_round_trip(cls: Baseline) -> None:
    # Arrange
    X, y = signal_data(n=1200)
    fitted = cls(PARAMS[cls.name]).fit(X, y)

    # Act
    fitted_copy = pickle.loads(pickle.dumps(fitted))
    unfitted_copy = pickle.loads(pickle.dumps(cls(PARAMS[cls.name])))

    # Assert
    np.testing.assert_array_equal(fitted_copy.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(unfitted_copy.fit(X, y).predict_proba(X), fitted.predict_proba(X))


@pytest.mark.parametrize("cls", [LogisticLearner, ForestLearner])
def test_baseline_feature_importance_one_per_column_with_empty_column(cls: Baseline) -> None:
    # Arrange: column 4 is entirely missing (the imputer keeps it, filled with zeros)
    X, y = signal_data(n=1500)
    X[:, 4] = np.nan

    # Act
    importance = cls(PARAMS[cls.name]).fit(X, y).feature_importance()

    # Assert
    assert importance is not None
    assert importance.shape == (5,)
    assert importance.sum() == pytest.approx(1.0)
    assert importance[4] == 0.0
    assert set(np.argsort(importance)[-2:]) == {0, 1}


def test_logistic_feature_importance_is_normalized_abs_coefficient() -> None:
    # Arrange
    X, y = signal_data(n=1500)
    learner = LogisticLearner({"C": 0.5}).fit(X, y)
    assert learner.pipeline is not None
    coef = np.abs(learner.pipeline.named_steps["model"].coef_[0])

    # Act
    importance = learner.feature_importance()

    # Assert
    assert importance is not None
    np.testing.assert_allclose(importance, coef / coef.sum())


def test_logistic_all_nan_rows_predicts_in_unit_interval() -> None:
    # Arrange
    X, y = signal_data(n=1000)
    learner = LogisticLearner().fit(X, y)

    # Act
    proba = learner.predict_proba(np.full((3, 5), np.nan))

    # Assert
    assert proba.shape == (3,)
    assert ((proba > 0) & (proba < 1)).all()


def test_forest_params_reach_the_estimator() -> None:
    # Arrange
    X, y = signal_data(n=600)
    params = {"n_estimators": 7, "max_depth": 3, "min_samples_leaf": 9, "max_features": 0.5}

    # Act
    learner = ForestLearner(params, threads=2).fit(X, y)

    # Assert
    assert learner.pipeline is not None
    forest = learner.pipeline.named_steps["model"]
    assert (forest.n_estimators, forest.max_depth, forest.min_samples_leaf) == (7, 3, 9)
    assert (forest.max_features, forest.n_jobs) == (0.5, 2)


def test_search_spaces_name_only_accepted_params() -> None:
    # Act
    logistic, forest = LogisticLearner.search_space(), ForestLearner.search_space()

    # Assert
    assert set(logistic) == {"C"}
    assert logistic["C"].log
    assert set(forest) == {"max_depth", "min_samples_leaf", "max_features"}
    assert set(forest) <= set(ForestLearner.defaults())


def test_resolve_params_integral_float_for_int_default_becomes_int() -> None:
    # Act
    params = resolve_params(
        "forest", {"n_estimators": 200, "C": 1.0}, {"n_estimators": 50.0, "C": 2}
    )

    # Assert
    assert params == {"n_estimators": 50, "C": 2.0}
    assert isinstance(params["n_estimators"], int)
    assert isinstance(params["C"], float)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"depth": 3}, r"unknown parameter\(s\) depth; accepted: max_depth, n_estimators"),
        ({"n_estimators": 2.5}, "n_estimators=2.5: expected an integer"),
        ({"n_estimators": True}, "expected an integer"),
        ({"max_depth": [3]}, "not a number, string, bool or null"),
    ],
)
def test_resolve_params_bad_input_raises_usage_error(
    given: dict[str, object], message: str
) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=message):
        resolve_params("forest", {"n_estimators": 200, "max_depth": None}, given)


def test_check_features_infinite_value_raises_usage_error_naming_column() -> None:
    # Arrange
    X = np.zeros((3, 4))
    X[1, 2] = np.inf

    # Act / Assert
    with pytest.raises(UsageError, match=r"column 2\); replace them with NaN"):
        check_features(X, learner="logistic")


def test_check_features_one_dimensional_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="expected rows x features"):
        check_features(np.zeros(5), learner="logistic")


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.array([0, 1, 2]), "classes 0 and 1 only"),
        (np.array([1, 1, 1]), "only class 1; a classifier needs both"),
        (np.array([0, 1]), r"expected \(3,\)"),
    ],
)
def test_check_target_bad_classes_raises_usage_error(y: np.ndarray, message: str) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=message):
        check_target(y, "class", learner="logistic", n_rows=3)


def test_check_target_nan_return_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="NaN or infinite returns"):
        check_target(np.array([0.1, np.nan]), "return", learner="lightgbm_regressor", n_rows=2)


def test_check_weight_negative_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="non-negative"):
        check_weight(np.array([1.0, -0.5]), learner="forest", n_rows=2)


def test_logistic_fit_single_class_raises_usage_error() -> None:
    # Arrange
    X, _ = signal_data(n=100)

    # Act / Assert
    with pytest.raises(UsageError, match="a classifier needs both"):
        LogisticLearner().fit(X, np.zeros(100, dtype=np.int64))


@pytest.mark.parametrize(("seed", "threads"), [(-1, 1), (0, 0), (0, True)])
def test_baseline_bad_seed_or_threads_raises_usage_error(seed: int, threads: int) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="expected an integer"):
        LogisticLearner(seed=seed, threads=threads)

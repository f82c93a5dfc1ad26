"""The learner registry, and the contract every registered learner keeps."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import pytest

from core.errors import UsageError
from models.learners.base import Floats, Learner
from models.learners.baselines import ForestLearner, LogisticLearner
from models.learners.ensemble import SoftVoteLearner, StackingLearner
from models.learners.lightgbm import LightGBMClassifier, LightGBMRegressor
from models.learners.regime import RegimeGatedLearner
from models.learners.registry import (
    LEARNERS,
    learner_names,
    make_learner,
    make_regime_learner,
    search_space,
)

BOOST = {"num_boost_round": 60, "early_stopping_rounds": 10, "num_boost_round_without_valid": 30}
MEMBERS = {
    "lightgbm__num_boost_round_without_valid": 30,
    "lightgbm__num_boost_round": 60,
    "forest__n_estimators": 15,
}
SMALL: dict[str, dict[str, Any]] = {
    "lightgbm": BOOST,
    "lightgbm_regressor": BOOST,
    "logistic": {"C": 0.5},
    "forest": {"n_estimators": 15},
    "ensemble": MEMBERS,
    "stacking": MEMBERS,
}


def signal_data(n: int = 1200, seed: int = 7) -> tuple[Floats, Floats, np.ndarray]:
    """Return X (5 columns, 5% NaN), a log return driven by columns 0 and 1, and its sign."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    returns = 0.01 * (0.8 * X[:, 0] - 0.6 * X[:, 1]) + 0.01 * rng.normal(size=n)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, returns, (returns > 0).astype(np.int64)


def fitted(name: str, seed: int = 0) -> tuple[Learner, Floats]:
    X, returns, y = signal_data()
    learner = make_learner(name, SMALL[name], seed=seed)
    target = y if learner.target == "class" else returns
    return learner.fit(X, target), X


def test_learner_names_lists_every_registered_learner() -> None:
    # Act
    names = learner_names()

    # Assert
    assert names == (
        "lightgbm",
        "lightgbm_regressor",
        "logistic",
        "forest",
        "ensemble",
        "stacking",
    )
    assert all(LEARNERS[name].name == name for name in names)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("lightgbm", LightGBMClassifier),
        ("lightgbm_regressor", LightGBMRegressor),
        ("logistic", LogisticLearner),
        ("forest", ForestLearner),
        ("ensemble", SoftVoteLearner),
        ("stacking", StackingLearner),
    ],
)
def test_make_learner_name_builds_its_class_with_seed_and_threads(name: str, cls: type) -> None:
    # Act
    learner = make_learner(name, SMALL[name], seed=4, threads=2)

    # Assert
    assert isinstance(learner, cls)
    assert learner.seed == 4  # type: ignore[attr-defined]
    assert learner.threads == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", learner_names())
def test_learner_fit_twice_same_seed_gives_identical_proba_in_unit_interval(name: str) -> None:
    # Arrange
    first, X = fitted(name, seed=1)
    second, _ = fitted(name, seed=1)
    X_nan = X.copy()
    X_nan[:5] = np.nan

    # Act
    proba = first.predict_proba(X_nan)

    # Assert
    np.testing.assert_array_equal(proba, second.predict_proba(X_nan))
    assert proba.shape == (X.shape[0],)
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()


@pytest.mark.parametrize("name", learner_names())
def test_learner_pickled_fitted_and_unfitted_round_trip(name: str) -> None:
    # Arrange
    learner, X = fitted(name)
    unfitted = make_learner(name, SMALL[name])

    # Act
    restored = pickle.loads(pickle.dumps(learner))
    restored_unfitted = pickle.loads(pickle.dumps(unfitted))

    # Assert
    np.testing.assert_array_equal(restored.predict_proba(X), learner.predict_proba(X))
    assert restored_unfitted.get_params() == unfitted.get_params()


@pytest.mark.parametrize("name", learner_names())
def test_learner_get_params_json_ready_and_rebuilds_same_learner(name: str) -> None:
    # Arrange
    learner = make_learner(name, SMALL[name])

    # Act
    params = learner.get_params()

    # Assert
    assert json.loads(json.dumps(params)) == params
    assert make_learner(name, params).get_params() == params


@pytest.mark.parametrize("name", learner_names())
def test_learner_feature_importance_one_per_column_summing_to_one(name: str) -> None:
    # Arrange
    learner, X = fitted(name)

    # Act
    importance = learner.feature_importance()

    # Assert
    assert importance is not None
    assert importance.shape == (X.shape[1],)
    assert (importance >= 0).all()
    assert importance.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("name", learner_names())
def test_search_space_name_matches_class_and_accepted_params(name: str) -> None:
    # Act
    space = search_space(name)

    # Assert
    assert space == LEARNERS[name].search_space()
    assert space
    assert set(space) <= set(LEARNERS[name].defaults())


def test_make_learner_unknown_name_raises_usage_error_naming_choices() -> None:
    # Act / Assert
    with pytest.raises(
        UsageError,
        match=r"unknown learner 'xgboost'; choose one of: lightgbm, lightgbm_regressor, logistic, forest, ensemble, stacking",
    ):
        make_learner("xgboost")


def test_search_space_unknown_name_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="unknown learner 'svm'"):
        search_space("svm")


def test_make_learner_unknown_param_raises_usage_error_listing_accepted() -> None:
    # Act / Assert
    with pytest.raises(
        UsageError, match=r"learner logistic: unknown parameter\(s\) alpha; accepted: C$"
    ):
        make_learner("logistic", {"alpha": 0.1})


def test_make_learner_bad_threads_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="threads=0"):
        make_learner("lightgbm", threads=0)


def test_make_regime_learner_wraps_base_with_detector_settings() -> None:
    # Arrange
    X, _, y = signal_data(n=1500)
    X[:, 3] = np.abs(X[:, 3])

    # Act
    learner = make_regime_learner(
        "logistic",
        {"C": 0.2},
        seed=3,
        regime_columns=(3,),
        n_regimes=3,
        allowed=(0, 1),
        per_regime=False,
    )
    proba = learner.fit(X, y).predict_proba(X)

    # Assert
    assert isinstance(learner, RegimeGatedLearner)
    assert learner.detector.n_regimes == 3
    assert learner.detector.seed == 3
    assert learner.base.get_params() == {"C": 0.2}
    assert learner.target == "class"
    regimes = learner.detector.predict(X[:, [3]])
    assert (proba[regimes == 2] == 0.5).all()


def test_make_regime_learner_unknown_base_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="unknown learner 'regime'"):
        make_regime_learner("regime", regime_columns=(0,))

"""Ensembles: the soft vote averages its members, stacking weighs them on held-out rows."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.errors import UsageError
from models.learners.base import Floats, Validation
from models.learners.baselines import ForestLearner, LogisticLearner
from models.learners.ensemble import SoftVoteLearner, StackingLearner
from models.learners.lightgbm import LightGBMClassifier

FAST = {
    "lightgbm__num_boost_round": 120,
    "lightgbm__early_stopping_rounds": 20,
    "lightgbm__num_boost_round_without_valid": 50,
    "forest__n_estimators": 25,
}
Ensemble = type[SoftVoteLearner] | type[StackingLearner]


def signal_data(n: int = 3000, seed: int = 7) -> tuple[Floats, np.ndarray]:
    """Return X (5 columns, 5% NaN) and a class label driven by columns 0 and 1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = (0.8 * X[:, 0] - 0.6 * X[:, 1] + rng.normal(size=n) > 0).astype(np.int64)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, y


def test_soft_vote_proba_is_mean_of_members() -> None:
    # Arrange
    X, y = signal_data(n=1500)
    learner = SoftVoteLearner(FAST).fit(X[:1200], y[:1200])

    # Act
    proba = learner.predict_proba(X[1200:])

    # Assert
    members = [
        learner.models[m].predict_proba(X[1200:]) for m in ("lightgbm", "logistic", "forest")
    ]
    np.testing.assert_allclose(proba, np.mean(members, axis=0))
    assert isinstance(learner.models["lightgbm"], LightGBMClassifier)
    assert isinstance(learner.models["logistic"], LogisticLearner)
    assert isinstance(learner.models["forest"], ForestLearner)


def test_soft_vote_namespaced_params_reach_members() -> None:
    # Act
    learner = SoftVoteLearner({**FAST, "lightgbm__num_leaves": 9, "logistic__C": 0.1}, seed=2)
    models = learner._new_members()

    # Assert
    assert models["lightgbm"].get_params()["num_leaves"] == 9
    assert models["logistic"].get_params() == {"C": 0.1}
    assert models["forest"].get_params()["n_estimators"] == 25
    assert all(model.seed == 2 for model in models.values())


def test_soft_vote_valid_steers_lightgbm_early_stopping() -> None:
    # Arrange
    X, y = signal_data(n=2000)
    valid = Validation(X[1500:], y[1500:])

    # Act
    learner = SoftVoteLearner(FAST).fit(X[:1500], y[:1500], valid=valid)

    # Assert
    lightgbm = learner.models["lightgbm"]
    assert isinstance(lightgbm, LightGBMClassifier)
    assert lightgbm.best_iteration is not None
    assert lightgbm.best_iteration < 120


@pytest.mark.parametrize("cls", [SoftVoteLearner, StackingLearner])
def test_ensemble_signal_columns_beats_chance_on_held_out_rows(cls: Ensemble) -> None:
    # Arrange
    X, y = signal_data()

    # Act
    proba = cls(FAST).fit(X[:2200], y[:2200]).predict_proba(X[2200:])

    # Assert
    assert roc_auc_score(y[2200:], proba) > 0.75
    assert proba.shape == (800,)
    assert ((proba >= 0) & (proba <= 1)).all()


@pytest.mark.parametrize("cls", [SoftVoteLearner, StackingLearner])
def test_ensemble_fit_same_seed_twice_gives_identical_proba(cls: Ensemble) -> None:
    # Arrange
    X, y = signal_data(n=1200)

    # Act
    first = cls(FAST, seed=3).fit(X, y).predict_proba(X)
    second = cls(FAST, seed=3).fit(X, y).predict_proba(X)

    # Assert
    np.testing.assert_array_equal(first, second)


def test_stacking_without_valid_refits_members_on_all_rows() -> None:
    # Arrange
    X, y = signal_data(n=1500)
    learner = StackingLearner(members=("logistic",)).fit(X, y)

    # Act
    member = learner.models["logistic"].predict_proba(X)
    on_all_rows = LogisticLearner().fit(X, y).predict_proba(X)

    # Assert
    np.testing.assert_array_equal(member, on_all_rows)
    assert learner.meta is not None
    assert learner.meta.coef_.shape == (1, 1)


def test_stacking_with_valid_fits_meta_on_valid_rows() -> None:
    # Arrange
    X, y = signal_data(n=2000)
    valid = Validation(X[1500:], y[1500:])

    # Act
    learner = StackingLearner(FAST).fit(X[:1500], y[:1500], valid=valid)
    proba = learner.predict_proba(X[:10])

    # Assert
    assert learner.meta is not None
    assert learner.meta.coef_.shape == (1, 3)
    assert learner.meta.coef_.sum() > 0
    assert ((proba >= 0) & (proba <= 1)).all()


def test_stacking_held_out_single_class_raises_usage_error() -> None:
    # Arrange: the last 20% of rows are all class 1
    X, y = signal_data(n=500)
    y[400:] = 1

    # Act / Assert
    with pytest.raises(UsageError, match="held-out rows hold only class 1"):
        StackingLearner(members=("logistic",)).fit(X, y)


def test_stacking_holdout_fraction_out_of_range_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"holdout_fraction=1\.0"):
        StackingLearner({"holdout_fraction": 1.0})


@pytest.mark.parametrize("cls", [SoftVoteLearner, StackingLearner])
def test_ensemble_feature_importance_is_mean_of_members(cls: Ensemble) -> None:
    # Arrange
    X, y = signal_data(n=1500)
    learner = cls(FAST).fit(X, y)
    parts = [model.feature_importance() for model in learner.models.values()]

    # Act
    importance = learner.feature_importance()

    # Assert
    assert importance is not None
    np.testing.assert_allclose(importance, np.mean([p for p in parts if p is not None], axis=0))
    assert importance.sum() == pytest.approx(1.0)


def test_ensemble_search_space_is_namespaced_union_of_members() -> None:
    # Act
    space = SoftVoteLearner.search_space()

    # Assert
    expected = (
        {f"lightgbm__{k}" for k in LightGBMClassifier.search_space()}
        | {f"logistic__{k}" for k in LogisticLearner.search_space()}
        | {f"forest__{k}" for k in ForestLearner.search_space()}
    )
    assert set(space) == expected
    assert space["logistic__C"] == LogisticLearner.search_space()["C"]


def test_ensemble_unknown_member_param_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(
        UsageError, match=r"unknown parameter\(s\) logistic__penalty; accepted: .*logistic__C"
    ):
        SoftVoteLearner({"logistic__penalty": "l1"})


def test_ensemble_param_of_absent_member_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="forest__n_estimators"):
        SoftVoteLearner({"forest__n_estimators": 10}, members=("lightgbm", "logistic"))


@pytest.mark.parametrize("members", [(), ("lightgbm", "lightgbm"), ("lightgbm_regressor",)])
def test_ensemble_bad_members_raises_usage_error(members: tuple[str, ...]) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="members"):
        SoftVoteLearner(members=members)


@pytest.mark.parametrize("cls", [SoftVoteLearner, StackingLearner])
def test_ensemble_pickled_fitted_and_params_json_round_trip(cls: Ensemble) -> None:
    # Arrange
    X, y = signal_data(n=1000)
    learner = cls(FAST).fit(X, y)

    # Act
    restored = pickle.loads(pickle.dumps(learner))
    params = learner.get_params()

    # Assert
    np.testing.assert_array_equal(restored.predict_proba(X), learner.predict_proba(X))
    assert json.loads(json.dumps(params)) == params
    assert cls(params).get_params() == params


def test_ensemble_predict_unfitted_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="not fitted"):
        StackingLearner().predict_proba(np.zeros((2, 5)))

"""LightGBM learners: signal found, early stopping, window Datasets reused without re-binning."""

from __future__ import annotations

import json
import pickle
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from core.errors import UsageError
from models.learners.base import Floats, Validation
from models.learners.lightgbm import LightGBMClassifier, LightGBMRegressor, WindowDataset

FAST = {"num_boost_round": 150, "early_stopping_rounds": 20, "num_boost_round_without_valid": 60}


def signal_data(n: int = 3000, seed: int = 7) -> tuple[Floats, Floats, np.ndarray]:
    """Return X (5 columns, 5% NaN), the log return driven by columns 0 and 1, and its sign."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    returns = 0.01 * (0.8 * X[:, 0] - 0.6 * X[:, 1]) + 0.01 * rng.normal(size=n)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, returns, (returns > 0).astype(np.int64)


def test_classifier_signal_columns_beats_chance_on_held_out_rows() -> None:
    # Arrange
    X, _, y = signal_data()
    valid = Validation(X[1800:2200], y[1800:2200])

    # Act
    learner = LightGBMClassifier(FAST).fit(X[:1800], y[:1800], valid=valid)
    proba = learner.predict_proba(X[2200:])

    # Assert
    assert roc_auc_score(y[2200:], proba) > 0.75
    assert proba.shape == (800,)
    assert ((proba >= 0) & (proba <= 1)).all()


def test_regressor_signal_columns_beats_chance_on_held_out_rows() -> None:
    # Arrange
    X, returns, y = signal_data()

    # Act
    learner = LightGBMRegressor(FAST).fit(X[:2200], returns[:2200])
    proba = learner.predict_proba(X[2200:])

    # Assert
    assert roc_auc_score(y[2200:], proba) > 0.75
    assert ((proba >= 0) & (proba <= 1)).all()


def test_regressor_predict_proba_is_normal_cdf_of_return_over_residual_sigma() -> None:
    # Arrange
    X, returns, _ = signal_data(n=1500)
    learner = LightGBMRegressor(FAST).fit(X, returns)
    residual = returns - learner.predict_return(X)

    # Act
    proba = learner.predict_proba(X[:50])

    # Assert: labels are stored as float32 inside LightGBM, hence the tolerance on sigma
    assert learner.sigma is not None
    assert learner.sigma == pytest.approx(float(np.std(residual)), rel=1e-4)
    expected = norm.cdf(learner.predict_return(X[:50]) / learner.sigma)
    np.testing.assert_allclose(proba, expected)


@pytest.mark.parametrize("cls", [LightGBMClassifier, LightGBMRegressor])
def test_fit_same_seed_twice_gives_identical_proba(
    cls: type[LightGBMClassifier] | type[LightGBMRegressor],
) -> None:
    # Arrange
    X, returns, y = signal_data(n=1500)
    target = y if cls.target == "class" else returns

    # Act
    first = cls(FAST, seed=3).fit(X, target).predict_proba(X)
    second = cls(FAST, seed=3).fit(X, target).predict_proba(X)

    # Assert
    np.testing.assert_array_equal(first, second)


def test_classifier_other_seed_changes_bagged_model() -> None:
    # Arrange
    X, _, y = signal_data(n=1500)

    # Act
    first = LightGBMClassifier(FAST, seed=1).fit(X, y).predict_proba(X)
    second = LightGBMClassifier(FAST, seed=2).fit(X, y).predict_proba(X)

    # Assert
    assert not np.array_equal(first, second)


def test_classifier_noisy_target_stops_early() -> None:
    # Arrange: the label is a coin flip, so the validation loss stops improving at once
    rng = np.random.default_rng(11)
    X = rng.normal(size=(2000, 5))
    y = rng.integers(0, 2, size=2000)
    params = {"num_boost_round": 400, "early_stopping_rounds": 20}
    valid = Validation(X[1500:], y[1500:])

    # Act
    learner = LightGBMClassifier(params).fit(X[:1500], y[:1500], valid=valid)

    # Assert
    assert learner.best_iteration is not None
    assert learner.best_iteration < 100
    assert learner.booster is not None
    assert learner.booster.current_iteration() == learner.best_iteration


def test_classifier_without_valid_trains_fixed_round_count() -> None:
    # Arrange
    X, _, y = signal_data(n=1000)

    # Act
    learner = LightGBMClassifier({"num_boost_round_without_valid": 37}).fit(X, y)

    # Assert
    assert learner.best_iteration == 37
    assert learner.booster is not None
    assert learner.booster.current_iteration() == 37


def test_window_subsets_two_param_sets_differ_and_repeat_identically() -> None:
    # Arrange
    X, _, y = signal_data()
    window = WindowDataset(X[:2000], y[:2000])
    train = window.subset(np.arange(0, 1500))
    valid = window.subset(np.arange(1550, 2000))
    small = {**FAST, "num_leaves": 8, "learning_rate": 0.1}
    large = {**FAST, "num_leaves": 64, "min_data_in_leaf": 20}

    # Act
    runs = [
        LightGBMClassifier(params).fit_dataset(train, valid).predict_proba(X[2000:])
        for params in (small, large, small, large)
    ]

    # Assert
    assert not np.array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    np.testing.assert_array_equal(runs[1], runs[3])


def test_window_subsets_repeated_fits_never_rebin(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: Dataset._lazy_init is where LightGBM bins raw features; count its calls
    X, _, y = signal_data(n=2000)
    window = WindowDataset(X, y)
    handle = window.dataset._handle
    assert handle is not None
    address = handle.value
    binned: list[int] = []
    original = lgb.Dataset._lazy_init

    def counting(self: lgb.Dataset, *args: Any, **kwargs: Any) -> Any:
        binned.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(lgb.Dataset, "_lazy_init", counting)

    # Act
    for leaves in (8, 16, 32):
        train = window.subset(np.arange(0, 1500))
        valid = window.subset(np.arange(1500, 2000))
        LightGBMClassifier({**FAST, "num_leaves": leaves}).fit_dataset(train, valid)

    rebinned_before_control = len(binned)
    WindowDataset(X, y)

    # Assert: the control (a new window) is counted, the reused subsets are not
    assert rebinned_before_control == 0
    assert len(binned) == 1
    assert window.dataset._handle is handle
    assert handle.value == address


def test_window_regressor_fit_dataset_on_return_label_sets_sigma() -> None:
    # Arrange
    X, returns, y = signal_data()
    window = WindowDataset(X[:2000], returns[:2000])

    # Act
    learner = LightGBMRegressor(FAST).fit_dataset(
        window.subset(np.arange(1500)), window.subset(np.arange(1500, 2000))
    )

    # Assert
    assert learner.sigma is not None
    assert 0 < learner.sigma < float(np.std(returns))
    assert roc_auc_score(y[2000:], learner.predict_proba(X[2000:])) > 0.75


def test_classifier_fit_dataset_return_label_raises_usage_error() -> None:
    # Arrange
    X, returns, _ = signal_data(n=500)
    window = WindowDataset(X, returns)

    # Act / Assert
    with pytest.raises(UsageError, match="classes 0 and 1"):
        LightGBMClassifier(FAST).fit_dataset(window.dataset)


@pytest.mark.parametrize(
    "rows", [np.array([], dtype=np.int64), np.array([0, 0, 1]), np.array([0, 500]), np.array([0.5])]
)
def test_window_subset_bad_rows_raises_usage_error(rows: np.ndarray) -> None:
    # Arrange
    X, _, y = signal_data(n=500)
    window = WindowDataset(X, y)

    # Act / Assert
    with pytest.raises(UsageError, match="subset rows"):
        window.subset(rows)


def test_window_feature_names_wrong_count_raises_usage_error() -> None:
    # Arrange
    X, _, y = signal_data(n=300)

    # Act / Assert
    with pytest.raises(UsageError, match="feature_names"):
        WindowDataset(X, y, feature_names=["a", "b"])


def test_classifier_pickled_fitted_and_unfitted_round_trip() -> None:
    # Arrange
    X, _, y = signal_data(n=1500)
    fitted = LightGBMClassifier(FAST).fit(X, y)
    unfitted = LightGBMClassifier(FAST, seed=5)

    # Act
    fitted_copy = pickle.loads(pickle.dumps(fitted))
    unfitted_copy = pickle.loads(pickle.dumps(unfitted))

    # Assert
    np.testing.assert_array_equal(fitted_copy.predict_proba(X), fitted.predict_proba(X))
    assert fitted_copy.best_iteration == fitted.best_iteration
    np.testing.assert_array_equal(
        unfitted_copy.fit(X, y).predict_proba(X),
        LightGBMClassifier(FAST, seed=5).fit(X, y).predict_proba(X),
    )


def test_feature_importance_signal_columns_lead_and_empty_column_is_zero() -> None:
    # Arrange: column 4 is entirely missing
    X, _, y = signal_data()
    X[:, 4] = np.nan

    # Act
    importance = LightGBMClassifier(FAST).fit(X, y).feature_importance()

    # Assert
    assert importance is not None
    assert importance.shape == (5,)
    assert importance.sum() == pytest.approx(1.0)
    assert importance[4] == 0.0
    assert set(np.argsort(importance)[-2:]) == {0, 1}


def test_predict_proba_all_nan_rows_stays_in_unit_interval() -> None:
    # Arrange
    X, _, y = signal_data(n=1500)
    learner = LightGBMClassifier(FAST).fit(X, y)

    # Act
    proba = learner.predict_proba(np.full((4, 5), np.nan))

    # Assert
    assert proba.shape == (4,)
    assert ((proba > 0) & (proba < 1)).all()


def test_get_params_tuned_values_json_ready_with_integers_kept() -> None:
    # Arrange: a tuner may hand integers over as integral floats
    learner = LightGBMClassifier({"num_leaves": np.float64(31.0), "lambda_l1": np.float64(0.1)})

    # Act
    params = learner.get_params()

    # Assert
    assert json.loads(json.dumps(params)) == params
    assert params["num_leaves"] == 31
    assert isinstance(params["num_leaves"], int)


def test_search_space_binning_params_not_tunable() -> None:
    # Act
    space = LightGBMClassifier.search_space()

    # Assert
    assert {"learning_rate", "num_leaves", "min_data_in_leaf", "lambda_l1"} <= set(space)
    assert not {"max_bin", "min_data_in_bin"} & set(space)
    assert set(space) <= set(LightGBMClassifier.defaults())


def test_unknown_param_raises_usage_error_listing_accepted() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"unknown parameter\(s\) max_bin; accepted: .*num_leaves"):
        LightGBMClassifier({"max_bin": 63})


def test_predict_proba_unfitted_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="not fitted"):
        LightGBMClassifier().predict_proba(np.zeros((2, 5)))


def test_predict_proba_other_column_count_raises_usage_error() -> None:
    # Arrange
    X, _, y = signal_data(n=800)
    learner = LightGBMClassifier(FAST).fit(X, y)

    # Act / Assert
    with pytest.raises(UsageError, match="fitted on 5"):
        learner.predict_proba(X[:, :3])

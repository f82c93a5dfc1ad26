"""Regimes: the detector recovers planted volatility regimes; the gate and per-regime models."""

from __future__ import annotations

import json
import pickle
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pytest

from core.errors import UsageError
from models.learners.base import Floats, SearchSpace, Target, Validation
from models.learners.baselines import LogisticLearner
from models.learners.lightgbm import LightGBMRegressor
from models.learners.regime import RegimeDetector, RegimeGatedLearner

VOL, TREND = 3, 4
REGIME_COLUMNS = (VOL, TREND)


def regime_data(
    n: int = 3000, block: int = 250, high_share: float = 0.5, seed: int = 5
) -> tuple[Floats, np.ndarray, np.ndarray]:
    """Return X, a class label and the planted regime (0 calm, 1 volatile) of each row.

    Columns: 0 and 1 drive the label, 2 is noise, 3 is realized volatility (about 0.5% when
    calm, 2% when volatile), 4 a trend measure. Regimes come in blocks of ``block`` rows.
    """
    rng = np.random.default_rng(seed)
    blocks = rng.random(n // block) < high_share
    regime = np.repeat(blocks.astype(np.int64), block)
    X = rng.normal(size=(n, 5))
    X[:, VOL] = np.where(regime == 1, 0.02, 0.005) * np.exp(0.15 * rng.normal(size=n))
    X[:, TREND] = rng.normal(size=n) + 0.5 * regime
    y = (0.8 * X[:, 0] - 0.6 * X[:, 1] + rng.normal(size=n) > 0).astype(np.int64)
    return X, y, regime


def gated(
    allowed: tuple[int, ...] | None = None, per_regime: bool = False, seed: int = 0
) -> RegimeGatedLearner:
    return RegimeGatedLearner(
        LogisticLearner(seed=seed),
        RegimeDetector(n_regimes=2, seed=seed),
        regime_columns=REGIME_COLUMNS,
        allowed=allowed,
        per_regime=per_regime,
    )


def test_detector_planted_volatility_regimes_recovered_in_order() -> None:
    # Arrange
    X, _, regime = regime_data()

    # Act
    found = (
        RegimeDetector(n_regimes=2, seed=0).fit(X[:, REGIME_COLUMNS]).predict(X[:, REGIME_COLUMNS])
    )

    # Assert: regime 0 is the calm one, without relabelling
    assert np.mean(found == regime) >= 0.9


def test_detector_refit_other_seed_and_row_order_keeps_labels() -> None:
    # Arrange
    X, _, _ = regime_data()
    F = X[:, REGIME_COLUMNS]

    # Act
    first = RegimeDetector(seed=0).fit(F).predict(F)
    second = RegimeDetector(seed=9).fit(F[::-1]).predict(F)

    # Assert
    assert np.mean(first == second) >= 0.99


def test_detector_nan_rows_get_regime_minus_one_and_nan_proba() -> None:
    # Arrange
    X, _, _ = regime_data(n=1000)
    F = X[:, REGIME_COLUMNS].copy()
    F[[3, 7], 0] = np.nan
    detector = RegimeDetector(seed=0).fit(F)

    # Act
    labels = detector.predict(F)
    proba = detector.predict_proba(F)

    # Assert
    assert labels[3] == labels[7] == -1
    assert np.isnan(proba[[3, 7]]).all()
    complete = np.delete(np.arange(1000), [3, 7])
    np.testing.assert_allclose(proba[complete].sum(axis=1), 1.0)
    assert set(labels[complete]) <= {0, 1}


def test_detector_too_few_rows_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="at least 30"):
        RegimeDetector(n_regimes=3).fit(np.ones((20, 2)))


def test_detector_unknown_kind_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="only kind is 'gmm'"):
        RegimeDetector(kind="hmm")  # type: ignore[arg-type]


def test_gate_outside_allowed_regime_returns_half() -> None:
    # Arrange
    X, y, _ = regime_data()
    learner = gated(allowed=(0,)).fit(X[:2000], y[:2000])
    regimes = learner.detector.predict(X[2000:, REGIME_COLUMNS])

    # Act
    proba = learner.predict_proba(X[2000:])

    # Assert
    assert (regimes == 1).any()
    assert (regimes == 0).any()
    assert (proba[regimes == 1] == 0.5).all()
    assert (proba[regimes == 0] != 0.5).all()


def test_gate_allowed_none_takes_a_view_everywhere() -> None:
    # Arrange
    X, y, _ = regime_data()
    learner = gated().fit(X[:2000], y[:2000])

    # Act
    proba = learner.predict_proba(X[2000:])

    # Assert
    assert (proba != 0.5).all()
    assert learner.regime_models == {}


def test_gate_base_sees_regime_probabilities_as_extra_features() -> None:
    # Arrange
    X, y, _ = regime_data(n=1500)

    # Act
    learner = gated().fit(X, y)

    # Assert
    assert isinstance(learner.model, LogisticLearner)
    assert isinstance(learner.base, LogisticLearner)
    assert learner.model.n_features == 5 + 2
    assert learner.base.n_features is None


def test_per_regime_fits_one_model_per_regime_and_routes_rows() -> None:
    # Arrange
    X, y, _ = regime_data()
    learner = gated(per_regime=True).fit(X[:2000], y[:2000])
    augmented = np.hstack([X[2000:], learner.detector.predict_proba(X[2000:, REGIME_COLUMNS])])
    regimes = learner.detector.predict(X[2000:, REGIME_COLUMNS])

    # Act
    proba = learner.predict_proba(X[2000:])

    # Assert
    assert set(learner.regime_models) == {0, 1}
    assert learner.regime_models[0] is not learner.regime_models[1]
    for regime in (0, 1):
        rows = regimes == regime
        expected = learner.regime_models[regime].predict_proba(augmented[rows])
        np.testing.assert_array_equal(proba[rows], expected)


def test_per_regime_small_regime_falls_back_to_all_rows_model() -> None:
    # Arrange: all calm but one volatile stretch of 60 rows in the training window
    X, y, _ = regime_data(n=2000, high_share=0.0)
    X[600:660, VOL] *= 4.0
    learner = gated(per_regime=True).fit(X, y)
    regimes = learner.detector.predict(X[:, REGIME_COLUMNS])
    assert learner.model is not None
    augmented = np.hstack([X, learner.detector.predict_proba(X[:, REGIME_COLUMNS])])

    # Act
    proba = learner.predict_proba(X)

    # Assert
    assert 0 < (regimes == 1).sum() < 100
    assert set(learner.regime_models) == {0}
    rows = regimes == 1
    np.testing.assert_array_equal(proba[rows], learner.model.predict_proba(augmented[rows]))


class RecordingLearner:
    """A stand-in base learner that records the rows it was fitted and validated on."""

    name: ClassVar[str] = "recording"
    target: ClassVar[Target] = "class"

    def __init__(self) -> None:
        self.train_rows = 0
        self.valid_rows: int | None = None

    @classmethod
    def search_space(cls) -> SearchSpace:
        return {}

    def fit(
        self,
        X: Floats,
        y: npt.NDArray[Any],
        *,
        weight: Floats | None = None,
        valid: Validation | None = None,
    ) -> Self:
        self.train_rows = X.shape[0]
        self.valid_rows = None if valid is None else valid.X.shape[0]
        return self

    def predict_proba(self, X: Floats) -> Floats:
        return np.full(X.shape[0], 0.6)

    def feature_importance(self) -> Floats | None:
        return None

    def get_params(self) -> dict[str, Any]:
        return {}


def test_per_regime_valid_rows_are_split_by_regime() -> None:
    # Arrange
    X, y, _ = regime_data()
    learner = RegimeGatedLearner(
        RecordingLearner(), RegimeDetector(seed=0), REGIME_COLUMNS, per_regime=True
    )

    # Act
    learner.fit(X[:2000], y[:2000], valid=Validation(X[2000:2500], y[2000:2500]))

    # Assert
    train_regimes = learner.detector.predict(X[:2000, REGIME_COLUMNS])
    valid_regimes = learner.detector.predict(X[2000:2500, REGIME_COLUMNS])
    assert isinstance(learner.model, RecordingLearner)
    assert (learner.model.train_rows, learner.model.valid_rows) == (2000, 500)
    for regime in (0, 1):
        model = learner.regime_models[regime]
        assert isinstance(model, RecordingLearner)
        assert model.train_rows == (train_regimes == regime).sum()
        assert model.valid_rows == (valid_regimes == regime).sum()


def test_gate_predictions_do_not_depend_on_the_other_rows_predicted() -> None:
    # Arrange: point in time, the detector and the models are fixed after fit
    X, y, _ = regime_data()
    learner = gated(allowed=(0,), per_regime=True).fit(X[:2000], y[:2000])

    # Act
    whole = learner.predict_proba(X[2000:])
    first_part = learner.predict_proba(X[2000:2100])

    # Assert
    np.testing.assert_array_equal(whole[:100], first_part)


def test_gate_fit_same_seed_twice_gives_identical_proba() -> None:
    # Arrange
    X, y, _ = regime_data(n=1500)

    # Act
    first = gated(per_regime=True, seed=2).fit(X, y).predict_proba(X)
    second = gated(per_regime=True, seed=2).fit(X, y).predict_proba(X)

    # Assert
    np.testing.assert_array_equal(first, second)


def test_gate_pickled_fitted_and_unfitted_round_trip() -> None:
    # Arrange
    X, y, _ = regime_data(n=1500)
    fitted = gated(allowed=(0,)).fit(X, y)

    # Act
    fitted_copy = pickle.loads(pickle.dumps(fitted))
    unfitted_copy = pickle.loads(pickle.dumps(gated(allowed=(0,))))

    # Assert
    np.testing.assert_array_equal(fitted_copy.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(unfitted_copy.fit(X, y).predict_proba(X), fitted.predict_proba(X))


def test_gate_feature_importance_drops_regime_columns() -> None:
    # Arrange
    X, y, _ = regime_data(n=1500)
    learner = gated().fit(X, y)
    assert learner.model is not None
    full = learner.model.feature_importance()
    assert full is not None

    # Act
    importance = learner.feature_importance()

    # Assert
    assert importance is not None
    assert importance.shape == (5,)
    np.testing.assert_allclose(importance, full[:5] / full[:5].sum())


def test_gate_get_params_base_params_plus_regime_settings_json_ready() -> None:
    # Arrange
    learner = gated(allowed=(0,), per_regime=True)

    # Act
    params = learner.get_params()

    # Assert
    assert json.loads(json.dumps(params)) == params
    assert params["C"] == 1.0
    assert params["regime_base"] == "logistic"
    assert params["regime_columns"] == [VOL, TREND]
    assert params["regime_allowed"] == [0]
    assert params["regime_per_regime"] is True
    assert params["regime_n_regimes"] == 2


def test_gate_target_and_search_space_come_from_base() -> None:
    # Act
    learner = RegimeGatedLearner(LightGBMRegressor(), RegimeDetector(), regime_columns=(0,))

    # Assert
    assert learner.name == "regime"
    assert learner.target == "return"
    assert learner.search_space() == LightGBMRegressor.search_space()


@pytest.mark.parametrize(
    ("columns", "allowed", "message"),
    [
        ((), None, "regime_columns"),
        ((3, 3), None, "regime_columns"),
        ((3,), (2,), "allowed=\\(2,\\)"),
        ((3,), (), "allowed"),
    ],
)
def test_gate_bad_settings_raises_usage_error(
    columns: tuple[int, ...], allowed: tuple[int, ...] | None, message: str
) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=message):
        RegimeGatedLearner(LogisticLearner(), RegimeDetector(), columns, allowed=allowed)


def test_gate_regime_column_beyond_x_raises_usage_error() -> None:
    # Arrange
    X, y, _ = regime_data(n=500)
    learner = RegimeGatedLearner(LogisticLearner(), RegimeDetector(), regime_columns=(7,))

    # Act / Assert
    with pytest.raises(UsageError, match="regime column 7 is beyond X's 5 columns"):
        learner.fit(X, y)

"""Market regimes: a Gaussian-mixture detector and a learner gated by the regime it sees.

:class:`RegimeDetector` clusters regime features (e.g. realized volatility and a trend
measure) into ``n_regimes`` regimes. Regimes are numbered by the mean of the first regime
feature, lowest first, so with volatility first, regime 0 is the calmest, and the numbers
mean the same thing after every refit.

:class:`RegimeGatedLearner` wraps any learner: it fits the detector on the training window
only, gives the base learner the regime probabilities as extra features, optionally fits one
model per regime, and answers 0.5 (no view, the strategy stays flat) in regimes it is not
allowed to trade.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
from sklearn.mixture import GaussianMixture

from core.errors import UsageError
from models.learners.base import Floats, Learner, SearchSpace, Target, Validation
from models.learners.baselines import check_features, check_weight, normalized

Ints = npt.NDArray[np.int64]

NO_REGIME = -1
NO_VIEW = 0.5


class RegimeDetector:
    """Gaussian mixture (full covariance, best of 3 starts) on standardized regime features.

    Rows with a NaN in any regime feature are left out of the fit and get regime -1 (and NaN
    probabilities) in prediction.

    Parameters
    ----------
    n_regimes
        Number of regimes (mixture components), at least 1.
    seed
        Random state of the mixture's initializations.
    kind
        The model; only ``"gmm"`` (Gaussian mixture) exists.

    Raises
    ------
    UsageError
        If ``n_regimes`` is below 1 or ``kind`` is unknown.
    """

    def __init__(self, n_regimes: int = 2, seed: int = 0, kind: Literal["gmm"] = "gmm") -> None:
        if isinstance(n_regimes, bool) or not isinstance(n_regimes, int) or n_regimes < 1:
            raise UsageError(f"regime detector: n_regimes={n_regimes!r}: expected an integer >= 1")
        if kind != "gmm":
            raise UsageError(f"regime detector: kind={kind!r}: the only kind is 'gmm'")
        self.n_regimes = n_regimes
        self.seed = int(seed)
        self.kind = kind
        self.mixture: GaussianMixture | None = None
        self.center: Floats | None = None
        self.scale: Floats | None = None
        # Component index of regime 0, 1, ...: components sorted by their first-column mean.
        self.order: Ints | None = None
        self.n_features: int | None = None

    def fit(self, F: Floats) -> Self:
        """Fit the mixture on the rows of ``F`` without NaN (rows x regime features).

        Raises
        ------
        UsageError
            If ``F`` is malformed or has fewer complete rows than 10 per regime.
        """
        features = check_features(F, learner="regime detector", what="F")
        complete = ~np.isnan(features).any(axis=1)
        rows = features[complete]
        needed = 10 * self.n_regimes
        if rows.shape[0] < needed:
            msg = (
                f"regime detector: F has {rows.shape[0]} rows without NaN; "
                f"{self.n_regimes} regimes need at least {needed}"
            )
            raise UsageError(msg)
        center = rows.mean(axis=0)
        scale = rows.std(axis=0)
        scale[scale == 0] = 1.0
        mixture = GaussianMixture(
            n_components=self.n_regimes,
            covariance_type="full",
            n_init=3,
            random_state=self.seed,
        ).fit((rows - center) / scale)
        self.mixture = mixture
        self.center = center
        self.scale = scale
        self.order = np.argsort(mixture.means_[:, 0], kind="stable").astype(np.int64)
        self.n_features = features.shape[1]
        return self

    def predict_proba(self, F: Floats) -> Floats:
        """Return each row's probability of each regime (rows x regimes; NaN rows stay NaN).

        Raises
        ------
        UsageError
            If the detector is not fitted or ``F`` has the wrong shape.
        """
        if self.mixture is None or self.center is None or self.scale is None or self.order is None:
            raise UsageError("regime detector: not fitted; call fit(F) first")
        features = check_features(
            F, learner="regime detector", what="F", n_features=self.n_features
        )
        complete = ~np.isnan(features).any(axis=1)
        proba = np.full((features.shape[0], self.n_regimes), np.nan)
        if complete.any():
            scaled = (features[complete] - self.center) / self.scale
            proba[complete] = self.mixture.predict_proba(scaled)[:, self.order]
        return proba

    def predict(self, F: Floats) -> Ints:
        """Return each row's most likely regime (0 = lowest first feature; -1 for NaN rows).

        Raises
        ------
        UsageError
            If the detector is not fitted or ``F`` has the wrong shape.
        """
        return _regimes(self.predict_proba(F))


def _regimes(proba: Floats) -> Ints:
    labels = np.full(proba.shape[0], NO_REGIME, dtype=np.int64)
    complete = ~np.isnan(proba).any(axis=1)
    labels[complete] = np.argmax(proba[complete], axis=1)
    return labels


class RegimeGatedLearner:
    """A learner that sees the regime, may specialize per regime and trades only some regimes.

    Fitting: the detector is fitted on the training rows' ``regime_columns`` (the training
    window only), and the base learner on the features plus one probability column per
    regime. With ``per_regime``, a copy of the base learner is also fitted on each regime's
    rows; a regime with fewer than 100 training rows uses the all-rows model instead, as do
    rows whose regime features are NaN. With ``valid``, each per-regime model gets the
    regime's validation rows when there are at least 20, and no validation set otherwise.

    Prediction: each row's P(up) from its regime's model; 0.5 (no view) for rows whose regime
    is not in ``allowed`` (rows without a regime included, when ``allowed`` is set).

    ``target`` is the base learner's (set per instance). :meth:`search_space` is the base
    learner's: the regime settings are not tuned.

    Parameters
    ----------
    base
        The learner to wrap, unfitted; it is copied, never fitted itself.
    detector
        The regime detector, unfitted; it is fitted in place.
    regime_columns
        Columns of ``X`` the detector reads.
    allowed
        Regimes in which the learner takes a view; None allows every regime.
    per_regime
        Whether to fit one model per regime.

    Raises
    ------
    UsageError
        If ``regime_columns`` is empty or repeats a column, or ``allowed`` is empty or names
        a regime the detector does not have.
    """

    name: ClassVar[str] = "regime"
    target: Target
    MIN_REGIME_ROWS: ClassVar[int] = 100
    MIN_REGIME_VALID_ROWS: ClassVar[int] = 20

    def __init__(
        self,
        base: Learner,
        detector: RegimeDetector,
        regime_columns: tuple[int, ...],
        allowed: tuple[int, ...] | None = None,
        per_regime: bool = False,
    ) -> None:
        columns = tuple(int(c) for c in regime_columns)
        if not columns or min(columns) < 0 or len(set(columns)) != len(columns):
            msg = f"learner regime: regime_columns={regime_columns!r}: give distinct column indices >= 0, at least one"
            raise UsageError(msg)
        if allowed is not None:
            allowed = tuple(int(r) for r in allowed)
            if not allowed or not set(allowed) <= set(range(detector.n_regimes)):
                msg = (
                    f"learner regime: allowed={allowed!r}: name at least one regime from "
                    f"0 to {detector.n_regimes - 1}, or None to allow every regime"
                )
                raise UsageError(msg)
        self.base = base
        self.detector = detector
        self.regime_columns = columns
        self.allowed = allowed
        self.per_regime = bool(per_regime)
        self.target = base.target
        self.model: Learner | None = None
        self.regime_models: dict[int, Learner] = {}
        self.n_features: int | None = None

    def search_space(self) -> SearchSpace:
        """Return the base learner's search space."""
        return self.base.search_space()

    def _augmented(self, X: Floats) -> tuple[Floats, Ints]:
        proba = self.detector.predict_proba(X[:, list(self.regime_columns)])
        return np.hstack([X, proba]), _regimes(proba)

    def fit(
        self,
        X: Floats,
        y: npt.NDArray[Any],
        *,
        weight: Floats | None = None,
        valid: Validation | None = None,
    ) -> Self:
        """Fit the detector on the training rows, then the base model(s) with regime features.

        Raises
        ------
        UsageError
            If ``X`` lacks a regime column, or the inputs are malformed.
        """
        features = check_features(X, learner=self.name)
        if max(self.regime_columns) >= features.shape[1]:
            msg = (
                f"learner regime: regime column {max(self.regime_columns)} is beyond X's "
                f"{features.shape[1]} columns"
            )
            raise UsageError(msg)
        weights = check_weight(weight, learner=self.name, n_rows=features.shape[0])
        labels = np.asarray(y)
        self.detector.fit(features[:, list(self.regime_columns)])
        train, regimes = self._augmented(features)
        held: tuple[Floats, npt.NDArray[Any], Floats | None, Ints] | None = None
        if valid is not None:
            valid_X = check_features(
                valid.X, learner=self.name, what="valid.X", n_features=features.shape[1]
            )
            valid_aug, valid_regimes = self._augmented(valid_X)
            held = (valid_aug, np.asarray(valid.y), valid.weight, valid_regimes)
        model = copy.deepcopy(self.base).fit(
            train, labels, weight=weights, valid=_validation(held, None)
        )
        regime_models: dict[int, Learner] = {}
        if self.per_regime:
            for regime in range(self.detector.n_regimes):
                rows = regimes == regime
                if rows.sum() < self.MIN_REGIME_ROWS:
                    continue
                regime_models[regime] = copy.deepcopy(self.base).fit(
                    train[rows],
                    labels[rows],
                    weight=None if weights is None else weights[rows],
                    valid=self._regime_validation(held, regime),
                )
        self.model = model
        self.regime_models = regime_models
        self.n_features = features.shape[1]
        return self

    def _regime_validation(
        self, held: tuple[Floats, npt.NDArray[Any], Floats | None, Ints] | None, regime: int
    ) -> Validation | None:
        if held is None:
            return None
        rows = held[3] == regime
        if rows.sum() < self.MIN_REGIME_VALID_ROWS:
            return None
        return _validation(held, rows)

    def predict_proba(self, X: Floats) -> Floats:
        """Return P(up) per row from its regime's model, 0.5 outside the allowed regimes.

        Raises
        ------
        UsageError
            If the learner is not fitted or ``X`` has the wrong shape.
        """
        model = self._fitted()
        features = check_features(X, learner=self.name, n_features=self.n_features)
        augmented, regimes = self._augmented(features)
        proba = np.array(model.predict_proba(augmented), dtype=np.float64)
        for regime, regime_model in self.regime_models.items():
            rows = regimes == regime
            if rows.any():
                proba[rows] = regime_model.predict_proba(augmented[rows])
        if self.allowed is not None:
            proba[~np.isin(regimes, self.allowed)] = NO_VIEW
        return proba

    def feature_importance(self) -> Floats | None:
        """Return the all-rows model's importances of the original columns, renormalized.

        The regime probability columns are dropped.

        Raises
        ------
        UsageError
            If the learner is not fitted.
        """
        importance = self._fitted().feature_importance()
        if importance is None or self.n_features is None:
            return None
        return normalized(np.asarray(importance, dtype=np.float64)[: self.n_features])

    def get_params(self) -> dict[str, Any]:
        """Return the base learner's parameters plus the regime settings (``regime_*``)."""
        return {
            **self.base.get_params(),
            "regime_base": self.base.name,
            "regime_n_regimes": self.detector.n_regimes,
            "regime_kind": self.detector.kind,
            "regime_seed": self.detector.seed,
            "regime_columns": list(self.regime_columns),
            "regime_allowed": None if self.allowed is None else list(self.allowed),
            "regime_per_regime": self.per_regime,
        }

    def _fitted(self) -> Learner:
        if self.model is None:
            raise UsageError(f"learner {self.name}: not fitted; call fit(X, y) first")
        return self.model


def _validation(
    held: tuple[Floats, npt.NDArray[Any], Floats | None, Ints] | None,
    rows: npt.NDArray[np.bool_] | None,
) -> Validation | None:
    if held is None:
        return None
    X, y, weight, _ = held
    if rows is None:
        return Validation(X, y, weight)
    return Validation(X[rows], y[rows], None if weight is None else np.asarray(weight)[rows])

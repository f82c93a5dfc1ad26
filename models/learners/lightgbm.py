"""Gradient-boosted trees with LightGBM: a classifier of P(up) and a regressor of the return.

Both train through the native API (``lightgbm.train``). Tuning fits many boosters on the same
training window, so the window's features are binned once, in a :class:`WindowDataset`, and
every trial trains on row subsets of it (:meth:`WindowDataset.subset`) that share its bin
mappers: no trial re-bins the data. That is why parameters that change the binning
(``max_bin``, ``min_data_in_bin``) are fixed here and not tunable.

Rounds. With a validation set, training runs up to ``num_boost_round`` (default 500) rounds
and stops once the validation loss has not improved for ``early_stopping_rounds`` (default
50); the booster keeps the best round. Without one, it trains a fixed
``num_boost_round_without_valid`` (default 200) rounds: fewer, since nothing guards against
over-fitting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, Self

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from core.errors import UsageError
from models.learners.base import Dist, Floats, SearchSpace, Target, Validation
from models.learners.baselines import (
    check_features,
    check_seed_threads,
    check_target,
    check_validation,
    check_weight,
    normalized,
    resolve_params,
)

MAX_BIN = 255
# Keeps the regressor's z-score finite when every training residual is zero.
MIN_SIGMA = 1e-12


def dataset_params(threads: int = 1) -> dict[str, Any]:
    """Return the LightGBM Dataset parameters every window is binned with.

    ``feature_pre_filter`` is off so that any ``min_data_in_leaf`` can train on the same
    bins; ``max_bin`` is fixed at 255.
    """
    return {"feature_pre_filter": False, "max_bin": MAX_BIN, "verbose": -1, "num_threads": threads}


class WindowDataset:
    """One training window binned once, with row subsets for every fit on it.

    The label is whatever the learner learns: classes in {0, 1} for
    :class:`LightGBMClassifier`, log returns for :class:`LightGBMRegressor`; the learner
    checks it when it trains.

    Parameters
    ----------
    X
        Features, rows x columns, float64 with NaN for missing values.
    y
        The label, one finite number per row.
    weight
        Optional sample weights, one per row.
    feature_names
        Optional column names (default ``Column_0``, ``Column_1``, ...).
    threads
        Threads LightGBM bins with.

    Raises
    ------
    UsageError
        If the inputs are malformed or the names do not match the columns.
    """

    def __init__(
        self,
        X: Floats,
        y: npt.NDArray[Any],
        *,
        weight: Floats | None = None,
        feature_names: Sequence[str] | None = None,
        threads: int = 1,
    ) -> None:
        check_seed_threads("lightgbm", 0, threads)
        features = check_features(X, learner="lightgbm")
        n_rows, n_columns = features.shape
        label = check_target(y, "return", learner="lightgbm", n_rows=n_rows)
        weights = check_weight(weight, learner="lightgbm", n_rows=n_rows)
        names: list[str] | Literal["auto"] = "auto"
        if feature_names is not None:
            names = [str(name) for name in feature_names]
            if len(names) != n_columns or len(set(names)) != n_columns:
                msg = (
                    f"lightgbm: feature_names has {len(names)} names ({len(set(names))} distinct) "
                    f"for {n_columns} columns; give one distinct name per column"
                )
                raise UsageError(msg)
        self.threads = int(threads)
        self.dataset = lgb.Dataset(
            features,
            label=label,
            weight=weights,
            feature_name=names,
            free_raw_data=False,
            params=dataset_params(self.threads),
        ).construct()

    @property
    def n_rows(self) -> int:
        """Return the window's row count."""
        return int(self.dataset.num_data())

    @property
    def n_features(self) -> int:
        """Return the window's column count."""
        return int(self.dataset.num_feature())

    def subset(self, rows: npt.NDArray[np.integer[Any]]) -> lgb.Dataset:
        """Return the rows ``rows`` as a constructed Dataset sharing this window's bins.

        Parameters
        ----------
        rows
            Row positions within the window (any order; LightGBM keeps them sorted).

        Raises
        ------
        UsageError
            If ``rows`` is empty, not integers, repeats a row or points outside the window.
        """
        positions = np.asarray(rows)
        if positions.ndim != 1 or positions.size == 0 or positions.dtype.kind not in "iu":
            msg = "lightgbm: subset rows must be a non-empty 1-D array of integer row positions"
            raise UsageError(msg)
        if positions.min() < 0 or positions.max() >= self.n_rows:
            msg = f"lightgbm: subset rows must lie in [0, {self.n_rows}); got {positions.min()}..{positions.max()}"
            raise UsageError(msg)
        if np.unique(positions).size != positions.size:
            raise UsageError("lightgbm: subset rows repeat a row; pass each row position once")
        # Constructed now, with the window's own parameters, so that training parameters
        # passed later never rebuild it.
        return self.dataset.subset(np.sort(positions).tolist()).construct()

    def holdout(
        self, X: Floats, y: npt.NDArray[Any], *, weight: Floats | None = None
    ) -> lgb.Dataset:
        """Return rows from outside the window binned with this window's bin mappers.

        Use it for a validation set that is not part of the window, e.g. ``valid`` in
        :meth:`LightGBMClassifier.fit`.

        Raises
        ------
        UsageError
            If the inputs are malformed or have another column count than the window.
        """
        features = check_features(X, learner="lightgbm", what="valid.X", n_features=self.n_features)
        n_rows = features.shape[0]
        label = check_target(y, "return", learner="lightgbm", n_rows=n_rows, what="valid.y")
        weights = check_weight(weight, learner="lightgbm", n_rows=n_rows, what="valid.weight")
        return self.dataset.create_valid(
            features, label=label, weight=weights, params=dict(self.dataset.params or {})
        ).construct()


class _LightGBMLearner:
    """Parameters, training and prediction shared by the classifier and the regressor."""

    name: ClassVar[str]
    target: ClassVar[Target]
    objective: ClassVar[str]

    def __init__(
        self, params: Mapping[str, Any] | None = None, *, seed: int = 0, threads: int = 1
    ) -> None:
        check_seed_threads(self.name, seed, threads)
        self.params = resolve_params(self.name, self.defaults(), params)
        self.seed = int(seed)
        self.threads = int(threads)
        self.booster: lgb.Booster | None = None
        self.best_iteration: int | None = None
        self.n_features: int | None = None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Return every accepted parameter with its default value.

        ``num_boost_round`` caps the rounds when a validation set steers early stopping
        (after ``early_stopping_rounds`` rounds without improvement; 0 turns it off);
        ``num_boost_round_without_valid`` is the fixed round count without one.
        """
        return {
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l1": 0.0,
            "lambda_l2": 1.0,
            "num_boost_round": 500,
            "early_stopping_rounds": 50,
            "num_boost_round_without_valid": 200,
        }

    @classmethod
    def search_space(cls) -> SearchSpace:
        """Return the tunable tree and regularization parameters (binning stays fixed)."""
        return {
            "learning_rate": Dist("float", 0.01, 0.2, log=True),
            "num_leaves": Dist("int", 8, 128, log=True),
            "min_data_in_leaf": Dist("int", 20, 400, log=True),
            "feature_fraction": Dist("float", 0.4, 1.0),
            "bagging_fraction": Dist("float", 0.5, 1.0),
            "lambda_l1": Dist("float", 1e-8, 10.0, log=True),
            "lambda_l2": Dist("float", 1e-8, 10.0, log=True),
        }

    def booster_params(self) -> dict[str, Any]:
        """Return the parameters handed to ``lightgbm.train`` (rounds are passed apart)."""
        rounds = {"num_boost_round", "early_stopping_rounds", "num_boost_round_without_valid"}
        params = {key: value for key, value in self.params.items() if key not in rounds}
        params.update(
            objective=self.objective,
            verbosity=-1,
            deterministic=True,
            force_row_wise=True,
            seed=self.seed,
            num_threads=self.threads,
        )
        return params

    def fit(
        self,
        X: Floats,
        y: npt.NDArray[Any],
        *,
        weight: Floats | None = None,
        valid: Validation | None = None,
    ) -> Self:
        """Bin the training rows and train; ``valid`` (when given) steers early stopping.

        Raises
        ------
        UsageError
            If ``X``, ``y``, ``weight`` or ``valid`` are malformed.
        """
        features = check_features(X, learner=self.name)
        label = check_target(y, self.target, learner=self.name, n_rows=features.shape[0])
        window = WindowDataset(features, label, weight=weight, threads=self.threads)
        held_out = None
        if valid is not None:
            vX, vy, vw = check_validation(
                valid, self.target, learner=self.name, n_features=features.shape[1]
            )
            held_out = window.holdout(vX, vy, weight=vw)
        return self.fit_dataset(window.dataset, held_out)

    def fit_dataset(self, train: lgb.Dataset, valid: lgb.Dataset | None = None) -> Self:
        """Train on prepared Datasets, e.g. :meth:`WindowDataset.subset` of a window.

        The Datasets are not modified, so the same subsets serve any number of fits with
        different parameters.

        Raises
        ------
        UsageError
            If the training labels do not fit the learner's target.
        """
        self._check_labels(np.asarray(train.get_label(), dtype=np.float64))
        callbacks: list[Any] = []
        if valid is None:
            rounds = int(self.params["num_boost_round_without_valid"])
            valid_sets = None
        else:
            rounds = int(self.params["num_boost_round"])
            valid_sets = [valid]
            patience = int(self.params["early_stopping_rounds"])
            if patience > 0:
                callbacks.append(lgb.early_stopping(patience, verbose=False))
        booster = lgb.train(
            self.booster_params(),
            train,
            num_boost_round=rounds,
            valid_sets=valid_sets,
            valid_names=None if valid_sets is None else ["valid"],
            callbacks=callbacks,
        )
        self.booster = booster
        self.best_iteration = int(booster.best_iteration or booster.current_iteration())
        self.n_features = int(booster.num_feature())
        self._after_fit(train)
        return self

    def _check_labels(self, label: Floats) -> None:
        raise NotImplementedError

    def _after_fit(self, train: lgb.Dataset) -> None:
        return None

    def _raw_predict(self, X: Floats) -> Floats:
        booster = self._fitted()
        features = check_features(X, learner=self.name, n_features=self.n_features)
        return np.asarray(booster.predict(features), dtype=np.float64)

    def feature_importance(self) -> Floats | None:
        """Return each column's total split gain, normalized to sum to 1 (None if no splits).

        Raises
        ------
        UsageError
            If the learner is not fitted.
        """
        gain = self._fitted().feature_importance(importance_type="gain")
        return normalized(np.asarray(gain, dtype=np.float64))

    def get_params(self) -> dict[str, Any]:
        """Return the hyper-parameters the learner was built with."""
        return dict(self.params)

    def _fitted(self) -> lgb.Booster:
        if self.booster is None:
            raise UsageError(f"learner {self.name}: not fitted; call fit(X, y) first")
        return self.booster


class LightGBMClassifier(_LightGBMLearner):
    """LightGBM binary classifier of the label's sign; P(up) is the booster's probability.

    Parameters
    ----------
    params
        Overrides of :meth:`defaults`.
    seed
        Seed of bagging and feature sampling.
    threads
        LightGBM's ``num_threads``.
    """

    name: ClassVar[str] = "lightgbm"
    target: ClassVar[Target] = "class"
    objective: ClassVar[str] = "binary"

    def _check_labels(self, label: Floats) -> None:
        if not np.isin(label, (0.0, 1.0)).all():
            msg = f"learner {self.name}: the Dataset's label must hold classes 0 and 1 only"
            raise UsageError(msg)

    def predict_proba(self, X: Floats) -> Floats:
        """Return P(up) for each row: the booster's probability of class 1.

        Raises
        ------
        UsageError
            If the learner is not fitted or ``X`` has the wrong shape.
        """
        return np.clip(self._raw_predict(X), 0.0, 1.0)


class LightGBMRegressor(_LightGBMLearner):
    """LightGBM regression of the label's log return, turned into P(up).

    P(up) is Φ(r̂ / σ): the standard normal CDF of the predicted return over σ, the
    (weighted) standard deviation of the training residuals. σ is measured in sample, so it
    understates the out-of-sample error and the probabilities are too confident; their order,
    which is what ranks trades, is the order of the predicted returns.

    Parameters
    ----------
    params
        Overrides of :meth:`defaults`.
    seed
        Seed of bagging and feature sampling.
    threads
        LightGBM's ``num_threads``.
    """

    name: ClassVar[str] = "lightgbm_regressor"
    target: ClassVar[Target] = "return"
    objective: ClassVar[str] = "regression"

    def __init__(
        self, params: Mapping[str, Any] | None = None, *, seed: int = 0, threads: int = 1
    ) -> None:
        super().__init__(params, seed=seed, threads=threads)
        self.sigma: float | None = None

    def _check_labels(self, label: Floats) -> None:
        if not np.isfinite(label).all():
            raise UsageError(f"learner {self.name}: the Dataset's label holds NaN or inf returns")

    def _after_fit(self, train: lgb.Dataset) -> None:
        data = train.get_data()
        if not isinstance(data, np.ndarray):
            msg = (
                f"learner {self.name}: the training Dataset kept no raw features to measure "
                "residuals on; build it with free_raw_data=False (WindowDataset does)"
            )
            raise UsageError(msg)
        label = np.asarray(train.get_label(), dtype=np.float64)
        residual = label - self._fitted().predict(data)
        weight = train.get_weight()
        w = np.ones_like(residual) if weight is None else np.asarray(weight, dtype=np.float64)
        mean = float(np.average(residual, weights=w))
        variance = float(np.average((residual - mean) ** 2, weights=w))
        self.sigma = max(float(np.sqrt(variance)), MIN_SIGMA)

    def predict_return(self, X: Floats) -> Floats:
        """Return the predicted log return of each row.

        Raises
        ------
        UsageError
            If the learner is not fitted or ``X`` has the wrong shape.
        """
        return self._raw_predict(X)

    def predict_proba(self, X: Floats) -> Floats:
        """Return P(up) = Φ(predicted return / σ) for each row.

        Raises
        ------
        UsageError
            If the learner is not fitted or ``X`` has the wrong shape.
        """
        prediction = self._raw_predict(X)
        sigma = self.sigma if self.sigma is not None else MIN_SIGMA
        return np.asarray(norm.cdf(prediction / sigma), dtype=np.float64)

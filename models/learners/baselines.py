"""Baseline learners from scikit-learn, and the input checks every learner shares.

:class:`LogisticLearner` (median imputation, standardization, L2 logistic regression) and
:class:`ForestLearner` (median imputation, random forest) are the yardsticks a boosted model
has to beat. Both accept a ``valid`` set for interface parity and ignore it: neither has
anything to stop early.

The module also holds what every learner in this package checks on the way in:
:func:`resolve_params` (defaults plus the caller's values, refusing unknown names),
:func:`check_features`, :func:`check_target`, :func:`check_weight` and
:func:`check_seed_threads`. They raise :class:`~core.errors.UsageError` naming the learner,
the input and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.errors import UsageError
from models.learners.base import Dist, Floats, SearchSpace, Target, Validation

# ---------------------------------------------------------------------------------------------
# Shared input checks
# ---------------------------------------------------------------------------------------------


def resolve_params(
    learner: str, defaults: Mapping[str, Any], params: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return ``defaults`` updated with ``params``, refusing names the learner does not know.

    Values are made plain Python scalars (NumPy scalars unwrapped); where the default is an
    int, an integral float such as ``31.0`` becomes ``31``; where it is a float, an int
    becomes a float. Defaults of ``None`` or a string accept any JSON scalar.

    Parameters
    ----------
    learner
        The learner's name, for messages.
    defaults
        Every accepted parameter name with its default value.
    params
        The caller's values; ``None`` keeps every default.

    Raises
    ------
    UsageError
        If a name is not among the defaults (listing the accepted ones), or a value has the
        wrong type for its parameter.
    """
    given = dict(params or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        msg = (
            f"learner {learner}: unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(defaults))}"
        )
        raise UsageError(msg)
    merged = dict(defaults)
    for key, value in given.items():
        merged[key] = _coerce(learner, key, defaults[key], value)
    return merged


def _coerce(learner: str, key: str, default: Any, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, str | int | float | bool | type(None)):
        msg = f"learner {learner}: parameter {key}={value!r} is not a number, string, bool or null"
        raise UsageError(msg)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UsageError(
                f"learner {learner}: parameter {key}={value!r}: expected true or false"
            )
        return value
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UsageError(f"learner {learner}: parameter {key}={value!r}: expected an integer")
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise UsageError(f"learner {learner}: parameter {key}={value!r}: expected a finite number")
    return value


def check_seed_threads(learner: str, seed: int, threads: int) -> None:
    """Refuse a negative seed or a thread count below one.

    Raises
    ------
    UsageError
        Naming the learner and the bad value.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UsageError(f"learner {learner}: seed={seed!r}: expected an integer >= 0")
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise UsageError(f"learner {learner}: threads={threads!r}: expected an integer >= 1")


def check_features(
    X: Any, *, learner: str, what: str = "X", n_features: int | None = None
) -> Floats:
    """Return ``X`` as a float64 matrix (rows x features) after checking its shape and values.

    NaN marks a missing value and is kept; infinite values are refused.

    Parameters
    ----------
    X
        The feature matrix.
    learner
        The learner's name, for messages.
    what
        The input's name, for messages (``"X"``, ``"valid.X"``).
    n_features
        The column count the learner was fitted on, when predicting.

    Raises
    ------
    UsageError
        If ``X`` is not a non-empty 2-D numeric array, has the wrong column count, or holds
        infinite values.
    """
    try:
        array = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"learner {learner}: {what} is not numeric: {exc}") from exc
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        msg = (
            f"learner {learner}: {what} has shape {array.shape}; expected rows x features, both > 0"
        )
        raise UsageError(msg)
    if n_features is not None and array.shape[1] != n_features:
        msg = (
            f"learner {learner}: {what} has {array.shape[1]} columns but the learner was fitted "
            f"on {n_features}; pass the same feature columns in the same order"
        )
        raise UsageError(msg)
    infinite = np.isinf(array)
    if infinite.any():
        column = int(np.flatnonzero(infinite.any(axis=0))[0])
        msg = f"learner {learner}: {what} holds infinite values (column {column}); replace them with NaN"
        raise UsageError(msg)
    return array


def check_target(
    y: Any,
    target: Target,
    *,
    learner: str,
    n_rows: int,
    what: str = "y",
    both_classes: bool = True,
) -> npt.NDArray[Any]:
    """Return the target as int64 classes in {0, 1} or as float64 returns, after checking it.

    Parameters
    ----------
    y
        The target, one value per row.
    target
        ``"class"`` for classes in {0, 1}, ``"return"`` for log returns.
    learner
        The learner's name, for messages.
    n_rows
        The row count of the matching ``X``.
    what
        The input's name, for messages.
    both_classes
        Whether a class target must hold both classes (training rows must; a validation
        set need not).

    Raises
    ------
    UsageError
        If ``y`` is not 1-D with one value per row, a class target holds values other than 0
        and 1 (or only one of them when ``both_classes``), or a return target holds NaN or
        infinite values.
    """
    try:
        values = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"learner {learner}: {what} is not numeric: {exc}") from exc
    if values.ndim != 1 or values.shape[0] != n_rows:
        msg = f"learner {learner}: {what} has shape {values.shape}; expected ({n_rows},), one value per row of X"
        raise UsageError(msg)
    if target == "return":
        if not np.isfinite(values).all():
            msg = f"learner {learner}: {what} holds NaN or infinite returns; drop those rows first"
            raise UsageError(msg)
        return values
    if not np.isin(values, (0.0, 1.0)).all():
        msg = f"learner {learner}: {what} must hold classes 0 and 1 only (1 = the return was positive)"
        raise UsageError(msg)
    classes = values.astype(np.int64)
    if both_classes and np.unique(classes).size < 2:
        msg = (
            f"learner {learner}: {what} holds only class {int(classes[0])}; a classifier needs both"
        )
        raise UsageError(msg)
    return classes


def check_weight(weight: Any, *, learner: str, n_rows: int, what: str = "weight") -> Floats | None:
    """Return the sample weights as float64 (or None), after checking them.

    Raises
    ------
    UsageError
        If the weights are not 1-D with one value per row, are negative or not finite, or
        sum to zero.
    """
    if weight is None:
        return None
    values = np.asarray(weight, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] != n_rows:
        msg = f"learner {learner}: {what} has shape {values.shape}; expected ({n_rows},), one weight per row"
        raise UsageError(msg)
    if not np.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        msg = f"learner {learner}: {what} must be finite, non-negative and not all zero"
        raise UsageError(msg)
    return values


def check_validation(
    valid: Validation, target: Target, *, learner: str, n_features: int
) -> tuple[Floats, npt.NDArray[Any], Floats | None]:
    """Return the checked ``(X, y, weight)`` of a validation set.

    Raises
    ------
    UsageError
        As :func:`check_features`, :func:`check_target` and :func:`check_weight`, naming
        ``valid.X``, ``valid.y`` or ``valid.weight``.
    """
    X = check_features(valid.X, learner=learner, what="valid.X", n_features=n_features)
    n_rows = X.shape[0]
    y = check_target(
        valid.y, target, learner=learner, n_rows=n_rows, what="valid.y", both_classes=False
    )
    weight = check_weight(valid.weight, learner=learner, n_rows=n_rows, what="valid.weight")
    return X, y, weight


def normalized(importance: Floats) -> Floats | None:
    """Return non-negative importances scaled to sum to 1, or None when they are all zero."""
    values = np.abs(np.asarray(importance, dtype=np.float64))
    total = float(values.sum())
    if not math.isfinite(total) or total <= 0:
        return None
    return values / total


# ---------------------------------------------------------------------------------------------
# The baselines
# ---------------------------------------------------------------------------------------------


class _SklearnLearner:
    """Shared fit / predict of a scikit-learn pipeline whose last step is ``model``."""

    name: ClassVar[str]
    target: ClassVar[Target] = "class"

    def __init__(
        self, params: Mapping[str, Any] | None = None, *, seed: int = 0, threads: int = 1
    ) -> None:
        check_seed_threads(self.name, seed, threads)
        self.params = resolve_params(self.name, self.defaults(), params)
        self.seed = int(seed)
        self.threads = int(threads)
        self.pipeline: Pipeline | None = None
        self.n_features: int | None = None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Return every accepted parameter with its default value."""
        raise NotImplementedError

    def _make_pipeline(self) -> Pipeline:
        raise NotImplementedError

    def fit(
        self,
        X: Floats,
        y: npt.NDArray[Any],
        *,
        weight: Floats | None = None,
        valid: Validation | None = None,
    ) -> Self:
        """Fit the pipeline on the training rows; ``valid`` is accepted and ignored.

        Raises
        ------
        UsageError
            If ``X``, ``y`` or ``weight`` are malformed.
        """
        features = check_features(X, learner=self.name)
        n_rows = features.shape[0]
        classes = check_target(y, self.target, learner=self.name, n_rows=n_rows)
        weights = check_weight(weight, learner=self.name, n_rows=n_rows)
        pipeline = self._make_pipeline()
        pipeline.fit(features, classes, model__sample_weight=weights)
        self.pipeline = pipeline
        self.n_features = features.shape[1]
        return self

    def predict_proba(self, X: Floats) -> Floats:
        """Return P(up) for each row: the model's probability of class 1.

        Raises
        ------
        UsageError
            If the learner is not fitted or ``X`` has the wrong shape.
        """
        pipeline = self._fitted()
        features = check_features(X, learner=self.name, n_features=self.n_features)
        proba = pipeline.predict_proba(features)
        column = list(pipeline.classes_).index(1)
        return np.asarray(proba[:, column], dtype=np.float64)

    def feature_importance(self) -> Floats | None:
        """Return one importance per input column, summing to 1, or None if all are zero."""
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        """Return the hyper-parameters the learner was built with."""
        return dict(self.params)

    def _fitted(self) -> Pipeline:
        if self.pipeline is None:
            raise UsageError(f"learner {self.name}: not fitted; call fit(X, y) first")
        return self.pipeline


class LogisticLearner(_SklearnLearner):
    """L2-regularized logistic regression on median-imputed, standardized features.

    Parameters
    ----------
    params
        ``C``: inverse regularization strength (default 1.0).
    seed
        Random state of the solver.
    threads
        Accepted for interface parity; the lbfgs solver runs on one thread.
    """

    name: ClassVar[str] = "logistic"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Return every accepted parameter with its default value."""
        return {"C": 1.0}

    @classmethod
    def search_space(cls) -> SearchSpace:
        """Return the regularization strength ``C`` on a log scale from 1e-3 to 10."""
        return {"C": Dist("float", 1e-3, 10.0, log=True)}

    def _make_pipeline(self) -> Pipeline:
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
                (
                    "model",
                    LogisticRegression(C=self.params["C"], max_iter=1000, random_state=self.seed),
                ),
            ]
        )

    def feature_importance(self) -> Floats | None:
        """Return |coefficient| of each standardized column, normalized to sum to 1.

        Raises
        ------
        UsageError
            If the learner is not fitted.
        """
        model = self._fitted().named_steps["model"]
        return normalized(np.asarray(model.coef_[0], dtype=np.float64))


class ForestLearner(_SklearnLearner):
    """A random forest on median-imputed features.

    Parameters
    ----------
    params
        ``n_estimators`` (default 200), ``max_depth`` (default None: unlimited),
        ``min_samples_leaf`` (default 20) and ``max_features`` (default ``"sqrt"``; a
        fraction of the columns when a float).
    seed
        Random state of the forest.
    threads
        Trees grown in parallel (``n_jobs``).
    """

    name: ClassVar[str] = "forest"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Return every accepted parameter with its default value."""
        return {
            "n_estimators": 200,
            "max_depth": None,
            "min_samples_leaf": 20,
            "max_features": "sqrt",
        }

    @classmethod
    def search_space(cls) -> SearchSpace:
        """Return tree depth, leaf size and the fraction of columns tried per split."""
        return {
            "max_depth": Dist("int", 2, 16),
            "min_samples_leaf": Dist("int", 5, 500, log=True),
            "max_features": Dist("float", 0.2, 1.0),
        }

    def _make_pipeline(self) -> Pipeline:
        forest = RandomForestClassifier(
            n_estimators=self.params["n_estimators"],
            max_depth=self.params["max_depth"],
            min_samples_leaf=self.params["min_samples_leaf"],
            max_features=self.params["max_features"],
            n_jobs=self.threads,
            random_state=self.seed,
        )
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("model", forest),
            ]
        )

    def feature_importance(self) -> Floats | None:
        """Return the forest's impurity importances, normalized to sum to 1.

        Raises
        ------
        UsageError
            If the learner is not fitted.
        """
        model = self._fitted().named_steps["model"]
        return normalized(np.asarray(model.feature_importances_, dtype=np.float64))

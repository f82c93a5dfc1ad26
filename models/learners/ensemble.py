"""Ensembles of classifiers: a soft vote and a stacked logistic meta-learner.

Members are classifiers named by their learner name (``lightgbm``, ``logistic``, ``forest``).
An ensemble's parameters are its members' parameters namespaced by member name,
``{"lightgbm__num_leaves": 31, "logistic__C": 0.1}``, and its search space is the union of
the members' spaces under those names. The class-level :meth:`SoftVoteLearner.search_space`
and :meth:`SoftVoteLearner.defaults` describe the default members; an ensemble built with
other ``members`` accepts those members' parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression

from core.errors import UsageError
from models.learners.base import Dist, Floats, SearchSpace, Target, Validation
from models.learners.baselines import (
    ForestLearner,
    LogisticLearner,
    check_features,
    check_seed_threads,
    check_target,
    check_validation,
    check_weight,
    normalized,
    resolve_params,
)
from models.learners.lightgbm import LightGBMClassifier

Member = LightGBMClassifier | LogisticLearner | ForestLearner
MemberClass = type[LightGBMClassifier] | type[LogisticLearner] | type[ForestLearner]

MEMBER_CLASSES: Mapping[str, MemberClass] = MappingProxyType(
    {"lightgbm": LightGBMClassifier, "logistic": LogisticLearner, "forest": ForestLearner}
)
DEFAULT_MEMBERS = ("lightgbm", "logistic", "forest")
SEPARATOR = "__"
# Keeps the meta-learner's logit features finite for members that predict exactly 0 or 1.
PROBA_EPS = 1e-6


def _member_defaults(members: Sequence[str]) -> dict[str, Any]:
    return {
        f"{member}{SEPARATOR}{key}": value
        for member in members
        for key, value in MEMBER_CLASSES[member].defaults().items()
    }


def _member_space(members: Sequence[str]) -> dict[str, Dist]:
    return {
        f"{member}{SEPARATOR}{key}": dist
        for member in members
        for key, dist in MEMBER_CLASSES[member].search_space().items()
    }


def _check_members(learner: str, members: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(members)
    unknown = [m for m in chosen if m not in MEMBER_CLASSES]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        msg = (
            f"learner {learner}: members {list(chosen)} must be distinct names from "
            f"{', '.join(MEMBER_CLASSES)}, at least one"
        )
        raise UsageError(msg)
    return chosen


def _logit(proba: Floats) -> Floats:
    clipped = np.clip(proba, PROBA_EPS, 1.0 - PROBA_EPS)
    return np.asarray(np.log(clipped / (1.0 - clipped)), dtype=np.float64)


def _mean_importance(models: Sequence[Member]) -> Floats | None:
    found = [imp for imp in (model.feature_importance() for model in models) if imp is not None]
    if not found:
        return None
    return normalized(np.mean(np.vstack(found), axis=0))


class _Ensemble:
    """Members, namespaced parameters and input checks shared by both ensembles."""

    name: ClassVar[str]
    target: ClassVar[Target] = "class"

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        seed: int = 0,
        threads: int = 1,
        members: Sequence[str] = DEFAULT_MEMBERS,
    ) -> None:
        check_seed_threads(self.name, seed, threads)
        self.members = _check_members(self.name, members)
        self.params = resolve_params(self.name, self._defaults_for(self.members), params)
        self.seed = int(seed)
        self.threads = int(threads)
        self.models: dict[str, Member] = {}
        self.n_features: int | None = None

    @classmethod
    def _defaults_for(cls, members: Sequence[str]) -> dict[str, Any]:
        return _member_defaults(members)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Return every accepted parameter of the default members, namespaced, with defaults."""
        return cls._defaults_for(DEFAULT_MEMBERS)

    @classmethod
    def search_space(cls) -> SearchSpace:
        """Return the union of the default members' search spaces under namespaced names."""
        return _member_space(DEFAULT_MEMBERS)

    def member_params(self, member: str) -> dict[str, Any]:
        """Return the parameters of one member, without the namespace prefix."""
        prefix = f"{member}{SEPARATOR}"
        return {
            key.removeprefix(prefix): value
            for key, value in self.params.items()
            if key.startswith(prefix)
        }

    def _new_members(self) -> dict[str, Member]:
        return {
            member: MEMBER_CLASSES[member](
                self.member_params(member), seed=self.seed, threads=self.threads
            )
            for member in self.members
        }

    def _check_fit_inputs(
        self, X: Floats, y: npt.NDArray[Any], weight: Floats | None
    ) -> tuple[Floats, npt.NDArray[Any], Floats | None]:
        features = check_features(X, learner=self.name)
        n_rows = features.shape[0]
        classes = check_target(y, self.target, learner=self.name, n_rows=n_rows)
        weights = check_weight(weight, learner=self.name, n_rows=n_rows)
        return features, classes, weights

    def _member_proba(self, X: Floats) -> Floats:
        if not self.models:
            raise UsageError(f"learner {self.name}: not fitted; call fit(X, y) first")
        features = check_features(X, learner=self.name, n_features=self.n_features)
        return np.column_stack([self.models[m].predict_proba(features) for m in self.members])

    def feature_importance(self) -> Floats | None:
        """Return the mean of the members' normalized importances (members without are skipped).

        Raises
        ------
        UsageError
            If the learner is not fitted.
        """
        if not self.models:
            raise UsageError(f"learner {self.name}: not fitted; call fit(X, y) first")
        return _mean_importance(list(self.models.values()))

    def get_params(self) -> dict[str, Any]:
        """Return the namespaced hyper-parameters the ensemble was built with."""
        return dict(self.params)


class SoftVoteLearner(_Ensemble):
    """Soft vote: P(up) is the plain mean of the members' P(up).

    Every member is fitted on all training rows; ``valid`` is passed on to each (LightGBM
    stops early on it, the baselines ignore it).

    Parameters
    ----------
    params
        Namespaced member parameters, ``{"lightgbm__num_leaves": 31, "logistic__C": 0.1}``.
    seed
        Seed given to every member.
    threads
        Thread count given to every member.
    members
        Member names (default lightgbm, logistic, forest).
    """

    name: ClassVar[str] = "ensemble"

    def fit(
        self,
        X: Floats,
        y: npt.NDArray[Any],
        *,
        weight: Floats | None = None,
        valid: Validation | None = None,
    ) -> Self:
        """Fit every member on the training rows; ``valid`` steers the members' early stopping.

        Raises
        ------
        UsageError
            If ``X``, ``y``, ``weight`` or ``valid`` are malformed.
        """
        features, classes, weights = self._check_fit_inputs(X, y, weight)
        models = self._new_members()
        for model in models.values():
            model.fit(features, classes, weight=weights, valid=valid)
        self.models = models
        self.n_features = features.shape[1]
        return self

    def predict_proba(self, X: Floats) -> Floats:
        """Return the mean of the members' P(up) for each row.

        Raises
        ------
        UsageError
            If the ensemble is not fitted or ``X`` has the wrong shape.
        """
        return np.asarray(self._member_proba(X).mean(axis=1), dtype=np.float64)


class StackingLearner(_Ensemble):
    """Stacking: a logistic meta-learner weighs the members' P(up).

    The scheme, so that the meta-learner only sees predictions of rows the members did not
    train on:

    - with ``valid`` given, the members are fitted on all training rows and the
      meta-learner on their predictions of the ``valid`` rows;
    - without, the last ``holdout_fraction`` (default 20%) of the training rows is held out:
      the members are fitted on the rows before it, the meta-learner on their predictions of
      the held-out tail, and then the members are refitted on all training rows.

    The meta-learner is a logistic regression (``meta__C``, default 1.0) on the logits of the
    members' probabilities. The held-out tail directly follows the rows the members learn
    from; labels that span several bars overlap across that boundary, which the meta-learner
    sees as slightly optimistic member predictions.

    Parameters
    ----------
    params
        Namespaced member parameters, plus ``meta__C`` and ``holdout_fraction``.
    seed
        Seed given to every member and the meta-learner.
    threads
        Thread count given to every member.
    members
        Member names (default lightgbm, logistic, forest).
    """

    name: ClassVar[str] = "stacking"

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        seed: int = 0,
        threads: int = 1,
        members: Sequence[str] = DEFAULT_MEMBERS,
    ) -> None:
        super().__init__(params, seed=seed, threads=threads, members=members)
        fraction = self.params["holdout_fraction"]
        if not 0.0 < fraction < 1.0:
            msg = f"learner {self.name}: holdout_fraction={fraction} must lie strictly between 0 and 1"
            raise UsageError(msg)
        if self.params["meta__C"] <= 0:
            raise UsageError(f"learner {self.name}: meta__C={self.params['meta__C']} must be > 0")
        self.meta: LogisticRegression | None = None

    @classmethod
    def _defaults_for(cls, members: Sequence[str]) -> dict[str, Any]:
        return {**_member_defaults(members), "meta__C": 1.0, "holdout_fraction": 0.2}

    def fit(
        self,
        X: Floats,
        y: npt.NDArray[Any],
        *,
        weight: Floats | None = None,
        valid: Validation | None = None,
    ) -> Self:
        """Fit the members and the meta-learner by the scheme in the class docstring.

        Raises
        ------
        UsageError
            If the inputs are malformed, or the held-out rows hold only one class.
        """
        features, classes, weights = self._check_fit_inputs(X, y, weight)
        if valid is not None:
            hold_X, hold_y, hold_w = check_validation(
                valid, self.target, learner=self.name, n_features=features.shape[1]
            )
            models = self._fit_members(features, classes, weights)
        else:
            n_rows = features.shape[0]
            n_hold = round(n_rows * self.params["holdout_fraction"])
            head = n_rows - n_hold
            if n_hold < 1 or head < 1:
                msg = f"learner {self.name}: {n_rows} rows are too few to hold out a tail"
                raise UsageError(msg)
            hold_X, hold_y = features[head:], classes[head:]
            hold_w = None if weights is None else weights[head:]
            head_w = None if weights is None else weights[:head]
            models = self._fit_members(features[:head], classes[:head], head_w, what="head")
        if np.unique(hold_y).size < 2:
            msg = (
                f"learner {self.name}: the held-out rows hold only class {int(hold_y[0])}; "
                "the meta-learner needs both (give more rows or a larger holdout_fraction)"
            )
            raise UsageError(msg)
        stacked = np.column_stack([_logit(models[m].predict_proba(hold_X)) for m in self.members])
        meta = LogisticRegression(C=self.params["meta__C"], max_iter=1000, random_state=self.seed)
        meta.fit(stacked, hold_y, sample_weight=hold_w)
        if valid is None:
            models = self._fit_members(features, classes, weights)
        self.models = models
        self.meta = meta
        self.n_features = features.shape[1]
        return self

    def _fit_members(
        self,
        X: Floats,
        y: npt.NDArray[Any],
        weight: Floats | None,
        what: str = "training rows",
    ) -> dict[str, Member]:
        if np.unique(y).size < 2:
            msg = f"learner {self.name}: the {what} the members learn from hold only one class"
            raise UsageError(msg)
        models = self._new_members()
        for model in models.values():
            model.fit(X, y, weight=weight)
        return models

    def predict_proba(self, X: Floats) -> Floats:
        """Return the meta-learner's P(up) from the members' predictions of each row.

        Raises
        ------
        UsageError
            If the ensemble is not fitted or ``X`` has the wrong shape.
        """
        member_proba = self._member_proba(X)
        if self.meta is None:
            raise UsageError(f"learner {self.name}: not fitted; call fit(X, y) first")
        proba = self.meta.predict_proba(_logit(member_proba))
        column = list(self.meta.classes_).index(1)
        return np.asarray(proba[:, column], dtype=np.float64)

"""The learner registry: every learner by name, built from parameter values.

An explicit dictionary, not a folder scan: a stored run says ``lightgbm`` and must mean one
class. Each class offers ``defaults()`` (every accepted parameter with its default), so an
unknown parameter name is an error listing the accepted ones rather than a silent no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, cast

from core.errors import UsageError
from models.learners.base import Learner, SearchSpace
from models.learners.baselines import ForestLearner, LogisticLearner
from models.learners.ensemble import SoftVoteLearner, StackingLearner
from models.learners.lightgbm import LightGBMClassifier, LightGBMRegressor
from models.learners.regime import RegimeDetector, RegimeGatedLearner


class LearnerClass(Protocol):
    """What the registry needs of a learner class: build it, list its defaults and space."""

    @property
    def name(self) -> str:
        """Return the name the class is registered under."""
        ...

    def __call__(
        self, params: Mapping[str, Any] | None = None, *, seed: int = 0, threads: int = 1
    ) -> Learner:
        """Build an unfitted learner."""
        ...

    def defaults(self) -> dict[str, Any]:
        """Return every accepted parameter with its default value."""
        ...

    def search_space(self) -> SearchSpace:
        """Return the hyper-parameters worth tuning and their ranges."""
        ...


LEARNERS: Mapping[str, LearnerClass] = MappingProxyType(
    {
        "lightgbm": LightGBMClassifier,
        "lightgbm_regressor": LightGBMRegressor,
        "logistic": LogisticLearner,
        "forest": ForestLearner,
        "ensemble": SoftVoteLearner,
        "stacking": StackingLearner,
    }
)


def learner_names() -> tuple[str, ...]:
    """Return the registered learner names, in registry order."""
    return tuple(LEARNERS)


def learner_class(name: str) -> LearnerClass:
    """Return the learner class registered as ``name``.

    Raises
    ------
    UsageError
        If the name is unknown, listing the registered names.
    """
    try:
        return LEARNERS[name]
    except KeyError:
        msg = f"unknown learner {name!r}; choose one of: {', '.join(learner_names())}"
        raise UsageError(msg) from None


def make_learner(
    name: str, params: Mapping[str, Any] | None = None, *, seed: int = 0, threads: int = 1
) -> Learner:
    """Build the unfitted learner ``name`` with ``params`` over its defaults.

    Parameters
    ----------
    name
        A registered learner name (:func:`learner_names`).
    params
        Hyper-parameter values; names not among the learner's defaults are refused.
    seed
        The learner's random seed.
    threads
        Threads the learner may use.

    Raises
    ------
    UsageError
        If the name is unknown (listing the registered ones), a parameter name is unknown
        (listing the accepted ones) or a value has the wrong type.
    """
    return learner_class(name)(params, seed=seed, threads=threads)


def search_space(name: str) -> SearchSpace:
    """Return the search space of the learner ``name``.

    Raises
    ------
    UsageError
        If the name is unknown, listing the registered names.
    """
    return learner_class(name).search_space()


def make_regime_learner(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    threads: int = 1,
    regime_columns: tuple[int, ...],
    n_regimes: int = 2,
    allowed: tuple[int, ...] | None = None,
    per_regime: bool = False,
) -> Learner:
    """Build the learner ``name`` wrapped in a :class:`RegimeGatedLearner`.

    The detector is a Gaussian mixture with ``n_regimes`` regimes on ``regime_columns`` of
    ``X``, seeded with ``seed``; see :class:`RegimeGatedLearner` for ``allowed`` and
    ``per_regime``.

    Raises
    ------
    UsageError
        As :func:`make_learner`, or if the regime settings are invalid.
    """
    base = make_learner(name, params, seed=seed, threads=threads)
    detector = RegimeDetector(n_regimes=n_regimes, seed=seed)
    gated = RegimeGatedLearner(
        base, detector, regime_columns=regime_columns, allowed=allowed, per_regime=per_regime
    )
    # The gate takes its target from the base learner per instance, which the protocol's
    # class-level ``target`` cannot express statically.
    return cast("Learner", gated)

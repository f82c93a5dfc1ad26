"""What every learner offers: fit on a training window, predict P(up), declare its search space.

A learner sees plain NumPy arrays: ``X`` (rows x features, float64, NaN for missing), the
target ``y`` and optional sample weights. Classifiers learn ``y`` in {0, 1} (1 = the label's
return was positive); regressors learn the label's log return and turn their prediction into
P(up) themselves. Either way :meth:`Learner.predict_proba` returns P(up), which is what the
``ml_model`` strategy trades on.

Search spaces are declarative (:class:`Dist`), so this package needs no tuning library: the
tuner in :mod:`pipelines.train` maps each :class:`Dist` onto its own sampler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, Self

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Target = Literal["class", "return"]


@dataclass(frozen=True)
class Dist:
    """One tunable hyper-parameter: an int or float range (``log`` for a log scale) or choices."""

    kind: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError("a categorical Dist needs choices")
            return
        if self.low is None or self.high is None or not self.low <= self.high:
            raise ValueError(f"a {self.kind} Dist needs low <= high, got {self.low}, {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale Dist needs low > 0")


SearchSpace = Mapping[str, Dist]


@dataclass(frozen=True)
class Validation:
    """A held-out part of the training window, for early stopping."""

    X: Floats
    y: npt.NDArray[Any]
    weight: Floats | None = None


class Learner(Protocol):
    """A model the research pipeline can tune, fit and ask for P(up).

    Required: ``name``, ``target``, :meth:`search_space`, :meth:`fit`, :meth:`predict_proba`,
    :meth:`feature_importance` and :meth:`get_params`. A learner is built unfitted with its
    hyper-parameters, a seed and a thread count (:func:`models.learners.make_learner`), is
    fitted once, and is picklable before and after fitting.
    """

    name: ClassVar[str]
    target: ClassVar[Target]

    @classmethod
    def search_space(cls) -> SearchSpace:
        """Return the hyper-parameters worth tuning and their ranges."""
        ...

    def fit(
        self,
        X: Floats,
        y: npt.NDArray[Any],
        *,
        weight: Floats | None = None,
        valid: Validation | None = None,
    ) -> Self:
        """Fit on the training rows; ``valid`` (when given) only steers early stopping."""
        ...

    def predict_proba(self, X: Floats) -> Floats:
        """Return P(up) for each row, in [0, 1]."""
        ...

    def feature_importance(self) -> Floats | None:
        """Return one non-negative importance per column, summing to 1, or None."""
        ...

    def get_params(self) -> dict[str, Any]:
        """Return the hyper-parameters the learner was built with (JSON-ready values)."""
        ...

"""A registered model's P(up) at each closed bar, for the ``ml_model`` strategy in the loop.

:class:`ModelSignals` is the runtime's feature source for a model: it turns each batch of
closed bars into their feature rows (:class:`~execution.live_features.LiveFeatures`), takes
the model's columns in the order it was trained on, and answers the model's probability of an
up move, with the version that gave it. Between batches it picks up a release a watcher
prepared (the alias the session follows moved): the new version must read columns the live
features provide and come from the same feature-set definition, or it is refused and the
running version keeps trading. An optional :class:`~execution.drift.DriftMonitor` is handed
each batch's model inputs and starts again with each release swapped in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from core.errors import UsageError
from core.ports import BarBatch
from execution.drift import DriftMonitor
from execution.live_features import LiveFeatures
from models.strategies.ml_model import DEFAULT_COLUMN, MODEL_VERSION_COLUMN
from pipelines.evaluate.drift import DriftReference


class Predictor(Protocol):
    """A fitted model: the columns it reads, in order, and P(up) for rows of them."""

    feature_names: Sequence[str]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return P(up) for each row of ``X``."""
        ...


@dataclass(frozen=True)
class ModelRelease:
    """One registered version of a model, loaded and ready to predict.

    Attributes
    ----------
    name, version
        The registered model and its version.
    predictor
        The fitted model.
    feature_set, feature_set_version
        The feature set it was trained on and the definition hash recorded with it.
    upper, lower, allow_short
        The trading rule it was judged with: long above ``upper``, short (or flat without
        ``allow_short``) below ``lower``.
    scores
        Its recorded out-of-sample scores.
    research_run
        The walk-forward run that judged and registered it ("" when unknown).
    timeframe
        The timeframe of the bars it was trained on ("" when unknown).
    drift
        What its drift is measured against (None: registered without one, not monitored).
    """

    name: str
    version: int
    predictor: Any
    feature_set: str
    feature_set_version: str
    upper: float
    lower: float
    allow_short: bool
    scores: dict[str, float]
    research_run: str = ""
    timeframe: str = ""
    drift: DriftReference | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Return the columns the model reads, in order."""
        return tuple(self.predictor.feature_names)

    @property
    def label(self) -> str:
        """Return ``NAME v<version>``."""
        return f"{self.name} v{self.version}"


def input_problems(
    release: ModelRelease, columns: Sequence[str], feature_set_version: str
) -> list[str]:
    """Return what keeps the live features from feeding ``release`` (empty: nothing).

    The live columns must cover the model's inputs, and the feature-set definition recorded
    with the model must equal the current one.
    """
    problems = []
    present = set(columns)
    missing = [name for name in release.feature_names if name not in present]
    if missing:
        shown = ", ".join(missing[:12]) + (
            f" and {len(missing) - 12} more" if len(missing) > 12 else ""
        )
        problems.append(
            f"the live features lack {len(missing)} of its {len(release.feature_names)} inputs "
            f"({shown})"
        )
    if release.feature_set_version != feature_set_version:
        problems.append(
            f"it was trained on feature set {release.feature_set!r} as defined by "
            f"{release.feature_set_version[:12] or 'nothing recorded'}, which is now defined by "
            f"{feature_set_version[:12]}"
        )
    return problems


def check_inputs(release: ModelRelease, columns: Sequence[str], feature_set_version: str) -> None:
    """Refuse a model the live features cannot feed as it was trained.

    Raises
    ------
    UsageError
        Naming each difference (exit status 2).
    """
    problems = input_problems(release, columns, feature_set_version)
    if problems:
        msg = (
            f"{release.label} cannot trade on these features: {'; '.join(problems)}. Retrain "
            "it on the current feature set (solodesk walkforward), or restore the definition "
            "it was trained on"
        )
        raise UsageError(msg)


class ReleaseSource(Protocol):
    """Where a new release of the followed model comes from (a registry watcher)."""

    def take(self) -> ModelRelease | None:
        """Return a release prepared since the last call, or None; never blocks."""
        ...


class ModelSignals:
    """The runtime's feature source for a model: P(up) and the version, per closed bar.

    Parameters
    ----------
    features
        The live features of the session's feature set.
    release
        The version to trade first.
    feature_set_version
        The current definition hash of the feature set (a new release must match it).
    source
        Optional: new releases of the model the session follows.
    on_reload
        Called with the version replaced and the new one after a reload, or with the running
        version and the refused one plus why (``problem``) when a release is refused.
    drift
        Optional: watches the inputs (and, through its equity reader, the P&L) of the
        release trading.
    """

    def __init__(
        self,
        features: LiveFeatures,
        release: ModelRelease,
        *,
        feature_set_version: str,
        source: ReleaseSource | None = None,
        on_reload: Callable[[ModelRelease, ModelRelease, str | None], None] | None = None,
        drift: DriftMonitor | None = None,
    ) -> None:
        check_inputs(release, features.columns, feature_set_version)
        self.features = features
        self.feature_set_version = feature_set_version
        self.source = source
        self.on_reload = on_reload
        self.release = release
        self._index = self._columns(release)
        self.drift = drift
        if drift is not None:
            drift.start(release.drift, release.label)
        #: Seconds spent bringing the live features up to the session's first bar.
        self.warmup_seconds = 0.0

    def _columns(self, release: ModelRelease) -> np.ndarray:
        where = {name: k for k, name in enumerate(self.features.columns)}
        return np.array([where[name] for name in release.feature_names], dtype=np.intp)

    def _reload(self) -> None:
        new = self.source.take() if self.source is not None else None
        if new is None or new.version == self.release.version:
            return
        old = self.release
        problems = input_problems(new, self.features.columns, self.feature_set_version)
        if problems:
            if self.on_reload is not None:
                self.on_reload(old, new, "; ".join(problems))
            return
        self.release = new
        self._index = self._columns(new)
        if self.drift is not None:
            self.drift.start(new.drift, new.label)
        if self.on_reload is not None:
            self.on_reload(old, new, None)

    def __call__(self, bars: BarBatch) -> dict[str, np.ndarray]:
        """Return ``proba`` and ``model_version`` for each bar of ``bars`` (closed, in order)."""
        self._reload()
        rows = self.features.push(bars)
        n = rows.shape[0]
        if n == 0:
            proba = np.empty(0)
        else:
            X = np.ascontiguousarray(rows[:, self._index])
            proba = np.asarray(self.release.predictor.predict_proba(X), dtype=np.float64)
            proba = proba.reshape(-1)
            if proba.shape[0] != n:
                msg = f"{self.release.label} returned {proba.shape[0]} probabilities for {n} rows"
                raise UsageError(msg)
            if self.drift is not None:
                self.drift.observe(X)
        version = np.full(n, float(self.release.version))
        return {DEFAULT_COLUMN: proba, MODEL_VERSION_COLUMN: version}

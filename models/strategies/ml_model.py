"""Model-driven positions: a predicted probability of an up move, turned into a target position."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import polars as pl
from numba import njit

from core.errors import UsageError
from models.strategies.base import ParamSpec, Signals
from models.strategies.indicators import as_float_array

DEFAULT_COLUMN = "proba"
#: A column a model's signals may carry beside P(up): the registered version that gave it.
MODEL_VERSION_COLUMN = "model_version"


class MlModel:
    """Hold the position a model's probability of an up move asks for.

    With p[i] = the feature ``column`` at bar i (P(up)): target +1 where p > upper; -1 where
    p < lower and ``allow_short`` (0 without it); in between 0, or with ``hold_between`` the
    previous bar's target (0 before the first decision); 0 where p is NaN or null, which
    also ends any position held. Needs lower <= upper.

    The probability column is a class attribute (``needs_features``) so that whoever loads the
    features knows what to read before the strategy exists; :meth:`for_column` makes the
    strategy for a differently named column.
    """

    name: ClassVar[str] = "ml_model"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(
            name="upper",
            kind="float",
            default=0.55,
            low=0.5,
            high=1.0,
            help="go long above this probability",
        ),
        ParamSpec(
            name="lower",
            kind="float",
            default=0.45,
            low=0.0,
            high=0.5,
            help="go short (or flat) below this probability",
        ),
        ParamSpec(
            name="column",
            kind="choice",
            default=DEFAULT_COLUMN,
            choices=(DEFAULT_COLUMN,),
            help="feature column holding P(up)",
        ),
        ParamSpec(
            name="allow_short",
            kind="bool",
            default=False,
            help="go short below lower instead of flat",
        ),
        ParamSpec(
            name="hold_between",
            kind="bool",
            default=False,
            help="between the thresholds keep the previous position instead of going flat",
        ),
    )
    needs_features: ClassVar[tuple[str, ...]] = (DEFAULT_COLUMN,)

    def __init__(
        self,
        *,
        upper: float = 0.55,
        lower: float = 0.45,
        column: str | None = None,
        allow_short: bool = False,
        hold_between: bool = False,
    ) -> None:
        self.check_params({"upper": upper, "lower": lower})
        self.upper = upper
        self.lower = lower
        self.column = column if column is not None else self.needs_features[0]
        self.allow_short = allow_short
        self.hold_between = hold_between

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(upper={self.upper}, lower={self.lower}, "
            f"column={self.column!r}, allow_short={self.allow_short}, "
            f"hold_between={self.hold_between})"
        )

    @classmethod
    def for_column(cls, column: str) -> type[MlModel]:
        """Return the strategy reading P(up) from ``column`` instead of ``proba``."""
        specs = tuple(
            spec.model_copy(update={"default": column, "choices": (column,)})
            if spec.name == "column"
            else spec
            for spec in cls.params
        )
        attributes = {"params": specs, "needs_features": (column,), "__module__": cls.__module__}
        return type(f"{cls.__name__}_{column}", (cls,), attributes)

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        """Check the thresholds are ordered: lower <= upper.

        Raises
        ------
        UsageError
            If lower > upper.
        """
        if values["lower"] > values["upper"]:
            msg = f"lower={values['lower']} must not be above upper={values['upper']}"
            raise UsageError(msg)

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        """Return the target position bar by bar from the probability column of ``features``.

        Raises
        ------
        UsageError
            If ``features`` is missing, lacks the column, or is not aligned with ``bars``.
        """
        if features is None or self.column not in features.columns:
            msg = f"strategy {self.name} reads the feature column {self.column!r}: not given"
            raise UsageError(msg)
        if features.height != bars.height:
            msg = (
                f"strategy {self.name}: {features.height} feature rows for {bars.height} bars; "
                "join the features to the bars first"
            )
            raise UsageError(msg)
        if (
            "ts" in features.columns
            and "ts" in bars.columns
            and not features["ts"].equals(bars["ts"])
        ):
            raise UsageError(f"strategy {self.name}: feature timestamps differ from the bars'")
        return Signals(target=self.target(as_float_array(features[self.column], self.column)))

    def target(self, proba: np.ndarray) -> np.ndarray:
        """Return the target positions for an array of probabilities (see the class)."""
        p = as_float_array(proba, self.column)
        missing = np.isnan(p)
        decided = np.full(p.shape, np.nan)
        decided[p > self.upper] = 1.0
        decided[p < self.lower] = -1.0 if self.allow_short else 0.0
        decided[missing] = 0.0
        if not self.hold_between:
            return np.where(np.isnan(decided), 0.0, decided)
        index = np.where(np.isnan(decided), -1, np.arange(p.shape[0]))
        last = np.maximum.accumulate(index) if p.shape[0] else index
        return np.where(last >= 0, decided[np.maximum(last, 0)], 0.0)

    def incremental(self) -> MlModelStream:
        """Return a fresh stream of this strategy's targets, computed from new bars only."""
        return MlModelStream(self)


@njit(cache=True, nogil=True)
def _stream_targets(
    p: np.ndarray, upper: float, lower: float, below: float, hold: bool, state: np.ndarray
) -> np.ndarray:  # pragma: no cover
    # MlModel.target bar by bar; state[0] is the last decided target (0 before any decision).
    out = np.empty(p.shape[0])
    last = state[0]
    for k in range(p.shape[0]):
        value = p[k]
        decided = np.nan
        if value > upper:
            decided = 1.0
        if value < lower:
            decided = below
        if np.isnan(value):
            decided = 0.0
        if np.isnan(decided):
            out[k] = last if hold else 0.0
        else:
            last = decided
            out[k] = decided
    state[0] = last
    return out


class MlModelStream:
    """:class:`MlModel` targets one batch of new bars at a time (a ``SignalStream``).

    Carries the last decided target (what ``hold_between`` keeps), so each bar costs constant
    work and the targets equal :meth:`MlModel.signals` on all bars so far. Reads the
    strategy's probability column from the new bars' features.
    """

    def __init__(self, strategy: MlModel) -> None:
        self.name = strategy.name
        self.column = strategy.column
        self.hold_between = strategy.hold_between
        self._state = np.zeros(1)
        self.trade_by(strategy)

    def trade_by(self, strategy: MlModel) -> None:
        """Take ``strategy``'s thresholds and short rule from the next bar on (state kept)."""
        self.upper = float(strategy.upper)
        self.lower = float(strategy.lower)
        self.below = -1.0 if strategy.allow_short else 0.0

    def update(
        self, bars: Mapping[str, np.ndarray], features: Mapping[str, np.ndarray] | None = None
    ) -> Signals:
        """Return the target positions at the new bars.

        Raises
        ------
        UsageError
            If ``features`` lacks the probability column or its length differs from the bars'.
        """
        if features is None or self.column not in features:
            msg = f"strategy {self.name} reads the feature column {self.column!r}: not given"
            raise UsageError(msg)
        proba = as_float_array(features[self.column], self.column)
        count = next((len(values) for values in bars.values()), proba.shape[0])
        if count != proba.shape[0]:
            msg = (
                f"strategy {self.name}: {proba.shape[0]} feature rows for {count} new bars; "
                "give the features of the same bars"
            )
            raise UsageError(msg)
        target = _stream_targets(
            proba, self.upper, self.lower, self.below, self.hold_between, self._state
        )
        return Signals(target=np.asarray(target))

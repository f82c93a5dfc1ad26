"""The strategy interface: bars and features in, signals or target positions out.

A strategy is a class with a ``name``, a tuple of declared parameters (``ParamSpec``) and a
``signals`` method. The backtest engine, the sweeps and the portfolio runner call nothing else.

The trading runtime feeds a strategy bar by bar. A strategy may offer ``incremental()``, which
returns a :class:`SignalStream`: given only the newly completed bars, it returns their signals,
equal bit for bit to the matching rows of ``signals()`` on every bar so far, in constant work
per bar. A strategy without it runs through the fallback in
:mod:`models.strategies.incremental`, which calls ``signals()`` on all the bars at each update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, model_validator

ParamKind = Literal["int", "float", "bool", "choice"]


class ParamSpec(BaseModel):
    """One declared strategy parameter: its type, default and the range a sweep may explore."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: ParamKind
    default: int | float | bool | str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[int | float | str, ...] = ()
    help: str = ""

    @model_validator(mode="after")
    def _range(self) -> ParamSpec:
        numeric = self.kind in ("int", "float")
        if numeric and (self.low is None or self.high is None or self.low > self.high):
            msg = f"parameter {self.name}: numeric parameters need low <= high"
            raise ValueError(msg)
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"parameter {self.name}: a choice parameter needs choices")
        return self


@dataclass(frozen=True)
class Signals:
    """What a strategy asks for, bar by bar, aligned with the bars it was given.

    Either event signals (``entries``/``exits`` for longs, ``short_entries``/``short_exits``
    for shorts; boolean arrays) or ``target``: the wanted position as a signed fraction of the
    sizing rule's full size (1 = full long, -1 = full short, 0 = flat, NaN = leave as is).
    A signal at bar i is acted on at bar i's close or bar i+1's open, as the backtest says.
    """

    entries: np.ndarray | None = None
    exits: np.ndarray | None = None
    short_entries: np.ndarray | None = None
    short_exits: np.ndarray | None = None
    target: np.ndarray | None = None

    def __post_init__(self) -> None:
        events = (self.entries, self.exits, self.short_entries, self.short_exits)
        if self.target is None and all(e is None for e in events):
            raise ValueError("signals need entries/exits or a target")
        if self.target is not None and any(e is not None for e in events):
            raise ValueError("signals are either events or a target, not both")

    def __len__(self) -> int:
        for array in (self.target, self.entries, self.exits, self.short_entries):
            if array is not None:
                return len(array)
        return len(self.short_exits)  # type: ignore[arg-type]


@runtime_checkable
class Strategy(Protocol):
    """A trading strategy, constructed with its parameter values as keyword arguments.

    Required: ``name`` (unique, snake_case), ``params`` (declared parameters) and ``signals``.
    ``needs_features`` names the feature columns the strategy reads (empty: bars only).
    Optional: ``incremental()``, returning a :class:`SignalStream` (see
    :class:`IncrementalStrategy`).
    """

    name: ClassVar[str]
    params: ClassVar[tuple[ParamSpec, ...]]
    needs_features: ClassVar[tuple[str, ...]]

    def __init__(self, **values: Any) -> None: ...

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        """Return the signals for ``bars`` (ts, open, high, low, close[, spread, volume])."""
        ...


@runtime_checkable
class SignalStream(Protocol):
    """Signals of a growing series of bars, computed from the new bars alone.

    The contract: after updates with batches b1, b2, ..., bk (consecutive bars of one series,
    in order), the concatenated results equal ``strategy.signals()`` on b1 + ... + bk: the same
    kind (events or target), the same arrays bit for bit, NaN where ``signals()`` has NaN. It
    holds because a strategy's signal at bar i depends on bars 0..i only (the prefix property
    the point-in-time tests prove). A stream serves one series from its first bar; make a new
    one with ``strategy.incremental()`` to start again.
    """

    def update(
        self,
        bars: Mapping[str, np.ndarray],
        features: Mapping[str, np.ndarray] | None = None,
    ) -> Signals:
        """Return the signals of the new bars only, aligned with them.

        Parameters
        ----------
        bars
            The newly completed bars: float64 arrays ``open``, ``high``, ``low``, ``close``,
            ``volume``, ``spread`` and int64 ``ts`` (bar open time, ns UTC), all one length
            (zero is allowed and returns empty arrays).
        features
            The strategy's ``needs_features`` columns for the same new bars, or None when it
            reads none.
        """
        ...


@runtime_checkable
class IncrementalStrategy(Strategy, Protocol):
    """A strategy that also computes its signals bar by bar (the optional ``incremental``)."""

    def incremental(self) -> SignalStream:
        """Return a fresh stream, positioned before the first bar of a series."""
        ...

"""Bar-by-bar features for the live loop, equal bit for bit to the batch computation.

:class:`OnlineFeatures` builds the same feature expressions as
:func:`~pipelines.features.registry.compute_features`, inside
:func:`~pipelines.features._common.online_build`: their smoothing and sliding-window steps
keep their kernel state between bars and run only on the bars appended since the last
evaluation, exactly as the batch run passes over them. Shifts and the stateless windows
(min, max, weighted sums) read the last bars, which the instance retains: as many as the
deepest warm-up of the set, plus one.

Replaying a series one bar at a time from its first bar therefore gives, at every bar, the
values the batch computation gives on the whole series, and so does starting from a history
(``history=``) and continuing bar by bar. Starting from only the last bars is a different
computation: recursive features then approach the full-history values within their declared
``tolerance`` after ``lookback`` bars (:class:`~pipelines.features.registry.FeatureSpec`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import polars as pl

from core.errors import UsageError
from core.types import VolumeKind
from pipelines.features._common import OnlineState, online_build
from pipelines.features.registry import (
    FeatureSpec,
    checked_specs,
    feature_expr,
    without_sorted_flags,
)

Values = dict[str, Any]


class OnlineFeatures:
    """Features of one series, updated one bar (or a few bars) at a time.

    Parameters
    ----------
    specs
        The feature set, e.g. :func:`~pipelines.features.registry.default_feature_set`.
    has_spread, volume_kind
        As for :func:`~pipelines.features.registry.compute_features`.
    history
        Bars to start from (``ts`` ascending); they are processed as one batch.

    Examples
    --------
    >>> online = OnlineFeatures(default_feature_set(), has_spread=False,
    ...                         volume_kind=VolumeKind.TICK, history=bars)  # doctest: +SKIP
    >>> online.update({"ts": ts, "open": o, "high": h, "low": l, "close": c,
    ...                "volume": v})["rsi_14"]  # doctest: +SKIP
    """

    def __init__(
        self,
        specs: Iterable[FeatureSpec],
        *,
        has_spread: bool,
        volume_kind: VolumeKind,
        history: pl.DataFrame | None = None,
    ) -> None:
        self._specs = list(specs)
        self._has_spread = has_spread
        self._volume_kind = volume_kind
        self._chosen: list[FeatureSpec] | None = None
        self._exprs: list[pl.Expr] = []
        self._clock: OnlineState | None = None
        self._frame: pl.DataFrame | None = None
        self.last: Values | None = None
        if history is not None and history.height > 0:
            self.update(history)

    @property
    def names(self) -> list[str]:
        """Feature names in output order (known once the first bar arrived)."""
        return [s.name for s in self._chosen or []]

    @property
    def retained(self) -> int:
        """Number of bars the instance keeps for shifts and stateless windows."""
        return self._clock.keep if self._clock else 0

    def _build(self, columns: list[str]) -> None:
        chosen = checked_specs(
            self._specs, columns, has_spread=self._has_spread, volume_kind=self._volume_kind
        )
        keep = max((s.warmup for s in chosen), default=0) + 2
        self._clock = OnlineState(keep=keep)
        with online_build(self._clock):
            self._exprs = [feature_expr(s).cast(pl.Float64) for s in chosen]
        self._chosen = chosen

    def update(self, bars: Mapping[str, Any] | pl.DataFrame) -> Values:
        """Append one bar (a mapping) or several (a frame) and return the last bar's features.

        Returns
        -------
        dict
            ``ts`` and every feature of the newest bar; ``None`` inside a feature's warm-up.

        Raises
        ------
        UsageError
            If a bar is not later than the previous one, or columns the set needs are missing.
        """
        rows = bars if isinstance(bars, pl.DataFrame) else pl.DataFrame([dict(bars)])
        if rows.height == 0:
            msg = "no bars to update with"
            raise UsageError(msg)
        if self._frame is None:
            self._build(rows.columns)
            frame = rows
        else:
            missing = [c for c in self._frame.columns if c not in rows.columns]
            if missing:
                msg = f"bar lacks column(s) {', '.join(missing)}"
                raise UsageError(msg)
            rows = rows.select(pl.col(c).cast(dtype) for c, dtype in self._frame.schema.items())
            frame = pl.concat([self._frame, rows], rechunk=True)
        self._check_order(frame, rows.height)
        frame = without_sorted_flags(frame)
        assert self._clock is not None
        self._clock.tick += 1
        self._clock.new_rows = rows.height
        # Collect every retained row: a slice pushed into the plan would hand the steps a
        # shorter column than the one their state follows.
        out = frame.lazy().select(pl.col("ts"), *self._exprs).collect(engine="in-memory")
        self._frame = frame.tail(self._clock.keep)
        self.last = out.row(-1, named=True)
        return self.last

    def _check_order(self, frame: pl.DataFrame, new_rows: int) -> None:
        start = max(frame.height - new_rows - 1, 0)
        ts = frame["ts"].slice(start)
        steps = ts.diff().slice(1).dt.total_microseconds()
        if ts.null_count() or (steps.len() > 0 and steps.min() <= 0):  # type: ignore[operator]
            first: datetime | None = frame["ts"][start]
            msg = (
                f"bars must arrive in strictly increasing time: got {ts.to_list()[1:]} "
                f"after {first}"
            )
            raise UsageError(msg)

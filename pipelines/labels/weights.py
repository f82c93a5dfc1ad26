"""Sample weights by label uniqueness (how much a label's span is shared with other labels)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import numpy.typing as npt
import polars as pl

from core.errors import UsageError
from core.timeframes import Timeframe


def average_uniqueness(
    entry: npt.NDArray[np.int64], exit: npt.NDArray[np.int64], n_bars: int
) -> npt.NDArray[np.float64]:
    """Return the average uniqueness of each label from the bar indices of its span.

    Label i spans the bars ``entry[i] + 1 .. exit[i]`` (the bars after the entry bar through the
    exit bar, inclusive): the bars whose returns the label is made of. The concurrency ``c_t`` is
    the number of labels whose span covers bar t, and ``u_i = mean(1 / c_t for t in span i)``.
    Computed in O(n) with a difference array for ``c_t`` and a prefix sum of ``1 / c_t``; the
    result is clipped to 1 against rounding, so ``0 < u_i <= 1``.

    Parameters
    ----------
    entry, exit
        Bar indices with ``0 <= entry[i] < exit[i] < n_bars``.
    n_bars
        Number of bars the indices point into.

    Raises
    ------
    UsageError
        If the indices break ``0 <= entry < exit < n_bars`` or have different lengths.
    """
    entry = np.asarray(entry, dtype=np.int64)
    exit = np.asarray(exit, dtype=np.int64)
    if entry.shape != exit.shape:
        msg = f"entry has {entry.size} indices, exit {exit.size}: pass one of each per label"
        raise UsageError(msg)
    if entry.size and not ((entry >= 0).all() and (exit > entry).all() and (exit < n_bars).all()):
        msg = f"label spans must satisfy 0 <= entry < exit < n_bars ({n_bars})"
        raise UsageError(msg)
    starts = np.bincount(entry + 1, minlength=n_bars + 1)
    ends = np.bincount(exit + 1, minlength=n_bars + 1)
    concurrency = np.cumsum(starts - ends)[:n_bars]
    inverse = np.zeros(n_bars, dtype=np.float64)
    np.divide(1.0, concurrency, out=inverse, where=concurrency > 0)
    prefix = np.concatenate(([0.0], np.cumsum(inverse)))
    uniqueness = (prefix[exit + 1] - prefix[entry + 1]) / (exit - entry)
    return np.minimum(uniqueness, 1.0)


def uniqueness_weights(labels: pl.DataFrame, timeframe: Timeframe) -> pl.Series:
    """Return the average uniqueness of each row's label as a sample weight named ``weight``.

    Row i of ``labels`` enters at bar i and exits at the bar ending at ``label_end[i]``, i.e. the
    bar with ``ts == label_end[i] - duration``; see :func:`average_uniqueness` for the span and
    the formula. Rows with a null ``label_end`` get a null weight and count for no concurrency.

    The weights depend on every label in the frame, including labels known later than a given
    row: compute them on a training window (after splitting), never feed them to a model at
    prediction time.

    Parameters
    ----------
    labels
        One row per bar, in bar order, with ``ts`` (bar open time) and ``label_end``.
    timeframe
        The bars' timeframe.

    Raises
    ------
    UsageError
        If a ``label_end`` is not the end of a bar of ``labels`` or not after the row's own bar.
    """
    ts = labels["ts"].dt.epoch("us").to_numpy()
    ends = labels["label_end"].dt.epoch("us")
    known = ends.is_not_null().to_numpy()
    entry = np.flatnonzero(known).astype(np.int64)
    exit_open = ends.drop_nulls().to_numpy() - timeframe.duration // timedelta(microseconds=1)
    exit = np.searchsorted(ts, exit_open).astype(np.int64)
    if exit.size and (
        (exit >= ts.size).any() or (ts[np.minimum(exit, ts.size - 1)] != exit_open).any()
    ):
        msg = "labels.label_end holds a time that is not the end of a bar in labels.ts: pass the frame make_labels returned"
        raise UsageError(msg)
    weights = np.full(labels.height, np.nan)
    weights[entry] = average_uniqueness(entry, exit, labels.height)
    return pl.Series("weight", weights).fill_nan(None)

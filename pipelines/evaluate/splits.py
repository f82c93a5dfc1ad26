"""Purged train / test splits of one bar series: walk-forward, purged k-fold and CPCV.

Rows are the samples of one bar series sorted by time. Row i opens at ``ts[i]`` and its label
becomes known at ``label_end[i] > ts[i]`` (both int64 nanoseconds since the epoch), so a model
trained on row i has seen everything in the closed interval ``[ts[i], label_end[i]]``.

A test set is made of contiguous blocks of rows. The time span of a block of rows
``first .. last`` is ``[ts[first], max(label_end[first .. last])]``: from the opening of its first
bar until the last of its labels is known. Two safeguards keep a training set honest
(López de Prado, *Advances in Financial Machine Learning*, ch. 7 and 12):

- **purging** drops every training row whose interval intersects the span of a test block;
- the **embargo** drops the ``embargo_bars`` rows right after each test block, whose features
  are serially correlated with the block's last rows.

Intervals are closed, so touching counts as overlap: a training label known at exactly
``ts[first]`` is purged, and so is a training row that opens exactly when the block's last label
is known. This costs at most one row at each edge and leaves no doubt about an instant the
training label and the test features share.

Every function here returns :class:`Split` objects holding sorted int64 row indices; a caller
selects its arrays or frames with them.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
import numpy.typing as npt

from core.errors import UsageError

IndexArray = npt.NDArray[np.int64]

MIN_TEST_BARS = 2
"""Fewest rows a walk-forward test block may hold."""


@dataclass(frozen=True, eq=False)
class Split:
    """One train / test split of the rows of a series.

    The index arrays are read-only. Splits compare by identity: compare their arrays with
    :func:`numpy.array_equal`.

    Attributes
    ----------
    fold
        0-based position of the split in the list it came from.
    train
        Sorted row indices to fit on, already purged and embargoed against ``test``.
    test
        Sorted row indices to predict out of sample.
    test_groups
        For CPCV, the groups that make up ``test``; ``()`` for walk-forward and k-fold.
    """

    fold: int
    train: IndexArray
    test: IndexArray
    test_groups: tuple[int, ...] = ()


def purge(
    train: IndexArray,
    test: IndexArray,
    ts: IndexArray,
    label_end: IndexArray,
    *,
    embargo_bars: int = 0,
) -> IndexArray:
    """Return the training rows that neither overlap a test block in time nor follow one closely.

    ``test`` is cut into its contiguous blocks of row indices. Training row i is dropped when

    - ``ts[i] <= max(label_end[first .. last])`` and ``label_end[i] >= ts[first]`` for some test
      block ``first .. last`` (closed intervals intersect), or
    - ``last < i <= last + embargo_bars`` for some test block (the embargo).

    Runs in O((n + blocks) log n): a row overlaps one of the blocks whose span starts no later
    than its label end exactly when the running maximum of those blocks' span ends reaches its
    ``ts``; the closest preceding block decides the embargo.

    Parameters
    ----------
    train, test
        Row indices into ``ts`` and ``label_end``; any order, duplicates ignored.
    ts
        Open time of each row, int64 nanoseconds, strictly increasing.
    label_end
        Moment each row's label is known, int64 nanoseconds, after ``ts``.
    embargo_bars
        Rows dropped right after each test block.

    Returns
    -------
    numpy.ndarray
        The kept training rows, sorted, int64.

    Raises
    ------
    UsageError
        If the series is malformed, an index is out of range or ``embargo_bars`` is negative.
    """
    ts_, label_end_ = _series(ts, label_end)
    embargo = _int_at_least(embargo_bars, "embargo_bars", 0)
    return _purge(
        _rows(train, "train", ts_.size), _rows(test, "test", ts_.size), ts_, label_end_, embargo
    )


def walk_forward_splits(
    ts: IndexArray,
    label_end: IndexArray,
    *,
    n_folds: int,
    scheme: Literal["rolling", "anchored"] = "rolling",
    train_bars: int | None = None,
    test_bars: int | None = None,
    embargo_bars: int = 0,
) -> list[Split]:
    """Split a series into consecutive out-of-sample test blocks, each trained on the rows before.

    The last ``n_folds * test_bars`` rows form ``n_folds`` consecutive test blocks of
    ``test_bars`` rows; the rows before the first block are the initial training span. Fold k
    trains on

    - ``rolling``: the ``train_bars`` rows just before test block k;
    - ``anchored``: every row from 0 up to test block k;

    purged against block k. Every training row precedes its test block, so the embargo, which
    drops rows after a test block, removes nothing here; it is accepted so the three split
    schemes take the same arguments.

    Parameters
    ----------
    ts, label_end
        Open time and label-known time of each row, int64 nanoseconds (see the module).
    n_folds
        Number of test blocks, at least 1.
    scheme
        ``"rolling"`` (a window of fixed length) or ``"anchored"`` (a window growing from row 0).
    train_bars
        Rolling window length; defaults to the initial training span. Rolling only.
    test_bars
        Rows per test block, at least 2; defaults to ``n // (n_folds + 2)``, which leaves about
        two blocks' worth of rows (plus the remainder) for the initial training span.
    embargo_bars
        Rows dropped after each test block (see above).

    Returns
    -------
    list[Split]
        One split per fold, in time order.

    Raises
    ------
    UsageError
        If an argument is out of range, the series is malformed or too short for the folds, or
        purging leaves a fold without training rows.
    """
    ts_, label_end_ = _series(ts, label_end)
    n = ts_.size
    folds = _int_at_least(n_folds, "n_folds", 1)
    embargo = _int_at_least(embargo_bars, "embargo_bars", 0)
    if scheme not in ("rolling", "anchored"):
        msg = f"scheme {scheme!r} is unknown: use 'rolling' or 'anchored'"
        raise UsageError(msg)
    if test_bars is None:
        block = n // (folds + 2)
        if block < MIN_TEST_BARS:
            msg = (
                f"{n} rows are too few for {folds} walk-forward folds: the default test block "
                f"of n // (n_folds + 2) = {block} rows needs at least {MIN_TEST_BARS}; "
                f"give at least {MIN_TEST_BARS * (folds + 2)} rows or fewer folds"
            )
            raise UsageError(msg)
    else:
        block = _int_at_least(test_bars, "test_bars", MIN_TEST_BARS)
    first_test = n - folds * block
    if first_test < 1:
        msg = (
            f"{folds} folds of {block} test rows need more than the {n} rows given, leaving "
            "rows to train on: lower n_folds or test_bars"
        )
        raise UsageError(msg)
    if train_bars is None:
        window = first_test
    elif scheme == "anchored":
        msg = (
            "train_bars sets the window of the rolling scheme only; the anchored scheme trains "
            "on every row before the test block: drop train_bars or use scheme='rolling'"
        )
        raise UsageError(msg)
    else:
        window = _int_at_least(train_bars, "train_bars", 1)
        if window > first_test:
            msg = (
                f"train_bars {window} exceeds the {first_test} rows before the first test "
                "block: lower train_bars, or lower test_bars or n_folds"
            )
            raise UsageError(msg)
    splits = []
    for fold in range(folds):
        start = first_test + fold * block
        lo = 0 if scheme == "anchored" else start - window
        test = np.arange(start, start + block, dtype=np.int64)
        train = _purge(np.arange(lo, start, dtype=np.int64), test, ts_, label_end_, embargo)
        _require_training(train, f"walk-forward fold {fold}")
        splits.append(_split(fold, train, test))
    return splits


def purged_kfold_splits(
    ts: IndexArray,
    label_end: IndexArray,
    *,
    n_splits: int,
    embargo_bars: int = 0,
) -> list[Split]:
    """Split a series into k contiguous test blocks, each trained on every other row, purged.

    The blocks are those of :func:`group_bounds` (sizes differ by at most one) and together
    cover every row once. The training rows of a fold lie on both sides of its test block, so
    the embargo matters here. Meant for tuning inside one training window, where the order of
    the folds does not matter.

    Parameters
    ----------
    ts, label_end
        Open time and label-known time of each row, int64 nanoseconds (see the module).
    n_splits
        Number of folds, at least 2 and at most the number of rows.
    embargo_bars
        Rows dropped after each test block.

    Returns
    -------
    list[Split]
        One split per test block, in row order.

    Raises
    ------
    UsageError
        If an argument is out of range, the series is malformed, or purging leaves a fold
        without training rows.
    """
    ts_, label_end_ = _series(ts, label_end)
    k = _int_at_least(n_splits, "n_splits", 2)
    embargo = _int_at_least(embargo_bars, "embargo_bars", 0)
    every_row = np.arange(ts_.size, dtype=np.int64)
    splits = []
    for fold, (start, stop) in enumerate(group_bounds(ts_.size, k)):
        test = every_row[start:stop]
        others = np.concatenate((every_row[:start], every_row[stop:]))
        train = _purge(others, test, ts_, label_end_, embargo)
        _require_training(train, f"k-fold split {fold}")
        splits.append(_split(fold, train, test))
    return splits


def cpcv_splits(
    ts: IndexArray,
    label_end: IndexArray,
    *,
    n_groups: int,
    n_test_groups: int,
    embargo_bars: int = 0,
) -> list[Split]:
    """Split a series for combinatorial purged cross-validation (CPCV).

    The rows are cut into ``n_groups`` = N contiguous groups (:func:`group_bounds`); each
    combination of ``n_test_groups`` = k groups, in :func:`itertools.combinations` order, is one
    split testing those groups and training on the rows of the others, purged and embargoed
    against every test block. That makes C(N, k) splits in which every group is tested
    C(N−1, k−1) times; :func:`cpcv_paths` strings their predictions into backtest paths.

    Parameters
    ----------
    ts, label_end
        Open time and label-known time of each row, int64 nanoseconds (see the module).
    n_groups
        N, at least 2 and at most the number of rows.
    n_test_groups
        k, from 1 to N − 1.
    embargo_bars
        Rows dropped after each test block.

    Returns
    -------
    list[Split]
        The C(N, k) splits, ``test_groups`` set.

    Raises
    ------
    UsageError
        If an argument is out of range, the series is malformed, or purging leaves a split
        without training rows.
    """
    ts_, label_end_ = _series(ts, label_end)
    groups, tested = _cpcv_shape(n_groups, n_test_groups)
    embargo = _int_at_least(embargo_bars, "embargo_bars", 0)
    bounds = group_bounds(ts_.size, groups)
    ranges = [np.arange(start, stop, dtype=np.int64) for start, stop in bounds]
    splits = []
    for fold, combo in enumerate(combinations(range(groups), tested)):
        chosen = set(combo)
        test = np.concatenate([ranges[g] for g in combo])
        others = np.concatenate([ranges[g] for g in range(groups) if g not in chosen])
        train = _purge(others, test, ts_, label_end_, embargo)
        _require_training(train, f"CPCV split {fold} (testing groups {combo})")
        splits.append(_split(fold, train, test, combo))
    return splits


def cpcv_n_paths(n_groups: int, n_test_groups: int) -> int:
    """Return the number of CPCV backtest paths, φ = k/N · C(N, k) = C(N−1, k−1).

    Parameters
    ----------
    n_groups
        N, at least 2.
    n_test_groups
        k, from 1 to N − 1.

    Returns
    -------
    int
        How many complete out-of-sample paths the C(N, k) splits make.

    Raises
    ------
    UsageError
        If N or k is out of range.
    """
    groups, tested = _cpcv_shape(n_groups, n_test_groups)
    return math.comb(groups - 1, tested - 1)


def cpcv_paths(n_groups: int, n_test_groups: int) -> list[list[tuple[int, int]]]:
    """Return the CPCV backtest paths as (group, split index) pairs, one per group.

    Each group is tested by φ = C(N−1, k−1) splits (see :func:`cpcv_splits`). Path p takes, for
    every group g = 0 .. N−1 in order, the p-th split (in split order) that tests g; so each
    path covers every group once with a split whose test set holds it, and every (group, split)
    pair with the split testing the group belongs to exactly one path.

    Parameters
    ----------
    n_groups
        N, at least 2.
    n_test_groups
        k, from 1 to N − 1.

    Returns
    -------
    list[list[tuple[int, int]]]
        φ paths of N ``(group, split index)`` pairs each.

    Raises
    ------
    UsageError
        If N or k is out of range.
    """
    groups, tested = _cpcv_shape(n_groups, n_test_groups)
    testers: list[list[int]] = [[] for _ in range(groups)]
    for split, combo in enumerate(combinations(range(groups), tested)):
        for group in combo:
            testers[group].append(split)
    n_paths = math.comb(groups - 1, tested - 1)
    return [[(group, testers[group][p]) for group in range(groups)] for p in range(n_paths)]


def group_bounds(n: int, n_groups: int) -> list[tuple[int, int]]:
    """Return the (start, stop) rows of ``n_groups`` contiguous groups covering ``n`` rows.

    Sizes differ by at most one: the first ``n % n_groups`` groups hold one row more.

    Parameters
    ----------
    n
        Number of rows.
    n_groups
        Number of groups, from 1 to ``n``.

    Returns
    -------
    list[tuple[int, int]]
        Half-open row ranges in order; each ``stop`` is the next ``start``, the last is ``n``.

    Raises
    ------
    UsageError
        If ``n_groups`` is below 1 or above ``n``.
    """
    rows = _int_at_least(n, "n", 0)
    groups = _int_at_least(n_groups, "n_groups", 1)
    if groups > rows:
        msg = f"{rows} rows cannot make {groups} non-empty groups: use at most {rows} groups"
        raise UsageError(msg)
    size, extra = divmod(rows, groups)
    bounds = []
    start = 0
    for g in range(groups):
        stop = start + size + (1 if g < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _purge(
    train: IndexArray, test: IndexArray, ts: IndexArray, label_end: IndexArray, embargo: int
) -> IndexArray:
    if train.size == 0 or test.size == 0:
        return train.copy()
    cuts = np.flatnonzero(np.diff(test) != 1) + 1
    first_pos = np.concatenate(([0], cuts))
    last_pos = np.concatenate((cuts - 1, [test.size - 1]))
    span_start = ts[test[first_pos]]
    span_end = np.maximum.reduceat(label_end[test], first_pos)
    reach = np.maximum.accumulate(span_end)
    # Blocks whose span starts no later than the row's label end; the latest of them all.
    started = np.searchsorted(span_start, label_end[train], side="right")
    overlap = (started > 0) & (reach[np.maximum(started - 1, 0)] >= ts[train])
    keep = ~overlap
    if embargo > 0:
        last = test[last_pos]
        before = np.searchsorted(last, train, side="left") - 1
        embargoed = (before >= 0) & (train - last[np.maximum(before, 0)] <= embargo)
        keep &= ~embargoed
    return train[keep]


def _series(ts: IndexArray, label_end: IndexArray) -> tuple[IndexArray, IndexArray]:
    times = _nanoseconds(ts, "ts")
    ends = _nanoseconds(label_end, "label_end")
    if times.size != ends.size:
        msg = (
            f"ts has {times.size} rows and label_end {ends.size}: pass one label end per row, "
            "dropping rows whose label is not known"
        )
        raise UsageError(msg)
    steps = np.diff(times)
    if steps.size and not (steps > 0).all():
        row = int(np.argmax(steps <= 0)) + 1
        msg = (
            f"ts is not strictly increasing at row {row} ({times[row - 1]} then {times[row]}): "
            "sort the rows by time and drop duplicate bars"
        )
        raise UsageError(msg)
    early = ends <= times
    if early.any():
        row = int(np.argmax(early))
        msg = (
            f"label_end at row {row} ({ends[row]}) is not after its ts ({times[row]}): a label is "
            "known only after its bar opens; fix label_end or drop the row"
        )
        raise UsageError(msg)
    return times, ends


def _nanoseconds(values: IndexArray, name: str) -> IndexArray:
    array = np.asarray(values)
    if array.ndim != 1:
        msg = f"{name} must be one-dimensional, got shape {array.shape}"
        raise UsageError(msg)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]").view(np.int64)
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    msg = (
        f"{name} has dtype {array.dtype}: pass int64 nanoseconds since the epoch (or "
        "datetime64), with rows whose label is unknown dropped"
    )
    raise UsageError(msg)


def _rows(values: IndexArray, name: str, n: int) -> IndexArray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        msg = f"{name} must be a one-dimensional array of integer row indices"
        raise UsageError(msg)
    rows = array.astype(np.int64, copy=False)
    if rows.size and (rows[0] < 0 or rows[-1] >= n or not (np.diff(rows) > 0).all()):
        rows = np.unique(rows)
        if rows[0] < 0 or rows[-1] >= n:
            msg = f"{name} holds row {rows[0] if rows[0] < 0 else rows[-1]} outside 0 .. {n - 1}"
            raise UsageError(msg)
    return rows


def _int_at_least(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        msg = f"{name} must be an integer, got {value!r}"
        raise UsageError(msg)
    try:
        number = operator.index(value)
    except TypeError:
        msg = f"{name} must be an integer, got {value!r}"
        raise UsageError(msg) from None
    if number < minimum:
        msg = f"{name} must be at least {minimum}, got {number}"
        raise UsageError(msg)
    return number


def _cpcv_shape(n_groups: int, n_test_groups: int) -> tuple[int, int]:
    groups = _int_at_least(n_groups, "n_groups", 2)
    tested = _int_at_least(n_test_groups, "n_test_groups", 1)
    if tested >= groups:
        msg = (
            f"n_test_groups {tested} leaves none of the {groups} groups to train on: "
            f"use at most {groups - 1}"
        )
        raise UsageError(msg)
    return groups, tested


def _require_training(train: IndexArray, what: str) -> None:
    if train.size == 0:
        msg = (
            f"{what} has no training rows left after purging and the embargo: "
            "use shorter labels, a smaller embargo_bars, or fewer folds or groups"
        )
        raise UsageError(msg)


def _split(fold: int, train: IndexArray, test: IndexArray, groups: tuple[int, ...] = ()) -> Split:
    train = np.array(train, dtype=np.int64)
    test = np.array(test, dtype=np.int64)
    train.setflags(write=False)
    test.setflags(write=False)
    return Split(fold=fold, train=train, test=test, test_groups=groups)

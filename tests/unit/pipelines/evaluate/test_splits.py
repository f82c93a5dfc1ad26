"""Purged splits: no training label overlaps a test window, the embargo holds, shapes are exact."""

from __future__ import annotations

import math
from itertools import combinations, pairwise

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UsageError
from pipelines.evaluate.splits import (
    Split,
    cpcv_n_paths,
    cpcv_paths,
    cpcv_splits,
    group_bounds,
    purge,
    purged_kfold_splits,
    walk_forward_splits,
)

Ints = npt.NDArray[np.int64]

MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
START = 1_600_000_000 * 10**9


def _hourly(n: int, label_hours: float = 0.5) -> tuple[Ints, Ints]:
    """Return n hourly bars whose labels are known ``label_hours`` after each bar opens."""
    ts = START + np.arange(n, dtype=np.int64) * HOUR
    return ts, ts + int(label_hours * HOUR)


@st.composite
def series(draw: st.DrawFn, min_rows: int = 2, max_rows: int = 60) -> tuple[Ints, Ints]:
    """Draw bar times with random gaps and labels of random length, on a whole-minute grid.

    The grid makes a label end fall exactly on another row's open time often, so the
    inclusive boundary is exercised.
    """
    n = draw(st.integers(min_rows, max_rows))
    gaps = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(1, 10), min_size=n, max_size=n))
    ts = START + np.cumsum(np.array(gaps, dtype=np.int64)) * MINUTE
    return ts, ts + np.array(lengths, dtype=np.int64) * MINUTE


def _blocks(test: Ints) -> list[tuple[int, int]]:
    """Return the (first, last) rows of each contiguous block of test rows."""
    blocks: list[tuple[int, int]] = []
    for row in sorted({int(r) for r in test}):
        if blocks and row == blocks[-1][1] + 1:
            blocks[-1] = (blocks[-1][0], row)
        else:
            blocks.append((row, row))
    return blocks


def _overlapping(train: Ints, test: Ints, ts: Ints, label_end: Ints) -> list[int]:
    """List the training rows whose interval meets a test block's span, closed on both ends."""
    spans = [(int(ts[f]), int(label_end[f : last + 1].max())) for f, last in _blocks(test)]
    return [
        int(i)
        for i in train
        if any(ts[i] <= span_end and label_end[i] >= span_start for span_start, span_end in spans)
    ]


def _embargoed(train: Ints, test: Ints, embargo_bars: int) -> list[int]:
    """List the training rows among the ``embargo_bars`` rows right after a test block."""
    lasts = [last for _, last in _blocks(test)]
    return [int(i) for i in train if any(0 < i - last <= embargo_bars for last in lasts)]


def _expected_purge(
    train: Ints, test: Ints, ts: Ints, label_end: Ints, embargo_bars: int
) -> list[int]:
    dropped = set(_overlapping(train, test, ts, label_end)) | set(
        _embargoed(train, test, embargo_bars)
    )
    return sorted({int(i) for i in train} - dropped)


def _assert_clean(split: Split, ts: Ints, label_end: Ints, embargo_bars: int) -> None:
    assert _overlapping(split.train, split.test, ts, label_end) == []
    assert _embargoed(split.train, split.test, embargo_bars) == []
    assert np.intersect1d(split.train, split.test).size == 0
    assert np.all(np.diff(split.train) > 0)
    assert np.all(np.diff(split.test) > 0)


# purge


@settings(max_examples=200, deadline=None)
@given(data=series(), seed=st.integers(0, 2**32 - 1), embargo_bars=st.integers(0, 4))
def test_purge_random_blocks_matches_brute_force(
    data: tuple[Ints, Ints], seed: int, embargo_bars: int
) -> None:
    # Arrange
    ts, label_end = data
    rng = np.random.default_rng(seed)
    in_test = rng.random(ts.size) < rng.uniform(0.1, 0.6)
    test = np.flatnonzero(in_test).astype(np.int64)
    train = np.flatnonzero(~in_test).astype(np.int64)

    # Act
    kept = purge(train, test, ts, label_end, embargo_bars=embargo_bars)

    # Assert
    assert kept.tolist() == _expected_purge(train, test, ts, label_end, embargo_bars)
    assert _overlapping(kept, test, ts, label_end) == []
    assert _embargoed(kept, test, embargo_bars) == []


def test_purge_label_spanning_into_test_is_dropped() -> None:
    # Arrange: row 2's label is known at 6.5 h, inside the test block opening at 5 h.
    ts, label_end = _hourly(10)
    label_end[2] = ts[6] + HOUR // 2
    train = np.array([0, 1, 2, 3], dtype=np.int64)
    test = np.array([5, 6], dtype=np.int64)

    # Act
    kept = purge(train, test, ts, label_end)

    # Assert
    assert kept.tolist() == [0, 1, 3]


def test_purge_label_ending_at_test_open_is_dropped() -> None:
    # Arrange: row 4's label is known exactly when the first test bar opens (closed intervals).
    ts, label_end = _hourly(10)
    label_end[4] = ts[5]
    train = np.array([3, 4], dtype=np.int64)
    test = np.array([5, 6], dtype=np.int64)

    # Act
    kept = purge(train, test, ts, label_end)

    # Assert
    assert kept.tolist() == [3]


def test_purge_label_ending_just_before_test_open_is_kept() -> None:
    # Arrange: row 4's label is known one nanosecond before the first test bar opens.
    ts, label_end = _hourly(10)
    label_end[4] = ts[5] - 1
    train = np.array([3, 4], dtype=np.int64)
    test = np.array([5, 6], dtype=np.int64)

    # Act
    kept = purge(train, test, ts, label_end)

    # Assert
    assert kept.tolist() == [3, 4]


def test_purge_rows_opening_before_last_test_label_end_are_dropped() -> None:
    # Arrange: the block's last label is known at 8 h: rows 7 and 8 (opening at 8 h) overlap it.
    ts, label_end = _hourly(10)
    label_end[6] = ts[8]
    train = np.array([7, 8, 9], dtype=np.int64)
    test = np.array([5, 6], dtype=np.int64)

    # Act
    kept = purge(train, test, ts, label_end)

    # Assert
    assert kept.tolist() == [9]


def test_purge_embargo_drops_rows_after_each_block() -> None:
    # Arrange: two blocks, labels known within their own bar, an embargo of two bars.
    ts, label_end = _hourly(20)
    test = np.array([3, 4, 10, 11, 12], dtype=np.int64)
    train = np.setdiff1d(np.arange(20, dtype=np.int64), test)

    # Act
    kept = purge(train, test, ts, label_end, embargo_bars=2)

    # Assert
    assert kept.tolist() == [0, 1, 2, 7, 8, 9, 15, 16, 17, 18, 19]


def test_purge_embargo_past_last_row_drops_to_end() -> None:
    # Arrange
    ts, label_end = _hourly(20)
    test = np.array([18], dtype=np.int64)
    train = np.arange(18, dtype=np.int64)
    train = np.append(train, 19)

    # Act
    kept = purge(train, test, ts, label_end, embargo_bars=3)

    # Assert
    assert kept.tolist() == list(range(18))


def test_purge_unsorted_train_returns_sorted_unique_rows() -> None:
    # Arrange
    ts, label_end = _hourly(10)
    train = np.array([9, 0, 3, 0, 8], dtype=np.int64)
    test = np.array([5, 6], dtype=np.int64)

    # Act
    kept = purge(train, test, ts, label_end, embargo_bars=1)

    # Assert
    assert kept.tolist() == [0, 3, 8, 9]


def test_purge_empty_test_returns_train_copy() -> None:
    # Arrange
    ts, label_end = _hourly(5)
    train = np.arange(5, dtype=np.int64)

    # Act
    kept = purge(train, np.array([], dtype=np.int64), ts, label_end, embargo_bars=2)
    kept[0] = 99

    # Assert
    assert train.tolist() == [0, 1, 2, 3, 4]
    assert kept.tolist() == [99, 1, 2, 3, 4]


def test_purge_million_rows_ten_blocks_drops_only_embargo() -> None:
    # Arrange: one-minute bars with labels known a nanosecond after they open, ten test blocks.
    n = 1_000_000
    ts = START + np.arange(n, dtype=np.int64) * MINUTE
    label_end = ts + 1
    in_test = np.zeros(n, dtype=bool)
    for start, _ in group_bounds(n, 10):
        in_test[start : start + 1_000] = True
    test = np.flatnonzero(in_test).astype(np.int64)
    train = np.flatnonzero(~in_test).astype(np.int64)

    # Act
    kept = purge(train, test, ts, label_end, embargo_bars=5)

    # Assert
    assert kept.size == n - 10_000 - 10 * 5
    assert not np.isin(np.arange(1_000, 1_005), kept).any()
    assert np.isin(np.arange(1_005, 1_010), kept).all()


@pytest.mark.parametrize(
    ("train", "test", "embargo_bars", "match"),
    [
        ([0, 10], [5], 0, "train holds row 10 outside 0 .. 9"),
        ([0, 1], [-1], 0, "test holds row -1"),
        ([0, 1], [5], -1, "embargo_bars must be at least 0"),
        ([0.0, 1.0], [5], 0, "train must be a one-dimensional array of integer"),
    ],
)
def test_purge_bad_argument_raises_usage_error(
    train: list[float], test: list[int], embargo_bars: int, match: str
) -> None:
    # Arrange
    ts, label_end = _hourly(10)

    # Act / Assert
    with pytest.raises(UsageError, match=match):
        purge(np.array(train), np.array(test), ts, label_end, embargo_bars=embargo_bars)


# walk-forward


@st.composite
def walk_forward_cases(
    draw: st.DrawFn,
) -> tuple[Ints, Ints, int, str, int | None, int | None, int]:
    folds = draw(st.integers(1, 4))
    ts, label_end = draw(series(min_rows=2 * (folds + 2), max_rows=60))
    n = ts.size
    test_bars = draw(st.none() | st.integers(2, (n - 1) // folds))
    block = n // (folds + 2) if test_bars is None else test_bars
    first_test = n - folds * block
    scheme = draw(st.sampled_from(["rolling", "anchored"]))
    train_bars = None
    if scheme == "rolling":
        train_bars = draw(st.none() | st.integers(1, first_test))
    embargo_bars = draw(st.integers(0, 3))
    return ts, label_end, folds, scheme, train_bars, test_bars, embargo_bars


@settings(max_examples=200, deadline=None)
@given(case=walk_forward_cases())
def test_walk_forward_splits_random_series_keep_every_invariant(
    case: tuple[Ints, Ints, int, str, int | None, int | None, int],
) -> None:
    # Arrange
    ts, label_end, folds, scheme, train_bars, test_bars, embargo_bars = case
    n = ts.size
    block = n // (folds + 2) if test_bars is None else test_bars
    first_test = n - folds * block
    window = first_test if train_bars is None else train_bars
    starts = [first_test + k * block for k in range(folds)]
    expected_train = [
        [i for i in range(0 if scheme == "anchored" else s - window, s) if label_end[i] < ts[s]]
        for s in starts
    ]

    # Act
    try:
        splits = walk_forward_splits(
            ts,
            label_end,
            n_folds=folds,
            scheme=scheme,  # type: ignore[arg-type]
            train_bars=train_bars,
            test_bars=test_bars,
            embargo_bars=embargo_bars,
        )
    except UsageError as error:
        # Assert: refused only when purging empties a fold.
        assert "no training rows" in str(error)
        assert any(rows == [] for rows in expected_train)
        return

    # Assert
    assert [s.fold for s in splits] == list(range(folds))
    assert all(s.test_groups == () for s in splits)
    assert np.concatenate([s.test for s in splits]).tolist() == list(range(first_test, n))
    for split, start, rows in zip(splits, starts, expected_train, strict=True):
        assert split.test.tolist() == list(range(start, start + block))
        assert split.train.tolist() == rows
        assert split.train.max() < start
        if scheme == "rolling":
            assert split.train.size <= window
            assert split.train.min() >= start - window
        _assert_clean(split, ts, label_end, embargo_bars)


def test_walk_forward_splits_rolling_defaults_slide_window() -> None:
    # Arrange: 20 rows, 3 folds: test blocks of 20 // 5 = 4 rows after 8 training rows.
    ts, label_end = _hourly(20)

    # Act
    splits = walk_forward_splits(ts, label_end, n_folds=3)

    # Assert
    assert [s.train.tolist() for s in splits] == [
        list(range(0, 8)),
        list(range(4, 12)),
        list(range(8, 16)),
    ]
    assert [s.test.tolist() for s in splits] == [
        list(range(8, 12)),
        list(range(12, 16)),
        list(range(16, 20)),
    ]


def test_walk_forward_splits_anchored_trains_from_row_zero() -> None:
    # Arrange: labels known 1.5 bars after open, so the last row before each block is purged.
    ts, label_end = _hourly(22, label_hours=1.5)

    # Act
    splits = walk_forward_splits(ts, label_end, n_folds=3, scheme="anchored")

    # Assert: blocks of 22 // 5 = 4 rows start at row 10.
    assert [s.train.tolist() for s in splits] == [
        list(range(0, 9)),
        list(range(0, 13)),
        list(range(0, 17)),
    ]
    assert [s.test[0] for s in splits] == [10, 14, 18]


def test_walk_forward_splits_datetime_input_equals_int_input() -> None:
    # Arrange
    ts, label_end = _hourly(30, label_hours=2.5)

    # Act
    from_ints = walk_forward_splits(ts, label_end, n_folds=2, train_bars=6, test_bars=5)
    from_times = walk_forward_splits(
        ts.astype("datetime64[ns]"),
        label_end.astype("datetime64[ns]"),
        n_folds=2,
        train_bars=6,
        test_bars=5,
    )

    # Assert
    assert [s.train.tolist() for s in from_ints] == [s.train.tolist() for s in from_times]
    assert [s.train.tolist() for s in from_ints] == [[14, 15, 16, 17], [19, 20, 21, 22]]


def test_walk_forward_splits_arrays_are_read_only() -> None:
    # Arrange
    ts, label_end = _hourly(20)
    split = walk_forward_splits(ts, label_end, n_folds=2)[0]

    # Act / Assert
    with pytest.raises(ValueError, match="read-only"):
        split.train[0] = 5


@pytest.mark.parametrize(
    ("n", "kwargs", "match"),
    [
        (20, {"n_folds": 0}, "n_folds must be at least 1"),
        (7, {"n_folds": 2}, "7 rows are too few for 2 walk-forward folds"),
        (20, {"n_folds": 2, "test_bars": 1}, "test_bars must be at least 2"),
        (20, {"n_folds": 3, "test_bars": 7}, "lower n_folds or test_bars"),
        (20, {"n_folds": 2, "scheme": "expanding"}, "scheme 'expanding' is unknown"),
        (20, {"n_folds": 2, "scheme": "anchored", "train_bars": 5}, "drop train_bars"),
        (20, {"n_folds": 2, "train_bars": 11}, "train_bars 11 exceeds the 10 rows"),
        (20, {"n_folds": 2, "train_bars": 0}, "train_bars must be at least 1"),
        (20, {"n_folds": 2, "embargo_bars": -2}, "embargo_bars must be at least 0"),
        (20, {"n_folds": 2.0}, "n_folds must be an integer"),
    ],
)
def test_walk_forward_splits_bad_argument_raises_usage_error(
    n: int, kwargs: dict[str, object], match: str
) -> None:
    # Arrange
    ts, label_end = _hourly(n)

    # Act / Assert
    with pytest.raises(UsageError, match=match):
        walk_forward_splits(ts, label_end, **kwargs)  # type: ignore[arg-type]


def test_walk_forward_splits_labels_covering_window_raise_usage_error() -> None:
    # Arrange: every label outlasts the whole series, so purging leaves nothing to train on.
    ts, label_end = _hourly(20, label_hours=30)

    # Act / Assert
    with pytest.raises(UsageError, match="walk-forward fold 0 has no training rows"):
        walk_forward_splits(ts, label_end, n_folds=2)


def test_walk_forward_splits_unsorted_ts_raises_usage_error() -> None:
    # Arrange
    ts, label_end = _hourly(20)
    ts[[6, 7]] = ts[[7, 6]]

    # Act / Assert
    with pytest.raises(UsageError, match="ts is not strictly increasing at row 7"):
        walk_forward_splits(ts, label_end, n_folds=2)


def test_walk_forward_splits_duplicate_ts_raises_usage_error() -> None:
    # Arrange
    ts, label_end = _hourly(20)
    ts[4] = ts[3]

    # Act / Assert
    with pytest.raises(UsageError, match="drop duplicate bars"):
        walk_forward_splits(ts, label_end, n_folds=2)


def test_walk_forward_splits_label_end_not_after_ts_raises_usage_error() -> None:
    # Arrange
    ts, label_end = _hourly(20)
    label_end[9] = ts[9]

    # Act / Assert
    with pytest.raises(UsageError, match="label_end at row 9"):
        walk_forward_splits(ts, label_end, n_folds=2)


def test_walk_forward_splits_mismatched_lengths_raise_usage_error() -> None:
    # Arrange
    ts, label_end = _hourly(20)

    # Act / Assert
    with pytest.raises(UsageError, match="ts has 20 rows and label_end 19"):
        walk_forward_splits(ts, label_end[:-1], n_folds=2)


def test_walk_forward_splits_float_times_raise_usage_error() -> None:
    # Arrange
    ts, label_end = _hourly(20)

    # Act / Assert
    with pytest.raises(UsageError, match="label_end has dtype float64"):
        walk_forward_splits(ts, label_end.astype(float), n_folds=2)


# purged k-fold


@settings(max_examples=150, deadline=None)
@given(data=series(min_rows=2), k=st.integers(2, 6), embargo_bars=st.integers(0, 3))
def test_purged_kfold_splits_random_series_partition_and_purge(
    data: tuple[Ints, Ints], k: int, embargo_bars: int
) -> None:
    # Arrange
    ts, label_end = data
    n = ts.size
    k = min(k, n)
    every_row = np.arange(n, dtype=np.int64)

    # Act
    try:
        splits = purged_kfold_splits(ts, label_end, n_splits=k, embargo_bars=embargo_bars)
    except UsageError as error:
        # Assert: refused only when purging empties a fold.
        assert "no training rows" in str(error)
        assert any(
            _expected_purge(
                np.setdiff1d(every_row, every_row[a:b]), every_row[a:b], ts, label_end, embargo_bars
            )
            == []
            for a, b in group_bounds(n, k)
        )
        return

    # Assert
    tests = [s.test for s in splits]
    assert np.concatenate(tests).tolist() == list(range(n))
    assert max(t.size for t in tests) - min(t.size for t in tests) <= 1
    for fold, split in enumerate(splits):
        assert split.fold == fold
        assert len(_blocks(split.test)) == 1
        others = np.setdiff1d(every_row, split.test)
        assert split.train.tolist() == _expected_purge(
            others, split.test, ts, label_end, embargo_bars
        )
        _assert_clean(split, ts, label_end, embargo_bars)


def test_purged_kfold_splits_small_series_purges_both_sides() -> None:
    # Arrange: labels known 1.5 bars after open; blocks 0..3, 4..6, 7..9; one bar of embargo.
    ts, label_end = _hourly(10, label_hours=1.5)

    # Act
    splits = purged_kfold_splits(ts, label_end, n_splits=3, embargo_bars=1)

    # Assert
    assert [s.test.tolist() for s in splits] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [s.train.tolist() for s in splits] == [
        [5, 6, 7, 8, 9],
        [0, 1, 2, 8, 9],
        [0, 1, 2, 3, 4, 5],
    ]


@pytest.mark.parametrize(
    ("n", "n_splits", "match"),
    [
        (10, 1, "n_splits must be at least 2"),
        (3, 4, "3 rows cannot make 4 non-empty groups"),
    ],
)
def test_purged_kfold_splits_bad_argument_raises_usage_error(
    n: int, n_splits: int, match: str
) -> None:
    # Arrange
    ts, label_end = _hourly(n)

    # Act / Assert
    with pytest.raises(UsageError, match=match):
        purged_kfold_splits(ts, label_end, n_splits=n_splits)


# CPCV


@st.composite
def cpcv_cases(draw: st.DrawFn) -> tuple[Ints, Ints, int, int, int]:
    groups = draw(st.integers(2, 6))
    tested = draw(st.integers(1, groups - 1))
    ts, label_end = draw(series(min_rows=groups, max_rows=60))
    return ts, label_end, groups, tested, draw(st.integers(0, 3))


@settings(max_examples=150, deadline=None)
@given(case=cpcv_cases())
def test_cpcv_splits_random_series_test_every_combination_purged(
    case: tuple[Ints, Ints, int, int, int],
) -> None:
    # Arrange
    ts, label_end, groups, tested, embargo_bars = case
    bounds = group_bounds(ts.size, groups)
    every_row = np.arange(ts.size, dtype=np.int64)

    # Act
    try:
        splits = cpcv_splits(
            ts, label_end, n_groups=groups, n_test_groups=tested, embargo_bars=embargo_bars
        )
    except UsageError as error:
        # Assert: refused only when purging empties a split.
        assert "no training rows" in str(error)
        tests = [
            np.concatenate([every_row[slice(*bounds[g])] for g in combo])
            for combo in combinations(range(groups), tested)
        ]
        assert any(
            _expected_purge(np.setdiff1d(every_row, t), t, ts, label_end, embargo_bars) == []
            for t in tests
        )
        return

    # Assert
    assert len(splits) == math.comb(groups, tested)
    assert [s.test_groups for s in splits] == list(combinations(range(groups), tested))
    times_tested = [sum(g in s.test_groups for s in splits) for g in range(groups)]
    assert times_tested == [math.comb(groups - 1, tested - 1)] * groups
    for fold, split in enumerate(splits):
        assert split.fold == fold
        rows = [r for g in split.test_groups for r in range(*bounds[g])]
        assert split.test.tolist() == rows
        others = np.setdiff1d(every_row, split.test)
        assert split.train.tolist() == _expected_purge(
            others, split.test, ts, label_end, embargo_bars
        )
        _assert_clean(split, ts, label_end, embargo_bars)


def test_cpcv_splits_middle_group_tested_purges_and_embargoes_around_it() -> None:
    # Arrange: 12 rows in 4 groups of 3; labels known 1.5 bars after open.
    ts, label_end = _hourly(12, label_hours=1.5)

    # Act
    splits = cpcv_splits(ts, label_end, n_groups=4, n_test_groups=2, embargo_bars=1)

    # Assert: split 1 tests groups 0 and 2 (rows 0..2 and 6..8).
    assert splits[1].test_groups == (0, 2)
    assert splits[1].test.tolist() == [0, 1, 2, 6, 7, 8]
    assert splits[1].train.tolist() == [4, 10, 11]


@pytest.mark.parametrize(
    ("groups", "tested"), [(2, 1), (3, 2), (4, 1), (5, 2), (5, 3), (6, 2), (7, 4)]
)
def test_cpcv_paths_cover_each_group_once_with_a_testing_split(groups: int, tested: int) -> None:
    # Arrange
    ts, label_end = _hourly(4 * groups)
    splits = cpcv_splits(ts, label_end, n_groups=groups, n_test_groups=tested)
    bounds = group_bounds(ts.size, groups)

    # Act
    paths = cpcv_paths(groups, tested)

    # Assert
    assert len(paths) == cpcv_n_paths(groups, tested)
    assert len(paths) * groups == tested * math.comb(groups, tested)
    used = [pair for path in paths for pair in path]
    for path in paths:
        assert [group for group, _ in path] == list(range(groups))
        for group, split in path:
            assert group in splits[split].test_groups
            assert np.isin(np.arange(*bounds[group]), splits[split].test).all()
    testing_pairs = {(g, s.fold) for s in splits for g in s.test_groups}
    assert len(used) == len(set(used))
    assert set(used) == testing_pairs


def test_cpcv_paths_three_groups_two_tested_gives_known_paths() -> None:
    # Arrange: splits (0, 1), (0, 2), (1, 2) are numbered 0, 1, 2.

    # Act
    paths = cpcv_paths(3, 2)

    # Assert
    assert paths == [[(0, 0), (1, 0), (2, 1)], [(0, 1), (1, 2), (2, 2)]]


@pytest.mark.parametrize(
    ("groups", "tested", "expected"), [(6, 2, 5), (10, 2, 9), (5, 3, 6), (6, 1, 1), (2, 1, 1)]
)
def test_cpcv_n_paths_known_sizes_give_binomial(groups: int, tested: int, expected: int) -> None:
    # Arrange: φ = C(N − 1, k − 1).

    # Act
    n_paths = cpcv_n_paths(groups, tested)

    # Assert
    assert n_paths == expected


@pytest.mark.parametrize(
    ("groups", "tested", "match"),
    [
        (1, 1, "n_groups must be at least 2"),
        (4, 0, "n_test_groups must be at least 1"),
        (4, 4, "n_test_groups 4 leaves none of the 4 groups"),
    ],
)
def test_cpcv_bad_shape_raises_usage_error(groups: int, tested: int, match: str) -> None:
    # Arrange
    ts, label_end = _hourly(20)

    # Act / Assert
    with pytest.raises(UsageError, match=match):
        cpcv_splits(ts, label_end, n_groups=groups, n_test_groups=tested)
    with pytest.raises(UsageError, match=match):
        cpcv_paths(groups, tested)
    with pytest.raises(UsageError, match=match):
        cpcv_n_paths(groups, tested)


def test_cpcv_splits_labels_covering_series_raise_usage_error() -> None:
    # Arrange
    ts, label_end = _hourly(12, label_hours=20)

    # Act / Assert
    with pytest.raises(UsageError, match=r"CPCV split 0 \(testing groups \(0,\)\) has no training"):
        cpcv_splits(ts, label_end, n_groups=3, n_test_groups=1)


# group bounds


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 500), data=st.data())
def test_group_bounds_any_size_cover_rows_evenly(n: int, data: st.DataObject) -> None:
    # Arrange
    groups = data.draw(st.integers(1, n))

    # Act
    bounds = group_bounds(n, groups)

    # Assert
    sizes = [stop - start for start, stop in bounds]
    assert len(bounds) == groups
    assert bounds[0][0] == 0
    assert bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in pairwise(bounds))
    assert min(sizes) >= 1
    assert max(sizes) - min(sizes) <= 1


def test_group_bounds_ten_rows_three_groups_gives_larger_first() -> None:
    # Arrange / Act
    bounds = group_bounds(10, 3)

    # Assert
    assert bounds == [(0, 4), (4, 7), (7, 10)]


def test_group_bounds_zero_groups_raises_usage_error() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="n_groups must be at least 1"):
        group_bounds(10, 0)

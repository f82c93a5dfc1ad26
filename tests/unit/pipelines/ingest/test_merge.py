"""Merging new bars into a stored series: added, duplicate, conflicting, order-independent."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.files import bar_frame, utc

from pipelines.ingest.merge import merge_bars

T0, T1, T2, T3 = (utc(2017, 1, 3, h) for h in (9, 10, 11, 12))


def test_merge_bars_into_empty_series_adds_all_sorted() -> None:
    # Arrange
    new = bar_frame([(T1, 1, 1, 1, 1, 1, None), (T0, 1, 1, 1, 1, 1, None)])

    # Act
    result = merge_bars(new.clear(), new)

    # Assert
    assert (result.added, result.duplicate, result.conflicting) == (2, 0, 0)
    assert result.bars["ts"].to_list() == [T0, T1]
    assert result.losers.height == 0


def test_merge_bars_counts_added_duplicate_and_conflicting() -> None:
    # Arrange
    existing = bar_frame([(T0, 1.1, 1.2, 1.0, 1.1, 5, None), (T1, 1.1, 1.2, 1.0, 1.1, 5, None)])
    new = bar_frame(
        [
            (T0, 1.1, 1.2, 1.0, 1.1, 5, None),  # the stored bar again
            (T1, 1.1, 1.3, 1.0, 1.2, 9, None),  # differs: larger volume wins
            (T2, 1.2, 1.3, 1.1, 1.2, 1, None),  # new
        ]
    )

    # Act
    result = merge_bars(existing, new)

    # Assert
    assert (result.added, result.duplicate, result.conflicting) == (1, 1, 1)
    assert result.bars.select("ts", "close", "volume").rows() == [
        (T0, 1.1, 5.0), (T1, 1.2, 9.0), (T2, 1.2, 1.0),
    ]  # fmt: skip
    assert result.losers.select("ts", "close", "volume").rows() == [(T1, 1.1, 5.0)]


def test_merge_bars_conflict_lost_by_new_bar_keeps_stored_one() -> None:
    # Arrange: the stored bar carries a spread, the new one does not.
    existing = bar_frame([(T0, 1.1, 1.2, 1.0, 1.1, 5, 0.0001)])
    new = bar_frame([(T0, 1.1, 1.2, 1.0, 1.15, 50, None)])

    # Act
    result = merge_bars(existing, new)

    # Assert
    assert result.conflicting == 1
    assert result.bars.equals(existing)
    assert result.losers.equals(new)


def test_merge_bars_rounding_noise_counts_as_duplicate() -> None:
    # Arrange: a double from an .hst file and the decimal a CSV printed.
    existing = bar_frame([(T0, 1.05236, 1.05253, 1.05221, 1.05227, 5, None)])
    new = bar_frame([(T0, 1.0523600000000001, 1.05253, 1.05221, 1.05227, 5, None)])

    # Act
    result = merge_bars(existing, new)

    # Assert
    assert (result.added, result.duplicate, result.conflicting) == (0, 1, 0)
    assert result.bars.equals(existing)


def test_merge_bars_spread_difference_is_a_conflict() -> None:
    # Arrange
    existing = bar_frame([(T0, 1.1, 1.2, 1.0, 1.1, 5, 0.0002)])
    new = bar_frame([(T0, 1.1, 1.2, 1.0, 1.1, 5, 0.0001)])

    # Act
    result = merge_bars(existing, new)

    # Assert
    assert result.conflicting == 1
    assert result.bars["spread"].to_list() == [0.0001]


_VERSIONS = {
    # (hour, version) -> a valid bar. Versions 0/1 and 2/3 differ only in their spread, so
    # the preference must look at every column to be independent of arrival order.
    (h, v): (utc(2017, 1, 3, h), 1.1, 1.2, 1.0, 1.1 + v // 2 / 100, 5.0, (0.0001, 0.0002)[v % 2])
    for h in range(4)
    for v in range(4)
}


def _frame(keys: list[tuple[int, int]]) -> pl.DataFrame:
    # One source: at most one version per hour (sources are unique by ts after normalize).
    unique = {h: v for h, v in keys}
    return bar_frame([_VERSIONS[(h, v)] for h, v in sorted(unique.items())])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=4),
        min_size=1,
        max_size=4,
    )
)
@pytest.mark.slow
def test_merge_bars_any_arrival_order_gives_same_series(
    sources: list[list[tuple[int, int]]],
) -> None:
    # Arrange
    frames = [_frame(keys) for keys in sources]
    results = []

    # Act
    for order in itertools.permutations(frames):
        merged = order[0].clear()
        for frame in order:
            merged = merge_bars(merged, frame).bars
        results.append(merged)

    # Assert
    assert all(r.equals(results[0]) for r in results[1:])
    assert results[0]["ts"].is_unique().all()
    assert results[0]["ts"].is_sorted()

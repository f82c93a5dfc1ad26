"""Average uniqueness weights over the bars after entry through the exit bar."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from core.errors import UsageError
from core.timeframes import Timeframe
from pipelines.labels import average_uniqueness, uniqueness_weights

from ._bars import HOUR, START


def test_uniqueness_weights_overlapping_spans_hand_computed() -> None:
    # Arrange: spans bars {1, 2}, {2, 3}, {3}; concurrency bar1 = 1, bar2 = 2, bar3 = 2.
    ts = [START + i * HOUR for i in range(6)]
    ends = [ts[2] + HOUR, ts[3] + HOUR, ts[3] + HOUR, None, None, None]
    labels = pl.DataFrame(
        {"ts": ts, "label_end": ends},
        schema={"ts": pl.Datetime("us", "UTC"), "label_end": pl.Datetime("us", "UTC")},
    )

    # Act
    weights = uniqueness_weights(labels, Timeframe.H1)

    # Assert: (1 + 1/2) / 2, (1/2 + 1/2) / 2, 1/2.
    assert weights.name == "weight"
    assert weights.to_list() == [0.75, 0.5, 0.5, None, None, None]


def test_average_uniqueness_disjoint_spans_are_one() -> None:
    # Arrange
    entry = np.array([0, 3], dtype=np.int64)
    exit = np.array([3, 5], dtype=np.int64)

    # Act
    u = average_uniqueness(entry, exit, n_bars=6)

    # Assert
    assert u.tolist() == [1.0, 1.0]


def test_average_uniqueness_nested_span_hand_computed() -> None:
    # Arrange: span A bars 1..4, span B bar 2 only: c = 1, 2, 1, 1.
    entry = np.array([0, 1], dtype=np.int64)
    exit = np.array([4, 2], dtype=np.int64)

    # Act
    u = average_uniqueness(entry, exit, n_bars=5)

    # Assert
    assert u.tolist() == pytest.approx([(1 + 0.5 + 1 + 1) / 4, 0.5])


def test_average_uniqueness_exit_not_after_entry_raises_usage_error() -> None:
    # Arrange
    entry = np.array([2], dtype=np.int64)
    exit = np.array([2], dtype=np.int64)

    # Act / Assert
    with pytest.raises(UsageError, match="entry < exit"):
        average_uniqueness(entry, exit, n_bars=4)


def test_uniqueness_weights_label_end_off_the_bar_grid_raises_usage_error() -> None:
    # Arrange: 30 minutes is not the end of any hourly bar.
    ts = [START, START + HOUR]
    labels = pl.DataFrame(
        {"ts": ts, "label_end": [START + HOUR + HOUR / 2, None]},
        schema={"ts": pl.Datetime("us", "UTC"), "label_end": pl.Datetime("us", "UTC")},
    )

    # Act / Assert
    with pytest.raises(UsageError, match="not the end of a bar"):
        uniqueness_weights(labels, Timeframe.H1)

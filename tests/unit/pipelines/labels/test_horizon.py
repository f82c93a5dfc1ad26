"""Fixed-horizon labels: log return to the close h bars ahead, known at the end of that bar."""

from __future__ import annotations

import math

import pytest

from core.errors import UsageError
from core.timeframes import Timeframe
from pipelines.labels import HorizonLabelConfig, horizon_labels, make_labels

from ._bars import HOUR, START, close_bars


def test_horizon_labels_two_bars_ahead_sign_return_and_end() -> None:
    # Arrange
    bars = close_bars([100.0, 110.0, 99.0, 99.0, 120.0])

    # Act
    out = horizon_labels(bars, horizon=2, threshold=0.0, timeframe=Timeframe.H1)

    # Assert
    assert out.columns == ["ts", "label", "log_return", "label_end"]
    assert out["label"].to_list() == [-1, -1, 1, None, None]
    assert out["log_return"].to_list()[:3] == pytest.approx(
        [math.log(99 / 100), math.log(99 / 110), math.log(120 / 99)]
    )
    assert out["log_return"].to_list()[3:] == [None, None]
    assert out["label_end"].to_list() == [
        START + 3 * HOUR,
        START + 4 * HOUR,
        START + 5 * HOUR,
        None,
        None,
    ]


def test_horizon_labels_within_threshold_are_zero() -> None:
    # Arrange: returns +0.5 %, 0, -11 %; threshold 1 %.
    bars = close_bars([100.0, 100.5, 100.5, 90.0])

    # Act
    out = horizon_labels(bars, horizon=1, threshold=0.01, timeframe=Timeframe.H1)

    # Assert
    assert out["label"].to_list() == [0, 0, -1, None]


def test_horizon_labels_across_weekend_gap_end_at_bar_after_gap() -> None:
    # Arrange: Friday 20:00, 21:00, then Sunday 22:00.
    friday = START.replace(day=5, hour=20)
    sunday = START.replace(day=7, hour=22)
    bars = close_bars([1.0, 1.1, 1.2], ts=[friday, friday + HOUR, sunday])

    # Act
    out = horizon_labels(bars, horizon=1, threshold=0.0, timeframe=Timeframe.H1)

    # Assert: the label of 21:00 is known when the Sunday bar closes, not at 23:00 Friday.
    assert out["label_end"].to_list() == [friday + 2 * HOUR, sunday + HOUR, None]


def test_horizon_labels_fewer_bars_than_horizon_all_null() -> None:
    # Arrange
    bars = close_bars([1.0, 1.1])

    # Act
    out = make_labels(bars, HorizonLabelConfig(horizon=2), Timeframe.H1)

    # Assert
    assert out["label"].null_count() == 2
    assert out["label_end"].null_count() == 2


def test_horizon_labels_unsorted_bars_raise_usage_error() -> None:
    # Arrange
    bars = close_bars([1.0, 1.1, 1.2]).reverse()

    # Act / Assert
    with pytest.raises(UsageError, match="strictly increasing"):
        horizon_labels(bars, horizon=1, threshold=0.0, timeframe=Timeframe.H1)


def test_horizon_labels_non_positive_close_raise_usage_error() -> None:
    # Arrange
    bars = close_bars([1.0, 0.0, 1.2])

    # Act / Assert
    with pytest.raises(UsageError, match="close"):
        horizon_labels(bars, horizon=1, threshold=0.0, timeframe=Timeframe.H1)

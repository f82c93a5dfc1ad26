"""Log returns over a horizon."""

from __future__ import annotations

import math

import polars as pl
import pytest

from pipelines.features.returns import log_return

from ._bars import close_bars, column


def test_log_return_one_and_two_bars_hand_values() -> None:
    # Arrange
    bars = close_bars([100.0, 110.0, 99.0])

    # Act
    one = column(bars, log_return(pl.col("close"), 1))
    two = column(bars, log_return(pl.col("close"), 2))

    # Assert
    assert one[0] is None
    assert one[1:] == pytest.approx([math.log(1.1), math.log(0.9)])
    assert two[:2] == [None, None]
    assert two[2] == pytest.approx(math.log(0.99))


def test_log_return_horizons_add_up_to_longer_horizon() -> None:
    # Arrange
    bars = close_bars([100.0, 103.0, 101.0, 97.0, 104.0])

    # Act
    out = bars.select(
        (log_return(pl.col("close"), 2) + log_return(pl.col("close"), 2).shift(2)).alias("sum"),
        log_return(pl.col("close"), 4).alias("four"),
    )

    # Assert
    assert out["sum"][4] == pytest.approx(out["four"][4], abs=1e-15)

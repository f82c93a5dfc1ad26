"""Triple-barrier labels: first barrier touched, stop counted when one bar touches both."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest

from core.errors import UsageError
from core.timeframes import Timeframe
from pipelines.labels import (
    TripleBarrierConfig,
    log_return_volatility,
    make_labels,
    triple_barrier_labels,
)

from ._bars import HOUR, START, close_bars, ohlc_bars

# Only the first row gets a sigma (10 %), so its barriers are 110 and 90 from an entry at 100
# and every other row is null: each test looks at one trade.
FIRST_ONLY = pl.Series([0.1, None, None, None, None], dtype=pl.Float64)


def _first_trade(
    rows: Sequence[tuple[float, float, float, float]],
    *,
    max_holding: int = 3,
    zero_at_vertical: bool = True,
) -> dict[str, object]:
    bars = ohlc_bars(rows)
    out = triple_barrier_labels(
        bars,
        FIRST_ONLY[: len(rows)],
        pt=1.0,
        sl=1.0,
        max_holding=max_holding,
        zero_at_vertical=zero_at_vertical,
        timeframe=Timeframe.H1,
    )
    assert out["label"][1:].null_count() == len(rows) - 1
    return out.row(0, named=True)


def test_triple_barrier_upper_touched_first_label_one_at_barrier_price() -> None:
    # Arrange: bar 1 stays inside (95..105), bar 2 reaches 111, bar 3 would stop out.
    rows = [(100, 100, 100, 100), (100, 105, 95, 100), (100, 111, 99, 108), (100, 100, 80, 85)]

    # Act
    trade = _first_trade(rows)

    # Assert
    assert trade["label"] == 1
    assert trade["barrier"] == "upper"
    assert trade["log_return"] == pytest.approx(math.log(1.1))
    assert trade["label_end"] == START + 3 * HOUR


def test_triple_barrier_both_touched_in_one_bar_counts_stop() -> None:
    # Arrange: bar 1 ranges 85..115, through both barriers.
    rows = [(100, 100, 100, 100), (100, 115, 85, 112), (112, 112, 112, 112)]

    # Act
    trade = _first_trade(rows)

    # Assert
    assert trade["label"] == -1
    assert trade["barrier"] == "lower"
    assert trade["log_return"] == pytest.approx(math.log(0.9))
    assert trade["label_end"] == START + 2 * HOUR


def test_triple_barrier_gap_through_stop_exits_at_open() -> None:
    # Arrange: bar 2 opens at 85, below the stop at 90.
    rows = [(100, 100, 100, 100), (100, 101, 99, 100), (85, 86, 84, 86), (86, 86, 86, 86)]

    # Act
    trade = _first_trade(rows)

    # Assert
    assert trade["label"] == -1
    assert trade["log_return"] == pytest.approx(math.log(0.85))
    assert trade["label_end"] == START + 3 * HOUR


@pytest.mark.parametrize(("zero_at_vertical", "expected"), [(True, 0), (False, 1)])
def test_triple_barrier_no_touch_exits_at_vertical_close(
    zero_at_vertical: bool, expected: int
) -> None:
    # Arrange: two bars inside the barriers; the vertical barrier is 2 bars ahead, close 103.
    rows = [(100, 100, 100, 100), (100, 105, 95, 101), (101, 104, 96, 103), (103, 120, 80, 103)]

    # Act
    trade = _first_trade(rows, max_holding=2, zero_at_vertical=zero_at_vertical)

    # Assert
    assert trade["label"] == expected
    assert trade["barrier"] == "vertical"
    assert trade["log_return"] == pytest.approx(math.log(1.03))
    assert trade["label_end"] == START + 3 * HOUR


def test_triple_barrier_window_past_end_without_touch_is_null() -> None:
    # Arrange: 2 bars after entry, none touching; the vertical barrier would be bar 3.
    rows = [(100, 100, 100, 100), (100, 105, 95, 101), (101, 104, 96, 103)]

    # Act
    trade = _first_trade(rows, max_holding=3)

    # Assert
    assert trade == {
        "ts": START, "label": None, "log_return": None, "barrier": None, "label_end": None,
    }  # fmt: skip


def test_triple_barrier_window_past_end_with_touch_is_labelled() -> None:
    # Arrange: the window runs past the data but bar 2 already reaches the stop.
    rows = [(100, 100, 100, 100), (100, 105, 95, 101), (101, 102, 89, 95)]

    # Act
    trade = _first_trade(rows, max_holding=3)

    # Assert
    assert trade["label"] == -1
    assert trade["label_end"] == START + 3 * HOUR


def test_triple_barrier_zero_or_missing_sigma_is_null() -> None:
    # Arrange
    bars = close_bars([100.0, 120.0, 80.0])
    sigma = pl.Series([0.0, float("nan"), None], dtype=pl.Float64)

    # Act
    out = triple_barrier_labels(
        bars, sigma, pt=1.0, sl=1.0, max_holding=1, zero_at_vertical=True, timeframe=Timeframe.H1
    )

    # Assert
    assert out["label"].to_list() == [None, None, None]


def test_triple_barrier_sigma_length_mismatch_raises_usage_error() -> None:
    # Arrange
    bars = close_bars([100.0, 120.0, 80.0])

    # Act / Assert
    with pytest.raises(UsageError, match="sigma has 2 values for 3 bars"):
        triple_barrier_labels(
            bars, FIRST_ONLY[:2], pt=1.0, sl=1.0, max_holding=1, zero_at_vertical=True,
            timeframe=Timeframe.H1,
        )  # fmt: skip


def test_log_return_volatility_matches_weighted_formula() -> None:
    # Arrange: a = 2 / (span + 1); weights (1 - a)^i on the i-th latest log return; unbiased.
    closes = [100.0, 101.0, 99.5, 100.2, 102.0, 101.1, 100.7]
    span = 3
    a = 2 / (span + 1)
    r = np.diff(np.log(closes))
    expected: list[float | None] = [None] * span
    for t in range(span, len(closes)):
        x = r[:t][::-1]
        w = (1 - a) ** np.arange(x.size)
        mean = (w * x).sum() / w.sum()
        biased = (w * (x - mean) ** 2).sum() / w.sum()
        expected.append(math.sqrt(biased * w.sum() ** 2 / (w.sum() ** 2 - (w**2).sum())))

    # Act
    sigma = close_bars(closes).select(log_return_volatility(pl.col("close"), span)).to_series()

    # Assert
    assert sigma.to_list()[:span] == [None] * span
    assert sigma.to_list()[span:] == pytest.approx(expected[span:], rel=1e-9)


def test_make_labels_triple_barrier_fewer_bars_than_span_all_null() -> None:
    # Arrange
    bars = close_bars([100.0, 101.0, 102.0])
    config = TripleBarrierConfig(pt=1.0, sl=1.0, max_holding=1, vol_span=5)

    # Act
    out = make_labels(bars, config, Timeframe.H1, with_weight=True)

    # Assert
    assert out.columns == ["ts", "label", "log_return", "barrier", "label_end", "weight"]
    assert out.null_count().row(0)[1:] == (3, 3, 3, 3, 3)

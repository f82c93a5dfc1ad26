"""ml_model: target positions from a probability column, thresholds, holding, NaN."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest
from testkit.files import close_bars

from core.errors import UsageError
from models.strategies.ml_model import MlModel
from models.strategies.registry import make_strategy

PROBA = [0.6, 0.5, 0.4, math.nan, 0.56, 0.5, 0.44, 0.55, 0.45]


def frames(
    proba: Sequence[float | None], column: str = "proba"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    bars = close_bars([1.0] * len(proba))
    features = bars.select("ts").with_columns(pl.Series(column, proba, dtype=pl.Float64))
    return bars, features


@pytest.mark.parametrize(
    ("allow_short", "hold_between", "expected"),
    [
        (False, False, [1, 0, 0, 0, 1, 0, 0, 0, 0]),
        (True, False, [1, 0, -1, 0, 1, 0, -1, 0, 0]),
        (False, True, [1, 1, 0, 0, 1, 1, 0, 0, 0]),
        (True, True, [1, 1, -1, 0, 1, 1, -1, -1, -1]),
    ],
)
def test_signals_target_by_thresholds(
    allow_short: bool, hold_between: bool, expected: list[int]
) -> None:
    # Arrange: thresholds are strict (0.55 and 0.45 themselves are in between)
    bars, features = frames(PROBA)
    strategy = MlModel(allow_short=allow_short, hold_between=hold_between)

    # Act
    signals = strategy.signals(bars, features)

    # Assert
    assert signals.entries is None
    assert np.asarray(signals.target).tolist() == [float(v) for v in expected]


def test_signals_null_probability_is_flat() -> None:
    # Arrange
    bars, features = frames([0.9, None, 0.5])

    # Act
    signals = MlModel(hold_between=True).signals(bars, features)

    # Assert
    assert np.asarray(signals.target).tolist() == [1.0, 0.0, 0.0]


def test_signals_without_features_raises_naming_column() -> None:
    # Arrange
    bars, _ = frames(PROBA)

    # Act / Assert
    with pytest.raises(UsageError, match="reads the feature column 'proba'"):
        MlModel().signals(bars, None)


def test_signals_misaligned_features_raise() -> None:
    # Arrange
    bars, features = frames(PROBA)

    # Act / Assert
    with pytest.raises(UsageError, match="8 feature rows for 9 bars"):
        MlModel().signals(bars, features.head(8))


def test_make_strategy_thresholds_parsed_and_checked() -> None:
    # Act
    strategy = make_strategy(MlModel, {"upper": "0.6", "lower": "0.4", "allow_short": "yes"})

    # Assert
    assert isinstance(strategy, MlModel)
    assert (strategy.upper, strategy.lower, strategy.allow_short) == (0.6, 0.4, True)
    assert strategy.column == "proba"


def test_make_strategy_column_outside_choices_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="parameter column='p_up': expected one of proba"):
        make_strategy(MlModel, {"column": "p_up"})


def test_for_column_reads_named_column_and_declares_it() -> None:
    # Arrange
    cls = MlModel.for_column("p_up")
    bars, features = frames([0.7, 0.2], column="p_up")

    # Act
    strategy = make_strategy(cls, {"allow_short": "true"})
    signals = strategy.signals(bars, features)

    # Assert
    assert cls.needs_features == ("p_up",)
    assert MlModel.needs_features == ("proba",)
    assert np.asarray(signals.target).tolist() == [1.0, -1.0]

"""A model's signals in the loop: the input check, and the reload between batches."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UsageError
from core.timeframes import Timeframe
from execution.feeds import slice_batch
from execution.live_features import FeedSpec, LiveFeatures
from execution.model_signals import ModelRelease, ModelSignals, check_inputs, input_problems
from pipelines.features.sets import parse_feature_sets

from .test_live_features import batch_of, hourly

VERSION = "a" * 64


class Linear:
    """P(up) from a weighted sum of the columns it reads (NaN where a column is NaN)."""

    def __init__(self, names: tuple[str, ...], weight: float) -> None:
        self.feature_names = names
        self.weight = weight

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.weight * X.sum(axis=1)))


def release(version: int, names: tuple[str, ...], weight: float = 1.0, definition: str = VERSION):
    return ModelRelease(
        name="m", version=version, predictor=Linear(names, weight), feature_set="small",
        feature_set_version=definition, upper=0.55, lower=0.45, allow_short=True, scores={},
    )  # fmt: skip


class Source:
    """Hands out the releases it is given, one per call."""

    def __init__(self) -> None:
        self.queue: list[ModelRelease] = []

    def take(self) -> ModelRelease | None:
        return self.queue.pop(0) if self.queue else None


def features() -> LiveFeatures:
    section = {"sets": {"small": {"features": ["log_return_1", "rsi_14", "close_zscore_20"]}}}
    resolved = parse_feature_sets(section)["small"].resolve().for_timeframe(Timeframe.H1)
    return LiveFeatures(resolved, FeedSpec(Timeframe.H1))


def test_input_check_names_the_missing_inputs_and_the_changed_definition() -> None:
    # Arrange
    live = features()
    wrong = release(1, ("log_return_1", "adx_14", "d1_rsi_14"), definition="b" * 64)

    # Act
    problems = input_problems(wrong, live.columns, VERSION)

    # Assert
    assert problems[0] == "the live features lack 2 of its 3 inputs (adx_14, d1_rsi_14)"
    assert "as defined by bbbbbbbbbbbb, which is now defined by aaaaaaaaaaaa" in problems[1]
    with pytest.raises(UsageError, match="m v1 cannot trade on these features"):
        check_inputs(wrong, live.columns, VERSION)
    assert input_problems(release(1, ("rsi_14",)), live.columns, VERSION) == []


def test_signals_reload_a_new_release_between_batches_and_refuse_a_mismatched_one() -> None:
    # Arrange
    bars = batch_of(hourly(300, seed=3))
    source = Source()
    told: list[tuple[int, int, str | None]] = []
    names = ("log_return_1", "rsi_14")
    signals = ModelSignals(
        features(), release(1, names), feature_set_version=VERSION, source=source,
        on_reload=lambda old, new, problem: told.append((old.version, new.version, problem)),
    )  # fmt: skip
    reference = ModelSignals(
        features(), release(2, names, weight=-1.0), feature_set_version=VERSION
    )

    # Act
    first = signals(slice_batch(bars, 0, 100))
    source.queue.append(release(3, ("adx_14",)))  # reads a column the live features lack
    second = signals(slice_batch(bars, 100, 200))
    source.queue.append(release(2, names, weight=-1.0))
    third = signals(slice_batch(bars, 200, 300))
    expected = reference(bars)

    # Assert
    assert set(first["model_version"]) == set(second["model_version"]) == {1.0}
    assert set(third["model_version"]) == {2.0}
    assert told[0][:2] == (1, 3) and "lack 1 of its 1 inputs (adx_14)" in str(told[0][2])
    assert told[1] == (1, 2, None)
    assert signals.release.version == 2
    np.testing.assert_array_equal(third["proba"], expected["proba"][200:])
    assert not np.array_equal(second["proba"][-50:], expected["proba"][150:200])

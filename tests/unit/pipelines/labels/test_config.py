"""Label configs are frozen, reject unknown keys and out-of-range values."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from pipelines.labels import HorizonLabelConfig, LabelConfig, TripleBarrierConfig


def test_label_config_kind_selects_triple_barrier() -> None:
    # Arrange
    raw = {"kind": "triple_barrier", "pt": 2, "sl": 1, "max_holding": 24, "vol_span": 50}

    # Act
    config = TypeAdapter(LabelConfig).validate_python(raw)

    # Assert
    assert config == TripleBarrierConfig(pt=2.0, sl=1.0, max_holding=24, vol_span=50)


@pytest.mark.parametrize(
    "raw",
    [
        {"horizon": 0},
        {"horizon": 1, "threshold": -0.1},
        {"horizon": 1, "extra": 1},
    ],
)
def test_horizon_label_config_bad_values_rejected(raw: dict[str, object]) -> None:
    # Act / Assert
    with pytest.raises(ValidationError):
        HorizonLabelConfig.model_validate(raw)


@pytest.mark.parametrize(
    "change",
    [{"pt": 0.0}, {"sl": -1.0}, {"max_holding": 0}, {"vol_span": 1}, {"unknown": True}],
)
def test_triple_barrier_config_bad_values_rejected(change: dict[str, object]) -> None:
    # Arrange
    raw: dict[str, object] = {"pt": 1.0, "sl": 1.0, "max_holding": 5, "vol_span": 10} | change

    # Act / Assert
    with pytest.raises(ValidationError):
        TripleBarrierConfig.model_validate(raw)


def test_horizon_label_config_is_frozen() -> None:
    # Arrange
    config = HorizonLabelConfig(horizon=3)

    # Act / Assert
    with pytest.raises(ValidationError):
        config.horizon = 4  # type: ignore[misc]

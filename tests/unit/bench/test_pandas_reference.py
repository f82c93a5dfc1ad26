"""The pandas reference of the feature benchmark equals ``compute_features``.

``bench/`` is not a package: both benchmark files are loaded from their paths. The check is
the benchmark's own: identical null masks, every value equal to 1e-9 relative (or both within
1e-12 of zero), or, where a feature subtracts nearly equal terms, within 1e-9 of the size of
those terms on that row.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import polars as pl
import pytest

from core.types import VolumeKind
from pipelines.features import applicable_specs, compute_features, default_feature_set
from unit.pipelines.features._bars import random_bars

BENCH = Path(__file__).resolve().parents[3] / "bench"
ROWS = 3_000
# Values beyond 1e-9 relative yet within the scaled rule: a handful where EMAs nearly cancel.
MAX_STRICT_MISSES = 0.001


def _load(name: str, module_name: str | None = None) -> ModuleType:
    if name != "benchkit" and "benchkit" not in sys.modules:
        # The scripts import their shared module by its plain name, as when run from bench/.
        _load("benchkit", "benchkit")
    path = BENCH / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name or f"solodesk_bench_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    return _load("pandas_features")


@pytest.fixture(scope="module")
def benchmark() -> ModuleType:
    return _load("features")


def _both(
    reference: ModuleType, bars: pl.DataFrame, has_spread: bool, volume_kind: VolumeKind
) -> tuple[pl.DataFrame, pd.DataFrame]:
    ours = compute_features(
        bars, default_feature_set(), has_spread=has_spread, volume_kind=volume_kind
    )
    theirs = reference.pandas_features(bars.to_pandas(), has_spread, str(volume_kind))
    return ours, theirs


@pytest.mark.parametrize(
    ("has_spread", "volume_kind", "flat_share", "spread_null_share"),
    [(True, VolumeKind.TICK, 0.05, 0.01), (False, VolumeKind.NONE, 0.0, 0.0)],
    ids=["spread-and-tick-volume", "no-spread-no-volume"],
)
def test_pandas_reference_equals_compute_features(
    reference: ModuleType,
    benchmark: ModuleType,
    has_spread: bool,
    volume_kind: VolumeKind,
    flat_share: float,
    spread_null_share: float,
) -> None:
    # Arrange
    bars = random_bars(ROWS, 11, flat_share=flat_share, spread_null_share=spread_null_share)
    if not has_spread:
        bars = bars.drop("spread")
    expected_names = [
        s.name
        for s in applicable_specs(
            default_feature_set(), has_spread=has_spread, volume_kind=volume_kind
        )
    ]

    # Act
    ours, theirs = _both(reference, bars, has_spread, volume_kind)
    scales = reference.operand_scales(bars.to_pandas(), has_spread, str(volume_kind))

    # Assert
    assert list(theirs.columns) == ["ts", *expected_names]
    assert list(ours.columns) == list(theirs.columns)
    assert (theirs["ts"] == bars["ts"].to_pandas()).all()
    strict_misses = compared = 0
    for name in expected_names:
        a = ours[name].cast(pl.Float64).to_numpy()
        b = theirs[name].to_numpy(dtype=np.float64)
        scale = scales[name].to_numpy() if name in scales else None
        figures = benchmark.compare_columns(a, b, scale)
        assert figures["mask_differs"] == 0, (name, figures)
        assert figures["beyond_scaled"] == 0, (name, figures)
        strict_misses += figures["beyond_relative"]
        compared += figures["compared"]
    assert compared > len(expected_names) * (ROWS - 250)
    assert strict_misses <= MAX_STRICT_MISSES * compared


def test_pandas_reference_takes_stated_values_on_flat_bars(
    reference: ModuleType, benchmark: ModuleType
) -> None:
    # Arrange: 80 bars with open = high = low = close = 1.1 and a constant tick volume
    bars = random_bars(80, 3, flat_share=1.0).with_columns(
        pl.lit(1.1).alias(c) for c in ("open", "high", "low", "close")
    )

    # Act
    ours, theirs = _both(reference, bars, True, VolumeKind.TICK)

    # Assert: the stated values on a flat range; both sides equal to 1e-9 relative
    last = theirs.iloc[-1]
    assert last["rsi_14"] == 50.0
    assert last["stochastic_k_14"] == 50.0
    assert last["kbar_close_position_0"] == 0.5
    assert last["bollinger_pct_b_20"] == 0.5
    assert last["close_zscore_20"] == 0.0
    assert last["realized_vol_20"] == 0.0
    assert last["volume_zscore_20"] == 0.0
    assert last["volume_ratio_20"] == 1.0
    for name in theirs.columns[1:]:
        a = ours[name].cast(pl.Float64).to_numpy()
        figures = benchmark.compare_columns(a, theirs[name].to_numpy(dtype=np.float64))
        assert figures["mask_differs"] == 0, (name, figures)
        assert figures["beyond_relative"] == 0, (name, figures)

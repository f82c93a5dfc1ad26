"""Real bars: the bar-by-bar features equal the batch features bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from core.types import VolumeKind
from pipelines.features import compute_features, default_feature_set
from pipelines.features.online import OnlineFeatures

from .conftest import Desk

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_online_features_eurusd_h1_live_bars_equal_batch(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange
    desk = new_desk()
    stored = desk.ingest_one([data_file("mt4/EURUSD60.csv")])
    bars = desk.bars(stored.key).tail(2500)
    kinds = {"has_spread": False, "volume_kind": VolumeKind.TICK}
    specs = default_feature_set()
    want = compute_features(bars, specs, **kinds)  # type: ignore[arg-type]
    online = OnlineFeatures(specs, history=bars.head(2000), **kinds)  # type: ignore[arg-type]

    # Act
    live = [online.update(row) for row in bars.slice(2000).iter_rows(named=True)]
    got = pl.DataFrame(live, infer_schema_length=None)

    # Assert
    assert_frame_equal(got, want.slice(2000), check_exact=True, check_dtypes=False)
    assert got.null_count().sum_horizontal().item() == 0
    assert len(got.columns) - 1 >= 60

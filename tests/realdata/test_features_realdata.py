"""The project's default feature set built on a real MT4 history of EURUSD H1 (2010 onwards)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from core.clocks import BROKER, Anchor
from core.timeframes import Timeframe
from core.types import SeriesKey, Side
from feature_store.feature_index import FeatureStore
from feature_store.series import series_clock
from pipelines.features.sets import FeatureSetConfig, SeriesFrame, feature_table
from pipelines.resample import resample_bars
from services.features import build_feature_set, load_feature_set

from .conftest import Desk

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
H1 = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)


@pytest.fixture(scope="module")
def default_set() -> FeatureSetConfig:
    return load_feature_set(REPO / "params.yaml", "default")


def test_default_feature_set_on_mt4_eurusd_h1_passes_checks_nulls_only_in_warmup(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk], default_set: FeatureSetConfig
) -> None:
    # Arrange
    desk = new_desk()
    desk.ingest(
        [data_file("mt4/EURUSD60.csv")], resample=(Timeframe.H4, Timeframe.D1), anchor=Anchor.BROKER
    )

    # Act
    first = build_feature_set(desk.settings, "default", default_set, "EURUSD", Timeframe.H1)
    again = build_feature_set(desk.settings, "default", default_set, "EURUSD", Timeframe.H1)

    # Assert
    bars = desk.bars(H1)
    features = FeatureStore(desk.settings.features_dir)
    build = features.find("default", H1, first.version)
    assert build is not None and build.latest
    assert first.rows == build.rows == bars.height > 50_000
    assert build.validation["success"] is True
    assert not first.cache_hit
    assert again.cache_hit and again.version == first.version
    frame = features.read(build)
    for column in build.columns:
        if column["role"] == "label":
            continue
        nulls = frame[column["name"]].fill_nan(None).is_null()
        # Nulls exactly in the leading rows a feature cannot have a value yet, none later.
        assert nulls.sum() == column["required_from"], column["name"]
        assert not nulls.slice(column["required_from"]).any(), column["name"]
    assert set(frame["label"].drop_nulls().unique().to_list()) == {-1, 0, 1}
    weights = frame["label_weight"].drop_nulls()
    assert weights.min() > 0 and weights.max() <= 1  # type: ignore[operator]
    # Context features come from broker-day D1 bars, joined at the end of each H1 bar.
    d1 = desk.store.info(H1.model_copy(update={"timeframe": Timeframe.D1}))
    assert d1 is not None and series_clock(d1, desk.settings.registry) == BROKER


def test_default_feature_set_on_real_bars_cut_anywhere_is_point_in_time(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk], default_set: FeatureSetConfig
) -> None:
    # Arrange: H4 and D1 are cut from the same H1 bars, as a live feed would cut them.
    desk = new_desk()
    desk.ingest([data_file("mt4/EURUSD60.csv")])
    info = desk.store.info(H1)
    assert info is not None
    bars = desk.bars(H1).head(8_000)
    resolved = default_set.resolve()

    def table(h1: pl.DataFrame) -> pl.DataFrame:
        context = {
            tf: SeriesFrame(
                resample_bars(h1, Timeframe.H1, tf, anchor=BROKER, volume_kind=info.volume_kind),
                tf, BROKER, info.has_spread, info.volume_kind,
            )
            for tf in (Timeframe.H4, Timeframe.D1)
        }  # fmt: skip
        series = SeriesFrame(h1, Timeframe.H1, BROKER, info.has_spread, info.volume_kind)
        return feature_table(resolved, series, context).frame.drop(
            "label", "label_log_return", "label_barrier", "label_end", "label_weight"
        )

    full = table(bars)

    # Act / Assert
    for cut in (3_001, 5_437, 7_999):
        assert table(bars.head(cut + 1)).equals(full.head(cut + 1)), cut

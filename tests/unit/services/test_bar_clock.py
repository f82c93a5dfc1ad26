"""The bar clock reaches every path the same way: ingest's resample, feature builds, research.

A series resampled with ``--anchor utc`` records its anchor; a feature build reads those H4 and
D1 bars, and research resamples them again from the H1 bars. Both must cut them on the same
clock, or training and serving see different ``h4_*`` and ``d1_*`` columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.clocks import BROKER, UTC, Anchor, Clock, bar_clock
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import SeriesKey, Side
from feature_store.feature_index import FeatureStore
from feature_store.series import context_clock, series_clock
from feature_store.store import BarStore
from services.features import build_feature_set, load_feature_set
from services.ingest import IngestOptions, ingest
from services.research import load_research_inputs

PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
H1 = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.ASK)

pytestmark = pytest.mark.slow


def _desk(home: Path, anchor: Anchor | None) -> Settings:
    settings = Settings(home=home)
    options = IngestOptions(resample=(Timeframe.H4, Timeframe.D1), anchor=anchor, reports=False)
    ingest(["sample:eurusd-h1"], options, settings)
    return settings


def _context_columns(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the h4_/d1_ columns of the feature build and of the research rows, by ts."""
    config = load_feature_set(PARAMS, "default")
    build = build_feature_set(settings, "default", config, "EURUSD", Timeframe.H1)
    features = FeatureStore(settings.features_dir)
    stored = features.read(features.find("default", H1, build.version))  # type: ignore[arg-type]
    inputs = load_research_inputs(
        settings, symbol="EURUSD", timeframe=Timeframe.H1, feature_set="default",
        params_path=PARAMS,
    )  # fmt: skip
    names = [n for n in inputs.data.feature_names if n.startswith(("h4_", "d1_"))]
    research = pl.DataFrame(
        {
            "ts": pl.Series(inputs.data.ts.astype("datetime64[ns]")).dt.replace_time_zone("UTC"),
            **{n: inputs.data.X[:, inputs.data.feature_names.index(n)] for n in names},
        }
    )
    built = stored.select("ts", *names).with_columns(pl.col("ts").dt.cast_time_unit("ns"))
    return built.join(research.select("ts"), on="ts", how="semi").sort("ts"), research.sort("ts")


@pytest.fixture(scope="module")
def desks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Settings]:
    root = tmp_path_factory.mktemp("clock")
    return {"utc": _desk(root / "utc", Anchor.UTC), "broker": _desk(root / "broker", None)}


@pytest.fixture(scope="module")
def columns(desks: dict[str, Settings]) -> dict[str, tuple[pl.DataFrame, pl.DataFrame]]:
    return {name: _context_columns(settings) for name, settings in desks.items()}


@pytest.mark.parametrize(("desk", "expected"), [("utc", UTC), ("broker", BROKER)])
def test_every_path_cuts_long_bars_on_the_clock_the_series_records(
    desks: dict[str, Settings], desk: str, expected: Clock
) -> None:
    # Arrange
    settings = desks[desk]
    store = BarStore(settings.store_dir)
    d1 = store.info(SeriesKey(symbol="EURUSD", timeframe=Timeframe.D1, side=Side.ASK))
    assert d1 is not None

    # Act
    recorded = bar_clock(Timeframe.D1, "fx", d1.anchor)
    build_clock = series_clock(d1, settings.registry)
    research_clock = context_clock(store, settings.registry, H1, Timeframe.D1)

    # Assert
    assert recorded == build_clock == research_clock == expected


@pytest.mark.parametrize("desk", ["utc", "broker"])
def test_features_build_and_walkforward_rows_equal_context_columns(
    columns: dict[str, tuple[pl.DataFrame, pl.DataFrame]], desk: str
) -> None:
    # Act
    built, research = columns[desk]

    # Assert
    assert built.height == research.height > 5000
    assert built["ts"].to_list() == research["ts"].to_list()
    for name in research.columns[1:]:
        np.testing.assert_array_equal(built[name].to_numpy(), research[name].to_numpy(), name)


def test_anchor_changes_the_context_columns(
    columns: dict[str, tuple[pl.DataFrame, pl.DataFrame]],
) -> None:
    # Act
    utc_rows, broker_rows = columns["utc"][0], columns["broker"][0]
    joined = utc_rows.join(broker_rows, on="ts", suffix="_broker")

    # Assert: the two clocks give different daily bars, so the test above could fail
    assert not np.allclose(
        joined["d1_rsi_14"].to_numpy(), joined["d1_rsi_14_broker"].to_numpy(), equal_nan=True
    )

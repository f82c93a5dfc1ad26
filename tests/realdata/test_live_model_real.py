"""Real bars: live features equal the research table bit for bit, and a model trades the same
through the loop as through the vectorized engine.

- EURUSD H1 (MT4 history, 20,000 bars) and USDJPY M15 (MT4 history, 20,000 bars), each with
  H4 and D1 context cut on the broker day as the store cut its own H4 and D1 series: the default
  feature set of ``params.yaml`` (the desk's own, with context) fed one bar at a time equals
  :meth:`FeatureRecipe.table`, labels aside, bit for bit.
- A LightGBM model fitted on the first 8,000 EURUSD H1 bars, traded on the next 8,000 through
  ``ml_model``: the event backtest (features bar by bar in the loop) and the vectorized one
  (the research feature table, the model's probabilities, the compiled engine) give the same
  trades and final equity within 1e-9 relative.
- Started from the feature set's warm-up window instead of the first bar (a paper session with
  ``--from``), every feature is within its declared tolerance (1e-9 windowed, 1e-6 recursive).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from testkit.cli import REPO

from core.timeframes import Timeframe
from execution.feeds import slice_batch
from execution.model_signals import ModelRelease
from feature_store.series import SeriesData, load_series
from models.learners.registry import make_learner
from models.strategies.ml_model import MlModel
from pipelines.backtest.config import BacktestConfig, Engine
from pipelines.evaluate.dataset import LABEL_COLUMNS, FeatureRecipe, research_data
from pipelines.features.sets import SeriesFrame
from pipelines.train.config import RuleConfig
from pipelines.train.tuning import TrainedModel
from services.backtest import compute_backtest
from services.live_model import model_inputs, model_probabilities, model_signals, release_params
from services.runtime import series_batch

from .conftest import Desk

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

PARAMS = REPO / "params.yaml"
BARS = 20_000


def _stored(
    desk: Desk, data_file: Callable[[str], Path], name: str, timeframe: Timeframe
) -> SeriesData:
    desk.ingest([data_file(name)], resample=(Timeframe.H4, Timeframe.D1))
    symbol = name.split("/")[-1][:6]
    whole = load_series(desk.settings, symbol, timeframe)
    start = whole.bars["ts"][-BARS]
    return load_series(desk.settings, symbol, timeframe, None, start, None)


class _NoInputs:
    """A predictor reading nothing: stands in where only the feature set is checked."""

    feature_names: tuple[str, ...] = ()


def _release(version: str, predictor: object = None) -> ModelRelease:
    predictor = predictor if predictor is not None else _NoInputs()
    return ModelRelease(
        name="real", version=1, predictor=predictor, feature_set="default",
        feature_set_version=version, upper=0.55, lower=0.45, allow_short=True, scores={},
    )  # fmt: skip


def _same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    both_nan = np.isnan(got) & np.isnan(want)
    differ = ~both_nan & (got.view(np.int64) != want.view(np.int64))
    rows, cols = np.nonzero(differ)
    assert rows.size == 0, f"{rows.size} values differ, first rows {rows[:3]}, columns {cols[:3]}"


@pytest.mark.parametrize(
    ("name", "timeframe"),
    [("mt4/EURUSD60.csv", Timeframe.H1), ("mt4/USDJPY15.csv", Timeframe.M15)],
)
def test_live_features_of_the_default_set_with_context_equal_the_research_table(
    data_file: Callable[[str], Path],
    new_desk: Callable[[], Desk],
    name: str,
    timeframe: Timeframe,
) -> None:
    # Arrange
    desk = new_desk()
    data = _stored(desk, data_file, name, timeframe)
    from services.features import load_feature_set

    resolved = load_feature_set(PARAMS, "default").resolve().for_timeframe(timeframe)
    inputs = model_inputs(desk.settings, data, _release(resolved.definition_hash()), PARAMS)
    frame = inputs.frame
    table = (
        FeatureRecipe(resolved, inputs.clocks)
        .table(
            SeriesFrame(
                data.bars, frame.timeframe, frame.clock, frame.has_spread, frame.volume_kind
            )
        )
        .frame
    )
    names = [c for c in table.columns if c != "ts" and c not in LABEL_COLUMNS]
    want = table.select(names).to_numpy()
    want = np.where(np.isfinite(want), want, np.nan)
    live = inputs.live_features()
    bars = series_batch(data)

    # Act
    got = live.push(bars)

    # Assert
    assert list(live.columns) == names
    assert any(n.startswith("h4_") for n in names) and any(n.startswith("d1_") for n in names)
    _same_bits(got, want)
    assert np.isfinite(got[-1]).all()


def test_model_event_and_vectorized_backtests_agree_on_real_bars(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange: fit on the first 8,000 bars, trade the next 8,000
    desk = new_desk()
    data = _stored(desk, data_file, "mt4/EURUSD60.csv", Timeframe.H1)
    from services.features import load_feature_set

    resolved = load_feature_set(PARAMS, "default").resolve().for_timeframe(Timeframe.H1)
    fit_part = load_series(desk.settings, "EURUSD", Timeframe.H1, None, None,
                           data.bars["ts"][8_000])  # fmt: skip
    trade_part = load_series(desk.settings, "EURUSD", Timeframe.H1, None, data.bars["ts"][8_000],
                             data.bars["ts"][16_000])  # fmt: skip
    inputs = model_inputs(desk.settings, fit_part, _release(resolved.definition_hash()), PARAMS)
    frame = inputs.frame
    table = FeatureRecipe(resolved, inputs.clocks).table(
        SeriesFrame(fit_part.bars, frame.timeframe, frame.clock, frame.has_spread,
                    frame.volume_kind)
    )  # fmt: skip
    rows = research_data(table, fit_part.bars)
    learner = make_learner("lightgbm", seed=0, threads=1).fit(rows.X, rows.y, weight=rows.weight)
    model = TrainedModel(learner, rows.feature_names, RuleConfig(), "lightgbm", {})
    release = _release(resolved.definition_hash(), model)
    config = BacktestConfig.from_options(spread=1.0, fees=0.00002, sizing="fraction:1")
    trade_inputs = model_inputs(desk.settings, trade_part, release, PARAMS)
    params = release_params(release)

    # Act
    vector = compute_backtest(
        trade_part, MlModel, params, config, model_probabilities(trade_inputs, release, trade_part),
        run_id="vector", report=False,
    ).result  # fmt: skip
    event = compute_backtest(
        trade_part, MlModel, params, config, None, run_id="event", report=False,
        engine=Engine.EVENT, signals=model_signals(trade_inputs, release),
    ).result  # fmt: skip

    # Assert
    assert vector.trades.height > 20
    keys = ["entry_ts", "exit_ts", "direction", "exit_reason", "bars_held"]
    assert event.trades.select(keys).equals(vector.trades.select(keys))
    np.testing.assert_allclose(event.equity, vector.equity, rtol=1e-9)
    assert event.equity[-1] == pytest.approx(vector.equity[-1], rel=1e-9)


def test_live_features_from_the_warmup_window_are_within_the_declared_tolerances(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange: a session starting at the last 2,000 bars warms up on the set's warm-up window
    desk = new_desk()
    data = _stored(desk, data_file, "mt4/EURUSD60.csv", Timeframe.H1)
    from services.features import load_feature_set

    resolved = load_feature_set(PARAMS, "default").resolve().for_timeframe(Timeframe.H1)
    inputs = model_inputs(desk.settings, data, _release(resolved.definition_hash()), PARAMS)
    frame = inputs.frame
    table = (
        FeatureRecipe(resolved, inputs.clocks)
        .table(
            SeriesFrame(
                data.bars, frame.timeframe, frame.clock, frame.has_spread, frame.volume_kind
            )
        )
        .frame
    )
    names = [c for c in table.columns if c != "ts" and c not in LABEL_COLUMNS]
    want = table.select(names).to_numpy()[-2_000:]
    bars = series_batch(data)
    start = len(bars) - 2_000
    keep = inputs.warmup_bars()
    live = inputs.live_features()
    tolerance = {s.name: s.tolerance for s in resolved.specs} | {
        ctx.prefix + s.name: s.tolerance for ctx in resolved.context for s in ctx.specs
    }
    recursive = {s.name for s in resolved.specs if s.recursive} | {
        ctx.prefix + s.name for ctx in resolved.context for s in ctx.specs if s.recursive
    }

    # Act
    live.push(slice_batch(bars, start - keep, start))
    got = live.push(slice_batch(bars, start, len(bars)))

    # Assert: every feature within its declared tolerance (a sliding sum reached from another
    # start carries other rounding; recursive features, the memory of the bars before)
    assert keep == 7_825
    gaps = {n: float(np.nanmax(np.abs(got[:, k] - want[:, k]))) for k, n in enumerate(names)}
    assert {n: g for n, g in gaps.items() if g > tolerance[n]} == {}
    assert recursive & {n for n in names if n.startswith("d1_")}
    assert max(gaps[n] for n in recursive) > 0.0  # the window did change something

"""The Backtests page's views: stored runs newest first, a run's tearsheet drawn from its stored
tables, a sweep's heatmap axes and figure; nothing raises on an empty or partial desk.

Runs are written straight into a temporary desk's backtest store, with the figures the engine's
own :func:`performance` measures on a small equity curve (running a strategy is not the subject).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from core.errors import UsageError
from core.settings import Settings
from feature_store.backtests import BacktestStore
from pipelines.backtest.metrics import performance
from services.views.backtests import (
    PORTFOLIO_CHARTS,
    TEARSHEET_CHARTS,
    run_detail,
    stored_runs,
    sweep_grid,
    sweep_heatmap,
)

CASH = 100_000.0
BARS = 48


def _settings(home: Path) -> Settings:
    return Settings(home=home, mlflow_tracking_uri=None, optuna_storage=None, dask_scheduler=None)


def _equity() -> pl.DataFrame:
    start = datetime(2017, 3, 6, tzinfo=UTC)
    ts = [start + timedelta(hours=k) for k in range(BARS)]
    equity = CASH * (1.0 + 0.001 * np.sin(np.arange(BARS) / 3.0) + 0.0002 * np.arange(BARS))
    position = np.where(np.arange(BARS) % 10 < 5, 1000.0, 0.0)
    return pl.DataFrame(
        {
            "ts": pl.Series(ts).dt.cast_time_unit("ns"),
            "equity": equity,
            "drawdown": np.zeros(BARS),
            "position": position,
            "exposure": position,
        }
    )


def _trades() -> pl.DataFrame:
    start = datetime(2017, 3, 6, tzinfo=UTC)
    return pl.DataFrame(
        {
            "entry_ts": [start, start + timedelta(hours=10)],
            "exit_ts": [start + timedelta(hours=5), start + timedelta(hours=15)],
            "pnl": [120.0, -40.0],
            "return": [0.0012, -0.0004],
            "exit_reason": ["signal", "signal"],
        }
    )


def _figures(equity: pl.DataFrame, trades: pl.DataFrame | None) -> dict[str, Any]:
    return performance(
        equity["equity"].to_numpy(),
        ts=equity["ts"].dt.epoch("ns").to_numpy(),
        bars_per_year=6240.0,
        initial_cash=CASH,
        trades=trades,
        position=equity["position"].to_numpy(),
    ).to_dict()


def _backtest(settings: Settings, run_id: str, created: str, **record: Any) -> None:
    equity, trades = _equity(), _trades()
    BacktestStore.backtests(settings).write(
        run_id,
        {
            "kind": "backtest",
            "created": created,
            "strategy": "sma_cross",
            "params": {"fast": 5, "slow": 20},
            "symbol": "EURUSD",
            "timeframe": "H1",
            "side": "ask",
            "first": "2017-03-06T00:00:00Z",
            "last": "2017-03-07T23:00:00Z",
            "metrics": _figures(equity, trades),
            **record,
        },
        {"equity": equity, "trades": trades},
        "<html></html>",
    )


def _sweep_results() -> pl.DataFrame:
    rows = []
    for fast in (5, 10):
        for slow in (20, 40, 60):
            for short in (False, True):
                rows.append(
                    {
                        "fast": fast,
                        "slow": slow,
                        "allow_short": short,
                        "sharpe": fast / slow - (0.5 if short else 0.0),
                        "total_return": 0.01 * fast - 0.001 * slow,
                        "n_trades": fast + slow,
                    }
                )
    return pl.DataFrame(rows).sort("sharpe", descending=True)


def _sweep(settings: Settings, run_id: str, created: str, results: pl.DataFrame) -> None:
    BacktestStore.backtests(settings).write(
        run_id,
        {
            "kind": "sweep",
            "created": created,
            "strategy": "sma_cross",
            "symbol": "EURUSD",
            "timeframe": "H1",
            "combinations": results.height,
            "metric": "sharpe",
            "best": results.row(0, named=True),
        },
        {"results": results},
    )


def test_stored_runs_empty_desk_returns_nothing_and_creates_nothing(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"

    # Act
    rows = stored_runs(_settings(home))

    # Assert
    assert rows == []
    assert not home.exists()


def test_stored_runs_backtest_and_sweep_newest_first_sweep_shows_best(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _backtest(settings, "bt-1", "2026-01-02T00:00:00Z")
    _sweep(settings, "sw-1", "2026-01-03T00:00:00Z", _sweep_results())

    # Act
    rows = stored_runs(settings)

    # Assert
    assert [(r.run_id, r.kind) for r in rows] == [("sw-1", "sweep"), ("bt-1", "backtest")]
    sweep, backtest = rows
    assert sweep.params == "best: fast=10, slow=20, allow_short=False"
    assert sweep.sharpe == pytest.approx(0.5)
    assert sweep.combinations == 12
    assert backtest.params == "fast=5, slow=20"
    assert backtest.n_trades == 2
    assert backtest.combinations is None


def test_run_detail_backtest_without_stored_series_draws_tearsheet_without_benchmark(
    tmp_path: Path,
) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _backtest(settings, "bt-1", "2026-01-02T00:00:00Z")

    # Act
    detail = run_detail(settings, "bt-1")

    # Assert
    assert detail.title == "backtest sma_cross on EURUSD H1"
    assert tuple(detail.charts) == TEARSHEET_CHARTS
    assert [trace.name for trace in detail.charts["equity"].data] == ["strategy"]
    assert detail.note is not None and "no buy-and-hold line" in detail.note
    assert {m.figure: m.value for m in detail.metrics}["n_trades"] == 2
    assert detail.report == str(BacktestStore.backtests(settings).report_path("bt-1"))


def test_run_detail_unreadable_figures_notes_instead_of_raising(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _backtest(settings, "bt-1", "2026-01-02T00:00:00Z", metrics={"sharpe": 1.0})

    # Act
    detail = run_detail(settings, "bt-1")

    # Assert
    assert detail.charts == {}
    assert detail.note == "run bt-1 has no performance figures this solodesk can read"


def test_run_detail_portfolio_draws_its_equity_and_drawdown(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    equity = _equity()
    BacktestStore.backtests(settings).write(
        "pf-1",
        {
            "kind": "portfolio",
            "created": "2026-01-02T00:00:00Z",
            "strategy": "sma_cross",
            "symbols": ["EURUSD", "GBPUSD"],
            "timeframe": "H1",
            "metrics": _figures(equity, None),
            "n_trades": 7,
        },
        {"equity": equity},
    )

    # Act
    detail = run_detail(settings, "pf-1")
    (row,) = stored_runs(settings)

    # Assert
    assert tuple(detail.charts) == PORTFOLIO_CHARTS
    assert detail.title == "portfolio sma_cross on EURUSD, GBPUSD H1"
    assert detail.note is None
    assert (row.symbol, row.n_trades) == ("EURUSD, GBPUSD", 7)


def test_sweep_grid_three_varying_parameters_first_two_are_the_axes(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _sweep(settings, "sw-1", "2026-01-03T00:00:00Z", _sweep_results())

    # Act
    grid = sweep_grid(settings, "sw-1")

    # Assert
    assert grid.params == ("fast", "slow", "allow_short")
    assert (grid.x, grid.y, grid.metric) == ("fast", "slow", "sharpe")
    assert grid.metrics == ("total_return", "sharpe", "n_trades")
    assert grid.combinations == 12


def test_sweep_grid_one_varying_parameter_has_no_axes(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    results = _sweep_results().filter((pl.col("fast") == 5) & ~pl.col("allow_short"))
    _sweep(settings, "sw-2", "2026-01-04T00:00:00Z", results)

    # Act
    grid = sweep_grid(settings, "sw-2")

    # Assert
    assert grid.params == ("slow",)
    assert (grid.x, grid.y) == (None, None)


def test_sweep_heatmap_chosen_metric_best_cell_over_the_other_parameter(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _sweep(settings, "sw-1", "2026-01-03T00:00:00Z", _sweep_results())

    # Act
    figure = sweep_heatmap(settings, "sw-1", "slow", "fast", "sharpe")

    # Assert
    (heatmap,) = figure.data
    assert list(heatmap.x) == ["20", "40", "60"]
    assert list(heatmap.y) == ["5", "10"]
    assert heatmap.z[1][0] == pytest.approx(0.5)  # fast 10 over slow 20, long only
    assert "sharpe over slow x fast" in figure.layout.title.text


def test_sweep_heatmap_same_parameter_on_both_axes_raises_usage_error(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _sweep(settings, "sw-1", "2026-01-03T00:00:00Z", _sweep_results())

    # Act / Assert
    with pytest.raises(UsageError, match="fast on both axes"):
        sweep_heatmap(settings, "sw-1", "fast", "fast", "sharpe")


def test_sweep_grid_of_a_backtest_raises_usage_error(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _backtest(settings, "bt-1", "2026-01-02T00:00:00Z")

    # Act / Assert
    with pytest.raises(UsageError, match="is a backtest, not a sweep"):
        sweep_grid(settings, "bt-1")

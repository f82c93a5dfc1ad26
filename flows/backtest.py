"""The ``backtest`` and ``sweep`` flows: ``solodesk backtest`` and ``solodesk sweep`` as Prefect runs.

Both take the commands' options under the same names (``start`` and ``end`` for ``--from`` and
``--to``; strategy parameters and sweep ranges as mappings rather than repeated ``k=v``
options) and build the cost and sizing configuration with
:meth:`~pipelines.backtest.config.BacktestConfig.from_options`, as the commands do.

The series is loaded in an I/O task. The services assemble a run's record from what they
computed inside :func:`services.backtest.run_stored_backtest` and
:func:`services.backtest.run_stored_sweep`, so compute and record are one task each here,
never retried (a retry would redo the compute); the sweep's plan is a task of its own. The
artifacts: the metrics (the sweep's best rows) as a table, and the tearsheet or heatmap page as
a ``file://`` link.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow

from core.settings import Settings
from core.timeframes import Timeframe
from core.types import Side
from flows.common import compute_task, desk, io_task, link, markdown, md_table, table
from flows.notices import on_flow_failure
from pipelines.backtest.config import BacktestConfig, Direction, Engine, Fill, SweepSearch
from pipelines.backtest.metrics import PerformanceFigures
from services.backtest import (
    BacktestSummary,
    SeriesData,
    SweepOutcome,
    default_jobs,
    load_series,
    plan_sweep,
    run_stored_backtest,
    run_stored_sweep,
)
from services.live_model import ModelChoice, model_choice

#: Rows of a sweep's ranking shown in its artifacts.
SWEEP_TOP = 10


@io_task
def series_step(
    settings: Settings,
    symbol: str,
    timeframe: Timeframe,
    side: Side | None,
    start: datetime | None,
    end: datetime | None,
) -> SeriesData:
    """Read the series' bars, instrument and money conversion (:func:`load_series`)."""
    return load_series(settings, symbol, timeframe, side, start, end)


@compute_task
def backtest_step(
    settings: Settings,
    data: SeriesData,
    strategy: str,
    params: dict[str, str],
    config: BacktestConfig,
    feature_set: str,
    report: bool,
    engine: Engine,
    model: ModelChoice | None,
) -> BacktestSummary:
    """Load the strategy's features (or the model), run it, store the run and its tearsheet.

    One task: :func:`run_stored_backtest` builds the run's record from its computation.
    """
    outcome = run_stored_backtest(
        settings, data, strategy, params, config, feature_set=feature_set, report=report,
        engine=engine, model=model,
    )  # fmt: skip
    return outcome.summary


@io_task
def plan_step(
    settings: Settings,
    strategy: str,
    ranges: dict[str, str],
    search: SweepSearch,
    points: int,
    samples: int,
    seed: int,
) -> tuple[list[dict[str, Any]], int]:
    """Return the combinations to run and how many the strategy refused (:func:`plan_sweep`)."""
    return plan_sweep(
        settings, strategy, ranges, search=search, points=points, samples=samples, seed=seed
    )


@compute_task
def sweep_step(
    settings: Settings,
    data: SeriesData,
    strategy: str,
    combinations: list[dict[str, Any]],
    config: BacktestConfig,
    jobs: int,
    search: SweepSearch,
    metric: str,
    dropped: int,
    feature_set: str,
) -> SweepOutcome:
    """Backtest every combination, rank them, store the table and heatmap.

    One task: :func:`run_stored_sweep` builds the run's record from its computation.
    """
    return run_stored_sweep(
        settings, data, strategy, combinations, config, jobs=jobs, search=search,
        metric=metric, dropped=dropped, feature_set=feature_set,
    )  # fmt: skip


def _page_link(key: str, page: str | None, text: str) -> None:
    if page:
        link(key, Path(page).resolve().as_uri(), text)


def _record_backtest(summary: BacktestSummary, data: SeriesData) -> None:
    figures = summary.model_dump(mode="json")
    rows = [{"metric": name, "value": figures[name]} for name in PerformanceFigures.model_fields]
    table(f"backtest-{summary.run_id}", rows, f"{summary.strategy} on {data.label}")
    params = ", ".join(f"{k}={v}" for k, v in summary.params.items())
    body = (
        f"# Backtest {summary.run_id}\n{summary.strategy} ({params}) on {data.label}, "
        f"{data.bars.height:,} bars, {summary.engine.value} engine, money converted by "
        f"{data.conversion}; {summary.seconds:.2f} s.\n\n{md_table(rows)}\n\n"
        f"Tearsheet: `{summary.tearsheet}`"
    )
    markdown(f"backtest-summary-{summary.run_id}", body, "the backtest's figures")
    _page_link(f"backtest-tearsheet-{summary.run_id}", summary.tearsheet, "tearsheet")


@flow(name="backtest", on_failure=[on_flow_failure], log_prints=True)
def backtest_flow(
    symbol: str,
    timeframe: Timeframe,
    strategy: str | None = None,
    name: str | None = None,
    alias: str | None = None,
    version: int | None = None,
    params_file: str = "params.yaml",
    params: dict[str, str] | None = None,
    side: Side | None = None,
    fees: float = 0.0,
    commission: float = 0.0,
    slippage: float = 0.0,
    slippage_vol: float = 0.0,
    spread: str = "0",
    swap_long: float = 0.0,
    swap_short: float = 0.0,
    fill: Fill = Fill.CLOSE,
    direction: Direction = Direction.BOTH,
    sizing: str = "all-in",
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cash: float = 100_000.0,
    feature_set: str = "default",
    engine: Engine = Engine.VECTOR,
    report: bool = True,
    home: str | None = None,
) -> dict[str, Any]:
    """Backtest a strategy, or a registered model (``name`` with ``alias`` or ``version``).

    The run is stored with its trades, equity and tearsheet, as ``solodesk backtest`` stores
    it; ``params`` are the strategy's parameters (a model trades by its own rule). Returns the
    run's summary as JSON.
    """
    config = BacktestConfig.from_options(
        cash=cash, fees=fees, commission=commission, slippage=slippage,
        slippage_vol=slippage_vol, spread=spread, swap_long=swap_long, swap_short=swap_short,
        fill=fill, direction=direction, sizing=sizing, stop_loss=stop_loss,
        take_profit=take_profit, trailing_stop=trailing_stop,
    )  # fmt: skip
    model = model_choice(strategy, name, alias, version, params_file, strategy_params=bool(params))
    settings = desk(home)
    data = series_step(settings, symbol, timeframe, side, start, end)
    summary = backtest_step(
        settings, data, strategy or "ml_model", dict(params or {}), config, feature_set, report,
        engine, model,
    )  # fmt: skip
    _record_backtest(summary, data)
    return summary.model_dump(mode="json")


def _record_sweep(outcome: SweepOutcome, data: SeriesData, strategy: str, metric: str) -> None:
    summary = outcome.summary
    rows = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        for row in outcome.results.head(SWEEP_TOP).to_dicts()
    ]
    table(f"sweep-{summary.run_id}", rows, f"the best {len(rows)} by {metric}")
    where = "in this process" if summary.jobs == 1 else f"in {summary.jobs} processes"
    body = (
        f"# Sweep {summary.run_id}\n{strategy} on {data.label}: {summary.combinations} "
        f"combinations ({summary.dropped} refused) in {summary.seconds:.1f} s {where}, ranked "
        f"by {metric}.\n\n{md_table(rows)}\n\nResults: `{summary.results}`"
        + (f"\n\nHeatmap: `{summary.heatmap}`" if summary.heatmap else "")
    )
    markdown(f"sweep-summary-{summary.run_id}", body, "the sweep's best combinations")
    _page_link(f"sweep-heatmap-{summary.run_id}", summary.heatmap, "heatmap")


@flow(name="sweep", on_failure=[on_flow_failure], log_prints=True)
def sweep_flow(
    symbol: str,
    timeframe: Timeframe,
    strategy: str,
    ranges: dict[str, str] | None = None,
    search: SweepSearch = SweepSearch.GRID,
    samples: int = 100,
    points: int = 5,
    seed: int = 0,
    jobs: int | None = None,
    metric: str = "sharpe",
    side: Side | None = None,
    fees: float = 0.0,
    commission: float = 0.0,
    slippage: float = 0.0,
    slippage_vol: float = 0.0,
    spread: str = "0",
    fill: Fill = Fill.CLOSE,
    direction: Direction = Direction.BOTH,
    sizing: str = "all-in",
    start: datetime | None = None,
    end: datetime | None = None,
    cash: float = 100_000.0,
    feature_set: str = "default",
    home: str | None = None,
) -> dict[str, Any]:
    """Backtest a strategy over a grid or random sample of its parameters, as ``solodesk sweep``.

    ``ranges`` maps parameter names to ``lo:hi:step`` or ``a,b,c``; parameters left out span
    their declared ranges. ``jobs``: the most worker processes (default: the cores). Returns
    the sweep's summary as JSON.
    """
    config = BacktestConfig.from_options(
        cash=cash, fees=fees, commission=commission, slippage=slippage,
        slippage_vol=slippage_vol, spread=spread, fill=fill, direction=direction, sizing=sizing,
    )  # fmt: skip
    settings = desk(home)
    combinations, dropped = plan_step(
        settings, strategy, dict(ranges or {}), search, points, samples, seed
    )
    data = series_step(settings, symbol, timeframe, side, start, end)
    most = jobs if jobs is not None else default_jobs()
    outcome = sweep_step(
        settings, data, strategy, combinations, config, most, search, metric, dropped,
        feature_set,
    )  # fmt: skip
    _record_sweep(outcome, data, strategy, metric)
    return outcome.summary.model_dump(mode="json")

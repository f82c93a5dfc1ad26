"""The Backtests page: stored backtests, sweeps and portfolios, their tearsheets and heatmaps.

Runs are read from their store under ``SOLODESK_HOME/backtests`` through
:func:`services.catalog.backtest_runs` (never the DuckDB catalog). The charts are the reports'
own: a backtest's tearsheet is :func:`pipelines.backtest.tearsheet.tearsheet_figures` drawn
from the stored equity and trades (with the buy-and-hold line of the stored series when it is
still there), a portfolio's equity and drawdown the same figures of its shared equity, and a
sweep's heatmap :func:`pipelines.backtest.sweep.sweep_heatmap_figure` of its results table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import polars as pl
from pydantic import ValidationError

from core.errors import SolodeskError, UsageError
from core.records import finite_number, whole_number
from core.settings import Settings
from core.types import Frozen
from feature_store.backtests import BacktestStore, StoredRun
from services.catalog import backtest_run, backtest_runs

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from pipelines.backtest.metrics import Metrics

#: The commands that store a backtest, a sweep and a portfolio run.
BACKTEST_COMMAND = "solodesk backtest --symbol EURUSD --timeframe H1 --strategy sma_cross"
SWEEP_COMMAND = "solodesk sweep --symbol EURUSD --timeframe H1 --strategy sma_cross"
#: The tearsheet's charts, in the order the page shows them.
TEARSHEET_CHARTS = ("equity", "drawdown", "monthly", "trade_pnl", "trade_scatter", "exposure")
#: A portfolio's charts (drawn by the tearsheet from its shared equity).
PORTFOLIO_CHARTS = ("equity", "drawdown")


class BacktestRow(Frozen):
    """One stored run as the runs table lists it (a sweep's figures are its best row's)."""

    run_id: str
    kind: str
    created: str | None
    strategy: str | None
    symbol: str | None
    timeframe: str | None
    params: str
    sharpe: float | None
    total_return: float | None
    max_drawdown: float | None
    n_trades: int | None
    combinations: int | None


class MetricRow(Frozen):
    """One performance figure of a run (ratios and returns are fractions)."""

    figure: str
    value: float | int | str | None


class RunDetail(Frozen):
    """One stored run: what it was, its figures, and the report's Plotly figures by name.

    ``charts`` is the tearsheet of a backtest, the equity and drawdown of a portfolio, empty for
    a sweep (its heatmap is :func:`sweep_heatmap`); ``note`` says what could not be drawn;
    ``report`` is the HTML report's path when the file exists.
    """

    run_id: str
    kind: str
    title: str
    metrics: tuple[MetricRow, ...]
    charts: dict[str, Any]
    note: str | None
    report: str | None


class SweepGrid(Frozen):
    """What a sweep's heatmap can show: the parameters that vary, the metrics, and the axes and
    metric the sweep's own heatmap used (None when fewer than two parameters vary)."""

    run_id: str
    params: tuple[str, ...]
    metrics: tuple[str, ...]
    x: str | None
    y: str | None
    metric: str
    combinations: int
    best: dict[str, Any]


# -- reading a record ------------------------------------------------------------------------


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _params(values: object) -> str:
    if not isinstance(values, Mapping) or not values:
        return ""
    return ", ".join(f"{key}={value}" for key, value in values.items())


def _figures(run: StoredRun) -> Mapping[str, Any]:
    """Return the run's headline figures: a sweep's best row, else its metrics."""
    key = "best" if run.kind == "sweep" else "metrics"
    found = run.record.get(key)
    return found if isinstance(found, Mapping) else {}


def _sweep_params(run: StoredRun) -> dict[str, Any]:
    from pipelines.backtest.sweep import RESULT_METRICS

    return {k: v for k, v in _figures(run).items() if k not in RESULT_METRICS}


# -- the runs --------------------------------------------------------------------------------


def stored_runs(settings: Settings) -> list[BacktestRow]:
    """Return the stored backtests, sweeps and portfolios, newest first."""
    runs = sorted(backtest_runs(settings), key=lambda r: (str(r.record.get("created", "")), r.id))
    rows = []
    for run in reversed(runs):
        record, figures = run.record, _figures(run)
        symbols = record.get("symbols")
        symbol = ", ".join(map(str, symbols)) if isinstance(symbols, list) else record.get("symbol")
        params = record.get("params")
        rows.append(
            BacktestRow(
                run_id=run.id,
                kind=run.kind,
                created=_text(record.get("created")),
                strategy=_text(record.get("strategy")),
                symbol=_text(symbol),
                timeframe=_text(record.get("timeframe")),
                params=(
                    f"best: {_params(_sweep_params(run))}"
                    if run.kind == "sweep"
                    else _params(params)
                ),
                sharpe=finite_number(figures.get("sharpe")),
                total_return=finite_number(figures.get("total_return")),
                max_drawdown=finite_number(figures.get("max_drawdown")),
                # a portfolio counts the bars in which any weight changed
                n_trades=whole_number(record.get("n_trades", figures.get("n_trades"))),
                combinations=whole_number(record.get("combinations")),
            )
        )
    return rows


def _metrics(figures: Mapping[str, Any]) -> Metrics:
    """Return the stored figures as the :class:`Metrics` the tearsheet draws from.

    Raises
    ------
    pydantic.ValidationError
        If the stored figures are not those of :class:`PerformanceFigures`.
    """
    from core.times import parse_utc
    from pipelines.backtest.metrics import Metrics, PerformanceFigures

    checked = PerformanceFigures.model_validate(figures).model_dump()
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Metrics):
        value = checked[field.name]
        if field.name in ("start", "end"):
            values[field.name] = None if value is None else parse_utc(value)
        else:  # a ratio stored as None was NaN or infinite: NaN draws as "–"
            values[field.name] = math.nan if value is None else value
    return Metrics(**values)


def _benchmark(settings: Settings, run: StoredRun, equity: pl.DataFrame) -> pl.Series | None:
    """Return the buy-and-hold account value of the run's stored series on its bars, or None
    when the series (or one of its bars) is no longer stored."""
    from core.timeframes import parse_timeframe
    from core.times import parse_utc
    from core.types import Side
    from feature_store.series import find_series
    from feature_store.store import BarStore

    record = run.record
    cash = finite_number(_figures(run).get("initial_cash"))
    if cash is None or equity.height == 0:
        return None
    try:
        store = BarStore(settings.store_dir)
        side = Side(record["side"]) if record.get("side") else None
        info = find_series(
            store, settings.registry, str(record["symbol"]),
            parse_timeframe(str(record["timeframe"])), side,
        )  # fmt: skip
        start = parse_utc(str(record["first"])) if record.get("first") else None
        end = (
            parse_utc(str(record["last"])) + timedelta(microseconds=1)
            if record.get("last")
            else None
        )
        bars = store.read(info.key, start, end, info=info)
    except (SolodeskError, KeyError, ValueError):
        return None
    bars = bars.select(pl.col("ts").cast(equity.schema["ts"]), "close")
    close = equity.select("ts").join(bars, on="ts", how="left")["close"]
    if close.null_count() or close.len() == 0 or not close[0]:
        return None
    return cash * close / close[0]


def _metric_rows(run: StoredRun) -> tuple[MetricRow, ...]:
    figures = _figures(run)
    params = _sweep_params(run) if run.kind == "sweep" else {}
    return tuple(
        MetricRow(figure=name, value=str(value) if isinstance(value, bool) else value)
        for name, value in figures.items()
        if name not in params and (value is None or isinstance(value, int | float | str))
    )


def _tearsheet(
    settings: Settings, store: BacktestStore, run: StoredRun
) -> tuple[dict[str, Any], str | None]:
    from pipelines.backtest.tearsheet import tearsheet_figures

    files = run.record.get("files", {})
    if "equity" not in files:
        return {}, f"run {run.id} stored no equity table"
    try:
        metrics = _metrics(_figures(run))
    except ValidationError:
        return {}, f"run {run.id} has no performance figures this solodesk can read"
    equity = store.table(run, "equity")
    trades = store.table(run, "trades") if "trades" in files else pl.DataFrame()
    benchmark = _benchmark(settings, run, equity) if run.kind == "backtest" else None
    figures = tearsheet_figures(
        ts=equity["ts"].dt.epoch("ns").to_numpy(),
        equity=equity["equity"].to_numpy(),
        position=equity["position"].fill_null(0.0).to_numpy(),
        trades=trades,
        metrics=metrics,
        initial_cash=metrics.initial_cash,
        benchmark=None if benchmark is None else benchmark.to_numpy(),
    )
    names = TEARSHEET_CHARTS if run.kind == "backtest" else PORTFOLIO_CHARTS
    note = None
    if run.kind == "backtest" and benchmark is None:
        note = "the run's series is no longer stored as it was: no buy-and-hold line"
    return {name: figures[name] for name in names if name in figures}, note


def run_detail(settings: Settings, run_id: str) -> RunDetail:
    """Return one stored run: its figures and the report's charts (see :class:`RunDetail`).

    Raises
    ------
    UsageError
        If no stored run (or several) matches ``run_id``.
    """
    store = BacktestStore.backtests(settings)
    run = backtest_run(settings, run_id)
    record = run.record
    symbols = record.get("symbols")
    where = ", ".join(map(str, symbols)) if isinstance(symbols, list) else record.get("symbol")
    title = " ".join(
        str(part)
        for part in (run.kind, record.get("strategy"), "on", where, record.get("timeframe"))
        if part
    )
    charts: dict[str, Any] = {}
    note = None
    if run.kind in ("backtest", "portfolio"):
        charts, note = _tearsheet(settings, store, run)
    path = store.report_path(run.id)
    return RunDetail(
        run_id=run.id,
        kind=run.kind,
        title=title,
        metrics=_metric_rows(run),
        charts=charts,
        note=note,
        report=str(path) if path.is_file() else None,
    )


# -- sweeps ----------------------------------------------------------------------------------


def _results(settings: Settings, run_id: str) -> tuple[StoredRun, pl.DataFrame]:
    run = backtest_run(settings, run_id)
    if run.kind != "sweep":
        raise UsageError(f"run {run.id} is a {run.kind}, not a sweep: it has no heatmap")
    return run, BacktestStore.backtests(settings).table(run, "results")


def sweep_grid(settings: Settings, run_id: str) -> SweepGrid:
    """Return what a stored sweep's heatmap can show (see :class:`SweepGrid`).

    Raises
    ------
    UsageError
        If no stored run (or several) matches ``run_id``, or it is not a sweep.
    """
    from pipelines.backtest.sweep import RESULT_METRICS, heatmap_axes

    run, results = _results(settings, run_id)
    params = [c for c in results.columns if c not in RESULT_METRICS]
    varying = tuple(p for p in params if results[p].n_unique() > 1)
    metrics = tuple(
        c for c in RESULT_METRICS if c in results.columns and results[c].dtype.is_numeric()
    )
    axes = heatmap_axes(results, varying)
    metric = str(run.record.get("metric") or "sharpe")
    return SweepGrid(
        run_id=run.id,
        params=varying,
        metrics=metrics,
        x=None if axes is None else axes[0],
        y=None if axes is None else axes[1],
        metric=metric if metric in metrics else (metrics[0] if metrics else metric),
        combinations=results.height,
        best=dict(_figures(run)),
    )


def sweep_heatmap(settings: Settings, run_id: str, x: str, y: str, metric: str) -> go.Figure:
    """Return the sweep's heatmap of ``metric`` over parameters ``x`` and ``y`` (each cell the
    best over the other parameters).

    Raises
    ------
    UsageError
        If no stored run (or several) matches ``run_id``, it is not a sweep, or ``x``, ``y`` or
        ``metric`` is not one of its columns (or ``x`` is ``y``).
    """
    from pipelines.backtest.sweep import sweep_heatmap_figure

    run, results = _results(settings, run_id)
    unknown = [name for name in (x, y, metric) if name not in results.columns]
    if unknown or x == y:
        what = f"{', '.join(unknown)} not in its results" if unknown else f"{x} on both axes"
        raise UsageError(f"sweep {run.id}: cannot draw {metric} over {x} x {y}: {what}")
    title = f"{run.record.get('strategy', 'sweep')}: {metric} over {x} x {y} (run {run.id})"
    return sweep_heatmap_figure(results, x, y, metric, title=title)

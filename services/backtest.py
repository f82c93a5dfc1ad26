"""Backtests, sweeps and portfolios on stored series: load, compute, record.

The pure work lives in :mod:`pipelines.backtest`; series come from
:func:`feature_store.series.load_series` (bars, instrument, money conversion), strategies from
the vault and the user's files in settings, and each run is written once with
:class:`feature_store.backtests.BacktestStore`. Each job is

- load: the series (:func:`load_series`), the strategy and the feature columns it reads
  (:func:`load_strategy_features`);
- compute: signals, the engine, the metrics and the report page (:func:`compute_backtest`,
  :func:`compute_sweep`, :func:`compute_portfolio`);
- record: the run's tables, record and report (:func:`record_run`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from core.errors import UsageError
from core.ids import new_run_id
from core.settings import Settings
from core.times import iso_z, utc_now
from execution.model_signals import ModelSignals
from feature_store.backtests import BacktestStore, StoredRun
from feature_store.feature_index import FeatureStore
from feature_store.series import SeriesData, load_series
from models.strategies.base import Strategy
from models.strategies.ml_model import MlModel
from models.strategies.registry import grid, make_strategy, parse_range, random_samples
from pipelines.backtest.config import BacktestConfig, Engine, SweepSearch
from pipelines.backtest.engine import BacktestResult, run_backtest
from pipelines.backtest.metrics import Metrics, PerformanceFigures, drawdown, performance
from pipelines.backtest.portfolio import PortfolioConfig, PortfolioResult, run_portfolio
from pipelines.backtest.portfolio_report import portfolio_report_html
from pipelines.backtest.positions import signal_directions, traded_notional
from pipelines.backtest.sweep import (
    SweepJob,
    default_jobs,
    heatmap_axes,
    run_sweep,
    sweep_heatmap_html,
)
from pipelines.backtest.tearsheet import tearsheet_html
from services.common import Progress, git_commit, load_user_strategy, strategy_ref
from services.live_model import ModelChoice

__all__ = ["SeriesData", "default_jobs", "load_series"]  # what the commands call besides jobs


# -- results ---------------------------------------------------------------------------------


class _BacktestHead(BaseModel):
    run_id: str
    symbol: str
    timeframe: str
    side: str
    strategy: str
    params: dict[str, Any]


class BacktestSummary(PerformanceFigures, _BacktestHead):
    """A stored backtest: what ran, every performance figure, its tearsheet; the ``--json`` line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tearsheet: str | None
    seconds: float
    engine: Engine = Engine.VECTOR


class SweepSummary(BaseModel):
    """A stored sweep: its size, best row, heatmap and results table; the ``--json`` line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    combinations: int
    dropped: int
    jobs: int
    seconds: float
    best: dict[str, Any]
    heatmap: str | None
    results: str


class _PortfolioHead(BaseModel):
    run_id: str
    symbols: tuple[str, ...]
    strategy: str
    params: dict[str, Any]
    sizing: str


class PortfolioSummary(PerformanceFigures, _PortfolioHead):
    """A stored portfolio run: figures of the shared equity, last risk figures, its report.

    ``n_trades`` counts bars in which any weight changed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    risk_last: dict[str, float | None]
    report: str | None
    seconds: float


@dataclass(frozen=True)
class BacktestOutcome:
    """A finished, stored backtest: the run, the engine's result, and its summary."""

    run: StoredRun
    result: BacktestResult
    metrics: Metrics
    data: SeriesData
    summary: BacktestSummary


@dataclass(frozen=True)
class SweepOutcome:
    """A finished, stored sweep: the run, its ranked results table and its summary."""

    run: StoredRun
    results: pl.DataFrame
    summary: SweepSummary


@dataclass(frozen=True)
class PortfolioOutcome:
    """A finished, stored portfolio run."""

    run: StoredRun
    result: PortfolioResult
    metrics: Metrics
    per_symbol: pl.DataFrame
    summary: PortfolioSummary


# -- load ------------------------------------------------------------------------------------


def load_strategy_features(
    settings: Settings, strategy: type[Strategy], data: SeriesData, feature_set: str
) -> pl.DataFrame | None:
    """Return the feature columns a strategy reads, on the series' bars (None if it reads none).

    Raises
    ------
    UsageError
        If the feature set is not built on the series, or lacks a column the strategy reads.
    """
    needs = tuple(getattr(strategy, "needs_features", ()) or ())
    if not needs:
        return None
    features = FeatureStore(settings.features_dir)
    build = features.latest(feature_set, data.info.key)
    if build is None:
        msg = (
            f"strategy {strategy.name} reads {', '.join(needs)} from feature set {feature_set!r}, "
            f"which is not built on {data.label}: run solodesk features build first"
        )
        raise UsageError(msg)
    table = features.read(build)
    missing = [n for n in needs if n not in table.columns]
    if missing:
        msg = (
            f"strategy {strategy.name} reads {', '.join(missing)}, not in feature set "
            f"{feature_set!r} on {data.label}"
        )
        raise UsageError(msg)
    return data.bars.select("ts").join(table.select("ts", *needs), on="ts", how="left")


def plan_sweep(
    settings: Settings,
    strategy_name: str,
    ranges: Mapping[str, str],
    *,
    search: SweepSearch = SweepSearch.GRID,
    points: int = 5,
    samples: int = 100,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Return the parameter combinations a sweep runs, and how many the strategy refused.

    ``ranges`` maps parameter names to ``lo:hi:step`` or ``a,b,c`` text; parameters left out
    span their declared ranges (grid) or are drawn from them (random).

    Raises
    ------
    UsageError
        If the strategy is unknown, declares no such parameter, or a range is malformed.
    """
    cls = load_user_strategy(settings, strategy_name)
    specs = {spec.name: spec for spec in cls.params}
    parsed: dict[str, list[Any]] = {}
    for name, text in ranges.items():
        if name not in specs:
            known = ", ".join(specs)
            raise UsageError(f"--param {name}: {cls.name} declares no such parameter ({known})")
        parsed[name] = parse_range(specs[name], text)
    if search == "grid":
        return grid(cls, parsed, points=points)
    return random_samples(cls, samples, seed, parsed)


def portfolio_config(
    series: Sequence[SeriesData], base: BacktestConfig, **options: Any
) -> PortfolioConfig:
    """Return the portfolio configuration of loaded series (their bars per year) and options
    (:meth:`PortfolioConfig.from_options`)."""
    return PortfolioConfig.from_options(bars_per_year=series[0].bars_per_year, base=base, **options)


# -- compute ---------------------------------------------------------------------------------


def _equity_table(result: BacktestResult) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": pl.Series(result.ts.astype("datetime64[ns]")).dt.replace_time_zone("UTC"),
            "equity": result.equity,
            "drawdown": drawdown(result.equity),
            "position": result.position,
            "exposure": result.exposure,
        }
    )


@dataclass(frozen=True)
class BacktestComputation:
    """What a backtest computed: the engine's result, its metrics, parameters and report page."""

    strategy: str
    params: dict[str, Any]
    result: BacktestResult
    metrics: Metrics
    html: str | None


def compute_backtest(
    data: SeriesData,
    strategy_cls: type[Strategy],
    params: Mapping[str, object],
    config: BacktestConfig,
    features: pl.DataFrame | None,
    *,
    run_id: str,
    report: bool = True,
    engine: Engine = Engine.VECTOR,
    signals: ModelSignals | None = None,
) -> BacktestComputation:
    """Run a strategy through an engine on a loaded series; measure it; render its tearsheet.

    ``engine="event"`` runs the trading loop on the replayed bars
    (:func:`services.runtime.event_backtest`) instead of the compiled vectorized engine; both
    give the same trades and equity. A model's ``signals`` give the loop its P(up) bar by bar
    (the vectorized engine reads it from ``features``).
    """
    strategy = make_strategy(strategy_cls, params)
    if engine is Engine.EVENT:
        from services.runtime import event_backtest

        result = event_backtest(data, strategy_cls, params, config, features, signals)
    else:
        targets = strategy.signals(data.bars, features)
        result = run_backtest(
            data.bars, targets, data.instrument, config, side=data.key.side.value,
            bars_per_year=data.bars_per_year, to_account=data.to_account,
        )  # fmt: skip
    traded = traded_notional(result.position, data.bars["close"].to_numpy(), data.to_account)
    metrics = performance(
        result.equity, ts=result.ts, bars_per_year=data.bars_per_year,
        initial_cash=config.cash, trades=result.trades, position=result.position,
        traded_notional=traded,
    )  # fmt: skip
    values = {spec.name: getattr(strategy, spec.name, None) for spec in strategy_cls.params}
    html = None
    if report:
        close = data.bars["close"].to_numpy()
        html = tearsheet_html(
            title=f"{strategy_cls.name} on {data.label}",
            subtitle=", ".join(f"{k}={v}" for k, v in values.items()) + f" · run {run_id}",
            ts=result.ts, equity=result.equity, position=result.position,
            trades=result.trades, metrics=metrics, initial_cash=config.cash,
            benchmark=config.cash * close / close[0],
        )  # fmt: skip
    return BacktestComputation(strategy_cls.name, values, result, metrics, html)


def _series_record(data: SeriesData) -> dict[str, Any]:
    return {
        "symbol": data.key.symbol,
        "timeframe": data.key.timeframe.value,
        "side": data.key.side.value,
        "series_version": data.info.version,
    }


# -- record ----------------------------------------------------------------------------------


def record_run(
    store: BacktestStore,
    run_id: str,
    record: dict[str, Any],
    tables: dict[str, pl.DataFrame],
    html: str | None,
) -> StoredRun:
    """Write a run's tables, record and report page, all at once (see :class:`BacktestStore`)."""
    return store.write(run_id, record, tables, html)


# -- jobs ------------------------------------------------------------------------------------


def run_stored_backtest(
    settings: Settings,
    data: SeriesData,
    strategy_name: str,
    params: Mapping[str, object],
    config: BacktestConfig,
    *,
    feature_set: str = "default",
    report: bool = True,
    engine: Engine = Engine.VECTOR,
    model: ModelChoice | None = None,
) -> BacktestOutcome:
    """Backtest a strategy, or a registered model, on a loaded series; store the run and
    write its tearsheet.

    A ``model`` trades through ``ml_model`` by the rule it was trained with. The event engine
    computes its features bar by bar in the loop; the vectorized engine reads them from the
    research feature table: on the same bars, fills and costs both give the same trades.
    """
    started = time.perf_counter()
    created = utc_now()
    signals = None
    release = None
    if model is not None:
        from services.live_model import (
            load_release,
            model_inputs,
            model_probabilities,
            model_signals,
            release_params,
        )

        release = load_release(settings, model.name, alias=model.alias, version=model.version)
        inputs = model_inputs(settings, data, release, model.params_file)
        cls: type[Strategy] = MlModel
        params = release_params(release)
        if engine is Engine.EVENT:
            features = None
            signals = model_signals(inputs, release)
        else:
            features = model_probabilities(inputs, release, data)
    else:
        cls = load_user_strategy(settings, strategy_name)
        features = load_strategy_features(settings, cls, data, feature_set)
    run_id = new_run_id("backtest", created)
    done = compute_backtest(
        data, cls, params, config, features, run_id=run_id, report=report, engine=engine,
        signals=signals,
    )  # fmt: skip
    record = {
        "kind": "backtest",
        "engine": engine.value,
        "created": iso_z(created),
        "strategy": done.strategy,
        "params": done.params,
        "model": None if release is None else release.name,
        "model_version": None if release is None else release.version,
        **_series_record(data),
        "first": iso_z(data.bars["ts"][0]),
        "last": iso_z(data.bars["ts"][-1]),
        "bars": data.bars.height,
        "conversion": data.conversion,
        "config": config.model_dump(),
        "metrics": done.metrics.to_dict(),
        "git_commit": git_commit(),
    }
    tables = {"equity": _equity_table(done.result), "trades": done.result.trades}
    run = record_run(BacktestStore.backtests(settings), run_id, record, tables, done.html)
    seconds = time.perf_counter() - started
    summary = BacktestSummary.model_validate(
        {
            "run_id": run.id,
            "symbol": data.key.symbol,
            "timeframe": data.key.timeframe.value,
            "side": data.key.side.value,
            "strategy": done.strategy,
            "params": done.params,
            **done.metrics.to_dict(),
            "tearsheet": run.record["report"],
            "seconds": round(seconds, 3),
            "engine": engine,
        }
    )
    return BacktestOutcome(run, done.result, done.metrics, data, summary)


def compute_sweep(
    settings: Settings,
    data: SeriesData,
    strategy_name: str,
    combinations: Sequence[Mapping[str, Any]],
    config: BacktestConfig,
    features: pl.DataFrame | None,
    *,
    jobs: int,
    metric: str,
    run_id: str,
    progress: Progress | None = None,
) -> tuple[pl.DataFrame, int, str | None]:
    """Backtest every combination; return the results ranked by ``metric``, the workers used,
    and the heatmap page (None when fewer than two parameters vary).

    Raises
    ------
    UsageError
        If ``metric`` is not a column of the results.
    """
    ref = strategy_ref(settings, strategy_name)
    cls = ref.load()
    job = SweepJob(
        ref, data.bars, features, data.instrument, config, data.key.side.value,
        data.bars_per_year, data.to_account,
    )  # fmt: skip
    done = 0
    total = len(combinations)

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress("sweep", done, total)

    swept = run_sweep(job, combinations, jobs=jobs, progress=step)
    results = swept.results
    if metric not in results.columns:
        raise UsageError(f"--metric {metric!r}: choose one of {', '.join(results.columns)}")
    ranked = results.sort(metric, descending=True, nulls_last=True)
    axes = heatmap_axes(ranked, [spec.name for spec in cls.params])
    html = None
    if axes is not None:
        html = sweep_heatmap_html(
            ranked, axes[0], axes[1], metric,
            title=f"{cls.name} on {data.label}: {metric} over {axes[0]} x {axes[1]} "
            f"({total} combinations, run {run_id})",
        )  # fmt: skip
    return ranked, swept.workers, html


def run_stored_sweep(
    settings: Settings,
    data: SeriesData,
    strategy_name: str,
    combinations: Sequence[Mapping[str, Any]],
    config: BacktestConfig,
    *,
    jobs: int,
    search: SweepSearch,
    metric: str = "sharpe",
    dropped: int = 0,
    feature_set: str = "default",
    progress: Progress | None = None,
) -> SweepOutcome:
    """Run a parameter sweep on a loaded series; store its table and heatmap.

    ``jobs`` is the most worker processes the sweep may use: it runs in this process when the
    work is too small to pay for their start-up (:func:`pipelines.backtest.sweep.run_sweep`).
    """
    started = time.perf_counter()
    created = utc_now()
    cls = load_user_strategy(settings, strategy_name)
    features = load_strategy_features(settings, cls, data, feature_set)
    run_id = new_run_id("sweep", created)
    ranked, workers, html = compute_sweep(
        settings, data, strategy_name, combinations, config, features, jobs=jobs, metric=metric,
        run_id=run_id, progress=progress,
    )  # fmt: skip
    best = ranked.row(0, named=True)
    record = {
        "kind": "sweep",
        "created": iso_z(created),
        "strategy": cls.name,
        "search": search,
        "combinations": len(combinations),
        "dropped": dropped,
        "jobs": workers,
        "metric": metric,
        "best": best,
        **_series_record(data),
        "bars": data.bars.height,
        "config": config.model_dump(),
        "git_commit": git_commit(),
    }
    run = record_run(BacktestStore.backtests(settings), run_id, record, {"results": ranked}, html)
    summary = SweepSummary(
        run_id=run.id, combinations=ranked.height, dropped=dropped, jobs=workers,
        seconds=round(time.perf_counter() - started, 3), best=best,
        heatmap=run.record["report"], results=str(run.folder / "results.parquet"),
    )  # fmt: skip
    return SweepOutcome(run, ranked, summary)


@dataclass(frozen=True)
class PortfolioComputation:
    """What a portfolio run computed: parameters, the result, its metrics, the gross exposure
    per bar (sum of |weights|) and the report page."""

    params: dict[str, Any]
    result: PortfolioResult
    metrics: Metrics
    gross: np.ndarray
    html: str | None


def compute_portfolio(
    series: Sequence[SeriesData],
    strategy_cls: type[Strategy],
    params: Mapping[str, object],
    config: PortfolioConfig,
    features: Mapping[str, pl.DataFrame | None],
    *,
    direction: str,
    title: str,
    report: bool = True,
) -> PortfolioComputation:
    """Size, cap and rebalance one strategy's directions on several series with shared equity."""
    strategy = make_strategy(strategy_cls, params)
    directions = {}
    for data in series:
        signals = strategy.signals(data.bars, features[data.key.symbol])
        directions[data.key.symbol] = signal_directions(signals, data.bars.height, direction)
    result = run_portfolio(
        {d.key.symbol: d.bars for d in series},
        directions,
        {d.key.symbol: d.instrument for d in series},
        config,
        to_account={d.key.symbol: d.to_account for d in series},
    )
    ts = result.ts.dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()
    gross = np.nansum(np.abs(result.weights), axis=1)
    metrics = performance(
        result.equity, ts=ts, bars_per_year=config.bars_per_year, initial_cash=config.cash,
        position=gross, traded_notional=result.turnover * np.concatenate(
            ([config.cash], result.equity[:-1])),
    )  # fmt: skip
    values = {spec.name: getattr(strategy, spec.name, None) for spec in strategy_cls.params}
    html = None
    if report:
        html = portfolio_report_html(
            result,
            title=title,
            metrics={k: v for k, v in metrics.to_dict().items() if isinstance(v, float)},
        )
    return PortfolioComputation(values, result, metrics, gross, html)


def run_stored_portfolio(
    settings: Settings,
    series: Sequence[SeriesData],
    strategy_name: str,
    params: Mapping[str, object],
    config: PortfolioConfig,
    *,
    direction: str = "both",
    feature_set: str = "default",
    report: bool = True,
) -> PortfolioOutcome:
    """Run one strategy on several loaded series as one portfolio; store it and its report.

    Each symbol's wanted direction comes from the strategy's signals on its own bars; the
    portfolio sizes, caps and rebalances them with shared equity (see
    :mod:`pipelines.backtest.portfolio`).

    Raises
    ------
    UsageError
        If a symbol is given twice.
    """
    started = time.perf_counter()
    created = utc_now()
    symbols = [d.key.symbol for d in series]
    if len(set(symbols)) != len(symbols):
        raise UsageError(f"a symbol is given twice: {', '.join(symbols)}")
    cls = load_user_strategy(settings, strategy_name)
    features = {d.key.symbol: load_strategy_features(settings, cls, d, feature_set) for d in series}
    run_id = new_run_id("portfolio", created)
    timeframe = series[0].key.timeframe.value
    done = compute_portfolio(
        series, cls, params, config, features, direction=direction, report=report,
        title=f"{cls.name} portfolio of {len(symbols)} symbols, {timeframe}: run {run_id}",
    )  # fmt: skip
    result, metrics, values, gross, html = (
        done.result, done.metrics, done.params, done.gross, done.html
    )  # fmt: skip
    per_symbol = result.per_symbol_table()
    weights = pl.DataFrame(
        {"ts": result.ts, **{s: result.weights[:, i] for i, s in enumerate(result.symbols)}}
    )
    equity = pl.DataFrame(
        {
            "ts": result.ts,
            "equity": result.equity,
            "drawdown": drawdown(result.equity),
            "position": gross,
            "exposure": gross,
        }
    )
    n_trades = int(result.n_trades.sum())
    record = {
        "kind": "portfolio",
        "created": iso_z(created),
        "strategy": cls.name,
        "params": values,
        "direction": direction,
        "symbols": symbols,
        "timeframe": timeframe,
        "series_versions": {d.label: d.info.version for d in series},
        "conversions": {d.key.symbol: d.conversion for d in series},
        "config": config.model_dump(),
        "metrics": metrics.to_dict(),
        "n_trades": n_trades,
        "sizing_fallbacks": result.sizing_fallbacks,
        "git_commit": git_commit(),
    }
    tables = {"equity": equity, "weights": weights, "risk": result.risk,
              "symbols": per_symbol}  # fmt: skip
    run = record_run(BacktestStore.backtests(settings), run_id, record, tables, html)
    last = {
        c: (None if v is None or not np.isfinite(v) else float(v))
        for c, v in result.risk.drop("ts").tail(1).row(0, named=True).items()
    }
    summary = PortfolioSummary.model_validate(
        {
            "run_id": run.id,
            "symbols": symbols,
            "strategy": cls.name,
            "params": values,
            "sizing": config.sizing,
            **metrics.to_dict(),
            "n_trades": n_trades,
            "risk_last": last,
            "report": run.record["report"],
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    return PortfolioOutcome(run, result, metrics, per_symbol, summary)

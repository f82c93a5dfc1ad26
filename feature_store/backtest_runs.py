"""Backtests, sweeps and portfolios on stored series: read, run, store, report.

The pure work lives in :mod:`pipelines.backtest`; this module finds the series, converts money
to the account currency, loads strategies (entry points and the user's files from settings),
and writes each run with :class:`feature_store.backtests.BacktestStore`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.errors import UsageError
from core.settings import Settings, config_file
from core.timeframes import Timeframe
from core.types import Instrument, Side
from feature_store.backtests import BacktestStore, StoredRun, new_run_id
from feature_store.feature_index import FeatureStore
from feature_store.features import features_root, find_series, read_build
from feature_store.store import BarStore, SeriesInfo
from models.strategies.base import Strategy
from models.strategies.registry import make_strategy
from pipelines.backtest.config import BacktestConfig
from pipelines.backtest.engine import (
    BacktestResult,
    conversion_pair,
    quote_to_account,
    run_backtest,
)
from pipelines.backtest.metrics import Metrics, bars_per_year, drawdown, performance
from pipelines.backtest.portfolio import PortfolioConfig, PortfolioResult, run_portfolio
from pipelines.backtest.portfolio_report import portfolio_report_html
from pipelines.backtest.positions import signal_directions, traded_notional
from pipelines.backtest.sweep import (
    StrategyRef,
    SweepJob,
    heatmap_axes,
    run_sweep,
    sweep_heatmap_html,
)
from pipelines.backtest.tearsheet import tearsheet_html

Progress = Callable[[str, int, int], None]


def backtest_store(settings: Settings) -> BacktestStore:
    """Return the store of backtest runs under ``SOLODESK_HOME``."""
    return BacktestStore(settings.home / "backtests", settings.reports_dir)


def strategy_ref(settings: Settings, name: str) -> StrategyRef:
    """Return how to load a strategy: entry points plus the user's files from settings."""
    return StrategyRef(name, dict(settings.strategies), config_file().resolve().parent)


def load_user_strategy(settings: Settings, name: str) -> type[Strategy]:
    """Return a strategy class by name (entry points and the user's files)."""
    return strategy_ref(settings, name).load()


def git_commit() -> str | None:
    """Return the commit of the code that ran, when it runs from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@dataclass(frozen=True)
class SeriesData:
    """A stored series ready to backtest: its bars, instrument and money conversion."""

    info: SeriesInfo
    bars: pl.DataFrame
    instrument: Instrument
    to_account: np.ndarray | float
    bars_per_year: float
    conversion: str

    @property
    def label(self) -> str:
        """Return ``SYMBOL TF side``."""
        return f"{self.info.key.symbol} {self.info.key.timeframe.value} {self.info.key.side.value}"


def _conversion(
    store: BarStore, settings: Settings, instrument: Instrument, timeframe: Timeframe,
    bars: pl.DataFrame,
) -> tuple[np.ndarray | float, str]:  # fmt: skip
    """Return the quote-to-account rate per bar (:func:`quote_to_account`) and how it was found.

    For a pair quoted in neither the account currency nor its own base, the rate comes from
    the stored series of the conventional pair joining the two currencies, same timeframe,
    taken as of each bar (the first bars before it starts take its first value).
    """
    account = settings.account_currency.upper()
    if instrument.quote == account:
        return 1.0, f"{instrument.quote} is the account currency"
    if instrument.base == account:
        return quote_to_account(instrument, account, bars), f"1 / {instrument.symbol} close"
    pair = conversion_pair(instrument.quote, account)
    found = [s for s in store.series() if s.key.symbol == pair and s.key.timeframe is timeframe]
    if not found:
        msg = (
            f"{instrument.symbol} is quoted in {instrument.quote}, not the account currency "
            f"{account}: ingest {pair} {timeframe.value} too, so profits can be converted"
        )
        raise UsageError(msg)
    other = store.read(found[0].key).select("ts", pl.col("close").alias("rate"))
    joined = bars.select("ts").join_asof(other, on="ts", strategy="backward")
    rate = joined["rate"].fill_null(strategy="backward").to_numpy()
    how = f"{pair} close" if pair.startswith(instrument.quote) else f"1 / {pair} close"
    return quote_to_account(instrument, account, bars, rate), how


def load_series(
    settings: Settings,
    symbol: str,
    timeframe: Timeframe,
    side: Side | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> SeriesData:
    """Return a stored series' bars in ``[start, end)`` with what a backtest needs.

    Raises
    ------
    UsageError
        If the series is not stored, has no bars in the range, or its profits cannot be
        converted to the account currency.
    """
    store = BarStore(settings.store_dir)
    info = find_series(store, settings, symbol, timeframe, side)
    bars = store.read(info.key, start, end, info=info)
    if bars.height < 2:
        span = f" from {start or 'the start'} to {end or 'the end'}"
        raise UsageError(f"{info.key} has {bars.height} bar(s){span}: nothing to backtest")
    if not info.has_spread and "spread" in bars.columns:
        bars = bars.drop("spread")  # no spread recorded: --spread data must say so
    instrument = settings.registry.get(info.key.symbol)
    to_account, how = _conversion(store, settings, instrument, timeframe, bars)
    per_year = bars_per_year(timeframe, instrument.asset_class)
    return SeriesData(info, bars, instrument, to_account, per_year, how)


def _features_for(
    settings: Settings, strategy: type[Strategy], data: SeriesData, feature_set: str
) -> pl.DataFrame | None:
    needs = tuple(getattr(strategy, "needs_features", ()) or ())
    if not needs:
        return None
    build = FeatureStore(features_root(settings)).latest(feature_set, data.info.key)
    if build is None:
        msg = (
            f"strategy {strategy.name} reads {', '.join(needs)} from feature set {feature_set!r}, "
            f"which is not built on {data.label}: run solodesk features build first"
        )
        raise UsageError(msg)
    table = read_build(settings, build)
    missing = [n for n in needs if n not in table.columns]
    if missing:
        msg = (
            f"strategy {strategy.name} reads {', '.join(missing)}, not in feature set "
            f"{feature_set!r} on {data.label}"
        )
        raise UsageError(msg)
    return data.bars.select("ts").join(table.select("ts", *needs), on="ts", how="left")


@dataclass(frozen=True)
class BacktestOutcome:
    """A finished, stored backtest."""

    run: StoredRun
    result: BacktestResult
    metrics: Metrics
    data: SeriesData
    seconds: float

    def as_json(self) -> dict[str, Any]:
        """Return the one-line summary ``--json`` prints."""
        return {
            "run_id": self.run.id,
            "symbol": self.data.info.key.symbol,
            "timeframe": self.data.info.key.timeframe.value,
            "side": self.data.info.key.side.value,
            "strategy": self.run.record["strategy"],
            "params": self.run.record["params"],
            **self.metrics.to_dict(),
            "tearsheet": self.run.record["report"],
            "seconds": round(self.seconds, 3),
        }


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


def run_stored_backtest(
    settings: Settings,
    data: SeriesData,
    strategy_name: str,
    params: Mapping[str, object],
    config: BacktestConfig,
    *,
    feature_set: str = "default",
    report: bool = True,
) -> BacktestOutcome:
    """Backtest a strategy on a loaded series, store the run and write its tearsheet."""
    started = time.perf_counter()
    created = datetime.now(UTC)
    cls = load_user_strategy(settings, strategy_name)
    strategy = make_strategy(cls, params)
    features = _features_for(settings, cls, data, feature_set)
    signals = strategy.signals(data.bars, features)
    result = run_backtest(
        data.bars, signals, data.instrument, config, side=data.info.key.side.value,
        bars_per_year=data.bars_per_year, to_account=data.to_account,
    )  # fmt: skip
    traded = traded_notional(result.position, data.bars["close"].to_numpy(), data.to_account)
    metrics = performance(
        result.equity, ts=result.ts, bars_per_year=data.bars_per_year,
        initial_cash=config.cash, trades=result.trades, position=result.position,
        traded_notional=traded,
    )  # fmt: skip
    values = {spec.name: getattr(strategy, spec.name, None) for spec in cls.params}
    run_id = new_run_id("backtest", created)
    close = data.bars["close"].to_numpy()
    benchmark = config.cash * close / close[0]
    html = None
    if report:
        html = tearsheet_html(
            title=f"{cls.name} on {data.label}",
            subtitle=", ".join(f"{k}={v}" for k, v in values.items()) + f" · run {run_id}",
            ts=result.ts, equity=result.equity, position=result.position,
            trades=result.trades, metrics=metrics, initial_cash=config.cash,
            benchmark=benchmark,
        )  # fmt: skip
    record = {
        "kind": "backtest",
        "created": created.isoformat(),
        "strategy": cls.name,
        "params": values,
        "symbol": data.info.key.symbol,
        "timeframe": data.info.key.timeframe.value,
        "side": data.info.key.side.value,
        "series_version": data.info.version,
        "first": data.bars["ts"][0].isoformat(),
        "last": data.bars["ts"][-1].isoformat(),
        "bars": data.bars.height,
        "conversion": data.conversion,
        "config": config.model_dump(),
        "metrics": metrics.to_dict(),
        "git_commit": git_commit(),
    }
    trades = result.trades
    run = backtest_store(settings).write(
        run_id, record, {"equity": _equity_table(result), "trades": trades}, html
    )
    return BacktestOutcome(run, result, metrics, data, time.perf_counter() - started)


@dataclass(frozen=True)
class SweepOutcome:
    """A finished, stored sweep."""

    run: StoredRun
    results: pl.DataFrame
    dropped: int
    seconds: float


def run_stored_sweep(
    settings: Settings,
    data: SeriesData,
    strategy_name: str,
    combinations: Sequence[Mapping[str, Any]],
    config: BacktestConfig,
    *,
    jobs: int,
    search: str,
    metric: str = "sharpe",
    dropped: int = 0,
    feature_set: str = "default",
    progress: Progress | None = None,
) -> SweepOutcome:
    """Run a parameter sweep on a loaded series; store its table and heatmap."""
    started = time.perf_counter()
    created = datetime.now(UTC)
    ref = strategy_ref(settings, strategy_name)
    cls = ref.load()
    features = _features_for(settings, cls, data, feature_set)
    job = SweepJob(
        ref, data.bars, features, data.instrument, config, data.info.key.side.value,
        data.bars_per_year, data.to_account,
    )  # fmt: skip
    done = 0
    total = len(combinations)

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress("sweep", done, total)

    results = run_sweep(job, combinations, jobs=jobs, progress=step)
    if metric not in results.columns:
        raise UsageError(f"--metric {metric!r}: choose one of {', '.join(results.columns)}")
    ranked = results.sort(metric, descending=True, nulls_last=True)
    run_id = new_run_id("sweep", created)
    names = [spec.name for spec in cls.params]
    axes = heatmap_axes(ranked, names)
    html = None
    if axes is not None:
        html = sweep_heatmap_html(
            ranked, axes[0], axes[1], metric,
            title=f"{cls.name} on {data.label}: {metric} over {axes[0]} x {axes[1]} "
            f"({total} combinations, run {run_id})",
        )  # fmt: skip
    best = ranked.row(0, named=True)
    record = {
        "kind": "sweep",
        "created": created.isoformat(),
        "strategy": cls.name,
        "search": search,
        "combinations": total,
        "dropped": dropped,
        "jobs": jobs,
        "metric": metric,
        "best": best,
        "symbol": data.info.key.symbol,
        "timeframe": data.info.key.timeframe.value,
        "side": data.info.key.side.value,
        "series_version": data.info.version,
        "bars": data.bars.height,
        "config": config.model_dump(),
        "git_commit": git_commit(),
    }
    run = backtest_store(settings).write(run_id, record, {"results": ranked}, html)
    return SweepOutcome(run, ranked, dropped, time.perf_counter() - started)


@dataclass(frozen=True)
class PortfolioOutcome:
    """A finished, stored portfolio run."""

    run: StoredRun
    result: PortfolioResult
    metrics: Metrics
    per_symbol: pl.DataFrame
    seconds: float

    def as_json(self) -> dict[str, Any]:
        """Return the one-line summary ``--json`` prints."""
        risk = self.result.risk
        last = {
            c: (None if v is None or not np.isfinite(v) else float(v))
            for c, v in risk.drop("ts").tail(1).row(0, named=True).items()
        }
        return {
            "run_id": self.run.id,
            "symbols": list(self.result.symbols),
            "strategy": self.run.record["strategy"],
            "params": self.run.record["params"],
            "sizing": self.result.config.sizing,
            **self.metrics.to_dict(),
            "n_trades": int(self.result.n_trades.sum()),
            "risk_last": last,
            "report": self.run.record["report"],
            "seconds": round(self.seconds, 3),
        }


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
    """
    started = time.perf_counter()
    created = datetime.now(UTC)
    symbols = [d.info.key.symbol for d in series]
    if len(set(symbols)) != len(symbols):
        raise UsageError(f"a symbol is given twice: {', '.join(symbols)}")
    cls = load_user_strategy(settings, strategy_name)
    strategy = make_strategy(cls, params)
    directions = {}
    for data in series:
        features = _features_for(settings, cls, data, feature_set)
        signals = strategy.signals(data.bars, features)
        directions[data.info.key.symbol] = signal_directions(signals, data.bars.height, direction)
    result = run_portfolio(
        {d.info.key.symbol: d.bars for d in series},
        directions,
        {d.info.key.symbol: d.instrument for d in series},
        config,
        to_account={d.info.key.symbol: d.to_account for d in series},
    )
    ts = result.ts.dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()
    gross = np.nansum(np.abs(result.weights), axis=1)
    metrics = performance(
        result.equity, ts=ts, bars_per_year=config.bars_per_year, initial_cash=config.cash,
        position=gross, traded_notional=result.turnover * np.concatenate(
            ([config.cash], result.equity[:-1])),
    )  # fmt: skip
    values = {spec.name: getattr(strategy, spec.name, None) for spec in cls.params}
    run_id = new_run_id("portfolio", created)
    timeframe = series[0].info.key.timeframe.value
    html = None
    if report:
        html = portfolio_report_html(
            result,
            title=f"{cls.name} portfolio of {len(symbols)} symbols, {timeframe}: run {run_id}",
            metrics={k: v for k, v in metrics.to_dict().items() if isinstance(v, float)},
        )
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
    record = {
        "kind": "portfolio",
        "created": created.isoformat(),
        "strategy": cls.name,
        "params": values,
        "direction": direction,
        "symbols": symbols,
        "timeframe": timeframe,
        "series_versions": {d.label: d.info.version for d in series},
        "conversions": {d.info.key.symbol: d.conversion for d in series},
        "config": config.model_dump(),
        "metrics": metrics.to_dict(),
        "n_trades": int(result.n_trades.sum()),
        "sizing_fallbacks": result.sizing_fallbacks,
        "git_commit": git_commit(),
    }
    tables = {"equity": equity, "weights": weights, "risk": result.risk,
              "symbols": per_symbol}  # fmt: skip
    run = backtest_store(settings).write(run_id, record, tables, html)
    return PortfolioOutcome(run, result, metrics, per_symbol, time.perf_counter() - started)

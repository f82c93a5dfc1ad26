"""Parameter sweeps: one strategy, many parameter combinations, run across processes.

Each worker process receives the bars once (at start-up) and then takes chunks of parameter
combinations; for every combination it builds the strategy, computes its signals, runs the
backtest and keeps the metrics. Strategies may offer a faster path for sweeps: a classmethod
``sweep_context(bars)`` returning something reusable across combinations (cached indicators)
and a method ``signals_from(context)`` used instead of ``signals(bars)``. Results come back as
one row per combination, in the order given.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.errors import UsageError
from core.types import Instrument
from models.strategies.base import Strategy
from models.strategies.registry import load_strategy, make_strategy
from pipelines.backtest.config import BacktestConfig
from pipelines.backtest.engine import run_backtest
from pipelines.backtest.metrics import performance
from pipelines.backtest.positions import traded_notional
from pipelines.report_kit import figure_div, page

RESULT_METRICS = (
    "total_return",
    "annualized_return",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "hit_rate",
    "profit_factor",
    "exposure",
    "turnover",
    "n_trades",
    "final_equity",
)


@dataclass(frozen=True)
class StrategyRef:
    """How a worker process finds a strategy class: its name and the user's strategy files."""

    name: str
    user: Mapping[str, str] = field(default_factory=dict)
    base_dir: Path | None = None

    def load(self) -> type[Strategy]:
        """Return the strategy class."""
        return load_strategy(self.name, user=dict(self.user), base_dir=self.base_dir)


@dataclass(frozen=True)
class SweepJob:
    """Everything a worker needs besides the parameter combinations."""

    strategy: StrategyRef
    bars: pl.DataFrame
    features: pl.DataFrame | None
    instrument: Instrument
    config: BacktestConfig
    side: str
    bars_per_year: float
    to_account: np.ndarray | float = 1.0


class _Worker:
    """Runs combinations against one job; holds the strategy's sweep context."""

    def __init__(self, job: SweepJob) -> None:
        self.job = job
        self.cls = job.strategy.load()
        self.close = job.bars["close"].to_numpy()
        prepare = getattr(self.cls, "sweep_context", None)
        self.context = prepare(job.bars, job.features) if callable(prepare) else None

    def run(self, values: Mapping[str, Any]) -> dict[str, Any]:
        job = self.job
        strategy = make_strategy(self.cls, values)
        fast = getattr(strategy, "signals_from", None)
        if self.context is not None and callable(fast):
            signals = fast(self.context)
        else:
            signals = strategy.signals(job.bars, job.features)
        result = run_backtest(
            job.bars,
            signals,
            job.instrument,
            job.config,
            side=job.side,
            bars_per_year=job.bars_per_year,
            to_account=job.to_account,
        )
        metrics = performance(
            result.equity,
            ts=result.ts,
            bars_per_year=job.bars_per_year,
            initial_cash=job.config.cash,
            trades=result.trades,
            position=result.position,
            traded_notional=traded_notional(result.position, self.close, job.to_account),
        ).to_dict()
        return {name: metrics.get(name) for name in RESULT_METRICS}


_WORKER: _Worker | None = None


def _start_worker(job: SweepJob) -> None:
    global _WORKER  # one per process: the bars arrive once, not with every chunk
    _WORKER = _Worker(job)


def _run_chunk(chunk: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    assert _WORKER is not None, "worker not started"
    return [_WORKER.run(values) for values in chunk]


def default_jobs() -> int:
    """Return the number of worker processes to use by default: the usable cores."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


#: Seconds a spawned sweep worker takes before its first combination: a fresh interpreter,
#: the imports, the bars, the compiled engine loaded from its cache (about 3 s each on the
#: 2-core machine, bench/backtest.py). Processes pay off only when they save more than this.
WORKER_STARTUP_SECONDS = 3.0


@dataclass(frozen=True)
class SweepRun:
    """A sweep's table (one row per combination, in the order given) and the processes used."""

    results: pl.DataFrame
    workers: int


def workers_worth_starting(serial_seconds: float, jobs: int, startup_seconds: float) -> int:
    """Return how many worker processes to start for ``serial_seconds`` of work (1: none).

    ``jobs`` workers finish the work in about ``startup_seconds + serial_seconds / jobs``;
    they are worth starting only when that beats running it here.
    """
    if jobs <= 1:
        return 1
    saved = serial_seconds * (1.0 - 1.0 / jobs)
    return jobs if saved > startup_seconds else 1


def run_sweep(
    job: SweepJob,
    combinations: Sequence[Mapping[str, Any]],
    *,
    jobs: int = 1,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    startup_seconds: float = WORKER_STARTUP_SECONDS,
) -> SweepRun:
    """Backtest every parameter combination and return one row per combination.

    Columns: the parameters, then ``RESULT_METRICS``. The first chunk of combinations runs in
    this process and is timed; the rest runs here too unless ``jobs`` worker processes would
    finish it sooner, start-up (``startup_seconds`` each, in parallel) included
    (:func:`workers_worth_starting`). ``progress`` is called with the number of combinations
    finished after each chunk.

    Raises
    ------
    UsageError
        If there are no combinations or ``jobs`` is below 1.
    """
    if not combinations:
        raise UsageError("the sweep has no parameter combinations to run")
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: need at least 1 worker")
    size = chunk_size or max(1, min(64, len(combinations) // (jobs * 8) or 1))
    chunks = [combinations[i : i + size] for i in range(0, len(combinations), size)]
    rows: list[list[dict[str, Any]] | None] = [None] * len(chunks)
    local = _Worker(job)
    # The first combination loads the compiled engine: time the ones after it.
    first = [local.run(chunks[0][0])]
    started = time.perf_counter()
    rows[0] = first + [local.run(values) for values in chunks[0][1:]]
    timed = len(chunks[0]) - 1
    if progress:
        progress(len(chunks[0]))
    each = (time.perf_counter() - started) / timed if timed else 0.0
    remaining = len(combinations) - len(chunks[0])
    if timed == 0 and remaining:
        started = time.perf_counter()
        rows[1] = [local.run(values) for values in chunks[1]]
        each = (time.perf_counter() - started) / len(chunks[1])
        remaining -= len(chunks[1])
        if progress:
            progress(len(chunks[1]))
    workers = workers_worth_starting(each * remaining, jobs, startup_seconds)
    todo = [index for index, done in enumerate(rows) if done is None]
    if workers == 1:
        for index in todo:
            rows[index] = [local.run(values) for values in chunks[index]]
            if progress:
                progress(len(chunks[index]))
    else:
        # Spawned, not forked: a fork of a process whose Polars thread pool is running can
        # deadlock in the child.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=spawn, initializer=_start_worker, initargs=(job,)
        ) as pool:
            pending: dict[Future[list[dict[str, Any]]], int] = {
                pool.submit(_run_chunk, chunks[index]): index for index in todo
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    rows[index] = future.result()
                    if progress:
                        progress(len(chunks[index]))
    flat = [
        {**dict(values), **metrics}
        for chunk, results in zip(chunks, rows, strict=True)
        for values, metrics in zip(chunk, results or [], strict=True)
    ]
    return SweepRun(pl.DataFrame(flat, infer_schema_length=None), workers)


def heatmap_axes(results: pl.DataFrame, params: Sequence[str]) -> tuple[str, str] | None:
    """Return the two parameters a heatmap should show: the first two that vary, or None."""
    varying = [p for p in params if p in results.columns and results[p].n_unique() > 1]
    return (varying[0], varying[1]) if len(varying) >= 2 else None


def sweep_heatmap_figure(
    results: pl.DataFrame, x: str, y: str, metric: str = "sharpe", *, title: str
) -> Any:
    """Return a Plotly heatmap of ``metric`` over two parameters (rows ``y``, columns ``x``).

    Where other parameters vary too, each cell shows the best value over them.
    """
    import plotly.graph_objects as go

    best = results.group_by([x, y]).agg(pl.col(metric).cast(pl.Float64).max()).sort([y, x])
    xs = sorted(best[x].unique().to_list())
    ys = sorted(best[y].unique().to_list())
    grid = np.full((len(ys), len(xs)), np.nan)
    where_x = {v: i for i, v in enumerate(xs)}
    where_y = {v: i for i, v in enumerate(ys)}
    for row in best.iter_rows(named=True):
        value = row[metric]
        grid[where_y[row[y]], where_x[row[x]]] = np.nan if value is None else value
    finite = grid[np.isfinite(grid)]
    figure = go.Figure(
        go.Heatmap(
            z=grid,
            x=[str(v) for v in xs],
            y=[str(v) for v in ys],
            colorscale="RdYlGn",
            zmid=0.0 if finite.size and finite.min() < 0 < finite.max() else None,
            colorbar={"title": metric},
            hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>{metric}=%{{z:.3f}}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=600
    )
    return figure


def sweep_heatmap_html(
    results: pl.DataFrame, x: str, y: str, metric: str = "sharpe", *, title: str
) -> str:
    """Return :func:`sweep_heatmap_figure` as one self-contained HTML page titled ``title``.

    The page's heading carries the title; the figure itself has none, so it is not shown twice.
    """
    figure = sweep_heatmap_figure(results, x, y, metric, title="")
    return page(title, [("", figure_div(figure, "sweep-heatmap"))])

"""Parameter sweeps: the same rows in one process or several, equal to single backtests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.errors import UsageError
from core.instruments import fx_pair
from models.strategies.registry import make_strategy
from models.strategies.sma_cross import SmaCross
from pipelines.backtest.config import BacktestConfig, CostConfig
from pipelines.backtest.engine import run_backtest
from pipelines.backtest.sweep import (
    RESULT_METRICS,
    StrategyRef,
    SweepJob,
    heatmap_axes,
    run_sweep,
    sweep_heatmap_figure,
    sweep_heatmap_html,
    workers_worth_starting,
)

PER_YEAR = 6240.0
USER_FILE = '''
from typing import ClassVar

import numpy as np

from models.strategies.base import ParamSpec, Signals


class Flip:
    """Long on even blocks of ``block`` bars, flat on odd ones."""

    name: ClassVar[str] = "flip"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(name="block", kind="int", default=10, low=2, high=100),
    )
    needs_features: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, block: int = 10) -> None:
        self.block = block

    def signals(self, bars, features=None):
        n = bars.height
        return Signals(target=((np.arange(n) // self.block) % 2 == 0).astype(float))
'''


def _bars(n: int = 1500, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 1.2 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    start = datetime(2021, 3, 1, tzinfo=UTC)
    ts = pl.datetime_range(start, start + timedelta(hours=n - 1), "1h", eager=True)
    return pl.DataFrame({"ts": ts, "open": close, "high": close * 1.0005,
                         "low": close * 0.9995, "close": close})  # fmt: skip


def _job(bars: pl.DataFrame, ref: StrategyRef | None = None) -> SweepJob:
    config = BacktestConfig(costs=CostConfig(fees=0.0001, spread_pips=0.5))
    return SweepJob(ref or StrategyRef("sma_cross"), bars, None, fx_pair("EUR", "USD"), config,
                    "bid", PER_YEAR)  # fmt: skip


COMBOS = [{"fast": f, "slow": s} for f in (5, 10, 15) for s in (30, 60)]


def test_run_sweep_rows_equal_single_backtests() -> None:
    bars = _bars()
    job = _job(bars)

    swept = run_sweep(job, COMBOS, jobs=1)
    table = swept.results

    assert swept.workers == 1
    assert table.columns == ["fast", "slow", *RESULT_METRICS]
    for row in table.iter_rows(named=True):
        strategy = SmaCross(fast=row["fast"], slow=row["slow"])
        single = run_backtest(bars, strategy.signals(bars), job.instrument, job.config,
                              bars_per_year=PER_YEAR)  # fmt: skip
        assert row["final_equity"] == single.equity[-1]
        assert row["n_trades"] == single.trades.height


@pytest.mark.slow
def test_run_sweep_two_processes_same_table_in_order() -> None:
    job = _job(_bars())
    seen: list[int] = []

    one = run_sweep(job, COMBOS, jobs=1)
    two = run_sweep(job, COMBOS, jobs=2, chunk_size=2, progress=seen.append, startup_seconds=0.0)

    assert two.workers == 2
    assert two.results.equals(one.results)
    assert sum(seen) == len(COMBOS) and len(seen) == 3


@pytest.mark.slow
def test_run_sweep_user_file_strategy_loads_in_workers(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(USER_FILE)
    ref = StrategyRef("flip", {"flip": "mine.py:Flip"}, tmp_path)
    combos = [{"block": b} for b in (5, 20, 50)]

    swept = run_sweep(_job(_bars(), ref), combos, jobs=2, chunk_size=1, startup_seconds=0.0)
    table = swept.results

    assert swept.workers == 2
    assert table["block"].to_list() == [5, 20, 50]
    assert table["exposure"].to_list() == pytest.approx([0.5, 0.5, 0.5], abs=0.02)
    assert table["n_trades"].to_list()[0] > table["n_trades"].to_list()[2]


def test_run_sweep_small_work_stays_in_this_process() -> None:
    job = _job(_bars())

    swept = run_sweep(job, COMBOS, jobs=2, chunk_size=2)

    assert swept.workers == 1
    assert swept.results.height == len(COMBOS)


@pytest.mark.parametrize(
    ("serial", "jobs", "startup", "expected"),
    [(0.5, 2, 3.0, 1), (10.0, 2, 3.0, 2), (10.0, 1, 0.0, 1), (7.0, 4, 5.0, 4), (6.0, 2, 3.0, 1)],
)
def test_workers_worth_starting_only_when_they_save_more_than_start_up(
    serial: float, jobs: int, startup: float, expected: int
) -> None:
    assert workers_worth_starting(serial, jobs, startup) == expected


def test_run_sweep_no_combinations_or_no_workers_raises() -> None:
    job = _job(_bars(200))

    with pytest.raises(UsageError, match="no parameter combinations"):
        run_sweep(job, [], jobs=1)
    with pytest.raises(UsageError, match="at least 1 worker"):
        run_sweep(job, COMBOS, jobs=0)


def test_heatmap_axes_first_two_varying_parameters() -> None:
    table = pl.DataFrame({"fast": [1, 2, 1, 2], "slow": [5, 5, 6, 6], "flag": [True] * 4})

    assert heatmap_axes(table, ["flag", "fast", "slow"]) == ("fast", "slow")
    assert heatmap_axes(table.filter(pl.col("slow") == 5), ["flag", "fast", "slow"]) is None


def test_sweep_heatmap_figure_best_cell_over_other_parameters() -> None:
    table = pl.DataFrame({"fast": [1, 1, 2], "slow": [5, 5, 5], "sharpe": [0.5, 1.5, -0.25]})

    figure = sweep_heatmap_figure(table, "fast", "slow", "sharpe", title="grid")
    page = sweep_heatmap_html(table, "fast", "slow", "sharpe", title="grid")

    heatmap = figure.data[0]
    assert list(heatmap.x) == ["1", "2"] and list(heatmap.y) == ["5"]
    assert np.asarray(heatmap.z).tolist() == [[1.5, -0.25]]
    assert heatmap.zmid == 0.0
    assert "<html" in page and page.count("<script") >= 2


def test_sweep_heatmap_figure_all_missing_metric_draws_empty_grid() -> None:
    table = pl.DataFrame({"fast": [1, 2], "slow": [5, 5]}).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("sharpe")
    )

    figure = sweep_heatmap_figure(table, "fast", "slow", "sharpe", title="nothing")

    assert np.isnan(np.asarray(figure.data[0].z)).all()
    assert figure.data[0].zmid is None


def test_make_strategy_matches_sweep_values_types() -> None:
    strategy = make_strategy(SmaCross, {"fast": "7", "slow": 21})

    assert (strategy.fast, strategy.slow) == (7, 21)  # type: ignore[attr-defined]

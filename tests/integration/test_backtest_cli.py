"""End to end, in process: strategies, backtest, sweep, portfolio and runs on the sample desk."""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from conftest import SampleDesk
from testkit.cli import invoke, json_lines
from testkit.files import RawBar, mt4_csv, write

# End to end over the whole sample (full backtests, tearsheets, a 90-combination sweep): seconds
# in all. The fast lane covers these commands through tests/unit/services/test_backtest.py.
pytestmark = pytest.mark.slow

SAMPLE_ROWS = 6225
BACKTEST = ["backtest", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
            "--param", "fast=10", "--param", "slow=40", "--json"]  # fmt: skip
USER_STRATEGY = '''
"""A user's own strategy: long while close is above its value ``lag`` bars ago."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from models.strategies.base import ParamSpec, Signals


class Momentum:
    """Hold a long position while close is above the close ``lag`` bars before."""

    name: ClassVar[str] = "momentum"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(name="lag", kind="int", default=24, low=1, high=500),
    )
    needs_features: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, lag: int = 24) -> None:
        self.lag = lag

    def signals(self, bars, features=None):
        close = bars["close"].to_numpy()
        target = np.zeros(len(close))
        target[self.lag :] = (close[self.lag :] > close[: -self.lag]).astype(float)
        return Signals(target=target)
'''


def _walk(symbol_seed: int, count: int) -> list[RawBar]:
    rng = np.random.default_rng(symbol_seed)
    close = 1.25 * np.exp(np.cumsum(rng.normal(0, 0.0015, count)))
    start = datetime(2017, 1, 2, 0)
    bars = []
    for i, c in enumerate(close):
        o = close[i - 1] if i else c
        bars.append(RawBar(start + timedelta(hours=i), round(o, 5),
                           round(max(o, c) + 0.0004, 5), round(min(o, c) - 0.0004, 5),
                           round(c, 5), 100))  # fmt: skip
    return bars


@dataclass(frozen=True)
class BacktestDesk:
    """The sample desk plus a GBPUSD H1 random walk and a user strategy in solodesk.toml."""

    home: Path


@pytest.fixture(scope="module")
def desk(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> BacktestDesk:
    home = tmp_path_factory.mktemp("backtest") / "home"
    shutil.copytree(sample_desk.home, home)
    write(home.parent / "in" / "GBPUSD60.csv", mt4_csv(_walk(7, 3000)))
    write(home.parent / "strats" / "momentum.py", USER_STRATEGY)
    write(home.parent / "solodesk.toml",
          textwrap.dedent('''
          [strategies]
          momentum = "strats/momentum.py:Momentum"
          '''))  # fmt: skip
    done = invoke(["ingest", str(home.parent / "in" / "GBPUSD60.csv"), "--tz", "UTC"], home)
    assert done.returncode == 0, (done.stderr, done.exception)
    return BacktestDesk(home)


def _one(args: list[str], home: Path) -> dict[str, Any]:
    done = invoke(args, home)
    assert done.returncode == 0, (done.stderr, done.exception)
    (line,) = json_lines(done.stdout)
    return line


def test_strategies_lists_built_ins_and_user_file(desk: BacktestDesk) -> None:
    # Act
    done = invoke(["strategies", "--json"], desk.home)

    # Assert
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json_lines(done.stdout)}
    assert set(rows) == {"sma_cross", "donchian_breakout", "rsi_reversion", "ml_model", "momentum"}
    assert rows["sma_cross"]["origin"].startswith("entry point")
    assert rows["momentum"]["origin"].endswith("momentum.py:Momentum")
    assert [p["name"] for p in rows["sma_cross"]["params"]] == ["fast", "slow", "allow_short"]


def test_strategies_table_names_each_strategy(desk: BacktestDesk) -> None:
    # Act
    done = invoke(["strategies"], desk.home)

    # Assert
    assert done.returncode == 0, done.stderr
    assert "5 strategies" in done.stdout
    assert "momentum" in done.stdout and "lag=24 [1..500]" in done.stdout


def test_backtest_json_stores_run_equity_trades_and_tearsheet(desk: BacktestDesk) -> None:
    # Act
    result = _one(BACKTEST, desk.home)

    # Assert
    for key in ("final_equity", "total_return", "sharpe", "sortino", "max_drawdown", "n_trades",
                "exposure"):  # fmt: skip
        assert key in result, key
    assert result["n_trades"] > 10
    assert result["final_equity"] == pytest.approx(100_000 * (1 + result["total_return"]))
    assert result["start"].endswith("Z") and result["end"].endswith("Z")
    sheet = Path(result["tearsheet"])
    assert sheet.is_file() and sheet.parent == (desk.home / "reports" / "backtests").resolve()
    page = sheet.read_text()
    assert "Drawdown" in page and "Monthly returns" in page
    folder = desk.home / "backtests" / f"run={result['run_id']}"
    equity = pl.read_parquet(folder / "equity.parquet")
    trades = pl.read_parquet(folder / "trades.parquet")
    assert equity.height == SAMPLE_ROWS
    assert equity["equity"][-1] == pytest.approx(result["final_equity"])
    assert trades.height == result["n_trades"]
    sql = invoke(["data", "sql", "--json", "select count(*) as n from backtest_trades "
                  f"where run = '{result['run_id']}'"], desk.home)  # fmt: skip
    assert sql.returncode == 0, sql.stderr
    assert json_lines(sql.stdout) == [{"n": result["n_trades"]}]


def test_backtest_table_output_shows_metrics_and_tearsheet(desk: BacktestDesk) -> None:
    # Act
    done = invoke(BACKTEST[:-1], desk.home)

    # Assert
    assert done.returncode == 0, done.stderr
    assert "sma_cross on EURUSD H1" in done.stdout
    assert "Sharpe (ann.)" in done.stdout and "max drawdown" in done.stdout
    assert f"bars {SAMPLE_ROWS:,} in" in done.stdout
    assert "tearsheet: " in done.stdout


def test_backtest_costs_lower_equity_same_trades(desk: BacktestDesk) -> None:
    # Act
    free = _one([*BACKTEST, "--no-report"], desk.home)
    costly = _one([*BACKTEST, "--no-report", "--fees", "0.0005", "--spread", "1.5",
                   "--slippage", "0.5"], desk.home)  # fmt: skip

    # Assert
    assert costly["n_trades"] == free["n_trades"]
    assert costly["final_equity"] < free["final_equity"]
    assert free["tearsheet"] is None


def test_backtest_user_strategy_from_settings_runs(desk: BacktestDesk) -> None:
    # Act
    result = _one(["backtest", "--symbol", "GBPUSD", "--timeframe", "H1", "--strategy",
                   "momentum", "--param", "lag=48", "--sizing", "fraction:0.5", "--json"],
                  desk.home)  # fmt: skip

    # Assert
    assert result["strategy"] == "momentum"
    assert result["params"] == {"lag": 48}
    assert result["n_trades"] > 0
    assert 0 < result["exposure"] < 1


def test_sweep_grid_ranked_table_heatmap_and_best_equal_to_a_single_backtest(
    desk: BacktestDesk,
) -> None:
    # Act: a small sweep stays in this process however many workers it may use.
    result = _one(["sweep", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy",
                   "sma_cross", "--param", "fast=5:20:5", "--param", "slow=30:60:10",
                   "--param", "allow_short=false", "--jobs", "2", "--json"],
                  desk.home)  # fmt: skip
    table = pl.read_parquet(result["results"])
    single = _one(["backtest", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy",
                   "sma_cross", "--param", f"fast={table['fast'][0]}",
                   "--param", f"slow={table['slow'][0]}", "--no-report", "--json"],
                  desk.home)  # fmt: skip

    # Assert
    assert result["combinations"] == table.height == 16
    assert result["jobs"] == 1
    assert table.select("fast", "slow").unique().height == 16
    assert table["sharpe"].is_sorted(descending=True, nulls_last=True)
    assert result["best"]["sharpe"] == table["sharpe"][0]
    assert Path(result["heatmap"]).read_text().count("plotly") > 0
    assert single["final_equity"] == pytest.approx(table["final_equity"][0], rel=1e-12)


def test_sweep_demo_grid_runs_ninety_combinations_in_this_process(desk: BacktestDesk) -> None:
    # Act: the sweep of ``make demo``.
    result = _one(["sweep", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
                   "--param", "fast=5:50:5", "--param", "slow=20:200:20",
                   "--param", "allow_short=false", "--spread", "1.0", "--fees", "0.00002",
                   "--json"], desk.home)  # fmt: skip

    # Assert
    assert result["combinations"] == 90
    assert result["jobs"] == 1
    assert result["dropped"] == 10  # fast not below slow
    assert pl.read_parquet(result["results"]).height == 90


def test_sweep_table_output_says_where_it_ran(desk: BacktestDesk) -> None:
    # Act
    done = invoke(["sweep", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
                   "--param", "fast=5,10", "--param", "slow=30", "--param", "allow_short=false",
                   "--top", "1"],
                  desk.home)  # fmt: skip

    # Assert
    assert done.returncode == 0, done.stderr
    assert "top 1 of 2 by sharpe" in done.stdout
    assert "2 combinations in" in done.stdout and "in this process" in done.stdout
    assert "2 combinations of sma_cross on EURUSD H1 ask" in done.stderr


def test_portfolio_two_symbols_tables_and_report(desk: BacktestDesk) -> None:
    # Act
    result = _one(["portfolio", "--symbols", "EURUSD,GBPUSD", "--timeframe", "H1",
                   "--strategy", "sma_cross", "--param", "allow_short=true", "--sizing",
                   "inverse-vol", "--max-weight", "0.6", "--max-gross", "1.0",
                   "--spread", "1", "--json"], desk.home)  # fmt: skip

    # Assert
    folder = desk.home / "backtests" / f"run={result['run_id']}"
    weights = pl.read_parquet(folder / "weights.parquet")
    risk = pl.read_parquet(folder / "risk.parquet")
    assert result["symbols"] == ["EURUSD", "GBPUSD"]
    assert weights.columns == ["ts", "EURUSD", "GBPUSD"]
    assert weights.select(pl.col("EURUSD", "GBPUSD").abs().max()).max_horizontal()[0] <= 0.61
    assert {"portfolio_vol", "var_hist_95", "es_hist_99"} <= set(risk.columns)
    assert result["n_trades"] > 0
    assert Path(result["report"]).is_file()


def test_portfolio_one_symbol_exits_2_asking_for_two(desk: BacktestDesk) -> None:
    # Act
    done = invoke(["portfolio", "--symbols", "EURUSD", "--timeframe", "H1", "--strategy",
                   "sma_cross"], desk.home)  # fmt: skip

    # Assert
    assert done.returncode == 2
    assert "give at least two, comma-separated" in done.stderr


def test_runs_list_and_show_find_stored_runs(desk: BacktestDesk) -> None:
    # Arrange
    stored = _one([*BACKTEST, "--no-report"], desk.home)

    # Act
    listed = invoke(["runs", "list", "--json"], desk.home)
    backtests = invoke(["runs", "list", "--kind", "backtest", "--json"], desk.home)
    shown = invoke(["runs", "show", stored["run_id"][:-2], "--json"], desk.home)
    table = invoke(["runs", "list"], desk.home)

    # Assert
    assert stored["run_id"] in {r["id"] for r in json_lines(listed.stdout)}
    assert {r["kind"] for r in json_lines(backtests.stdout)} == {"backtest"}
    record = json.loads(shown.stdout)
    assert record["id"] == stored["run_id"] and record["kind"] == "backtest"
    assert record["metrics"]["n_trades"] == stored["n_trades"]
    assert record["created"].endswith("Z")
    assert table.returncode == 0 and "stored run(s)" in table.stdout


def test_runs_show_unknown_id_exits_2_naming_it(desk: BacktestDesk) -> None:
    # Act
    done = invoke(["runs", "show", "zz-nothing"], desk.home)

    # Assert
    assert done.returncode == 2
    assert "no backtest run matches 'zz-nothing'" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "nope"], "sma_cross"),
        (["--strategy", "sma_cross", "--param", "fast=abc"], "fast"),
        (["--strategy", "sma_cross", "--param", "fast=50", "--param", "slow=20"], "slow"),
        (["--strategy", "sma_cross", "--sizing", "lots"], "sizing"),
        (["--strategy", "sma_cross", "--spread", "data"], "spread"),
        (["--strategy", "sma_cross", "--fill", "tomorrow"], "--fill"),
        (["--strategy", "sma_cross", "--side", "foo"], "--side"),
    ],
)
def test_backtest_bad_input_exits_2_with_reason(
    desk: BacktestDesk, args: list[str], message: str
) -> None:
    # Arrange
    before = sorted(p.name for p in (desk.home / "backtests").iterdir())

    # Act
    done = invoke(["backtest", "--symbol", "EURUSD", "--timeframe", "H1", *args], desk.home)

    # Assert
    assert done.returncode == 2, (done.stderr, done.exception)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (desk.home / "backtests").iterdir()) == before

"""The backtest, sweep and portfolio jobs in process: the stored run, its summary, its JSON line."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
from testkit.cli import invoke, json_lines
from testkit.files import bar_frame

from core.errors import UsageError
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import SeriesKey, Side, VolumeKind
from feature_store.backtests import BacktestStore
from feature_store.feature_index import FeatureBuild, FeatureStore, feature_file
from feature_store.store import BarStore, SeriesInfo
from models.strategies.base import ParamSpec, Signals
from pipelines.backtest.config import BacktestConfig, SweepSearch
from pipelines.backtest.metrics import PerformanceFigures
from pipelines.backtest.portfolio import PortfolioSizing
from pipelines.backtest.sweep import run_sweep
from services import backtest as service
from services.backtest import (
    BacktestOutcome,
    PortfolioOutcome,
    SweepOutcome,
    load_series,
    load_strategy_features,
    plan_sweep,
    portfolio_config,
    run_stored_backtest,
    run_stored_portfolio,
    run_stored_sweep,
)

BARS = 1500
START = datetime(2021, 3, 1, tzinfo=UTC)
EURUSD = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)
GBPUSD = SeriesKey(symbol="GBPUSD", timeframe=Timeframe.H1, side=Side.BID)
PARAMS = {"fast": 10, "slow": 40}
SERIES = ["--symbol", "EURUSD", "--timeframe", "H1"]
FIGURES = set(PerformanceFigures.model_fields)


def _walk(seed: int, start_price: float) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(0.0, 0.0015, BARS)))
    open_ = np.concatenate(([start_price], close[:-1]))
    return bar_frame(
        (START + timedelta(hours=i), o, max(o, c) + 4e-4, min(o, c) - 4e-4, c, 100.0, None)
        for i, (o, c) in enumerate(zip(open_.tolist(), close.tolist(), strict=True))
    )


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A desk holding two synthetic H1 series, EURUSD and GBPUSD (runs accumulate in it)."""
    settings = Settings(home=tmp_path_factory.mktemp("backtest-jobs") / "home")
    store = BarStore(settings.store_dir)
    with store.transaction() as tx:
        for key, seed, price in ((EURUSD, 1, 1.2), (GBPUSD, 2, 1.35)):
            tx.put_series(SeriesInfo(key, VolumeKind.TICK), {2021: _walk(seed, price)})
        tx.commit()
    return settings


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[Any]]:
    """Record what the service jobs return while a command runs in this process."""
    outcomes: dict[str, list[Any]] = {}

    def capture(name: str) -> list[Any]:
        job = getattr(service, name)
        seen = outcomes.setdefault(name, [])

        def recording(*args: Any, **kwargs: Any) -> Any:
            outcome = job(*args, **kwargs)
            seen.append(outcome)
            return outcome

        monkeypatch.setattr(service, name, recording)
        return seen

    return capture


def _backtest(desk: Settings, **options: Any) -> BacktestOutcome:
    data = load_series(desk, "EURUSD", Timeframe.H1)
    return run_stored_backtest(desk, data, "sma_cross", PARAMS, BacktestConfig(), **options)


def _one_line(args: list[str], home: Path) -> dict[str, Any]:
    done = invoke(args, home)
    assert done.returncode == 0, (done.stderr, done.exception)
    (line,) = json_lines(done.stdout)
    return line


def test_run_stored_backtest_stored_run_matches_the_summary(desk: Settings) -> None:
    # Act
    outcome = _backtest(desk)

    # Assert
    summary, run = outcome.summary, outcome.run
    assert re.fullmatch(r"bt-\d{8}T\d{6}-[0-9a-f]{6}", summary.run_id)
    stored = BacktestStore.backtests(desk).get(summary.run_id)
    assert stored.record == run.record
    record = stored.record
    assert (record["kind"], record["strategy"], record["params"]) == (
        "backtest", "sma_cross", {"fast": 10, "slow": 40, "allow_short": False},
    )  # fmt: skip
    assert (summary.symbol, summary.timeframe, summary.side) == ("EURUSD", "H1", "bid")
    assert summary.params == record["params"]
    assert record["series_version"] == outcome.data.info.version
    assert record["bars"] == BARS and record["created"].endswith("Z")
    assert (record["first"], record["last"]) == ("2021-03-01T00:00:00Z", "2021-05-02T11:00:00Z")
    assert record["metrics"] == summary.model_dump(include=FIGURES)
    equity = BacktestStore.backtests(desk).table(stored, "equity")
    trades = BacktestStore.backtests(desk).table(stored, "trades")
    assert equity.columns == ["ts", "equity", "drawdown", "position", "exposure"]
    assert equity.height == BARS
    assert equity["equity"][-1] == pytest.approx(summary.final_equity)
    assert trades.height == summary.n_trades > 5
    assert summary.total_return is not None
    assert summary.final_equity == pytest.approx(100_000 * (1 + summary.total_return))
    sheet = Path(summary.tearsheet or "")
    assert sheet == (desk.backtest_reports_dir / f"{summary.run_id}.html").resolve()
    assert "Drawdown" in sheet.read_text()


def test_run_stored_backtest_without_report_writes_no_tearsheet(desk: Settings) -> None:
    # Act
    outcome = _backtest(desk, report=False)

    # Assert
    assert outcome.summary.tearsheet is None
    assert outcome.run.record["report"] is None
    assert not (desk.backtest_reports_dir / f"{outcome.summary.run_id}.html").exists()


def test_run_stored_backtest_summary_is_frozen_and_dumps_json_values(desk: Settings) -> None:
    # Act
    summary = _backtest(desk, report=False).summary
    dumped = summary.model_dump(mode="json")

    # Assert
    assert json.loads(json.dumps(dumped)) == dumped
    assert dumped["start"] == "2021-03-01T00:00:00Z"
    with pytest.raises(ValueError, match="frozen"):
        summary.sharpe = 0.0  # type: ignore[misc]


def test_backtest_command_json_is_the_summary_dump(
    desk: Settings, captured: Callable[[str], list[BacktestOutcome]]
) -> None:
    # Arrange
    outcomes = captured("run_stored_backtest")

    # Act
    line = _one_line(["backtest", *SERIES, "--strategy", "sma_cross", "--param", "fast=10",
                      "--param", "slow=40", "--fees", "0.0001", "--json"], desk.home)  # fmt: skip

    # Assert
    (outcome,) = outcomes
    assert line == outcome.summary.model_dump(mode="json")
    assert outcome.run.record["config"]["costs"]["fees"] == 0.0001


def test_run_stored_sweep_small_work_runs_in_this_process(desk: Settings) -> None:
    # Arrange
    combos, dropped = plan_sweep(desk, "sma_cross", {"fast": "5:15:5", "slow": "30,60",
                                                      "allow_short": "false"})  # fmt: skip
    data = load_series(desk, "EURUSD", Timeframe.H1)

    # Act
    outcome = run_stored_sweep(desk, data, "sma_cross", combos, BacktestConfig(), jobs=2,
                               search=SweepSearch.GRID, dropped=dropped)  # fmt: skip

    # Assert
    summary = outcome.summary
    assert (len(combos), dropped) == (6, 0)
    assert summary.jobs == 1
    assert summary.combinations == outcome.results.height == 6
    assert outcome.results["sharpe"].is_sorted(descending=True, nulls_last=True)
    assert summary.best == outcome.results.row(0, named=True)
    stored = BacktestStore.backtests(desk).get(summary.run_id)
    assert (stored.kind, stored.record["jobs"], stored.record["search"]) == ("sweep", 1, "grid")
    assert stored.record["best"] == summary.best
    table = pl.read_parquet(summary.results)
    assert table.equals(outcome.results)
    assert Path(summary.results) == stored.folder / "results.parquet"
    assert summary.heatmap is not None and "plotly" in Path(summary.heatmap).read_text()


def test_sweep_command_json_is_the_summary_dump(
    desk: Settings, captured: Callable[[str], list[SweepOutcome]]
) -> None:
    # Arrange
    outcomes = captured("run_stored_sweep")

    # Act
    line = _one_line(["sweep", *SERIES, "--strategy", "sma_cross", "--param", "fast=5,10",
                      "--param", "slow=30,60", "--param", "allow_short=false", "--json"],
                     desk.home)  # fmt: skip

    # Assert
    (outcome,) = outcomes
    assert line == outcome.summary.model_dump(mode="json")
    assert line["combinations"] == 4 and line["jobs"] == 1


def test_run_stored_sweep_unknown_metric_raises_usage_error(desk: Settings) -> None:
    # Arrange
    data = load_series(desk, "EURUSD", Timeframe.H1)

    # Act / Assert
    with pytest.raises(UsageError, match="--metric 'nope': choose one of fast, slow"):
        run_stored_sweep(desk, data, "sma_cross", [PARAMS, {"fast": 5, "slow": 20}],
                         BacktestConfig(), jobs=1, search=SweepSearch.GRID, metric="nope")  # fmt: skip


def test_plan_sweep_unknown_parameter_raises_usage_error(desk: Settings) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"--param lag: sma_cross declares no such parameter"):
        plan_sweep(desk, "sma_cross", {"lag": "1:5:1"})


def test_plan_sweep_random_search_draws_the_samples_asked_for(desk: Settings) -> None:
    # Act
    combos, _ = plan_sweep(desk, "sma_cross", {}, search=SweepSearch.RANDOM, samples=7, seed=3)
    again, _ = plan_sweep(desk, "sma_cross", {}, search=SweepSearch.RANDOM, samples=7, seed=3)

    # Assert
    assert 0 < len(combos) <= 7
    assert combos == again
    assert all(c["fast"] < c["slow"] for c in combos)


@pytest.mark.slow
def test_run_stored_sweep_two_workers_give_the_table_of_one(
    desk: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: workers' start-up counted as free, so two processes start for this job.
    combos, _ = plan_sweep(desk, "sma_cross", {"fast": "5:30:5", "slow": "40:80:20"})
    data = load_series(desk, "EURUSD", Timeframe.H1)
    config = BacktestConfig.from_options(fees=0.0001, spread=0.5)
    one = run_stored_sweep(desk, data, "sma_cross", combos, config, jobs=1,
                           search=SweepSearch.GRID)  # fmt: skip
    monkeypatch.setattr(service, "run_sweep", partial(run_sweep, startup_seconds=0.0))

    # Act
    two = run_stored_sweep(desk, data, "sma_cross", combos, config, jobs=2,
                           search=SweepSearch.GRID)  # fmt: skip

    # Assert
    assert (one.summary.jobs, two.summary.jobs) == (1, 2)
    assert two.results.equals(one.results)
    assert pl.read_parquet(two.summary.results).equals(one.results)


def _portfolio(desk: Settings, **options: Any) -> PortfolioOutcome:
    series = [load_series(desk, s, Timeframe.H1) for s in ("EURUSD", "GBPUSD")]
    base = BacktestConfig.from_options(spread=1.0)
    config = portfolio_config(series, base, sizing=PortfolioSizing.INVERSE_VOL, max_weight=0.6,
                              lookback=100, var_window=100)  # fmt: skip
    return run_stored_portfolio(desk, series, "sma_cross", PARAMS, config, **options)


def test_run_stored_portfolio_stored_run_matches_the_summary(desk: Settings) -> None:
    # Act
    outcome = _portfolio(desk)

    # Assert
    summary = outcome.summary
    assert re.fullmatch(r"pf-\d{8}T\d{6}-[0-9a-f]{6}", summary.run_id)
    store = BacktestStore.backtests(desk)
    stored = store.get(summary.run_id)
    record = stored.record
    assert stored.kind == "portfolio"
    assert summary.symbols == ("EURUSD", "GBPUSD") and record["symbols"] == ["EURUSD", "GBPUSD"]
    assert (summary.strategy, summary.sizing) == ("sma_cross", "inverse-vol")
    assert record["params"] == summary.params == {"fast": 10, "slow": 40, "allow_short": False}
    assert record["n_trades"] == summary.n_trades > 0
    assert {k: v for k, v in record["metrics"].items() if k != "n_trades"} == summary.model_dump(
        include=FIGURES - {"n_trades"}
    )
    weights = store.table(stored, "weights")
    assert weights.columns == ["ts", "EURUSD", "GBPUSD"]
    assert weights.select(pl.col("EURUSD", "GBPUSD").abs().max()).max_horizontal()[0] <= 0.6001
    equity = store.table(stored, "equity")
    assert equity["equity"][-1] == pytest.approx(summary.final_equity)
    risk = store.table(stored, "risk")
    assert set(summary.risk_last) == set(risk.columns) - {"ts"}
    assert store.table(stored, "symbols").equals(outcome.per_symbol)
    assert Path(summary.report or "").is_file()


def test_run_stored_portfolio_same_symbol_twice_raises_usage_error(desk: Settings) -> None:
    # Arrange
    data = load_series(desk, "EURUSD", Timeframe.H1)
    config = portfolio_config([data, data], BacktestConfig())

    # Act / Assert
    with pytest.raises(UsageError, match="a symbol is given twice: EURUSD, EURUSD"):
        run_stored_portfolio(desk, [data, data], "sma_cross", PARAMS, config)


def test_portfolio_command_json_is_the_summary_dump(
    desk: Settings, captured: Callable[[str], list[PortfolioOutcome]]
) -> None:
    # Arrange
    outcomes = captured("run_stored_portfolio")

    # Act
    line = _one_line(["portfolio", "--symbols", "EURUSD,GBPUSD", "--timeframe", "H1",
                      "--strategy", "sma_cross", "--lookback", "100", "--var-window", "100",
                      "--no-report", "--json"], desk.home)  # fmt: skip

    # Assert
    (outcome,) = outcomes
    assert line == outcome.summary.model_dump(mode="json")
    assert line["report"] is None


class _Reads:
    """A strategy that reads one feature column (only its name and needs matter here)."""

    name: ClassVar[str] = "reads_rsi"
    params: ClassVar[tuple[ParamSpec, ...]] = ()
    needs_features: ClassVar[tuple[str, ...]] = ("rsi_14",)

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        return Signals(target=np.zeros(bars.height))


def _store_build(desk: Settings, feature_set: str, table: pl.DataFrame) -> None:
    features = FeatureStore(desk.features_dir)
    relative = feature_file(feature_set, EURUSD, "v1")
    buffer = io.BytesIO()
    table.write_parquet(buffer)
    build = FeatureBuild(
        feature_set=feature_set, symbol="EURUSD", timeframe="H1", side="bid", version="v1",
        definition="d", file=relative,
        sha256=features.write_file(relative, buffer.getvalue()),
        rows=table.height, features=table.width - 1,
        columns=[{"name": c, "role": "feature"} for c in table.columns[1:]], sources={},
        first=None, last=None, created="2026-01-01T00:00:00Z", seconds=0.0,
    )  # fmt: skip
    with features.transaction() as tx:
        tx.record(build)
        tx.commit()


def test_load_strategy_features_set_not_built_names_the_command(desk: Settings) -> None:
    # Arrange
    data = load_series(desk, "EURUSD", Timeframe.H1)

    # Act / Assert
    with pytest.raises(UsageError) as error:
        load_strategy_features(desk, _Reads, data, "unbuilt")
    message = str(error.value)
    assert "strategy reads_rsi reads rsi_14 from feature set 'unbuilt'" in message
    assert "which is not built on EURUSD H1 bid: run solodesk features build first" in message


def test_load_strategy_features_joins_the_columns_read_on_the_bars(desk: Settings) -> None:
    # Arrange: a build covering every other bar.
    data = load_series(desk, "EURUSD", Timeframe.H1)
    half = data.bars.select("ts").gather_every(2).with_row_index("rsi_14")
    _store_build(desk, "with_rsi", half.select("ts", pl.col("rsi_14").cast(pl.Float64)))

    # Act
    joined = load_strategy_features(desk, _Reads, data, "with_rsi")
    plain = load_strategy_features(desk, type("Plain", (), {"needs_features": ()}), data, "x")

    # Assert
    assert joined is not None and joined.columns == ["ts", "rsi_14"]
    assert joined["ts"].equals(data.bars["ts"])
    assert joined["rsi_14"].null_count() == BARS // 2
    assert plain is None


def test_load_strategy_features_column_not_in_the_set_raises_usage_error(desk: Settings) -> None:
    # Arrange
    data = load_series(desk, "EURUSD", Timeframe.H1)
    _store_build(desk, "no_rsi", data.bars.select("ts", pl.col("close").alias("sma_5")))

    # Act / Assert
    with pytest.raises(UsageError, match="reads rsi_14, not in feature set 'no_rsi' on EURUSD"):
        load_strategy_features(desk, _Reads, data, "no_rsi")


def test_run_stored_backtest_strategy_reading_unbuilt_features_stores_nothing(
    desk: Settings,
) -> None:
    # Arrange
    data = load_series(desk, "EURUSD", Timeframe.H1)
    before = [r.id for r in BacktestStore.backtests(desk).runs()]

    # Act
    with pytest.raises(UsageError) as error:
        run_stored_backtest(desk, data, "ml_model", {}, BacktestConfig(), feature_set="none")

    # Assert
    assert "from feature set 'none', which is not built on EURUSD H1 bid" in str(error.value)
    assert "run solodesk features build first" in str(error.value)
    assert [r.id for r in BacktestStore.backtests(desk).runs()] == before

"""A registered model in the trading loop, on the sample desk's real EURUSD H1 bars.

One walk-forward per module registers version 1 (LightGBM, no tuning, two folds, from June
2017) in the desk's own MLflow store; version 2 is the same learner with a narrower rule (long
above 0.51, short below 0.49). Then:

- a paper session of version 1 records the model, its version and the feature-set definition
  on every order intent, and prints the walk-forward's figures on the same bars;
- the event and vectorized backtests of the model give the same trades and final equity;
- a model trained on another definition of its feature set is refused (exit 2, naming why);
- a session following ``champion`` reloads between bars when the alias moves, says so and
  notifies, and every later intent records the new version;
- a session killed with SIGKILL and resumed ends as one that never was.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import SampleDesk
from testkit.cli import REPO, invoke, solodesk_command, solodesk_env
from testkit.mt4 import simulator

from core.errors import UsageError
from core.ports import Notice, NoticeKind
from core.settings import Settings
from core.timeframes import Timeframe
from feature_store.state import StateDB
from pipelines.backtest.config import BacktestConfig, Engine
from pipelines.train.config import SplitConfig, StatsConfig, TuningConfig, WalkForwardConfig
from services.backtest import load_series, run_stored_backtest
from services.features import load_feature_set
from services.live_model import ModelChoice
from services.research import load_research_inputs, run_stored_walkforward
from services.runtime import PaperOptions, PaperSummary, run_paper

pytestmark = pytest.mark.slow

MODEL = "EURUSD-H1-default"
PARAMS = REPO / "params.yaml"
SINCE = datetime(2017, 6, 1, tzinfo=UTC)
WEEKS = datetime(2017, 11, 27, tzinfo=UTC)


def _config(seed: int) -> WalkForwardConfig:
    return WalkForwardConfig(
        model="lightgbm",
        split=SplitConfig(folds=2),
        tuning=TuningConfig(trials=0),
        stats=StatsConfig(n_boot=200, candidates=()),
        seed=seed,
        threads=1,
    )


@dataclass(frozen=True)
class ModelDesk:
    home: Path
    settings: Settings
    research_run: str


@pytest.fixture(scope="module")
def desk(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> ModelDesk:
    home = tmp_path_factory.mktemp("model-loop") / "home"
    shutil.copytree(sample_desk.home, home)
    settings = Settings(
        home=home, mlflow_tracking_uri=None, optuna_storage=None, dask_scheduler=None
    )
    inputs = load_research_inputs(
        settings, symbol="EURUSD", timeframe=Timeframe.H1, feature_set="default",
        params_path=PARAMS, start=SINCE,
    )  # fmt: skip
    first = run_stored_walkforward(settings, inputs, _config(seed=1))
    model = first.result.model
    narrower = replace(model, rule=model.rule.model_copy(update={"upper": 0.51, "lower": 0.49}))
    example = pl.DataFrame(inputs.data.X[-5:], schema=list(inputs.data.feature_names), orient="row")
    second = _registry(settings).register_challenger(
        run_id=first.summary.mlflow_run_id, name=MODEL, predictor=narrower,
        input_example=example, scores=first.summary.registry_scores(),
        tags={"solodesk.feature_set": "default",
              "solodesk.feature_set_version": inputs.feature_set_version,
              "solodesk.timeframe": "H1", "solodesk.run": first.summary.run_id},
    )  # fmt: skip
    assert (first.model_version, second.version) == (1, 2)
    return ModelDesk(home, settings, first.summary.run_id)


def _registry(settings: Settings):  # type: ignore[no-untyped-def]
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    return ModelRegistry(tracking_uri(settings))


def _options(**update: object) -> PaperOptions:
    base = PaperOptions(
        symbol="EURUSD", timeframe=Timeframe.H1, strategy="ml_model", start=WEEKS,
        backtest=BacktestConfig.from_options(spread=1.0), model=MODEL, model_version=1,
        params_file=str(PARAMS),
    )  # fmt: skip
    return base.model_copy(update=update)


class Notices:
    """A notifier that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        self.sent.append(notice)

    def close(self) -> None:
        return None


def test_paper_session_of_a_version_records_it_on_every_intent_beside_the_walkforward(
    desk: ModelDesk,
) -> None:
    # Arrange
    current = load_feature_set(PARAMS, "default").resolve().for_timeframe(Timeframe.H1)

    # Act
    summary = run_paper(desk.settings, _options(), session="v1", notifier=Notices())

    # Assert
    with StateDB.open(desk.settings) as db:
        intents = db.intents("v1")
    assert summary.model == MODEL and summary.model_version == 1
    assert summary.trades > 0 and intents
    assert {(i.model, i.model_version) for i in intents} == {(MODEL, "1")}
    assert {i.feature_set_version for i in intents} == {current.definition_hash()}
    assert {i.strategy for i in intents} == {"ml_model"}
    shortfall = summary.shortfall
    assert shortfall is not None
    assert shortfall.walkforward_run == desk.research_run
    assert shortfall.walkforward_bars > 500 and shortfall.walkforward_return is not None
    assert shortfall.fitted_bars > 500 and shortfall.fitted_until is not None
    assert shortfall.shortfall == pytest.approx(
        shortfall.walkforward_return - shortfall.paper_return
    )
    assert summary.warmup_seconds is not None and summary.warmup_seconds > 0


@pytest.mark.parametrize("fill", ["close", "next_open"])
def test_event_and_vectorized_backtests_of_a_model_give_the_same_trades_and_equity(
    desk: ModelDesk, fill: str
) -> None:
    # Arrange
    data = load_series(desk.settings, "EURUSD", Timeframe.H1, None, SINCE, None)
    config = BacktestConfig.from_options(spread=1.0, fees=0.00002, fill=fill, sizing="fraction:1")
    model = ModelChoice(name=MODEL, version=1, params_file=PARAMS)

    # Act
    results = {
        engine: run_stored_backtest(
            desk.settings, data, "ml_model", {}, config, report=False, engine=engine, model=model
        )
        for engine in (Engine.VECTOR, Engine.EVENT)
    }

    # Assert
    vector, event = results[Engine.VECTOR].result, results[Engine.EVENT].result
    assert vector.trades.height > 10
    keys = ["entry_ts", "exit_ts", "direction"]
    assert event.trades.select(keys).equals(vector.trades.select(keys))
    assert event.equity[-1] == pytest.approx(vector.equity[-1], rel=1e-9)
    assert results[Engine.EVENT].run.record["model_version"] == 1


def test_a_model_of_another_feature_set_definition_is_refused_naming_why(
    desk: ModelDesk, tmp_path: Path
) -> None:
    # Arrange: the default set without its D1 context and without rsi_14
    params = yaml.safe_load(PARAMS.read_text())
    changed = params["features"]["sets"]["default"]
    changed["context"] = [c for c in changed["context"] if c["timeframe"] != "D1"]
    changed["features"] = ["rsi_7", "log_return_1", "atr_rel_14"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    args = ["paper", "--symbol", "EURUSD", "--timeframe", "H1", "--name", MODEL, "--version",
            "1", "--spread", "1.0", "--params", str(path), "--from", "2017-12-18"]  # fmt: skip

    # Act
    run = invoke(args, desk.home)
    both = invoke([*args, "--strategy", "sma_cross"], desk.home)

    # Assert
    assert run.returncode == 2, run.stdout + run.stderr
    message = " ".join((run.stdout + run.stderr).split())
    assert "cannot trade on these features" in message
    assert "lack 68 of its 74 inputs" in message and "log_return_2" in message
    assert "as defined by" in message
    assert both.returncode == 2 and "not both" in " ".join((both.stdout + both.stderr).split())


def test_paper_session_following_champion_reloads_between_bars_when_it_moves(
    desk: ModelDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    import services.live_model

    monkeypatch.setattr(services.live_model, "WATCH_SECONDS", 0.05)
    registry = _registry(desk.settings)
    registry.client.set_registered_model_alias(MODEL, "champion", "1")
    notices, said = Notices(), []
    options = _options(model_version=None, start=datetime(2017, 11, 1, tzinfo=UTC))
    done: list[PaperSummary] = []
    errors: list[BaseException] = []

    def paper() -> None:
        try:
            summary = run_paper(
                desk.settings, options, session="follow", speed=1_000_000.0, notifier=notices,
                say=said.append,
            )  # fmt: skip
            done.append(summary)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=paper)

    # Act: move the alias once the session has traded version 1 for a while
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if desk.settings.state_db_path.exists():
            with StateDB.open(desk.settings) as db:
                if len(db.intents("follow")) >= 4:
                    break
        time.sleep(0.02)
    registry.client.set_registered_model_alias(MODEL, "champion", "2")
    thread.join(timeout=120)

    # Assert
    assert not errors, errors
    with StateDB.open(desk.settings) as db:
        versions = [i.model_version for i in db.intents("follow")]
    switch = versions.index("2")
    assert switch >= 4
    assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}
    reloads = [n for n in notices.sent if n.kind is NoticeKind.MODEL_RELOADED]
    assert len(reloads) == 1 and "v1 -> " in reloads[0].body and "v2" in reloads[0].body
    assert "long above 0.51" in reloads[0].body
    assert any(text.startswith("model reloaded") for text in said)
    assert done and done[0].model_version == 2  # the version trading when the run ended


def _watermark(settings: Settings, session: str) -> int:
    if not settings.state_db_path.exists():
        return 0
    with StateDB.open(settings) as db:
        found = db.session(session)
    return int(found.bars or 0) if found is not None else 0


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_paper_session_of_a_model_killed_with_sigkill_resumes_to_the_same_ledger(
    desk: ModelDesk, spawned: list[subprocess.Popen[bytes]]
) -> None:
    # Arrange
    start = "2017-11-01"
    args = ["paper", "--symbol", "EURUSD", "--timeframe", "H1", "--name", MODEL, "--version",
            "1", "--spread", "1.0", "--params", str(PARAMS), "--from", start, "--json"]  # fmt: skip
    options = _options(start=datetime(2017, 11, 1, tzinfo=UTC))
    whole = run_paper(desk.settings, options, session="whole", notifier=Notices())
    env = solodesk_env(desk.home)

    # Act: kill the paced session once it has committed 150 bars, then resume it
    process = subprocess.Popen(
        [*solodesk_command(), *args, "--session", "killed", "--speed", "500000"],
        cwd=desk.home.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    spawned.append(process)
    deadline = time.monotonic() + 90
    while _watermark(desk.settings, "killed") < 150:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the paced session never reached 150 bars"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    at_kill = _watermark(desk.settings, "killed")
    resumed = run_paper(desk.settings, options, session="killed", notifier=Notices())

    # Assert
    assert 150 <= at_kill < whole.bars
    assert resumed.resumed and resumed.bars_this_run < whole.bars
    assert resumed.ledger_hash == whole.ledger_hash
    assert resumed.final_equity == whole.final_equity
    assert resumed.trades == whole.trades
    with StateDB.open(desk.settings) as db:
        ids = [f.client_order_id for f in db.fills("killed")]
    assert len(ids) == len(set(ids))


def test_paper_refuses_a_model_alias_that_is_not_set(desk: ModelDesk) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="has no alias 'nightly'"):
        run_paper(desk.settings, _options(model_version=None, model_alias="nightly"), session="x")


def _bridge_env(ports: tuple[int, int, int]) -> dict[str, str]:
    """Return the environment reaching a simulator on ``ports``, with short timeouts."""
    return {
        "SOLODESK_MT4__PORTS": json.dumps(list(ports)), "SOLODESK_MT4__TIMEOUT_SECONDS": "0.5",
        "SOLODESK_MT4__BACKOFF_SECONDS": "0.1",
    }  # fmt: skip


def test_model_trades_live_through_the_mt4_simulator_and_on_mt4_prices(desk: ModelDesk) -> None:
    # Arrange: `solodesk live` trades version 1 against a simulator from 2017-11-27 (a bar every
    # 36 ms once the session tracks its prices, its account kept) whose sockets go down now and
    # then; `solodesk paper --feed mt4` trades it on another simulator's prices
    model = ["--symbol", "EURUSD", "--timeframe", "H1", "--name", MODEL, "--version", "1",
             "--params", str(PARAMS), "--to", "2017-12-01", "--json"]  # fmt: skip
    common = {"speed": 3600.0 * 100, "start": WEEKS, "wait_for_client": True}
    faults = ("disconnect=0.05:0.3",)  # seed 3: down at commands 9, 11, 15 and 28
    with simulator(
        desk.home, raw=False, account="model-live", faults=faults, seed=3, **common
    ) as run:
        # Act
        live = invoke(
            ["live", *model, "--session", "model-live", "--confirm-live",
             "--risk", "max_daily_loss=0.05",
             "--override", "a test account on the simulator, to watch live fills"],
            desk.home, env=_bridge_env(run.ports),
        )  # fmt: skip
        live_sim = run.finish()
    with simulator(desk.home, raw=False, **common) as run:
        paper = invoke(
            ["paper", *model, "--session", "model-mt4-paper", "--feed", "mt4", "--spread", "1.0"],
            desk.home, env=_bridge_env(run.ports),
        )  # fmt: skip
        run.finish()

    # Assert: both traded the model on the terminal's bars; the live fills are the terminal's
    assert live.returncode == 0, (live.stderr[-2000:], live.exception)
    assert paper.returncode == 0, (paper.stderr[-2000:], paper.exception)
    assert "live gate: overridden" in live.stderr
    summary = json.loads(live.stdout.splitlines()[-1])
    assert summary["account"] == "mt4:model-live"
    assert summary["bars"] > 0 and summary["model"] == MODEL and summary["model_version"] == 1
    # the session traded the account's money (the simulator's 10,000), not an assumed cash
    assert summary["shortfall"]["paper_return"] == pytest.approx(summary["final_equity"] / 1e4 - 1)
    assert json.loads(paper.stdout.splitlines()[-1])["bars"] > 0
    assert live_sim.faults_struck.get("disconnect", 0) >= 1
    with StateDB.open(desk.settings) as db:
        fills = db.fills("model-live")
        intents = db.intents("model-live") + db.intents("model-mt4-paper")
    assert intents
    assert all(i.model_version == "1" for i in intents)
    history = Path(live_sim.history)
    closed = {str(t) for t in pl.read_parquet(history)["ticket"]} if history.exists() else set()
    tickets = {str(f.ticket) for f in fills}
    assert closed <= tickets
    assert len(tickets - closed) <= 1

"""The retraining cycle on the sample desk's real EURUSD H1 bars, with a session trading through it.

With the promotion floors off (``Settings(promotion=...)``), LightGBM without tuning, two
folds, from June 2017:

1. ``retrain`` registers version 1 and promotes it: the first champion;
2. a paced paper session follows ``champion`` from October 2017 (in a thread);
3. a second retrain (seed 2, which beats seed 1 on DSR and the Sharpe interval's lower bound on
   these bars) registers version 2 and promotes it; the running loop reloads it;
4. version 2 then drifts, and is rolled back: the drift is injected by its reference, not its
   bars. Between the retrain's walk-forward step and its promotion step, version 2's stored
   reference gets one feature whose training deciles lie far above every value that feature
   takes (a market that has left the range the version was trained on). Its PSI acts at the
   monitor's first check, 200 bars after the reload; ``champion`` goes back to version 1, and
   the loop reloads it;
5. a session trading version 2 by number (not following the alias) is paused instead.

Each step is checked in the registry's tags (``promotion.*``, ``rollback.*``), in the order
intents' model versions (1, then 2, then 1) and in the notices the session and the retrains
sent. ``solodesk retrain --json`` prints the result and sends its notice through Apprise.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from conftest import SampleDesk
from testkit.cli import REPO, invoke
from testkit.receiver import Receiver
from typer.testing import CliRunner

from app.commands import research as research_commands
from core.errors import UsageError
from core.ports import Notice, NoticeKind
from core.settings import PromotionSettings, Settings
from core.timeframes import Timeframe
from feature_store.state import StateDB
from pipelines.backtest.config import BacktestConfig
from pipelines.evaluate.drift import DRIFT_ARTIFACT, DRIFT_TAG, DriftReference
from pipelines.train.config import SplitConfig, StatsConfig, TuningConfig, WalkForwardConfig
from services.models import rollback
from services.research import EXPERIMENT, WalkForwardOutcome, desk_tracker
from services.retrain import retrain, retrain_notify, retrain_promote, retrain_walkforward
from services.runtime import PaperOptions, PaperSummary, request_control, run_paper

pytestmark = pytest.mark.slow

MODEL = "EURUSD-H1-default"
PARAMS = REPO / "params.yaml"
SINCE = datetime(2017, 6, 1, tzinfo=UTC)
SESSION_FROM = datetime(2017, 10, 2, tzinfo=UTC)
#: 15 ms a bar: about 1,500 bars from October last 22 s, long enough for the whole cycle.
SPEED = 240_000.0


def _config(seed: int) -> WalkForwardConfig:
    return WalkForwardConfig(
        model="lightgbm",
        split=SplitConfig(folds=2),
        tuning=TuningConfig(trials=0),
        stats=StatsConfig(n_boot=200, candidates=()),
        seed=seed,
        threads=1,
    )


class Notices:
    """A notifier that keeps what it is sent (from the loop's thread and the drift's)."""

    def __init__(self) -> None:
        self.sent: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        self.sent.append(notice)

    def close(self, timeout: float = 10.0) -> None:
        return None

    def of(self, kind: NoticeKind) -> list[Notice]:
        return [n for n in self.sent if n.kind is kind]


def _registry(settings: Settings):  # type: ignore[no-untyped-def]
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    return ModelRegistry(tracking_uri(settings))


def _versions(settings: Settings) -> list[str]:
    if not settings.state_db_path.exists():
        return []
    with StateDB.open(settings) as db:
        return [str(i.model_version) for i in db.intents("cycle")]


def _wait(what: str, done: Callable[[], bool], thread: threading.Thread, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert thread.is_alive(), f"the session ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {seconds:.0f} s"
        time.sleep(0.02)


def _shift_one_feature(settings: Settings, outcome: WalkForwardOutcome) -> str:
    """Rewrite the version's stored reference: its first feature's deciles far above any value."""
    run = outcome.summary.mlflow_run_id
    assert run is not None
    text = _registry(settings).run_text(run, DRIFT_ARTIFACT)
    assert text is not None
    reference = DriftReference.from_json(text)
    moved = reference.features[0]
    far = moved.model_copy(update={"edges": tuple(e + 1e6 for e in moved.edges)})
    shifted = reference.model_copy(update={"features": (far, *reference.features[1:])})
    desk_tracker(settings, EXPERIMENT).log_text(run, shifted.to_json(), DRIFT_ARTIFACT)
    return moved.name


def test_retrain_promotes_the_loop_reloads_and_a_drifting_version_is_rolled_back(
    sample_desk: SampleDesk,
    copy_desk: Callable[[Path], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange
    import services.live_model

    monkeypatch.setattr(services.live_model, "WATCH_SECONDS", 0.05)
    home = copy_desk(sample_desk.home)
    settings = Settings(
        home=home, mlflow_tracking_uri=None, optuna_storage=None, dask_scheduler=None,
        promotion=PromotionSettings(min_psr=None, min_sharpe_ci_low=None),
    )  # fmt: skip
    notices = Notices()
    said: list[str] = []
    series = {"symbol": "EURUSD", "timeframe": Timeframe.H1, "feature_set": "default",
              "params_path": PARAMS, "start": SINCE}  # fmt: skip
    options = PaperOptions(
        symbol="EURUSD", timeframe=Timeframe.H1, strategy="ml_model", start=SESSION_FROM,
        backtest=BacktestConfig.from_options(spread=1.0), model=MODEL, params_file=str(PARAMS),
    )  # fmt: skip
    done: list[PaperSummary] = []
    errors: list[BaseException] = []

    def paper() -> None:
        try:
            done.append(
                run_paper(
                    settings,
                    options,
                    session="cycle",
                    speed=SPEED,
                    notifier=notices,
                    say=said.append,
                )
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=paper)

    # Act 1: the first retrain makes version 1 champion; a session starts following it
    first = retrain(settings, **series, config=_config(1), notifier=notices)  # type: ignore[arg-type]
    thread.start()
    _wait("intents of version 1", lambda: len(_versions(settings)) >= 4, thread, 60)

    # Act 2: the second retrain, step by step, its reference shifted before its promotion
    outcome = retrain_walkforward(settings, **series, config=_config(2))  # type: ignore[arg-type]
    shifted = _shift_one_feature(settings, outcome)
    second = retrain_promote(settings, outcome.summary)
    retrain_notify(settings, second, notices)

    # Act 3: version 2 trades, drifts and is rolled back; version 1 trades again
    def back_to_one() -> bool:
        versions = _versions(settings)
        return "2" in versions and versions[-1] == "1"

    _wait("intents of version 1 after version 2", back_to_one, thread, 60)
    request_control(settings, "stop", session="cycle", who="test", why="the cycle is done")
    thread.join(timeout=60)

    # Assert: the retrains
    assert not errors, errors
    assert (first.version, first.promoted, first.champion_before, first.champion_after) == (
        1, True, None, 1,
    )  # fmt: skip
    assert (second.version, second.promoted, second.champion_before, second.champion_after) == (
        2, True, 1, 2,
    )  # fmt: skip
    dsr = next(row for row in second.scores if row.key == "dsr")
    assert dsr.new is not None and dsr.champion is not None and dsr.new > dsr.champion

    # Assert: the loop traded 1, then 2, then 1 again, and ended on 1
    versions = _versions(settings)
    runs = [v for k, v in enumerate(versions) if k == 0 or versions[k - 1] != v]
    assert runs == ["1", "2", "1"]
    assert done and done[0].model_version == 1

    # Assert: the registry
    registry = _registry(settings)
    v1, v2 = registry.version_info(MODEL, 1), registry.version_info(MODEL, 2)
    assert registry.alias_version(MODEL, "champion") == 1
    assert registry.alias_version(MODEL, "challenger") is None  # left the version rolled back
    assert v1.tags["promotion.decision"] == v2.tags["promotion.decision"] == "promoted"
    assert v1.tags["promotion.previous_champion"] == "none"
    assert v2.tags["promotion.previous_champion"] == "1"
    for info in (v1, v2):
        assert info.tags[DRIFT_TAG] == DRIFT_ARTIFACT
        assert (info.tags["rollback.from"], info.tags["rollback.to"]) == ("2", "1")
        assert info.tags["rollback.who"] == "drift"
        assert info.tags["rollback.why"].startswith("drift: PSI of 1 feature(s)")
        assert shifted in info.tags["rollback.why"]
        assert datetime.fromisoformat(info.tags["rollback.at"]) >= datetime.fromisoformat(
            v2.tags["promotion.at"]
        )
    assert v1.tags["rollback.at"] == v2.tags["rollback.at"]

    # Assert: the notices
    retrains = notices.of(NoticeKind.RETRAIN)
    assert [n.title for n in retrains] == [
        f"retrain: {MODEL} v1 promoted",
        f"retrain: {MODEL} v2 promoted",
    ]
    assert "score: new vs v1" in retrains[1].body
    assert f"dsr: {dsr.new:.3f} vs {dsr.champion:.3f}" in retrains[1].body
    reloads = notices.of(NoticeKind.MODEL_RELOADED)
    assert len(reloads) == 2
    assert reloads[0].body.startswith(f"{MODEL} v1 -> {MODEL} v2")
    assert reloads[1].body.startswith(f"{MODEL} v2 -> {MODEL} v1")
    drifts = notices.of(NoticeKind.MODEL_DRIFT)
    assert [n.title for n in drifts] == ["model drift: acting"]
    assert (
        drifts[0].body.startswith(f"{MODEL} v2: PSI of 1 feature(s)") and shifted in drifts[0].body
    )
    rollbacks = notices.of(NoticeKind.MODEL_ROLLBACK)
    assert [n.title for n in rollbacks] == ["model rolled back"]
    assert f"{MODEL} v2 drifted: champion back from v2 to v1" in rollbacks[0].body
    kinds = [n.kind for n in notices.sent if n.kind is not NoticeKind.TRADE_OPENED]
    order = [NoticeKind.MODEL_RELOADED, NoticeKind.MODEL_DRIFT, NoticeKind.MODEL_ROLLBACK,
             NoticeKind.MODEL_RELOADED]  # fmt: skip
    assert [k for k in kinds if k in order] == order
    assert any(text.startswith("model rolled back") for text in said)

    # Assert: by hand, version 1 has no previous champion to go back to, and a rollback of a
    # version no longer champion is refused
    by_hand = invoke(["models", "rollback", "--name", MODEL, "--why", "by hand"], home)
    assert by_hand.returncode == 2
    assert "records no previous champion" in " ".join(by_hand.stderr.split())
    with pytest.raises(UsageError, match="champion is version 1, not 2: it moved since"):
        rollback(settings, MODEL, version=2)

    # Act 4: a session trading version 2 by number is paused, not rolled back
    fixed = Notices()
    run_paper(settings, options.model_copy(update={"model_version": 2}), session="fixed",
              notifier=fixed)  # fmt: skip

    # Assert
    with StateDB.open(settings) as db:
        controls = db.controls("fixed")
    assert [(c.action, c.who) for c in controls] == [("pause", "drift")]
    assert controls[0].why.startswith("drift: PSI of 1 feature(s)")
    paused = fixed.of(NoticeKind.MODEL_ROLLBACK)
    assert [n.title for n in paused] == ["model drift: session paused"]
    assert "the session trades that version, not an alias: paused" in paused[0].body
    assert registry.alias_version(MODEL, "champion") == 1


def test_retrain_command_prints_the_result_as_json_and_sends_its_notice(
    sample_desk: SampleDesk, copy_desk: Callable[[Path], Path]
) -> None:
    # Arrange: the command as the root registers it; floors off and a receiver, by environment
    home = copy_desk(sample_desk.home)
    cli = typer.Typer()
    cli.command()(research_commands.retrain)
    args = ["--symbol", "EURUSD", "--timeframe", "H1", "--trials", "0", "--folds", "2",
            "--from", "2017-06-01", "--seed", "1", "--n-boot", "200", "--threads", "1",
            "--params", str(PARAMS), "--json"]  # fmt: skip

    with Receiver() as receiver:
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("SOLODESK_")}
        env.update({
            "SOLODESK_HOME": str(home),
            "SOLODESK_PROMOTION__MIN_PSR": "off",
            "SOLODESK_PROMOTION__MIN_SHARPE_CI_LOW": "off",
            "SOLODESK_NOTIFY__URLS": json.dumps([receiver.url()]),
        })  # fmt: skip

        # Act
        run = CliRunner().invoke(cli, args, env=env)
        arrived = receiver.wait_for(1)
        titles = receiver.titles()

    # Assert
    assert run.exit_code == 0, (run.stderr, run.exception)
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert (result["name"], result["version"], result["promoted"]) == (MODEL, 1, True)
    assert (result["champion_before"], result["champion_after"]) == (None, 1)
    assert [row["key"] for row in result["scores"]][:2] == ["dsr", "psr"]
    assert all(row["champion"] is None for row in result["scores"])
    assert result["reason"] == "promoted: no champion yet"
    assert arrived and titles == [f"retrain: {MODEL} v1 promoted"]

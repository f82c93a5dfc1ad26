"""Walk-forward research on a real MT4 history of EURUSD H1, judged, audited and promoted.

One desk per module holds the whole 2010-2018 series. The research runs use 2015 onwards (the
leaky one mid-2016 onwards) with three folds of three trials each, a one-pip spread and one
LightGBM thread, so the runs take the same time on a busy machine as on an idle one. Commands
run in this process, as a person would type them; the leaky run calls the job directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest
from testkit.cli import REPO, invoke, json_lines

from core.settings import Settings
from core.timeframes import Timeframe
from pipelines.backtest.config import BacktestConfig, CostConfig, SizingConfig
from pipelines.train.config import SplitConfig, StatsConfig, TuningConfig, WalkForwardConfig

from .conftest import Desk

if TYPE_CHECKING:
    from feature_store.model_registry import ModelRegistry, ModelVersionInfo

# Three walk-forwards on years of hourly bars, two of them audited: minutes in all.
pytestmark = [pytest.mark.realdata, pytest.mark.slow]

START = "2015-01-01"
FOLDS = 3
TRIALS = 3
MODEL_NAME = "EURUSD-H1-default"
PARAMS = REPO / "params.yaml"
RESEARCH = [
    "--params", str(PARAMS), "--symbol", "EURUSD", "--timeframe", "H1",
    "--feature-set", "default", "--from", START, "--folds", str(FOLDS),
    "--trials", str(TRIALS), "--spread", "1", "--threads", "1", "--json",
]  # fmt: skip
# The leak is glaring: two years of bars are plenty to expose it, and half the work.
LEAK_START = datetime(2016, 7, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AuditedRun:
    """The desk after ``walkforward --audit --json``: its summary and the registry right after."""

    desk: Desk
    summary: dict[str, Any]
    versions_after: dict[int, ModelVersionInfo]


def _solodesk(desk: Desk, args: list[str]) -> list[dict[str, Any]]:
    done = invoke(args, desk.settings.home)
    assert done.returncode == 0, done.stderr[-4000:]
    return json_lines(done.stdout)


def _registry(desk: Desk) -> ModelRegistry:
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    return ModelRegistry(tracking_uri(desk.settings))


def _versions(desk: Desk) -> dict[int, ModelVersionInfo]:
    registry = _registry(desk)
    if MODEL_NAME not in {v.name for v in registry.list_versions()}:
        return {}
    return {v.version: v for v in registry.list_versions(MODEL_NAME)}


def _client(desk: Desk) -> Any:
    from mlflow.tracking import MlflowClient

    from feature_store.tracking import tracking_uri

    uri = tracking_uri(desk.settings)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def desk(data_file: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Desk:
    """A desk holding the MT4 EURUSD H1 history (about 52k bars)."""
    home = tmp_path_factory.mktemp("walkforward") / "home"
    made = Desk(Settings(home=home, mlflow_tracking_uri=None, dask_scheduler=None))
    made.ingest_one([data_file("mt4/EURUSD60.csv")])
    return made


@pytest.fixture(scope="module")
def audited(desk: Desk) -> AuditedRun:
    """Run an audited walk-forward through the command line, then list the registry."""
    (summary,) = _solodesk(desk, ["walkforward", *RESEARCH, "--audit"])
    return AuditedRun(desk, summary, _versions(desk))


def test_walkforward_audit_on_real_eurusd_prints_the_json_contract(audited: AuditedRun) -> None:
    # Arrange
    summary = audited.summary
    oos = summary["oos"]

    # Act
    lo, hi = oos["sharpe_ci"]

    # Assert
    assert (summary["symbol"], summary["timeframe"], summary["model"]) == ("EURUSD", "H1",
                                                                          "lightgbm")  # fmt: skip
    assert oos["ci_level"] == 0.95
    assert math.isfinite(oos["sharpe"])
    assert lo <= oos["sharpe"] <= hi
    assert lo < hi
    assert 0.0 <= oos["psr"] <= 1.0
    assert 0.0 <= oos["dsr"] <= 1.0
    # Deflating for nine trials can only lower the probability that the Sharpe ratio beats 0.
    assert oos["dsr"] <= oos["psr"]
    assert oos["n_trials"] == summary["trials"]["total"] == FOLDS * TRIALS
    assert oos["total_return"] == pytest.approx(oos["final_equity"] / oos["initial_cash"] - 1)
    assert oos["max_drawdown"] <= 0.0
    assert 0.0 <= oos["hit_rate"] <= 1.0
    assert isinstance(oos["n_trades"], int) and oos["n_trades"] > 0
    assert [f["fold"] for f in summary["folds"]] == list(range(FOLDS))
    assert all(f["n_trials"] == TRIALS for f in summary["folds"])
    first_train = datetime.fromisoformat(summary["folds"][0]["train_start"])
    assert first_train >= datetime(2015, 1, 1, tzinfo=UTC)
    for earlier, later in zip(summary["folds"], summary["folds"][1:], strict=False):
        assert earlier["test_end"] < later["test_start"]
    assert oos["start"] == summary["folds"][0]["test_start"]
    assert isinstance(summary["mlflow_run_id"], str) and summary["mlflow_run_id"]


def test_walkforward_audit_on_real_eurusd_passes_both_controls(audited: AuditedRun) -> None:
    # Act
    audit = audited.summary["audit"]

    # Assert
    assert audit["passed"] is True
    controls = {c["control"]: c for c in audit["controls"]}
    assert set(controls) == {"shuffled_labels", "random_walk"}
    for control in controls.values():
        assert control["passed"] is True, control
        low, high = control["gross_sharpe_ci_99"]
        assert low <= 0.0 <= high
        assert control["net_sharpe_ci_99"][0] <= 0.0


def test_walkforward_audit_on_real_eurusd_records_parent_and_one_child_per_fold(
    audited: AuditedRun,
) -> None:
    # Arrange
    client = _client(audited.desk)
    parent_id = audited.summary["mlflow_run_id"]

    # Act
    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )

    # Assert
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["solodesk.kind"] == "walkforward"
    assert parent.data.tags["solodesk.audit"] == "passed"
    assert parent.data.metrics["oos_dsr"] == pytest.approx(audited.summary["oos"]["dsr"])
    assert sorted(run.info.run_name for run in children) == [f"fold {i}" for i in range(FOLDS)]
    assert {run.data.tags["solodesk.kind"] for run in children} == {"fold"}
    assert {run.info.status for run in children} == {"FINISHED"}


def test_walkforward_audit_on_real_eurusd_registers_challenger_with_json_scores(
    audited: AuditedRun,
) -> None:
    # Arrange
    summary = audited.summary
    number = summary["model_version"]

    # Act
    version = _client(audited.desk).get_model_version(MODEL_NAME, str(number))
    listed = audited.versions_after[number]

    # Assert
    assert version.run_id == summary["mlflow_run_id"]
    assert float(version.tags["score.dsr"]) == summary["oos"]["dsr"]
    assert float(version.tags["score.sharpe_ci_low"]) == summary["oos"]["sharpe_ci"][0]
    assert float(version.tags["score.sharpe"]) == summary["oos"]["sharpe"]
    assert listed.aliases == ("challenger",)


def _leaky(bars: pl.DataFrame) -> pl.DataFrame:
    """Return the next bar's log return as a feature: unknown at the end of bar t."""
    leak = (pl.col("close").shift(-1) / pl.col("close")).log()
    return bars.select(pl.col("ts"), leak.alias("next_log_return"))


def test_walkforward_audit_with_next_bar_return_feature_fails_and_registers_nothing(
    desk: Desk,
) -> None:
    # Arrange
    from services.research import AuditFailedError, load_research_inputs, run_stored_walkforward

    before = len(_versions(desk))
    inputs = load_research_inputs(
        desk.settings, symbol="EURUSD", timeframe=Timeframe.H1, feature_set="default",
        params_path=PARAMS, start=LEAK_START, extra=_leaky,
    )  # fmt: skip
    config = WalkForwardConfig(
        model="lightgbm",
        split=SplitConfig(folds=FOLDS),
        tuning=TuningConfig(trials=TRIALS),
        backtest=BacktestConfig(
            costs=CostConfig(spread_pips=1.0), sizing=SizingConfig.parse("fraction:1")
        ),
        # No logistic baseline for SPA and PBO: they are not what this test is about.
        stats=StatsConfig(candidates=()),
        threads=1,
    )

    # Act
    with pytest.raises(AuditFailedError) as failure:
        run_stored_walkforward(desk.settings, inputs, config, audit=True)

    # Assert
    assert "next_log_return" in inputs.data.feature_names
    assert "random_walk:" in str(failure.value)
    assert "not registered" in str(failure.value)
    assert len(_versions(desk)) == before


def _beats(challenger: ModelVersionInfo, champion: ModelVersionInfo, key: str) -> bool:
    mine, theirs = challenger.scores.get(key), champion.scores.get(key)
    return mine is not None and theirs is not None and mine > theirs


def test_models_promote_on_real_walkforwards_follows_default_rule_and_records_reason(
    audited: AuditedRun,
) -> None:
    # Arrange
    from feature_store.model_registry import PromotionRule, check_floors
    from services.models import promotion_rule

    desk = audited.desk
    first = audited.summary["model_version"]
    crowned = _registry(desk).promote(MODEL_NAME, PromotionRule())
    # A second model for the same series; 200 bootstrap replicates only make its Sharpe
    # interval coarser, and the expected decision is taken from the scores it stored.
    second_run = ["walkforward", *RESEARCH, "--model", "logistic", "--n-boot", "200"]
    (other,) = _solodesk(desk, second_run)
    second = other["model_version"]
    stored = _versions(desk)
    # The default floors of [promotion] (PSR, Sharpe CI low) apply as well as the rule.
    floors = check_floors(stored[second].scores, promotion_rule(desk.settings).minimums())
    expected = (
        all(check.met for check in floors)
        and _beats(stored[second], stored[first], "dsr")
        and _beats(stored[second], stored[first], "sharpe_ci_low")
    )

    # Act
    (decision,) = _solodesk(desk, ["models", "promote", "--name", MODEL_NAME, "--json"])

    # Assert
    assert crowned.promoted and crowned.champion_before is None
    assert stored[first].aliases == ("champion",)
    assert second != first
    assert decision["challenger"] == second
    assert decision["champion_before"] == first
    assert decision["promoted"] is expected
    after = _versions(desk)
    assert after[second].tags["promotion.decision"] == ("promoted" if expected else "rejected")
    assert after[second].tags["promotion.reason"] == decision["reason"]
    assert f"(champion v{first})" in decision["reason"]
    assert all(check.text in decision["reason"] for check in floors)
    champion = second if expected else first
    assert "champion" in after[champion].aliases
    assert "challenger" in after[second].aliases

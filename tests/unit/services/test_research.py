"""The research jobs in process on a copy of the sample desk: what they store, track and register.

The walk-forward job runs once per module with a recording tracker and no registry (MLflow is
not the subject there); the registry and the training job use the desk's own MLflow store on a
desk of their own. Jobs are tiny: the last quarter of the 2017 sample, two folds, two trials of
the logistic learner, 200 bootstrap replicates.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from conftest import SampleDesk
from testkit.cli import REPO
from testkit.tracking import RecordingTracker

from core.ids import new_run_id
from core.settings import Settings
from core.timeframes import Timeframe
from feature_store.backtests import BacktestStore
from pipelines.train.config import SplitConfig, StatsConfig, TuningConfig, WalkForwardConfig
from services.research import (
    ResearchInputs,
    TrainResult,
    WalkForwardOutcome,
    compute_report,
    compute_walkforward,
    load_research_inputs,
    oos_table,
    record_walkforward,
    run_stored_train,
    run_stored_walkforward,
    study_storage_factory,
    summarize,
)

PARAMS = REPO / "params.yaml"
MODEL = "EURUSD-H1-default"
FOLDS = 2
TRIALS = 2
SINCE = datetime(2017, 10, 1, tzinfo=UTC)
CONFIG = WalkForwardConfig(
    model="logistic",
    split=SplitConfig(folds=FOLDS),
    tuning=TuningConfig(trials=TRIALS),
    stats=StatsConfig(n_boot=200, candidates=()),
    seed=2,
    threads=1,
    jobs=1,
)


def _settings(home: Path) -> Settings:
    # Every scale-out setting is given, so none leaks in from the environment running the tests.
    return Settings(home=home, mlflow_tracking_uri=None, optuna_storage=None, dask_scheduler=None)


def _desk(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    home = tmp_path_factory.mktemp(name) / "home"
    shutil.copytree(sample_desk.home, home)
    return home


def _inputs(settings: Settings) -> ResearchInputs:
    return load_research_inputs(
        settings, symbol="EURUSD", timeframe=Timeframe.H1, feature_set="default",
        params_path=PARAMS, start=SINCE,
    )  # fmt: skip


@dataclass(frozen=True)
class TrackedJob:
    """The walk-forward job run with a recording tracker and no registry."""

    settings: Settings
    inputs: ResearchInputs
    outcome: WalkForwardOutcome
    tracker: RecordingTracker


@pytest.fixture(scope="module")
def job(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> TrackedJob:
    settings = _settings(_desk(sample_desk, tmp_path_factory, "research-job"))
    inputs = _inputs(settings)
    tracker = RecordingTracker()
    outcome = run_stored_walkforward(settings, inputs, CONFIG, register=False, tracker=tracker)
    return TrackedJob(settings, inputs, outcome, tracker)


def test_run_stored_walkforward_stored_record_holds_the_returned_summary(job: TrackedJob) -> None:
    # Arrange
    store = BacktestStore.research(job.settings)

    # Act
    stored = store.get(job.outcome.summary.run_id)
    on_disk = json.loads((stored.folder / "run.json").read_text())

    # Assert
    dumped = job.outcome.summary.model_dump(mode="json")
    assert stored.record["summary"] == dumped
    assert on_disk["summary"] == dumped
    assert on_disk["kind"] == "walkforward"
    assert on_disk["series_version"] == job.inputs.series.info.version
    assert dumped["report"] == on_disk["report"] == str(job.outcome.report.resolve())
    assert job.outcome.report.is_file()


def test_run_stored_walkforward_stored_table_is_the_out_of_sample_equity(job: TrackedJob) -> None:
    # Arrange
    store = BacktestStore.research(job.settings)

    # Act
    table = store.table(store.get(job.outcome.summary.run_id), "oos")

    # Assert
    assert table.columns == ["ts", "equity", "return", "gross_return", "position"]
    assert table["equity"].to_list() == job.outcome.result.oos_equity.tolist()
    assert table.height == job.outcome.summary.oos.n_bars


def test_run_stored_walkforward_latest_figures_are_the_dvc_headline(job: TrackedJob) -> None:
    # Arrange
    latest = job.settings.research_latest_dir

    # Act
    headline = json.loads((latest / "walkforward.json").read_text())
    equity = pl.read_csv(latest / "equity.csv")

    # Assert
    assert headline == job.outcome.summary.dvc_headline()
    assert headline["trials"] == FOLDS * TRIALS  # the test windows' trials (DSR count)
    assert equity.columns == ["ts", "year", "equity"]
    assert equity["equity"][-1] == pytest.approx(float(job.outcome.result.oos_equity[-1]))


def test_run_stored_walkforward_tracker_parent_run_gets_the_summary_metrics(
    job: TrackedJob,
) -> None:
    # Arrange
    summary = job.outcome.summary

    # Act
    parent = job.tracker.runs[str(summary.mlflow_run_id)]
    children = [r for r in job.tracker.runs.values() if r["parent"] == summary.mlflow_run_id]

    # Assert
    assert parent["metrics"] == summary.mlflow_metrics()
    assert parent["status"] == "FINISHED"
    assert parent["tags"]["solodesk.run"] == summary.run_id
    assert parent["tags"]["solodesk.kind"] == "walkforward"
    assert (
        json.loads(parent["texts"]["report/summary.json"])["oos"]
        == summary.model_dump(mode="json")["oos"]
    )
    assert sorted(r["name"] for r in children) == [f"fold {i}" for i in range(FOLDS)]
    assert all(r["status"] == "FINISHED" for r in children)


def test_run_stored_walkforward_without_registry_leaves_mlflow_untouched(job: TrackedJob) -> None:
    # Act
    summary = job.outcome.summary

    # Assert
    assert summary.model_version is None and job.outcome.model_version is None
    assert not job.settings.mlflow_dir.exists()


def test_walkforward_steps_one_by_one_give_the_figures_of_the_chained_job(
    job: TrackedJob,
) -> None:
    # Arrange
    settings = job.settings
    run_id = new_run_id("walkforward")
    inputs = _inputs(settings)

    # Act
    result = compute_walkforward(
        inputs, CONFIG, run_id=run_id, storage=study_storage_factory(settings)
    )
    summary = summarize(run_id, inputs, result, None)
    stored = record_walkforward(
        settings, summary, created=datetime.now(UTC), config=CONFIG, inputs=inputs,
        table=oos_table(result), html=compute_report(summary, result, inputs),
    )  # fmt: skip

    # Assert
    chained = job.outcome.summary
    assert summary.oos == chained.oos
    assert summary.trials == chained.trials
    untimed = {"seconds"}
    assert [f.model_dump(exclude=untimed) for f in summary.folds] == [
        f.model_dump(exclude=untimed) for f in chained.folds
    ]
    assert stored.record["summary"]["oos"] == chained.model_dump(mode="json")["oos"]
    assert stored.record["summary"]["report"] == str(stored.record["report"])
    store = BacktestStore.research(settings)
    assert store.table(stored, "oos").equals(store.table(store.get(chained.run_id), "oos"))


@dataclass(frozen=True)
class RegistryDesk:
    """A desk whose walk-forward and training used its own MLflow store."""

    settings: Settings
    walkforward: WalkForwardOutcome
    train: TrainResult


@pytest.fixture(scope="module")
def registry_desk(
    sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory
) -> RegistryDesk:
    settings = _settings(_desk(sample_desk, tmp_path_factory, "research-registry"))
    inputs = _inputs(settings)
    walkforward = run_stored_walkforward(settings, inputs, CONFIG)
    train = run_stored_train(settings, inputs, CONFIG, train_bars=800)
    return RegistryDesk(settings, walkforward, train)


@pytest.mark.slow
def test_run_stored_walkforward_registers_the_summary_registry_scores(
    registry_desk: RegistryDesk,
) -> None:
    # Arrange
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    summary = registry_desk.walkforward.summary

    # Act
    (version,) = ModelRegistry(tracking_uri(registry_desk.settings)).list_versions(MODEL)

    # Assert
    assert summary.model_version == version.version == 1
    assert version.scores == summary.registry_scores()
    assert version.aliases == ("challenger",)
    assert version.run_id == summary.mlflow_run_id


@pytest.mark.slow
def test_run_stored_train_latest_figures_are_the_dvc_headline(
    registry_desk: RegistryDesk,
) -> None:
    # Arrange
    latest = registry_desk.settings.research_latest_dir

    # Act
    headline = json.loads((latest / "train.json").read_text())

    # Assert
    assert headline == registry_desk.train.dvc_headline()
    assert headline["rows"] == registry_desk.train.rows == 800
    assert headline["trials"] == TRIALS
    assert registry_desk.train.last.endswith("Z")

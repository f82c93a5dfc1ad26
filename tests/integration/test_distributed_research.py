"""Scale-out by configuration: the same walk-forward on a Dask cluster and on PostgreSQL stores.

A local Dask cluster of two worker processes stands in for a remote one: the research code
reaches it only through ``Settings.dask_scheduler``, as it would a cluster on other machines.
PostgreSQL holds Optuna's studies (shared by the workers tuning one window) and, in another
database, MLflow's runs and model registry. Jobs are tiny: the second half of the sample,
two folds, a few trials of the logistic learner.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SampleDesk
from testkit.cli import REPO
from testkit.postgres import scratch_database
from testkit.services import service_missing

from core.ports import NullTracker
from core.settings import Settings
from core.timeframes import Timeframe
from pipelines.train.config import (
    Scheme,
    SplitConfig,
    StatsConfig,
    TuningConfig,
    WalkForwardConfig,
)
from services.research import (
    ResearchInputs,
    WalkForwardOutcome,
    load_research_inputs,
    run_stored_walkforward,
)

# A cluster of two worker processes and four walk-forwards (one on PostgreSQL stores).
pytestmark = pytest.mark.slow

MODEL = "EURUSD-H1-default"
FOLDS = 2
SHARED_TRIALS = 4


def _settings(home: Path, **infrastructure: str) -> Settings:
    # Every scale-out setting is given, so none leaks in from the environment running the tests.
    values: dict[str, Any] = {
        "optuna_storage": None,
        "mlflow_tracking_uri": None,
        "dask_scheduler": None,
        **infrastructure,
    }
    return Settings(home=home, **values)


def _config(*, trials: int = 2, workers_per_study: int = 1) -> WalkForwardConfig:
    return WalkForwardConfig(
        model="logistic",
        split=SplitConfig(scheme=Scheme.ROLLING, folds=FOLDS),
        tuning=TuningConfig(trials=trials, workers_per_study=workers_per_study),
        stats=StatsConfig(n_boot=200),
        seed=3,
        threads=1,
        jobs=1,
    )


def _study_trials(url: str, run_id: str) -> dict[str, list[Any]]:
    import optuna

    names = [
        s.study_name
        for s in optuna.study.get_all_study_summaries(storage=url)
        if s.study_name.startswith(f"{run_id}-")
    ]
    return {name: optuna.load_study(study_name=name, storage=url).trials for name in names}


def _window_names(run_id: str) -> set[str]:
    return {f"{run_id}-fold{i}" for i in range(FOLDS)} | {f"{run_id}-final"}


@pytest.fixture(scope="module")
def desk(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("distributed") / "home"
    shutil.copytree(sample_desk.home, home)
    return home


@pytest.fixture(scope="module")
def inputs(desk: Path) -> ResearchInputs:
    return load_research_inputs(
        _settings(desk),
        symbol="EURUSD",
        timeframe=Timeframe.H1,
        feature_set="default",
        params_path=REPO / "params.yaml",
        start=datetime(2017, 7, 1, tzinfo=UTC),
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import LocalCluster

    try:
        started = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    except (OSError, RuntimeError, TimeoutError) as exc:
        service_missing("dask", f"cannot start a local Dask cluster: {type(exc).__name__}: {exc}")
    with started:
        yield started


@pytest.fixture(scope="module")
def worker_pids(cluster: Any) -> set[int]:
    from distributed import Client

    with Client(cluster) as client:
        return set(client.run(os.getpid).values())


@dataclass(frozen=True)
class Pair:
    """One job run in this process and again on the cluster."""

    local: WalkForwardOutcome
    remote: WalkForwardOutcome
    optuna_url: str


@pytest.fixture(scope="module")
def local_and_cluster(desk: Path, inputs: ResearchInputs, cluster: Any) -> Pair:
    config = _config()
    local = run_stored_walkforward(
        _settings(desk), inputs, config, register=False, tracker=NullTracker()
    )
    remote = run_stored_walkforward(
        _settings(desk, dask_scheduler=cluster.scheduler_address),
        inputs,
        config,
        register=False,
        tracker=NullTracker(),
    )
    return Pair(local, remote, f"sqlite:///{(desk / 'optuna.db').resolve()}")


def test_walkforward_on_dask_cluster_matches_local_run(local_and_cluster: Pair) -> None:
    # Arrange
    local, remote = local_and_cluster.local.summary, local_and_cluster.remote.summary

    # Act
    local_params = [f.params for f in local.folds]
    remote_params = [f.params for f in remote.folds]

    # Assert
    assert remote.run_id != local.run_id
    # Same seeds, same trials, same fits: equal up to how a BLAS with another thread count
    # orders its sums; one position traded differently would move the Sharpe far more.
    assert remote.oos.sharpe == pytest.approx(local.oos.sharpe, rel=1e-12)
    assert remote.oos.sharpe_ci == pytest.approx(local.oos.sharpe_ci, rel=1e-12)
    assert remote.oos.n_trades == local.oos.n_trades
    assert remote_params == local_params
    assert len(remote_params) == FOLDS and all(remote_params)


def test_walkforward_on_dask_cluster_tunes_in_the_cluster_workers(
    local_and_cluster: Pair, worker_pids: set[int]
) -> None:
    # Arrange
    url = local_and_cluster.optuna_url
    remote_id = local_and_cluster.remote.summary.run_id
    local_id = local_and_cluster.local.summary.run_id

    # Act
    remote_trials = _study_trials(url, remote_id)
    local_trials = _study_trials(url, local_id)

    # Assert
    assert set(remote_trials) == _window_names(remote_id)
    remote_workers = {t.user_attrs["worker"] for ts in remote_trials.values() for t in ts}
    local_workers = {t.user_attrs["worker"] for ts in local_trials.values() for t in ts}
    assert remote_workers and remote_workers <= worker_pids
    assert os.getpid() not in remote_workers
    assert local_workers == {os.getpid()}


@dataclass(frozen=True)
class SharedTuning:
    """A job whose windows are each tuned by two cluster workers sharing a PostgreSQL study."""

    outcome: WalkForwardOutcome
    optuna_url: str


@pytest.fixture(scope="module")
def shared_tuning(desk: Path, inputs: ResearchInputs, cluster: Any) -> Iterator[SharedTuning]:
    with scratch_database("solodesk_optuna") as url:
        settings = _settings(desk, optuna_storage=url, dask_scheduler=cluster.scheduler_address)
        outcome = run_stored_walkforward(
            settings,
            inputs,
            _config(trials=SHARED_TRIALS, workers_per_study=2),
            register=False,
            tracker=NullTracker(),
        )
        yield SharedTuning(outcome, url)


@pytest.mark.postgres
def test_shared_tuning_on_postgres_each_window_study_holds_all_trials(
    shared_tuning: SharedTuning,
) -> None:
    # Arrange
    run_id = shared_tuning.outcome.summary.run_id

    # Act
    studies = _study_trials(shared_tuning.optuna_url, run_id)

    # Assert
    assert set(studies) == _window_names(run_id)
    counts = {name: len(trials) for name, trials in studies.items()}
    assert counts == dict.fromkeys(studies, SHARED_TRIALS)
    assert all(t.state.name == "COMPLETE" for trials in studies.values() for t in trials)


@pytest.mark.postgres
def test_shared_tuning_on_postgres_trials_come_from_two_workers(
    shared_tuning: SharedTuning, worker_pids: set[int]
) -> None:
    # Arrange
    run_id = shared_tuning.outcome.summary.run_id

    # Act
    studies = _study_trials(shared_tuning.optuna_url, run_id)
    workers = {name: {t.user_attrs["worker"] for t in ts} for name, ts in studies.items()}

    # Assert
    assert set().union(*workers.values()) <= worker_pids
    assert max(len(pids) for pids in workers.values()) >= 2


@pytest.mark.postgres
def test_shared_tuning_on_postgres_workers_never_repeat_a_trial(
    shared_tuning: SharedTuning,
) -> None:
    # Arrange
    run_id = shared_tuning.outcome.summary.run_id

    # Act
    studies = _study_trials(shared_tuning.optuna_url, run_id)
    drawn = {name: [tuple(sorted(t.params.items())) for t in ts] for name, ts in studies.items()}

    # Assert: the regularization strength is continuous; a repeat means two workers drew alike.
    assert drawn and all(len(set(params)) == len(params) for params in drawn.values()), drawn


@pytest.mark.postgres
def test_shared_tuning_on_postgres_summary_is_complete(shared_tuning: SharedTuning) -> None:
    # Act
    summary = shared_tuning.outcome.summary

    # Assert
    oos = summary.oos
    for key in ("sharpe", "psr", "dsr", "total_return", "max_drawdown", "hit_rate"):
        assert getattr(oos, key) is not None, key
    lo, hi = oos.sharpe_ci
    assert lo is not None and hi is not None and oos.sharpe is not None
    assert lo <= oos.sharpe <= hi
    assert [f.fold for f in summary.folds] == list(range(FOLDS))
    assert all(f.n_trials == SHARED_TRIALS and f.params for f in summary.folds)
    assert summary.trials.total == FOLDS * SHARED_TRIALS


@pytest.mark.postgres
def test_walkforward_with_postgres_tracking_registers_challenger_there(
    inputs: ResearchInputs,
    sample_desk: SampleDesk,
    copy_desk: Callable[[Path], Path],
) -> None:
    # Arrange
    home = copy_desk(sample_desk.home)
    with scratch_database("solodesk_mlflow") as url:
        settings = _settings(home, mlflow_tracking_uri=url)

        # Act
        outcome = run_stored_walkforward(settings, inputs, _config())

        # Assert
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=url, registry_uri=url)
        version = client.get_model_version_by_alias(MODEL, "challenger")
        assert int(version.version) == outcome.model_version == 1
        assert version.run_id == outcome.summary.mlflow_run_id
        run = client.get_run(str(version.run_id))
        assert run.data.metrics["oos_sharpe"] == pytest.approx(outcome.summary.oos.sharpe)
        artifacts = (home / "mlflow" / "artifacts").resolve()
        experiment = client.get_experiment(run.info.experiment_id)
        assert experiment.artifact_location == artifacts.as_uri()
        assert any(artifacts.rglob("MLmodel"))
        assert not (home / "mlflow" / "mlflow.db").exists()

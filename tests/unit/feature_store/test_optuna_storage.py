"""Optuna's study storage: SQLite under home or a shared database, one study for many workers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import optuna
import pytest
from testkit.postgres import scratch_database

from core.errors import UsageError
from core.settings import Settings
from feature_store.optuna_storage import (
    delete_study_if_exists,
    open_study,
    storage_url,
    study_storage,
)


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    return x * x


def _optimize(url: str, name: str, trials: int) -> None:
    # Runs in a spawned worker process: opens the study by URL and name like a Dask worker.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    open_study(url, name, direction="minimize").optimize(_objective, n_trials=trials)


def _two_processes_share_study(url: str) -> None:
    study = open_study(url, "shared", direction="minimize")
    worker = multiprocessing.get_context("spawn").Process(target=_optimize, args=(url, "shared", 4))

    worker.start()
    study.optimize(_objective, n_trials=4)
    worker.join(timeout=120)

    assert worker.exitcode == 0
    trials = open_study(url, "shared", direction="minimize").trials
    assert len(trials) == 8
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return storage_url(Settings(home=tmp_path / "home", optuna_storage=None))


def test_storage_url_unset_is_sqlite_file_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", optuna_storage=None)

    url = storage_url(settings)

    assert url == f"sqlite:///{(tmp_path / 'home' / 'optuna.db').resolve()}"
    assert (tmp_path / "home").is_dir()


def test_storage_url_configured_is_returned_unchanged(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, optuna_storage="postgresql://desk@db:5432/optuna")

    assert storage_url(settings) == "postgresql://desk@db:5432/optuna"


def test_study_storage_sqlite_waits_for_locks(url: str) -> None:
    storage = study_storage(url)

    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.engine_kwargs["connect_args"]["timeout"] >= 60


def test_study_storage_sqlite_writes_ahead_without_syncing_each_commit(url: str) -> None:
    # Arrange
    storage = study_storage(url)

    # Act
    with storage.engine.connect() as connection:  # type: ignore[attr-defined]
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        sync = connection.exec_driver_sql("PRAGMA synchronous").scalar()

    # Assert
    assert mode == "wal"
    assert sync == 1  # NORMAL


def test_study_storage_not_a_url_raises_usage_error() -> None:
    with pytest.raises(UsageError, match="not a database URL"):
        study_storage("data/optuna.db")


def test_open_study_twice_second_sees_first_trials(url: str) -> None:
    first = open_study(url, "lgbm-EURUSD", direction="maximize")
    first.optimize(_objective, n_trials=3)

    second = open_study(url, "lgbm-EURUSD", direction="maximize")

    assert len(second.trials) == 3
    assert second.best_value == first.best_value
    assert second.direction == optuna.study.StudyDirection.MAXIMIZE


def test_open_study_other_direction_raises_usage_error(url: str) -> None:
    open_study(url, "dir", direction="maximize")

    with pytest.raises(UsageError, match="created to maximize, not to minimize"):
        open_study(url, "dir", direction="minimize")


def test_open_study_existing_without_load_raises_usage_error(url: str) -> None:
    open_study(url, "taken", direction="minimize")

    with pytest.raises(UsageError, match="'taken' already exists"):
        open_study(url, "taken", direction="minimize", load_if_exists=False)


def test_open_study_bad_direction_raises_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match="'up'"):
        open_study(url, "s", direction="up")


def test_open_study_sampler_is_used(url: str) -> None:
    sampler = optuna.samplers.RandomSampler(seed=3)

    study = open_study(url, "seeded", direction="minimize", sampler=sampler)

    assert study.sampler is sampler


def test_open_study_sampler_of_wrong_kind_raises_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match="str is not an Optuna sampler"):
        open_study(url, "s", direction="minimize", sampler="tpe")


def test_delete_study_if_exists_true_then_false(url: str) -> None:
    open_study(url, "gone", direction="minimize").optimize(_objective, n_trials=1)

    deleted = [delete_study_if_exists(url, "gone"), delete_study_if_exists(url, "gone")]

    assert deleted == [True, False]
    assert optuna.get_all_study_names(study_storage(url)) == []


def test_sqlite_study_two_processes_optimize_one_study(url: str) -> None:
    _two_processes_share_study(url)


@pytest.mark.postgres
def test_postgres_study_two_processes_optimize_one_study() -> None:
    with scratch_database() as url:
        _two_processes_share_study(url)


@pytest.mark.postgres
def test_postgres_two_storages_same_url_see_same_trials() -> None:
    with scratch_database() as url:
        open_study(url, "pg", direction="minimize").optimize(_objective, n_trials=2)

        other = optuna.load_study(study_name="pg", storage=study_storage(url))

        assert [t.number for t in other.trials] == [0, 1]

"""Walk-forward and CPCV jobs on synthetic series: edges found where real, contracts kept."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import optuna
import pytest
from testkit.tracking import RecordingTracker

from core.errors import UsageError
from pipelines.evaluate.dataset import ResearchData
from pipelines.evaluate.splits import cpcv_n_paths
from pipelines.evaluate.summary import WalkForwardFigures
from pipelines.evaluate.walkforward import WalkForwardResult, plan_splits, run_walk_forward
from pipelines.train.config import (
    Objective,
    Scheme,
    SplitConfig,
    StatsConfig,
    TuningConfig,
    WalkForwardConfig,
)

from ._research import dataset, momentum_bars, trade

FAST = WalkForwardConfig(
    model="logistic",
    split=SplitConfig(folds=3),
    tuning=TuningConfig(trials=3, inner_folds=2),
    stats=StatsConfig(n_boot=200, candidates=()),
    threads=1,
)
# The keys of the summary's JSON before it became a typed model: a dump must keep them all.
SUMMARY_KEYS = {"scheme", "model", "oos", "folds", "trials", "mlflow_run_id", "seconds", "pbo"}
TRIAL_KEYS = {"total", "sharpe_variance", "per_fold"}
FOLD_KEYS = {
    "fold", "test_groups", "train_rows", "test_rows", "train_start", "train_end", "test_start",
    "test_end", "params", "n_trials", "sharpe", "total_return", "n", "auc", "logloss",
    "accuracy", "base_rate", "brier", "ece", "pbo", "seconds",
}  # fmt: skip


@dataclass(frozen=True)
class TrackedRun:
    """One walk-forward on the momentum series, with costs, recorded under parent ``parent``."""

    result: WalkForwardResult
    summary: WalkForwardFigures
    tracker: RecordingTracker


@pytest.fixture(scope="module")
def momentum() -> ResearchData:
    return dataset(momentum_bars(3000, seed=11, phi=0.35))


@pytest.fixture(scope="module")
def tracked(momentum: ResearchData) -> TrackedRun:
    tracker = RecordingTracker()
    result = run_walk_forward(
        momentum, FAST, trade(spread_pips=0.5), embargo=2, tracker=tracker, parent_id="parent"
    )
    return TrackedRun(result, result.summary(), tracker)


def test_run_walk_forward_planted_momentum_edge_is_found_out_of_sample(
    tracked: TrackedRun,
) -> None:
    # Act
    oos = tracked.summary.oos

    # Assert: the edge survives a half-pip spread
    assert oos.sharpe is not None and oos.sharpe > 2.0
    low, _ = oos.sharpe_ci
    assert low is not None and low > 0.0
    assert oos.psr is not None and oos.psr > 0.99
    assert oos.dsr is not None and oos.dsr <= oos.psr
    assert oos.newey_west_p is not None and oos.newey_west_p < 0.01


def test_run_walk_forward_summary_figures_are_typed_and_consistent(
    tracked: TrackedRun, momentum: ResearchData
) -> None:
    # Act
    summary = tracked.summary

    # Assert
    oos = summary.oos
    low, high = oos.sharpe_ci
    assert oos.sharpe is not None and low is not None and high is not None
    assert low <= oos.sharpe <= high
    assert summary.mlflow_run_id == "parent"
    assert [f.fold for f in summary.folds] == [0, 1, 2]
    assert summary.trials.total == 9 and summary.trials.per_fold == 3
    assert oos.n_trials == 9
    assert oos.gross.sharpe is not None and oos.gross.sharpe >= oos.sharpe
    assert summary.paths is None
    children = [r for r in tracked.tracker.runs.values() if r["parent"] == "parent"]
    assert len(children) == 3
    assert all(r["status"] == "FINISHED" for r in children)
    assert all("sharpe" in r["metrics"] for r in children)
    model = tracked.result.model
    assert model is not None
    assert model.predict_proba(momentum.X[:5]).shape == (5,)


def test_run_walk_forward_summary_json_dump_keeps_every_key_and_is_valid_json(
    tracked: TrackedRun,
) -> None:
    # Act
    dumped = tracked.summary.model_dump(mode="json")
    text = json.dumps(dumped, allow_nan=False)

    # Assert
    assert set(dumped) >= SUMMARY_KEYS
    assert set(dumped["trials"]) == TRIAL_KEYS
    assert all(set(fold) == FOLD_KEYS for fold in dumped["folds"])
    # The out-of-sample block is the engine's statistics, unchanged by the typing.
    assert json.loads(text)["oos"] == json.loads(json.dumps(tracked.result.statistics))
    assert all(fold["train_start"].endswith("Z") for fold in dumped["folds"])


def test_fold_summary_record_annualizes_the_sharpe_and_stamps_times_in_utc(
    tracked: TrackedRun,
) -> None:
    # Arrange
    fold = tracked.result.folds[0]
    per_year = tracked.result.metrics.bars_per_year

    # Act
    record = fold.record(per_year)

    # Assert
    assert record.sharpe == pytest.approx(fold.sharpe * np.sqrt(per_year))
    assert record.train_rows == fold.train_rows
    assert record.test_start == fold.test_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert record.auc == pytest.approx(fold.classification.auc)
    assert record == tracked.summary.folds[0]


def test_run_walk_forward_folds_train_only_before_their_test_window(
    tracked: TrackedRun, momentum: ResearchData
) -> None:
    # Act
    splits = plan_splits(momentum, FAST, embargo=2)

    # Assert
    for fold, split in zip(tracked.result.folds, splits, strict=True):
        assert fold.train_end < fold.test_start
        ends = momentum.label_end[split.train]
        assert ends.max() < momentum.ts[split.test[0]]
    assert tracked.result.oos_equity.shape[0] == sum(s.test.shape[0] for s in splits)


def test_run_walk_forward_no_edge_random_walk_confidence_interval_holds_zero() -> None:
    # Arrange
    data = dataset(momentum_bars(3000, seed=5, phi=0.0))

    # Act
    result = run_walk_forward(data, FAST, trade(), embargo=2)

    # Assert
    low, high = result.summary().oos.sharpe_ci
    assert low is not None and high is not None
    assert low < 0.0 < high


@pytest.mark.slow
def test_run_walk_forward_cpcv_reports_pbo_and_every_path(momentum: ResearchData) -> None:
    # Arrange
    config = FAST.model_copy(
        update={"split": SplitConfig(scheme=Scheme.CPCV, groups=4, test_groups=2)}
    )

    # Act
    summary = run_walk_forward(momentum, config, trade(), embargo=2).summary()

    # Assert
    assert summary.scheme == "cpcv"
    assert len(summary.folds) == 6
    assert summary.paths is not None and len(summary.paths) == cpcv_n_paths(4, 2)
    assert summary.pbo is not None
    assert 0.0 <= summary.pbo <= 1.0
    assert all(f.test_groups for f in summary.folds)


def test_run_walk_forward_lightgbm_with_sharpe_objective_runs(momentum: ResearchData) -> None:
    # Arrange
    config = FAST.model_copy(
        update={
            "model": "lightgbm",
            "params": {"num_boost_round": 60, "early_stopping_rounds": 10},
            "tuning": TuningConfig(trials=3, inner_folds=2, objective=Objective.SHARPE),
        }
    )

    # Act
    result = run_walk_forward(momentum, config, trade(), embargo=2)

    # Assert
    sharpe = result.summary().oos.sharpe
    assert sharpe is not None and sharpe > 0.0
    assert set(result.importance) == set(momentum.feature_names)
    assert result.folds[0].params  # tuned: the best trial's parameters


@pytest.mark.slow
def test_run_walk_forward_processes_give_the_same_result_as_one_process(
    momentum: ResearchData,
) -> None:
    # Arrange
    one = run_walk_forward(momentum, FAST, trade(), embargo=2)
    context = multiprocessing.get_context("spawn")

    # Act
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        two = run_walk_forward(momentum, FAST, trade(), embargo=2, executor=pool)

    # Assert
    np.testing.assert_array_equal(one.oos_equity, two.oos_equity)
    assert [f.params for f in one.folds] == [f.params for f in two.folds]


def _storage(url: str) -> optuna.storages.BaseStorage:
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


@pytest.mark.slow
def test_run_walk_forward_shared_study_workers_add_up_to_the_trials(
    momentum: ResearchData, tmp_path: Path
) -> None:
    # Arrange
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    config = FAST.model_copy(
        update={"tuning": TuningConfig(trials=4, inner_folds=2, workers_per_study=2)}
    )
    context = multiprocessing.get_context("spawn")

    # Act
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        result = run_walk_forward(
            momentum, config, trade(), embargo=2, storage=partial(_storage, url),
            executor=pool, job_id="shared",
        )  # fmt: skip

    # Assert
    study = optuna.load_study(study_name="shared-fold0", storage=url)
    assert len(study.trials) == 4
    assert result.summary().trials.total == 12
    workers = {t.user_attrs.get("worker") for t in study.trials if "worker" in t.user_attrs}
    assert len(workers) >= 1


def test_run_walk_forward_shared_study_without_storage_raises(momentum: ResearchData) -> None:
    # Arrange
    config = FAST.model_copy(update={"tuning": TuningConfig(trials=4, workers_per_study=2)})

    # Act / Assert
    with pytest.raises(UsageError, match="shared Optuna storage"):
        run_walk_forward(momentum, config, trade(), embargo=2)

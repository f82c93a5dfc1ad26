"""Walk-forward and CPCV jobs on synthetic series: edges found where real, contracts kept."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import optuna
import pytest

from pipelines.evaluate.splits import cpcv_n_paths
from pipelines.evaluate.walkforward import plan_splits, run_walk_forward
from pipelines.train.config import SplitConfig, StatsConfig, TuningConfig, WalkForwardConfig

from ._research import dataset, momentum_bars, trade

FAST = WalkForwardConfig(
    model="logistic",
    split=SplitConfig(folds=3),
    tuning=TuningConfig(trials=3, inner_folds=2),
    stats=StatsConfig(n_boot=200, candidates=()),
    threads=1,
)


class RecordingTracker:
    """A run tracker that keeps everything in memory."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, object]] = {}

    def start_run(
        self, name: str, *, parent_id: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        run = f"r{len(self.runs)}"
        self.runs[run] = {"name": name, "parent": parent_id, "params": {}, "metrics": {}}
        return run

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        self.runs[run_id]["params"] = dict(params)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        self.runs[run_id]["metrics"] = dict(metrics)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        return None

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        return None

    def end_run(self, run_id: str, status: Literal["FINISHED", "FAILED"] = "FINISHED") -> None:
        self.runs[run_id]["status"] = status


@pytest.fixture(scope="module")
def momentum() -> object:
    return dataset(momentum_bars(3000, seed=11, phi=0.35))


def test_run_walk_forward_planted_momentum_edge_is_found_out_of_sample(momentum: object) -> None:
    # Act
    result = run_walk_forward(momentum, FAST, trade(), embargo=2)  # type: ignore[arg-type]

    # Assert
    oos = result.summary()["oos"]
    assert oos["sharpe"] > 2.0
    assert oos["sharpe_ci"][0] > 0.0
    assert oos["psr"] > 0.99
    assert oos["dsr"] <= oos["psr"]
    assert oos["newey_west_p"] < 0.01


def test_run_walk_forward_summary_keeps_the_json_contract(momentum: object) -> None:
    # Arrange
    tracker = RecordingTracker()

    # Act
    result = run_walk_forward(
        momentum,
        FAST,
        trade(spread_pips=0.5),
        embargo=2,
        tracker=tracker,
        parent_id="parent",  # type: ignore[arg-type]
    )
    summary = json.loads(json.dumps(result.summary(), allow_nan=False))

    # Assert
    oos = summary["oos"]
    for key in ("sharpe", "psr", "dsr", "total_return", "max_drawdown", "hit_rate", "n_trades"):
        assert key in oos
    low, high = oos["sharpe_ci"]
    assert low <= oos["sharpe"] <= high
    assert summary["mlflow_run_id"] == "parent"
    assert len(summary["folds"]) == 3
    assert summary["trials"]["total"] == 9
    assert oos["n_trials"] == 9
    assert oos["gross"]["sharpe"] >= oos["sharpe"]
    children = [r for r in tracker.runs.values() if r["parent"] == "parent"]
    assert len(children) == 3
    assert all(r["status"] == "FINISHED" for r in children)
    assert result.model is not None
    assert result.model.predict_proba(momentum.X[:5]).shape == (5,)  # type: ignore[attr-defined]


def test_run_walk_forward_folds_train_only_before_their_test_window(momentum: object) -> None:
    # Act
    result = run_walk_forward(momentum, FAST, trade(), embargo=2)  # type: ignore[arg-type]
    splits = plan_splits(momentum, FAST, embargo=2)  # type: ignore[arg-type]

    # Assert
    for fold, split in zip(result.folds, splits, strict=True):
        assert fold.train_end < fold.test_start
        ends = momentum.label_end[split.train]  # type: ignore[attr-defined]
        assert ends.max() < momentum.ts[split.test[0]]  # type: ignore[attr-defined]
    assert result.oos_equity.shape[0] == sum(s.test.shape[0] for s in splits)


def test_run_walk_forward_no_edge_random_walk_confidence_interval_holds_zero() -> None:
    # Arrange
    data = dataset(momentum_bars(3000, seed=5, phi=0.0))

    # Act
    result = run_walk_forward(data, FAST, trade(), embargo=2)

    # Assert
    low, high = result.summary()["oos"]["sharpe_ci"]
    assert low < 0.0 < high


def test_run_walk_forward_cpcv_reports_pbo_and_every_path(momentum: object) -> None:
    # Arrange
    config = FAST.model_copy(update={"split": SplitConfig(scheme="cpcv", groups=4, test_groups=2)})

    # Act
    summary = run_walk_forward(momentum, config, trade(), embargo=2).summary()  # type: ignore[arg-type]

    # Assert
    assert summary["scheme"] == "cpcv"
    assert len(summary["folds"]) == 6
    assert len(summary["paths"]) == cpcv_n_paths(4, 2)
    assert summary["pbo"] is not None
    assert 0.0 <= summary["pbo"] <= 1.0
    assert all(f["test_groups"] for f in summary["folds"])


def test_run_walk_forward_lightgbm_with_sharpe_objective_runs(momentum: object) -> None:
    # Arrange
    config = FAST.model_copy(
        update={
            "model": "lightgbm",
            "params": {"num_boost_round": 60, "early_stopping_rounds": 10},
            "tuning": TuningConfig(trials=3, inner_folds=2, objective="sharpe"),
        }
    )

    # Act
    result = run_walk_forward(momentum, config, trade(), embargo=2)  # type: ignore[arg-type]

    # Assert
    assert result.summary()["oos"]["sharpe"] > 0.0
    assert set(result.importance) == set(momentum.feature_names)  # type: ignore[attr-defined]
    assert result.folds[0].params  # tuned: the best trial's parameters


def test_run_walk_forward_processes_give_the_same_result_as_one_process(
    momentum: object,
) -> None:
    # Arrange
    one = run_walk_forward(momentum, FAST, trade(), embargo=2)  # type: ignore[arg-type]
    context = multiprocessing.get_context("spawn")

    # Act
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        two = run_walk_forward(momentum, FAST, trade(), embargo=2, executor=pool)  # type: ignore[arg-type]

    # Assert
    np.testing.assert_array_equal(one.oos_equity, two.oos_equity)
    assert [f.params for f in one.folds] == [f.params for f in two.folds]


def _storage(url: str) -> optuna.storages.BaseStorage:
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def test_run_walk_forward_shared_study_workers_add_up_to_the_trials(
    momentum: object, tmp_path: Path
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
            momentum, config, trade(), embargo=2, storage=partial(_storage, url),  # type: ignore[arg-type]
            executor=pool, job_id="shared",
        )  # fmt: skip

    # Assert
    study = optuna.load_study(study_name="shared-fold0", storage=url)
    assert len(study.trials) == 4
    assert result.summary()["trials"]["total"] == 12
    workers = {t.user_attrs.get("worker") for t in study.trials if "worker" in t.user_attrs}
    assert len(workers) >= 1


def test_run_walk_forward_shared_study_without_storage_raises(momentum: object) -> None:
    # Arrange
    from core.errors import UsageError

    config = FAST.model_copy(update={"tuning": TuningConfig(trials=4, workers_per_study=2)})

    # Act / Assert
    with pytest.raises(UsageError, match="shared Optuna storage"):
        run_walk_forward(momentum, config, trade(), embargo=2)  # type: ignore[arg-type]

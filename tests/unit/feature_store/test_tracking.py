"""The MLflow run tracker: runs by id, nesting, batching, artifacts under the desk's home."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from testkit.postgres import scratch_database

from core.errors import UsageError
from core.ports import RunTracker
from core.settings import Settings
from feature_store.tracking import MlflowTracker, artifact_location, tracking_uri


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("desk"), mlflow_tracking_uri=None)


@pytest.fixture(scope="module")
def tracker(settings: Settings) -> MlflowTracker:
    # Creating the SQLite store runs MLflow's migrations (seconds): once per module.
    return MlflowTracker.for_settings(settings, "unit")


def _client(tracker: MlflowTracker) -> MlflowClient:
    return MlflowClient(tracking_uri=tracker.uri)


def test_tracking_uri_unset_is_sqlite_file_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=None)

    uri = tracking_uri(settings)

    folder = (tmp_path / "home" / "mlflow").resolve()
    assert uri == f"sqlite:///{folder}/mlflow.db"
    assert folder.is_dir()


def test_tracking_uri_configured_server_is_used_and_leaves_artifacts_to_it(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path, mlflow_tracking_uri="http://tracking.desk:5000")

    uri, artifacts = tracking_uri(settings), artifact_location(settings)

    assert uri == "http://tracking.desk:5000"
    assert artifacts is None


def test_artifact_location_database_store_is_file_uri_under_home(tmp_path: Path) -> None:
    embedded = Settings(home=tmp_path, mlflow_tracking_uri=None)
    shared_db = Settings(home=tmp_path, mlflow_tracking_uri="postgresql://desk@db:5432/mlflow")

    locations = {artifact_location(embedded), artifact_location(shared_db)}

    assert locations == {(tmp_path.resolve() / "mlflow" / "artifacts").as_uri()}


def test_tracker_implements_run_tracker_port(tracker: MlflowTracker) -> None:
    port: RunTracker = tracker

    run_id = port.start_run("port")

    assert _client(tracker).get_run(run_id).info.experiment_id == tracker.experiment_id


def test_start_run_with_parent_child_carries_parent_tag_and_name(tracker: MlflowTracker) -> None:
    parent = tracker.start_run("walk-forward", tags={"symbol": "EURUSD"})

    child = tracker.start_run("fold-0", parent_id=parent, tags={"fold": "0"})

    stored = _client(tracker).get_run(child)
    assert stored.info.run_name == "fold-0"
    assert stored.data.tags["mlflow.parentRunId"] == parent
    assert stored.data.tags["fold"] == "0"
    assert "mlflow.parentRunId" not in _client(tracker).get_run(parent).data.tags


def test_log_params_metrics_tags_round_trip_through_client(tracker: MlflowTracker) -> None:
    run_id = tracker.start_run("round-trip")

    tracker.log_params(run_id, {"learner": "lgbm", "num_leaves": 31, "lr": 0.05, "extra": None})
    tracker.log_metrics(run_id, {"sharpe": 1.25, "dsr": 0.9}, step=3)
    tracker.set_tags(run_id, {"stage": "walk-forward"})

    data = _client(tracker).get_run(run_id).data
    assert data.params == {"learner": "lgbm", "num_leaves": "31", "lr": "0.05", "extra": "None"}
    assert data.metrics == {"sharpe": 1.25, "dsr": 0.9}
    assert data.tags["stage"] == "walk-forward"
    history = _client(tracker).get_metric_history(run_id, "sharpe")
    assert [(m.value, m.step) for m in history] == [(1.25, 3)]


def test_log_metrics_nan_and_inf_skipped_others_kept(tracker: MlflowTracker) -> None:
    run_id = tracker.start_run("nan")

    tracker.log_metrics(run_id, {"ok": 0.5, "nan": float("nan"), "inf": float("inf")})

    assert _client(tracker).get_run(run_id).data.metrics == {"ok": 0.5}


def test_log_params_more_than_one_batch_and_long_value_all_stored(tracker: MlflowTracker) -> None:
    run_id = tracker.start_run("many-params")
    params: dict[str, object] = {f"p{i:03d}": i for i in range(250)}
    params["long"] = "x" * (MAX_PARAM_VAL_LENGTH + 500)

    tracker.log_params(run_id, params)

    stored = _client(tracker).get_run(run_id).data.params
    assert len(stored) == 251
    assert stored["p249"] == "249"
    assert len(stored["long"]) == MAX_PARAM_VAL_LENGTH
    assert stored["long"].startswith("xxx")


def test_end_run_failed_sets_status_and_end_time(tracker: MlflowTracker) -> None:
    run_id = tracker.start_run("failing")

    tracker.end_run(run_id, "FAILED")

    info = _client(tracker).get_run(run_id).info
    assert info.status == "FAILED"
    assert info.end_time is not None


def test_tracker_pickled_records_into_same_experiment(tracker: MlflowTracker) -> None:
    tracker.start_run("warm-up")  # the original has a live client now

    copy = pickle.loads(pickle.dumps(tracker))
    run_id = copy.start_run("from-worker")
    copy.log_metrics(run_id, {"score": 2.0})

    assert copy.experiment_id == tracker.experiment_id
    assert _client(tracker).get_run(run_id).data.metrics == {"score": 2.0}


def test_log_text_lands_under_artifact_location_and_not_in_cwd(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tracker = MlflowTracker.for_settings(settings, "artifacts-here")
    run_id = tracker.start_run("report")

    tracker.log_text(run_id, '{"sharpe": 1.0}', "report/summary.json")
    tracker.end_run(run_id)

    root = settings.mlflow_dir.resolve() / "artifacts"
    written = list(root.rglob("summary.json"))
    assert [p.read_text() for p in written] == ['{"sharpe": 1.0}']
    assert run_id in written[0].parts
    assert list(tmp_path.iterdir()) == []


def test_tracker_same_experiment_twice_reuses_id(tracker: MlflowTracker) -> None:
    again = MlflowTracker(tracker.uri, "unit")

    assert again.experiment_id == tracker.experiment_id


def test_tracker_deleted_experiment_restored(tracker: MlflowTracker) -> None:
    first = MlflowTracker(tracker.uri, "deleted-once")
    _client(tracker).delete_experiment(first.experiment_id)

    again = MlflowTracker(tracker.uri, "deleted-once")

    assert again.experiment_id == first.experiment_id
    assert _client(tracker).get_experiment(again.experiment_id).lifecycle_stage == "active"


def test_tracker_created_from_threads_at_once_agrees_on_experiment(
    tracker: MlflowTracker,
) -> None:
    barrier = threading.Barrier(4)
    ids: list[str] = []
    errors: list[BaseException] = []

    def create() -> None:
        barrier.wait()
        try:
            ids.append(MlflowTracker(tracker.uri, "raced").experiment_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(ids) == 4
    assert len(set(ids)) == 1


def test_run_url_embedded_store_is_ui_path(tracker: MlflowTracker) -> None:
    url = tracker.run_url("abc123")

    assert url == f"#/experiments/{tracker.experiment_id}/runs/abc123"


def test_tracker_empty_experiment_name_raises_usage_error(tracker: MlflowTracker) -> None:
    with pytest.raises(UsageError, match="experiment name is empty"):
        MlflowTracker(tracker.uri, "  ")


def test_tracker_unknown_uri_scheme_raises_usage_error_naming_uri() -> None:
    with pytest.raises(UsageError, match="nosuch://store"):
        MlflowTracker("nosuch://store", "unit")


def test_tracker_whole_run_writes_nothing_to_stdout(
    tracker: MlflowTracker, capfd: pytest.CaptureFixture[str]
) -> None:
    run_id = tracker.start_run("quiet")
    tracker.log_params(run_id, {"a": 1})
    tracker.log_metrics(run_id, {"m": 1.0})
    tracker.log_text(run_id, "x", "x.txt")
    tracker.end_run(run_id)

    out, _ = capfd.readouterr()

    assert out == ""
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"


@pytest.mark.postgres
def test_tracker_postgres_backend_records_run_and_artifact(tmp_path: Path) -> None:
    with scratch_database() as url:
        tracker = MlflowTracker(url, "pg", artifact_location=(tmp_path / "artifacts").as_uri())
        run_id = tracker.start_run("on-postgres")

        tracker.log_metrics(run_id, {"sharpe": 0.7})
        tracker.log_text(run_id, "done", "note.txt")
        tracker.end_run(run_id)

        run = MlflowClient(tracking_uri=url).get_run(run_id)
        assert run.data.metrics == {"sharpe": 0.7}
        assert run.info.status == "FINISHED"
        assert [p.read_text() for p in (tmp_path / "artifacts").rglob("note.txt")] == ["done"]

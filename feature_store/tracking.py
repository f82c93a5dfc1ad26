"""The MLflow adapter of the run-tracker port, and where the desk's tracking store lives.

Left unconfigured, MLflow keeps its runs and model registry in the SQLite database
``SOLODESK_HOME/mlflow/mlflow.db`` and its artifacts under ``SOLODESK_HOME/mlflow/artifacts``;
``settings.mlflow_tracking_uri`` points it at a tracking server (``http://host:5000``, which
then decides where artifacts go) or at a shared database (``postgresql://...``).

:class:`MlflowTracker` addresses every run by its id through an ``MlflowClient`` and never
touches MLflow's process-wide active run, so nested runs and several worker processes can
record into one experiment at the same time.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Self, TypeVar

from core.errors import UsageError
from core.settings import Settings

# Set before MLflow is imported: a desk machine may be offline, so MLflow must not try to
# report usage, and stdout belongs to ``--json`` output, so no "View run at" links there.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from mlflow.entities import LifecycleStage, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

# MLflow narrates at INFO/WARNING (database migrations, environment files, pickling advice);
# the commands keep stderr for their own progress, so only its errors get through.
logging.getLogger("mlflow").setLevel(logging.ERROR)

DATABASE_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"

_T = TypeVar("_T")


def run_page(experiment_id: str, run_id: str) -> str:
    """Return a run's page in the MLflow UI, relative to the UI's address."""
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def is_server_uri(uri: str) -> bool:
    """Return whether ``uri`` names a tracking server rather than a database."""
    return uri.startswith(("http://", "https://"))


def tracking_uri(settings: Settings) -> str:
    """Return the tracking URI: the configured one, else the embedded SQLite store.

    The embedded store's folder (``settings.mlflow_dir``) is created when missing.
    """
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    folder = settings.mlflow_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / DATABASE_FILE}"


def has_tracking_store(settings: Settings) -> bool:
    """Return whether the desk has a tracking store to read: a configured one, or the embedded
    SQLite file once a run has created it. Asking never creates the embedded store."""
    if settings.mlflow_tracking_uri:
        return True
    return (settings.mlflow_dir / DATABASE_FILE).is_file()


def artifact_location(settings: Settings) -> str | None:
    """Return where new experiments keep their artifacts, or None to let a server decide.

    For a database store (the embedded SQLite one, or a configured database URL) this is the
    ``file://`` URI of ``settings.mlflow_dir / "artifacts"``, so MLflow never falls back to
    ``./mlruns`` in the working directory. Machines sharing a database should share a tracking
    server instead, which owns the artifacts.
    """
    if settings.mlflow_tracking_uri and is_server_uri(settings.mlflow_tracking_uri):
        return None
    return (settings.mlflow_dir.resolve() / ARTIFACTS_DIR).as_uri()


def _truncated(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MlflowTracker:
    """Record runs of one MLflow experiment; implements :class:`core.ports.RunTracker`.

    Parameters
    ----------
    uri
        Tracking URI (see :func:`tracking_uri`).
    experiment
        Experiment name; the experiment is created (or restored, when deleted) if needed.
    artifact_location
        Where a newly created experiment keeps its artifacts (see :func:`artifact_location`);
        an existing experiment keeps its own.

    Notes
    -----
    A tracker pickles to its URI and ids only: each process that unpickles one opens its own
    client on first use.
    """

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None) -> None:
        if not experiment.strip():
            raise UsageError("MLflow experiment name is empty; give the experiment a name")
        self._uri = uri
        self._experiment = experiment
        self._artifact_location = artifact_location
        self._client: MlflowClient | None = None
        try:
            self._experiment_id = self._ensure_experiment()
        except MlflowException as exc:
            msg = (
                f"cannot open experiment {experiment!r} in the MLflow store {uri}: {exc.message}; "
                "check SOLODESK_MLFLOW_TRACKING_URI (or unset it to use the embedded store)"
            )
            raise UsageError(msg) from exc

    @classmethod
    def for_settings(cls, settings: Settings, experiment: str) -> Self:
        """Return a tracker on the desk's tracking store (see :func:`tracking_uri`)."""
        return cls(tracking_uri(settings), experiment, artifact_location(settings))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def uri(self) -> str:
        """Return the tracking URI."""
        return self._uri

    @property
    def experiment_id(self) -> str:
        """Return the id of the experiment runs are recorded in."""
        return self._experiment_id

    @property
    def client(self) -> MlflowClient:
        """Return this process's MLflow client (created on first use)."""
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self._uri, registry_uri=self._uri)
        return self._client

    def _ensure_experiment(self) -> str:
        client = self.client
        found = client.get_experiment_by_name(self._experiment)
        if found is None:
            try:
                return client.create_experiment(
                    self._experiment, artifact_location=self._artifact_location
                )
            except MlflowException:
                # Another process may have created it between the lookup and the insert.
                found = client.get_experiment_by_name(self._experiment)
                if found is None:
                    raise
        if found.lifecycle_stage == LifecycleStage.DELETED:
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    def start_run(
        self,
        name: str,
        *,
        parent_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Open a run named ``name`` (a child of ``parent_id`` when given) and return its id."""
        run_tags = {
            key: _truncated(str(value), MAX_TAG_VAL_LENGTH) for key, value in (tags or {}).items()
        }
        if parent_id is not None:
            run_tags[MLFLOW_PARENT_RUN_ID] = parent_id
        run = self.client.create_run(self._experiment_id, tags=run_tags, run_name=name)
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        """Record parameters as text, cut to MLflow's length limit, in as few calls as allowed."""
        entries = [
            Param(key, _truncated(str(value), MAX_PARAM_VAL_LENGTH))
            for key, value in params.items()
        ]
        for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=chunk, synchronous=True)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Record metrics at ``step`` (0 when not given); NaN and infinite values are skipped."""
        now = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), now, step or 0)
            for key, value in metrics.items()
            if math.isfinite(float(value))
        ]
        for chunk in _chunks(entries, MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=chunk, synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on a run, cut to MLflow's length limit."""
        entries = [
            RunTag(key, _truncated(str(value), MAX_TAG_VAL_LENGTH)) for key, value in tags.items()
        ]
        for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=chunk, synchronous=True)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Store ``text`` as the run's artifact ``artifact_file`` (e.g. ``report/summary.json``)."""
        self.client.log_text(run_id, text, artifact_file)

    def end_run(self, run_id: str, status: Literal["FINISHED", "FAILED"] = "FINISHED") -> None:
        """Close a run with ``status``."""
        self.client.set_terminated(run_id, status=status)

    def run_url(self, run_id: str) -> str:
        """Return the run's page in the MLflow UI.

        A full URL for a tracking server; for a database store the part after the UI's address
        (``make mlflow`` serves it at ``http://127.0.0.1:5000/``).
        """
        page = run_page(self._experiment_id, run_id)
        if is_server_uri(self._uri):
            return f"{self._uri.rstrip('/')}/{page}"
        return page

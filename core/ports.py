"""Ports: the protocols that adapters outside ``core`` implement and pipelines receive.

A pipeline never imports a tracking library; it is handed an object with these methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol


class RunTracker(Protocol):
    """Where an experiment's runs, parameters, metrics and artifacts are recorded.

    Every method is required. Runs are addressed by the id :meth:`start_run` returns, so one
    tracker serves nested runs and several processes at once. The MLflow adapter is
    :class:`feature_store.tracking.MlflowTracker`; :class:`NullTracker` records nothing.
    """

    def start_run(
        self,
        name: str,
        *,
        parent_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Open a run (a child of ``parent_id`` when given) and return its id."""
        ...

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        """Record parameters (values are stored as text)."""
        ...

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Record metrics; NaN and infinite values are skipped."""
        ...

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on a run."""
        ...

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Store ``text`` as the artifact ``artifact_file`` (e.g. ``report/summary.json``)."""
        ...

    def end_run(self, run_id: str, status: Literal["FINISHED", "FAILED"] = "FINISHED") -> None:
        """Close a run."""
        ...


class NullTracker:
    """A :class:`RunTracker` that records nothing and hands out numbered ids."""

    def __init__(self) -> None:
        self._count = 0

    def start_run(
        self,
        name: str,
        *,
        parent_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Return a new id."""
        self._count += 1
        return f"run-{self._count}"

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        """Record nothing."""

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Record nothing."""

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Record nothing."""

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Record nothing."""

    def end_run(self, run_id: str, status: Literal["FINISHED", "FAILED"] = "FINISHED") -> None:
        """Record nothing."""

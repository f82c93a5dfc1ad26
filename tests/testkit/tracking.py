"""A run tracker that keeps everything in memory, for tests of what a job records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal


class RecordingTracker:
    """A :class:`core.ports.RunTracker` keeping every run's parameters, metrics, tags, texts
    and status in ``runs`` (by run id, in the order runs started)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}

    def start_run(
        self, name: str, *, parent_id: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        """Open a run and return its id (``run-0``, ``run-1``, ...)."""
        run = f"run-{len(self.runs)}"
        self.runs[run] = {"name": name, "parent": parent_id, "tags": dict(tags or {}),
                          "params": {}, "metrics": {}, "texts": {}, "status": None}  # fmt: skip
        return run

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        """Keep the parameters."""
        self.runs[run_id]["params"].update(params)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Keep the metrics."""
        self.runs[run_id]["metrics"].update(metrics)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Keep the tags."""
        self.runs[run_id]["tags"].update(tags)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Keep the text under its artifact name."""
        self.runs[run_id]["texts"][artifact_file] = text

    def end_run(self, run_id: str, status: Literal["FINISHED", "FAILED"] = "FINISHED") -> None:
        """Keep the status the run ended with."""
        self.runs[run_id]["status"] = status

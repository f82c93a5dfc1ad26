"""What every flow shares: the two kinds of task, the store's concurrency limit, artifacts.

Tasks are the services' steps and hold no logic of their own. An **I/O task** (reading sources,
writing the store, the tracker, the registry, reports) is retried with exponential backoff,
unless it failed on bad input (a :class:`~core.errors.UsageError` is not retried: it would fail
the same way); a **compute task** is never retried. Neither persists its result: the services'
stores are the record, and their inputs (frames, fitted models) are not hashable into cache
keys. Where two runs would fight over one store, a flow holds the global concurrency limit
:data:`STORE_LIMIT` (one slot) around the writing steps; ``solodesk serve`` creates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.tasks import exponential_backoff

from core.errors import UsageError
from core.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])

#: Global concurrency limit (one slot) held around steps that write the bar or feature store.
STORE_LIMIT = "solodesk-store"
#: Attempts after the first for an I/O task, and the backoff's first delay in seconds.
IO_RETRIES = 3
IO_BACKOFF = 2.0


def _retry_unless_bad_input(task: Any, task_run: Any, state: Any) -> bool:
    """Retry an I/O step unless it failed on input the caller must fix."""
    try:
        state.result()
    except UsageError:
        return False
    except Exception:  # any other failure of an I/O step may pass on a second try
        return True
    return False


def io_task(fn: F | None = None, *, name: str | None = None, backoff: float = IO_BACKOFF) -> Any:
    """Make ``fn`` an I/O task: retried ``IO_RETRIES`` times with exponential backoff."""

    def wrap(inner: F) -> Any:
        return task(
            name=name or inner.__name__,
            retries=IO_RETRIES,
            retry_delay_seconds=exponential_backoff(backoff_factor=backoff),
            retry_condition_fn=_retry_unless_bad_input,
            cache_policy=NO_CACHE,
            persist_result=False,
        )(inner)

    return wrap(fn) if fn is not None else wrap


def compute_task(fn: F | None = None, *, name: str | None = None) -> Any:
    """Make ``fn`` a compute task: pure work on loaded inputs, never retried."""

    def wrap(inner: F) -> Any:
        return task(
            name=name or inner.__name__, retries=0, cache_policy=NO_CACHE, persist_result=False
        )(inner)

    return wrap(fn) if fn is not None else wrap


@contextmanager
def store_writes() -> Iterator[None]:
    """Hold the store's concurrency slot (a no-op where the limit does not exist)."""
    with concurrency(STORE_LIMIT, occupy=1, strict=False):
        yield


def desk(home: str | None = None) -> Settings:
    """Return the desk's settings (``home`` overrides ``SOLODESK_HOME``)."""
    return load_settings(home=home) if home else load_settings()


def artifact_key(*parts: str) -> str:
    """Return an artifact key: lowercase letters, digits and dashes."""
    text = "-".join(parts).lower()
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")[:100]


def markdown(key: str, body: str, description: str) -> None:
    """Attach a markdown artifact to the running flow."""
    create_markdown_artifact(markdown=body, key=artifact_key(key), description=description)


def table(key: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
    """Attach a table artifact (one row per mapping) to the running flow."""
    create_table_artifact(
        table=[dict(r) for r in rows], key=artifact_key(key), description=description
    )


def link(key: str, target: str, text: str) -> None:
    """Attach a link artifact (a report page: ``file://`` for a local path)."""
    create_link_artifact(link=target, link_text=text, key=artifact_key(key))


def md_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Return rows as a markdown table (the keys of the first row are the columns)."""
    if not rows:
        return "_nothing_"
    columns = list(rows[0])
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |\n" for r in rows)
    return head + body


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")

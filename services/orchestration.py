"""The desk's Prefect server: which one it uses, starting one on loopback, serving deployments.

:func:`prefect_api` says which server the desk uses: the ``prefect_api_url`` setting, else
``PREFECT_API_URL``, else none (one is started). :func:`start_server` starts
``prefect server start`` on the given host and port with ``PREFECT_HOME`` under
``SOLODESK_HOME/prefect`` (its SQLite database there, or PostgreSQL when
``prefect_database_url`` is set) and waits until it answers its health check.
:func:`serve_deployments` registers deployments (``solodesk serve`` gives every one of
:func:`flows.deployments.deployments`) with their schedules, creates the global concurrency
limits they hold, and runs their flows from this one process until it is stopped.

The reads (``solodesk flows runs`` and the dashboard): :func:`read_api` is the server they ask
(the configured one, else where ``solodesk serve`` starts one); :func:`flow_runs` lists the
latest flow runs with their states, :func:`deployment_schedules` the deployments with their
schedules. Each asks the health check first with a short timeout and, when nothing answers,
returns at once with ``answered`` False and a message naming ``solodesk serve``, rather than
waiting on Prefect's client. :data:`SCHEDULED` maps each scheduled deployment to its cron
setting in ``[schedules]``; :func:`configured_schedules` reads them without a server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from core.errors import SolodeskError, UsageError
from core.settings import Settings
from core.times import iso_z

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

#: Seconds a started server may take to answer its health check (minutes on a loaded machine).
HEALTH_TIMEOUT = 300.0
#: Where ``solodesk serve`` starts a server when none is configured: its API address.
DEFAULT_API = "http://127.0.0.1:4200/api"
#: Seconds a health check waits for an answer before it takes the server for absent.
CHECK_TIMEOUT = 2.0
#: Seconds one request of a read may take once the server has answered its health check.
READ_REQUEST_TIMEOUT = 10.0
#: Each scheduled deployment (``<flow>/<purpose>``) and the ``[schedules]`` setting holding its
#: cron string; every other deployment runs on request only.
SCHEDULED = {
    "ingest/drop-folder": "ingest_drop_folder",
    "retrain/weekly": "retrain_weekly",
    "store-live-bars/daily": "report_daily",
    "report/daily": "report_daily",
}


@dataclass
class PrefectServer:
    """A Prefect server the desk uses: its UI address, and the process when this one started it."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def api(self) -> str:
        """Return the API address (``<url>/api``)."""
        return f"{self.url}/api"

    def stop(self) -> None:
        """Stop the server if this process started it (SIGTERM, then SIGKILL after 20 s)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def prefect_api(settings: Settings) -> str | None:
    """Return the configured Prefect API address (the setting, else ``PREFECT_API_URL``)."""
    return settings.prefect_api_url or os.environ.get("PREFECT_API_URL") or None


def healthy(api: str, timeout: float = CHECK_TIMEOUT) -> bool:
    """Return whether the Prefect API at ``api`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api.rstrip('/')}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_env(settings: Settings) -> dict[str, str]:
    """Return the environment of a Prefect server the desk starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(settings.prefect_dir.resolve())
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT"] = "false"
    if settings.prefect_database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = settings.prefect_database_url
    return env


def start_server(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 4200,
    *,
    timeout: float = HEALTH_TIMEOUT,
    on_wait: Callable[[float], None] | None = None,
) -> PrefectServer:
    """Start ``prefect server start`` and wait until it is healthy.

    Raises
    ------
    UsageError
        If the port is taken by something that is not a healthy Prefect server.
    SolodeskError
        If the server exits or does not answer within ``timeout`` seconds (its log is named).
    """
    url = f"http://{host}:{port}"
    if healthy(f"{url}/api"):
        return PrefectServer(url)  # already running there: use it, never stop it
    settings.prefect_dir.mkdir(parents=True, exist_ok=True)
    log = settings.prefect_dir / "server.log"
    prefect = Path(sys.executable).parent / "prefect"
    command = [str(prefect) if prefect.exists() else "prefect", "server", "start",
               "--host", host, "--port", str(port)]  # fmt: skip
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command, env=server_env(settings), stdout=sink, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    server = PrefectServer(url, process, log)
    started = time.monotonic()
    while not healthy(server.api):
        waited = time.monotonic() - started
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            if "address already in use" in tail.lower():
                raise UsageError(f"port {port} on {host} is taken: give --port")
            raise SolodeskError(f"the Prefect server exited ({process.returncode}); see {log}")
        if waited > timeout:
            server.stop()
            raise SolodeskError(f"the Prefect server did not answer in {timeout:.0f} s; see {log}")
        if on_wait is not None:
            on_wait(waited)
        time.sleep(0.25)
    return server


@contextmanager
def using(api: str) -> Iterator[None]:
    """Point this process's Prefect client at ``api``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        yield


def ensure_limit(name: str, slots: int = 1) -> None:
    """Create a global concurrency limit of ``slots`` slots unless one of that name exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=slots)
            )
        except ObjectAlreadyExists:
            return


def serve_deployments(api: str, deployments: Sequence[Any], limits: Sequence[str] = ()) -> None:
    """Register ``deployments`` on the server at ``api`` and run them until stopped."""
    from prefect import serve

    with using(api):
        for name in limits:
            ensure_limit(name)
        serve(*deployments, print_starting_message=False)


# -- reads -----------------------------------------------------------------------------------


def read_api(settings: Settings) -> str:
    """Return the Prefect API the desk's reads and requests go to: the configured one
    (:func:`prefect_api`), else where ``solodesk serve`` starts its server."""
    return prefect_api(settings) or DEFAULT_API


def no_server(api: str) -> str:
    """Return the message for a Prefect API that does not answer, naming the command to run."""
    return f"no Prefect server answers at {api}: start one with solodesk serve"


def _unanswered(api: str, error: Exception) -> str:
    """Return the message for a Prefect server that answered its health check but not a read."""
    return f"the Prefect server at {api} did not answer ({type(error).__name__}: {error})"


class FlowRunRow(BaseModel):
    """One flow run as ``flows runs`` lists it (its ``--json`` line): the flow, the deployment
    (``-`` for a run started without one), the run's name, its state, when it started
    (ISO-8601 UTC with Z, None before it starts) and its run time in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flow: str
    deployment: str
    run: str
    state: str
    start: str | None
    seconds: float


class ScheduleRow(BaseModel):
    """One schedule of a deployment: its cron string in ``timezone``; ``active`` False when the
    schedule or the deployment is paused on the server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment: str
    cron: str
    timezone: str
    active: bool = True


class FlowRuns(BaseModel):
    """The latest flow runs of the server at ``api``; ``answered`` False (and ``message``
    saying so) when no server answered there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api: str
    answered: bool
    message: str = ""
    runs: tuple[FlowRunRow, ...] = ()


class Deployments(BaseModel):
    """The deployments the server at ``api`` holds and their schedules; ``answered`` False
    (and ``message`` saying so) when no server answered there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api: str
    answered: bool
    message: str = ""
    deployments: tuple[str, ...] = ()
    schedules: tuple[ScheduleRow, ...] = ()


@contextmanager
def reading(api: str) -> Iterator[SyncPrefectClient]:
    """Yield a Prefect client on ``api`` whose requests time out after
    :data:`READ_REQUEST_TIMEOUT` seconds and are not retried."""
    from prefect.client.orchestration import get_client
    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    quick = {
        PREFECT_API_URL: api,
        PREFECT_API_REQUEST_TIMEOUT: READ_REQUEST_TIMEOUT,
        PREFECT_CLIENT_MAX_RETRIES: 0,
    }
    with temporary_settings(quick), get_client(sync_client=True) as client:
        yield client


def flow_runs(settings: Settings, limit: int = 20, *, timeout: float = CHECK_TIMEOUT) -> FlowRuns:
    """Return the latest ``limit`` flow runs that started or ended (not the schedule's future
    ones), newest first, from the desk's Prefect server.

    The health check waits ``timeout`` seconds; with no answer the result says so at once.
    """
    api = read_api(settings)
    if not healthy(api, timeout):
        return FlowRuns(api=api, answered=False, message=no_server(api))
    import httpx
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    started = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED, StateType.PENDING])
        )
    )
    try:
        with reading(api) as client:
            found = client.read_flow_runs(
                flow_run_filter=started, sort=FlowRunSort.START_TIME_DESC, limit=limit
            )
            flows = {f.id: f.name for f in client.read_flows()}
            deployments = {d.id: d.name for d in client.read_deployments()}
    except httpx.HTTPError as exc:
        return FlowRuns(api=api, answered=False, message=_unanswered(api, exc))
    rows = tuple(
        FlowRunRow(
            flow=flows.get(r.flow_id, "?"),
            deployment=deployments.get(r.deployment_id, "-") if r.deployment_id else "-",
            run=r.name,
            state=(r.state.name or "-") if r.state else "-",
            start=iso_z(r.start_time) if r.start_time else None,
            seconds=round(r.total_run_time.total_seconds(), 1),
        )
        for r in found
    )
    return FlowRuns(api=api, answered=True, runs=rows)


def deployment_schedules(settings: Settings, *, timeout: float = CHECK_TIMEOUT) -> Deployments:
    """Return every deployment on the desk's Prefect server (``<flow>/<purpose>``, sorted) and
    the schedules of the scheduled ones.

    The health check waits ``timeout`` seconds; with no answer the result says so at once.
    """
    api = read_api(settings)
    if not healthy(api, timeout):
        return Deployments(api=api, answered=False, message=no_server(api))
    import httpx

    try:
        with reading(api) as client:
            flows = {f.id: f.name for f in client.read_flows()}
            found = client.read_deployments()
    except httpx.HTTPError as exc:
        return Deployments(api=api, answered=False, message=_unanswered(api, exc))
    names: list[str] = []
    schedules: list[ScheduleRow] = []
    for deployment in found:
        name = f"{flows.get(deployment.flow_id, '?')}/{deployment.name}"
        names.append(name)
        for item in deployment.schedules:
            schedule = item.schedule
            cron = getattr(schedule, "cron", None)
            interval = getattr(schedule, "interval", None)
            schedules.append(
                ScheduleRow(
                    deployment=name,
                    cron=str(cron) if cron is not None else f"every {interval}",
                    timezone=str(getattr(schedule, "timezone", None) or "UTC"),
                    active=bool(item.active) and not deployment.paused,
                )
            )
    return Deployments(
        api=api,
        answered=True,
        deployments=tuple(sorted(names)),
        schedules=tuple(sorted(schedules, key=lambda r: r.deployment)),
    )


def configured_schedules(settings: Settings) -> tuple[ScheduleRow, ...]:
    """Return the schedules ``solodesk serve`` gives the scheduled deployments
    (:data:`SCHEDULED`), read from ``[schedules]``: cron strings in its time zone."""
    section = settings.schedules
    return tuple(
        ScheduleRow(deployment=name, cron=str(getattr(section, field)), timezone=section.timezone)
        for name, field in SCHEDULED.items()
    )

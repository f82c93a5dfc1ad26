"""The desk's Prefect server: which one it uses, starting one on loopback, serving deployments.

:func:`prefect_api` says which server the desk uses: the ``prefect_api_url`` setting, else
``PREFECT_API_URL``, else none (one is started). :func:`start_server` starts
``prefect server start`` on the given host and port with ``PREFECT_HOME`` under
``SOLODESK_HOME/prefect`` (its SQLite database there, or PostgreSQL when
``prefect_database_url`` is set) and waits until it answers its health check.
:func:`serve_deployments` registers deployments (``solodesk serve`` gives every one of
:func:`flows.deployments.deployments`) with their schedules, creates the global concurrency
limits they hold, and runs their flows from this one process until it is stopped.
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
from typing import Any

from core.errors import SolodeskError, UsageError
from core.settings import Settings

#: Seconds a started server may take to answer its health check (minutes on a loaded machine).
HEALTH_TIMEOUT = 300.0


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


def healthy(api: str, timeout: float = 2.0) -> bool:
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

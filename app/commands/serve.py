"""``solodesk serve``: the Prefect server and every deployment, from one process."""

from __future__ import annotations

from typing import Annotated

import typer

from app.output import err, out


def serve(
    host: Annotated[str, typer.Option(help="Address a started server binds.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port a started server binds.")
    ] = 4200,
) -> None:
    """Serve every deployment (ingest/manual, retrain/weekly, report/daily, ...) with its schedule.

    Uses the Prefect server of the prefect_api_url setting or PREFECT_API_URL; with none, starts
    one on HOST:PORT with its database under SOLODESK_HOME/prefect and waits until it is healthy.
    Ctrl-C stops serving, and the server if this command started it.
    """
    from core.settings import load_settings
    from flows.common import STORE_LIMIT
    from flows.deployments import deployments
    from services.orchestration import PrefectServer, prefect_api, serve_deployments, start_server

    settings = load_settings()
    configured = prefect_api(settings)
    console = err()
    if configured is not None:
        server = PrefectServer(configured.removesuffix("/api").rstrip("/"))
        console.print(f"using the Prefect server at {configured}")
    else:
        with console.status(f"starting a Prefect server on {host}:{port}") as status:
            server = start_server(
                settings, host, port,
                on_wait=lambda s: status.update(f"waiting for the Prefect server ({s:.0f} s)"),
            )  # fmt: skip
    out().print(f"Prefect UI: {server.url}  (API: {server.api})")
    console.print("serving every deployment; Ctrl-C stops")
    try:
        serve_deployments(server.api, deployments(settings), limits=(STORE_LIMIT,))
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()

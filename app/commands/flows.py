"""``solodesk flows ...``: start a deployment's run through the Prefect API, list the runs."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any, Optional, cast

import typer

from app.options import JsonOpt
from app.output import emit_all, err, out, print_table
from core.errors import SolodeskError, UsageError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

app = typer.Typer(help="Prefect runs: start a deployment, list flow runs.", no_args_is_help=True)


def _api(wait: float = 0.0) -> str:
    from core.settings import load_settings
    from services.orchestration import healthy, no_server, read_api

    api = read_api(load_settings())
    deadline = time.monotonic() + wait
    while not healthy(api):
        if time.monotonic() >= deadline:
            raise UsageError(no_server(api))
        time.sleep(0.5)
    return api


def _deployment_ready(name: str, wait: float) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + wait
    with get_client(sync_client=True) as client:
        while True:
            try:
                client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                if time.monotonic() >= deadline:
                    msg = f"no deployment {name!r} on the server: is solodesk serve running?"
                    raise UsageError(msg) from None
                time.sleep(0.5)


def _parameters(pairs: list[str] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected key=value (value as JSON or text)")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


@app.command("run")
def run(
    deployment: Annotated[str, typer.Argument(help="<flow>/<purpose>, e.g. ingest/manual.")],
    param: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--param", help='key=value, repeatable; JSON values: sources=["a.csv"].'),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the run to end.")] = 3600,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the server and the deployment to appear.")
    ] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Start a run of a deployment through the Prefect API, wait for it, print its results."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    from services.orchestration import using

    api = _api(wait)
    parameters = _parameters(param)
    with using(api):
        _deployment_ready(deployment, wait)
        with err().status(f"running {deployment}"):
            flow_run = cast(
                "FlowRun", run_deployment(deployment, parameters=parameters, timeout=timeout)
            )
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])
                )
            )
    state = flow_run.state
    name = state.name if state is not None else "unknown"
    if as_json:
        emit_all([{"deployment": deployment, "flow_run": flow_run.name, "state": name,
                   "artifacts": [a.key for a in artifacts]}])  # fmt: skip
    else:
        out().print(f"{deployment}: flow run {flow_run.name} {name}")
        for artifact in artifacts:
            if artifact.type == "markdown":
                out().print(str(artifact.data), markup=False, highlight=False)
    if state is None or not state.is_completed():
        raise SolodeskError(
            f"{deployment} run {flow_run.name} ended {name}: {state.message if state else ''}"
        )


@app.command("runs")
def runs(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List the latest flow runs (started or ended) with their deployment, state and duration."""
    from core.settings import load_settings
    from services.orchestration import flow_runs

    found = flow_runs(load_settings(), limit)
    if not found.answered:
        raise UsageError(found.message)
    if as_json:
        emit_all(found.runs)
        return
    columns = ("flow", "deployment", "run", "state", "start", "seconds")
    print_table(
        f"{len(found.runs)} flow runs",
        columns,
        (
            [str(v) if (v := getattr(r, c)) is not None else "-" for c in columns]
            for r in found.runs
        ),
        right=("seconds",),
    )

"""The Controls page: what can be acted on, what was done, and the actions themselves.

Session controls (pause, resume, flatten, reset a risk latch, halt) are stored in the runtime's
``controls`` table with who asked and when; a running loop applies them between bars and
notifies, and a session at rest gets what can be applied at once (notified here). A retrain or a
backtest is asked of the Prefect server that serves the deployments (``solodesk serve``); every
request, run or refused, is stored in ``flow_requests`` and notified.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from core.errors import UsageError
from core.ports import Notice, NoticeKind
from core.settings import Settings
from core.times import utc_now
from feature_store.state import ControlRequest, FlowRequest, SessionRecord, StateDB
from services.access import controls_enabled
from services.orchestration import healthy, no_server, read_api, using

#: What the page may ask of a session.
SessionAction = Literal["pause", "resume", "flatten", "reset", "halt"]
#: The deployments the page may start, as ``solodesk serve`` names them.
RETRAIN = "retrain/weekly"
BACKTEST = "backtest/manual"


class ControlsView(BaseModel):
    """What the Controls page shows: the sessions, the controls and flow requests so far."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    login_enabled: bool
    sessions: tuple[SessionRecord, ...]
    controls: tuple[ControlRequest, ...]
    flow_requests: tuple[FlowRequest, ...]
    prefect_api: str


def controls_view(settings: Settings) -> ControlsView:
    """Return the sessions (newest first) and every control and flow request (newest first)."""
    reader = StateDB.reader(settings)
    sessions: list[SessionRecord] = []
    controls: list[ControlRequest] = []
    flows: list[FlowRequest] = []
    if reader is not None:
        with reader:
            sessions, controls, flows = reader.sessions(), reader.controls(), reader.flow_requests()
    return ControlsView(
        login_enabled=controls_enabled(settings),
        sessions=tuple(reversed(sessions)),
        controls=tuple(reversed(controls)),
        flow_requests=tuple(reversed(flows)),
        prefect_api=read_api(settings),
    )


def _notify(settings: Settings, title: str, body: str, session: str = "") -> None:
    from services.notify import open_notifier

    notifier = open_notifier(settings)
    notifier.notify(
        Notice(kind=NoticeKind.CONTROL, title=title, body=body, session=session, ts=utc_now())
    )
    notifier.close(timeout=settings.notify.timeout)


def act_on_session(
    settings: Settings,
    action: SessionAction,
    session: str,
    *,
    who: str,
    why: str = "",
    flatten: bool = False,
) -> ControlRequest:
    """Store a control for ``session`` on behalf of ``who``; return it as stored.

    A running loop applies it between bars and notifies; a session at rest gets what can be
    applied to it at once, and the notice is sent from here.

    Raises
    ------
    UsageError
        If there is no such session, or no name of who acts.
    """
    from services.runtime import request_control

    if not who.strip():
        raise UsageError("a control needs the name of who asks for it")
    request = request_control(
        settings, action, session=session, who=who, why=why or "from the dashboard",
        flatten=flatten,
    )  # fmt: skip
    if request.applied is not None:
        _notify(
            settings, f"control: {action}", f"{request.result} (by {who}: {request.why})", session
        )
    return request


def start_flow(
    settings: Settings,
    deployment: str,
    parameters: dict[str, Any] | None = None,
    *,
    who: str,
    why: str = "",
) -> FlowRequest:
    """Ask the Prefect server to run ``deployment`` with ``parameters``; record and notify it.

    The run is created and left to the server's runner (``solodesk serve``); this does not wait
    for it. With no server answering, or no such deployment, the request is recorded as
    refused, saying why, and nothing runs.

    Raises
    ------
    UsageError
        If there is no name of who acts.
    """
    if not who.strip():
        raise UsageError("a flow request needs the name of who asks for it")
    api = read_api(settings)
    params = dict(parameters or {})
    run_name: str | None = None
    run_id: str | None = None
    if not healthy(api):
        outcome = f"refused: {no_server(api)}"
    else:
        try:
            run_name, run_id, outcome = _run_deployment(api, deployment, params)
        except UsageError as exc:
            outcome = f"refused: {exc}"
    request = FlowRequest(
        deployment=deployment, parameters=params, who=who, why=why or "from the dashboard",
        requested=utc_now(), flow_run=run_name, flow_run_id=run_id, outcome=outcome,
    )  # fmt: skip
    with StateDB.open(settings) as db:
        ident = db.record_flow_request(request)
    started = f"flow run {run_name} of {deployment}" if run_name else f"{deployment} not run"
    _notify(settings, f"flow requested: {deployment}", f"{started}: {outcome} (by {who})")
    return request.model_copy(update={"id": ident})


def _run_deployment(api: str, deployment: str, parameters: dict[str, Any]) -> tuple[str, str, str]:
    """Create a run of ``deployment`` on the server at ``api``; return its name, id and state."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    with using(api):
        try:
            flow_run: Any = run_deployment(deployment, parameters=parameters, timeout=0)
        except ObjectNotFound:
            msg = f"no deployment {deployment} on the server at {api}; solodesk serve registers it"
            raise UsageError(msg) from None
    state = flow_run.state.name if flow_run.state is not None else "created"
    return str(flow_run.name), str(flow_run.id), state

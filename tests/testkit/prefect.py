"""Prefect API stand-ins for the reads' unit tests: a closed loopback port, and a small HTTP
endpoint answering the health check and the filters the reads post, with objects of Prefect's
own schemas. The reads are also tested against a real Prefect server
(``tests/integration/test_prefect.py``)."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: When the stand-in's one flow run started.
T0 = datetime(2024, 1, 2, 9, tzinfo=UTC)


def closed_api() -> str:
    """Return a Prefect API address on a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


class FakePrefect:
    """A Prefect API on loopback: healthy, one flow ``ingest`` with a scheduled deployment
    ``drop-folder`` and a manual one, and one completed run of the manual deployment."""

    def __init__(self) -> None:
        from prefect.client.schemas.objects import Flow, FlowRun, State, StateType
        from prefect.client.schemas.responses import DeploymentResponse
        from prefect.client.schemas.schedules import CronSchedule

        flow = Flow(id=uuid.uuid4(), name="ingest")
        cron = CronSchedule(cron="0 * * * *", timezone="America/New_York")
        scheduled = DeploymentResponse(
            id=uuid.uuid4(), name="drop-folder", flow_id=flow.id, paused=False,
            schedules=[{"id": str(uuid.uuid4()), "deployment_id": str(uuid.uuid4()),
                        "schedule": cron.model_dump(mode="json"), "active": True}],
        )  # fmt: skip
        manual = DeploymentResponse(id=uuid.uuid4(), name="manual", flow_id=flow.id)
        run = FlowRun(
            id=uuid.uuid4(), name="brave-otter", flow_id=flow.id, deployment_id=manual.id,
            state=State(type=StateType.COMPLETED, name="Completed"), start_time=T0,
            total_run_time=timedelta(seconds=12.34),
        )  # fmt: skip
        answers = {
            "/flow_runs/filter": [run.model_dump(mode="json")],
            "/flows/filter": [flow.model_dump(mode="json")],
            "/deployments/filter": [d.model_dump(mode="json") for d in (scheduled, manual)],
        }

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: object, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.endswith("/health"):
                    self._answer(True)
                else:
                    self._answer({"detail": "not found"}, 404)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.removeprefix("/api")
                self._answer(*((answers[path],) if path in answers else ({"detail": "?"}, 404)))

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.api = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        """Stop answering."""
        self.server.shutdown()
        self.server.server_close()

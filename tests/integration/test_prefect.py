"""Prefect: a real server, the deployments ``solodesk serve`` registers, runs through the API.

One Prefect 3.9 server (SQLite under a temporary ``PREFECT_HOME``) serves the whole module; a
fresh one can take half a minute to answer its health check on this machine, so it is started
once. ``solodesk serve`` runs as a subprocess against it on a copy of the sample desk, and the
test process talks to the server through Prefect's client:

- every deployment is registered under ``<flow>/<purpose>`` with its schedule;
- a run of ``ingest/manual`` triggered through the API with parameters completes, stores the
  bars and carries its artifacts;
- an I/O step that fails is retried and a compute step that fails is not;
- a server with its database in PostgreSQL (local PostgreSQL; skipped where absent) records
  flow runs there.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import SampleDesk
from testkit.cli import solodesk_command, solodesk_env
from testkit.files import hourly_bars, mt4_csv, utc, write

from core.settings import Settings
from core.timeframes import Timeframe
from feature_store.series import load_series
from services.orchestration import PrefectServer, start_server, using

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("prefect-server") / "home"
    started = start_server(Settings(home=home), "127.0.0.1", _free_port(), timeout=600)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def served(
    server: PrefectServer, sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A copy of the sample desk whose deployments a ``solodesk serve`` process serves."""
    import shutil

    root = tmp_path_factory.mktemp("served")
    home = root / "home"
    shutil.copytree(sample_desk.home, home)
    env = solodesk_env(home, PREFECT_API_URL=server.api, PREFECT_RUNNER_POLL_FREQUENCY="1")
    log = (root / "serve.log").open("wb")
    process = subprocess.Popen(
        [*solodesk_command(), "serve"], cwd=Path(__file__).resolve().parents[2], env=env,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _until(lambda: len(_deployments(server)) >= 12, 180, "the deployments", process, root)
        yield home
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _until(what: Callable[[], bool], timeout: float, why: str, process: subprocess.Popen[bytes],
           root: Path) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not what():
        if process.poll() is not None:
            pytest.fail(f"solodesk serve exited: {(root / 'serve.log').read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {why}: {(root / 'serve.log').read_text()[-3000:]}")
        time.sleep(0.5)


def _deployments(server: PrefectServer) -> dict[str, object]:
    from prefect.client.orchestration import get_client

    with using(server.api), get_client(sync_client=True) as client:
        found = client.read_deployments()
        flows = {f.id: f.name for f in client.read_flows()}
    return {f"{flows[d.flow_id]}/{d.name}": d for d in found}


def test_serve_registers_every_deployment_with_its_schedule(
    server: PrefectServer, served: Path
) -> None:
    # Act
    found = _deployments(server)

    # Assert
    assert {"ingest/manual", "ingest/drop-folder", "retrain/weekly", "report/daily",
            "walkforward/manual", "promote/manual", "trader/manual",
            "store-live-bars/daily"} <= set(found)  # fmt: skip

    def crons(name: str) -> list[tuple[str, str]]:
        deployment = found[name]
        return [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]  # type: ignore[attr-defined]

    assert crons("ingest/drop-folder") == [("0 * * * *", "America/New_York")]
    assert crons("report/daily") == [("5 17 * * 1-5", "America/New_York")]
    assert crons("retrain/weekly") == [("0 18 * * 6", "America/New_York")]
    assert crons("ingest/manual") == []
    drop = found["ingest/drop-folder"].parameters  # type: ignore[attr-defined]
    assert drop["folder"] == str((served / "inbox").resolve())
    assert found["retrain/weekly"].parameters["symbol"] == "EURUSD"  # type: ignore[attr-defined]


def test_ingest_manual_run_through_the_api_completes_with_its_artifacts(
    server: PrefectServer, served: Path, tmp_path: Path
) -> None:
    # Arrange
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    source = write(tmp_path / "GBPUSD60.csv", mt4_csv(hourly_bars(utc(2020, 3, 2), 48)))

    # Act
    with using(server.api):
        run = run_deployment(
            "ingest/manual",
            parameters={"sources": [str(source)], "symbol": "GBPUSD", "timeframe": "H1"},
            timeout=240,
        )
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )

    # Assert
    assert run.state is not None and run.state.is_completed(), run.state
    kinds = {a.type for a in artifacts}
    assert {"table", "markdown"} <= kinds
    rows = next(a for a in artifacts if a.type == "table").data
    assert "GBPUSD H1" in str(rows) and "48" in str(rows)
    summary = next(a for a in artifacts if (a.key or "").startswith("ingest-summary")).data
    assert "48 rows read" in str(summary)
    stored = load_series(Settings(home=served), "GBPUSD", Timeframe.H1)
    assert f"{stored.bars.height} added" in str(summary) and stored.bars.height >= 40


def test_a_failing_io_step_is_retried_and_a_failing_compute_step_is_not(
    server: PrefectServer,
) -> None:
    # Arrange
    from prefect import flow

    from flows.common import compute_task, io_task

    attempts = {"io": 0, "compute": 0}

    @io_task(backoff=0.01)
    def flaky_read() -> str:
        attempts["io"] += 1
        if attempts["io"] < 3:
            raise OSError("the disk hiccupped")
        return "read"

    @compute_task
    def broken_compute(text: str) -> str:
        attempts["compute"] += 1
        raise ValueError(f"cannot compute on {text}")

    @flow(name="retry-check")
    def check() -> str:
        return broken_compute(flaky_read())

    # Act
    with using(server.api):
        state = check(return_state=True)

    # Assert
    assert state.is_failed()
    assert attempts == {"io": 3, "compute": 1}


def test_a_bad_input_io_step_is_not_retried(server: PrefectServer) -> None:
    # Arrange
    from prefect import flow

    from core.errors import UsageError
    from flows.common import io_task

    attempts = []

    @io_task(backoff=0.01)
    def bad_file() -> None:
        attempts.append(1)
        raise UsageError("no such file: prices.csv")

    @flow(name="bad-input-check")
    def check() -> None:
        bad_file()

    # Act
    with using(server.api):
        state = check(return_state=True)

    # Assert
    assert state.is_failed() and len(attempts) == 1


def test_a_server_with_its_database_in_postgresql_records_flow_runs_there(
    tmp_path: Path,
) -> None:
    # Arrange
    from prefect import flow
    from testkit.postgres import scratch_database

    @flow(name="postgres-check")
    def check() -> int:
        return 42

    with scratch_database("solodesk_prefect") as url:
        database = url.replace("postgresql+psycopg2://", "postgresql+asyncpg://", 1)
        settings = Settings(home=tmp_path / "home", prefect_database_url=database)
        started = start_server(settings, "127.0.0.1", _free_port(), timeout=600)
        try:
            # Act
            with using(started.api):
                state = check(return_state=True)
            import psycopg2

            with psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://", 1)) as c:
                cursor = c.cursor()
                cursor.execute("select count(*) from flow_run")
                (runs,) = cursor.fetchone()
        finally:
            started.stop()

    # Assert
    assert state.is_completed() and state.result() == 42
    assert runs == 1
    assert not (settings.prefect_dir / "prefect.db").exists()


def test_flows_run_and_runs_commands_start_a_deployment_and_list_it(
    server: PrefectServer, served: Path, tmp_path: Path
) -> None:
    # Arrange
    from testkit.cli import invoke, json_lines

    source = write(tmp_path / "USDCHF60.csv", mt4_csv(hourly_bars(utc(2021, 6, 7), 24)))
    env = {"PREFECT_API_URL": server.api}

    # Act
    run = invoke(
        ["flows", "run", "ingest/manual", "--param", f'sources=["{source}"]',
         "--param", "symbol=USDCHF", "--param", "timeframe=H1"],
        served, env=env,
    )  # fmt: skip
    listed = invoke(["flows", "runs", "--limit", "50", "--json"], served, env=env)
    missing = invoke(["flows", "run", "nothing/here"], served, env=env)

    # Assert
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ingest/manual: flow run" in run.stdout and "Completed" in run.stdout
    assert "24 rows read" in run.stdout and "[validation report](file://" in run.stdout
    rows = json_lines(listed.stdout)
    assert any(r["flow"] == "ingest" and r["state"] == "Completed" for r in rows)
    assert all(r["state"] != "Scheduled" for r in rows)
    assert missing.returncode == 2 and "no deployment 'nothing/here'" in missing.stderr


def test_dashboard_backtest_request_runs_on_the_server_and_the_ops_page_reads_it(
    server: PrefectServer, served: Path
) -> None:
    # Arrange
    from prefect.client.orchestration import get_client

    from feature_store.state import StateDB
    from services.views.controls import BACKTEST, start_flow
    from services.views.ops import flow_runs, schedules

    settings = Settings(home=served, prefect_api_url=server.api)
    parameters = {
        "symbol": "EURUSD", "timeframe": "H1", "strategy": "sma_cross",
        "params": {"fast": "20", "slow": "100"}, "spread": "1.0",
    }  # fmt: skip

    # Act: the request the Controls page makes, then the run it started, read as the Ops page does
    request = start_flow(settings, BACKTEST, parameters, who="trader", why="check")
    assert request.flow_run_id is not None, request.outcome
    deadline = time.monotonic() + 240
    with using(server.api), get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(request.flow_run_id).state
            if (state is not None and state.is_final()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    runs = flow_runs(settings)
    planned = schedules(settings)

    # Assert: the run completed; it was recorded with who asked; the Ops page lists it
    assert state is not None and state.is_completed(), state
    reader = StateDB.reader(settings)
    assert reader is not None
    with reader:
        (stored,) = reader.flow_requests()
    assert (stored.who, stored.deployment, stored.flow_run) == (
        "trader",
        BACKTEST,
        request.flow_run,
    )
    assert runs.answered
    assert any(r.run == request.flow_run and r.state == "Completed" for r in runs.runs)
    assert planned.answered and "retrain/weekly" in planned.deployments

"""The features, backtest, sweep, report, store-live-bars and trader flows, run in process against
a temporary Prefect server (one for the module), on copies of the sample desk (EURUSD H1 ask,
6,225 bars of 2017). Results are checked against the desk's stores and the artifacts are read
back from the server."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import SampleDesk
from testkit.cli import invoke, json_lines

from core.clocks import day_start_at
from core.ports import Notice, NoticeKind
from core.settings import Settings, load_settings
from core.timeframes import Timeframe
from core.times import iso_z, parse_utc
from core.types import SeriesKey, Side
from feature_store.feature_index import FeatureStore
from feature_store.state import SessionRecord, StateDB
from feature_store.store import BarStore
from flows.common import artifact_key

pytestmark = pytest.mark.slow

TINY_SET = """\
features:
  sets:
    tiny:
      features: [log_return_1, rsi_14]
      label: {kind: horizon, horizon: 4}
"""
SAMPLE_ROWS = 6225
ASK_H1 = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.ASK)
PAPER = ["paper", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
         "--param", "fast=10", "--param", "slow=40", "--param", "allow_short=true",
         "--spread", "1", "--json"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run every flow of the module against one temporary Prefect server and database.

    Flow-run heartbeats are off: the engine waits up to a second for its heartbeat thread at
    the end of every run, which would be most of each test's time.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    updates = {PREFECT_HOME: str(tmp_path_factory.mktemp("prefect")),
               PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}  # fmt: skip
    with temporary_settings(updates=updates), prefect_test_harness(60):
        yield


@pytest.fixture(scope="module")
def paper_desk(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a copy of the sample desk with one finished paper session, ``base`` (read only)."""
    home = tmp_path_factory.mktemp("paper") / "home"
    shutil.copytree(sample_desk.home, home)
    run = invoke([*PAPER, "--session", "base"], home)
    assert run.returncode == 0, (run.stderr, run.exception)
    return home


@pytest.fixture
def home(sample_desk: SampleDesk, copy_desk: Callable[[Path], Path]) -> Path:
    """Return a copy of the sample desk this test may change, with the tiny feature set."""
    target = copy_desk(sample_desk.home)
    (target.parent / "params.yaml").write_text(TINY_SET)
    return target


def _settings(home: Path) -> Settings:
    return load_settings(home=home)


def _attempt(flow: Any, **parameters: Any) -> tuple[Any, dict[str, Any]]:
    """Run a flow; return its final state and its artifacts by key."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    state = flow(**parameters, return_state=True)
    run_id: UUID = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return state, {a.key: a for a in artifacts if a.key is not None}


def _run(flow: Any, **parameters: Any) -> tuple[Any, dict[str, Any]]:
    """Run a flow that must complete; return its result and its artifacts by key."""
    state, artifacts = _attempt(flow, **parameters)
    assert state.is_completed(), state.message
    return state.result(), artifacts


def _notices(monkeypatch: pytest.MonkeyPatch) -> list[Notice]:
    import flows.report

    sent: list[Notice] = []
    monkeypatch.setattr(flows.report, "send", lambda settings, notice: sent.append(notice))
    return sent


def test_features_flow_builds_then_finds_the_build_cached(home: Path) -> None:
    # Arrange
    from flows.features import features_flow

    params = str(home.parent / "params.yaml")
    options = {"feature_set": "tiny", "symbol": "EURUSD", "timeframe": Timeframe.H1,
               "params": params, "home": str(home)}  # fmt: skip

    # Act
    first, artifacts = _run(features_flow, **options)
    second, again = _run(features_flow, **options)

    # Assert
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    assert first["version"] == second["version"]
    assert (first["rows"], first["features"], first["labels"][0]) == (SAMPLE_ROWS, 2, "label")
    (build,) = [b for b in FeatureStore(home / "features").builds() if b.feature_set == "tiny"]
    assert (build.version, build.latest, build.rows) == (first["version"], True, SAMPLE_ROWS)
    (row,) = _table(artifacts["features-tiny"])
    assert (row["cache"], row["rows"], row["version"]) == ("built", SAMPLE_ROWS, first["version"])
    assert _table(again["features-tiny"])[0]["cache"] == "hit"
    summary = artifacts["features-tiny-summary"].data
    assert "rsi_14" in summary and "log_return_1" in summary


def _table(artifact: Any) -> list[dict[str, Any]]:
    import json

    data = artifact.data
    return json.loads(data) if isinstance(data, str) else list(data)


def test_features_flow_failed_checks_store_nothing_and_say_why(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: an RSI off by a factor of two breaks its documented [0, 100].
    from flows.features import features_flow
    from pipelines.features import BUILDERS

    rsi = BUILDERS["rsi"]
    monkeypatch.setitem(BUILDERS, "rsi", lambda p: rsi(p) * 2.0)

    # Act
    state, artifacts = _attempt(
        features_flow, feature_set="tiny", symbol="EURUSD", timeframe=Timeframe.H1,
        params=str(home.parent / "params.yaml"), home=str(home),
    )  # fmt: skip

    # Assert
    assert state.is_failed()
    assert "the feature checks failed" in str(state.message)
    body = artifacts["features-failed-tiny-eurusd-h1-ask"].data
    assert "Nothing was stored" in body and "rsi_14 in [0, 100]" in body
    assert FeatureStore(home / "features").builds() == []


def test_backtest_flow_stores_the_run_with_its_metrics_and_tearsheet(home: Path) -> None:
    # Arrange
    from flows.backtest import backtest_flow
    from services.catalog import backtest_run

    # Act
    summary, artifacts = _run(
        backtest_flow, symbol="EURUSD", timeframe=Timeframe.H1, strategy="sma_cross",
        params={"fast": "10", "slow": "40"}, spread="1", home=str(home),
    )  # fmt: skip

    # Assert
    run = backtest_run(_settings(home), summary["run_id"])
    assert run.record["kind"] == "backtest"
    assert run.record["params"] == {"fast": 10, "slow": 40, **_rest(run.record["params"])}
    assert run.record["metrics"]["sharpe"] == pytest.approx(summary["sharpe"])
    table = _table(artifacts[artifact_key("backtest", summary["run_id"])])
    metrics = {r["metric"]: r["value"] for r in table}
    assert metrics["n_trades"] == summary["n_trades"] > 0
    assert metrics["sharpe"] == pytest.approx(summary["sharpe"])
    tearsheet = Path(summary["tearsheet"])
    assert tearsheet.is_file()
    page = artifacts[artifact_key("backtest-tearsheet", summary["run_id"])]
    assert tearsheet.resolve().as_uri() in page.data


def _rest(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in ("fast", "slow")}


def test_backtest_flow_refuses_a_strategy_and_a_model_together(home: Path) -> None:
    # Arrange
    from flows.backtest import backtest_flow

    # Act
    state = backtest_flow(
        symbol="EURUSD", timeframe=Timeframe.H1, strategy="sma_cross", name="EURUSD-H1-default",
        home=str(home), return_state=True,
    )  # fmt: skip

    # Assert
    assert state.is_failed()
    assert "not both" in str(state.message)
    assert not (home / "backtests").exists() or not list((home / "backtests").rglob("*.json"))


def test_sweep_flow_ranks_every_combination_and_links_the_heatmap(home: Path) -> None:
    # Arrange
    from flows.backtest import sweep_flow

    # Act
    summary, artifacts = _run(
        sweep_flow, symbol="EURUSD", timeframe=Timeframe.H1, strategy="sma_cross",
        ranges={"fast": "5,10", "slow": "30,40", "allow_short": "true"}, jobs=1,
        home=str(home),
    )  # fmt: skip

    # Assert
    assert summary["combinations"] == 4
    rows = _table(artifacts[artifact_key("sweep", summary["run_id"])])
    assert {(r["fast"], r["slow"]) for r in rows} == {(5, 30), (5, 40), (10, 30), (10, 40)}
    sharpes = [r["sharpe"] for r in rows]
    assert sharpes == sorted(sharpes, reverse=True)
    assert rows[0]["sharpe"] == pytest.approx(summary["best"]["sharpe"])
    heatmap = Path(summary["heatmap"])
    assert heatmap.is_file()
    page = artifacts[artifact_key("sweep-heatmap", summary["run_id"])]
    assert heatmap.resolve().as_uri() in page.data


def test_report_flow_on_an_empty_desk_says_there_is_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    from flows.report import report_flow

    sent = _notices(monkeypatch)
    at = datetime(2024, 3, 6, 12, 0, tzinfo=UTC)

    # Act
    result, artifacts = _run(report_flow, at=at, home=str(tmp_path / "empty"))

    # Assert
    assert (result["sessions"], result["champions"]) == ([], [])
    # 17:00 New York is 22:00 UTC in winter: the day that ended last began on the 4th.
    assert (result["start"], result["end"]) == ("2024-03-04T22:00:00Z", "2024-03-05T22:00:00Z")
    assert "nothing to report" in result["summary"]
    (notice,) = sent
    assert notice.kind is NoticeKind.DAILY_SUMMARY and "nothing to report" in notice.body
    assert "No session traded" in artifacts[f"report-{result['day']}"].data


def test_report_flow_sums_the_broker_day_of_a_paper_session(
    paper_desk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    from flows.report import report_flow
    from services.runtime import session_fills, session_trades

    settings = _settings(paper_desk)
    sent = _notices(monkeypatch)
    fills = session_fills(settings, "base")
    start = day_start_at(parse_utc(fills[10]["ts"]))
    end = day_start_at(start + timedelta(hours=26))
    in_day = [f for f in fills if start <= parse_utc(f["ts"]) < end]
    trades = session_trades(settings, "base")
    closed = [t for t in trades if t["exit_ts"] is not None and start <= t["exit_ts"] < end]
    with StateDB.open(settings) as db:
        curve = [(parse_utc(ts), eq) for ts, _, eq, _ in db.equity("base")]
    before = [eq for ts, eq in curve if ts < start]
    during = [eq for ts, eq in curve if start <= ts < end]

    # Act
    result, artifacts = _run(report_flow, at=end + timedelta(hours=1), home=str(paper_desk))

    # Assert
    (day,) = result["sessions"]
    assert (result["start"], result["end"]) == (iso_z(start), iso_z(end))
    assert (day["session"], day["fills"], day["trades"]) == ("base", len(in_day), len(closed))
    assert len(in_day) > 0
    assert day["realized"] == pytest.approx(sum(t["pnl"] for t in closed))
    assert day["equity_end"] == pytest.approx(during[-1])
    assert day["pnl"] == pytest.approx(during[-1] - before[-1])
    assert day["risk_state"] == "active"
    (notice,) = sent
    assert notice.kind is NoticeKind.DAILY_SUMMARY and "base EURUSD H1" in notice.body
    (row,) = _table(artifacts[f"report-sessions-{result['day']}"])
    assert row["fills"] == len(in_day)


def _live_session(settings: Settings, bars: list[tuple[Any, ...]]) -> None:
    with StateDB.open(settings) as db:
        db.create_session(
            SessionRecord(
                session="live1", account="live:live1", kind="live", symbol="EURUSD",
                timeframe="H1", strategy="sma_cross", created=datetime.now(UTC),
                status="stopped",
            )
        )  # fmt: skip
        db.record_bars("live1", bars)
        db.commit()


def test_store_live_bars_flow_ingests_the_bars_the_store_lacks(home: Path) -> None:
    # Arrange
    from flows.live import store_live_bars_flow

    settings = _settings(home)
    store = BarStore(settings.store_dir)
    stored = store.read(ASK_H1).head(3)
    # Three bars the store holds (identical) and five it lacks: the Friday before the sample.
    known = [(int(r["ts"].timestamp()) * 10**9, r["open"], r["high"], r["low"], r["close"],
              r["volume"], float("nan")) for r in stored.iter_rows(named=True)]  # fmt: skip
    price = float(stored["open"][0])
    friday = datetime(2016, 12, 30, 10, tzinfo=UTC)
    new = [(int((friday + timedelta(hours=i)).timestamp()) * 10**9, price, price + 4e-4,
            price - 4e-4, price + 1e-4, 100.0, float("nan")) for i in range(5)]  # fmt: skip
    _live_session(settings, known + new)

    # Act
    result, artifacts = _run(store_live_bars_flow, home=str(home))
    again, _ = _run(store_live_bars_flow, home=str(home))

    # Assert
    (row,) = result["sessions"]
    assert (row["series"], row["kept"], row["new"]) == ("EURUSD H1 ask", 8, 5)
    assert (row["rows_added"], row["rows_quarantined"]) == (5, 0)
    bars = store.read(ASK_H1)
    assert bars.height == SAMPLE_ROWS + 5
    assert bars["ts"][0] == friday
    folder = settings.inbox_dir / "live" / "live1"
    assert [p.name for p in folder.iterdir() if p.is_file()] == []
    assert [p.name for p in (folder / "done").iterdir()] == [row["file"]]
    (again_row,) = again["sessions"]
    assert (again_row["new"], again_row["run"], again_row["rows_added"]) == (0, None, 0)
    assert _table(artifacts["store-live-bars"])[0]["rows_added"] == 5


def test_store_live_bars_flow_keeps_a_file_whose_ingest_failed(home: Path) -> None:
    # Arrange
    from flows.live import store_live_bars_flow

    settings = _settings(home)
    friday = datetime(2016, 12, 30, 10, tzinfo=UTC)
    bar = (int(friday.timestamp()) * 10**9, 1.05, 1.051, 1.049, 1.0505, 10.0, 0.0001)
    _live_session(settings, [bar])
    folder = settings.inbox_dir / "live" / "live1"
    folder.mkdir(parents=True)
    (folder / "broken.parquet").write_bytes(b"PAR1 not really")

    # Act
    state = store_live_bars_flow(home=str(home), return_state=True)

    # Assert
    assert state.is_failed()
    assert "live1" in str(state.message)
    waiting = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert waiting == ["broken.parquet", "live1-20161230T100000-20161230T100000.parquet"]
    assert BarStore(settings.store_dir).read(ASK_H1).height == SAMPLE_ROWS


def test_trader_flow_status_reads_the_heartbeat_positions_and_risk(
    paper_desk: Path, copy_desk: Callable[[Path], Path]
) -> None:
    # Arrange
    from flows.live import trader_flow

    home = copy_desk(paper_desk)
    finished, _ = _run(trader_flow, action="status", session="base", home=str(home))
    with StateDB.open(_settings(home)) as db:
        db.update_session("base", status="running", pid=os.getpid())
        db.beat("base", os.getpid(), datetime.now(UTC), 6225)
        db.commit()

    # Act
    status, artifacts = _run(trader_flow, action="status", session="base", home=str(home))

    # Assert
    assert (finished["status"], finished["running"], finished["alive"]) == (
        "finished",
        False,
        False,
    )
    assert (status["status"], status["running"], status["alive"]) == ("running", True, True)
    assert (status["heartbeat"]["pid"], status["heartbeat"]["bars"]) == (os.getpid(), 6225)
    assert status["risk"]["account"] == "paper:base"
    positions = json_lines(invoke(["positions", "--session", "base", "--json"], home).stdout)
    assert len(status["positions"]) == len(positions)
    body = artifacts["trader-status-base"].data
    assert "alive" in body and "risk: active" in body


def test_trader_flow_stop_queues_a_stop_control(
    paper_desk: Path, copy_desk: Callable[[Path], Path]
) -> None:
    # Arrange
    from flows.live import trader_flow

    home = copy_desk(paper_desk)

    # Act
    result, artifacts = _run(trader_flow, action="stop", session="base", home=str(home))

    # Assert
    with StateDB.open(_settings(home)) as db:
        (control,) = db.controls("base")
    assert (control.action, control.id) == ("stop", result["control"]["id"])
    assert "not running" in (control.result or "")
    assert "not running" in artifacts["trader-stop-base"].data


def test_trader_flow_start_runs_the_supervisor_detached(
    paper_desk: Path, copy_desk: Callable[[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: a stand-in for the command line that waits for a go file, then says who it is.
    import flows.live

    home = copy_desk(paper_desk)
    go = home.parent / "go"
    script = (f"import os, sys, time\nend = time.time() + 30\n"
              f"while not os.path.exists({str(go)!r}) and time.time() < end: time.sleep(0.02)\n"
              "print(' '.join(sys.argv[1:])); print(os.environ['SOLODESK_HOME']); "
              "print(os.getsid(0))")  # fmt: skip
    monkeypatch.setattr(flows.live, "SOLODESK_COMMAND", (sys.executable, "-c", script))
    args = ["--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross"]

    # Act
    result, artifacts = _run(flows.live.trader_flow, action="start", session="s2", args=args,
                             home=str(home))  # fmt: skip
    log = Path(result["log"])
    while_waiting = log.read_text()
    go.touch()
    lines = _lines_of(log, 3)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(result["pid"], 0)

    # Assert: the flow returned while the supervisor still waited, in a session of its own.
    assert while_waiting == ""
    assert log.parent == _settings(home).state_dir
    argv, desk_home, session_id = lines
    assert argv == "supervise --session s2 -- " + " ".join(args)
    assert Path(desk_home) == home.resolve()
    assert int(session_id) == result["pid"] != os.getsid(0)
    assert str(result["pid"]) in artifacts["trader-start-s2"].data


def _lines_of(path: Path, count: int, timeout: float = 20.0) -> list[str]:
    """Return the lines of a file once it has ``count`` of them (fail after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while len(lines := path.read_text().splitlines()) < count:
        assert time.monotonic() < deadline, f"{path} has {lines} after {timeout} s"
        time.sleep(0.02)
    return lines


def test_trader_flow_start_refuses_a_session_that_is_running(
    paper_desk: Path, copy_desk: Callable[[Path], Path]
) -> None:
    # Arrange
    from flows.live import trader_flow

    home = copy_desk(paper_desk)
    with StateDB.open(_settings(home)) as db:
        db.update_session("base", status="running", pid=os.getpid())
        db.commit()

    # Act
    state = trader_flow(action="start", session="base", args=[], home=str(home), return_state=True)

    # Assert
    assert state.is_failed()
    assert "running already" in str(state.message)
    assert not (_settings(home).state_dir / "trader-base.log").exists()

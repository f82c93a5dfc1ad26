"""The Ops page on the fixture desk with no Prefect server answering (it names ``solodesk serve``
and lists what the desk's services recorded: the ingests, the walk-forward, the backtest, the
sweep and the paper session), with a server answering, and on an empty home, where nothing
hangs and every section says what is missing and the command that provides it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit.dashboard import MODEL, SESSION
from testkit.prefect import FakePrefect, closed_api

from .conftest import DashboardDesk

SECTIONS = ["Flow runs", "Schedules", "Retrain and promotion", "Drift", "Alert log", "Supervisor"]


@pytest.fixture
def no_prefect(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the desk at a Prefect API nothing answers (the page fixture keeps this variable)."""
    api = closed_api()
    monkeypatch.setenv("PREFECT_API_URL", api)
    return api


@pytest.fixture
def prefect(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePrefect]:
    server = FakePrefect()
    monkeypatch.setenv("PREFECT_API_URL", server.api)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow  # the fixture desk (built once per session) and a Streamlit run
def test_ops_page_fixture_desk_without_prefect_lists_what_the_services_recorded(
    dashboard_desk: DashboardDesk, page: Callable[..., Any], no_prefect: str
) -> None:
    # Act
    app = page(dashboard_desk.home, "ops")

    # Assert: the sections, the server named with the command that starts one
    assert not app.exception
    assert [t.value for t in app.title] == ["Ops"]
    assert [s.value for s in app.subheader] == SECTIONS
    first = app.info[0].value
    assert f"No Prefect server answers at {no_prefect}" in first and "`solodesk serve`" in first
    activity, schedules, champions, *rest = (d.value for d in app.dataframe)
    # Assert: every job of the fixture desk, newest first
    kinds = set(activity["kind"])
    assert {"ingest", "walkforward", "backtest", "sweep", "paper session"} <= kinds
    assert {"model registered", "promotion"} <= kinds
    assert SESSION in set(activity["name"])
    backtest = dashboard_desk.facts["backtest"][0]["run_id"]
    assert backtest in set(activity["name"])
    assert list(activity["at"]) == sorted(activity["at"], reverse=True)
    # Assert: the schedules from the settings, the model, its refused promotion
    assert "retrain/weekly" in set(schedules["deployment"])
    assert list(champions["name"]) == [MODEL] and champions["challenger"][0] == 1
    markdown = " ".join(m.value for m in app.markdown)
    assert f"{MODEL} v1 rejected" in markdown and "registered v1" in markdown
    # Assert: the alert log holds the paper session's notices; no supervised session
    alerts = rest[-1]
    assert SESSION in set(alerts["session"]) and "loop_started" in set(alerts["kind"])
    assert "`solodesk supervise -- <paper options>` provides it" in app.info[-1].value


@pytest.mark.slow  # the fixture desk (built once per session) and a Streamlit run
def test_ops_page_alert_log_filtered_by_kind_shows_only_that_kind(
    dashboard_desk: DashboardDesk, page: Callable[..., Any], no_prefect: str
) -> None:
    # Arrange
    app = page(dashboard_desk.home, "ops")

    # Act
    app.multiselect(key="ops_alert_kinds").set_value(["trade_opened"]).run()

    # Assert
    assert not app.exception
    alerts = app.dataframe[-1].value
    assert set(alerts["kind"]) == {"trade_opened"} and len(alerts) > 0


def test_ops_page_prefect_answering_shows_its_runs_and_schedules(
    tmp_path: Path, page: Callable[..., Any], prefect: FakePrefect
) -> None:
    # Act
    app = page(tmp_path / "home", "ops")

    # Assert
    assert not app.exception
    runs, schedules = (d.value for d in app.dataframe[:2])
    assert list(runs["run"]) == ["brave-otter"] and list(runs["state"]) == ["Completed"]
    assert list(schedules["deployment"]) == ["ingest/drop-folder"]
    assert not any("solodesk serve" in i.value for i in app.info)


def test_ops_page_empty_home_no_server_names_serve_and_each_providing_command(
    tmp_path: Path, page: Callable[..., Any], no_prefect: str
) -> None:
    # Arrange
    home = tmp_path / "home"

    # Act
    started = time.perf_counter()
    app = page(home, "ops")
    seconds = time.perf_counter() - started

    # Assert
    assert not app.exception
    assert [s.value for s in app.subheader] == SECTIONS
    messages = [i.value for i in app.info]
    assert "`solodesk serve` starts one" in messages[0]
    for command in ("solodesk ingest", "solodesk retrain", "solodesk paper --name",
                    "solodesk paper`", "solodesk supervise"):  # fmt: skip
        assert any(f"`{command}" in m or command in m for m in messages), command
    assert seconds < 20
    assert not home.exists()

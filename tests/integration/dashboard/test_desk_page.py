"""The Desk page on the fixture desk (session ``desk``: sma_cross on EURUSD H1, finished with
one long position open, paused by a control, with a 3% daily-loss and a 10% drawdown limit),
on an empty home, and on a desk holding only its state database."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.settings import Settings
from feature_store.state import StateDB
from services.views.desk import NO_SESSION, PAPER_COMMAND

from .conftest import DashboardDesk

SECTIONS = [
    "Equity", "Today", "Exposure", "Open positions and orders", "Risk limits",
    "Feeds and heartbeats",
]  # fmt: skip
SESSION = "desk"


def _frame(app: Any, column: str) -> Any:
    return next(d.value for d in app.dataframe if column in d.value.columns)


def test_desk_page_fixture_desk_shows_the_sessions_equity_position_and_limits(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Arrange: what the state database holds
    reader = StateDB.reader(Settings(home=dashboard_desk.home))
    assert reader is not None
    with reader:
        last_equity = reader.equity(SESSION)[-1][2]
        ((_, position),) = reader.positions(SESSION)

    # Act
    app = page(dashboard_desk.home, "desk")

    # Assert
    assert not app.exception
    assert [s.value for s in app.subheader] == SECTIONS
    assert app.selectbox(key="desk_session").value == SESSION
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Equity"] == f"{last_equity:,.0f}"
    assert metrics["Risk state"] == "ACTIVE"
    assert metrics["New orders"] == "paused"
    assert metrics["Loop"] == "not running"
    assert len(app.get("image")) == 3  # equity, underwater, exposure, as pictures
    assert not app.get("plotly_chart")
    assert _frame(app, "avg price")["units"].to_list() == [position.units]
    limits = _frame(app, "limit")
    assert limits["limit"].to_list() == ["max_daily_loss", "max_trailing_drawdown", "reduce_at"]
    assert limits["value"].to_list()[:2] == ["3.00%", "10.00%"]
    assert any("17:00 America/New_York" in c.value for c in app.caption)
    assert not app.info


def test_desk_page_empty_home_says_no_session_with_the_paper_command(
    tmp_path: Path, page: Callable[..., Any]
) -> None:
    # Act
    app = page(tmp_path / "home", "desk")

    # Assert
    assert not app.exception
    assert [s.value for s in app.subheader] == SECTIONS
    assert len(app.info) == len(SECTIONS)
    assert all(NO_SESSION in i.value and PAPER_COMMAND in i.value for i in app.info)


def test_desk_page_state_database_alone_shows_every_section(
    dashboard_desk: DashboardDesk, tmp_path: Path, page: Callable[..., Any]
) -> None:
    # Arrange: no bar store, no MLflow store, no catalog
    home = tmp_path / "home"
    shutil.copytree(dashboard_desk.home / "state", home / "state")

    # Act
    app = page(home, "desk")

    # Assert
    assert not app.exception
    assert [s.value for s in app.subheader] == SECTIONS
    assert len(app.get("image")) == 3


def test_desk_page_interactive_charts_swaps_the_pictures_for_plotly_charts(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Arrange
    app = page(dashboard_desk.home, "desk")
    assert len(app.get("image")) == 3

    # Act
    app.toggle(key="desk_interactive").set_value(True).run()

    # Assert: the same three charts, interactive, and no picture left
    assert not app.exception
    titles = [c.proto.spec for c in app.get("plotly_chart")]
    assert len(titles) == 3
    assert "Equity curve" in titles[0] and "Exposure by symbol" in titles[2]
    assert not app.get("image")

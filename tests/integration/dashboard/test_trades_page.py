"""The Trades page on the fixture desk (session ``desk``: sma_cross on EURUSD H1 with round
trips closed on signals and one still open, no stop-loss or take-profit), filtered, on an
empty home, and on a desk holding only its state database (no bars for the candles)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.settings import Settings
from feature_store.state import StateDB
from services.views.desk import NO_SESSION, PAPER_COMMAND
from services.views.trades import NO_PROTECTION

from .conftest import DashboardDesk

SECTIONS = ["Trade log", "Trade chart", "P&L distribution"]
SESSION = "desk"


def _facts(home: Path) -> tuple[list[dict[str, Any]], int]:
    reader = StateDB.reader(Settings(home=home))
    assert reader is not None
    with reader:
        return reader.trades(SESSION), len(reader.fills(SESSION))


def test_trades_page_fixture_desk_shows_every_trade_a_chart_and_the_distribution(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Arrange
    trades, fills = _facts(dashboard_desk.home)

    # Act
    app = page(dashboard_desk.home, "trades")

    # Assert
    assert not app.exception
    assert [s.value for s in app.subheader] == SECTIONS
    assert app.selectbox(key="trades_session").value == SESSION
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Trades"] == str(len(trades))
    closed = [t for t in trades if t["exit_reason"] != "open"]
    assert metrics["Closed"] == str(len(closed))
    assert metrics["Closed P&L"] == f"{sum(t['pnl'] for t in closed):+,.2f}"
    log, fill_table = (d.value for d in app.dataframe)
    assert log["n"].to_list() == [t["n"] for t in trades]
    assert log["entry_ts"].to_list()[0].endswith("Z")
    assert fill_table.shape[0] == fills
    assert len(app.selectbox(key="trade_pick").options) == len(trades)
    assert len(app.get("plotly_chart")) == 2  # the trade's candles, the P&L histogram
    assert any(NO_PROTECTION in c.value and "EURUSD H1" in c.value for c in app.caption)


def test_trades_page_filters_keep_the_open_trade_and_then_nothing(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Arrange
    trades, _ = _facts(dashboard_desk.home)
    app = page(dashboard_desk.home, "trades")

    # Act: the open trade only, drawn to the last bar; then shorts (the strategy has none)
    app.multiselect(key="trades_reason").set_value(["open"]).run()
    open_only = {m.label: m.value for m in app.metric}["Trades"]
    charts = len(app.get("plotly_chart"))
    app.multiselect(key="trades_side").set_value(["short"]).run()

    # Assert
    assert not app.exception
    assert open_only == str(sum(t["exit_reason"] == "open" for t in trades))
    assert charts == 2
    assert {m.label: m.value for m in app.metric}["Trades"] == "0"
    assert [i.value for i in app.info] == ["No trade matches the filters"]


def test_trades_page_empty_home_says_no_session_with_the_paper_command(
    tmp_path: Path, page: Callable[..., Any]
) -> None:
    # Act
    app = page(tmp_path / "home", "trades")

    # Assert
    assert not app.exception
    assert [s.value for s in app.subheader] == SECTIONS
    assert len(app.info) == len(SECTIONS)
    assert all(NO_SESSION in i.value and PAPER_COMMAND in i.value for i in app.info)


def test_trades_page_without_stored_bars_names_the_ingest_command(
    dashboard_desk: DashboardDesk, tmp_path: Path, page: Callable[..., Any]
) -> None:
    # Arrange: the state database alone
    home = tmp_path / "home"
    shutil.copytree(dashboard_desk.home / "state", home / "state")

    # Act
    app = page(home, "trades")

    # Assert: the log and the distribution stand; the candles say what provides them
    assert not app.exception
    assert [s.value for s in app.subheader] == SECTIONS
    assert [i.value for i in app.info] == [
        "No stored EURUSD H1 bars around this trade. "
        "`solodesk ingest FILE --symbol EURUSD --timeframe H1` provides it."
    ]
    assert len(app.get("plotly_chart")) == 1

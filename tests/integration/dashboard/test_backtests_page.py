"""The Backtests page on the fixture desk (its stored backtest and sweep of ``sma_cross``) and on
an empty home."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from .conftest import DashboardDesk

SECTIONS = ["Stored runs", "Tearsheet", "Sweep heatmap"]


def _frame(app: Any, column: str) -> pd.DataFrame:
    """Return the page's one table with ``column``."""
    (found,) = [df.value for df in app.dataframe if column in df.value.columns]
    return found


def _charts(app: Any) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def _title(spec: dict[str, Any]) -> str:
    return str(spec.get("layout", {}).get("title", {}).get("text", ""))


def test_backtests_page_fixture_desk_lists_runs_and_draws_the_newest_sweep_heatmap(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Arrange
    (backtest,) = dashboard_desk.facts["backtest"]
    (sweep,) = dashboard_desk.facts["sweep"]

    # Act
    app = page(dashboard_desk.home, "backtests")

    # Assert
    assert not app.exception
    assert [title.value for title in app.title] == ["Backtests"]
    assert [sub.value for sub in app.subheader] == SECTIONS
    runs = _frame(app, "combinations").set_index("run_id")
    assert runs.loc[backtest["run_id"], "kind"] == "backtest"
    assert runs.loc[backtest["run_id"], "n_trades"] == backtest["n_trades"]
    assert runs.loc[sweep["run_id"], "combinations"] == sweep["combinations"]
    assert app.selectbox(key="backtest_run").value == sweep["run_id"]
    assert app.selectbox(key="sweep_x").value == "fast"
    assert app.selectbox(key="sweep_y").value == "slow"
    assert app.selectbox(key="sweep_metric").value == "sharpe"
    (heatmap,) = _charts(app)
    assert heatmap["data"][0]["type"] == "heatmap"
    assert "sharpe over fast x slow" in _title(heatmap)
    assert f"Run {sweep['run_id']} is a sweep" in app.info[0].value


def test_backtests_page_backtest_chosen_draws_its_tearsheet_with_buy_and_hold(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Arrange
    (backtest,) = dashboard_desk.facts["backtest"]

    # Act
    app = page(dashboard_desk.home, "backtests", backtest_run=backtest["run_id"])

    # Assert
    assert not app.exception
    assert [sub.value for sub in app.subheader] == SECTIONS
    charts = _charts(app)
    assert len(charts) == 6
    equity = charts[0]
    assert [trace["name"] for trace in equity["data"]] == ["strategy", "buy and hold"]
    assert _title(equity).startswith("Equity curve")
    figures = _frame(app, "figure").set_index("figure")
    assert figures.loc["n_trades", "value"] == f"{backtest['n_trades']:,}"
    assert app.code[0].value.endswith(f"{backtest['run_id']}.html")
    assert "choose a sweep above" in app.info[0].value


def test_backtests_page_other_metric_chosen_redraws_the_heatmap(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Arrange
    app = page(dashboard_desk.home, "backtests")

    # Act
    app.selectbox(key="sweep_metric").set_value("total_return").run()
    app.selectbox(key="sweep_y").set_value("allow_short").run()

    # Assert
    assert not app.exception
    (heatmap,) = _charts(app)
    assert "total_return over fast x allow_short" in _title(heatmap)
    assert heatmap["data"][0]["y"] == ["False", "True"]


def test_backtests_page_empty_home_says_what_is_missing_and_creates_nothing(
    tmp_path: Path, page: Callable[..., Any]
) -> None:
    # Arrange
    home = tmp_path / "home"

    # Act
    app = page(home, "backtests")

    # Assert
    assert not app.exception
    assert [sub.value for sub in app.subheader] == SECTIONS
    assert [info.value for info in app.info] == [
        "No stored backtests yet. `solodesk backtest --symbol EURUSD --timeframe H1 "
        "--strategy sma_cross` provides it.",
        "No stored backtest yet. `solodesk backtest --symbol EURUSD --timeframe H1 "
        "--strategy sma_cross` provides it.",
        "No stored sweep yet. `solodesk sweep --symbol EURUSD --timeframe H1 "
        "--strategy sma_cross` provides it.",
    ]
    assert not app.get("plotly_chart")
    assert not home.exists()

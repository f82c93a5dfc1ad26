"""The Research page on the fixture desk (its walk-forward, the version it registered with the
refused promotion, its feature importances in MLflow) and on an empty home."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from .conftest import DashboardDesk

SECTIONS = ["Walk-forward reports", "Registered models", "Feature importance", "MLflow"]
MODEL = "EURUSD-H1-default"
WALKFORWARD = "solodesk walkforward --symbol EURUSD --timeframe H1"


def _frame(app: Any, column: str) -> pd.DataFrame:
    """Return the page's one table with ``column``."""
    (found,) = [df.value for df in app.dataframe if column in df.value.columns]
    return found


def _chart_titles(app: Any) -> list[str]:
    specs = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    return [str(spec.get("layout", {}).get("title", {}).get("text", "")) for spec in specs]


def test_research_page_fixture_desk_shows_run_model_importance_and_link(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Arrange
    (research,) = dashboard_desk.facts["research"]
    oos = research["oos"]

    # Act
    app = page(dashboard_desk.home, "research")

    # Assert
    assert not app.exception
    assert [title.value for title in app.title] == ["Research"]
    assert [sub.value for sub in app.subheader] == SECTIONS
    assert app.selectbox(key="research_run").value == research["run_id"]
    runs = _frame(app, "spa_vs_flat_p")
    assert runs["run_id"].tolist() == [research["run_id"]]
    assert runs["n_trades"].tolist() == [oos["n_trades"]]
    assert runs["psr"].tolist() == [pytest.approx(oos["psr"])]
    figures = _frame(app, "interval low (95%)").set_index("figure")
    assert figures.loc["Trades", "value"] == f"{oos['n_trades']:,}"
    versions = _frame(app, "promotion_reason")
    assert versions[["name", "version", "role", "promotion"]].values.tolist() == [
        [MODEL, research["model_version"], "challenger", "rejected"]
    ]
    assert "psr" in versions["promotion_reason"].iloc[0]
    standings = _frame(app, "champion")
    assert standings[["model", "champion", "challenger"]].values.tolist() == [[MODEL, "none", "v1"]]
    titles = _chart_titles(app)
    assert any(title.startswith("Out-of-sample equity") for title in titles)
    assert any(title.startswith("Feature importance") for title in titles)
    (link,) = app.get("link_button")
    assert link.proto.url.endswith(f"/runs/{research['mlflow_run_id']}")
    assert link.proto.url.startswith("http://127.0.0.1:5000/#/experiments/")
    codes = [code.value for code in app.code]
    assert "make mlflow" in codes
    assert str(dashboard_desk.home / "reports" / "research" / f"{research['run_id']}.html") in codes


def test_research_page_empty_home_says_what_is_missing_and_creates_nothing(
    tmp_path: Path, page: Callable[..., Any]
) -> None:
    # Arrange
    home = tmp_path / "home"

    # Act
    app = page(home, "research")

    # Assert
    assert not app.exception
    assert [sub.value for sub in app.subheader] == SECTIONS
    infos = [info.value for info in app.info]
    assert f"No walk-forward runs yet. `{WALKFORWARD}` provides it." in infos
    assert f"No registered models yet. `{WALKFORWARD}` provides it." in infos
    assert f"No MLflow store yet. `{WALKFORWARD}` provides it." in infos
    assert len(infos) == 4
    assert not app.get("plotly_chart")
    assert not home.exists()

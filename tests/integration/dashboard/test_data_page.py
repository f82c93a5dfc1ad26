"""The Data page on the fixture desk (its series, gaps, quarantine and latest validation) and on
an empty home (every section says what is missing and the command that provides it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import DashboardDesk

SECTIONS = ["Coverage", "Gaps", "Quarantine", "Validation", "Feature builds"]


@pytest.mark.slow  # the fixture desk (built once per session) and a Streamlit run
def test_data_page_fixture_desk_shows_series_gaps_quarantine_and_validation(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Act
    app = page(dashboard_desk.home, "data")

    # Assert
    assert not app.exception
    assert [t.value for t in app.title] == ["Data"]
    assert [s.value for s in app.subheader] == SECTIONS
    coverage, gaps, largest, reasons, rows, validation = (d.value for d in app.dataframe)
    assert set(zip(coverage["symbol"], coverage["timeframe"], coverage["side"], strict=True)) == {
        ("EURUSD", "H1", "ask"), ("GBPUSD", "H1", "bid")
    }  # fmt: skip
    assert len(app.get("plotly_chart")) == 1
    assert set(gaps["series"]) == {"EURUSD.H1.ask", "GBPUSD.H1.bid"}
    assert gaps["gaps"].sum() == len(largest) > 0
    quarantined = dashboard_desk.facts["quarantined"]
    assert reasons["rows"].sum() == quarantined == len(rows)
    assert any("below low" in r for r in reasons["reason"])
    (series,) = validation.to_dict("records")
    assert (series["series"], series["rows_quarantined"]) == ("GBPUSD.H1.bid", quarantined)
    assert series["expectations"].endswith("passed") and series["passed"]
    assert any("data docs" in c.value and "ingest-in-" in c.value for c in app.caption)
    builds = [i.value for i in app.info]
    assert builds == ["No feature set built yet. `solodesk features build --all` provides it."]


@pytest.mark.slow  # the fixture desk (built once per session) and a Streamlit run
def test_data_page_quarantine_filter_by_symbol_keeps_that_symbol(
    dashboard_desk: DashboardDesk, page: Callable[..., Any]
) -> None:
    # Arrange
    app = page(dashboard_desk.home, "data")

    # Act
    app.selectbox(key="data_quarantine_symbol").set_value("GBPUSD").run()

    # Assert
    assert not app.exception
    assert app.selectbox(key="data_quarantine_symbol").options == ["all", "GBPUSD"]
    rows = app.dataframe[4].value
    assert set(rows["symbol"]) == {"GBPUSD"}
    assert len(rows) == dashboard_desk.facts["quarantined"]


def test_data_page_empty_home_names_the_commands_that_provide_each_section(
    tmp_path: Path, page: Callable[..., Any]
) -> None:
    # Arrange
    home = tmp_path / "home"

    # Act
    app = page(home, "data")

    # Assert
    assert not app.exception
    assert [s.value for s in app.subheader] == SECTIONS
    messages = [i.value for i in app.info]
    assert len(messages) == len(SECTIONS)
    assert sum("`solodesk ingest <file>" in m for m in messages) == 4
    assert "`solodesk features build --all` provides it" in messages[-1]
    assert not home.exists()

"""Report figures drawn as SVG pictures: what is drawn, what is refused, and that the same
figure gives the same picture."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import plotly.graph_objects as go
import pytest

from pipelines.backtest.metrics import performance
from pipelines.backtest.tearsheet import drawdown_figure, equity_figure
from pipelines.report_kit import chart_layout, chart_note, chart_times
from pipelines.static_chart import colour, figure_svg

HOURS = np.arange(1, 49, dtype=np.int64) * 3_600_000_000_000 + 1_500_000_000_000_000_000
VALUES = 10_000.0 + np.cumsum(np.where(np.arange(48) % 7 < 4, 15.0, -22.0))


def _size(svg: str) -> tuple[float, float]:
    root = ET.fromstring(svg)
    width, height = root.get("width"), root.get("height")
    assert width is not None and height is not None
    return float(width.removesuffix("pt")), float(height.removesuffix("pt"))


def test_figure_svg_equity_and_underwater_figures_draw_their_title_and_size() -> None:
    # Arrange: the tearsheet's own figures
    times = chart_times(HOURS)
    metrics = performance(VALUES, ts=HOURS, bars_per_year=6_240.0, initial_cash=10_000.0)
    figures = (
        equity_figure(times, VALUES, 10_000.0, None),
        drawdown_figure(times, VALUES, 10_000.0, metrics),
    )

    # Act
    pictures = [figure_svg(f, width=900) for f in figures]

    # Assert: a well-formed SVG 900 pixels wide (675 pt) and as high as the layout (380 px)
    for svg in pictures:
        assert _size(svg) == pytest.approx((900 * 0.75, 380 * 0.75))
    # the titles, the line (and the underwater area) in the trace's colour
    assert "<!-- Equity curve (account currency) -->" in pictures[0]
    assert "<!-- Drawdown (underwater)" in pictures[1]
    assert "#1f77b4" in pictures[0]
    assert "#d62728" in pictures[1] and "fill-opacity" in pictures[1]


def test_figure_svg_same_figure_twice_gives_the_same_picture() -> None:
    # Arrange
    figure = chart_layout(go.Figure(go.Scatter(x=[0, 1, 2], y=[1.0, 3.0, 2.0])), y_title="y")

    # Act
    first, second = figure_svg(figure), figure_svg(figure)

    # Assert
    assert first == second


def test_figure_svg_bars_take_each_bars_colour() -> None:
    # Arrange: one bar up in green, one down in red
    figure = go.Figure(
        go.Bar(
            x=["EURUSD", "USDJPY"], y=[1_000.0, -500.0], marker={"color": ["#2ca02c", "#d62728"]}
        )
    )

    # Act
    svg = figure_svg(chart_layout(figure, y_title="notional"))

    # Assert
    assert "#2ca02c" in svg and "#d62728" in svg


def test_figure_svg_note_on_an_empty_chart_is_written_without_ticks() -> None:
    # Arrange
    figure = go.Figure()
    chart_note(figure, "no open position")

    # Act
    svg = figure_svg(chart_layout(figure, y_title="notional"))

    # Assert: the note and the axis title are written; no tick label is
    texts = re.findall(r"<!-- (.*?) -->", svg)
    assert texts == ["notional", "no open position"]


@pytest.mark.parametrize(
    "trace",
    [go.Heatmap(z=[[0, 1], [1, 0]]), go.Candlestick(x=[0], open=[1], high=[2], low=[0], close=[1])],
)
def test_figure_svg_trace_kind_not_drawn_is_refused(trace: go.BaseTraceType) -> None:
    # Act / Assert
    with pytest.raises(ValueError, match=re.escape(trace.type)):
        figure_svg(go.Figure(trace))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("#1f77b4", "#1f77b4"),
        ("rgb(255, 0, 51)", (1.0, 0.0, 0.2, 1.0)),
        ("rgba(0,0,255,0.5)", (0.0, 0.0, 1.0, 0.5)),
        (None, None),
    ],
)
def test_colour_plotly_colours_become_matplotlib_colours(
    value: str | None, expected: object
) -> None:
    # Act / Assert
    assert colour(value) == expected

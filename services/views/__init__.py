"""What the dashboard shows, read through the stores and the services: one module per page.

Each function takes the desk's :class:`~core.settings.Settings` first and returns frozen typed
models, frames or Plotly figures (all of which pickle, so the dashboard can cache them). None
of them holds the DuckDB catalog open or writes anything; the state database is opened
read-only. Where something is missing (no session yet, no MLflow store, no Prefect server),
they say so in what they return, with the command that provides it, rather than raising.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

#: The view modules, and the modules they load only when first called.
_MODULES = (
    "services.views.desk",
    "services.views.trades",
    "services.views.research",
    "services.views.backtests",
    "services.views.data",
    "services.views.ops",
    "services.views.controls",
    "services.features",
    "services.runtime",
    "pipelines.evaluate.report",
    "pipelines.backtest.tearsheet",
    "pipelines.backtest.sweep",
    "feature_store.model_registry",
)


def warm_up(settings: Settings) -> None:
    """Load every view and what the views load on their first call, and open the desk's model
    registry (when it has one), so that a long-running reader's first reads are not slower
    than the others."""
    for name in _MODULES:
        import_module(name)
    _draw_once()
    from services.models import read_registry

    read_registry(settings)


def _draw_once() -> None:
    """Measure a small equity curve and draw one small figure of each kind the pages show, in
    the reports' layout, and one as a picture: the compiled metrics, Plotly and matplotlib
    load their code (and matplotlib its fonts) on first use."""
    import numpy as np
    import plotly.graph_objects as go

    from pipelines.backtest.metrics import performance
    from pipelines.report_kit import chart_layout
    from pipelines.static_chart import figure_svg

    hours = np.arange(48, dtype=np.int64) * 3_600_000_000_000
    equity = 100_000.0 + np.cumsum(np.sin(np.arange(48.0)))
    performance(equity, ts=hours, bars_per_year=6_240.0, initial_cash=100_000.0)

    traces = (
        go.Scatter(x=[0, 1], y=[0, 1]), go.Bar(x=[0, 1], y=[1, 2]), go.Histogram(x=[0, 1]),
        go.Heatmap(z=[[0, 1], [1, 0]]),
        go.Candlestick(x=[0, 1], open=[1, 1], high=[2, 2], low=[0, 0], close=[1, 1]),
    )  # fmt: skip
    for trace in traces:
        chart_layout(go.Figure(trace), y_title="y", x_title="x").to_plotly_json()
    figure_svg(chart_layout(go.Figure(traces[0]), y_title="y"), width=200)

"""The Backtests page: the stored backtests, sweeps and portfolios, a backtest's tearsheet (a
portfolio's equity) and a sweep's heatmap over two of its parameters."""

from __future__ import annotations

import streamlit as st

from app.dashboard import common as ui
from services.views import backtests as views

_RUN_COLUMNS = {
    "sharpe": st.column_config.NumberColumn(format="%.2f"),
    "total_return": st.column_config.NumberColumn(format="percent"),
    "max_drawdown": st.column_config.NumberColumn(format="percent"),
}


def _value(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def _stored_runs() -> tuple[views.BacktestRow | None, bool]:
    st.subheader("Stored runs")
    runs = ui.read(views.stored_runs)
    if not runs:
        ui.missing("No stored backtests yet", views.BACKTEST_COMMAND)
        return None, False
    ui.table([row.model_dump() for row in runs], column_config=_RUN_COLUMNS, key="backtest_runs")
    by_id = {row.run_id: row for row in runs}
    labels = {
        row.run_id: " · ".join(
            str(p) for p in (row.kind, row.strategy, row.symbol, row.timeframe, row.run_id) if p
        )
        for row in runs
    }
    chosen = ui.pick("Run (newest first)", list(by_id), "backtest_run", labels=labels)
    return by_id[chosen], any(row.kind == "sweep" for row in runs)


def _tearsheet(row: views.BacktestRow | None) -> None:
    st.subheader("Tearsheet")
    if row is None:
        ui.missing("No stored backtest yet", views.BACKTEST_COMMAND)
        return
    if row.kind == "sweep":
        st.info(f"Run {row.run_id} is a sweep: its heatmap is below. Choose a backtest above.")
        return
    detail = ui.read(views.run_detail, row.run_id)
    st.markdown(f"**{detail.title}** · run `{detail.run_id}`")
    if detail.note:
        st.caption(detail.note)
    with st.expander("Figures", expanded=True):
        ui.table(
            [{"figure": m.figure, "value": _value(m.value)} for m in detail.metrics],
            key="backtest_metrics",
        )
    for name, figure in detail.charts.items():
        ui.chart(figure, key=f"backtest_{name}")
    if not detail.charts:
        ui.missing(f"Run {detail.run_id} has nothing to draw")
    if detail.report is not None:
        st.caption("The full report: open this file in a browser.")
        st.code(detail.report, language=None)


def _sweep_heatmap(row: views.BacktestRow | None, any_sweep: bool) -> None:
    st.subheader("Sweep heatmap")
    if row is None or not any_sweep:
        ui.missing("No stored sweep yet", views.SWEEP_COMMAND)
        return
    if row.kind != "sweep":
        st.info(f"Run {row.run_id} is a {row.kind}: choose a sweep above for its heatmap.")
        return
    grid = ui.read(views.sweep_grid, row.run_id)
    if grid.x is None or grid.y is None:
        varied = ", ".join(grid.params) or "none"
        ui.missing(f"Sweep {grid.run_id} varies fewer than two parameters ({varied})")
        return
    x, y, metric = grid.x, grid.y, grid.metric
    left, middle, right = st.columns(3)
    if len(grid.params) > 2:
        with left:
            x = ui.pick("Columns", list(grid.params), "sweep_x", grid.x)
        with middle:
            y = ui.pick("Rows", list(grid.params), "sweep_y", grid.y)
    if len(grid.metrics) > 1:
        with right:
            metric = ui.pick("Metric", list(grid.metrics), "sweep_metric", grid.metric)
    if x == y:
        st.info("Choose two different parameters for the rows and the columns.")
        return
    ui.chart(ui.read(views.sweep_heatmap, grid.run_id, x, y, metric), key="sweep_heatmap")
    best = ", ".join(f"{k}={_value(v)}" for k, v in grid.best.items() if k in grid.params)
    st.caption(
        f"{grid.combinations} combinations; each cell is the best {metric} over the other "
        f"parameters. Best by the sweep's {grid.metric}: {best}."
    )


def render() -> None:
    row, any_sweep = _stored_runs()
    _tearsheet(row)
    _sweep_heatmap(row, any_sweep)


ui.page("Backtests", render)

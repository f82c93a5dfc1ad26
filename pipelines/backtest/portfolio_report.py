"""A portfolio run as one self-contained HTML page of Plotly charts (opens offline).

The page carries plotly.js once, then: equity, weights stacked by symbol (longs above zero,
shorts below), final P&L per symbol, ex-ante and realized volatility against the target and
the cap, VaR and ES over time, and the correlation of the symbols' returns. Time series are
thinned to at most ``max_points`` evenly spaced bars (the last bar always kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go
import polars as pl

from pipelines.backtest.portfolio import PortfolioResult, confidence_label
from pipelines.report_kit import Column, figure_div, page, table

_TEMPLATE = "plotly_white"


def thinned_rows(n_rows: int, max_points: int) -> npt.NDArray[np.int64]:
    """Return evenly spaced row indices, at most ``max_points`` of them, the last row kept."""
    if max_points < 2:
        raise ValueError(f"max_points {max_points}: give at least 2")
    if n_rows <= max_points:
        return np.arange(n_rows, dtype=np.int64)
    step = math.ceil(n_rows / (max_points - 1))
    rows = np.arange(0, n_rows, step, dtype=np.int64)
    if rows[-1] != n_rows - 1:
        rows = np.append(rows, n_rows - 1)
    return rows


def _realized_vol(equity: npt.NDArray[np.float64], window: int, bars_per_year: float) -> pl.Series:
    returns = pl.Series("r", equity).pct_change()
    return returns.rolling_std(window_size=window) * math.sqrt(bars_per_year)


def _symbol_table(frame: pl.DataFrame) -> str:
    columns = [
        Column(name, "number" if dtype.is_numeric() else "text")
        for name, dtype in frame.schema.items()
    ]
    rows = [
        [f"{v:,.4g}" if isinstance(v, float) else str(v) for v in row] for row in frame.iter_rows()
    ]
    return table(columns, rows)


def _figure_html(figure: go.Figure, div_id: str, *, time_axis: bool = True) -> str:
    figure.update_layout(template=_TEMPLATE, height=420, margin={"t": 50, "b": 40})
    if time_axis:
        figure.update_xaxes(type="date", title_text="UTC")
    return figure_div(figure, div_id)


def portfolio_report_html(
    result: PortfolioResult,
    *,
    title: str,
    metrics: Mapping[str, float] | None = None,
    max_points: int = 5000,
) -> str:
    """Return a self-contained HTML report of a portfolio run (plotly.js embedded once).

    Parameters
    ----------
    result
        The run to show.
    title
        Page and heading title.
    metrics
        Figures to list above the charts (e.g. Sharpe ratio, max drawdown), in order.
    max_points
        Most bars drawn per time series; longer runs are thinned evenly.
    """
    config = result.config
    rows = thinned_rows(result.equity.shape[0], max_points)
    # Times as milliseconds since the epoch on date axes: NumPy arrays embed as compact binary.
    ts = result.ts.gather(rows).dt.epoch("ms").to_numpy().astype(np.float64)
    figures: list[str] = []

    equity = go.Figure(go.Scatter(x=ts, y=result.equity[rows], name="equity", mode="lines"))
    equity.update_layout(title="Equity (account currency)")
    figures.append(_figure_html(equity, "equity"))

    weights = go.Figure()
    n_symbols = len(result.symbols)
    colors = [f"hsl({round(360 * k / max(1, n_symbols))}, 65%, 50%)" for k in range(n_symbols)]
    for j, symbol in enumerate(result.symbols):
        column = result.weights[rows, j]
        for group, part in (("long", np.maximum(column, 0.0)), ("short", np.minimum(column, 0.0))):
            weights.add_trace(
                go.Scatter(
                    x=ts,
                    y=part,
                    name=symbol,
                    legendgroup=symbol,
                    showlegend=group == "long",
                    stackgroup=group,
                    mode="lines",
                    line={"width": 0.5, "color": colors[j]},
                )
            )
    weights.update_layout(title="Weights (value / equity), longs above zero, shorts below")
    figures.append(_figure_html(weights, "weights"))

    per_symbol = result.per_symbol_table()
    pnl = go.Figure(
        go.Bar(x=per_symbol["symbol"].to_list(), y=per_symbol["pnl"].to_list(), name="P&L")
    )
    pnl.update_layout(title="P&L per symbol after costs (account currency)")
    figures.append(_figure_html(pnl, "pnl", time_axis=False))

    vol = go.Figure()
    vol.add_trace(
        go.Scatter(
            x=ts,
            y=result.risk["portfolio_vol"].gather(rows).to_numpy(),
            name="ex-ante",
            mode="lines",
        )
    )
    realized = _realized_vol(result.equity, config.lookback, config.bars_per_year)
    vol.add_trace(
        go.Scatter(x=ts, y=realized.gather(rows).to_numpy(), name="realized", mode="lines")
    )
    for name, level in (("target", config.target_vol), ("cap", config.max_portfolio_vol)):
        if level is not None:
            vol.add_hline(y=level, line_dash="dash", annotation_text=f"{name} {level:g}")
    vol.update_layout(title=f"Annualized volatility (realized over {config.lookback} bars)")
    figures.append(_figure_html(vol, "volatility"))

    tail = go.Figure()
    for confidence in config.var_confidences:
        label = confidence_label(confidence)
        for kind in ("var_hist", "es_hist", "var_param", "es_param"):
            column = f"{kind}_{label}"
            tail.add_trace(
                go.Scatter(
                    x=ts, y=result.risk[column].gather(rows).to_numpy(), name=column, mode="lines"
                )
            )
    tail.update_layout(title="One-bar VaR and ES (loss as a fraction of equity)")
    figures.append(_figure_html(tail, "var-es"))

    heat = go.Figure(
        go.Heatmap(
            z=result.correlation,
            x=list(result.symbols),
            y=list(result.symbols),
            zmin=-1.0,
            zmax=1.0,
            colorscale="RdBu",
            reversescale=True,
        )
    )
    heat.update_layout(
        title="Correlation of per-bar returns", height=max(420, 22 * len(result.symbols))
    )
    figures.append(_figure_html(heat, "correlation", time_axis=False))

    summary = [
        ("sizing", config.sizing),
        ("rebalance", config.rebalance),
        ("bars", f"{result.equity.shape[0]:,}"),
        ("rebalances", f"{result.rebalance_ts.len():,}"),
        ("final equity", f"{result.equity[-1]:,.2f}" if result.equity.shape[0] else "-"),
        ("sizing fallbacks", str(result.sizing_fallbacks)),
    ]
    summary += [(k, f"{v:.6g}") for k, v in (metrics or {}).items()]
    summary_table = table([Column("figure"), Column("value", "number")], summary)
    body = "\n".join([summary_table, _symbol_table(per_symbol), *figures])
    return page(title, [("", body)])

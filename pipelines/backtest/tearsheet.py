"""The tearsheet of a backtest: one self-contained HTML page of its figures and charts.

The page holds, top to bottom: the metrics table, the equity curve (with an optional
buy-and-hold benchmark), the drawdown (underwater) chart, a heatmap of monthly returns, the
distribution of trade profits and losses, trade return against holding time, and the position
held over time. Plotly's JavaScript is embedded once, so the page opens offline.

Line charts of long series are thinned with :func:`downsample_minmax` to at most
:data:`MAX_POINTS` points per trace, keeping each bucket's lowest and highest point so that
drawdowns and spikes stay visible; the page of a six-million-bar backtest stays a few megabytes
(Plotly's script is about 4.8 MB of it).
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import plotly.graph_objects as go
import polars as pl

from pipelines.backtest.metrics import Metrics, drawdown, monthly_returns
from pipelines.report_kit import (
    CHART_HEIGHT,
    LINE_COLOUR,
    LOSS_COLOUR,
    MUTED_COLOUR,
    WIN_COLOUR,
    chart_layout,
    chart_note,
    chart_times,
    figure_div,
    metric_grid,
    page,
)

MAX_POINTS = 5000
"""Most points a line trace of the tearsheet carries."""
MAX_SCATTER_TRADES = 20_000
"""Most trades the return-versus-duration scatter draws (an even sample beyond that)."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def downsample_minmax(
    x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Thin a line to at most ``max_points`` points, keeping each bucket's minimum and maximum.

    The series is cut into ⌊(max_points − 2) / 2⌋ equal buckets of consecutive points; each
    bucket keeps its lowest and its highest point, in time order, and the first and last
    points of the series are always kept. A series short enough is returned unchanged.

    Parameters
    ----------
    x, y
        The line's coordinates, of equal length.
    max_points
        The most points to return (at least 4).

    Returns
    -------
    tuple of numpy.ndarray
        The kept ``x`` and ``y``.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} values but y has {len(y)}: give one x per y")
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, got {max_points}")
    n = len(y)
    if n <= max_points:
        return x, y
    values = np.asarray(y, dtype=np.float64)
    buckets = (max_points - 2) // 2
    size = math.ceil(n / buckets)
    rows = math.ceil(n / size)
    low = np.full(rows * size, np.inf)
    high = np.full(rows * size, -np.inf)
    low[:n] = values
    high[:n] = values
    starts = np.arange(rows) * size
    lowest = low.reshape(rows, size).argmin(axis=1) + starts
    highest = high.reshape(rows, size).argmax(axis=1) + starts
    keep = np.unique(np.concatenate(([0, n - 1], lowest, highest)))
    return x[keep], y[keep]


def tearsheet_html(
    *,
    title: str,
    ts: np.ndarray,
    equity: np.ndarray,
    position: np.ndarray,
    trades: pl.DataFrame,
    metrics: Metrics,
    initial_cash: float,
    subtitle: str = "",
    benchmark: np.ndarray | None = None,
) -> str:
    """Return the tearsheet of a backtest as one self-contained HTML page.

    Parameters
    ----------
    title, subtitle
        The page's heading and the line under it (plain text; escaped here).
    ts
        Bar timestamps (``datetime64`` or integer nanoseconds, UTC).
    equity
        Account value at each bar.
    position
        Position held at each bar; zero is flat.
    trades
        One row per trade: ``pnl``, ``return``, ``entry_ts``, ``exit_ts``, ``exit_reason``
        (``"open"`` for a trade still open, left out of the trade charts).
    metrics
        The backtest's figures (see :func:`pipelines.backtest.metrics.performance`).
    initial_cash
        Account value before the first bar.
    benchmark
        Optional buy-and-hold account value at each bar, drawn beside the equity.

    Returns
    -------
    str
        The HTML page, with Plotly's script embedded once.
    """
    figures = tearsheet_figures(
        ts=ts,
        equity=equity,
        position=position,
        trades=trades,
        metrics=metrics,
        initial_cash=initial_cash,
        benchmark=benchmark,
    )
    sections = [
        ("Metrics", _metrics_table(metrics)),
        ("Equity", figure_div(figures["equity"], "tearsheet-equity")),
        ("Drawdown", figure_div(figures["drawdown"], "tearsheet-drawdown")),
        ("Monthly returns", figure_div(figures["monthly"], "tearsheet-monthly")),
        (
            "Trades",
            '<div class="row"><div>'
            + figure_div(figures["trade_pnl"], "tearsheet-trade-pnl")
            + "</div><div>"
            + figure_div(figures["trade_scatter"], "tearsheet-trade-scatter")
            + "</div></div>",
        ),
        ("Exposure", figure_div(figures["exposure"], "tearsheet-exposure")),
    ]
    return page(title, sections, subtitle=subtitle)


def tearsheet_figures(
    *,
    ts: np.ndarray,
    equity: np.ndarray,
    position: np.ndarray,
    trades: pl.DataFrame,
    metrics: Metrics,
    initial_cash: float,
    benchmark: np.ndarray | None = None,
) -> dict[str, go.Figure]:
    """Return the tearsheet's charts by name, line series thinned by :func:`downsample_minmax`.

    The names are ``equity``, ``drawdown``, ``monthly``, ``trade_pnl``, ``trade_scatter`` and
    ``exposure``; the parameters are those of :func:`tearsheet_html`.
    """
    times = chart_times(ts)
    values = np.asarray(equity, dtype=np.float64)
    held = np.asarray(position, dtype=np.float64)
    for name, array in (("ts", times), ("position", held), ("benchmark", benchmark)):
        if array is not None and len(array) != len(values):
            msg = f"{name} has {len(array)} values but equity has {len(values)}: give one per bar"
            raise ValueError(msg)
    closed = closed_trades(trades)
    return {
        "equity": equity_figure(times, values, initial_cash, benchmark),
        "drawdown": drawdown_figure(times, values, initial_cash, metrics),
        "monthly": _monthly_figure(times, values, initial_cash),
        "trade_pnl": pnl_figure(closed),
        "trade_scatter": _scatter_figure(closed),
        "exposure": _exposure_figure(times, held, metrics),
    }


def equity_figure(
    times: np.ndarray, values: np.ndarray, initial_cash: float, benchmark: np.ndarray | None
) -> go.Figure:
    """Return the equity curve chart, thinned by :func:`downsample_minmax`.

    Parameters
    ----------
    times
        Chart times of the points (:func:`pipelines.report_kit.chart_times`).
    values
        Account value at each point, in account currency.
    initial_cash
        Account value before the first point, drawn as a horizontal line.
    benchmark
        Optional buy-and-hold account value at each point, drawn beside the equity.
    """
    figure = go.Figure()
    x, y = downsample_minmax(times, values)
    figure.add_trace(
        go.Scatter(x=x, y=y, name="strategy", line={"color": LINE_COLOUR, "width": 1.5})
    )
    if benchmark is not None:
        bx, by = downsample_minmax(times, np.asarray(benchmark, dtype=np.float64))
        figure.add_trace(
            go.Scatter(
                x=bx,
                y=by,
                name="buy and hold",
                line={"color": MUTED_COLOUR, "width": 1, "dash": "dot"},
            )
        )
    figure.add_hline(y=initial_cash, line={"color": "#bbb", "width": 1})
    figure.update_layout(title_text="Equity curve (account currency)")
    return chart_layout(figure, y_title="equity")


def underwater_figure(
    times: np.ndarray, values: np.ndarray, initial_cash: float
) -> tuple[go.Figure, np.ndarray]:
    """Return the drawdown chart (in %, downsampled) and the full drawdown series it shows."""
    under = drawdown(values, initial_cash=initial_cash) * 100.0
    x, y = downsample_minmax(times, under)
    figure = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            name="drawdown",
            fill="tozeroy",
            line={"color": LOSS_COLOUR, "width": 1},
            hovertemplate="%{y:.2f}%",
        )
    )
    return figure, under


def drawdown_figure(
    times: np.ndarray, values: np.ndarray, initial_cash: float, metrics: Metrics
) -> go.Figure:
    """Return the underwater chart (drawdown from the high-water mark, in %) titled with the
    largest drawdown and the longest one that ``metrics`` measured on the same curve."""
    figure, _ = underwater_figure(times, values, initial_cash)
    figure.update_layout(
        title_text=(
            f"Drawdown (underwater) · max {_pct(metrics.max_drawdown)}, "
            f"longest {_span(metrics.max_drawdown_duration, metrics.max_drawdown_duration_ns)}"
        )
    )
    return chart_layout(figure, y_title="drawdown (%)")


def _monthly_figure(times: np.ndarray, values: np.ndarray, initial_cash: float) -> go.Figure:
    months = monthly_returns(times, values, initial_cash)
    figure = go.Figure()
    if months.height:
        years = sorted(set(months["year"].to_list()))
        grid = np.full((len(years), 12), np.nan)
        row = {year: i for i, year in enumerate(years)}
        for year, month, value in months.iter_rows():
            grid[row[year], month - 1] = value * 100.0
        text = [["" if math.isnan(v) else f"{v:.1f}%" for v in line] for line in grid]
        finite = grid[np.isfinite(grid)]
        bound = float(np.abs(finite).max()) if finite.size else 1.0
        figure.add_trace(
            go.Heatmap(
                z=grid,
                x=list(_MONTHS),
                y=[str(year) for year in years],
                text=text,
                texttemplate="%{text}",
                colorscale="RdYlGn",
                zmid=0.0,
                zmin=-bound,
                zmax=bound,
                colorbar={"title": {"text": "%"}},
                hovertemplate="%{y} %{x}: %{z:.2f}%<extra></extra>",
                xgap=1,
                ygap=1,
            )
        )
        figure.update_yaxes(autorange="reversed", type="category")
    figure.update_layout(title_text="Monthly returns (%)")
    figure = chart_layout(figure, y_title="year")
    figure.update_layout(
        hovermode="closest", height=max(CHART_HEIGHT, 80 + 28 * months.height // 12)
    )
    return figure


def closed_trades(trades: pl.DataFrame) -> pl.DataFrame:
    """Return the trades that are closed (``exit_reason`` not ``"open"``) and have a ``pnl``."""
    if trades.height == 0 or "pnl" not in trades.columns:
        return trades.clear()
    closed = trades
    if "exit_reason" in trades.columns:
        closed = trades.filter((pl.col("exit_reason") != "open").fill_null(True))
    return closed.filter(pl.col("pnl").is_not_null())


def pnl_figure(closed: pl.DataFrame) -> go.Figure:
    """Return the histogram of closed trades' profit and loss, winners and losers apart.

    ``closed`` holds one row per closed trade with its ``pnl`` (:func:`closed_trades`); with
    none the chart says so.
    """
    figure = go.Figure()
    pnl = closed["pnl"].cast(pl.Float64).to_numpy() if closed.height else np.empty(0)
    if pnl.size:
        edges = np.histogram_bin_edges(pnl, bins=int(min(60, max(10, math.sqrt(pnl.size)))))
        centres = (edges[:-1] + edges[1:]) / 2
        widths = np.diff(edges)
        for name, chosen, colour in (
            ("winners", pnl[pnl > 0], WIN_COLOUR),
            ("losers", pnl[pnl <= 0], LOSS_COLOUR),
        ):
            counts, _ = np.histogram(chosen, bins=edges)
            figure.add_trace(
                go.Bar(
                    x=centres,
                    y=counts,
                    width=widths,
                    name=f"{name} ({chosen.size})",
                    marker={"color": colour},
                    opacity=0.75,
                    hovertemplate="pnl %{x:.2f}: %{y} trades<extra></extra>",
                )
            )
    else:
        chart_note(figure, "no closed trades")
    figure.update_layout(title_text="Trade profit and loss distribution", barmode="overlay")
    figure = chart_layout(figure, y_title="trades", x_title="pnl (account currency)")
    figure.update_layout(hovermode="closest")
    return figure


def _scatter_figure(closed: pl.DataFrame) -> go.Figure:
    figure = go.Figure()
    needed = {"return", "entry_ts", "exit_ts"}
    if closed.height == 0 or not needed <= set(closed.columns):
        chart_note(figure, "no closed trades")
        figure.update_layout(title_text="Trade return vs duration")
        return chart_layout(figure, y_title="return (%)")
    returns = closed["return"].cast(pl.Float64).to_numpy() * 100.0
    entry = chart_times(closed["entry_ts"].to_numpy()).astype(np.int64)
    exit_ = chart_times(closed["exit_ts"].to_numpy()).astype(np.int64)
    hours = (exit_ - entry) / 3_600_000.0
    unit, scale = ("days", 24.0) if np.nanmedian(hours) >= 48 else ("hours", 1.0)
    duration = hours / scale
    stride = max(1, math.ceil(returns.size / MAX_SCATTER_TRADES))
    sample = np.arange(0, returns.size, stride)
    wins = closed["pnl"].cast(pl.Float64).to_numpy()[sample] > 0
    for name, mask, colour in (("winners", wins, WIN_COLOUR), ("losers", ~wins, LOSS_COLOUR)):
        figure.add_trace(
            go.Scatter(
                x=duration[sample][mask],
                y=returns[sample][mask],
                mode="markers",
                name=name,
                marker={"color": colour, "size": 5, "opacity": 0.6},
                hovertemplate=f"%{{x:.1f}} {unit}: %{{y:.2f}}%<extra></extra>",
            )
        )
    note = f" ({sample.size:,} of {returns.size:,} trades)" if stride > 1 else ""
    figure.update_layout(title_text=f"Trade return vs duration{note}")
    figure = chart_layout(figure, y_title="return (%)", x_title=f"duration ({unit})")
    figure.update_layout(hovermode="closest")
    return figure


def _exposure_figure(times: np.ndarray, held: np.ndarray, metrics: Metrics) -> go.Figure:
    x, y = downsample_minmax(times, np.nan_to_num(held))
    figure = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            name="position",
            fill="tozeroy",
            line={"color": LINE_COLOUR, "width": 1, "shape": "hv"},
        )
    )
    figure.update_layout(
        title_text=f"Position over time · in the market {_pct(metrics.exposure)} of bars"
    )
    return chart_layout(figure, y_title="position (units)")


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{value * 100:.2f}%"


def _ratio(value: float) -> str:
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.3f}"


def _money(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:,.2f}"


def _span(bars: int, ns: int) -> str:
    span = timedelta(microseconds=ns // 1000)
    days, seconds = span.days, span.seconds
    return f"{bars:,} bars ({days} d {seconds // 3600} h)"


def _metrics_table(metrics: Metrics) -> str:
    start = metrics.start.strftime("%Y-%m-%d %H:%M") if metrics.start else "–"
    end = metrics.end.strftime("%Y-%m-%d %H:%M") if metrics.end else "–"
    cells = [
        ("Final equity", _money(metrics.final_equity)),
        ("Total return", _pct(metrics.total_return)),
        ("Annualized return", _pct(metrics.annualized_return)),
        ("Volatility (ann.)", _pct(metrics.volatility)),
        ("Sharpe (ann.)", _ratio(metrics.sharpe)),
        ("Sortino (ann.)", _ratio(metrics.sortino)),
        ("Calmar", _ratio(metrics.calmar)),
        ("Max drawdown", _pct(metrics.max_drawdown)),
        (
            "Longest drawdown",
            _span(metrics.max_drawdown_duration, metrics.max_drawdown_duration_ns),
        ),
        ("Trades", f"{metrics.n_trades:,}"),
        ("Hit rate", _pct(metrics.hit_rate)),
        ("Profit factor", _ratio(metrics.profit_factor)),
        ("Expectancy", _money(metrics.expectancy)),
        ("Exposure", _pct(metrics.exposure)),
        ("Turnover (per year)", _ratio(metrics.turnover)),
        ("Initial cash", _money(metrics.initial_cash)),
        ("Bars", f"{metrics.n_bars:,}"),
        ("Bars per year", f"{metrics.bars_per_year:,.1f}"),
        ("From", start),
        ("To", end),
    ]
    return metric_grid(cells)

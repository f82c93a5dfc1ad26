"""The tearsheet page: its sections, its figures, its size on long backtests."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from pipelines.backtest.metrics import Metrics, performance
from pipelines.backtest.tearsheet import (
    MAX_POINTS,
    downsample_minmax,
    tearsheet_figures,
    tearsheet_html,
)

CASH = 10_000.0
LINE_CHARTS = ("equity", "drawdown", "exposure")


class _PageParser(HTMLParser):
    """Collects the headings, the chart divisions and the scripts of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.h1: list[str] = []
        self.chart_ids: list[str] = []
        self.scripts: list[int] = []
        self.metric_cells: list[str] = []
        self._in: str | None = None
        self._script = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("h1", "h2"):
            self._in = tag
        elif tag == "td" and found.get("class") == "value":
            self._in = "value"
        elif tag == "script":
            self._in, self._script = "script", 0
        elif tag == "div" and (found.get("id") or "").startswith("tearsheet-"):
            self.chart_ids.append(found["id"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.scripts.append(self._script)
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "h1":
            self.h1.append(data)
        elif self._in == "h2":
            self.h2.append(data)
        elif self._in == "value":
            self.metric_cells.append(data)
        elif self._in == "script":
            self._script += len(data)


def _backtest(n: int, *, seed: int = 7) -> dict[str, object]:
    """Return a synthetic hourly long/flat backtest of ``n`` bars and its trades."""
    rng = np.random.default_rng(seed)
    ts = np.datetime64("2020-01-01T00:00", "ns") + np.arange(n) * np.timedelta64(1, "h")
    position = np.where((np.arange(n) // 50) % 2 == 0, 1000.0, 0.0)
    equity = CASH * np.cumprod(1.0 + position / 1000.0 * rng.normal(0.0, 0.002, n))
    starts = np.arange(0, n - 50, 100)
    pnl = equity[starts + 49] - equity[np.maximum(starts - 1, 0)]
    trades = pl.DataFrame(
        {
            "entry_ts": ts[starts],
            "exit_ts": ts[starts + 49],
            "direction": ["long"] * starts.size,
            "pnl": pnl,
            "return": pnl / CASH,
            "exit_reason": ["signal"] * (starts.size - 1) + ["open"],
        }
    )
    return {"ts": ts, "equity": equity, "position": position, "trades": trades}


def _metrics(bt: dict[str, object]) -> Metrics:
    return performance(
        bt["equity"],  # type: ignore[arg-type]
        ts=bt["ts"],  # type: ignore[arg-type]
        bars_per_year=6240.0,
        initial_cash=CASH,
        trades=bt["trades"],  # type: ignore[arg-type]
        position=bt["position"],  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def small() -> dict[str, object]:
    return _backtest(3000)


@pytest.fixture(scope="module")
def small_page(small: dict[str, object]) -> str:
    close = np.linspace(1.0, 1.1, 3000)
    return tearsheet_html(
        title="SMA cross on EURUSD H1 <bid>",
        subtitle="fast=10, slow=50",
        metrics=_metrics(small),
        initial_cash=CASH,
        benchmark=CASH * close,
        **small,  # type: ignore[arg-type]
    )


def test_tearsheet_html_small_backtest_has_every_section(small_page: str) -> None:
    # Arrange
    parser = _PageParser()

    # Act
    parser.feed(small_page)
    parser.close()

    # Assert
    assert parser.h2 == ["Metrics", "Equity", "Drawdown", "Monthly returns", "Trades", "Exposure"]
    assert parser.chart_ids == [
        "tearsheet-equity",
        "tearsheet-drawdown",
        "tearsheet-monthly",
        "tearsheet-trade-pnl",
        "tearsheet-trade-scatter",
        "tearsheet-exposure",
    ]
    for title in (
        "Equity curve",
        "Drawdown (underwater)",
        "Monthly returns (%)",
        "Trade profit and loss distribution",
        "Trade return vs duration",
        "Position over time",
        "buy and hold",
    ):
        assert title in small_page


def test_tearsheet_html_title_escaped_and_subtitle_shown(small_page: str) -> None:
    # Arrange
    parser = _PageParser()

    # Act
    parser.feed(small_page)

    # Assert
    assert parser.h1 == ["SMA cross on EURUSD H1 <bid>"]
    assert "&lt;bid&gt;" in small_page
    assert "fast=10, slow=50" in small_page


def test_tearsheet_html_metric_values_appear_in_table(
    small: dict[str, object], small_page: str
) -> None:
    # Arrange
    m = _metrics(small)
    parser = _PageParser()

    # Act
    parser.feed(small_page)

    # Assert
    cells = parser.metric_cells
    assert f"{m.sharpe:.3f}" in cells
    assert f"{m.sortino:.3f}" in cells
    assert f"{m.total_return * 100:.2f}%" in cells
    assert f"{m.max_drawdown * 100:.2f}%" in cells
    assert f"{m.hit_rate * 100:.2f}%" in cells
    assert f"{m.final_equity:,.2f}" in cells
    assert f"{m.n_trades:,}" in cells


def test_tearsheet_html_embeds_plotly_once(small_page: str) -> None:
    # Arrange
    parser = _PageParser()
    library_head = get_plotlyjs()[:400]

    # Act
    parser.feed(small_page)

    # Assert
    assert small_page.count(library_head) == 1
    assert sum(size > 1_000_000 for size in parser.scripts) == 1
    assert "<script src=" not in small_page
    assert small_page.count("Plotly.newPlot(") == 6


def test_tearsheet_html_same_inputs_give_same_page(small: dict[str, object]) -> None:
    # Arrange
    m = _metrics(small)

    # Act
    first = tearsheet_html(title="t", metrics=m, initial_cash=CASH, **small)  # type: ignore[arg-type]
    second = tearsheet_html(title="t", metrics=m, initial_cash=CASH, **small)  # type: ignore[arg-type]

    # Assert
    assert first == second


def test_tearsheet_figures_monthly_heatmap_values_in_percent(small: dict[str, object]) -> None:
    # Arrange
    m = _metrics(small)

    # Act
    figures = tearsheet_figures(metrics=m, initial_cash=CASH, **small)  # type: ignore[arg-type]

    # Assert: 3000 hours from 2020-01-01 span January to May 2020.
    heatmap = figures["monthly"].data[0]
    assert isinstance(heatmap, go.Heatmap)
    assert list(heatmap.y) == ["2020"]
    january = float(np.asarray(heatmap.z)[0, 0])
    equity = np.asarray(small["equity"])
    january_bars = 31 * 24
    assert january == pytest.approx((equity[january_bars - 1] / CASH - 1) * 100)
    assert heatmap.zmid == 0.0


def test_tearsheet_figures_trade_charts_leave_out_open_trade(small: dict[str, object]) -> None:
    # Arrange
    m = _metrics(small)
    closed = small["trades"].height - 1  # type: ignore[attr-defined]

    # Act
    figures = tearsheet_figures(metrics=m, initial_cash=CASH, **small)  # type: ignore[arg-type]

    # Assert
    histogram_count = sum(int(np.sum(trace.y)) for trace in figures["trade_pnl"].data)
    scatter_count = sum(len(trace.x) for trace in figures["trade_scatter"].data)
    assert histogram_count == closed
    assert scatter_count == closed


def test_tearsheet_html_no_trades_still_builds_page() -> None:
    # Arrange
    bt = _backtest(200)
    bt["trades"] = bt["trades"].clear()  # type: ignore[attr-defined]
    m = _metrics(bt)

    # Act
    page = tearsheet_html(title="flat", metrics=m, initial_cash=CASH, **bt)  # type: ignore[arg-type]

    # Assert
    assert page.count("no closed trades") == 2
    assert "buy and hold" not in page


def test_tearsheet_html_mismatched_position_raises_value_error(small: dict[str, object]) -> None:
    # Arrange
    m = _metrics(small)
    broken = {**small, "position": np.zeros(10)}

    # Act / Assert
    with pytest.raises(ValueError, match="position has 10 values"):
        tearsheet_html(title="t", metrics=m, initial_cash=CASH, **broken)  # type: ignore[arg-type]


def test_downsample_minmax_long_line_keeps_bound_extremes_and_ends() -> None:
    # Arrange
    rng = np.random.default_rng(3)
    y = np.cumsum(rng.normal(size=1_000_000))
    x = np.arange(y.size)

    # Act
    kept_x, kept_y = downsample_minmax(x, y)

    # Assert
    assert len(kept_x) <= MAX_POINTS
    assert kept_y.min() == y.min()
    assert kept_y.max() == y.max()
    assert (kept_x[0], kept_x[-1]) == (0, y.size - 1)
    assert np.all(np.diff(kept_x) > 0)
    assert np.array_equal(kept_y, y[kept_x])


def test_downsample_minmax_short_line_unchanged() -> None:
    # Arrange
    x = np.arange(10)
    y = np.arange(10.0) ** 2

    # Act
    kept_x, kept_y = downsample_minmax(x, y, max_points=10)

    # Assert
    assert np.array_equal(kept_x, x)
    assert np.array_equal(kept_y, y)


def test_downsample_minmax_every_bucket_keeps_its_trough() -> None:
    # Arrange: a dip of one bar every 997 bars must survive thinning 100,000 bars to 400.
    y = np.ones(100_000)
    dips = np.arange(500, y.size, 997)
    y[dips] = 0.0
    x = np.arange(y.size)

    # Act
    kept_x, kept_y = downsample_minmax(x, y, max_points=400)

    # Assert
    assert len(kept_x) <= 400
    assert set(dips.tolist()) <= set(kept_x[kept_y == 0.0].tolist())


def test_tearsheet_one_million_bars_line_traces_bounded_and_page_small() -> None:
    # Arrange
    bt = _backtest(1_000_000, seed=11)
    m = _metrics(bt)
    benchmark = np.asarray(bt["equity"]) * 1.01

    # Act
    figures = tearsheet_figures(metrics=m, initial_cash=CASH, benchmark=benchmark, **bt)  # type: ignore[arg-type]
    page = tearsheet_html(title="long", metrics=m, initial_cash=CASH, benchmark=benchmark, **bt)  # type: ignore[arg-type]

    # Assert
    sizes = [len(trace.x) for name in LINE_CHARTS for trace in figures[name].data]
    assert len(sizes) == 4
    assert max(sizes) <= MAX_POINTS
    assert min(figures["drawdown"].data[0].y) == pytest.approx(m.max_drawdown * 100)
    assert len(page.encode()) < 10_000_000

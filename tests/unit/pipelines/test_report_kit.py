"""The report kit: escaped tables, one style, Plotly embedded once and only where charts are."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from html.parser import HTMLParser

import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from pipelines.backtest.portfolio import run_portfolio
from pipelines.backtest.portfolio_report import portfolio_report_html
from pipelines.backtest.sweep import sweep_heatmap_html
from pipelines.backtest.tearsheet import tearsheet_html
from pipelines.evaluate.report import walkforward_report_html
from pipelines.report_kit import (
    CHART_HEIGHT,
    STYLE,
    Cell,
    Column,
    Link,
    chart_layout,
    chart_note,
    chart_times,
    figure_div,
    metric_grid,
    page,
    plotly_js,
    table,
)
from pipelines.validate.report import render_summary

from .backtest.test_portfolio import _config, _correlated_bars, _hold_long, _instruments
from .backtest.test_tearsheet import CASH, _backtest, _metrics
from .evaluate.test_report import _arrays, _importance, _summary
from .validate.test_report import _quarantined, _series

EVIL = "<script>alert(1)</script>"
ESCAPED_EVIL = "&lt;script&gt;alert(1)&lt;/script&gt;"
PLOTLY_HEAD = get_plotlyjs()[:400]


class _TableParser(HTMLParser):
    """Collects the header cells, the body rows and the classes of a table's cells and rows."""

    def __init__(self) -> None:
        super().__init__()
        self.table_class = ""
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self.row_classes: list[str] = []
        self.cell_classes: list[str] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        css = dict(attrs).get("class") or ""
        if tag == "table":
            self.table_class = css
        elif tag == "tr" and self.header:
            self.rows.append([])
            self.row_classes.append(css)
        elif tag in ("th", "td"):
            self._text = []
            self.cell_classes.append(css)

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or [])
        if tag == "th":
            self.header.append(text)
        elif tag == "td":
            self.rows[-1].append(text)
        if tag in ("th", "td"):
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def _parse_table(markup: str) -> _TableParser:
    parser = _TableParser()
    parser.feed(markup)
    parser.close()
    return parser


def _line_figure(height: int | None = None) -> go.Figure:
    figure = go.Figure(go.Scatter(x=[1, 2, 3], y=[1.0, 3.0, 2.0], name="line"))
    if height is not None:
        figure.update_layout(height=height)
    return figure


@cache
def _tearsheet_page() -> str:
    bt = _backtest(400)
    return tearsheet_html(title="SMA cross", metrics=_metrics(bt), initial_cash=CASH, **bt)  # type: ignore[arg-type]


@cache
def _portfolio_page() -> str:
    bars, _ = _correlated_bars(120)
    signals = {symbol: _hold_long(120) for symbol in bars}
    config = _config(sizing="inverse-vol", target_vol=0.1, lookback=30, var_window=30)
    result = run_portfolio(bars, signals, _instruments(list(bars)), config)
    return portfolio_report_html(result, title="Majors", metrics={"sharpe": 1.25})


@cache
def _research_page() -> str:
    ts, equity, gross = _arrays(600)
    return walkforward_report_html(
        _summary(n_bars=600),
        ts=ts,
        equity=equity,
        gross_returns=gross,
        initial_cash=CASH,
        importance=_importance(5),
        title="EURUSD H1 walk-forward",
    )


@cache
def _sweep_page() -> str:
    results = pl.DataFrame({"fast": [5, 10, 5, 10], "slow": [30, 30, 60, 60]}).with_columns(
        sharpe=pl.Series([0.5, 1.5, -0.25, 0.75])
    )
    return sweep_heatmap_html(results, "fast", "slow", "sharpe", title="SMA cross sweep")


@cache
def _ingest_page() -> str:
    return render_summary("20240102-0930", [_series()], _quarantined(2))


REPORTS: dict[str, tuple[Callable[[], str], tuple[str, ...]]] = {
    "tearsheet": (_tearsheet_page, ("<h1>SMA cross</h1>", 'id="tearsheet-equity"')),
    "portfolio": (_portfolio_page, ("<h1>Majors</h1>", 'id="correlation"')),
    "research": (_research_page, ("<h2>Folds</h2>", 'id="walkforward-fold-sharpe"')),
    "sweep": (_sweep_page, ("<h1>SMA cross sweep</h1>", 'id="sweep-heatmap"')),
    "ingest": (_ingest_page, ("<h1>Ingest 20240102-0930</h1>", "<h2>Series</h2>")),
}
CHARTED = ("tearsheet", "portfolio", "research", "sweep")


def test_table_hostile_text_escaped_in_header_cells_links_and_classes() -> None:
    # Arrange
    columns: list[Column | str] = [Column(EVIL), EVIL]
    rows: list[list[Cell]] = [[EVIL, Link(f'{EVIL}" onclick="x', EVIL)]]

    # Act
    markup = table(columns, rows, css=f'"{EVIL}', row_classes=[EVIL])

    # Assert
    assert EVIL not in markup
    assert 'onclick="x"' not in markup
    assert markup.count(ESCAPED_EVIL) == 7
    parsed = _parse_table(markup)
    assert parsed.header == [EVIL, EVIL]
    assert parsed.rows == [[EVIL, EVIL]]
    assert parsed.row_classes == [EVIL]


def test_table_number_column_cells_classed_for_right_alignment() -> None:
    # Arrange
    columns = [Column("name"), Column("count", "number"), Column("raw", "code")]

    # Act
    parsed = _parse_table(table(columns, [["a", "1,234", "x;y"]]))

    # Assert
    assert parsed.cell_classes == ["", "number", "", "", "number", "code"]
    assert "table.data .number { text-align: right;" in STYLE


def test_table_row_classes_set_on_their_rows_only() -> None:
    # Arrange
    rows = [["a", "passed"], ["b", "failed"], ["c", "n/a"]]

    # Act
    parsed = _parse_table(
        table([Column("control"), Column("verdict", "status")], rows, row_classes=["pass", "fail"])
    )

    # Assert
    assert parsed.row_classes == ["pass", "fail", ""]
    assert parsed.rows == rows


def test_table_extra_css_joins_the_data_class() -> None:
    # Act
    parsed = _parse_table(table(["a"], [["1"]], css="folds"))

    # Assert
    assert parsed.table_class == "data folds"


def test_table_row_missing_a_cell_raises_value_error() -> None:
    # Arrange
    rows = [["a", "1"], ["b"]]

    # Act / Assert
    with pytest.raises(ValueError, match="table row 1 has 1 cells but there are 2 columns"):
        table(["name", "value"], rows)


def test_metric_grid_ten_pairs_four_per_row_gives_three_rows_in_order() -> None:
    # Arrange
    cells = [(f"label {i}", f"{i}.00") for i in range(10)]

    # Act
    markup = metric_grid(cells)

    # Assert
    assert markup.count("<tr>") == 3
    assert markup.index("label 3") < markup.index("label 4")
    assert '<td class="label">label 9</td><td class="value">9.00</td>' in markup


def test_metric_grid_hostile_label_and_value_escaped() -> None:
    # Act
    markup = metric_grid([(EVIL, EVIL)])

    # Assert
    assert EVIL not in markup
    assert markup.count(ESCAPED_EVIL) == 2


def test_metric_grid_per_row_below_one_raises_value_error() -> None:
    # Act / Assert
    with pytest.raises(ValueError, match="per_row must be at least 1, got 0"):
        metric_grid([("a", "1")], per_row=0)


def test_page_with_figures_embeds_plotly_once() -> None:
    # Arrange
    sections = [
        ("First", figure_div(_line_figure(), "first")),
        ("Second", figure_div(_line_figure(), "second")),
    ]

    # Act
    document = page("Two charts", sections)

    # Assert
    assert document.count(PLOTLY_HEAD) == 1
    assert document.count("Plotly.newPlot(") == 2
    assert "<script src=" not in document


def test_page_without_figures_carries_no_script() -> None:
    # Arrange
    sections = [("Table", table(["a"], [["Plotly.newPlot("]]))]

    # Act
    document = page("Tables only", sections)

    # Assert
    assert PLOTLY_HEAD not in document
    assert "<script" not in document
    assert len(document) < 10_000


def test_page_hostile_title_subtitle_meta_and_heading_escaped() -> None:
    # Act
    document = page(EVIL, [(EVIL, "<p>body</p>")], subtitle=EVIL, meta=EVIL)

    # Assert
    assert EVIL not in document
    assert document.count(ESCAPED_EVIL) == 5
    assert f'<p class="subtitle">{ESCAPED_EVIL}</p>' in document
    assert f'<p class="meta">{ESCAPED_EVIL}</p>' in document
    assert "<p>body</p>" in document


def test_page_empty_subtitle_meta_and_heading_left_out() -> None:
    # Act
    document = page("t", [("", "<p>body</p>")])

    # Assert
    assert "<h2>" not in document
    assert 'class="subtitle"' not in document
    assert 'class="meta"' not in document
    assert "<section><p>body</p></section>" in document


def test_page_sections_appear_in_the_given_order() -> None:
    # Act
    document = page("t", [("B first", "<p>1</p>"), ("A second", "<p>2</p>")])

    # Assert
    assert document.index("<h2>B first</h2>") < document.index("<h2>A second</h2>")
    assert document.startswith("<!DOCTYPE html>")
    assert document.endswith("</html>\n")


def test_figure_div_figure_without_height_gets_chart_height_and_no_script_library() -> None:
    # Act
    markup = figure_div(_line_figure(), "chart-one")

    # Assert
    assert 'id="chart-one"' in markup
    assert f"height:{CHART_HEIGHT}px" in markup
    assert PLOTLY_HEAD not in markup
    assert '"displaylogo": false' in markup


def test_figure_div_figure_with_height_keeps_its_height() -> None:
    # Act
    markup = figure_div(_line_figure(height=640), "tall")

    # Assert
    assert "height:640px" in markup


def test_plotly_js_repeated_calls_return_the_cached_library() -> None:
    # Act
    first, second = plotly_js(), plotly_js()

    # Assert
    assert first is second
    assert first.startswith(PLOTLY_HEAD)


def test_chart_layout_sets_height_template_and_axis_titles() -> None:
    # Act
    figure = chart_layout(_line_figure(), y_title="equity", x_title="time")

    # Assert
    assert figure.layout.height == CHART_HEIGHT
    assert figure.layout.hovermode == "x unified"
    assert figure.layout.yaxis.title.text == "equity"
    assert figure.layout.xaxis.title.text == "time"


def test_chart_layout_without_x_title_leaves_x_axis_untitled() -> None:
    # Act
    figure = chart_layout(_line_figure(), y_title="equity")

    # Assert
    assert figure.layout.xaxis.title.text is None


def test_chart_note_hostile_text_escaped_in_the_middle() -> None:
    # Arrange
    figure = go.Figure()

    # Act
    chart_note(figure, EVIL)

    # Assert
    note = figure.layout.annotations[0]
    assert note.text == ESCAPED_EVIL
    assert (note.x, note.y, note.xref, note.yref) == (0.5, 0.5, "paper", "paper")


def test_chart_times_integer_nanoseconds_become_utc_milliseconds() -> None:
    # Arrange
    ts = np.array([1_577_836_800_000_000_000, 1_577_840_400_123_456_789], dtype=np.int64)

    # Act
    times = chart_times(ts)

    # Assert
    assert times.dtype == np.dtype("datetime64[ms]")
    assert times.tolist() == chart_times(ts.astype("datetime64[ns]")).tolist()
    assert str(times[1]) == "2020-01-01T01:00:00.123"


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_report_pages_every_builder_carries_the_kit_style_and_its_own_content(name: str) -> None:
    # Arrange
    build, content = REPORTS[name]

    # Act
    document = build()

    # Assert
    assert document.count("<style>") == 1
    assert f"<style>{STYLE}</style>" in document
    for piece in content:
        assert piece in document


@pytest.mark.parametrize("name", CHARTED)
def test_report_pages_with_charts_embed_plotly_exactly_once(name: str) -> None:
    # Arrange
    build, _ = REPORTS[name]

    # Act
    document = build()

    # Assert
    assert document.count(PLOTLY_HEAD) == 1
    assert "<script src=" not in document


def test_report_pages_ingest_summary_has_no_plotly_and_stays_small() -> None:
    # Act
    document = _ingest_page()

    # Assert
    assert PLOTLY_HEAD not in document
    assert "<script" not in document
    assert len(document.encode()) < 50_000

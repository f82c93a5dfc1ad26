"""The parts every HTML report page is built from: one style, one page, one table, one Plotly.

A report is a list of sections (a heading and its markup) handed to :func:`page`, which writes
a complete, self-contained document: the style below, the heading block and the sections.
Plotly's script is embedded once, and only when a section holds a chart made by
:func:`figure_div`, so a page of tables alone stays a few kilobytes and every page opens
offline. Text handed to the kit is plain text and is escaped here; markup handed to it (the
body of a section) is trusted as it is.

Plotly is imported only when a chart is drawn or its script embedded, so a report of tables
alone never loads it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import plotly.graph_objects as go

CHART_HEIGHT = 380
"""Height in pixels of a chart that does not set its own."""

WIN_COLOUR = "#2ca02c"
"""Colour of gains, winning trades and passed checks."""
LOSS_COLOUR = "#d62728"
"""Colour of losses, drawdowns, losing trades and failed checks."""
LINE_COLOUR = "#1f77b4"
"""Colour of a report's main line."""
MUTED_COLOUR = "#7f7f7f"
"""Colour of a line drawn for comparison (a benchmark, a gross-of-costs curve)."""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1200px; padding: 0 16px; color: #222; }
h1 { margin-bottom: 4px; }
p.subtitle { color: #666; margin-top: 0; }
p.meta { color: #555; margin: 2px 0 0; }
h2 { margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; font-size: 1.15em; }
h3 { font-size: 1em; margin: 20px 0 6px; color: #444; }
p.headline { font-size: 1.05em; margin: 8px 0 16px; }
p.headline span.figure { font-size: 2.1em; font-weight: 700; margin-right: 6px; }
p.note { color: #777; font-style: italic; }
p.verdict.pass { color: #2ca02c; font-weight: 700; }
p.verdict.fail { color: #d62728; font-weight: 700; }
pre { background: #f7f7f7; padding: 8px 10px; overflow-x: auto; font-size: 0.85em; }
.row { display: flex; flex-wrap: wrap; gap: 16px; }
.row > div { flex: 1 1 480px; min-width: 0; }
div.scroll { overflow-x: auto; margin: 8px 0; }
table.metrics { border-collapse: collapse; width: 100%; }
table.metrics td { padding: 4px 10px; border-bottom: 1px solid #eee; }
table.metrics td.label { color: #555; }
table.metrics td.value { text-align: right; font-variant-numeric: tabular-nums;
                         font-weight: 600; }
table.data { border-collapse: collapse; font-size: 0.88em; }
table.data th, table.data td { padding: 3px 8px; border-bottom: 1px solid #eee;
                               text-align: left; white-space: nowrap; }
table.data th { color: #555; border-bottom: 1px solid #ccc; }
table.data .number { text-align: right; font-variant-numeric: tabular-nums; }
table.data td.code { white-space: normal; font-family: ui-monospace, monospace;
                     font-size: 0.95em; min-width: 180px; }
table.data tr.pass td.status { color: #2ca02c; font-weight: 700; }
table.data tr.fail td.status { color: #d62728; font-weight: 700; }
table.data tr.fail { background: #fdf0f0; }
"""
"""The one stylesheet of every report page."""

ColumnKind = Literal["text", "number", "code", "status"]
"""How a column's cells are set: ``text`` left-aligned, ``number`` right-aligned in tabular
figures, ``code`` in a monospace font that wraps, ``status`` in bold and coloured by its row's
``pass`` or ``fail`` class."""

# Wraps every chart: escaped text cannot hold a double quote, so only kit markup carries it.
_CHART_OPEN = '<div class="chart">'


@dataclass(frozen=True)
class Column:
    """One column of a :func:`table`: its heading and how its cells are set."""

    title: str
    kind: ColumnKind = "text"


@dataclass(frozen=True)
class Link:
    """A table cell that links to ``href``, showing ``text``."""

    href: str
    text: str


Cell = str | Link
"""One table cell: plain text, or a link."""


def page(
    title: str,
    sections: Sequence[tuple[str, str]],
    *,
    subtitle: str = "",
    meta: str = "",
) -> str:
    """Assemble a complete, self-contained HTML page from its heading and sections.

    Parameters
    ----------
    title
        The page's title and top heading (plain text; escaped here).
    sections
        ``(heading, markup)`` pairs, in page order; the heading is plain text and an empty
        heading leaves the section without one; the markup is placed as it is.
    subtitle
        Line under the title (plain text); left out when empty.
    meta
        Line of facts about the run under the subtitle (plain text); left out when empty.

    Returns
    -------
    str
        The HTML document, carrying :data:`STYLE` and, when a section holds a chart made by
        :func:`figure_div`, Plotly's script once.
    """
    heading = f"<h1>{html.escape(title)}</h1>"
    if subtitle:
        heading += f'\n<p class="subtitle">{html.escape(subtitle)}</p>'
    if meta:
        heading += f'\n<p class="meta">{html.escape(meta)}</p>'
    body = "\n".join(_section(name, markup) for name, markup in sections)
    scripts = ""
    if any(_CHART_OPEN in markup for _, markup in sections):
        scripts = (
            '<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};'
            "</script>\n"
            f'<script type="text/javascript">{plotly_js()}</script>\n'
        )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n{scripts}"
        f"</head>\n<body>\n{heading}\n{body}\n</body>\n</html>\n"
    )


def table(
    columns: Sequence[Column | str],
    rows: Iterable[Sequence[Cell]],
    *,
    css: str = "",
    row_classes: Sequence[str] = (),
) -> str:
    """Return a table of a header and rows, every cell escaped, in a horizontally scrolling box.

    Parameters
    ----------
    columns
        The columns, left to right; a bare string is a text column of that heading.
    rows
        The rows, each one cell per column: plain text (escaped here) or a :class:`Link`.
    css
        Further class names of the table, besides ``data`` (e.g. ``"folds"``).
    row_classes
        Class of each row, in order (``"pass"`` and ``"fail"`` colour a ``status`` column);
        rows beyond the sequence, and empty names, get none.

    Returns
    -------
    str
        The table's markup.

    Raises
    ------
    ValueError
        If a row has more or fewer cells than there are columns.
    """
    kinds = [Column(c) if isinstance(c, str) else c for c in columns]
    head = "".join(f"<th{_kind_class(c.kind, 'th')}>{html.escape(c.title)}</th>" for c in kinds)
    lines = []
    for i, row in enumerate(rows):
        if len(row) != len(kinds):
            msg = f"table row {i} has {len(row)} cells but there are {len(kinds)} columns"
            raise ValueError(msg + ": give one cell per column")
        cells = "".join(
            f"<td{_kind_class(c.kind, 'td')}>{_cell(cell)}</td>"
            for c, cell in zip(kinds, row, strict=True)
        )
        name = row_classes[i] if i < len(row_classes) else ""
        lines.append(
            f'<tr class="{html.escape(name)}">{cells}</tr>' if name else f"<tr>{cells}</tr>"
        )
    classes = html.escape(f"data {css}".strip())
    return (
        f'<div class="scroll"><table class="{classes}">\n<thead><tr>{head}</tr></thead>\n'
        "<tbody>\n" + "\n".join(lines) + "\n</tbody></table></div>"
    )


def metric_grid(cells: Sequence[tuple[str, str]], per_row: int = 4) -> str:
    """Return label and value pairs as a grid, ``per_row`` pairs to a row, values right-aligned.

    Parameters
    ----------
    cells
        ``(label, value)`` pairs of plain text (escaped here), in reading order.
    per_row
        Pairs on one row (at least 1).

    Returns
    -------
    str
        The grid's markup: a ``metrics`` table of ``label`` and ``value`` cells.

    Raises
    ------
    ValueError
        If ``per_row`` is below 1.
    """
    if per_row < 1:
        raise ValueError(f"per_row must be at least 1, got {per_row}")
    rows = []
    for i in range(0, len(cells), per_row):
        tds = "".join(
            f'<td class="label">{html.escape(label)}</td><td class="value">{html.escape(value)}</td>'
            for label, value in cells[i : i + per_row]
        )
        rows.append(f"<tr>{tds}</tr>")
    return '<table class="metrics">\n' + "\n".join(rows) + "\n</table>"


@cache
def plotly_js() -> str:
    """Return Plotly's JavaScript, read once and then cached, for embedding in a page."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def figure_div(figure: go.Figure, div_id: str) -> str:
    """Return the markup that draws ``figure`` in a page made by :func:`page`.

    Parameters
    ----------
    figure
        The chart; its layout height, when set, is the chart's height, else
        :data:`CHART_HEIGHT`.
    div_id
        Id of the chart's element, unique within the page.

    Returns
    -------
    str
        The chart's markup, without Plotly's script (the page embeds it once).
    """
    import plotly.io as pio

    height = figure.layout.height or CHART_HEIGHT
    chart = pio.to_html(
        figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_height=f"{height}px",
        config={"displaylogo": False, "responsive": True},
    )
    return f"{_CHART_OPEN}{chart}</div>"


def chart_layout(figure: go.Figure, *, y_title: str, x_title: str = "") -> go.Figure:
    """Give ``figure`` the reports' chart layout and axis titles, and return it.

    The layout is Plotly's white template, :data:`CHART_HEIGHT` pixels high, the legend in a
    row above the plot and one hover label for every trace at the pointer's x.
    """
    figure.update_layout(
        template="plotly_white",
        height=CHART_HEIGHT,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hovermode="x unified",
    )
    figure.update_yaxes(title_text=y_title)
    if x_title:
        figure.update_xaxes(title_text=x_title)
    return figure


def chart_note(figure: go.Figure, text: str) -> None:
    """Write ``text`` (plain text; escaped here) across the middle of a chart with no data."""
    figure.add_annotation(
        text=html.escape(text),
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        font={"size": 16},
    )


def chart_times(ts: np.ndarray) -> np.ndarray:
    """Return bar times as ``datetime64[ms]`` for a chart's axis; integers are UTC nanoseconds."""
    stamps = np.asarray(ts)
    if stamps.dtype.kind in "iu":
        stamps = stamps.astype("datetime64[ns]")
    return stamps.astype("datetime64[ms]")


def _section(name: str, markup: str) -> str:
    heading = f"<h2>{html.escape(name)}</h2>\n" if name else ""
    return f"<section>{heading}{markup}</section>"


def _kind_class(kind: ColumnKind, tag: Literal["th", "td"]) -> str:
    if kind == "number":
        return ' class="number"'
    if tag == "td" and kind in ("code", "status"):
        return f' class="{kind}"'
    return ""


def _cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<a href="{html.escape(cell.href)}">{html.escape(cell.text)}</a>'
    return html.escape(cell)

"""A report figure drawn as a picture: the same Plotly figure, as an SVG image drawn here.

The dashboard's landing page shows its equity, drawdown and exposure charts this way. A browser
opening its first Plotly chart loads and compiles Plotly's script (4.7 MB): on a two-core
machine that alone takes longer than the rest of the page. The picture is drawn from the very
figure the reports and the interactive chart use (its traces, colours, title, axis titles,
horizontal lines and notes), so the two never tell different stories.

Drawn: line and area traces (``go.Scatter``; ``fill="tozeroy"`` shades down to zero), bars
(``go.Bar``), horizontal lines across the plot (``add_hline``), and notes written across the
middle of an empty chart (:func:`pipelines.report_kit.chart_note`). Any other trace kind is
refused with :class:`ValueError`, so a figure never loses a trace silently.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.axes import Axes

#: Width of the picture in CSS pixels (the page scales it to its column), and CSS pixels per
#: inch: the picture's size is given in points, 0.75 of a CSS pixel.
WIDTH_PX = 1200
CSS_DPI = 96
#: The grid and axis colours of Plotly's white template, which the reports use.
_GRID = "#ebf0f8"
_TEXT = "#2a3f5f"
_RGBA = re.compile(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)")
_DASH = {"dot": (0, (1, 2)), "dash": (0, (4, 3)), "dashdot": (0, (4, 2, 1, 2)), "solid": "-"}


def colour(value: Any, default: str | None = None) -> Any:
    """Return a Plotly colour (``#hex``, a name, ``rgb(...)``/``rgba(...)``) as matplotlib takes
    it; ``default`` when there is none."""
    if value is None:
        return default
    found = _RGBA.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None:
        return value
    r, g, b, a = found.groups()
    return (float(r) / 255, float(g) / 255, float(b) / 255, float(a or 1.0))


def figure_svg(figure: go.Figure, *, width: int = WIDTH_PX) -> str:
    """Draw ``figure`` as an SVG image ``width`` CSS pixels wide and as high as its layout says;
    the same figure gives the same text. Raise ValueError for a trace kind not drawn here."""
    import matplotlib

    matplotlib.use("Agg")  # no screen: draw into memory
    from matplotlib.figure import Figure

    unsupported = sorted({t.type for t in figure.data if t.type not in ("scatter", "bar")})
    if unsupported:
        raise ValueError(f"no picture is drawn for {', '.join(unsupported)} traces")
    layout = figure.layout
    height = int(layout.height or 380)
    canvas = Figure(figsize=(width / CSS_DPI, height / CSS_DPI), dpi=CSS_DPI)
    axes = canvas.add_subplot()
    _frame(axes)
    for trace in figure.data:
        if trace.type == "bar":
            _bars(axes, trace)
        else:
            _line(axes, trace)
    _hlines(axes, layout.shapes)
    _notes(axes, layout.annotations)
    _titles(axes, figure)
    _date_axis(axes, figure)
    named = [t for t in figure.data if t.name and t.showlegend is not False]
    if len(named) > 1 and layout.showlegend is not False:
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(named), frameon=False,
                    fontsize=9, borderaxespad=0.2)  # fmt: skip
    margin = layout.margin
    left, right = float(margin.l or 80) + 10, float(margin.r or 80)
    top, bottom = float(margin.t or 100), float(margin.b or 80)
    canvas.subplots_adjust(  # the layout's margins, as Plotly draws them (no second drawing)
        left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height
    )
    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "solodesk"}):  # ids that do not vary by run
        canvas.savefig(out, format="svg", facecolor="white", metadata={"Date": None})
    return out.getvalue()


def _frame(axes: Axes) -> None:
    from matplotlib.ticker import FuncFormatter

    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: format(value, ",.6g")))
    axes.set_facecolor("white")
    axes.grid(True, color=_GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    for side in axes.spines.values():
        side.set_visible(False)
    axes.tick_params(colors=_TEXT, labelsize=9, length=0)


def _xs(values: Any) -> Any:
    """Return a trace's x values as matplotlib draws them: times as ``datetime64``, the rest as
    they are."""
    array = np.asarray(values)
    if array.dtype.kind == "O" and array.size and isinstance(array[0], str):
        try:
            return array.astype("datetime64[ms]")
        except ValueError:
            return array
    return array


def _line(axes: Axes, trace: Any) -> None:
    if trace.y is None:
        return
    y = np.asarray(trace.y, dtype=np.float64)
    x = _xs(trace.x) if trace.x is not None else np.arange(y.size)
    line = trace.line
    tint = colour(line.color if line else None, "#1f77b4")
    dash = _DASH.get(str(line.dash) if line and line.dash else "solid", "-")
    lw = float(line.width) if line and line.width else 1.5
    axes.plot(x, y, color=tint, linewidth=lw * 0.75, linestyle=dash, label=trace.name)
    if trace.fill == "tozeroy":
        axes.fill_between(x, y, 0.0, color=tint, alpha=0.25, linewidth=0)


def _bars(axes: Axes, trace: Any) -> None:
    if trace.y is None:
        return
    y = np.asarray(trace.y, dtype=np.float64)
    x = [str(v) for v in trace.x] if trace.x is not None else [str(i) for i in range(y.size)]
    marker = trace.marker.color if trace.marker else None
    tints: Sequence[Any] | Any = (
        [colour(c) for c in marker] if isinstance(marker, (list, tuple)) else colour(marker)
    )
    axes.bar(x, y, width=float(trace.width or 0.8), color=tints, label=trace.name)
    axes.axhline(0.0, color="#bbb", linewidth=0.8)


def _hlines(axes: Axes, shapes: Sequence[Any]) -> None:
    for shape in shapes or ():
        across = (
            shape.type == "line" and str(shape.xref).endswith("domain") and shape.y0 == shape.y1
        )
        if across and shape.y0 is not None:
            tint = colour(shape.line.color if shape.line else None, "#bbb")
            axes.axhline(float(shape.y0), color=tint, linewidth=0.8)


def _notes(axes: Axes, notes: Sequence[Any]) -> None:
    for note in notes or ():
        if note.xref == "paper" and note.yref == "paper" and note.text:
            axes.text(float(note.x), float(note.y), str(note.text), transform=axes.transAxes,
                      ha="center", va="center", fontsize=12, color=_TEXT)  # fmt: skip
            axes.set_xticks([])
            axes.set_yticks([])


def _titles(axes: Axes, figure: go.Figure) -> None:
    layout = figure.layout
    title = layout.title.text if layout.title else None
    if title:
        axes.set_title(str(title), loc="left", fontsize=11, color=_TEXT, pad=18)
    y_title = layout.yaxis.title.text if layout.yaxis and layout.yaxis.title else None
    x_title = layout.xaxis.title.text if layout.xaxis and layout.xaxis.title else None
    if y_title:
        axes.set_ylabel(str(y_title), fontsize=9, color=_TEXT)
    if x_title:
        axes.set_xlabel(str(x_title), fontsize=9, color=_TEXT)


def _date_axis(axes: Axes, figure: go.Figure) -> None:
    """Give the x axis short date labels when the first trace with x values has times."""
    xs = next((t.x for t in figure.data if t.x is not None and len(t.x)), None)
    if xs is None or _xs(xs).dtype.kind != "M":
        return
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))

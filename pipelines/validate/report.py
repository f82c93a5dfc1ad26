"""The pages of an ingest run: Great Expectations data docs per series and the run's summary.

The summary page lists one row per series (rows read, added, duplicate, conflicting and
quarantined, flagged jumps and gaps, the expectations' verdict and a link to its data docs),
the first quarantined rows, and per series its flags with a price chart marking the jumps. It
is built from :mod:`pipelines.report_kit` and carries no script.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipelines.report_kit import LINE_COLOUR, LOSS_COLOUR, Cell, Column, Link, page, table

_SERIES_COLUMNS = (
    Column("series"),
    Column("source(s)"),
    Column("read", "number"),
    Column("added", "number"),
    Column("duplicate", "number"),
    Column("conflicting", "number"),
    Column("quarantined", "number"),
    Column("jumps", "number"),
    Column("gaps (missing bars)", "number"),
    Column("expectations"),
    Column("data docs"),
)
_QUARANTINE_FIELDS = ("source", "line", "reason", "raw")
_QUARANTINE_COLUMNS = (
    Column("source"),
    Column("line", "number"),
    Column("reason"),
    Column("raw", "code"),
)


def render_data_docs(result: Any) -> str:
    """Render a Great Expectations validation result as a data-docs HTML page."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    document = ValidationResultsPageRenderer().render(result)
    return str(DefaultJinjaPageView().render(document))


def price_chart_svg(
    ts: list[datetime],
    close: list[float],
    marks: list[tuple[datetime, float]],
    width: int = 900,
    height: int = 180,
) -> str:
    """Draw closes as an inline SVG line, with red dots at the ``marks`` (flagged jumps).

    Parameters
    ----------
    ts, close
        Bar times and closes, one close per time, in time order; at most about one point per
        pixel of ``width`` is drawn (every k-th bar).
    marks
        ``(time, price)`` points to mark.
    width, height
        Size of the drawing in pixels.

    Returns
    -------
    str
        The ``<svg>`` element, or an empty string when there are fewer than two closes.
    """
    if len(close) < 2:
        return ""
    step = max(1, len(close) // width)
    points = list(zip(ts[::step], close[::step], strict=True))
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    lo, hi = min(c for _, c in points), max(c for _, c in points)
    span_t, span_p = (t1 - t0) or 1.0, (hi - lo) or 1.0

    def xy(when: datetime, price: float) -> tuple[float, float]:
        x = 40 + (when.timestamp() - t0) / span_t * (width - 50)
        y = 10 + (hi - price) / span_p * (height - 30)
        return x, y

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, c) for t, c in points))
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{LOSS_COLOUR}"/>'
        for x, y in (xy(when, price) for when, price in marks)
    )
    labels = (
        f'<text x="2" y="16" font-size="10">{hi:g}</text>'
        f'<text x="2" y="{height - 20}" font-size="10">{lo:g}</text>'
        f'<text x="40" y="{height - 4}" font-size="10">{points[0][0]:%Y-%m-%d}</text>'
        f'<text x="{width - 80}" y="{height - 4}" font-size="10">{points[-1][0]:%Y-%m-%d}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="100%" height="100%" fill="#fafafa"/>{labels}'
        f'<polyline fill="none" stroke="{LINE_COLOUR}" stroke-width="1" points="{line}"/>'
        f"{dots}</svg>"
    )


def render_summary(run: str, series: list[dict[str, Any]], quarantine: list[dict[str, Any]]) -> str:
    """Render the run summary: one row per series, flags, and the first quarantined rows.

    Parameters
    ----------
    run
        The ingest run's id.
    series
        One mapping per series: ``symbol``, ``timeframe``, ``side``, ``rows_read``,
        ``rows_added``, ``rows_duplicate``, ``rows_conflicting``, ``rows_quarantined`` and,
        optionally, ``sources``, ``flags`` (with ``jumps``, ``gaps``, ``missing_bars``),
        ``expectations`` (the verdict), ``data_docs`` (the data-docs page's address) and
        ``chart`` (an SVG from :func:`price_chart_svg`, placed as it is).
    quarantine
        The quarantined rows to show: ``source``, ``line``, ``reason``, ``raw``.

    Returns
    -------
    str
        The HTML page.
    """
    sections = [
        ("Series", table(_SERIES_COLUMNS, [_series_row(s) for s in series])),
        (
            f"Quarantined rows (first {len(quarantine)})",
            table(
                _QUARANTINE_COLUMNS,
                [[_text(q.get(k)) for k in _QUARANTINE_FIELDS] for q in quarantine],
            ),
        ),
        (
            "Flags (kept, for a person to look at; red dots are price jumps)",
            "".join(_series_flags(s) for s in series),
        ),
    ]
    return page(f"Ingest {run}", sections)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _name(s: Mapping[str, Any]) -> str:
    return f"{s['symbol']} {s['timeframe']} {s['side']}"


def _series_row(s: Mapping[str, Any]) -> list[Cell]:
    flags = s.get("flags", {})
    doc = s.get("data_docs")
    sources: Sequence[str] = s.get("sources", [])
    return [
        _name(s),
        ", ".join(sources),
        _text(s["rows_read"]),
        _text(s["rows_added"]),
        _text(s["rows_duplicate"]),
        _text(s["rows_conflicting"]),
        _text(s["rows_quarantined"]),
        _text(flags.get("jumps", 0)),
        f"{flags.get('gaps', 0)} ({flags.get('missing_bars', 0)})",
        _text(s.get("expectations", "")),
        Link(str(doc), "open") if doc else "",
    ]


def _series_flags(s: Mapping[str, Any]) -> str:
    flags = html.escape(json.dumps(s.get("flags", {}), indent=1))
    return f"<h3>{html.escape(_name(s))}</h3>{s.get('chart', '')}<pre>{flags}</pre>"

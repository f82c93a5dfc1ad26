"""Validation reports: Great Expectations data docs per series plus a run summary page."""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from feature_store.store import write_atomic


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
    """Draw closes as an inline SVG line, with red dots at the ``marks`` (flagged jumps)."""
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
        '<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="#d62728"/>'.format(*xy(when, price))
        for when, price in marks
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
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1" points="{line}"/>{dots}</svg>'
    )


def _cell(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render_summary(run: str, series: list[dict[str, Any]], quarantine: list[dict[str, Any]]) -> str:
    """Render the run summary: one row per series, flags, and the first quarantined rows."""
    head = ("series", "source(s)", "read", "added", "duplicate", "conflicting", "quarantined",
            "jumps", "gaps (missing bars)", "expectations", "data docs")  # fmt: skip
    rows = []
    for s in series:
        flags = s.get("flags", {})
        doc = s.get("data_docs")
        link = f'<a href="{_cell(doc)}">open</a>' if doc else ""
        verdict = s.get("expectations", "")
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{_cell(v)}</td>"
                for v in (
                    f"{s['symbol']} {s['timeframe']} {s['side']}",
                    ", ".join(s.get("sources", [])),
                    s["rows_read"], s["rows_added"], s["rows_duplicate"],
                    s["rows_conflicting"], s["rows_quarantined"], flags.get("jumps", 0),
                    f"{flags.get('gaps', 0)} ({flags.get('missing_bars', 0)})", verdict,
                )
            )
            + f"<td>{link}</td></tr>"
        )  # fmt: skip
    qrows = "".join(
        "<tr>" + "".join(f"<td>{_cell(q.get(k))}</td>" for k in ("source", "line", "reason", "raw"))
        + "</tr>"
        for q in quarantine
    )  # fmt: skip
    details = "".join(
        f"<h3>{_cell(s['symbol'])} {_cell(s['timeframe'])} {_cell(s['side'])}</h3>"
        f"{s.get('chart', '')}"
        f"<pre>{_cell(json.dumps(s.get('flags', {}), indent=1))}</pre>"
        for s in series
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>solodesk ingest {run}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}th{{background:#eee}}</style>
</head><body><h1>Ingest {run}</h1>
<h2>Series</h2><table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{"".join(rows)}</table>
<h2>Quarantined rows (first {len(quarantine)})</h2>
<table><tr><th>source</th><th>line</th><th>reason</th><th>raw</th></tr>{qrows}</table>
<h2>Flags (kept, for a person to look at; red dots are price jumps)</h2>{details}
</body></html>"""


def write_report(folder: Path, name: str, text: str) -> Path:
    """Write one report file atomically and return its path."""
    path = folder / name
    write_atomic(path, text.encode())
    return path

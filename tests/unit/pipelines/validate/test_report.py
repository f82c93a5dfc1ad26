"""The ingest run's summary page and its price charts: rows, links, escaping, the quarantine."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from testkit.files import utc

from pipelines.validate.report import price_chart_svg, render_summary

EVIL = "<script>alert(1)</script>"
ESCAPED_EVIL = "&lt;script&gt;alert(1)&lt;/script&gt;"


class _PageParser(HTMLParser):
    """Collects the headings, the body rows of each table in order, the links and the charts."""

    def __init__(self) -> None:
        super().__init__()
        self.h1: list[str] = []
        self.h2: list[str] = []
        self.h3: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.links: list[tuple[str, str]] = []
        self.svgs = 0
        self._text: list[str] | None = None
        self._row: list[str] | None = None
        self._href: str | None = None
        self._link_start = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "h3", "td"):
            self._text = []
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._link_start = len(self._text or [])
        elif tag == "svg":
            self.svgs += 1

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or [])
        if tag in ("h1", "h2", "h3"):
            getattr(self, tag).append(text)
        elif tag == "td" and self._row is not None:
            self._row.append(text)
        elif tag == "a" and self._href is not None:
            self.links.append((self._href, "".join((self._text or [])[self._link_start :])))
            self._href = None
        elif tag == "tr" and self._row:
            self.tables[-1].append(self._row)
        if tag in ("h1", "h2", "h3", "td"):
            self._text = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def _parse(page: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(page)
    parser.close()
    return parser


def _series(symbol: str = "EURUSD", **changes: Any) -> dict[str, Any]:
    series: dict[str, Any] = {
        "symbol": symbol,
        "timeframe": "M1",
        "side": "bid",
        "sources": ["DAT_ASCII_EURUSD_M1_2017.csv", "extra.csv"],
        "rows_read": 1_440,
        "rows_added": 1_400,
        "rows_duplicate": 30,
        "rows_conflicting": 2,
        "rows_quarantined": 8,
        "flags": {"jumps": 3, "gaps": 2, "missing_bars": 17},
        "expectations": "passed",
        "data_docs": "validation-1.html",
        "chart": "",
    }
    series.update(changes)
    return series


def _quarantined(n: int) -> list[dict[str, Any]]:
    return [
        {
            "source": "DAT_ASCII_EURUSD_M1_2017.csv",
            "line": 10 + i,
            "reason": "high below low",
            "raw": f"20170102 0{i}0000;1.1;1.0;1.2;1.1;0",
        }
        for i in range(n)
    ]


def _hourly(n: int, start: datetime | None = None) -> tuple[list[datetime], list[float]]:
    first = start or utc(2017, 1, 9)
    return [first + timedelta(hours=i) for i in range(n)], [1.1 + 0.001 * i for i in range(n)]


def _points(svg: str) -> list[tuple[float, float]]:
    found = re.search(r'points="([^"]*)"', svg)
    assert found is not None
    pairs = (pair.split(",") for pair in found.group(1).split())
    return [(float(x), float(y)) for x, y in pairs]


def test_render_summary_one_series_row_shows_counts_flags_and_link() -> None:
    # Arrange
    series = [_series()]

    # Act
    parsed = _parse(render_summary("20240102-0930", series, []))

    # Assert
    assert parsed.h1 == ["Ingest 20240102-0930"]
    assert parsed.tables[0] == [
        [
            "EURUSD M1 bid",
            "DAT_ASCII_EURUSD_M1_2017.csv, extra.csv",
            "1440",
            "1400",
            "30",
            "2",
            "8",
            "3",
            "2 (17)",
            "passed",
            "open",
        ]
    ]
    assert parsed.links == [("validation-1.html", "open")]


def test_render_summary_series_without_data_docs_or_flags_has_no_link_and_zero_flags() -> None:
    # Arrange
    series = [_series(data_docs=None, flags={}, sources=[], expectations="")]

    # Act
    parsed = _parse(render_summary("r", series, []))

    # Assert
    row = parsed.tables[0][0]
    assert row[1] == ""
    assert row[7:] == ["0", "0 (0)", "", ""]
    assert parsed.links == []


def test_render_summary_two_series_one_row_and_one_flags_block_each() -> None:
    # Arrange
    series = [_series("EURUSD"), _series("USDJPY", timeframe="H1")]

    # Act
    parsed = _parse(render_summary("r", series, []))

    # Assert
    assert [row[0] for row in parsed.tables[0]] == ["EURUSD M1 bid", "USDJPY H1 bid"]
    assert parsed.h3 == ["EURUSD M1 bid", "USDJPY H1 bid"]


def test_render_summary_quarantine_sample_listed_row_by_row_with_count_in_heading() -> None:
    # Arrange
    quarantine = _quarantined(3)

    # Act
    parsed = _parse(render_summary("r", [_series()], quarantine))

    # Assert
    assert "Quarantined rows (first 3)" in parsed.h2
    assert parsed.tables[1] == [
        [q["source"], str(q["line"]), q["reason"], q["raw"]] for q in quarantine
    ]


def test_render_summary_empty_quarantine_gives_empty_table() -> None:
    # Act
    parsed = _parse(render_summary("r", [_series()], []))

    # Assert
    assert "Quarantined rows (first 0)" in parsed.h2
    assert parsed.tables[1] == []


def test_render_summary_hostile_names_escaped_everywhere() -> None:
    # Arrange
    series = [_series(EVIL, sources=[EVIL], expectations=EVIL, data_docs='x" onclick="y')]
    quarantine = [{"source": EVIL, "line": EVIL, "reason": EVIL, "raw": EVIL}]

    # Act
    page = render_summary(EVIL, series, quarantine)

    # Assert
    assert EVIL not in page
    assert 'onclick="y"' not in page
    assert page.count(ESCAPED_EVIL) >= 9
    parsed = _parse(page)
    assert parsed.h1 == [f"Ingest {EVIL}"]
    assert parsed.tables[1] == [[EVIL] * 4]
    assert parsed.links == [('x" onclick="y', "open")]


def test_render_summary_chart_and_flags_shown_under_each_series() -> None:
    # Arrange
    ts, close = _hourly(50)
    chart = price_chart_svg(ts, close, [(ts[10], close[10])])
    series = [_series(chart=chart, flags={"jumps": 1, "gaps": 0, "missing_bars": 0})]

    # Act
    page = render_summary("r", series, [])

    # Assert
    assert chart in page
    assert _parse(page).svgs == 1
    assert "&quot;jumps&quot;: 1" in page


def test_price_chart_svg_fewer_than_two_closes_returns_empty_string() -> None:
    # Arrange
    ts, close = _hourly(1)

    # Act
    svg = price_chart_svg(ts, close, [])

    # Assert
    assert svg == ""


def test_price_chart_svg_rising_closes_span_the_plot_from_bottom_left_to_top_right() -> None:
    # Arrange
    ts, close = _hourly(50)

    # Act
    svg = price_chart_svg(ts, close, [], width=900, height=180)

    # Assert
    points = _points(svg)
    assert len(points) == 50
    assert points[0] == (40.0, 160.0)
    assert points[-1] == (890.0, 10.0)
    assert "2017-01-09" in svg
    assert "2017-01-11" in svg


def test_price_chart_svg_marks_drawn_as_one_dot_each_on_the_line() -> None:
    # Arrange
    ts, close = _hourly(50)
    marks = [(ts[0], close[0]), (ts[49], close[49])]

    # Act
    svg = price_chart_svg(ts, close, marks)

    # Assert
    dots = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', svg)
    assert [(float(x), float(y)) for x, y in dots] == [(40.0, 160.0), (890.0, 10.0)]


def test_price_chart_svg_long_series_thinned_to_about_one_point_per_pixel() -> None:
    # Arrange
    ts, close = _hourly(5_000)

    # Act
    svg = price_chart_svg(ts, close, [], width=900)

    # Assert: every 5th of 5,000 closes is drawn.
    assert len(_points(svg)) == 1_000

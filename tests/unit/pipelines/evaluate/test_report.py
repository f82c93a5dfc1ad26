"""The walk-forward report page: its headline, its tables, its charts and its size."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest
from plotly.offline import get_plotlyjs

from pipelines.backtest.tearsheet import MAX_POINTS
from pipelines.evaluate.report import (
    TOP_FEATURES,
    equity_figure_html,
    importance_figure_html,
    walkforward_figures,
    walkforward_report_html,
)

CASH = 10_000.0
START_NS = 1_577_836_800_000_000_000  # 2020-01-01T00:00:00Z
HOUR_NS = 3_600_000_000_000
N_BARS = 3_000
EVIL = "<script>alert(1)</script>"


class _PageParser(HTMLParser):
    """Collects the headings, the metric cells, the table rows and the scripts of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.metrics: dict[str, str] = {}
        self.rows: dict[str, list[tuple[str, list[str]]]] = {}
        self.script_sources: list[str] = []
        self.notes: list[str] = []
        self.verdicts: list[str] = []
        self._tag: str | None = None
        self._table: str | None = None
        self._in_body = False
        self._label: str | None = None
        self._cell: list[str] | None = None
        self._row: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        css = found.get("class") or ""
        if tag == "script" and found.get("src"):
            self.script_sources.append(found["src"] or "")
        elif tag == "table":
            self._table = css
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self._row = (css, [])
        elif tag == "td":
            self._cell = []
            self._tag = "label" if css == "label" else "value" if css == "value" else "td"
        elif tag in ("h2", "p"):
            self._tag = f"{tag}.{css}"
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._cell or [])
        if tag == "td" and self._tag == "label":
            self._label = text
        elif tag == "td" and self._tag == "value" and self._label is not None:
            self.metrics[self._label] = text
        elif tag == "td" and self._row is not None:
            self._row[1].append(text)
        elif tag == "tr" and self._row is not None and self._table:
            self.rows.setdefault(self._table, []).append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None
        elif tag == "h2":
            self.h2.append(text)
        elif tag == "p" and self._tag == "p.note":
            self.notes.append(text)
        elif tag == "p" and (self._tag or "").startswith("p.verdict"):
            self.verdicts.append(text)
        if tag in ("td", "h2", "p"):
            self._tag, self._cell = None, None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(page)
    return parser


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


def _fold(index: int, test_start: int, test_end: int, groups: list[int]) -> dict[str, Any]:
    return {
        "fold": index,
        "test_groups": groups,
        "train_rows": 2_000 + index,
        "test_rows": 1_000,
        "train_start": _iso(START_NS - 2_000 * HOUR_NS),
        "train_end": _iso(test_start - HOUR_NS),
        "test_start": _iso(test_start),
        "test_end": _iso(test_end),
        "params": {"learning_rate": 0.0523, "num_leaves": 31},
        "n_trials": 20,
        "sharpe": 0.8 - 0.5 * index,
        "total_return": 0.02 * (1 - index),
        "n": 1_000,
        "auc": 0.5312,
        "logloss": 0.6912,
        "accuracy": 0.5234,
        "base_rate": 0.5,
        "brier": 0.2488,
        "ece": 0.0123,
        "pbo": 0.25,
        "seconds": 1.5,
    }


def _summary(scheme: str = "rolling", n_bars: int = N_BARS) -> dict[str, Any]:
    third = n_bars // 3
    if scheme == "cpcv":
        windows = [(0, n_bars - 1, [0, 1]), (0, 2 * third, [0, 2]), (third, n_bars - 1, [1, 2])]
    else:
        windows = [(i * third, (i + 1) * third - 1, []) for i in range(3)]
    folds = [
        _fold(i, START_NS + lo * HOUR_NS, START_NS + hi * HOUR_NS, groups)
        for i, (lo, hi, groups) in enumerate(windows)
    ]
    summary: dict[str, Any] = {
        "scheme": scheme,
        "model": "lightgbm",
        "oos": {
            "sharpe": 1.2345,
            "sharpe_ci": [0.5123, 1.9801],
            "ci_level": 0.95,
            "psr": 0.98765,
            "dsr": 0.81234,
            "total_return": 0.1234,
            "max_drawdown": -0.0567,
            "hit_rate": 0.5312,
            "n_trades": 1_234,
            "newey_west_t": 2.3456,
            "newey_west_p": 0.01894,
            "min_track_record_bars": 1_500.4,
            "spa": {
                "vs_flat_p": 0.0123,
                "vs_buy_and_hold_p": 0.0456,
                "models_vs_flat_p": 0.0789,
                "models": ["model", "logistic", "always_long"],
            },
            "candidates": {"logistic": 0.4321, "always_long": None},
            "gross": {"sharpe": 1.8765, "sharpe_ci": [1.1111, 2.6543], "total_return": 0.2345},
            "start": _iso(START_NS),
            "end": _iso(START_NS + n_bars * HOUR_NS),
        },
        "folds": folds,
        "trials": {"total": 60, "sharpe_variance": 0.1, "per_fold": 20},
        "pbo": 0.25,
    }
    if scheme == "cpcv":
        summary["paths"] = [0.9, 1.1, None, -0.2, 1.4]
    return summary


def _arrays(n_bars: int = N_BARS, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gross = rng.normal(0.0002, 0.003, n_bars)
    net = gross - 0.0001
    ts = START_NS + np.arange(n_bars, dtype=np.int64) * HOUR_NS
    return ts, CASH * np.cumprod(1.0 + net), gross


def _importance(n: int = 30) -> dict[str, float]:
    weights = np.linspace(1.0, 0.1, n)
    return {f"feature_{i:02d}": float(w / weights.sum()) for i, w in enumerate(weights)}


def _page(
    summary: dict[str, Any] | None = None,
    *,
    importance: dict[str, float] | None = None,
    audit: dict[str, Any] | None = None,
    n_bars: int = N_BARS,
    title: str = "EURUSD H1 walk-forward",
) -> str:
    ts, equity, gross = _arrays(n_bars)
    return walkforward_report_html(
        _summary() if summary is None else summary,
        ts=ts,
        equity=equity,
        gross_returns=gross,
        initial_cash=CASH,
        importance=_importance() if importance is None else importance,
        title=title,
        subtitle="rolling, 3 folds",
        audit=audit,
    )


def _audit(passed_random_walk: bool) -> dict[str, Any]:
    return {
        "passed": passed_random_walk,
        "controls": [
            {
                "control": "shuffled_labels",
                "passed": True,
                "reason": "no edge: as it should be",
                "gross_sharpe": 0.12,
                "gross_sharpe_ci_99": [-0.9, 1.1],
                "net_sharpe": -0.3,
                "net_sharpe_ci_99": [-1.4, 0.8],
            },
            {
                "control": "random_walk",
                "passed": passed_random_walk,
                "reason": "gross Sharpe 99% interval [0.50, 2.10] excludes 0",
                "gross_sharpe": 1.3,
                "gross_sharpe_ci_99": [0.5, 2.1],
                "net_sharpe": 0.9,
                "net_sharpe_ci_99": [0.1, 1.7],
            },
        ],
    }


def test_walkforward_report_html_page_embeds_plotly_once_without_external_scripts() -> None:
    # Arrange
    plotly = get_plotlyjs()

    # Act
    page = _page()

    # Assert
    assert page.count(plotly) == 1
    assert _parse(page).script_sources == []
    assert re.search(r"<script[^>]*\bsrc\s*=", page) is None


def test_walkforward_report_html_sections_appear_in_order() -> None:
    # Arrange
    expected = [
        "Headline",
        "Sharpe interval",
        "Equity (out of sample)",
        "Drawdown",
        "Folds",
        "Feature importance",
    ]

    # Act
    headings = _parse(_page()).h2

    # Assert
    assert headings == expected


def test_walkforward_report_html_headline_shows_figures_formatted() -> None:
    # Arrange
    page = _page()

    # Act
    metrics = _parse(page).metrics

    # Assert
    assert metrics["Sharpe (ann., after costs)"] == "1.23"
    assert metrics["Sharpe 95% interval"] == "[0.51, 1.98]"
    assert metrics["PSR"] == "0.988"
    assert metrics["DSR"] == "0.812"
    assert metrics["Total return"] == "12.34%"
    assert metrics["Max drawdown"] == "-5.67%"
    assert metrics["Hit rate"] == "53.12%"
    assert metrics["Trades"] == "1,234"
    assert metrics["Trials (total)"] == "60"
    assert metrics["PBO"] == "0.250"
    assert metrics["Newey–West t"] == "2.35"
    assert metrics["Newey–West p"] == "0.019"
    assert metrics["Min track record"] == "1,500 bars"
    assert metrics["SPA p vs flat"] == "0.012"
    assert metrics["SPA p vs buy and hold"] == "0.046"
    assert metrics["SPA p, models vs flat"] == "0.079"
    assert metrics["Sharpe gross of costs"] == "1.88"
    assert metrics["Gross 95% interval"] == "[1.11, 2.65]"
    assert metrics["Total return gross"] == "23.45%"
    assert metrics["SPA models"] == "model, logistic, always_long"
    assert "1.23</span> out-of-sample Sharpe" in page


def test_walkforward_report_html_candidates_table_lists_each_candidate() -> None:
    # Arrange
    page = _page()

    # Act
    rows = _parse(page).rows["data"]

    # Assert
    assert [cells for _, cells in rows] == [["logistic", "0.43"], ["always_long", "n/a"]]


def test_walkforward_report_html_walk_forward_fold_table_has_one_row_per_fold() -> None:
    # Arrange
    summary = _summary()

    # Act
    rows = _parse(_page(summary)).rows["data folds"]

    # Assert
    assert len(rows) == len(summary["folds"]) == 3
    first = rows[0][1]
    assert first[0] == "0"
    assert first[2] == "2020-01-01 → 2020-02-11 15:00"
    assert first[6:14] == ["0.80", "2.00%", "0.531", "0.691", "0.523", "0.249", "0.012", "0.250"]
    assert first[14] == "learning_rate=0.0523, num_leaves=31"


def test_walkforward_report_html_cpcv_fold_table_adds_test_groups() -> None:
    # Arrange
    summary = _summary("cpcv")

    # Act
    rows = _parse(_page(summary)).rows["data folds"]

    # Assert
    assert len(rows) == 3
    assert [cells[1] for _, cells in rows] == ["0, 1", "0, 2", "1, 2"]


def test_walkforward_report_html_none_values_render_as_na() -> None:
    # Arrange
    summary = _summary()
    for key in ("sharpe", "sharpe_ci", "psr", "dsr", "min_track_record_bars", "newey_west_p"):
        summary["oos"][key] = None
    summary["oos"]["spa"]["vs_flat_p"] = None
    summary["oos"]["gross"]["sharpe_ci"] = [None, 2.0]
    summary["pbo"] = None
    summary["folds"][1].update(sharpe=None, pbo=None, auc=None)

    # Act
    parsed = _parse(_page(summary))

    # Assert
    metrics = parsed.metrics
    for label in (
        "Sharpe (ann., after costs)",
        "Sharpe 95% interval",
        "PSR",
        "DSR",
        "PBO",
        "Min track record",
        "Newey–West p",
        "SPA p vs flat",
    ):
        assert metrics[label] == "n/a", label
    assert metrics["Gross 95% interval"] == "[n/a, 2.00]"
    second = parsed.rows["data folds"][1][1]
    assert (second[6], second[8], second[13]) == ("n/a", "n/a", "n/a")


def test_walkforward_report_html_missing_sections_of_summary_render_as_na() -> None:
    # Arrange
    summary: dict[str, Any] = {"scheme": "rolling", "folds": []}

    # Act
    parsed = _parse(_page(summary))

    # Assert
    assert set(parsed.metrics.values()) == {"n/a"}
    assert "no folds" in parsed.notes
    assert "no candidate models" in parsed.notes


def test_walkforward_report_html_text_from_input_is_escaped() -> None:
    # Arrange
    summary = _summary()
    summary["model"] = EVIL
    summary["oos"]["candidates"] = {EVIL: 0.5}
    summary["oos"]["spa"]["models"] = ["model", EVIL]
    summary["folds"][0]["params"] = {EVIL: EVIL}
    audit = _audit(False)
    audit["controls"][1]["control"] = EVIL
    audit["controls"][1]["reason"] = EVIL

    # Act
    page = _page(summary, importance={EVIL: 1.0}, audit=audit, title=EVIL)

    # Assert
    assert EVIL not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6


def test_walkforward_report_html_without_audit_has_no_audit_section() -> None:
    # Arrange
    summary = _summary()

    # Act
    parsed = _parse(_page(summary, audit=None))

    # Assert
    assert "Leakage audit" not in parsed.h2
    assert "data audit" not in parsed.rows
    assert parsed.verdicts == []


def test_walkforward_report_html_failed_control_shows_as_failed() -> None:
    # Arrange
    audit = _audit(False)

    # Act
    parsed = _parse(_page(audit=audit))

    # Assert
    assert parsed.h2[-1] == "Leakage audit"
    assert parsed.verdicts[0].startswith("Leakage audit failed")
    rows = parsed.rows["data audit"]
    assert [(css, cells[0], cells[1]) for css, cells in rows] == [
        ("pass", "shuffled_labels", "passed"),
        ("fail", "random_walk", "failed"),
    ]
    assert rows[1][1][3] == "[0.50, 2.10]"


def test_walkforward_report_html_passed_audit_shows_as_passed() -> None:
    # Arrange
    audit = _audit(True)

    # Act
    parsed = _parse(_page(audit=audit))

    # Assert
    assert parsed.verdicts[0].startswith("Leakage audit passed")
    assert [css for css, _ in parsed.rows["data audit"]] == ["pass", "pass"]


def test_walkforward_report_html_empty_importance_shows_note() -> None:
    # Arrange
    importance: dict[str, float] = {}

    # Act
    page = _page(importance=importance)

    # Assert
    assert "no importances" in _parse(page).notes
    assert 'id="walkforward-importance"' not in page


def test_walkforward_report_html_million_points_page_stays_small() -> None:
    # Arrange
    n_bars = 1_000_000

    # Act
    page = _page(_summary(n_bars=n_bars), n_bars=n_bars)

    # Assert
    assert len(page.encode()) < 8_000_000


def test_walkforward_figures_long_series_thinned_to_max_points() -> None:
    # Arrange
    ts, equity, gross = _arrays(200_000)

    # Act
    figures = walkforward_figures(
        _summary(n_bars=200_000),
        ts=ts,
        equity=equity,
        gross_returns=gross,
        initial_cash=CASH,
        importance=_importance(),
    )

    # Assert
    lines = [*figures["equity"].data, *figures["drawdown"].data]
    assert len(lines) == 3
    assert all(len(trace.y) <= MAX_POINTS for trace in lines)


def test_walkforward_figures_gross_line_compounds_gross_returns() -> None:
    # Arrange
    ts, equity, gross = _arrays()

    # Act
    figure = walkforward_figures(
        _summary(), ts=ts, equity=equity, gross_returns=gross, initial_cash=CASH, importance={}
    )["equity"]

    # Assert
    after, before = figure.data
    assert after.y[-1] == pytest.approx(equity[-1])
    assert before.y[-1] == pytest.approx(CASH * np.prod(1.0 + gross))
    assert before.y[0] == pytest.approx(CASH * (1.0 + gross[0]))


def test_walkforward_figures_drawdown_initial_cash_is_first_peak() -> None:
    # Arrange
    ts = START_NS + np.arange(4, dtype=np.int64) * HOUR_NS
    equity = np.array([9_000.0, 9_500.0, 11_000.0, 9_900.0])

    # Act
    figure = walkforward_figures(
        {}, ts=ts, equity=equity, gross_returns=np.zeros(4), initial_cash=CASH, importance={}
    )["drawdown"]

    # Assert
    assert np.allclose(figure.data[0].y, [-10.0, -5.0, 0.0, -10.0])


def test_walkforward_figures_walk_forward_shades_each_test_window() -> None:
    # Arrange
    summary = _summary()
    ts, equity, gross = _arrays()

    # Act
    figure = walkforward_figures(
        summary, ts=ts, equity=equity, gross_returns=gross, initial_cash=CASH, importance={}
    )["equity"]

    # Assert
    shaded = [shape for shape in figure.layout.shapes if shape.type == "rect"]
    assert len(shaded) == 3
    assert str(shaded[0].x0).startswith("2020-01-01")


def test_walkforward_figures_cpcv_has_path_chart_and_no_shading() -> None:
    # Arrange
    summary = _summary("cpcv")
    ts, equity, gross = _arrays()

    # Act
    figures = walkforward_figures(
        summary, ts=ts, equity=equity, gross_returns=gross, initial_cash=CASH, importance={}
    )

    # Assert
    assert not [shape for shape in figures["equity"].layout.shapes if shape.type == "rect"]
    histogram = figures["paths"].data[0]
    assert sorted(histogram.x) == [-0.2, 0.9, 1.1, 1.4]
    assert "1 n/a" in figures["paths"].layout.title.text


def test_walkforward_report_html_cpcv_page_has_paths_section() -> None:
    # Arrange
    summary = _summary("cpcv")

    # Act
    page = _page(summary)

    # Assert
    assert "Backtest paths" in _parse(page).h2
    assert 'id="walkforward-paths"' in page


def test_walkforward_figures_walk_forward_has_no_path_chart() -> None:
    # Arrange
    summary = _summary()
    summary["paths"] = [1.0, 2.0]
    ts, equity, gross = _arrays()

    # Act
    figures = walkforward_figures(
        summary, ts=ts, equity=equity, gross_returns=gross, initial_cash=CASH, importance={}
    )

    # Assert
    assert "paths" not in figures


def test_walkforward_figures_sharpe_interval_draws_both_intervals_and_zero_line() -> None:
    # Arrange
    ts, equity, gross = _arrays()

    # Act
    figure = walkforward_figures(
        _summary(), ts=ts, equity=equity, gross_returns=gross, initial_cash=CASH, importance={}
    )["sharpe_interval"]

    # Assert
    intervals = {trace.name: list(trace.x) for trace in figure.data if len(trace.x) == 2}
    assert intervals == {"after costs": [0.5123, 1.9801], "gross of costs": [1.1111, 2.6543]}
    points = {trace.name: trace.x[0] for trace in figure.data if len(trace.x) == 1}
    assert points["after costs"] == 1.2345
    assert points["candidate: logistic"] == 0.4321
    assert "candidate: always_long" not in points
    assert [shape.x0 for shape in figure.layout.shapes] == [0.0]


def test_walkforward_figures_fold_sharpe_has_one_bar_per_fold() -> None:
    # Arrange
    ts, equity, gross = _arrays()

    # Act
    figure = walkforward_figures(
        _summary(), ts=ts, equity=equity, gross_returns=gross, initial_cash=CASH, importance={}
    )["fold_sharpe"]

    # Assert
    bars = figure.data[0]
    assert list(bars.x) == ["fold 0", "fold 1", "fold 2"]
    assert list(bars.y) == pytest.approx([0.8, 0.3, -0.2])


def test_walkforward_figures_many_features_keeps_top_25_largest_first() -> None:
    # Arrange
    importance = _importance(40)
    ts, equity, gross = _arrays()

    # Act
    figure = walkforward_figures(
        _summary(),
        ts=ts,
        equity=equity,
        gross_returns=gross,
        initial_cash=CASH,
        importance=importance,
    )["importance"]

    # Assert
    bars = figure.data[0]
    assert len(bars.y) == TOP_FEATURES
    assert list(bars.y) == list(importance)[:TOP_FEATURES]
    assert list(bars.x) == sorted(bars.x, reverse=True)


def test_walkforward_report_html_mismatched_gross_returns_raise_value_error() -> None:
    # Arrange
    ts, equity, gross = _arrays()

    # Act / Assert
    with pytest.raises(ValueError, match="gross_returns has 2999 values but equity has 3000"):
        walkforward_report_html(
            _summary(),
            ts=ts,
            equity=equity,
            gross_returns=gross[:-1],
            initial_cash=CASH,
            importance={},
            title="t",
        )


def test_equity_figure_html_standalone_page_has_equity_and_drawdown_only() -> None:
    # Arrange
    ts, equity, gross = _arrays()

    # Act
    page = equity_figure_html(
        _summary(), ts=ts, equity=equity, initial_cash=CASH, gross_returns=gross, title=EVIL
    )

    # Assert
    assert page.count(get_plotlyjs()) == 1
    assert _parse(page).h2 == ["Equity", "Drawdown"]
    assert 'id="walkforward-equity"' in page
    assert 'id="walkforward-drawdown"' in page
    assert EVIL not in page


def test_equity_figure_html_mismatched_ts_raises_value_error() -> None:
    # Arrange
    ts, equity, _ = _arrays()

    # Act / Assert
    with pytest.raises(ValueError, match="ts has 2999 values but equity has 3000"):
        equity_figure_html({}, ts=ts[:-1], equity=equity, initial_cash=CASH)


def test_importance_figure_html_standalone_page_has_importance_chart() -> None:
    # Arrange
    importance = _importance(5)

    # Act
    page = importance_figure_html(importance, title="Importance")

    # Assert
    assert page.count(get_plotlyjs()) == 1
    assert 'id="walkforward-importance"' in page
    assert "feature_04" in page


def test_importance_figure_html_empty_importance_shows_note() -> None:
    # Arrange
    importance: dict[str, float] = {}

    # Act
    page = importance_figure_html(importance)

    # Assert
    assert _parse(page).notes == ["no importances"]


def test_importance_figure_html_top_below_one_raises_value_error() -> None:
    # Arrange
    importance = _importance(5)

    # Act / Assert
    with pytest.raises(ValueError, match="top must be at least 1, got 0"):
        importance_figure_html(importance, top=0)

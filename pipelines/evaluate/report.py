"""The report of a walk-forward or CPCV research job: one self-contained HTML page.

The page holds, top to bottom: the headline figures (out-of-sample Sharpe and its interval,
PSR, DSR, PBO, Newey–West, SPA, gross of costs, candidate models), a forest chart of the Sharpe
intervals, the out-of-sample equity after and before costs with the folds' test windows shaded
(walk-forward only: CPCV test sets overlap in time), for CPCV the distribution of the backtest
paths' Sharpe ratios, the drawdown, a table and a chart of the folds, the feature importances
and, when given, the leakage audit. Like the backtest tearsheet it is built from
:mod:`pipelines.report_kit`, embeds Plotly's script once and thins long series with
:func:`downsample_minmax`, so it opens offline and stays a few megabytes for millions of bars.

Every figure is read from the job's JSON summary (see
:meth:`pipelines.evaluate.walkforward.WalkForwardResult.summary`); any of them may be missing
or ``None`` and then shows as ``n/a``. Ratios and returns are fractions: returns and drawdowns
are shown as percentages, ratios with two or three decimals, probabilities with three.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core.records import dig, finite_number
from pipelines.backtest.tearsheet import downsample_minmax, underwater_figure
from pipelines.report_kit import (
    CHART_HEIGHT,
    LINE_COLOUR,
    LOSS_COLOUR,
    MUTED_COLOUR,
    WIN_COLOUR,
    Column,
    chart_layout,
    chart_note,
    chart_times,
    figure_div,
    metric_grid,
    page,
    table,
)

TOP_FEATURES = 25
"""Most features the importance chart shows."""
MAX_LABELLED_FOLDS = 24
"""Most fold windows labelled with their number on the equity chart."""

_NA = "n/a"
_CANDIDATE = "#9467bd"
_SHADES = ("#1f77b4", "#ff7f0e")


def walkforward_report_html(
    summary: Mapping[str, Any],
    *,
    ts: np.ndarray,
    equity: np.ndarray,
    gross_returns: np.ndarray,
    initial_cash: float,
    importance: Mapping[str, float],
    title: str,
    subtitle: str = "",
    audit: Mapping[str, Any] | None = None,
) -> str:
    """Return the report of a walk-forward or CPCV job as one self-contained HTML page.

    Parameters
    ----------
    summary
        The job's JSON summary: ``scheme``, ``oos`` (the out-of-sample statistics), ``folds``,
        ``trials``, ``pbo`` and, for CPCV, ``paths`` (annualized Sharpe per backtest path).
    ts
        Out-of-sample bar timestamps (integer nanoseconds or ``datetime64``, UTC), one per
        ``equity`` value.
    equity
        Out-of-sample account value after costs at each bar, starting from ``initial_cash``.
    gross_returns
        Out-of-sample per-bar returns before costs, one per bar; the gross equity drawn is
        ``initial_cash · cumprod(1 + gross_returns)``.
    initial_cash
        Account value before the first out-of-sample bar (the drawdown's first peak).
    importance
        Feature name to normalized importance, largest first; the top
        :data:`TOP_FEATURES` are drawn.
    title, subtitle
        The page's heading and the line under it (plain text; escaped here).
    audit
        Optional leakage audit (``passed`` and ``controls``, see
        :meth:`pipelines.evaluate.audit.AuditResult.as_dict`), shown in its own section.

    Returns
    -------
    str
        The HTML page, with Plotly's script embedded once.
    """
    figures = walkforward_figures(
        summary,
        ts=ts,
        equity=equity,
        gross_returns=gross_returns,
        initial_cash=initial_cash,
        importance=importance,
    )
    sections = [
        ("Headline", _headline(summary)),
        ("Sharpe interval", _div(figures["sharpe_interval"], "sharpe-interval")),
        ("Equity (out of sample)", _div(figures["equity"], "equity")),
    ]
    if "paths" in figures:
        sections.append(("Backtest paths", _div(figures["paths"], "paths")))
    sections += [
        ("Drawdown", _div(figures["drawdown"], "drawdown")),
        ("Folds", _fold_table(summary) + "\n" + _div(figures["fold_sharpe"], "fold-sharpe")),
        ("Feature importance", _importance_block(figures)),
    ]
    if audit is not None:
        sections.append(("Leakage audit", _audit_block(audit)))
    return page(title, sections, subtitle=subtitle, meta=_meta_line(summary))


def walkforward_figures(
    summary: Mapping[str, Any],
    *,
    ts: np.ndarray,
    equity: np.ndarray,
    gross_returns: np.ndarray,
    initial_cash: float,
    importance: Mapping[str, float],
) -> dict[str, go.Figure]:
    """Return the report's charts by name, line series thinned by :func:`downsample_minmax`.

    The names are ``sharpe_interval``, ``equity``, ``drawdown``, ``fold_sharpe``, then
    ``importance`` when there are importances and ``paths`` for a CPCV job with path Sharpe
    ratios; the parameters are those of :func:`walkforward_report_html`.
    """
    times, values, gross = _series(ts, equity, gross_returns, initial_cash)
    figures = {
        "sharpe_interval": _interval_figure(summary),
        "equity": _equity_figure(summary, times, values, gross, initial_cash),
        "drawdown": _drawdown_figure(times, values, initial_cash),
        "fold_sharpe": _fold_sharpe_figure(summary),
    }
    if importance:
        figures["importance"] = importance_figure(importance)
    if _is_cpcv(summary) and summary.get("paths") is not None:
        figures["paths"] = _paths_figure(summary["paths"])
    return figures


def equity_figure_html(
    summary: Mapping[str, Any],
    *,
    ts: np.ndarray,
    equity: np.ndarray,
    initial_cash: float,
    gross_returns: np.ndarray | None = None,
    title: str = "Out-of-sample equity",
    subtitle: str = "",
) -> str:
    """Return a standalone HTML page of the out-of-sample equity and drawdown charts.

    Parameters
    ----------
    summary
        The job's JSON summary; only ``scheme`` and ``folds`` are read, to shade the folds'
        test windows (an empty mapping draws no windows).
    ts, equity, initial_cash
        As for :func:`walkforward_report_html`.
    gross_returns
        Optional per-bar returns before costs; when given the gross equity is drawn too.
    title, subtitle
        The page's heading and the line under it (plain text; escaped here).

    Returns
    -------
    str
        The HTML page, with Plotly's script embedded once.
    """
    times, values, gross = _series(ts, equity, gross_returns, initial_cash)
    sections = [
        ("Equity", _div(_equity_figure(summary, times, values, gross, initial_cash), "equity")),
        ("Drawdown", _div(_drawdown_figure(times, values, initial_cash), "drawdown")),
    ]
    return page(title, sections, subtitle=subtitle)


def importance_figure_html(
    importance: Mapping[str, float],
    *,
    title: str = "Feature importance",
    subtitle: str = "",
    top: int = TOP_FEATURES,
) -> str:
    """Return a standalone HTML page of the bar chart of the ``top`` feature importances.

    Parameters
    ----------
    importance
        Feature name to normalized importance, largest first; empty gives a page saying so.
    title, subtitle
        The page's heading and the line under it (plain text; escaped here).
    top
        Most features drawn (at least 1).

    Returns
    -------
    str
        The HTML page, with Plotly's script embedded once.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    figures = {"importance": importance_figure(importance, top)} if importance else {}
    return page(title, [("Feature importance", _importance_block(figures))], subtitle=subtitle)


# --- reading the summary -------------------------------------------------------------------


def _pair(value: object) -> tuple[float | None, float | None]:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        return finite_number(value[0]), finite_number(value[1])
    return None, None


def _folds(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    folds = summary.get("folds")
    if not isinstance(folds, Sequence) or isinstance(folds, str):
        return []
    return [fold for fold in folds if isinstance(fold, Mapping)]


def _is_cpcv(summary: Mapping[str, Any]) -> bool:
    return summary.get("scheme") == "cpcv"


def _instant(value: object) -> datetime | None:
    # Naive UTC, to sit on the same axis as the datetime64 bar times.
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


# --- formatting ----------------------------------------------------------------------------


def _ratio(value: object, digits: int = 2) -> str:
    number = finite_number(value)
    return _NA if number is None else f"{number:,.{digits}f}"


def _pct(value: object) -> str:
    number = finite_number(value)
    return _NA if number is None else f"{number * 100:.2f}%"


def _prob(value: object) -> str:
    return _ratio(value, 3)


def _count(value: object) -> str:
    number = finite_number(value)
    return _NA if number is None else f"{round(number):,}"


def _interval(value: object, digits: int = 2) -> str:
    low, high = _pair(value)
    if low is None and high is None:
        return _NA
    return f"[{_ratio(low, digits)}, {_ratio(high, digits)}]"


def _level(value: object) -> str:
    number = finite_number(value)
    return "" if number is None else f"{number * 100:g}% "


def _moment(value: object) -> str:
    moment = _instant(value)
    if moment is None:
        return _NA if value is None else str(value)
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M")


def _span(start: object, end: object) -> str:
    return f"{_moment(start)} → {_moment(end)}"


def _param(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _params(value: object) -> str:
    if value is None:
        return _NA
    if isinstance(value, Mapping):
        if not value:
            return "defaults"
        return ", ".join(f"{key}={_param(item)}" for key, item in value.items())
    return str(value)


def _names(value: object) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str) and value:
        return ", ".join(str(name) for name in value)
    return _NA


# --- HTML ----------------------------------------------------------------------------------


def _div(figure: go.Figure, name: str) -> str:
    return figure_div(figure, f"walkforward-{name}")


def _meta_line(summary: Mapping[str, Any]) -> str:
    parts = []
    if summary.get("scheme") is not None:
        parts.append(f"scheme {summary['scheme']}")
    if summary.get("model") is not None:
        parts.append(f"model {summary['model']}")
    folds = _folds(summary)
    if folds:
        parts.append(f"{len(folds)} {'splits' if _is_cpcv(summary) else 'folds'}")
    start, end = dig(summary, "oos", "start"), dig(summary, "oos", "end")
    if start is not None or end is not None:
        parts.append(f"out of sample {_span(start, end)}")
    return " · ".join(parts)


def _headline(summary: Mapping[str, Any]) -> str:
    oos = dig(summary, "oos")
    level = _level(dig(oos, "ci_level"))
    lead = (
        f'<p class="headline"><span class="figure">{html.escape(_ratio(dig(oos, "sharpe")))}'
        "</span> out-of-sample Sharpe (annualized, after costs), "
        f"{html.escape(level)}interval {html.escape(_interval(dig(oos, 'sharpe_ci')))}; "
        f"gross of costs {html.escape(_ratio(dig(oos, 'gross', 'sharpe')))} "
        f"{html.escape(_interval(dig(oos, 'gross', 'sharpe_ci')))}</p>"
    )
    track = _count(dig(oos, "min_track_record_bars"))
    cells = [
        ("Sharpe (ann., after costs)", _ratio(dig(oos, "sharpe"))),
        (f"Sharpe {level}interval", _interval(dig(oos, "sharpe_ci"))),
        ("PSR", _prob(dig(oos, "psr"))),
        ("DSR", _prob(dig(oos, "dsr"))),
        ("Total return", _pct(dig(oos, "total_return"))),
        ("Max drawdown", _pct(dig(oos, "max_drawdown"))),
        ("Hit rate", _pct(dig(oos, "hit_rate"))),
        ("Trades", _count(dig(oos, "n_trades"))),
        ("Trials (total)", _count(dig(summary, "trials", "total"))),
        ("PBO", _prob(summary.get("pbo"))),
        ("Newey–West t", _ratio(dig(oos, "newey_west_t"))),
        ("Newey–West p", _prob(dig(oos, "newey_west_p"))),
        ("Min track record", track if track == _NA else f"{track} bars"),
        ("SPA p vs flat", _prob(dig(oos, "spa", "vs_flat_p"))),
        ("SPA p vs buy and hold", _prob(dig(oos, "spa", "vs_buy_and_hold_p"))),
        ("SPA p, models vs flat", _prob(dig(oos, "spa", "models_vs_flat_p"))),
        ("Sharpe gross of costs", _ratio(dig(oos, "gross", "sharpe"))),
        (f"Gross {level}interval", _interval(dig(oos, "gross", "sharpe_ci"))),
        ("Total return gross", _pct(dig(oos, "gross", "total_return"))),
        ("SPA models", _names(dig(oos, "spa", "models"))),
    ]
    return lead + "\n" + metric_grid(cells) + "\n" + _candidates_block(summary)


def _candidates_block(summary: Mapping[str, Any]) -> str:
    candidates = dig(summary, "oos", "candidates")
    heading = "<h3>Candidate models (Sharpe, annualized, after costs)</h3>\n"
    if not isinstance(candidates, Mapping) or not candidates:
        return heading + '<p class="note">no candidate models</p>'
    rows = [[str(name), _ratio(value)] for name, value in candidates.items()]
    return heading + table([Column("Model"), Column("Sharpe", "number")], rows)


_FOLD_COLUMNS = (
    Column("Fold", "number"),
    Column("Train"),
    Column("Test"),
    Column("Train rows", "number"),
    Column("Test rows", "number"),
    Column("Trials", "number"),
    Column("Sharpe", "number"),
    Column("Return", "number"),
    Column("AUC", "number"),
    Column("Log-loss", "number"),
    Column("Accuracy", "number"),
    Column("Brier", "number"),
    Column("ECE", "number"),
    Column("PBO", "number"),
    Column("Best params", "code"),
)
_AUDIT_COLUMNS = (
    Column("Control"),
    Column("Verdict", "status"),
    Column("Gross Sharpe", "number"),
    Column("Gross 99% interval", "number"),
    Column("After-cost Sharpe", "number"),
    Column("After-cost 99% interval", "number"),
    Column("Reason"),
)


def _fold_table(summary: Mapping[str, Any]) -> str:
    folds = _folds(summary)
    if not folds:
        return '<p class="note">no folds</p>'
    groups = any(fold.get("test_groups") for fold in folds)
    columns = list(_FOLD_COLUMNS)
    if groups:
        columns.insert(1, Column("Test groups"))
    rows = []
    for fold in folds:
        row = [
            _NA if fold.get("fold") is None else str(fold["fold"]),
            _span(fold.get("train_start"), fold.get("train_end")),
            _span(fold.get("test_start"), fold.get("test_end")),
            _count(fold.get("train_rows")),
            _count(fold.get("test_rows")),
            _count(fold.get("n_trials")),
            _ratio(fold.get("sharpe")),
            _pct(fold.get("total_return")),
            _prob(fold.get("auc")),
            _prob(fold.get("logloss")),
            _prob(fold.get("accuracy")),
            _prob(fold.get("brier")),
            _prob(fold.get("ece")),
            _prob(fold.get("pbo")),
            _params(fold.get("params")),
        ]
        if groups:
            row.insert(1, _names(fold.get("test_groups")))
        rows.append(row)
    return table(columns, rows, css="folds")


def _importance_block(figures: Mapping[str, go.Figure]) -> str:
    if "importance" not in figures:
        return '<p class="note">no importances</p>'
    return _div(figures["importance"], "importance")


def _audit_block(audit: Mapping[str, Any]) -> str:
    passed = audit.get("passed")
    verdict, css = ("passed", "pass") if passed is True else ("failed", "fail")
    if not isinstance(passed, bool):
        verdict, css = _NA, ""
    banner = (
        f'<p class="verdict {css}">Leakage audit {verdict}: on data with no edge the pipeline '
        "must find none (gross 99% Sharpe interval holds 0, after-cost lower bound ≤ 0).</p>"
    )
    controls = audit.get("controls")
    if not isinstance(controls, Sequence) or isinstance(controls, str) or not controls:
        return banner + '\n<p class="note">no controls</p>'
    rows, classes = [], []
    for control in controls:
        if not isinstance(control, Mapping):
            continue
        ok = control.get("passed")
        classes.append("pass" if ok is True else "fail" if ok is False else "")
        rows.append(
            [
                _NA if control.get("control") is None else str(control["control"]),
                "passed" if ok is True else "failed" if ok is False else _NA,
                _ratio(control.get("gross_sharpe")),
                _interval(control.get("gross_sharpe_ci_99")),
                _ratio(control.get("net_sharpe")),
                _interval(control.get("net_sharpe_ci_99")),
                _NA if control.get("reason") is None else str(control["reason"]),
            ]
        )
    return banner + "\n" + table(_AUDIT_COLUMNS, rows, css="audit", row_classes=classes)


# --- charts --------------------------------------------------------------------------------


def _series(
    ts: np.ndarray, equity: np.ndarray, gross_returns: np.ndarray | None, initial_cash: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    times = chart_times(ts)
    values = np.asarray(equity, dtype=np.float64)
    if len(times) != len(values):
        msg = f"ts has {len(times)} values but equity has {len(values)}: give one time per bar"
        raise ValueError(msg)
    if gross_returns is None:
        return times, values, None
    gross = np.asarray(gross_returns, dtype=np.float64)
    if len(gross) != len(values):
        msg = (
            f"gross_returns has {len(gross)} values but equity has {len(values)}: "
            "give one gross return per bar"
        )
        raise ValueError(msg)
    return times, values, initial_cash * np.cumprod(1.0 + gross)


def _closest(figure: go.Figure) -> go.Figure:
    figure.update_layout(hovermode="closest")
    return figure


def _interval_figure(summary: Mapping[str, Any]) -> go.Figure:
    oos = dig(summary, "oos")
    level = _level(dig(oos, "ci_level"))
    rows = [
        (
            "after costs",
            finite_number(dig(oos, "sharpe")),
            _pair(dig(oos, "sharpe_ci")),
            LINE_COLOUR,
        ),
        (
            "gross of costs",
            finite_number(dig(oos, "gross", "sharpe")),
            _pair(dig(oos, "gross", "sharpe_ci")),
            MUTED_COLOUR,
        ),
    ]
    candidates = dig(oos, "candidates")
    if isinstance(candidates, Mapping):
        rows += [
            (f"candidate: {name}", finite_number(value), (None, None), _CANDIDATE)
            for name, value in candidates.items()
        ]
    figure = go.Figure()
    labels = [html.escape(label) for label, *_ in rows]
    for label, (_, estimate, (low, high), colour) in zip(labels, rows, strict=True):
        if low is not None and high is not None:
            figure.add_trace(
                go.Scatter(
                    x=[low, high],
                    y=[label, label],
                    mode="lines+markers",
                    line={"color": colour, "width": 3},
                    marker={"symbol": "line-ns-open", "size": 14, "color": colour},
                    name=label,
                    showlegend=False,
                    hovertemplate=f"{level}interval %{{x:.2f}}",
                )
            )
        if estimate is not None:
            figure.add_trace(
                go.Scatter(
                    x=[estimate],
                    y=[label],
                    mode="markers",
                    marker={"color": colour, "size": 12, "symbol": "diamond"},
                    name=label,
                    showlegend=False,
                    hovertemplate="Sharpe %{x:.2f}",
                )
            )
    figure.add_vline(x=0.0, line={"color": "#444", "width": 1, "dash": "dash"})
    figure.update_yaxes(
        type="category", categoryorder="array", categoryarray=labels[::-1], automargin=True
    )
    figure.update_layout(
        title_text=f"Out-of-sample Sharpe (annualized) with its {level}bootstrap interval"
    )
    figure = _closest(chart_layout(figure, y_title="", x_title="Sharpe ratio (annualized)"))
    figure.update_layout(height=max(220, 120 + 40 * len(rows)))
    return figure


def _test_windows(summary: Mapping[str, Any]) -> list[tuple[str, datetime, datetime]]:
    if _is_cpcv(summary):
        return []
    windows = []
    for fold in _folds(summary):
        start, end = _instant(fold.get("test_start")), _instant(fold.get("test_end"))
        if start is not None and end is not None:
            windows.append((str(fold.get("fold", "")), start, end))
    return windows


def _equity_figure(
    summary: Mapping[str, Any],
    times: np.ndarray,
    values: np.ndarray,
    gross: np.ndarray | None,
    initial_cash: float,
) -> go.Figure:
    figure = go.Figure()
    x, y = downsample_minmax(times, values)
    figure.add_trace(
        go.Scatter(x=x, y=y, name="after costs", line={"color": LINE_COLOUR, "width": 1.5})
    )
    if gross is not None:
        gx, gy = downsample_minmax(times, gross)
        figure.add_trace(
            go.Scatter(
                x=gx,
                y=gy,
                name="gross of costs",
                line={"color": MUTED_COLOUR, "width": 1, "dash": "dot"},
            )
        )
    figure.add_hline(y=initial_cash, line={"color": "#bbb", "width": 1})
    windows = _test_windows(summary)
    for i, (fold, start, end) in enumerate(windows):
        label = html.escape(fold) if len(windows) <= MAX_LABELLED_FOLDS else None
        figure.add_vrect(
            x0=start,
            x1=end,
            fillcolor=_SHADES[i % 2],
            opacity=0.07,
            line_width=0,
            layer="below",
            annotation_text=label,
            annotation_position="top left",
            annotation_font={"size": 10, "color": "#888"},
        )
    if not len(values):
        chart_note(figure, "no out-of-sample bars")
    shaded = " · shaded: the folds' test windows" if windows else ""
    figure.update_layout(title_text=f"Out-of-sample equity (account currency){shaded}")
    return chart_layout(figure, y_title="equity")


def _drawdown_figure(times: np.ndarray, values: np.ndarray, initial_cash: float) -> go.Figure:
    figure, under = underwater_figure(times, values, initial_cash)
    finite = under[np.isfinite(under)]
    if finite.size:
        figure.update_layout(title_text=f"Drawdown (underwater) · max {finite.min():.2f}%")
    else:
        figure.update_layout(title_text="Drawdown (underwater)")
        chart_note(figure, "no out-of-sample bars")
    return chart_layout(figure, y_title="drawdown (%)")


def _fold_sharpe_figure(summary: Mapping[str, Any]) -> go.Figure:
    folds = _folds(summary)
    figure = go.Figure()
    if folds:
        labels = [html.escape(f"fold {fold.get('fold', i)}") for i, fold in enumerate(folds)]
        sharpes = [finite_number(fold.get("sharpe")) for fold in folds]
        returns = [_pct(fold.get("total_return")) for fold in folds]
        colours = [LOSS_COLOUR if s is not None and s < 0 else WIN_COLOUR for s in sharpes]
        figure.add_trace(
            go.Bar(
                x=labels,
                y=sharpes,
                marker={"color": colours},
                customdata=returns,
                hovertemplate="%{x}: Sharpe %{y:.2f}, return %{customdata}<extra></extra>",
                showlegend=False,
            )
        )
        figure.update_xaxes(type="category")
        missing = sum(s is None for s in sharpes)
        if missing:
            figure.add_annotation(
                text=f"{missing} fold(s) without a Sharpe ratio (n/a)",
                showarrow=False,
                xref="paper",
                yref="paper",
                x=1.0,
                y=1.0,
                xanchor="right",
                font={"size": 11, "color": "#888"},
            )
    else:
        chart_note(figure, "no folds")
    figure.add_hline(y=0.0, line={"color": "#444", "width": 1})
    figure.update_layout(title_text="Sharpe ratio per fold (annualized, out of sample)")
    return _closest(chart_layout(figure, y_title="Sharpe ratio"))


def _paths_figure(paths: object) -> go.Figure:
    raw = list(paths) if isinstance(paths, Sequence) and not isinstance(paths, str) else []
    sharpes = np.array(
        [s for s in (finite_number(v) for v in raw) if s is not None], dtype=np.float64
    )
    missing = len(raw) - sharpes.size
    figure = go.Figure()
    title = f"Sharpe ratio of the {len(raw)} backtest paths (annualized, after costs)"
    if sharpes.size:
        figure.add_trace(
            go.Histogram(
                x=sharpes,
                nbinsx=int(min(40, max(5, sharpes.size))),
                marker={"color": LINE_COLOUR},
                opacity=0.75,
                name="paths",
                hovertemplate="Sharpe %{x}: %{y} paths<extra></extra>",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=sharpes,
                y=np.zeros(sharpes.size),
                mode="markers",
                name="each path",
                marker={"symbol": "line-ns-open", "size": 12, "color": "#333"},
                hovertemplate="Sharpe %{x:.2f}<extra></extra>",
            )
        )
        median = float(np.median(sharpes))
        figure.add_vline(x=median, line={"color": LINE_COLOUR, "width": 1, "dash": "dot"})
        title += f" · median {median:.2f}, {np.mean(sharpes > 0) * 100:.0f}% above 0"
    else:
        chart_note(figure, "no path with a Sharpe ratio")
    if missing:
        title += f" · {missing} n/a"
    figure.add_vline(x=0.0, line={"color": "#444", "width": 1, "dash": "dash"})
    figure.update_layout(title_text=title, bargap=0.05)
    return _closest(chart_layout(figure, y_title="paths", x_title="Sharpe ratio (annualized)"))


def importance_figure(importance: Mapping[str, float], top: int = TOP_FEATURES) -> go.Figure:
    """Return the bar chart of the ``top`` largest feature importances, largest at the top.

    Parameters
    ----------
    importance
        Feature name to normalized importance; values that are not finite numbers sort last.
    top
        Most features drawn.

    Returns
    -------
    plotly.graph_objects.Figure
        The chart the report's "Feature importance" section and
        :func:`importance_figure_html` show.
    """

    def key(item: tuple[str, float]) -> float:
        value = finite_number(item[1])
        return -math.inf if value is None else value

    chosen = sorted(importance.items(), key=key, reverse=True)[:top]
    names = [html.escape(str(name)) for name, _ in chosen]
    values = [finite_number(value) for _, value in chosen]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker={"color": LINE_COLOUR},
            hovertemplate="%{y}: %{x:.4f}<extra></extra>",
            showlegend=False,
        )
    )
    shown = f"top {len(chosen)} of {len(importance)}" if len(importance) > top else "all"
    figure.update_layout(title_text=f"Feature importance ({shown}, normalized)")
    figure = _closest(chart_layout(figure, y_title="", x_title="importance (share)"))
    figure.update_yaxes(autorange="reversed", automargin=True, type="category")
    figure.update_layout(height=max(CHART_HEIGHT, 100 + 22 * len(chosen)))
    return figure

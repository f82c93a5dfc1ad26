"""The Research page: walk-forward reports, the registered models side by side (champion against
challengers, with their promotion, rollback and live-gate decisions), feature importance and the
way into the MLflow UI."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.dashboard import common as ui
from services.views import research as views

_RATIO = st.column_config.NumberColumn(format="%.2f")
_PROB = st.column_config.NumberColumn(format="%.3f")
_PCT = st.column_config.NumberColumn(format="percent")
_RUN_COLUMNS = {
    "sharpe": _RATIO,
    "sharpe_ci_low": _RATIO,
    "sharpe_ci_high": _RATIO,
    "psr": _PROB,
    "dsr": _PROB,
    "pbo": _PROB,
    "spa_vs_flat_p": _PROB,
    "spa_vs_buy_and_hold_p": _PROB,
    "spa_models_vs_flat_p": _PROB,
    "total_return": _PCT,
    "max_drawdown": _PCT,
}


def _value(value: float | None, unit: views.Unit) -> str:
    if value is None:
        return "n/a"
    if unit == "fraction":
        return f"{value:.2%}" if abs(value) >= 1e-4 else f"{value * 100:.3g}%"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:.3f}" if unit == "probability" else f"{value:.2f}"


def _walkforward_reports() -> str | None:
    st.subheader("Walk-forward reports")
    runs = ui.read(views.walkforward_runs)
    if not runs:
        ui.missing("No walk-forward runs yet", views.WALKFORWARD_COMMAND)
        return None
    labels = {
        r.run_id: " · ".join(str(p) for p in (r.run_id, r.symbol, r.timeframe, r.model) if p)
        for r in runs
    }
    chosen = ui.pick("Walk-forward run (newest first)", list(labels), "research_run", labels=labels)
    ui.table([row.model_dump() for row in runs], column_config=_RUN_COLUMNS, key="research_runs")
    detail = ui.read(views.walkforward_detail, chosen)
    st.markdown(f"**{detail.title}** · run `{detail.run_id}` · {detail.created or 'n/a'}")
    level = "" if detail.ci_level is None else f" ({detail.ci_level:.0%})"
    ui.table(
        [
            {
                "figure": row.figure,
                "value": _value(row.value, row.unit),
                f"interval low{level}": "" if row.low is None else _value(row.low, row.unit),
                f"interval high{level}": "" if row.high is None else _value(row.high, row.unit),
            }
            for row in detail.figures
        ],
        key="research_figures",
    )
    for name in ("equity", "sharpe_interval", "paths"):
        if name in detail.charts:
            ui.chart(detail.charts[name], key=f"research_{name}")
    with st.expander("Drawdown and folds"):
        for name in ("drawdown", "fold_sharpe"):
            if name in detail.charts:
                ui.chart(detail.charts[name], key=f"research_{name}")
        if detail.folds:
            ui.table([fold.model_dump() for fold in detail.folds], key="research_folds")
    if detail.report is None:
        st.caption("No HTML report file is stored for this run.")
    else:
        size = "" if detail.report_bytes is None else f" ({detail.report_bytes / 1e6:.1f} MB)"
        st.caption(f"The full report{size}: open this file in a browser.")
        st.code(detail.report, language=None)
    return chosen


def _standings(rows: tuple[views.VersionRow, ...]) -> list[dict[str, Any]]:
    names = sorted({row.name for row in rows})
    out = []
    for name in names:
        mine = [row for row in rows if row.name == name]
        champion = [f"v{row.version}" for row in mine if "champion" in row.role]
        challenger = [f"v{row.version}" for row in mine if "challenger" in row.role]
        out.append(
            {
                "model": name,
                "champion": ", ".join(champion) or "none",
                "challenger": ", ".join(challenger) or "none",
                "versions": len(mine),
            }
        )
    return out


def _registered_models() -> None:
    st.subheader("Registered models")
    models = ui.read(views.registered_models)
    if models.problem:
        st.warning(models.problem)
    if models.versions:
        ui.table(_standings(models.versions), key="research_standings")
        ui.table(
            [row.model_dump() for row in models.versions],
            column_config=_RUN_COLUMNS,
            key="research_versions",
        )
    elif not models.problem:
        ui.missing("No registered models yet", views.WALKFORWARD_COMMAND)
    if models.gates:
        st.markdown("**Live-gate decisions** (newest first)")
        ui.table([gate.model_dump() for gate in models.gates], key="research_gates")
    elif models.versions:
        st.caption("No live-gate decision yet: `solodesk models gate --name <model>` asks it.")


def _feature_importance(run_id: str | None) -> None:
    st.subheader("Feature importance")
    if run_id is None:
        ui.missing("No walk-forward runs yet", views.WALKFORWARD_COMMAND)
        return
    found = ui.read(views.feature_importance, run_id)
    if found.chart is None:
        ui.missing(f"No feature importance for run {run_id}: {found.problem}")
        return
    ui.chart(found.chart, key="research_importance")
    with st.expander(f"Every feature ({len(found.values)})"):
        ui.table(
            [{"feature": name, "importance": value} for name, value in found.values],
            key="research_importance_table",
        )


def _mlflow(run_id: str | None) -> None:
    st.subheader("MLflow")
    link = ui.read(views.mlflow_link, run_id)
    if not link.store:
        ui.missing("No MLflow store yet", views.WALKFORWARD_COMMAND)
        return
    if link.problem:
        st.warning(link.problem)
    if link.experiment_id is not None:
        st.link_button("Open this run in MLflow", link.url, key="research_mlflow_run")
    else:
        st.link_button("Open the MLflow UI", link.url, key="research_mlflow_ui")
    st.caption(f"The MLflow UI ({link.ui_url}) holds every run and the model registry; start it:")
    st.code(link.command, language="bash")


def render() -> None:
    run_id = _walkforward_reports()
    _registered_models()
    _feature_importance(run_id)
    _mlflow(run_id)


ui.page("Research", render)

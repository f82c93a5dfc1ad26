"""The Ops page: the flow runs (Prefect's, or the desk's own record when no server answers), the
schedules, the latest retrain and promotion, drift, the alert log and the supervisor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from app.dashboard import common as ui
from core.ports import NoticeKind
from core.times import iso_z
from services.orchestration import no_server
from services.views import ops as views


def _rows(models: Sequence[Any], exclude: set[str] | None = None) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json", exclude=exclude) for m in models]


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _flow_runs() -> None:
    st.subheader("Flow runs")
    view = ui.read(views.flow_runs)
    if view.answered:
        if not view.runs:
            ui.missing(f"The Prefect server at {view.api} has run no flow yet",
                       "solodesk flows run <deployment>")  # fmt: skip
            return
        st.caption(f"The latest flow runs on the Prefect server at {view.api}, newest first")
        ui.table(_rows(view.runs))
        return
    own = "Below, the runs the desk's services recorded themselves."
    if view.message == no_server(view.api):
        st.info(
            f"No Prefect server answers at {view.api}: `solodesk serve` starts one with every "
            f"deployment. {own}"
        )
    else:
        st.warning(view.message)
        st.info(own)
    if view.note:
        st.warning(view.note)
    if not view.activity:
        ui.missing("Nothing recorded yet", "solodesk ingest <file>")
        return
    ui.table(_rows(view.activity))


def _schedules() -> None:
    st.subheader("Schedules")
    view = ui.read(views.schedules)
    if view.answered:
        st.caption(
            f"{len(view.deployments)} deployments on the server at {view.api}; the scheduled ones:"
        )
    else:
        st.caption(
            "From [schedules] in solodesk.toml: what `solodesk serve` registers (retrain/weekly "
            "only where params.yaml has a research section)."
        )
    if not view.schedules:
        ui.missing("No deployment has a schedule", "solodesk serve")
        return
    ui.table(_rows(view.schedules))


def _retrain() -> None:
    st.subheader("Retrain and promotion")
    view = ui.read(views.retrain_and_promotion)
    if view.note:
        st.warning(view.note)
    run = view.walkforward
    if run is None and not view.registry:
        ui.missing("No walk-forward or retrain has run yet", "solodesk retrain")
        return
    if run is not None:
        version = f", registered v{run.version}" if run.version is not None else ""
        st.markdown(
            f"Latest walk-forward **{run.run}** at {run.created}: {run.model} on {run.symbol} "
            f"{run.timeframe} ({run.feature_set}){version}."
        )
        cells = st.columns(4)
        cells[0].metric("Sharpe (out of sample)", _figure(run.sharpe), border=True)
        cells[1].metric("PSR", _figure(run.psr), border=True)
        cells[2].metric("DSR", _figure(run.dsr), border=True)
        cells[3].metric("Trades", "–" if run.trades is None else f"{run.trades:,}", border=True)
    if view.retrain is not None:
        notice = view.retrain
        st.markdown(f"Latest retrain notice at {notice.at}: **{notice.title}**")
        st.text(notice.body)
    else:
        st.caption(
            "No retrain notice in the alert log: `solodesk retrain` (or the retrain/weekly "
            "deployment) sends one."
        )
    if not view.champions:
        ui.missing("No model registered yet", "solodesk walkforward")
        return
    ui.table(_rows(view.champions))
    if view.promotion is None:
        name = view.champions[0].name
        ui.missing("No promotion decided yet", f"solodesk models promote --name {name}")
    else:
        p = view.promotion
        st.markdown(f"Latest promotion decision: **{p.name} v{p.version} {p.decision}** at {p.at}")
        st.caption(p.reason)
    if view.rollback is not None:
        r = view.rollback
        st.markdown(f"Latest rollback: **{r.name} {r.decision}** at {r.at} by {r.who}")
        st.caption(r.reason)
    else:
        st.caption("No rollback recorded.")


def _drift() -> None:
    st.subheader("Drift")
    view = ui.read(views.drift)
    if view.note:
        st.warning(view.note)
    limits = view.thresholds
    st.caption(
        f"[drift]: PSI warns at {limits['psi_warn']:g} and acts at {limits['psi_act']:g} above "
        f"each input's baseline, over the last {limits['window_bars']:g} bars, checked every "
        f"{limits['check_bars']:g}; P&L against the registered band over "
        f"{limits['window_days']:g} days."
    )
    if view.watched:
        st.markdown("Model sessions watched: " + "; ".join(view.watched))
    if not (view.watched or view.notices or view.rollbacks or view.pauses):
        ui.missing(
            "No drift measured yet: only a registered model's paper session is watched",
            "solodesk paper --name <model> --symbol <symbol> --timeframe <timeframe>",
        )
        return
    if view.notices:
        ui.table(_rows(view.notices, {"fields", "id"}))
    else:
        st.caption("No drift notice raised.")
    if view.rollbacks:
        st.caption("Rollbacks by drift")
        ui.table(_rows(view.rollbacks))
    if view.pauses:
        st.caption("Sessions paused by drift")
        ui.table(
            [
                {
                    "session": c.session,
                    "requested": iso_z(c.requested),
                    "why": c.why,
                    "result": c.result,
                }
                for c in view.pauses
            ]
        )


def _alert_log() -> None:
    st.subheader("Alert log")
    chosen = st.multiselect(
        "Kinds", [k.value for k in NoticeKind], key="ops_alert_kinds", placeholder="every kind"
    )
    view = ui.read(views.alerts, tuple(chosen) or None)
    if not view.exists:
        ui.missing(
            "No notice raised yet: trading sessions, the supervisor and flows raise them",
            "solodesk paper",
        )
        return
    if not view.entries:
        st.caption("No notice of these kinds.")
        return
    st.caption(f"The latest {len(view.entries)} notices, newest first ({view.path})")
    ui.table(_rows(view.entries, {"fields", "id"}))


def _supervisor() -> None:
    st.subheader("Supervisor")
    view = ui.read(views.supervisor)
    if not view.sessions:
        ui.missing("No supervised session yet", "solodesk supervise -- <paper options>")
        return
    ui.table(_rows(view.sessions))
    st.caption("Every event, newest first")
    ui.table(
        [
            {
                "at": iso_z(e.at),
                "session": e.session,
                "kind": e.kind,
                "pid": e.pid,
                "exit": e.exit_code,
                "restarts": e.restarts,
                "reason": e.reason,
            }
            for e in view.events
        ]
    )


def render() -> None:
    """Show the page's sections, each on its own (one failing shows its message only)."""
    for section in (_flow_runs, _schedules, _retrain, _drift, _alert_log, _supervisor):
        with ui.explained():
            section()


ui.page("Ops", render)

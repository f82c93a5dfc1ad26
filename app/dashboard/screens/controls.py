"""The Controls page: log in, then pause or resume new orders, flatten, reset a risk latch, halt,
or start a retrain or a backtest through Prefect. Without a login it only shows what was done."""

from __future__ import annotations

import streamlit as st

from app.dashboard import common as ui
from core.errors import SolodeskError
from core.times import iso_z, iso_z_or_none
from services.access import check_login
from services.views import controls as views

#: The session controls: (action, button label, what it does).
ACTIONS: tuple[tuple[views.SessionAction, str, str], ...] = (
    ("pause", "Pause", "no new orders; exits and risk still act"),
    ("resume", "Resume", "new orders again"),
    ("flatten", "Flatten", "close every position of the session"),
    ("reset", "Reset risk latch", "leave the daily-loss or drawdown state"),
    ("halt", "Halt", "stop trading the account until reset"),
)


def _login(view: views.ControlsView) -> str | None:
    st.subheader("Login")
    who = ui.who()
    if not view.login_enabled:
        ui.missing(
            "Read-only: no password is set, so the controls are off. Put its hash in "
            "solodesk.toml as [dashboard] password_hash",
            "solodesk dashboard password",
        )
        return None
    if who is not None:
        st.write(f"Logged in as **{who}**.")
        if st.button("Log out", key="logout"):
            ui.log_out()
            st.rerun()
        return who
    with st.form("login"):
        user = st.text_input("User", key="login_user")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if check_login(ui.settings(), user, password):
            ui.log_in(user)
            st.rerun()
        st.error("Wrong user or password.")
    return None


def _refused() -> None:
    st.error("Log in to use the controls: the dashboard is read-only without it.")


def _session_controls(view: views.ControlsView, who: str | None) -> None:
    st.subheader("Session controls")
    if not view.sessions:
        ui.missing(
            "No trading session yet",
            "solodesk paper --symbol EURUSD --timeframe H1 --strategy sma_cross",
        )
        return
    names = [s.session for s in view.sessions]
    running = [s.session for s in view.sessions if s.status == "running"]
    session = ui.pick("Session", names, "control_session", running[0] if running else None)
    record = next(s for s in view.sessions if s.session == session)
    state = "paused" if record.paused else "trading"
    st.caption(f"{record.kind} session, {record.status}, {state}; account {record.account}")
    why = st.text_input("Why (recorded with the action)", key="control_why")
    flatten = st.checkbox("Halt also flattens", key="control_halt_flatten")
    columns = st.columns(len(ACTIONS))
    for column, (action, label, help_text) in zip(columns, ACTIONS, strict=True):
        if column.button(label, key=f"control_{action}", help=help_text, disabled=who is None):
            if who is None:
                _refused()
                return
            request = views.act_on_session(
                ui.settings(), action, session, who=who, why=why,
                flatten=flatten and action == "halt",
            )  # fmt: skip
            ui.forget()
            if request.applied is None:
                st.success(
                    f"{label}: stored (control {request.id}); the loop applies it between bars"
                )
            else:
                st.success(f"{label}: {request.result}")


def _flows(view: views.ControlsView, who: str | None) -> None:
    st.subheader("Flows")
    st.caption(f"Runs are asked of the Prefect server at {view.prefect_api} (solodesk serve).")
    retrain, backtest = st.columns(2)
    with retrain:
        st.markdown("**Retrain**: walk-forward, then promote with the floors (retrain/weekly).")
        if st.button("Start a retrain", key="flow_retrain", disabled=who is None):
            if who is None:
                _refused()
                return
            _show(views.start_flow(ui.settings(), views.RETRAIN, who=who))
    with backtest, st.form("backtest"):
        st.markdown("**Backtest** a strategy on a stored series (backtest/manual).")
        symbol = st.text_input("Symbol", "EURUSD", key="bt_symbol")
        timeframe = st.text_input("Timeframe", "H1", key="bt_timeframe")
        strategy = st.text_input("Strategy", "sma_cross", key="bt_strategy")
        params = st.text_input("Parameters (k=v, comma separated)", "", key="bt_params")
        spread = st.text_input("Spread (pips, or data)", "1.0", key="bt_spread")
        submitted = st.form_submit_button("Start a backtest", disabled=who is None)
    if submitted:
        if who is None:
            _refused()
            return
        pairs = [p.strip() for p in params.split(",") if p.strip()]
        parsed = dict(p.split("=", 1) for p in pairs if "=" in p)
        if len(parsed) != len(pairs):
            st.error("Parameters are k=v pairs separated by commas, e.g. fast=20,slow=100.")
            return
        parameters = {
            "symbol": symbol, "timeframe": timeframe, "strategy": strategy,
            "params": parsed, "spread": spread,
        }  # fmt: skip
        _show(views.start_flow(ui.settings(), views.BACKTEST, parameters, who=who))


def _show(request: views.FlowRequest) -> None:
    ui.forget()
    if request.flow_run is None:
        st.warning(f"{request.deployment}: {request.outcome}")
    else:
        st.success(f"{request.deployment}: flow run {request.flow_run} ({request.outcome})")


def _log(view: views.ControlsView) -> None:
    st.subheader("Control log")
    if not view.controls and not view.flow_requests:
        st.info("No control or flow request yet.")
        return
    if view.controls:
        ui.table([
            {"id": c.id, "requested": iso_z(c.requested), "who": c.who, "action": c.action,
             "session": c.session, "flatten": c.flatten, "why": c.why,
             "applied": iso_z_or_none(c.applied), "result": c.result}
            for c in view.controls
        ])  # fmt: skip
    if view.flow_requests:
        ui.table([
            {"id": r.id, "requested": iso_z(r.requested), "who": r.who, "deployment": r.deployment,
             "flow run": r.flow_run, "outcome": r.outcome, "why": r.why}
            for r in view.flow_requests
        ])  # fmt: skip


def render() -> None:
    view = ui.read(views.controls_view)
    who = _login(view)
    try:
        _session_controls(view, who)
        _flows(view, who)
    except SolodeskError as exc:
        st.error(str(exc))
    _log(ui.read(views.controls_view))


ui.page("Controls", render, refresh=False)

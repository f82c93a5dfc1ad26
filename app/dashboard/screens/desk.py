"""The Desk page: a trading session's equity and drawdown, today's P&L against the broker day,
its exposure, open positions and working orders, its risk limits in use, and whether its loop
is alive.

The charts open as pictures of the report figures (drawn on the server): a browser's first
Plotly chart costs it a second or more of loading Plotly's script, and the desk is the page a
browser opens first. "Interactive charts" swaps them for the Plotly charts.
"""

from __future__ import annotations

import streamlit as st

from app.dashboard import common as ui
from core.times import iso_z, iso_z_or_none
from services.views import desk as views

#: The toggle that swaps the desk's pictures for interactive Plotly charts (zoom, hover).
INTERACTIVE = "desk_interactive"
INTERACTIVE_HELP = (
    "Plotly charts you can zoom and hover. A browser's first Plotly chart loads Plotly's script "
    "(4.7 MB), which costs a first visit about a second on a small machine, so the desk opens "
    "with pictures of the same figures."
)
SECTIONS = (
    "Equity", "Today", "Exposure", "Open positions and orders", "Risk limits",
    "Feeds and heartbeats",
)  # fmt: skip


def _pick_session(records: views.Sessions, key: str) -> str:
    """Show a session selector (newest first) opening on the latest running session, else the
    latest; return the session chosen."""
    names = [r.session for r in reversed(records)]
    return ui.pick("Session", names, key, views.default_session(records))


def _unmarked(view: views.DeskView) -> str:
    name = view.session.session
    return f"No equity marked yet in session {name}: resume it with the options it started with"


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _whole(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _equity(view: views.DeskView) -> None:
    st.subheader("Equity")
    if view.equity is None:
        ui.missing(_unmarked(view), views.resume_command(view.session))
        return
    now, today = view.equity, view.today
    cells = st.columns(4)
    cells[0].metric(
        "Equity", _whole(now.equity), f"{now.total_return:+.2%} since start", border=True
    )
    cells[1].metric(
        "Today's P&L",
        _money(today.pnl if today else None),
        None if today is None else f"{today.fraction:+.2%}",
        border=True,
    )
    cells[2].metric(
        "Drawdown", f"{now.drawdown:.2%}", help="from the equity high-water mark", border=True
    )
    cells[3].metric("Max drawdown", f"{now.max_drawdown:.2%}", border=True)
    st.caption(
        f"Last mark {iso_z(now.at)} (the loop's clock) · balance {_money(now.balance)} · "
        f"high-water mark {_money(now.equity_hwm)} · initial cash {_money(now.initial_cash)} · "
        f"{now.points:,} marks"
    )
    if st.toggle("Interactive charts", key=INTERACTIVE, help=INTERACTIVE_HELP):
        charts = ui.read(views.equity_charts, view.session.session)
        if charts is not None:
            ui.chart(charts[0], key="desk_equity_chart")
            ui.chart(charts[1], key="desk_drawdown_chart")
        return
    pictures = ui.read(views.equity_pictures, view.session.session)
    if pictures is not None:
        ui.picture(pictures[0], "Equity curve")
        ui.picture(pictures[1], "Drawdown from the high-water mark")


def _today(view: views.DeskView) -> None:
    st.subheader("Today")
    today = view.today
    if today is None:
        ui.missing(_unmarked(view), views.resume_command(view.session))
        return
    cells = st.columns(3)
    cells[0].metric("P&L today", _money(today.pnl), f"{today.fraction:+.2%}", border=True)
    cells[1].metric("Equity at the day's start", _whole(today.day_start_equity), border=True)
    cells[2].metric("Equity now", _whole(today.equity), border=True)
    replay = view.session.options.get("feed", "replay") == "replay"
    st.caption(
        f"Broker day from {iso_z(today.day_start)} ({today.day_rule}), measured at the "
        f"session's last mark {iso_z(today.measured_at)} on the loop's clock"
        + (" (replayed bars: the bars' time, not the wall clock)." if replay else ".")
    )
    risk = view.risk
    if risk.daily_pnl is not None and risk.day_start_equity is not None:
        st.caption(
            f"The risk engine's day for account {risk.account}: P&L {risk.daily_pnl:+,.2f} "
            f"from {_money(risk.day_start_equity)}."
        )


def _exposure(view: views.DeskView) -> None:
    st.subheader("Exposure")
    if not view.exposure:
        ui.missing(f"No open position in session {view.session.session}")
        return
    if st.session_state.get(INTERACTIVE, False):
        ui.chart(views.exposure_figure(view.exposure), key="desk_exposure_chart")
    else:
        ui.picture(ui.read(views.exposure_picture, view.exposure), "Exposure by symbol")
    ui.table(
        [
            {
                "symbol": r.symbol,
                "side": r.side,
                "units": r.units,
                "lots": r.lots,
                "mark": r.mark,
                "notional": r.notional,
                "of equity": None if r.of_equity is None else f"{r.of_equity:.1%}",
            }
            for r in view.exposure
        ]
    )
    st.caption(f"Notional in {ui.settings().account_currency}, as the loop last marked it.")


def _book(view: views.DeskView) -> None:
    st.subheader("Open positions and orders")
    if view.positions:
        ui.table(
            [
                {
                    "symbol": p.symbol,
                    "side": "long" if p.units > 0 else "short",
                    "units": p.units,
                    "avg price": p.avg_price,
                    "stop-loss": p.stop_loss,
                    "take-profit": p.take_profit,
                    "trailing": p.trailing,
                    "opened": iso_z_or_none(p.opened),
                }
                for p in view.positions
            ]
        )
    else:
        ui.missing(f"No open position in session {view.session.session}")
    if view.orders:
        ui.table(
            [
                {
                    "order": o.client_order_id,
                    "sent": iso_z(o.ts),
                    "symbol": o.symbol,
                    "side": o.side.value,
                    "units": o.units,
                    "type": o.type.value,
                    "limit": o.limit_price,
                    "stop": o.stop_price,
                    "stop-loss": o.stop_loss,
                    "take-profit": o.take_profit,
                    "status": o.status.value,
                    "filled": o.filled_units,
                    "reason": o.reason,
                }
                for o in view.orders
            ]
        )
    else:
        st.caption("No working orders.")


def _risk(view: views.DeskView) -> None:
    st.subheader("Risk limits")
    risk = view.risk
    cells = st.columns(3)
    cells[0].metric("Risk state", risk.state.value.upper(), border=True)
    cells[1].metric("New orders", "paused" if risk.paused else "allowed", border=True)
    cells[2].metric("Equity high-water mark", _whole(risk.equity_hwm), border=True)
    if risk.since is not None:
        st.caption(f"Since {iso_z(risk.since)}: {risk.reason}")
    if not view.limits:
        ui.missing(
            f"No risk limit is set for account {risk.account}: set them under [risk] in "
            "solodesk.toml, or per session",
            "solodesk paper --risk max_daily_loss=0.03",
        )
        return
    ui.table(
        [
            {
                "limit": u.limit,
                "value": u.value,
                "current": u.current,
                "usage": "—" if u.usage is None else f"{u.usage:.1%}",
                "used": None if u.usage is None else min(u.usage, 1.0) * 100.0,
            }
            for u in view.limits
        ],
        column_config={
            "used": st.column_config.ProgressColumn(
                "used", min_value=0.0, max_value=100.0, format="%.0f%%"
            )
        },
    )


def _health(view: views.DeskView) -> None:
    st.subheader("Feeds and heartbeats")
    mine = view.health[0]
    cells = st.columns(3)
    cells[0].metric("Loop", mine.word, border=True)
    cells[1].metric(
        "Heartbeat age",
        "none" if mine.heartbeat_age is None else f"{mine.heartbeat_age:,.1f} s",
        border=True,
    )
    cells[2].metric(
        "Bar latency",
        "—" if mine.bar_latency is None else f"{mine.bar_latency:,.2f} s",
        border=True,
    )
    st.caption(f"{mine.note}. Stale after {view.hang_seconds:g} s without a heartbeat.")
    ui.table(
        [
            {
                "session": h.session,
                "status": h.status,
                "health": h.word,
                "pid": h.pid,
                "heartbeat": iso_z_or_none(h.heartbeat_at),
                "heartbeat age (s)": h.heartbeat_age,
                "bars": h.bars,
                "loop clock": iso_z_or_none(h.loop_time),
                "last bar": iso_z_or_none(h.last_bar),
                "bar latency (s)": h.bar_latency,
                "feed": h.feed,
            }
            for h in view.health
        ]
    )


def render() -> None:
    records = ui.read(views.session_records)
    view = None
    if records:
        session = _pick_session(records, "desk_session")
        view = ui.read(views.desk_view, session)
    if view is None:
        for name in SECTIONS:
            st.subheader(name)
            ui.missing(views.NO_SESSION, views.PAPER_COMMAND)
        return
    st.caption(views.describe_session(view.session))
    _equity(view)
    _today(view)
    _exposure(view)
    _book(view)
    _risk(view)
    _health(view)


ui.page("Desk", render)

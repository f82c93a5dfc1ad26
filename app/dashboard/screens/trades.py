"""The Trades page: the round trips of a session (or all), filtered by symbol, side, exit
reason and entry date; one trade on its candles with its entry, exit and protective levels;
the distribution of the trades' P&L."""

from __future__ import annotations

from datetime import date

import polars as pl
import streamlit as st

from app.dashboard import common as ui
from services.views import desk
from services.views import trades as views

ALL_SESSIONS = "all sessions"
SECTIONS = ("Trade log", "Trade chart", "P&L distribution")
#: Most trades the chart's selector offers (the latest of the filtered log).
MAX_PICK = 1000
#: The session-state key remembering which session the date range was picked for.
DATES_OF = "trades_dates_session"


def _pick_session(records: desk.Sessions) -> str | None:
    names = [ALL_SESSIONS, *(r.session for r in reversed(records))]
    choice = ui.pick("Session", names, "trades_session", desk.default_session(records))
    return None if choice == ALL_SESSIONS else choice


def _dates(log: pl.DataFrame, session: str | None) -> tuple[date | None, date | None]:
    days: list[date] = log["entry_ts"].dt.date().drop_nulls().to_list()
    if not days:
        return None, None
    low, high = min(days), max(days)
    if st.session_state.get(DATES_OF, session) != session:
        st.session_state.pop("trades_dates", None)  # another session: its own dates
    st.session_state[DATES_OF] = session
    picked = st.date_input("Entry date (UTC)", value=(low, high), key="trades_dates")
    chosen = [d for d in (picked if isinstance(picked, tuple | list) else (picked,)) if d]
    start = chosen[0] if chosen else None
    end = chosen[1] if len(chosen) > 1 else start
    return start, end


def _filters(log: pl.DataFrame, session: str | None) -> views.TradeFilter:
    cells = st.columns(3)
    symbols = cells[0].multiselect(
        "Symbol", sorted(set(log["symbol"].to_list())), key="trades_symbol"
    )
    sides = cells[1].multiselect("Side", ["long", "short"], key="trades_side")
    reasons = cells[2].multiselect(
        "Exit reason", sorted(set(log["exit_reason"].drop_nulls().to_list())), key="trades_reason"
    )
    start, end = _dates(log, session)
    return views.TradeFilter(
        symbols=tuple(symbols), sides=tuple(sides), reasons=tuple(reasons), start=start, end=end
    )


def _summary(kept: pl.DataFrame, total: int) -> None:
    figures = views.summarize(kept)
    cells = st.columns(4)
    cells[0].metric("Trades", f"{figures.trades:,}", help=f"of {total:,} in the log", border=True)
    cells[1].metric("Closed", f"{figures.closed:,}", border=True)
    cells[2].metric("Closed P&L", f"{figures.pnl:+,.2f}", border=True)
    winners = "–" if figures.winners is None else f"{figures.winners:.0%}"
    cells[3].metric("Winners", winners, border=True)


def _chart(kept: pl.DataFrame) -> None:
    st.subheader("Trade chart")
    if kept.height == 0:
        ui.missing("No trade matches the filters")
        return
    rows = kept.tail(MAX_PICK).reverse().to_dicts()  # the latest first
    labels = {views.trade_label(row): (str(row["session"]), int(row["n"])) for row in rows}
    if kept.height > MAX_PICK:
        st.caption(f"The latest {MAX_PICK:,} of {kept.height:,} trades: filter to reach others.")
    names = list(labels)
    picked = ui.pick("Trade", names, "trade_pick")
    session, n = labels[picked]
    chart = ui.read(views.trade_chart, session, n)
    if chart.figure is None:
        ui.missing(chart.missing, chart.command)
        return
    ui.chart(chart.figure, key="trade_chart")
    st.caption(f"Candles: {chart.bars}. Protection: {chart.protection}.")


def render() -> None:
    records = ui.read(desk.session_records)
    if not records:
        for name in SECTIONS:
            st.subheader(name)
            ui.missing(desk.NO_SESSION, desk.PAPER_COMMAND)
        return
    st.subheader("Trade log")
    session = _pick_session(records)
    log = ui.read(views.trade_log, session)
    if log.height == 0:
        which = "any session" if session is None else f"session {session}"
        ui.missing(
            f"No round trips yet in {which}", desk.PAPER_COMMAND if session is None else None
        )
        for name in SECTIONS[1:]:
            st.subheader(name)
            ui.missing(f"No round trips yet in {which}")
        return
    kept = views.filter_trades(log, _filters(log, session))
    _summary(kept, log.height)
    ui.table(views.log_table(kept), key="trades_log")
    with st.expander("Fills"):
        ui.table(ui.read(views.trade_fills, session), key="trades_fills")
    _chart(kept)
    st.subheader("P&L distribution")
    ui.chart(views.pnl_distribution(kept), key="trades_pnl_chart")


ui.page("Trades", render)

"""The ``report`` flow: the desk's summary of the broker day just ended (deployment
``report/daily``).

The day is the risk engine's: it starts at ``[risk] day_start`` in ``day_zone`` (17:00 New
York by default, :func:`core.clocks.day_start_at`). For each paper or live session in the state
database that traded in the day or is running, the flow reads the session's fills, round trips,
equity curve and risk standing through the runtime's queries, and sums the day: fills, closed
trades and their profit, equity at the day's start and end, the day's P&L. It adds the
registered champion of each model. The summary becomes markdown and table artifacts and a
``daily_summary`` notice; a desk with nothing to report says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from prefect import flow
from pydantic import BaseModel, ConfigDict

from core.clocks import day_start_at
from core.ports import Notice, NoticeKind
from core.settings import Settings
from core.times import as_utc, iso_z, ns_from_utc, parse_utc, utc_now
from execution.risk import RiskStatus
from feature_store.state import SessionRecord, StateDB
from flows.common import desk, io_task, markdown, md_table, table
from flows.notices import on_flow_failure, send
from services.live_model import CHAMPION
from services.models import ModelVersionRow, list_versions
from services.runtime import list_sessions, risk_status, session_fills, session_trades

#: The kinds of session the report covers (backtest replays are research, not the desk).
DESK_KINDS = ("paper", "live")


class SessionDay(BaseModel):
    """One session's broker day: what it did and where it stands.

    ``equity_start`` is the last equity before the day (None when the session began in it),
    ``equity_end`` the last in it; ``pnl`` their difference (from the day's first point when the
    session began in the day). ``realized`` sums the profit of the round trips closed in the
    day. ``risk_state``, ``daily_pnl`` and ``drawdown`` are the account's standing now.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    session: str
    kind: str
    symbol: str
    timeframe: str
    strategy: str
    status: str
    fills: int
    trades: int
    wins: int
    realized: float
    equity_start: float | None
    equity_end: float | None
    pnl: float | None
    risk_state: str
    daily_pnl: float | None
    drawdown: float | None


def broker_day(settings: Settings, at: datetime | None = None) -> tuple[datetime, datetime]:
    """Return the start and end (UTC) of the last broker day that ended at or before ``at``."""
    risk = settings.risk
    end = day_start_at(as_utc(at or utc_now()), risk.day_start, risk.day_zone)
    start = day_start_at(end - timedelta(microseconds=1), risk.day_start, risk.day_zone)
    return start, end


def session_day(
    record: SessionRecord,
    fills: Sequence[Mapping[str, Any]],
    trades: Sequence[Mapping[str, Any]],
    points: npt.NDArray[np.void] | None,
    risk: RiskStatus,
    start: datetime,
    end: datetime,
) -> SessionDay:
    """Return a session's day from its fills, round trips, equity points and risk standing."""
    day_fills = [f for f in fills if start <= parse_utc(f["ts"]) < end]
    closed = [t for t in trades if t.get("exit_ts") is not None and start <= t["exit_ts"] < end]
    profits = [float(t["pnl"]) for t in closed if t.get("pnl") is not None]
    equity_start = equity_end = first = None
    if points is not None and len(points):
        ts = points["ts"]
        before = np.flatnonzero(ts < ns_from_utc(start))
        inside = np.flatnonzero((ts >= ns_from_utc(start)) & (ts < ns_from_utc(end)))
        if len(before):
            equity_start = float(points["equity"][before[-1]])
        if len(inside):
            equity_end = float(points["equity"][inside[-1]])
            first = float(points["equity"][inside[0]])
    opening = equity_start if equity_start is not None else first
    pnl = None if equity_end is None or opening is None else equity_end - opening
    return SessionDay(
        session=record.session, kind=record.kind, symbol=record.symbol,
        timeframe=record.timeframe, strategy=record.strategy, status=record.status,
        fills=len(day_fills), trades=len(closed), wins=sum(p > 0 for p in profits),
        realized=float(sum(profits)), equity_start=equity_start, equity_end=equity_end,
        pnl=pnl, risk_state=str(risk.state.value), daily_pnl=risk.daily_pnl,
        drawdown=risk.drawdown,
    )  # fmt: skip


@io_task
def sessions_step(settings: Settings) -> list[SessionRecord]:
    """Return the desk's paper and live sessions (:func:`services.runtime.list_sessions`)."""
    return [r for r in list_sessions(settings) if r.kind in DESK_KINDS]


@io_task
def session_day_step(
    settings: Settings, record: SessionRecord, start: datetime, end: datetime
) -> SessionDay:
    """Read a session's fills, trades, equity and risk standing; return its day."""
    fills = session_fills(settings, record.session)
    trades = session_trades(settings, record.session)
    with StateDB.open(settings) as db:
        points = db.equity_points(record.session).get(record.session)
    risk = risk_status(settings, record.session)
    return session_day(record, fills, trades, points, risk, start, end)


@io_task
def champions_step(settings: Settings) -> list[ModelVersionRow]:
    """Return the registered version each model's champion alias points at."""
    return [v for v in list_versions(settings) if CHAMPION in v.aliases]


@io_task
def notice_step(settings: Settings, notice: Notice) -> None:
    """Send the daily summary through the desk's notifier (:func:`flows.notices.send`)."""
    send(settings, notice)


def _active(day: SessionDay) -> bool:
    return day.status == "running" or bool(day.fills or day.trades or day.equity_end is not None)


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def summary_text(
    label: str, days: Sequence[SessionDay], champions: Sequence[ModelVersionRow]
) -> str:
    """Return the day's summary as the notice's text: one line a session, then the champions."""
    if not days and not champions:
        return f"{label}: nothing to report (no session traded and no champion is registered)."
    lines = [f"{label}: {len(days)} session(s) traded." if days else f"{label}: no session traded."]
    lines += [
        f"{d.session} {d.symbol} {d.timeframe}: {d.fills} fills, {d.trades} trades closed "
        f"({d.wins} won, {_money(d.realized)}), P&L {_money(d.pnl)}, equity "
        f"{_money(d.equity_end)}, risk {d.risk_state}"
        for d in days
    ]
    lines += [f"champion {c.name}: version {c.version}" for c in champions]
    return "\n".join(lines)


def _record(
    label: str,
    start: datetime,
    end: datetime,
    days: Sequence[SessionDay],
    champions: Sequence[ModelVersionRow],
    text: str,
) -> None:
    if days:
        rows = [d.model_dump(mode="json") for d in days]
        table(f"report-sessions-{label}", rows, f"the broker day {label}: one row per session")
    shown = [
        {"session": d.session, "series": f"{d.symbol} {d.timeframe}", "status": d.status,
         "fills": d.fills, "trades": f"{d.trades} ({d.wins} won)", "realized": _money(d.realized),
         "P&L": _money(d.pnl), "equity": _money(d.equity_end), "risk": d.risk_state}
        for d in days
    ]  # fmt: skip
    best = [{"model": c.name, "version": c.version, **c.scores} for c in champions]
    lines = [f"# Desk report {label}", f"Broker day {iso_z(start)} to {iso_z(end)}.", ""]
    lines += ["## Sessions", "", md_table(shown) if shown else "No session traded in the day."]
    lines += ["", "## Champions", "", md_table(best) if best else "No champion is registered."]
    lines += ["", "## Notice", "", *(f"> {line}  " for line in text.splitlines())]
    markdown(f"report-{label}", "\n".join(lines), "the desk's broker day")


@flow(name="report", on_failure=[on_flow_failure], log_prints=True)
def report_flow(
    at: datetime | None = None, notify: bool = True, home: str | None = None
) -> dict[str, Any]:
    """Summarize the broker day that ended last at or before ``at`` (default: now).

    Each paper or live session that traded in the day or is running: its fills, closed
    trades, P&L, equity and risk state; each model's champion. ``notify``: also send the
    summary as a ``daily_summary`` notice. Returns the summary as JSON.
    """
    settings = desk(home)
    start, end = broker_day(settings, at)
    label = end.astimezone(ZoneInfo(settings.risk.day_zone)).date().isoformat()
    days = [session_day_step(settings, r, start, end) for r in sessions_step(settings)]
    days = [d for d in days if _active(d)]
    champions = champions_step(settings)
    text = summary_text(label, days, champions)
    _record(label, start, end, days, champions, text)
    if notify:
        notice = Notice(
            NoticeKind.DAILY_SUMMARY, f"daily summary {label}", text, ts=end, key=f"daily-{label}"
        )
        notice_step(settings, notice)
    return {
        "day": label,
        "start": iso_z(start),
        "end": iso_z(end),
        "sessions": [d.model_dump(mode="json") for d in days],
        "champions": [c.model_dump(mode="json") for c in champions],
        "summary": text,
    }

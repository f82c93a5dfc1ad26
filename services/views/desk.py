"""The Desk page: one trading session's standing, read from the state database read-only.

A session's equity curve and its drawdown from the high-water mark (the tearsheet's figures),
today's profit and loss against the broker day, what it holds (exposure by symbol, positions,
working orders), its account's risk state with how much of each limit is used, and whether its
loop is alive (the heartbeat the supervisor watches, the age of the last bar).

Times are the loop's clock where the state database records the loop's clock (equity marks,
the watermark, orders), and the wall clock for heartbeats; a replayed session's loop clock is
the replayed bars' time, so its "today" is the broker day of its last mark, not of the wall
clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

from core.clocks import day_start_at
from core.errors import SolodeskError
from core.instruments import InstrumentRegistry
from core.processes import process_running
from core.settings import RiskSettings, Settings
from core.timeframes import parse_timeframe
from core.times import ns_from_utc, utc_from_ns, utc_now
from core.types import Fill, Frozen, Order, OrderStatus, Position
from execution.risk import RiskState, RiskStatus, parse_risk_overrides
from feature_store.state import Heartbeat, SessionRecord, StateDB
from pipelines.backtest.metrics import bars_per_year, drawdown, performance
from pipelines.backtest.tearsheet import drawdown_figure, equity_figure
from pipelines.report_kit import LOSS_COLOUR, WIN_COLOUR, chart_layout, chart_note, chart_times
from pipelines.static_chart import figure_svg
from services.runtime import risk_engine

#: What the pages say when the desk has no state database or no session in it.
NO_SESSION: Final = "No trading session yet"
#: The command that starts a first session.
PAPER_COMMAND: Final = "solodesk paper --symbol EURUSD --timeframe H1 --strategy sma_cross"

#: How a session's loop stands: alive, silent past the supervisor's limit, or not running.
Health = Literal["ok", "stale", "not running"]
#: The sessions of a desk, oldest first.
Sessions = tuple[SessionRecord, ...]

# Two sizes within this relative distance are the same size (a fill that completes an order).
_REL_TOL: Final = 1e-9
_DAY_RULE: Final = frozenset({"day_start", "day_zone"})


class EquityNow(Frozen):
    """A session's equity at its last mark (``at``, the loop's clock) against its history.

    ``equity_hwm`` is the high-water mark (the initial cash counts as one); ``drawdown`` is
    ``equity / equity_hwm - 1`` (0 at the mark, negative below it) and ``max_drawdown`` the
    lowest it has been.
    """

    at: datetime
    equity: float
    balance: float
    initial_cash: float
    equity_hwm: float
    drawdown: float
    max_drawdown: float
    total_return: float
    points: int


class TodayPnl(Frozen):
    """Profit and loss of the broker day that holds the last mark.

    The day starts at ``day_start`` (UTC; ``day_rule`` local time, the risk engine's day) and
    its P&L is measured from its first mark, as the risk engine measures the daily loss, to the
    last mark at ``measured_at`` (the loop's clock).
    """

    measured_at: datetime
    day_start: datetime
    day_rule: str
    day_start_equity: float
    equity: float
    pnl: float
    fraction: float


class ExposureRow(Frozen):
    """An open position's exposure: ``notional`` in account currency (absolute) and as a
    fraction of equity, marked at ``mark`` (None where no mark is known)."""

    symbol: str
    side: Literal["long", "short"]
    units: float
    lots: float | None
    mark: float | None
    notional: float | None
    of_equity: float | None


class LimitUsage(Frozen):
    """One risk limit that is set: its value, the current measure and the fraction of the limit
    used (None where the state does not give it, or the setting is no budget to use up)."""

    limit: str
    value: str
    current: str
    usage: float | None


class Measures(Frozen):
    """What the state database gives to measure the limits against; None is unknown.

    ``gross`` is the notional held (account currency), ``lots`` the largest position,
    ``orders_last_minute`` the orders sent in the minute up to the session's last write (the
    loop's clock) and ``symbols`` those held.
    """

    gross: float | None = None
    equity: float | None = None
    lots: float | None = None
    open_orders: int = 0
    orders_last_minute: int = 0
    symbols: tuple[str, ...] = ()


class SessionHealth(Frozen):
    """Whether a session's loop is alive.

    ``heartbeat_age`` is the wall-clock seconds since the loop's last heartbeat; ``word`` is
    ``ok``, ``stale`` (running, but silent longer than the supervisor's ``hang_seconds``) or
    ``not running``. ``bar_latency`` is the wall time of the last heartbeat minus the moment the
    last processed bar was known (its open plus the timeframe): seconds, for a session fed by a
    live feed only (a replay's bars are simulated time).
    """

    session: str
    status: str
    word: Health
    pid: int | None
    heartbeat_at: datetime | None
    heartbeat_age: float | None
    bars: int
    loop_time: datetime | None
    last_bar: datetime | None
    bar_latency: float | None
    feed: str
    note: str


class DeskView(Frozen):
    """Everything the Desk page shows of one session but its charts."""

    session: SessionRecord
    equity: EquityNow | None
    today: TodayPnl | None
    risk: RiskStatus
    limits: tuple[LimitUsage, ...]
    exposure: tuple[ExposureRow, ...]
    positions: tuple[Position, ...]
    orders: tuple[Order, ...]
    health: tuple[SessionHealth, ...]
    hang_seconds: float


# -- sessions --------------------------------------------------------------------------------


def session_records(settings: Settings) -> Sessions:
    """Return every session of the desk, oldest first; none when there is no state database."""
    reader = StateDB.reader(settings)
    if reader is None:
        return ()
    with reader:
        return tuple(reader.sessions())


def default_session(records: Sequence[SessionRecord]) -> str | None:
    """Return the session a page opens on: the latest running one, else the latest one."""
    running = [r for r in records if r.status == "running"]
    chosen = running or list(records)
    return chosen[-1].session if chosen else None


def describe_session(record: SessionRecord) -> str:
    """Return one line about a session: kind, market, strategy or model, status and pause."""
    params = ", ".join(f"{k}={v}" for k, v in sorted(record.params.items()))
    what = f"{record.strategy}({params})" if params else record.strategy
    model = record.options.get("model")
    if model:
        version = record.options.get("model_version")
        alias = record.options.get("model_alias")
        what += f" · model {model} " + (f"v{version}" if version else f"@{alias or 'champion'}")
    paused = " · PAUSED" if record.paused else ""
    return (
        f"{record.kind} · {record.symbol} {record.timeframe} · {what} · {record.status}{paused}"
        f" · account {record.account} · {record.bars:,} bars"
    )


def resume_command(record: SessionRecord) -> str:
    """Return the command that resumes a session (given the options it started with)."""
    model = record.options.get("model")
    what = f"--name {model}" if model else f"--strategy {record.strategy}"
    return (
        f"solodesk paper --symbol {record.symbol} --timeframe {record.timeframe} {what} "
        f"--session {record.session}"
    )


# -- the view ----------------------------------------------------------------------------------


def desk_view(settings: Settings, session: str) -> DeskView | None:
    """Return what the Desk page shows of ``session``; None when it (or the database) is absent.

    Raises
    ------
    UsageError
        If the session's risk overrides or the settings' risk day are invalid.
    """
    reader = StateDB.reader(settings)
    if reader is None:
        return None
    with reader:
        record = reader.session(session)
        if record is None:
            return None
        records = reader.sessions()
        beats = {r.session: reader.heartbeat(r.session) for r in records}
        points = reader.equity_points(session).get(session)
        positions = tuple(p for _, p in reader.positions(session) if p.units != 0.0)
        sent = reader.orders(session)
        orders = working_orders(
            sent,
            {str(b.get("client_order_id")): b for b in reader.broker_orders(record.account)},
            reader.fills(session),
        )
        recent = orders_since(sent, record.updated, timedelta(minutes=1))
        trades = reader.trades(session)
        live_bars = reader.bars_of(session)
        limits = parse_risk_overrides(settings.risk, tuple(record.options.get("risk", ())))
        engine = risk_engine(reader, limits, record.account)
    state = engine.state
    risk = engine.status(paused=record.paused)
    registry = settings.registry
    equity = None if points is None else equity_now(points, _initial_cash(record, points))
    today = None if points is None else today_pnl(points, limits)
    open_mark = next((t["exit_price"] for t in trades if t.get("exit_reason") == "open"), None)
    mark = open_mark if open_mark is not None else (live_bars[-1][4] if live_bars else None)
    exposure = exposure_rows(
        positions, record.symbol, mark, points, registry, settings.account_currency
    )
    lots = [row.lots for row in exposure]
    measures = Measures(
        gross=_total(row.notional for row in exposure),
        equity=None if equity is None else equity.equity,
        lots=_largest(lots),
        open_orders=len(orders),
        orders_last_minute=recent,
        symbols=tuple(sorted({p.symbol for p in positions})),
    )
    hang = settings.supervisor.hang_seconds
    now = utc_now()
    health = tuple(
        session_health(r, beats[r.session], hang, now, _alive(r, beats[r.session]))
        for r in [record, *(r for r in reversed(records) if r.session != session)]
    )
    return DeskView(
        session=record, equity=equity, today=today, risk=risk,
        limits=limit_usage(risk, state, limits, measures), exposure=exposure,
        positions=positions, orders=orders, health=health, hang_seconds=hang,
    )  # fmt: skip


def equity_charts(settings: Settings, session: str) -> tuple[go.Figure, go.Figure] | None:
    """Return a session's equity curve and its underwater chart (drawdown from the high-water
    mark), as the backtest tearsheet draws them; None before its first mark."""
    reader = StateDB.reader(settings)
    if reader is None:
        return None
    with reader:
        record = reader.session(session)
        points = reader.equity_points(session).get(session)
    if record is None or points is None or points.shape[0] == 0:
        return None
    ts = points["ts"].astype(np.int64)
    values = points["equity"].astype(np.float64)
    cash = _initial_cash(record, points)
    per_year = bars_per_year(
        parse_timeframe(record.timeframe), settings.registry.get(record.symbol).asset_class
    )
    metrics = performance(values, ts=ts, bars_per_year=per_year, initial_cash=cash)
    times = chart_times(ts)
    return equity_figure(times, values, cash, None), drawdown_figure(times, values, cash, metrics)


def equity_pictures(settings: Settings, session: str) -> tuple[str, str] | None:
    """Return the figures of :func:`equity_charts` drawn as SVG pictures (the page's charts
    until the person asks for interactive ones); None before the session's first mark."""
    charts = equity_charts(settings, session)
    return None if charts is None else (figure_svg(charts[0]), figure_svg(charts[1]))


def exposure_picture(settings: Settings, rows: Sequence[ExposureRow]) -> str:
    """Return :func:`exposure_figure` of ``rows`` drawn as an SVG picture."""
    del settings  # a view's first argument; the rows carry everything drawn
    return figure_svg(exposure_figure(rows))


def exposure_figure(rows: Sequence[ExposureRow]) -> go.Figure:
    """Return a bar per symbol of the notional held, long up and short down (account currency)."""
    figure = go.Figure()
    known = [r for r in rows if r.notional is not None]
    if known:
        signed = [(r.notional or 0.0) * (1 if r.side == "long" else -1) for r in known]
        shares = ["–" if r.of_equity is None else f"{r.of_equity:.1%} of equity" for r in known]
        figure.add_trace(
            go.Bar(
                x=[r.symbol for r in known],
                y=signed,
                customdata=shares,
                marker={"color": [WIN_COLOUR if v >= 0 else LOSS_COLOUR for v in signed]},
                hovertemplate="%{x}: %{y:,.2f} (%{customdata})<extra></extra>",
                name="notional",
                width=0.4,
            )
        )
    else:
        chart_note(figure, "no open position" if not rows else "no mark for the positions")
    figure.update_layout(title_text="Exposure by symbol (account currency; short below 0)")
    figure = chart_layout(figure, y_title="notional")
    figure.update_layout(hovermode="closest", showlegend=False)
    return figure


# -- the pieces, pure ------------------------------------------------------------------------


def equity_now(points: npt.NDArray[np.void], initial_cash: float) -> EquityNow:
    """Return the last mark of an equity curve (``EQUITY_POINT`` records) against its history."""
    values = points["equity"].astype(np.float64)
    under = drawdown(values, initial_cash=initial_cash)
    last = float(values[-1])
    return EquityNow(
        at=utc_from_ns(int(points["ts"][-1])), equity=last,
        balance=float(points["balance"][-1]), initial_cash=initial_cash,
        equity_hwm=max(float(values.max()), initial_cash), drawdown=float(under[-1]),
        max_drawdown=float(under.min()), total_return=last / initial_cash - 1.0,
        points=int(values.size),
    )  # fmt: skip


def today_pnl(points: npt.NDArray[np.void], risk: RiskSettings) -> TodayPnl:
    """Return the P&L of the broker day holding the last mark (``EQUITY_POINT`` records).

    The day starts at ``risk.day_start`` in ``risk.day_zone`` (the risk engine's day); its P&L
    runs from the day's first mark to the last one.
    """
    ts = points["ts"].astype(np.int64)
    values = points["equity"].astype(np.float64)
    last = utc_from_ns(int(ts[-1]))
    start = day_start_at(last, risk.day_start, risk.day_zone)
    first = int(np.searchsorted(ts, ns_from_utc(start), side="left"))
    base, now = float(values[first]), float(values[-1])
    return TodayPnl(
        measured_at=last, day_start=start, day_rule=f"{risk.day_start} {risk.day_zone}",
        day_start_equity=base, equity=now, pnl=now - base,
        fraction=now / base - 1.0 if base > 0 else math.nan,
    )  # fmt: skip


def working_orders(
    orders: Iterable[Order], book: Mapping[str, Mapping[str, Any]], fills: Iterable[Fill]
) -> tuple[Order, ...]:
    """Return the orders that may still fill, each with its status as it stands now.

    The session records an order as it was sent; where it stands now is the broker's book
    (``book``: the simulated broker's saved orders by client order id) where the broker keeps
    one, else what the session's fills say (filled in full, partly, or not yet).
    """
    filled: dict[str, float] = {}
    for fill in fills:
        filled[fill.client_order_id] = filled.get(fill.client_order_id, 0.0) + fill.units
    out = []
    for order in orders:
        body = book.get(order.client_order_id)
        if body is not None:
            now = order.model_copy(
                update={
                    "status": OrderStatus(str(body.get("status", order.status.value))),
                    "filled_units": float(body.get("filled_units") or 0.0),
                    "avg_price": body.get("avg_price"),
                }
            )
        else:
            done = filled.get(order.client_order_id, 0.0)
            if done >= order.units * (1.0 - _REL_TOL):
                status = OrderStatus.FILLED
            elif done > 0.0:
                status = OrderStatus.PARTIAL
            else:
                status = order.status
            now = order.model_copy(
                update={"status": status, "filled_units": max(done, order.filled_units)}
            )
        if now.status.is_open:
            out.append(now)
    return tuple(out)


def orders_since(orders: Iterable[Order], moment: datetime | None, span: timedelta) -> int:
    """Return how many orders were sent in the ``span`` up to ``moment`` (the loop's clock)."""
    if moment is None:
        return 0
    return sum(1 for o in orders if moment - span < o.ts <= moment)


def exposure_rows(
    positions: Sequence[Position],
    symbol: str,
    mark: float | None,
    points: npt.NDArray[np.void] | None,
    registry: InstrumentRegistry,
    account_currency: str,
) -> tuple[ExposureRow, ...]:
    """Return the exposure of each open position.

    The session's own symbol is valued as the loop last marked it: the last equity point's
    exposure (gross notional over equity, converted to the account currency) times its
    equity, and ``mark`` (its open trade's mark, or its last live bar's close). Another symbol
    is valued at its average price, when it is quoted in the account currency.
    """
    equity = None if points is None or points.shape[0] == 0 else float(points["equity"][-1])
    rows = []
    for position in positions:
        size = abs(position.units)
        try:
            instrument = registry.get(position.symbol)
        except SolodeskError:
            instrument = None
        lots = None if instrument is None else size / instrument.contract_size
        notional: float | None = None
        price: float | None = None
        if position.symbol == symbol and points is not None and equity is not None:
            notional = float(points["exposure"][-1]) * equity
            price = mark
        elif instrument is not None and instrument.quote == account_currency:
            price = position.avg_price
            notional = size * price
        share = None if notional is None or not equity else notional / equity
        rows.append(
            ExposureRow(
                symbol=position.symbol,
                side="long" if position.units > 0 else "short",
                units=position.units,
                lots=lots,
                mark=price,
                notional=notional,
                of_equity=share,
            )
        )
    return tuple(rows)


def limit_usage(
    status: RiskStatus, state: RiskState, limits: RiskSettings, measures: Measures
) -> tuple[LimitUsage, ...]:
    """Return each limit that is set (``status.limits``) with the current measure and the
    fraction of it used; the risk day's start and zone are left out (no budget to use).

    The daily loss used is ``-daily_pnl / (max_daily_loss * day_start_equity)``, the drawdown
    used ``-drawdown / max_trailing_drawdown``; the size and count limits are the current
    ``measures`` over the limit.
    """
    rows = []
    for key, value in status.limits.items():
        if key in _DAY_RULE:
            continue  # the risk day is no budget: the Today section shows it
        current, usage = _measure(key, status, state, limits, measures)
        rows.append(
            LimitUsage(limit=key, value=_setting_text(key, value), current=current, usage=usage)
        )
    return tuple(rows)


def session_health(
    record: SessionRecord,
    beat: Heartbeat | None,
    hang_seconds: float,
    now: datetime,
    alive: bool | None,
) -> SessionHealth:
    """Return whether a session's loop is alive at wall time ``now``.

    ``alive`` says whether the session's process exists (None when it records none).
    """
    age = None if beat is None else (now - beat.at).total_seconds()
    feed = str(record.options.get("feed", "replay"))
    last_bar = None if record.last_bar_ts is None else utc_from_ns(record.last_bar_ts)
    latency = None
    if feed != "replay" and beat is not None and last_bar is not None:
        known = last_bar + parse_timeframe(record.timeframe).duration
        latency = (beat.at - known).total_seconds()
    word: Health
    if record.status != "running":
        word, note = "not running", f"the session is {record.status}"
    elif alive is False:
        word = "not running"
        note = f"its process {record.pid} is gone: `{resume_command(record)}` resumes it"
    elif age is None:
        word, note = "stale", "no heartbeat yet"
    elif age > hang_seconds:
        word = "stale"
        note = f"no heartbeat for {age:,.0f} s (the supervisor's hang_seconds is {hang_seconds:g})"
    else:
        word, note = "ok", f"last heartbeat {age:,.1f} s ago"
    if feed == "replay":
        note += "; replayed bars: the loop's clock is the bars' time, so no bar latency"
    return SessionHealth(
        session=record.session, status=record.status, word=word,
        pid=beat.pid if beat is not None else record.pid,
        heartbeat_at=None if beat is None else beat.at, heartbeat_age=age,
        bars=record.bars, loop_time=record.updated, last_bar=last_bar, bar_latency=latency,
        feed=feed, note=note,
    )  # fmt: skip


# -- helpers ---------------------------------------------------------------------------------


def _initial_cash(record: SessionRecord, points: npt.NDArray[np.void]) -> float:
    cash = record.options.get("backtest", {}).get("cash")
    return float(cash) if cash else float(points["balance"][0])


def _alive(record: SessionRecord, beat: Heartbeat | None) -> bool | None:
    if record.status != "running":
        return None
    pid = record.pid if record.pid is not None else (beat.pid if beat is not None else None)
    return None if pid is None else process_running(pid)


def _largest(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return None if len(known) < len(values) else max(known, default=0.0)


def _total(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _setting_text(key: str, value: Any) -> str:
    if key in ("max_daily_loss", "max_trailing_drawdown"):
        return f"{value:.2%}"
    if key == "reduce_at":
        return f"{value:.0%} of a loss limit"
    if key == "max_gross_exposure":
        return f"{value:,.2f}"
    if key == "max_leverage":
        return f"{value:g}x"
    if key == "trading_hours":
        return f"{value} UTC"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def _ratio(used: float | None, limit: float | None) -> float | None:
    if used is None or limit is None or limit <= 0:
        return None
    return max(0.0, used) / limit


def _measure(
    key: str,
    status: RiskStatus,
    state: RiskState,
    limits: RiskSettings,
    measures: Measures,
) -> tuple[str, float | None]:
    gross, equity, lots = measures.gross, measures.equity, measures.lots
    if key == "max_daily_loss":
        pnl, base = status.daily_pnl, status.day_start_equity
        if pnl is None or base is None or base <= 0:
            return "no mark yet", None
        budget = (limits.max_daily_loss or 0.0) * base
        return f"{pnl:+,.2f} ({pnl / base:+.2%})", _ratio(-pnl, budget)
    if key == "max_trailing_drawdown":
        if status.drawdown is None:
            return "no mark yet", None
        return f"{status.drawdown:.2%}", _ratio(-status.drawdown, limits.max_trailing_drawdown)
    if key == "reduce_at":
        return f"state {status.state.value}", None
    if key == "max_position_lots":
        if lots is None:
            return "unknown", None
        return f"{lots:g}", _ratio(lots, limits.max_position_lots)
    if key == "max_gross_exposure":
        if gross is None:
            return "unknown", None
        return f"{gross:,.2f}", _ratio(gross, limits.max_gross_exposure)
    if key == "max_open_orders":
        count = measures.open_orders
        return f"{count}", _ratio(count, limits.max_open_orders)
    if key == "max_orders_per_minute":
        count = measures.orders_last_minute
        return f"{count} in the last minute", _ratio(count, limits.max_orders_per_minute)
    if key == "max_leverage":
        if gross is None or not equity or equity <= 0:
            return "unknown", None
        return f"{gross / equity:.2f}x", _ratio(gross / equity, limits.max_leverage)
    if key == "allowed_symbols":
        held = measures.symbols
        return ("held: " + ", ".join(held)) if held else "nothing held", None
    if key == "cooldown_after_losses":
        used = _ratio(state.losses_in_row, limits.cooldown_after_losses)
        return f"{state.losses_in_row} losing trades in a row", used
    if key == "cooldown_bars":
        return f"{state.cooldown_bars_left} bars left", None
    return "—", None

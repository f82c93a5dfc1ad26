"""The Trades page: the round trips of the desk's sessions, filtered; one trade on its candles
with its entry, exit and protective levels; the distribution of trade profit and loss.

Round trips and fills come from the state database opened read-only; candles from the
session's own recorded bars (a live feed records them) or else the bar store. Times are the
loop's clock, UTC.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Final

import numpy as np
import plotly.graph_objects as go
import polars as pl
from pydantic import BaseModel, ConfigDict

from core.errors import SolodeskError
from core.settings import Settings
from core.timeframes import parse_timeframe
from core.times import iso_z, iso_z_expr, ns_from_utc, utc_from_ns
from core.types import Frozen, Instrument, Order, Side
from execution.costs import protective_levels
from feature_store.series import SIDE_PREFERENCE, find_series
from feature_store.state import SessionRecord, StateDB
from feature_store.store import BarStore
from pipelines.backtest.engine import TRADE_SCHEMA
from pipelines.backtest.tearsheet import closed_trades, pnl_figure
from pipelines.report_kit import (
    LINE_COLOUR,
    LOSS_COLOUR,
    MUTED_COLOUR,
    WIN_COLOUR,
    chart_layout,
    chart_times,
)

#: Bars drawn before a trade's entry and after its exit.
CONTEXT_BARS: Final = 30
#: The trade log's columns: the session's, then the backtest's trade table.
LOG_SCHEMA: Final[dict[str, pl.DataType]] = {
    "session": pl.String(), "symbol": pl.String(), "timeframe": pl.String(), "n": pl.Int64(),
    **TRADE_SCHEMA,
}  # fmt: skip
_FILL_SCHEMA: Final[dict[str, pl.DataType]] = {
    "session": pl.String(), "seq": pl.Int64(), "ts": pl.String(), "symbol": pl.String(),
    "side": pl.String(), "units": pl.Float64(), "lots": pl.Float64(), "price": pl.Float64(),
    "fees": pl.Float64(), "slippage": pl.Float64(), "swap": pl.Float64(),
    "realized": pl.Float64(), "reason": pl.String(), "client_order_id": pl.String(),
    "execution_id": pl.String(),
}  # fmt: skip
NO_PROTECTION: Final = "no stop-loss / take-profit set"


class TradeFilter(Frozen):
    """What the trade log keeps: an empty choice keeps everything; dates are the entry's UTC
    date, both ends included."""

    symbols: tuple[str, ...] = ()
    sides: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    start: date | None = None
    end: date | None = None


class TradeSummary(Frozen):
    """A trade log in four figures: its trades (the open one included), those closed, their
    P&L and the share of them that won (None with none closed)."""

    trades: int
    closed: int
    pnl: float
    winners: float | None


class TradeChart(BaseModel):
    """One trade on its candles, or what is missing to draw it.

    ``figure`` is None when no bars are stored around the trade; ``missing`` then says what
    is missing and ``command`` what provides it. ``bars`` names where the candles came from;
    ``protection`` says which stop-loss and take-profit levels the session used, if any.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    figure: go.Figure | None
    bars: str = ""
    stop_loss: float | None = None
    take_profit: float | None = None
    protection: str = NO_PROTECTION
    missing: str = ""
    command: str | None = None


def trade_log(settings: Settings, session: str | None = None) -> pl.DataFrame:
    """Return the round trips of one session (every session when None), oldest session first.

    Columns: :data:`LOG_SCHEMA` (a trade still open has ``exit_reason`` ``open``, no
    ``exit_ts``, and is marked at ``exit_price``); none without a state database.
    """
    reader = StateDB.reader(settings)
    if reader is None:
        return pl.DataFrame(schema=LOG_SCHEMA)
    with reader:
        records = reader.sessions() if session is None else _listed(reader.session(session))
        rows = [
            {"session": r.session, "symbol": r.symbol, "timeframe": r.timeframe, **trade}
            for r in records
            for trade in reader.trades(r.session)
        ]
    return pl.DataFrame(rows, schema=LOG_SCHEMA)


def trade_fills(settings: Settings, session: str | None = None) -> pl.DataFrame:
    """Return the fills of one session (every session when None) in execution order, times
    ISO-8601 UTC to the millisecond."""
    reader = StateDB.reader(settings)
    if reader is None:
        return pl.DataFrame(schema=_FILL_SCHEMA)
    with reader:
        records = reader.sessions() if session is None else _listed(reader.session(session))
        rows = [
            {
                "session": f.session,
                "seq": f.seq,
                "ts": iso_z(f.ts, "milliseconds"),
                "symbol": f.symbol,
                "side": f.side.value,
                "units": f.units,
                "lots": f.lots,
                "price": f.price,
                "fees": f.fees,
                "slippage": f.slippage,
                "swap": f.swap,
                "realized": f.realized,
                "reason": f.reason,
                "client_order_id": f.client_order_id,
                "execution_id": f.execution_id,
            }
            for r in records
            for f in reader.fills(r.session)
        ]
    return pl.DataFrame(rows, schema=_FILL_SCHEMA)


def filter_trades(log: pl.DataFrame, keep: TradeFilter) -> pl.DataFrame:
    """Return the rows of a trade log that ``keep`` keeps."""
    out = log
    if keep.symbols:
        out = out.filter(pl.col("symbol").is_in(list(keep.symbols)))
    if keep.sides:
        out = out.filter(pl.col("direction").is_in(list(keep.sides)))
    if keep.reasons:
        out = out.filter(pl.col("exit_reason").is_in(list(keep.reasons)))
    day = pl.col("entry_ts").dt.date()
    if keep.start is not None:
        out = out.filter(day >= keep.start)
    if keep.end is not None:
        out = out.filter(day <= keep.end)
    return out


def summarize(log: pl.DataFrame) -> TradeSummary:
    """Return a trade log's count, closed count, closed P&L and share of winners."""
    pnl = closed_trades(log)["pnl"].cast(pl.Float64).to_numpy()
    return TradeSummary(
        trades=log.height,
        closed=int(pnl.size),
        pnl=float(pnl.sum()),
        winners=float((pnl > 0).mean()) if pnl.size else None,
    )


def log_table(log: pl.DataFrame) -> pl.DataFrame:
    """Return a trade log as the page shows it: times as ISO-8601 UTC text with ``Z``."""
    return log.with_columns(
        iso_z_expr(pl.col("entry_ts")).alias("entry_ts"),
        iso_z_expr(pl.col("exit_ts")).alias("exit_ts"),
    )


def trade_label(row: dict[str, Any]) -> str:
    """Return a trade's one-line name: session, number, side, entry time, P&L and exit."""
    entry = row.get("entry_ts")
    when = iso_z(entry) if isinstance(entry, datetime) else "?"
    pnl = row.get("pnl")
    money = "–" if pnl is None else f"{pnl:+,.2f}"
    return (
        f"{row['session']} #{row['n']} · {row['direction']} {when} · {money} · {row['exit_reason']}"
    )


def pnl_distribution(log: pl.DataFrame) -> go.Figure:
    """Return the histogram of the closed trades' P&L in a log (the tearsheet's chart)."""
    return _title_room(pnl_figure(closed_trades(log)))


def trade_chart(settings: Settings, session: str, n: int) -> TradeChart:
    """Return round trip ``n`` of ``session`` on the candles around it.

    The candles run from :data:`CONTEXT_BARS` bars before the entry to as many after the exit
    (the last processed bar for a trade still open); the entry and exit are marked, and the
    stop-loss and take-profit drawn where the session used them.
    """
    reader = StateDB.reader(settings)
    if reader is None:
        return TradeChart(figure=None, missing="No trading session yet")
    with reader:
        record = reader.session(session)
        trade = next((t for t in reader.trades(session) if t["n"] == n), None)
        if record is None or trade is None:
            return TradeChart(figure=None, missing=f"No trade {n} in session {session!r}")
        positions = [p for _, p in reader.positions(session) if p.symbol == record.symbol]
        orders = reader.orders(session)
        live = reader.bars_of(session)
    instrument = settings.registry.get(record.symbol)
    entry: datetime = trade["entry_ts"]
    exit_: datetime | None = trade["exit_ts"]
    last = utc_from_ns(record.last_bar_ts) if record.last_bar_ts is not None else entry
    until = exit_ if exit_ is not None else max(last, entry)
    if live:
        bars = pl.DataFrame(
            [row[:5] for row in live], schema=["ts", "open", "high", "low", "close"], orient="row"
        )
        source = f"{record.symbol} {record.timeframe}, the session's live bars"
    else:
        try:
            bars, source = _stored_bars(settings, record, entry, until)
        except SolodeskError:
            return _no_bars(record)
    window = _window(bars, entry, until)
    if window.height == 0:
        return _no_bars(record)
    long = trade["direction"] == "long"
    stop, take, protection = _protection(record, trade, instrument, positions, orders)
    figure = _candles(window, source, instrument)
    _mark(figure, entry, trade["entry_price"], "entry", long, instrument)
    exit_name = f"exit ({trade['exit_reason']})" if exit_ is not None else "marked (open)"
    _mark(figure, until, trade["exit_price"], exit_name, not long, instrument)
    for level, name, colour in (
        (stop, "stop-loss", LOSS_COLOUR),
        (take, "take-profit", WIN_COLOUR),
    ):
        if level is not None:
            figure.add_hline(
                y=level, line={"color": colour, "width": 1, "dash": "dash"},
                annotation_text=f"{name} {level:.{instrument.digits}f}",
                annotation_position="top left",
            )  # fmt: skip
    pnl = trade["pnl"]
    figure.update_layout(
        title_text=(
            f"{session} #{n}: {trade['direction']} {trade['units']:,.0f} units"
            + ("" if pnl is None else f", P&L {pnl:+,.2f}")
        ),
        xaxis_rangeslider_visible=False,
    )
    return TradeChart(
        figure=figure, bars=source, stop_loss=stop, take_profit=take, protection=protection
    )


# -- helpers ---------------------------------------------------------------------------------


def _listed(record: SessionRecord | None) -> list[SessionRecord]:
    return [] if record is None else [record]


def _no_bars(record: SessionRecord) -> TradeChart:
    return TradeChart(
        figure=None,
        missing=f"No stored {record.symbol} {record.timeframe} bars around this trade",
        command=f"solodesk ingest FILE --symbol {record.symbol} --timeframe {record.timeframe}",
    )


def _stored_bars(
    settings: Settings, record: SessionRecord, entry: datetime, until: datetime
) -> tuple[pl.DataFrame, str]:
    store = BarStore(settings.store_dir)
    timeframe = parse_timeframe(record.timeframe)
    side = record.options.get("side")
    info = find_series(
        store, settings.registry, record.symbol, timeframe, Side(side) if side else None,
        prefer=SIDE_PREFERENCE,
    )  # fmt: skip
    # Generous on both sides (weekends and holidays hold no bars); the window is cut by count.
    pad = max(timeframe.duration * CONTEXT_BARS * 3, timedelta(days=5))
    bars = store.read(info.key, entry - pad, until + pad, info=info)
    return bars.select("ts", "open", "high", "low", "close"), f"{info.key} (stored bars)"


def _window(bars: pl.DataFrame, entry: datetime, until: datetime) -> pl.DataFrame:
    if bars.height == 0:
        return bars
    ts = bars["ts"].cast(pl.Datetime("ns", "UTC")).cast(pl.Int64).to_numpy()
    first = int(np.searchsorted(ts, ns_from_utc(entry), side="left"))
    last = int(np.searchsorted(ts, ns_from_utc(until), side="right"))
    if first >= ts.size:  # the store ends before the trade
        return bars.clear()
    start = max(first - CONTEXT_BARS, 0)
    return bars.slice(start, min(last + CONTEXT_BARS, ts.size) - start)


def _protection(
    record: SessionRecord,
    trade: dict[str, Any],
    instrument: Instrument,
    positions: list[Any],
    orders: list[Order],
) -> tuple[float | None, float | None, str]:
    """Return the trade's stop-loss and take-profit prices and a sentence on where they come
    from: the open position's levels (they may have moved), else the session's pips from the
    entry price (where the loop puts them once the entry fills), else the entry order's."""
    if trade["exit_reason"] == "open" and positions:
        held = positions[0]
        if held.stop_loss is not None or held.take_profit is not None:
            return held.stop_loss, held.take_profit, "the open position's levels now"
    config = record.options.get("backtest", {})
    stop_pips, take_pips = config.get("stop_loss_pips"), config.get("take_profit_pips")
    trailing = config.get("trailing_stop_pips")
    if stop_pips is not None or take_pips is not None:
        side = 1.0 if trade["direction"] == "long" else -1.0
        stop, take = protective_levels(
            side, float(trade["entry_price"]),
            None if stop_pips is None else float(stop_pips),
            None if take_pips is None else float(take_pips),
            instrument.pip_size,
        )  # fmt: skip
        words = [
            f"{name} {pips:g} pips from the entry price"
            for name, pips in (("stop-loss", stop_pips), ("take-profit", take_pips))
            if pips is not None
        ]
        return stop, take, ", ".join(words)
    entry = trade["entry_ts"]
    sent = [o for o in orders if not o.reduce_only and o.ts <= entry]
    if sent and (sent[-1].stop_loss is not None or sent[-1].take_profit is not None):
        return sent[-1].stop_loss, sent[-1].take_profit, "the entry order's levels"
    if trailing is not None:
        return None, None, f"{NO_PROTECTION}; a trailing stop {trailing:g} pips behind the price"
    return None, None, NO_PROTECTION


def _candles(window: pl.DataFrame, source: str, instrument: Instrument) -> go.Figure:
    times = chart_times(window["ts"].cast(pl.Datetime("ns", "UTC")).cast(pl.Int64).to_numpy())
    figure = go.Figure(
        go.Candlestick(
            x=times, open=window["open"].to_numpy(), high=window["high"].to_numpy(),
            low=window["low"].to_numpy(), close=window["close"].to_numpy(), name=source,
            increasing_line_color=LINE_COLOUR, decreasing_line_color=MUTED_COLOUR,
        )
    )  # fmt: skip
    figure = chart_layout(figure, y_title=f"price ({instrument.quote})")
    figure.update_layout(hovermode="closest")
    return _title_room(figure)


def _title_room(figure: go.Figure) -> go.Figure:
    # The reports' layout puts the legend just above the plot; on a page the title needs the
    # row above it.
    figure.update_layout(margin={"t": 80}, title={"y": 0.97, "yanchor": "top"})
    return figure


def _mark(
    figure: go.Figure, at: datetime, price: float, name: str, up: bool, instrument: Instrument
) -> None:
    x = chart_times(np.array([ns_from_utc(at)], dtype=np.int64))
    figure.add_trace(
        go.Scatter(
            x=x, y=[price], mode="markers", name=f"{name} {price:.{instrument.digits}f}",
            marker={
                "symbol": "triangle-up" if up else "triangle-down", "size": 14,
                "color": WIN_COLOUR if up else LOSS_COLOUR, "line": {"width": 1, "color": "#333"},
            },
            hovertemplate=f"{name}: %{{y}} at %{{x}}<extra></extra>",
        )
    )  # fmt: skip

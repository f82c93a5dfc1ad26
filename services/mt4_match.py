"""A trading session beside MetaTrader 4's own bars: does the session's loop agree with a replay
on what the terminal holds?

The job:

- :func:`load_match` reads the session's record, options, decisions and orders from the state
  database, and the bars it traded (those it kept, else the stored series it replayed, up to
  its last processed bar);
- :func:`pull_session_bars` asks the terminal (``HIST``) for the bars from the session's first
  to its last bar (:func:`services.mt4_history.pull_bars`);
- :func:`replay_decisions` runs the session's strategy over the terminal's bars through the
  same loop, paper broker, risk limits, costs and seed the session ran with, on a scratch state
  database, and returns its decisions and orders;
- :func:`compare` (pure) lines them up bar by bar: a bar differs when its decisions or orders
  differ (what the replay said beside what the session did), and a bar's prices differ when
  the terminal's open, high, low, close or spread is off the session's by half a point or
  more, or one side lacks the bar;
- :func:`record_match_report` writes the HTML table of differing bars.

:func:`match_session` chains them for ``solodesk mt4 match``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from core.errors import UsageError
from core.ports import NullNotifier
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import iso_z, utc_from_ns
from core.types import Order
from execution.brokers.mt4.client import BridgeClient
from execution.brokers.mt4.protocol import MT4Bar
from execution.clock import SimClock
from execution.feeds import ReplayFeed
from execution.risk import RiskEngine, parse_risk_overrides
from feature_store.reports import write_report
from feature_store.series import SeriesData
from feature_store.state import IntentRecord, SessionRecord, StateDB
from pipelines.report_kit import page, table
from services.backtest import load_strategy_features
from services.common import Progress
from services.live_bars import check_session_name, kept_bars
from services.mt4_history import history_frame, pull_bars
from services.runtime import (
    PaperOptions,
    SessionInputs,
    build_runtime,
    load_inputs,
    series_batch,
    spread_check,
)

_PRICES: Final = ("open", "high", "low", "close", "spread")
_UNITS_TOLERANCE: Final = 1e-6


class BarDifference(BaseModel):
    """A bar on which the replay and the session did not do the same."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ts: datetime
    backtest: str
    session: str


class PriceDifference(BaseModel):
    """A bar whose prices the terminal and the session do not agree on (or one lacks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ts: datetime
    fields: tuple[str, ...]
    mt4: str
    session: str


class MatchReport(BaseModel):
    """A session matched against MT4's bars; the ``--json`` line of ``solodesk mt4 match``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session: str
    symbol: str
    timeframe: Timeframe
    strategy: str
    first: datetime
    last: datetime
    session_bars: int
    mt4_bars: int
    session_orders: int
    backtest_orders: int
    matched: bool
    message: str
    differing_bars: tuple[BarDifference, ...]
    price_differences: tuple[PriceDifference, ...]
    report: Path | None = None


@dataclass(frozen=True)
class MatchInputs:
    """What the session did: its record and options, its bars, strategy, decisions and orders."""

    record: SessionRecord
    options: PaperOptions
    inputs: SessionInputs
    bars: pl.DataFrame  # the bars the session traded, the store's bar schema
    intents: tuple[IntentRecord, ...]
    orders: tuple[Order, ...]


@dataclass(frozen=True)
class Decisions:
    """A run's decisions and the orders they became."""

    intents: tuple[IntentRecord, ...]
    orders: tuple[Order, ...]


def match_report_path(settings: Settings, session: str) -> Path:
    """Return where a session's match report goes, ``reports/mt4-match/<session>.html``."""
    return settings.mt4_match_reports_dir / f"{check_session_name(session)}.html"


# -- load ------------------------------------------------------------------------------------


def load_match(settings: Settings, session: str) -> MatchInputs:
    """Return a session's record, options, bars, strategy, decisions and orders.

    Raises
    ------
    UsageError
        If there is no such session, it traded a registered model (not matched yet), or it
        processed no bars.
    """
    if not settings.state_db_path.exists():
        raise UsageError(f"no session {session!r}: no trading sessions yet (solodesk paper)")
    with StateDB.open(settings) as db:
        record = db.session(session)
        if record is None:
            known = ", ".join(r.session for r in db.sessions()[-5:]) or "none"
            raise UsageError(f"no session {session!r} (latest: {known})")
        intents = tuple(db.intents(session))
        orders = tuple(db.orders(session))
        kept = kept_bars(db, session)
    options = PaperOptions.model_validate(record.options)
    if options.model is not None:
        msg = (
            f"session {session} trades model {options.model}: only strategy sessions are "
            "matched against MT4 so far"
        )
        raise UsageError(msg)
    if record.last_bar_ts is None:
        raise UsageError(f"session {session} has processed no bars yet: nothing to match")
    inputs = load_inputs(
        settings, options.symbol, options.timeframe, options.strategy, options.params,
        side=options.side, start=options.start, end=options.end, feature_set=options.feature_set,
    )  # fmt: skip
    last = utc_from_ns(record.last_bar_ts)
    bars = kept if kept.height else inputs.data.bars.filter(pl.col("ts") <= last)
    if "spread" not in bars.columns:
        bars = bars.with_columns(pl.lit(None, dtype=pl.Float64).alias("spread"))
    return MatchInputs(record, options, inputs, bars, intents, orders)


def pull_session_bars(
    client: BridgeClient, match: MatchInputs, progress: Progress | None = None
) -> list[MT4Bar]:
    """Return the terminal's bars from the session's first to its last bar."""
    first: datetime = match.bars["ts"].min()  # type: ignore[assignment]
    last: datetime = match.bars["ts"].max()  # type: ignore[assignment]
    return pull_bars(
        client, client.config.broker_symbol(match.inputs.data.key.symbol),
        match.inputs.data.key.timeframe, first,
        last + timedelta(seconds=1), progress=progress,
    )  # fmt: skip


# -- compute ---------------------------------------------------------------------------------


def _rates_on(data: SeriesData, ts: pl.Series) -> np.ndarray | float:
    """Return the session's quote-to-account rates on other bar times (as of each bar)."""
    if not isinstance(data.to_account, np.ndarray):
        return data.to_account
    known = pl.DataFrame({"ts": data.bars["ts"], "rate": data.to_account}).sort("ts")
    wanted = pl.DataFrame({"ts": ts}).sort("ts")
    joined = wanted.join_asof(known, on="ts", strategy="backward").with_columns(
        pl.col("rate").fill_null(strategy="backward")
    )
    return joined["rate"].to_numpy()


def mt4_series(settings: Settings, match: MatchInputs, bars: pl.DataFrame) -> SessionInputs:
    """Return the session's inputs with the terminal's bars in place of the stored ones."""
    data = match.inputs.data
    if "spread" not in data.bars.columns:
        bars = bars.drop("spread")  # the session traded without a spread column
    replaced = dataclasses.replace(data, bars=bars, to_account=_rates_on(data, bars["ts"]))
    features = load_strategy_features(
        settings, match.inputs.strategy_cls, replaced, match.options.feature_set
    )
    return dataclasses.replace(
        match.inputs, data=replaced, bars=series_batch(replaced), features=features
    )


def replay_decisions(settings: Settings, match: MatchInputs, inputs: SessionInputs) -> Decisions:
    """Run the session's strategy over ``inputs`` as the session ran it (paper broker, costs,
    risk limits, seed) on a scratch state database; return its decisions and orders."""
    options, record = match.options, match.record
    costs = options.backtest.costs
    spread_given = costs.spread_pips > 0 or costs.spread_from_data
    config = spread_check(inputs.data, options.backtest, spread_given)
    limits = parse_risk_overrides(settings.risk, options.risk)
    with tempfile.TemporaryDirectory(prefix="solodesk-match-") as scratch:
        db = StateDB(Path(scratch) / "match.db")
        try:
            db.create_session(record.model_copy(update={
                "kind": "backtest", "status": "running", "last_bar_ts": None, "bars": 0,
                "updated": None, "pid": None, "paused": False,
            }))  # fmt: skip
            runtime = build_runtime(
                db=db, session=record.session, account=record.account, mode="paper",
                inputs=inputs, config=config, simulator=options.simulator,
                risk=RiskEngine.fresh(limits, record.account), notifier=NullNotifier(),
                clock=SimClock(None), seed=options.seed, heartbeat_seconds=3600.0,
            )  # fmt: skip
            runtime.run(ReplayFeed(inputs.data.key.symbol, inputs.bars, batch=4096))
            return Decisions(tuple(db.intents(record.session)), tuple(db.orders(record.session)))
        finally:
            db.close()


def _by_bar(decisions: Decisions) -> dict[datetime, list[tuple[IntentRecord, Order | None]]]:
    orders = {o.client_order_id: o for o in decisions.orders}
    out: dict[datetime, list[tuple[IntentRecord, Order | None]]] = {}
    for intent in sorted(decisions.intents, key=lambda i: (i.bar_ts, i.client_order_id)):
        out.setdefault(intent.bar_ts, []).append((intent, orders.get(intent.client_order_id)))
    return out


def _key(entry: tuple[IntentRecord, Order | None]) -> tuple[object, ...]:
    intent, order = entry
    return (
        intent.reason, intent.decision, round(intent.units / _UNITS_TOLERANCE), intent.risk,
        None if order is None else order.status.value,
        None if order is None else round(order.filled_units / _UNITS_TOLERANCE),
    )  # fmt: skip


def _told(entries: Sequence[tuple[IntentRecord, Order | None]]) -> str:
    if not entries:
        return "nothing"
    parts = []
    for intent, order in entries:
        text = f"{intent.reason}: target {intent.decision:+g}, {intent.units:+,.2f} units"
        if intent.risk != "allowed":
            text += f", refused ({intent.risk})"
        elif order is not None:
            text += f", order {order.status.value} ({order.filled_units:,.2f} filled)"
        parts.append(text)
    return "; ".join(parts)


def decision_differences(backtest: Decisions, session: Decisions) -> list[BarDifference]:
    """Return the bars whose decisions or orders differ between the replay and the session."""
    ours, theirs = _by_bar(backtest), _by_bar(session)
    out = []
    for ts in sorted(set(ours) | set(theirs)):
        a, b = ours.get(ts, []), theirs.get(ts, [])
        if [_key(e) for e in a] != [_key(e) for e in b]:
            out.append(BarDifference(ts=ts, backtest=_told(a), session=_told(b)))
    return out


def _prices_text(row: dict[str, object], suffix: str) -> str:
    if row.get(f"open{suffix}") is None:
        return "no bar"
    values = [f"{c[0].upper()} {row[f'{c}{suffix}']}" for c in _PRICES[:4]]
    spread = row.get(f"spread{suffix}")
    if spread is not None:
        values.append(f"spread {spread:.6g}")
    return " ".join(values)


def price_differences(
    mt4: pl.DataFrame, session: pl.DataFrame, digits: int
) -> list[PriceDifference]:
    """Return the bars whose prices differ by half a point or more (``10**-digits / 2``)
    between the terminal and the session, or that only one of them has.

    The spread is compared where both have one; the volume is not (a terminal counts ticks).
    """
    tolerance = 0.5 * 10.0**-digits - 1e-12
    columns = ["ts", *_PRICES]
    joined = (
        mt4.select(columns)
        .join(session.select(columns), on="ts", how="full", coalesce=True, suffix="_session")
        .sort("ts")
    )
    out = []
    for row in joined.iter_rows(named=True):
        if row["open"] is None or row["open_session"] is None:
            fields: tuple[str, ...] = ("bar",)
        else:
            fields = tuple(
                c for c in _PRICES
                if row[c] is not None and row[f"{c}_session"] is not None
                and abs(row[c] - row[f"{c}_session"]) > tolerance
            )  # fmt: skip
        if fields:
            out.append(
                PriceDifference(
                    ts=row["ts"], fields=fields, mt4=_prices_text(row, ""),
                    session=_prices_text(row, "_session"),
                )
            )  # fmt: skip
    return out


def compare(match: MatchInputs, mt4: pl.DataFrame, backtest: Decisions, digits: int) -> MatchReport:
    """Return the session beside the replay on MT4's bars, bar by bar."""
    record = match.record
    first: datetime = match.bars["ts"].min()  # type: ignore[assignment]
    last: datetime = match.bars["ts"].max()  # type: ignore[assignment]
    session = Decisions(match.intents, match.orders)
    differing = decision_differences(backtest, session)
    prices = price_differences(mt4, match.bars, digits)
    matched = not differing and not prices
    if matched:
        message = (
            f"matched: {match.bars.height:,} bars from {iso_z(first)} to {iso_z(last)}, "
            f"{len(match.orders)} orders, the same on MT4's bars"
        )
    else:
        message = (
            f"not matched: {len(differing)} bar(s) where the replay on MT4's bars and the "
            f"session did not do the same, {len(prices)} bar(s) whose prices differ"
        )
    return MatchReport(
        session=record.session, symbol=record.symbol, timeframe=match.options.timeframe,
        strategy=record.strategy, first=first, last=last, session_bars=match.bars.height,
        mt4_bars=mt4.height, session_orders=len(match.orders),
        backtest_orders=len(backtest.orders), matched=matched, message=message,
        differing_bars=tuple(differing), price_differences=tuple(prices),
    )  # fmt: skip


# -- record ----------------------------------------------------------------------------------


def _rows_or_none(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return table(columns, rows) if rows else "<p>none</p>"


def match_html(report: MatchReport) -> str:
    """Return the report as an HTML page: the verdict, then the differing bars."""
    decisions = [(iso_z(d.ts), d.backtest, d.session) for d in report.differing_bars]
    prices = [
        (iso_z(p.ts), ", ".join(p.fields), p.mt4, p.session) for p in report.price_differences
    ]
    facts = (
        f"{report.symbol} {report.timeframe.value}, strategy {report.strategy}, bars "
        f"{iso_z(report.first)} to {iso_z(report.last)}: {report.session_bars:,} in the "
        f"session, {report.mt4_bars:,} from MT4"
    )
    return page(
        f"Session {report.session} against MT4",
        [
            ("Bars where the replay and the session differ", _rows_or_none(
                ("bar (UTC open)", "replay on MT4's bars", "session"), decisions)),
            ("Bars whose prices differ", _rows_or_none(
                ("bar (UTC open)", "fields", "MT4", "session"), prices)),
        ],
        subtitle=report.message, meta=facts,
    )  # fmt: skip


def record_match_report(report: MatchReport, path: Path) -> MatchReport:
    """Write the report's HTML page to ``path``; return the report naming it."""
    written = write_report(path.parent, path.name, match_html(report))
    return report.model_copy(update={"report": written})


def match_session(
    settings: Settings,
    session: str,
    *,
    report_path: Path | None = None,
    progress: Progress | None = None,
    connect: Callable[[], BridgeClient] | None = None,
) -> MatchReport:
    """Match a session against MT4's bars (the ``[mt4]`` settings); write the HTML report.

    Raises
    ------
    UsageError
        If there is no such session, or it cannot be matched (see :func:`load_match`).
    BridgeDownError
        If the bridge does not answer.
    """
    match = load_match(settings, session)
    client = connect() if connect is not None else BridgeClient(settings.mt4).connect()
    try:
        pulled = pull_session_bars(client, match, progress)
    finally:
        client.close()
    digits = match.inputs.data.instrument.digits
    mt4 = history_frame(pulled, digits)
    if mt4.height < 2:
        backtest = Decisions((), ())
    else:
        backtest = replay_decisions(settings, match, mt4_series(settings, match, mt4))
    report = compare(match, mt4, backtest, digits)
    return record_match_report(report, report_path or match_report_path(settings, session))

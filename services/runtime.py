"""Trading sessions: paper trading a vault strategy on replayed bars, the event-driven backtest,
and the queries and controls of running sessions.

A paper session is ``load_session`` (the series, the strategy, the session record: new, or the
one to resume, whose options must match) -> ``build_runtime`` (the paper broker, the risk
engine, the sizer, the loop, all on the state database) -> ``Runtime.run`` over a
:class:`~execution.feeds.ReplayFeed` -> ``record_summary``. The event-driven backtest is the
same loop with fills at once, no latency and no rounding, on a scratch state database.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from core.errors import UsageError
from core.ids import actor, new_run_id
from core.ports import BarBatch, Broker, MarketFeed, NoticeKind, Notifier, NullNotifier
from core.processes import process_running
from core.settings import RiskSettings, Settings
from core.timeframes import Timeframe
from core.times import iso_z, jsonable, utc_now
from core.types import FeedKind, Instrument, Side
from execution.brokers.paper import PaperBroker, PaperConfig
from execution.clock import SimClock
from execution.costs import CostModel
from execution.feeds import ReplayFeed, bar_batch, slice_batch
from execution.journal import Journal
from execution.loop import Runtime, RuntimeConfig, RunTotals
from execution.model_signals import ModelRelease, ModelSignals
from execution.risk import RiskEngine, RiskState, RiskStatus, parse_risk_overrides
from execution.sizing import Sizer
from feature_store.series import SeriesData, load_series
from feature_store.state import ControlRequest, RiskEventRecord, SessionRecord, StateDB
from models.strategies.base import Strategy
from models.strategies.incremental import signal_stream
from models.strategies.ml_model import MlModelStream
from models.strategies.registry import make_strategy
from pipelines.backtest.config import BacktestConfig
from pipelines.backtest.engine import STAMP, TRADE_SCHEMA, BacktestResult
from services.backtest import load_strategy_features
from services.common import load_user_strategy

ControlAction = Literal["pause", "resume", "halt", "reset", "flatten", "stop"]


class SimulatorOptions(BaseModel):
    """The paper broker's realism: latency, slippage by size, rejects, touches, lots, margin.

    Defaults: 50 ms to submit, modify or cancel plus up to 20 ms of seeded jitter; no size
    impact; no random rejects; limit touches do not fill; orders rounded down to 0.01 lot and
    refused below it; margin at 30:1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    leverage: float = Field(default=30.0, gt=0)
    latency_ms: float = Field(default=50.0, ge=0)
    modify_latency_ms: float = Field(default=50.0, ge=0)
    cancel_latency_ms: float = Field(default=50.0, ge=0)
    jitter_ms: float = Field(default=20.0, ge=0)
    impact_pips: float = Field(default=0.0, ge=0)
    reject_probability: float = Field(default=0.0, ge=0, lt=1)
    touch_probability: float = Field(default=0.0, ge=0, le=1)
    participation: float | None = Field(default=None, gt=0, le=1)
    round_lots: bool = True


class PaperOptions(BaseModel):
    """Everything a paper session is started with; a resume must give the same."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    timeframe: Timeframe
    side: Side | None = None
    strategy: str
    params: dict[str, str] = {}
    feed: FeedKind = FeedKind.REPLAY
    broker: Literal["paper", "mt4"] = "paper"
    start: datetime | None = None
    end: datetime | None = None
    seed: int = 0
    risk: tuple[str, ...] = ()
    feature_set: str = "default"
    backtest: BacktestConfig = BacktestConfig()
    simulator: SimulatorOptions = SimulatorOptions()
    model: str | None = None
    model_alias: str | None = None
    model_version: int | None = None
    params_file: str = "params.yaml"

    def identity(self) -> dict[str, Any]:
        """Return the options as the session record keeps them (JSON-ready)."""
        return jsonable(self.model_dump(mode="json"))  # type: ignore[return-value]


class PaperShortfall(BaseModel):
    """A model's paper session beside the walk-forward that judged it, over the same bars.

    The walk-forward fills at the signal bar's close with its own costs; paper fills after the
    close plus latency, at the bid or the ask, in whole lots. ``walkforward_*`` are the
    walk-forward's out-of-sample figures on the session's bars (None where it has none there);
    ``shortfall`` is the walk-forward's return minus the paper return. The walk-forward's
    figures come from the models of its folds, each trading bars it never saw; the version on
    paper was fitted on the walk-forward's latest rows, up to ``fitted_until``: ``fitted_bars``
    of the session's bars were in its training data, where its paper figures are in sample.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    first: str
    last: str
    bars: int
    paper_return: float
    paper_trades: int
    walkforward_run: str | None
    walkforward_bars: int
    walkforward_return: float | None
    walkforward_trades: int | None
    shortfall: float | None
    fitted_bars: int = 0
    fitted_until: str | None = None


class PaperSummary(RunTotals):
    """A paper session after a run; the ``--json`` line.

    The loop's totals (:class:`~execution.loop.RunTotals`: session totals, what this run did,
    the ledger hash, the risk state) with the session they belong to. ``seconds`` is the whole
    command's time, loading included. A model's session adds the model and the version trading
    when the run ended, ``warmup_seconds`` (the time to bring its live features up to the bar it
    starts or resumes at, from stored bars) and the walk-forward beside it (``shortfall``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    session: str
    account: str
    symbol: str
    timeframe: str
    strategy: str
    resumed: bool
    status: str
    message: str
    model: str | None = None
    model_version: int | None = None
    warmup_seconds: float | None = None
    shortfall: PaperShortfall | None = None


@dataclass(frozen=True)
class SessionInputs:
    """What a session trades on: the loaded series, its bars as a batch, the strategy."""

    data: SeriesData
    bars: BarBatch
    strategy: Strategy
    strategy_cls: type[Strategy]
    features: pl.DataFrame | None
    signals: ModelSignals | None = None


# -- load ------------------------------------------------------------------------------------


def series_batch(data: SeriesData) -> BarBatch:
    """Return a loaded series' bars as a :class:`BarBatch` (ends on the nominal bar length)."""
    bars = data.bars
    ts = bars["ts"].dt.cast_time_unit("ns").to_physical().to_numpy()
    spread = (
        bars["spread"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        if "spread" in bars.columns
        else None
    )
    volume = (
        bars["volume"].cast(pl.Float64).fill_null(0.0).to_numpy()
        if "volume" in bars.columns
        else None
    )
    bar_ns = data.key.timeframe.minutes * 60 * 1_000_000_000
    return bar_batch(
        ts, bars["open"].to_numpy(), bars["high"].to_numpy(), bars["low"].to_numpy(),
        bars["close"].to_numpy(), volume=volume, spread=spread, to_account=data.to_account,
        bar_ns=bar_ns,
    )  # fmt: skip


def load_inputs(
    settings: Settings,
    symbol: str,
    timeframe: Timeframe,
    strategy_name: str,
    params: Mapping[str, object],
    *,
    side: Side | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    feature_set: str = "default",
) -> SessionInputs:
    """Load the series, the strategy and the feature columns it reads."""
    data = load_series(settings, symbol, timeframe, side, start, end)
    cls = load_user_strategy(settings, strategy_name)
    strategy = make_strategy(cls, params)
    features = load_strategy_features(settings, cls, data, feature_set)
    return SessionInputs(data, series_batch(data), strategy, cls, features)


def _feature_lookup(
    bars: BarBatch, features: pl.DataFrame | None
) -> Callable[[BarBatch], Mapping[str, np.ndarray]] | None:
    if features is None:
        return None
    columns = {c: features[c].cast(pl.Float64).to_numpy() for c in features.columns if c != "ts"}
    all_ts = bars.ts

    def lookup(batch: BarBatch) -> Mapping[str, np.ndarray]:
        at = np.searchsorted(all_ts, batch.ts)
        return {name: values[at] for name, values in columns.items()}

    return lookup


def spread_check(data: SeriesData, config: BacktestConfig, spread_given: bool) -> BacktestConfig:
    """Return the paper session's costs with its spread settled.

    Paper fills pay a spread: the series' own spread column when it has one and no spread was
    given, else the spread given.

    Raises
    ------
    UsageError
        When no spread was given and the series has no spread column.
    """
    if spread_given or config.costs.spread_from_data:
        return config
    has = "spread" in data.bars.columns and data.bars["spread"].drop_nulls().len() > 0
    if not has:
        msg = (
            f"{data.label} has no spread column: give --spread PIPS (paper fills buy at the "
            "ask and sell at the bid, so they need a spread)"
        )
        raise UsageError(msg)
    costs = config.costs.model_copy(update={"spread_from_data": True})
    return config.model_copy(update={"costs": costs})


# -- build -----------------------------------------------------------------------------------


def build_runtime(
    *,
    db: StateDB,
    session: str,
    account: str,
    mode: Literal["backtest", "paper", "live"],
    inputs: SessionInputs,
    config: BacktestConfig,
    simulator: SimulatorOptions | None,
    risk: RiskEngine,
    notifier: Notifier,
    clock: SimClock,
    seed: int = 0,
    collect: bool = False,
    heartbeat_seconds: float = 1.0,
    live_feed: bool = False,
    broker_factory: Callable[[Journal], Broker] | None = None,
) -> Runtime:
    """Return the loop wired to a paper broker for one session (a fresh one, or resumed), or
    to the broker ``broker_factory`` makes on the session's journal (a live one).

    A durable session beats every ``heartbeat_seconds`` (what ``solodesk supervise`` watches);
    ``live_feed`` says its bars come from a live feed.
    """
    data = inputs.data
    instrument: Instrument = data.instrument
    costs = CostModel.of(
        config, instrument, data.key.side, simulator.impact_pips if simulator else 0.0
    )
    journal = Journal(db)
    if simulator is None:  # the event backtest: the vectorized engine's assumptions
        paper = PaperConfig(
            account=account, symbol=instrument.symbol, cash=config.cash, costs=costs,
            calendar=None, immediate=True, latency_submit=0.0, latency_modify=0.0,
            latency_cancel=0.0, jitter=0.0, leverage=None, round_lots=False, seed=seed,
        )  # fmt: skip
    else:
        sim = simulator
        paper = PaperConfig(
            account=account, symbol=instrument.symbol, cash=config.cash, costs=costs,
            calendar=instrument.calendar if instrument.calendar in ("fx", "crypto", "nyse") else None,
            immediate=False, latency_submit=sim.latency_ms / 1e3,
            latency_modify=sim.modify_latency_ms / 1e3, latency_cancel=sim.cancel_latency_ms / 1e3,
            jitter=sim.jitter_ms / 1e3, reject_probability=sim.reject_probability,
            touch_probability=sim.touch_probability, participation=sim.participation,
            leverage=sim.leverage, round_lots=sim.round_lots, lot_step=instrument.lot_step,
            min_lot=instrument.lot_step, seed=seed,
        )  # fmt: skip
    broker: Broker = (
        PaperBroker(paper, journal) if broker_factory is None else broker_factory(journal)
    )
    sizer = Sizer(
        config.sizing, fees=config.costs.fees, commission_per_lot=config.costs.commission_per_lot,
        contract_size=instrument.contract_size, bars_per_year=data.bars_per_year,
    )  # fmt: skip
    runtime_config = RuntimeConfig(
        session=session, account=account, mode=mode, symbol=instrument.symbol,
        strategy=inputs.strategy_cls.name,
        model=inputs.signals.release.name if inputs.signals else None,
        model_version=str(inputs.signals.release.version) if inputs.signals else None,
        feature_set_version=inputs.signals.feature_set_version if inputs.signals else None,
        params={k: getattr(inputs.strategy, k, None) for k in (p.name for p in inputs.strategy_cls.params)},
        fill=config.fill.value if mode == "backtest" else "close",
        direction=config.direction.value, stop_loss_pips=config.stop_loss_pips,
        take_profit_pips=config.take_profit_pips, trailing_stop_pips=config.trailing_stop_pips,
        bar_seconds=data.key.timeframe.minutes * 60.0, collect=collect,
        record_equity=mode != "backtest", commit_bars=1000 if mode != "backtest" else 1_000_000,
        commit_seconds=1.0 if mode != "backtest" else 3600.0,
        control_seconds=0.2 if mode != "backtest" else 3600.0, durable=mode != "backtest",
        heartbeat_seconds=heartbeat_seconds, live_feed=live_feed,
    )  # fmt: skip
    return Runtime(
        runtime_config, stream=signal_stream(inputs.strategy), broker=broker, journal=journal,
        risk=risk, sizer=sizer, costs=costs, clock=clock, notifier=notifier,
        features=inputs.signals or _feature_lookup(inputs.bars, inputs.features),
    )  # fmt: skip


def risk_engine(db: StateDB, limits: Any, account: str) -> RiskEngine:
    """Return an account's risk engine from its saved state (a fresh one when none is saved)."""
    saved = db.load_risk(account)
    if saved is None:
        return RiskEngine.fresh(limits, account)
    return RiskEngine(limits, RiskState.from_json(saved))


# -- the event-driven backtest -----------------------------------------------------------------


def event_backtest(
    data: SeriesData,
    strategy_cls: type[Strategy],
    params: Mapping[str, object],
    config: BacktestConfig,
    features: pl.DataFrame | None,
    signals: ModelSignals | None = None,
) -> BacktestResult:
    """Backtest through the trading loop on replayed bars (``--engine event``).

    The loop, the paper broker with fills at once, no latency and no lot rounding, and the
    risk engine with no limits, on a scratch state database: the same trades and equity as the
    vectorized engine (``tests/realdata/test_event_parity.py``). A model's ``signals`` compute
    its features bar by bar from the first bar, as a paper session does.
    """
    strategy = make_strategy(strategy_cls, params)
    bars = series_batch(data)
    inputs = SessionInputs(data, bars, strategy, strategy_cls, features, signals)
    with tempfile.TemporaryDirectory(prefix="solodesk-event-") as scratch:
        db = StateDB(Path(scratch) / "event.db")
        try:
            session = "event"
            account = "backtest:event"
            db.create_session(
                SessionRecord(
                    session=session, account=account, kind="backtest",
                    symbol=data.key.symbol, timeframe=data.key.timeframe.value,
                    strategy=strategy_cls.name, created=utc_now(),
                )
            )  # fmt: skip
            runtime = build_runtime(
                db=db, session=session, account=account, mode="backtest", inputs=inputs,
                config=config, simulator=None,
                risk=RiskEngine.fresh(RiskSettings(), account), notifier=NullNotifier(),
                clock=SimClock(None), collect=True,
            )  # fmt: skip
            runtime.run(ReplayFeed(data.key.symbol, bars, batch=1 << 20))
            rows = db.trades(session)
        finally:
            db.close()
    c = runtime.collected
    assert c is not None
    return BacktestResult(
        ts=np.asarray(c.ts, dtype=np.int64), equity=np.asarray(c.equity),
        position=np.asarray(c.position), exposure=np.asarray(c.exposure),
        trades=_trade_frame(rows), config=config,
    )  # fmt: skip


def _trade_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=TRADE_SCHEMA)
    frame = pl.DataFrame([{k: row[k] for k in TRADE_SCHEMA} for row in rows])
    return frame.with_columns(
        pl.col("entry_ts").cast(STAMP), pl.col("exit_ts").cast(STAMP),
        *(pl.col(c).cast(t) for c, t in TRADE_SCHEMA.items() if c not in ("entry_ts", "exit_ts")),
    ).select(list(TRADE_SCHEMA))  # fmt: skip


# -- paper sessions --------------------------------------------------------------------------


def _differences(before: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({a!r} then, {b!r} now)")
    return out


def open_session(
    db: StateDB, session: str | None, options: PaperOptions
) -> tuple[SessionRecord, bool]:
    """Return the session to run: a new one, or the one of that name if its options match.

    Raises
    ------
    UsageError
        If the session exists with other options (naming each that differs).
    """
    identity = options.identity()
    if session is not None:
        found = db.session(session)
        if found is not None:
            differs = _differences(found.options, identity)
            if differs:
                msg = (
                    f"session {session} was started with other options: {'; '.join(differs)}. "
                    "Resume it with the options it started with, or start a new --session"
                )
                raise UsageError(msg)
            return found, True
    name = session or new_run_id("paper")
    kind: Literal["paper", "live"] = "live" if options.broker == "mt4" else "paper"
    record = SessionRecord(
        session=name, account=f"{options.broker}:{name}", kind=kind, symbol=options.symbol.upper(),
        timeframe=options.timeframe.value, strategy=options.strategy, params=dict(options.params),
        options=identity, created=utc_now(), pid=os.getpid(),
    )  # fmt: skip
    db.create_session(record)
    db.commit()
    return record, False


def run_paper(
    settings: Settings,
    options: PaperOptions,
    *,
    session: str | None = None,
    speed: float | None = None,
    spread_given: bool = True,
    notifier: Notifier | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> PaperSummary:
    """Paper-trade a strategy or a registered model on replayed stored bars, resuming the
    session if it exists.

    A model session (``options.model``) trades the version ``options.model_version``, or the
    one its alias points at and then follows the alias: when it moves, the new version is
    loaded in the background and takes over between bars (``say`` and the notifier are told).
    Its model's drift is watched (``[drift]``): a warning is told, an action rolls the alias
    back or pauses the session (:class:`~services.live_model.DriftResponder`).
    """
    started = time.perf_counter()
    watcher = None
    drift = None
    link = None
    if options.model is not None:
        from services.live_model import load_model_session

        inputs, watcher = load_model_session(settings, options)
    else:
        inputs = load_inputs(
            settings, options.symbol, options.timeframe, options.strategy, options.params,
            side=options.side, start=options.start, end=options.end,
            feature_set=options.feature_set,
        )  # fmt: skip
    # A live broker fills at the terminal's own prices: no spread to assume.
    config = (
        options.backtest
        if options.broker == "mt4"
        else spread_check(inputs.data, options.backtest, spread_given)
    )
    limits = parse_risk_overrides(settings.risk, options.risk)
    owned = notifier is None
    if notifier is None:
        from services.notify import open_notifier

        notifier = open_notifier(settings)
    db = StateDB.open(settings)
    try:
        record, resumed = open_session(db, session, options)
        warmup_started = time.perf_counter()
        name = record.session
        if options.feed is FeedKind.MT4 or options.broker == "mt4":
            from services.mt4_trading import open_link

            link = open_link(
                settings, inputs.data.instrument, options.timeframe, notifier, session=name,
                live=options.broker == "mt4",
            )  # fmt: skip
        if link is not None and options.broker == "mt4":
            # A live session trades the account's money: its equity when this run starts.
            equity = float(link.client.account().get("account_equity") or config.cash)
            config = config.model_copy(update={"cash": equity})
        db.update_session(name, status="running", pid=os.getpid())
        db.commit()
        runtime = build_runtime(
            db=db, session=name, account=record.account,
            mode="live" if options.broker == "mt4" else "paper", inputs=inputs,
            config=config, simulator=options.simulator,
            risk=risk_engine(db, limits, record.account), notifier=notifier,
            clock=SimClock(None if link is not None else speed), seed=options.seed,
            heartbeat_seconds=settings.supervisor.heartbeat_seconds, live_feed=link is not None,
            broker_factory=(
                link.broker_factory(settings, record.account)
                if link is not None and options.broker == "mt4" else None
            ),
        )  # fmt: skip
        if inputs.signals is not None:
            from services.live_model import watch_drift

            inputs.signals.on_reload = _reload_teller(runtime, say)
            drift = watch_drift(
                settings, runtime, inputs.signals, notifier, say=say,
                alias=None if watcher is None else watcher.alias,
            )  # fmt: skip
        feed: MarketFeed
        if link is None:
            start = runtime.resume_index(inputs.bars)
            runtime.warm_up(slice_batch(inputs.bars, 0, start))
            replay = ReplayFeed(
                options.symbol, inputs.bars, start=start, batch=1 if speed else 4096
            )
            feed = _Tracked(replay, on_batch, len(inputs.bars))
        else:
            rate = inputs.data.to_account
            feed = link.feed(
                runtime, db, name, inputs.bars, resumed=resumed, until=options.end,
                to_account=float(rate) if isinstance(rate, float | int) else float("nan"),
            )  # fmt: skip
        warmup_seconds = time.perf_counter() - warmup_started
        try:
            totals = runtime.run(feed)
        except BaseException:
            db.rollback()
            db.update_session(name, status="crashed")
            db.commit()
            from core.ports import Notice

            notifier.notify(Notice(NoticeKind.LOOP_CRASHED, "session crashed", name, session=name))
            raise
        status = "stopped" if totals.stopped else "finished"
        db.update_session(name, status=status, pid=None)
        db.commit()
        summary = _summary(record, options, totals, resumed, time.perf_counter() - started)
        if inputs.signals is not None:
            from services.live_model import paper_shortfall

            summary = summary.model_copy(
                update={
                    "model": inputs.signals.release.name,
                    "model_version": inputs.signals.release.version,
                    "warmup_seconds": round(inputs.signals.warmup_seconds + warmup_seconds, 3),
                    "shortfall": paper_shortfall(settings, inputs, config, totals),
                }
            )
        from core.ports import Notice

        notifier.notify(
            Notice(NoticeKind.LOOP_STOPPED, f"session {status}", summary.message, session=name)
        )
        return summary
    finally:
        if watcher is not None:
            watcher.close()
        if drift is not None:
            drift.close()
        if link is not None:
            link.close()
        db.close()
        if owned:
            notifier.close()


def follow_rule(stream: object, release: ModelRelease) -> None:
    """Make an ``ml_model`` stream trade by ``release``'s rule from its next bar on."""
    from services.live_model import release_strategy

    if not isinstance(stream, MlModelStream):
        raise TypeError(f"a model's session trades through ml_model, not {type(stream).__name__}")
    stream.trade_by(release_strategy(release))


def _reload_teller(
    runtime: Runtime, say: Callable[[str], None] | None
) -> Callable[[ModelRelease, ModelRelease, str | None], None]:
    def tell(old: ModelRelease, new: ModelRelease, problem: str | None) -> None:
        if problem is None:
            follow_rule(runtime.stream, new)
            title = "model reloaded"
            body = (
                f"{old.label} -> {new.label}: later orders come from v{new.version} "
                f"(long above {new.upper:g}, {'short' if new.allow_short else 'flat'} below "
                f"{new.lower:g})"
            )
        else:
            title = "model reload refused"
            body = f"{new.label} not loaded, {old.label} keeps trading: {problem}"
        runtime.tell(NoticeKind.MODEL_RELOADED, title, body, key=f"{new.label}")
        if say is not None:
            say(f"{title}: {body}")

    return tell


class _Tracked:
    """A feed that reports progress after each batch it hands out."""

    def __init__(self, feed: ReplayFeed, on_batch: Callable[[int, int], None] | None, total: int):
        self.feed = feed
        self.symbol = feed.symbol
        self.on_batch = on_batch
        self.total = total

    def poll(self, timeout: float) -> BarBatch | None:
        got = self.feed.poll(timeout)
        if self.on_batch is not None and got is not None:
            self.on_batch(self.feed.position, self.total)
        return got

    def last_data(self) -> datetime | None:
        return self.feed.last_data()


def _summary(
    record: SessionRecord, options: PaperOptions, totals: RunTotals, resumed: bool, seconds: float
) -> PaperSummary:
    state = totals.risk_state
    message = f"{totals.bars:,} bars, {totals.trades} trades, equity {totals.final_equity:,.2f}"
    if state == "halted":
        message += "; the account is HALTED by the risk engine (solodesk risk status; risk reset)"
    if totals.stopped:
        message += "; stopped by a control"
    return PaperSummary(
        **{**totals.model_dump(), "seconds": seconds},
        session=record.session, account=record.account, symbol=record.symbol,
        timeframe=record.timeframe, strategy=record.strategy, resumed=resumed,
        status="stopped" if totals.stopped else "finished", message=message,
    )  # fmt: skip


# -- queries and controls --------------------------------------------------------------------


def _db(settings: Settings) -> StateDB:
    if not settings.state_db_path.exists():
        raise UsageError("no trading sessions yet: start one with solodesk paper")
    return StateDB.open(settings)


def _session(db: StateDB, session: str | None) -> SessionRecord:
    if session is None:
        records = db.sessions()
        if not records:
            raise UsageError("no trading sessions yet: start one with solodesk paper")
        return records[-1]
    found = db.session(session)
    if found is None:
        known = ", ".join(r.session for r in db.sessions()[-5:]) or "none"
        raise UsageError(f"no session {session!r} (latest: {known})")
    return found


def list_sessions(settings: Settings) -> list[SessionRecord]:
    """Return every session, oldest first."""
    if not settings.state_db_path.exists():
        return []
    with StateDB.open(settings) as db:
        return db.sessions()


def session_fills(settings: Settings, session: str | None) -> list[dict[str, Any]]:
    """Return a session's fills in execution order (the ``solodesk fills`` lines)."""
    with _db(settings) as db:
        record = _session(db, session)
        return [
            {
                "session": f.session,
                "client_order_id": f.client_order_id,
                "execution_id": f.execution_id,
                "ts": iso_z(f.ts, "milliseconds"),
                "symbol": f.symbol,
                "side": f.side.value,
                "units": f.units,
                "lots": f.lots,
                "price": f.price,
                "fees": f.fees,
                "slippage": f.slippage,
                "reason": f.reason,
            }
            for f in db.fills(record.session)
        ]


def session_trades(settings: Settings, session: str | None) -> list[dict[str, Any]]:
    """Return a session's round trips, as the backtest's trade table."""
    with _db(settings) as db:
        record = _session(db, session)
        return [{"session": record.session, **row} for row in db.trades(record.session)]


def session_positions(settings: Settings, session: str | None = None) -> list[dict[str, Any]]:
    """Return open positions (of one session, or of all)."""
    with _db(settings) as db:
        name = None if session is None else _session(db, session).session
        return [
            {"session": s, **p.model_dump(mode="json")}
            for s, p in db.positions(name)
            if p.units != 0.0
        ]


def risk_status(settings: Settings, session: str | None = None) -> RiskStatus:
    """Return the risk standing of a session's account (the latest session by default), read
    without taking the state database's write lock."""
    reader = StateDB.reader(settings)
    if reader is None:
        raise UsageError("no trading sessions yet: start one with solodesk paper")
    with reader:
        record = _session(reader, session)
        limits = parse_risk_overrides(settings.risk, tuple(record.options.get("risk", ())))
        return risk_engine(reader, limits, record.account).status(paused=record.paused)


def request_control(
    settings: Settings,
    action: ControlAction,
    *,
    session: str | None = None,
    who: str | None = None,
    why: str = "",
    flatten: bool = False,
) -> ControlRequest:
    """Queue a control for a session's loop; a session not running gets risk controls at once.

    A running loop applies pending controls between bars and at least once a second while it
    waits. ``reset`` and ``halt`` of a session that is not running are applied to its account's
    risk state here.
    """
    with _db(settings) as db:
        record = _session(db, session)
        request = ControlRequest(
            session=record.session, account=record.account, action=action, flatten=flatten,
            who=actor(who), why=why, requested=utc_now(),
        )  # fmt: skip
        ident = db.request_control(request)
        running = (
            record.status == "running" and record.pid is not None and process_running(record.pid)
        )
        if running:
            return request.model_copy(update={"id": ident})
        # Nobody will pick the request up: apply what can be applied to a session at rest.
        now = utc_now()
        result = _apply_at_rest(settings, db, record, action, why, now)
        db.ack_control(ident, now, result)
        db.commit()
        return request.model_copy(update={"id": ident, "applied": now, "result": result})


def _apply_at_rest(
    settings: Settings, db: StateDB, record: SessionRecord, action: str, why: str, now: datetime
) -> str:
    """Apply a control to a session that is not running; return what was done."""
    if action in ("reset", "halt"):
        limits = parse_risk_overrides(settings.risk, tuple(record.options.get("risk", ())))
        engine = risk_engine(db, limits, record.account)
        if action == "reset":
            events = engine.reset(now, why or "reset by control")
        else:
            events = engine.halt(now, why or "halted by control")
        db.save_risk(record.account, engine.state.to_json())
        for event in events:
            db.record_risk_event(
                RiskEventRecord(
                    account=event.account, session=record.session, ts=event.ts, kind=event.kind,
                    from_state=event.from_mode.value, to_state=event.to_mode.value,
                    reason=event.reason, equity=event.equity,
                )
            )  # fmt: skip
        return f"{action} applied to {record.account} (the session is not running)"
    if action in ("pause", "resume"):
        db.update_session(record.session, paused=action == "pause")
        state = "paused" if action == "pause" else "resumed"
        return f"{state} (the session is not running; it starts {state} when resumed)"
    return f"nothing to {action}: the session is not running"

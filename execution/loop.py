"""The trading loop: feed -> decision -> sizing -> risk -> broker -> state and trade log.

One :class:`Runtime` runs a strategy on one symbol for a session, whatever feeds it and
whatever broker it talks to: stored bars replayed into the paper broker (``solodesk paper``),
the same with fills at once and no latency (the event-driven backtest,
``solodesk backtest --engine event``), or live bars into a live broker.

Each bar goes through four stages, in the order the vectorized engine applies them
(:mod:`pipelines.backtest.engine`), so that with no latency and no rounding the two engines
give the same trades and equity:

1. **open**: the broker sees the bar's first quote; a decision waiting for the next open
   (``fill="next_open"``) is sized at that quote and sent;
2. **close**: the broker runs the bar's range (swap at the rollover, protective stops, working
   limit and stop orders) to its close;
3. **decide**: the strategy's signal at this bar, given the position now held, becomes a
   target; it is sized, checked by the risk engine and sent (``fill="close"``), or kept for
   the next open;
4. **end**: equity is marked, the risk engine sees the mark (breakers, cooldowns), the bar
   becomes the watermark.

Decisions follow the engine's rules: event signals open when flat, close on their exit, cancel
when an entry and an exit (or a long and a short entry) come together, and reverse on an
opposite entry with ``direction="both"``; a target rebalances when it changes. A target is a
signed fraction of the sizing rule's full size (:class:`execution.sizing.Sizer`); sizes are
units here and lots at the broker.

Crash safety. Everything goes into one SQLite transaction (:class:`execution.journal.Journal`),
committed before an order leaves the process (its intent, with the client order id, and every
fill recorded before it), before any notice leaves, and every ``commit_bars`` bars or
``commit_seconds`` seconds. A broker whose book lives in that same transaction (the paper
broker: ``shares_journal``) records the order atomically with its intent, so no commit is
needed between the two. Nothing outside the process learns of a fill or a decision before
the commit that holds it: a crash before that commit rolls both back, and the replay makes them
again. Each commit saves a checkpoint of the loop: the bar in progress,
its last completed stage, and what the stage in progress started from. A restarted session
resumes at that stage and replays it: client order ids are made from the loop's clock and the
sequence number the stage started with, so the replayed stage asks for the same orders; the
broker answers an id it already has with the order as it stands; fills are applied once (by
their place in the broker's execution order). The bars after the checkpoint are replayed
deterministically, so a session killed at any point ends as one that never was.

Notices go out only after the commit that makes their news durable.

Heartbeat. A durable session also writes a heartbeat (its process id, the wall time in UTC and
the bars done) into the commit that follows ``heartbeat_seconds`` after the last one, and commits
at least that often: while replaying, while a paced replay waits and while a live feed is
quiet. A supervisor that sees no new heartbeat for long knows the process is stuck
(:mod:`services.supervisor`); a heartbeat is one row replaced, at most one a commit.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from core.ids import client_order_id
from core.ports import BarBatch, Broker, MarketFeed, Notice, NoticeKind, Notifier
from core.times import iso_z_ns, ns_from_utc, utc_from_ns, utc_now
from core.types import Fill, Order, OrderSide, OrderStatus, OrderType, Position
from execution.costs import CostModel, protective_levels
from execution.journal import Journal
from execution.risk import OrderCheck, RiskEngine, RiskEvent, RiskMode, increases_exposure
from execution.sizing import Sizer
from feature_store.state import EQUITY_POINT, ControlRequest, IntentRecord, RiskEventRecord
from models.strategies.base import Signals, SignalStream
from models.strategies.ml_model import MODEL_VERSION_COLUMN

Stage = Literal["open", "close", "decide", "end"]
STAGES: tuple[Stage, ...] = ("open", "close", "decide", "end")
_STAGE_INDEX = {s: k for k, s in enumerate(STAGES)}


class RuntimeConfig(BaseModel):
    """What a session runs and how the loop behaves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session: str
    account: str
    mode: Literal["backtest", "paper", "live"] = "paper"
    symbol: str
    strategy: str
    params: dict[str, Any] = {}
    fill: Literal["close", "next_open"] = "close"
    direction: Literal["both", "long", "short"] = "both"
    stop_loss_pips: float | None = None
    take_profit_pips: float | None = None
    trailing_stop_pips: float | None = None
    bar_seconds: float = 3600.0
    stale_intervals: float = 3.0
    commit_bars: int = 1000
    commit_seconds: float = 1.0
    control_seconds: float = 0.2
    heartbeat_seconds: float = 1.0
    record_equity: bool = True
    #: Bars come from a live feed (kept in the state database, watched for staleness, no
    #: write lock held while waiting), whatever the broker.
    live_feed: bool = False
    collect: bool = False
    durable: bool = True
    model: str | None = None
    model_version: str | None = None
    feature_set_version: str | None = None


@dataclass
class _Trade:
    """The round trip in progress, as the trade log records it."""

    entry_bar: int
    entry_ts: int
    direction: float
    pnl: float = 0.0  # fees paid, swap earned and P&L realized so far, account currency
    peak: float = 0.0
    in_units: float = 0.0
    entry_price: float = 0.0
    out_units: float = 0.0
    exit_price: float = 0.0
    notional: float = 0.0
    costs: float = 0.0
    last_balance: float = 0.0  # the balance after the trade's last fill

    def to_json(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class _Checkpoint:
    """What a restart resumes from (saved at every commit)."""

    bar_ts: int = -1  # the bar in progress (or the last one finished)
    stage: int = -1  # its last completed stage
    seq: int = 0  # client order sequence at the start of the stage in progress
    pending: float | None = None  # a decision waiting for the next open
    pending_bar: int = -1
    last_target: float = 0.0
    bars: int = 0  # bars finished, session total
    bar_index: int = -1  # session index of the bar in progress
    last_intent: str = ""  # the last client order id recorded (ids grow with time and sequence)
    fills_seen: int = 0  # broker fills applied, in the broker's execution order
    last_fill_ns: int = -1  # when the last applied fill happened
    seen_at_last: int = 0  # how many applied fills happened at that instant
    units: float = 0.0  # the position the applied fills add up to
    rate: float = math.nan  # the money conversion the broker uses now
    expect_fills: bool = False  # orders may be working, or protective levels are set
    orders: int = 0
    trades: int = 0
    trade: dict[str, float] | None = None
    kelly: dict[str, float] = field(default_factory=dict)
    order_times: list[int] = field(default_factory=list)
    stale: bool = False
    stopped: bool = False
    flatten_pending: bool = False  # a halt asked to flatten: close what is left until flat
    done_ts: int = -1  # the last bar fully processed (its open time, ns)


class RunTotals(BaseModel):
    """What a run of the loop did (the service turns it into the session summary)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bars: int
    bars_this_run: int
    orders: int
    fills: int
    trades: int
    final_equity: float
    balance: float
    risk_state: str
    paused: bool
    stopped: bool
    ledger_hash: str
    seconds: float


@dataclass
class Collected:
    """Per-bar arrays of a run (kept when ``collect`` is set: the event backtest)."""

    ts: list[int] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    position: list[float] = field(default_factory=list)
    exposure: list[float] = field(default_factory=list)


def ledger_hash(fills: list[tuple[str, str, str, float, float, float]]) -> str:
    """Return the SHA-256 of fills in execution order: ``ts|symbol|side|units|price|fees`` lines.

    Floats are written in their shortest exact form, so equal ledgers hash equal and nothing of
    the session's name enters.
    """
    digest = hashlib.sha256()
    for ts, symbol, side, units, price, fees in fills:
        digest.update(f"{ts}|{symbol}|{side}|{units!r}|{price!r}|{fees!r}\n".encode())
    return digest.hexdigest()


class Runtime:
    """A strategy trading one symbol through a broker, bar by bar, behind the risk engine."""

    def __init__(
        self,
        config: RuntimeConfig,
        *,
        stream: SignalStream,
        broker: Broker,
        journal: Journal,
        risk: RiskEngine,
        sizer: Sizer,
        costs: CostModel,
        clock: Any,
        notifier: Notifier,
        features: Callable[[BarBatch], Mapping[str, np.ndarray]] | None = None,
    ) -> None:
        self.config = config
        self.stream = stream
        self.broker = broker
        self.journal = journal
        self.db = journal.db
        self.risk = risk
        self.sizer = sizer
        self.costs = costs
        self.clock = clock
        self.notifier = notifier
        self.features = features
        #: The model version the next order intent records; a model's signals may move it
        #: between bars (a reload), through their ``model_version`` column.
        self.model_version = config.model_version
        self._versions: np.ndarray | None = None
        self.cp = _Checkpoint()
        self.seq = 0
        self.trade: _Trade | None = None
        self.collected = Collected() if config.collect else None
        self._equity_rows: list[tuple[int, float, float, float]] = []  # single bars
        self._equity_parts: list[np.ndarray] = []  # runs of quiet bars, and singles before them
        self._notices: list[Notice] = []
        self._bars_this_run = 0
        self._last_commit = time.monotonic()
        self._bars_since_commit = 0
        # A durable session commits at least every heartbeat, and beats at most once a commit.
        self._commit_every = (
            min(config.commit_seconds, config.heartbeat_seconds)
            if config.durable
            else config.commit_seconds
        )
        self._last_beat = -math.inf
        self._pid = os.getpid()
        self._last_control = 0.0
        self._paused = False
        self._day_equity: float | None = None
        self._key = f"loop:{config.session}"
        self._restore()
        journal.before_commit(self._save)
        if hasattr(clock, "on_wait"):  # a paced replay: answer controls while the clock waits
            clock.on_wait = self._on_wait

    # -- checkpoint ------------------------------------------------------------------------

    def _restore(self) -> None:
        saved = self.db.broker_state(self._key)
        session = self.db.session(self.config.session)
        self._paused = bool(session.paused) if session is not None else False
        if saved is None:
            return
        trade = saved.pop("trade")
        self.cp = _Checkpoint(**saved, trade=None)
        self.seq = self.cp.seq
        if trade is not None:
            self.trade = _Trade(**trade)
        kelly = self.cp.kelly
        for name, value in kelly.items():
            setattr(self.sizer.kelly, name, float(value))

    def _save(self) -> None:
        cp = self.cp
        cp.trade = None if self.trade is None else self.trade.to_json()
        cp.kelly = dict(self.sizer.kelly.__dict__)
        body = dict(cp.__dict__)
        self.db.broker_save_state(self._key, body)
        if cp.done_ts >= 0 and self._bars_this_run:
            self.db.set_watermark(self.config.session, cp.done_ts, cp.bars, self.clock.now())
        self.db.save_risk(self.config.account, self.risk.state.to_json())
        points = self._equity_points()
        if points.shape[0]:
            self.db.record_equity(self.config.session, points)
        if self.config.durable:
            self._beat()

    def _beat(self) -> None:
        """Write the heartbeat into this commit when one is due (wall time, not the loop's)."""
        now = time.monotonic()
        if now - self._last_beat >= self.config.heartbeat_seconds:
            self._last_beat = now
            self.db.beat(self.config.session, self._pid, utc_now(), self.cp.bars)

    def _equity_points(self) -> np.ndarray:
        """Return the equity points since the last commit, in time order, and forget them."""
        if self._equity_rows:
            self._equity_parts.append(np.array(self._equity_rows, dtype=EQUITY_POINT))
            self._equity_rows = []
        parts, self._equity_parts = self._equity_parts, []
        if not parts:
            return np.zeros(0, dtype=EQUITY_POINT)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def commit(self, *, final: bool = False) -> None:
        """Make everything written so far durable, then send the notices it was holding.

        A session that is not ``durable`` (the event backtest, on a scratch database) commits
        only at the end.
        """
        if self.config.durable or final:
            self.journal.commit()
        self._last_commit = time.monotonic()
        self._bars_since_commit = 0
        for notice in self._notices:
            self.notifier.notify(notice)
        self._notices = []

    def tell(self, kind: NoticeKind, title: str, body: str, key: str = "") -> None:
        """Send a notice about the session with the loop's next commit."""
        self._notice(kind, title, body, key)

    def _notice(self, kind: NoticeKind, title: str, body: str, key: str = "") -> None:
        self._notices.append(
            Notice(
                kind=kind,
                title=title,
                body=body,
                session=self.config.session,
                # The loop's time once it has one (a replay's clock starts at the first bar).
                ts=self.clock.now() if self.clock.now_ns() > 0 else None,
                key=key,
            )
        )

    # -- warm-up on restart ----------------------------------------------------------------

    def warm_up(self, history: BarBatch) -> None:
        """Feed the bars a restarted session already processed to the strategy and sizer.

        ``history`` holds every bar before the one the session resumes at, from the session's
        first bar: the strategy's stream is rebuilt from them (it keeps no state on disk).
        """
        if len(history):
            self.stream.update(_columns(history), self._features_of(history))
            for close in history.close[-(self.sizer.config.lookback + 1) :]:
                self.sizer.observe_close(float(close))

    def resume_index(self, bars: BarBatch) -> int:
        """Return the index in ``bars`` of the first bar the loop must (re)process."""
        if self.cp.bar_ts < 0:
            return 0
        at = int(np.searchsorted(bars.ts, self.cp.bar_ts))
        if at < len(bars) and int(bars.ts[at]) == self.cp.bar_ts and self.cp.stage < 3:
            return at  # the bar in progress is replayed from its next stage
        return at + 1 if at < len(bars) and int(bars.ts[at]) == self.cp.bar_ts else at

    def _features_of(self, bars: BarBatch) -> Mapping[str, np.ndarray] | None:
        return None if self.features is None else self.features(bars)

    # -- the run ---------------------------------------------------------------------------

    def run(self, feed: MarketFeed, *, poll_timeout: float = 1.0) -> RunTotals:
        """Process the feed's bars until it ends or a ``stop`` control arrives."""
        started = time.perf_counter()
        self.reconcile()
        self._notice(NoticeKind.LOOP_STARTED, "session started",
                     f"{self.config.strategy} on {self.config.symbol} ({self.config.mode})")  # fmt: skip
        self.commit()
        while not self.cp.stopped:
            if self._live_feed:
                self.commit()  # hold no write lock while waiting for the market
            batch = feed.poll(poll_timeout)
            if batch is None:
                break
            if len(batch) == 0:
                self._idle(feed)
                continue
            if self._live_feed:
                self._keep_bars(batch)
            features = self._features_of(batch)
            self._versions = None if features is None else features.get(MODEL_VERSION_COLUMN)
            signals = self.stream.update(_columns(batch), features)
            eventful = self._eventful(signals, len(batch))
            i = 0
            while i < len(batch) and not self.cp.stopped:
                quiet = self._quiet(batch, eventful, i)
                if quiet:
                    i += quiet
                    continue
                self._bar(batch, signals, i)
                i += 1
            if self.cp.stale:
                # The bars that ended a silence were the backlog, traded on no more; the
                # bars after them are fresh.
                self.cp.stale = False
        self._finish_open_trade()
        self.commit(final=True)
        return self._totals(time.perf_counter() - started)

    @property
    def _live_feed(self) -> bool:
        """Return whether bars come from a live feed (a live session's always do)."""
        return self.config.mode == "live" or self.config.live_feed

    def _on_wait(self) -> bool:
        """Between the sleeps of a paced replay: commit (no lock held while idle), apply
        controls; return True to stop waiting once a stop is asked for."""
        self.commit()
        self.apply_controls()
        return self.cp.stopped

    def _keep_bars(self, batch: BarBatch) -> None:
        """Keep live bars in the state database (never appended to the Parquet store)."""
        self.db.record_bars(
            self.config.session,
            zip(batch.ts.tolist(), batch.open.tolist(), batch.high.tolist(), batch.low.tolist(),
                batch.close.tolist(), batch.volume.tolist(), batch.spread.tolist(), strict=True),
        )  # fmt: skip

    def _idle(self, feed: MarketFeed) -> None:
        """Between bars: apply controls, and watch for a stale feed."""
        self.apply_controls()
        last = feed.last_data()
        if self._live_feed and last is not None and not self.cp.stale:
            quiet = (utc_now() - last).total_seconds()
            if quiet > self.config.stale_intervals * self.config.bar_seconds:
                self.cp.stale = True
                self._notice(NoticeKind.STALE_FEED, "stale feed",
                             f"no data for {quiet:.0f} s: new orders blocked", key="stale")  # fmt: skip
                self.commit()

    def _bar(self, b: BarBatch, signals: Signals, i: int) -> None:
        ts = int(b.ts[i])
        cp = self.cp
        if self._versions is not None:
            self.model_version = str(int(self._versions[i]))
        if cp.bar_ts != ts:
            cp.bar_ts, cp.stage, cp.bar_index = ts, -1, cp.bar_index + 1
        if cp.stage < 0:
            self._stage_open(b, i)
            self._stage_done(0)
        if cp.stage < 1:
            self._stage_close(b, i)
            self._stage_done(1)
        if cp.stage < 2:
            self._stage_decide(b, signals, i)
            self._stage_done(2)
        if cp.stage < 3:
            self._stage_end(b, i)
            self._stage_done(3)
        self._bars_this_run += 1
        self._bars_since_commit += 1
        if self._bars_since_commit >= self.config.commit_bars or (
            time.monotonic() - self._last_commit >= self._commit_every
        ):
            self.commit()
        if time.monotonic() - self._last_control >= self.config.control_seconds:
            self.apply_controls()

    # -- quiet bars ------------------------------------------------------------------------

    def _eventful(self, signals: Signals, n: int) -> np.ndarray:
        """Return the indices of the bars whose signal may act (the others cannot)."""
        if signals.target is not None:
            target = np.asarray(signals.target, dtype=np.float64)
            if self.config.direction == "long":
                target = np.maximum(target, 0.0)
            elif self.config.direction == "short":
                target = np.minimum(target, 0.0)
            known = ~np.isnan(target)
            # A target acts where it differs from the last known one before it.
            prior = np.r_[self.cp.last_target, target[known][:-1]]
            changed = np.zeros(n, dtype=bool)
            changed[np.flatnonzero(known)] = target[known] != prior
            return np.flatnonzero(changed)
        any_event = np.zeros(n, dtype=bool)
        for name, side in (("entries", "long"), ("exits", "long"),
                           ("short_entries", "short"), ("short_exits", "short")):  # fmt: skip
            array = getattr(signals, name)
            if array is not None and self.config.direction in ("both", side):
                any_event |= np.asarray(array, dtype=bool)
        return np.flatnonzero(any_event)

    def _quiet(self, b: BarBatch, eventful: np.ndarray, i: int) -> int:
        """Fast-forward through bars where nothing can happen but marking; return how many.

        Quiet bars have no signal that may act, no decision waiting for the open, no working
        order, no protective level reached, no risk transition, and no stage half done; the
        broker computes their swap and marks at once (:meth:`preview_quiet`), the risk engine
        takes their marks at once (:meth:`RiskEngine.quiet_marks`).
        """
        cp = self.cp
        preview = getattr(self.broker, "preview_quiet", None)
        if (
            preview is None
            or cp.pending is not None
            or (cp.bar_ts == int(b.ts[i]) and cp.stage < 3)
            or self.risk.limits.flatten_before_weekend
            or cp.flatten_pending
        ):
            return 0
        nxt = int(np.searchsorted(eventful, i))
        stop = int(eventful[nxt]) if nxt < eventful.shape[0] else len(b)
        room = self.config.commit_bars - self._bars_since_commit
        stop = min(stop, i + max(room, 1))
        if stop - i < 2 or (cp.expect_fills and self.broker.open_orders()):
            return 0
        count, balance, equity = preview(b, i, stop)
        if count <= 0:
            return 0
        ends = b.end[i : i + count]
        count = self.risk.quiet_marks(ends, equity[:count])
        if count <= 0:
            return 0
        balance, equity, ends = balance[:count], equity[:count], ends[:count]
        self.broker.apply_quiet(b, i, count, balance, equity)  # type: ignore[attr-defined]
        last = i + count - 1
        self.clock.set_ns(int(b.end[last]))
        self.risk.absorb_quiet(utc_from_ns(int(ends[-1])), float(equity.max()), float(equity[-1]))
        units = cp.units
        if units != 0.0:
            shifts = self.broker.mark_shifts(b, i, i + count, units)  # type: ignore[attr-defined]
            exposure = (
                np.abs(units)
                * (b.close[i : i + count] + shifts)
                * b.to_account[i : i + count]
                / equity
            )
        else:
            exposure = np.zeros(count)
        if self.config.record_equity:
            if self._equity_rows:
                self._equity_parts.append(np.array(self._equity_rows, dtype=EQUITY_POINT))
                self._equity_rows = []
            run = np.empty(count, dtype=EQUITY_POINT)
            run["ts"], run["balance"], run["equity"], run["exposure"] = (
                ends,
                balance,
                equity,
                exposure,
            )
            self._equity_parts.append(run)
        if self.collected is not None:
            c = self.collected
            c.ts.extend(b.ts[i : i + count].tolist())
            c.equity.extend(equity.tolist())
            c.position.extend([units] * count)
            c.exposure.extend(exposure.tolist())
        self.sizer.observe_closes(
            b.close[max(i, i + count - self.sizer.config.lookback - 1) : i + count]
        )
        cp.rate = float(b.to_account[last])
        cp.bar_ts, cp.stage = int(b.ts[last]), 3
        cp.done_ts = cp.bar_ts
        cp.bar_index += count
        cp.bars += count
        self._bars_this_run += count
        self._bars_since_commit += count
        if self._bars_since_commit >= self.config.commit_bars or (
            time.monotonic() - self._last_commit >= self._commit_every
        ):
            self.commit()
        if time.monotonic() - self._last_control >= self.config.control_seconds:
            self.apply_controls()
        return count

    def _stage_done(self, stage: int) -> None:
        self.cp.stage = stage
        self.cp.seq = self.seq

    # -- stages ----------------------------------------------------------------------------

    def _stage_open(self, b: BarBatch, i: int) -> None:
        self.clock.set_ns(int(b.ts[i]))
        self.broker.on_market(b, i, "open")
        self._sync_fills(b, i)
        if self.cp.pending is not None:
            target = self.cp.pending
            self._execute(target, b, i, float(b.open[i]), self.cp.pending_bar)
            self.cp.pending = None
            self.cp.pending_bar = -1

    def _stage_close(self, b: BarBatch, i: int) -> None:
        self.clock.set_ns(int(b.end[i]))
        self.broker.on_market(b, i, "close")
        self.cp.rate = float(b.to_account[i])
        self._sync_fills(b, i)
        self.sizer.observe_close(float(b.close[i]))

    def _stage_decide(self, b: BarBatch, signals: Signals, i: int) -> None:
        act, target = self._decision(signals, i)
        if not act:
            return
        if self.config.fill == "next_open" and self.config.mode == "backtest":
            self.cp.pending = target
            self.cp.pending_bar = int(b.ts[i])
        else:
            self._execute(target, b, i, float(b.close[i]), int(b.ts[i]))

    def _stage_end(self, b: BarBatch, i: int) -> None:
        account = self.broker.account()
        units = self._units()
        now = self.clock.now()
        events = self.risk.on_bar(now) + self.risk.on_mark(now, account.equity)
        self._risk_events(events, b, i)
        if self.risk.should_flatten(now) and units != 0.0:
            self._flatten(b, i, "weekend")
        if self.cp.flatten_pending:
            # A halt asked to flatten: until flat, close what is left (an order in flight when
            # the halt came may have filled after the first flatten).
            if self._planned_units() == 0.0:
                self.cp.flatten_pending = False
            elif not self.broker.open_orders():
                self._flatten(b, i, "halt")
            units = self._units()
        end = int(b.end[i])
        exposure = 0.0
        if units != 0.0 and account.equity != 0.0:
            bid, ask = self._quote(float(b.close[i]), float(b.spread[i]))
            mark = bid if units > 0 else ask
            exposure = abs(units) * mark * self.cp.rate / account.equity
        if self.config.record_equity:
            self._equity_rows.append((end, account.balance, account.equity, exposure))
        if self.collected is not None:
            c = self.collected
            c.ts.append(int(b.ts[i]))
            c.equity.append(account.equity)
            c.position.append(units)
            c.exposure.append(exposure)
        self.cp.bars += 1
        self.cp.done_ts = int(b.ts[i])

    # -- decisions -------------------------------------------------------------------------

    def _decision(self, signals: Signals, i: int) -> tuple[bool, float]:
        """Return whether the signal at bar ``i`` acts, and the target it asks for."""
        direction = self.config.direction
        if signals.target is not None:
            t = float(signals.target[i])
            if math.isnan(t):
                return False, 0.0
            if direction == "long":
                t = max(t, 0.0)
            elif direction == "short":
                t = min(t, 0.0)
            if t == self.cp.last_target:
                return False, 0.0
            self.cp.last_target = t
            return True, t
        long_ok = direction != "short"
        short_ok = direction != "long"
        le = long_ok and _flag(signals.entries, i)
        lx = long_ok and _flag(signals.exits, i)
        se = short_ok and _flag(signals.short_entries, i)
        sx = short_ok and _flag(signals.short_exits, i)
        if not (le or lx or se or sx):
            return False, 0.0
        if le and lx:
            le = lx = False
        if se and sx:
            se = sx = False
        if le and se:
            le = se = False
        u = self._planned_units()
        if u > 0.0:
            if se:
                return True, -1.0
            return (True, 0.0) if lx else (False, 0.0)
        if u < 0.0:
            if le:
                return True, 1.0
            return (True, 0.0) if sx else (False, 0.0)
        if le:
            return True, 1.0
        if se:
            return True, -1.0
        return False, 0.0

    def _units(self) -> float:
        return self.cp.units

    def _planned_units(self) -> float:
        """Return the position once the market orders still working have filled."""
        units = self.cp.units
        if self.cp.expect_fills:
            for order in self.broker.open_orders():
                if order.type is OrderType.MARKET:
                    units += order.remaining * order.side.sign
        return units

    def _quote(self, x: float, bar_spread: float) -> tuple[float, float]:
        return self.costs.bid_ask(x, self.costs.spread_of(bar_spread))

    def _execute(self, t: float, b: BarBatch, i: int, x: float, decision_bar: int) -> None:
        """Move the position to ``t`` × the full size around the price ``x`` (the engine's rule)."""
        slip = self.costs.slip(float(b.high[i]), float(b.low[i]))
        bid, ask = self._quote(x, float(b.spread[i]))
        buy_px = ask + slip
        sell_px = bid - slip
        u = self._planned_units()
        if u != 0.0 and (t == 0.0 or (t > 0.0) != (u > 0.0)):
            reason = "signal" if t == 0.0 else "reverse"
            closing = self._order(
                -u, b, i, t, decision_bar, reason, price=sell_px if u > 0 else buy_px
            )
            if closing is None or closing.status is OrderStatus.REJECTED:
                return  # the close was refused: no new position
            u = 0.0  # closed, or closing at the broker's next quote
        if t == 0.0:
            return
        new_px = buy_px if t > 0.0 else sell_px
        rate = self._rate_now(b, i)
        intent = self._recorded_intent(self._next_cid())
        if intent is not None:
            wanted = u + intent.units  # a replayed stage: the order asked for before
        else:
            equity = self.broker.account().equity
            wanted = t * self.sizer.full_units(equity, new_px, rate)
        if u == 0.0:
            if wanted != 0.0:
                self._order(wanted, b, i, t, decision_bar, "signal", price=new_px, entry=True)
        elif wanted == 0.0:
            self._order(-u, b, i, t, decision_bar, "signal", price=sell_px if u > 0 else buy_px)
        elif abs(wanted) > abs(u):
            self._order(wanted - u, b, i, t, decision_bar, "signal", price=new_px, entry=True)
        elif abs(wanted) < abs(u):
            self._order(
                wanted - u, b, i, t, decision_bar, "signal", price=sell_px if u > 0 else buy_px
            )

    def _rate_now(self, b: BarBatch, i: int) -> float:
        if self.cp.stage < 1:  # at the open (and in the close stage, once set) the broker's rate
            rate = self.cp.rate
            return rate if not math.isnan(rate) else float(b.to_account[i])
        return float(b.to_account[i])

    def _next_cid(self) -> str:
        return client_order_id(self.clock.now(), self.seq + 1)

    def _order(
        self,
        units: float,
        b: BarBatch,
        i: int,
        decision: float,
        decision_bar: int,
        reason: str,
        *,
        price: float,
        entry: bool = False,
    ) -> Order | None:
        """Record an intent, check it with the risk engine, commit, send, apply its fills."""
        cfg = self.config
        cid = self._next_cid()
        self.seq += 1
        now = self.clock.now()
        known = self._recorded_intent(cid)
        if known is None:
            verdict = self._check(units, price, b, i, now, forced=reason.startswith("flatten"))
            record = IntentRecord(
                session=cfg.session, client_order_id=cid, ts=now,
                bar_ts=utc_from_ns(decision_bar), strategy=cfg.strategy, params=cfg.params,
                decision=decision, units=units, reason=reason, model=cfg.model,
                model_version=self.model_version, feature_set_version=cfg.feature_set_version,
                risk="allowed" if verdict is None else verdict,
            )  # fmt: skip
            self.db.record_intent(record)
            self.cp.last_intent = cid
            if verdict is not None:
                return None
            self.cp.orders += 1
            self.cp.order_times.append(self.clock.now_ns())
            if not getattr(self.broker, "shares_journal", False):
                self.commit()  # the intent is durable before the order leaves the process
        elif known.risk != "allowed":
            return None
        levels = self._levels(units, price) if entry and self.cp.units == 0.0 else (None, None)
        order = Order(
            client_order_id=cid, ts=now, symbol=cfg.symbol,
            side=OrderSide.BUY if units > 0 else OrderSide.SELL, units=abs(units),
            type=OrderType.MARKET, reduce_only=not entry, reason=reason,
            trailing=self._trailing() if entry else None,
            # Sent with the order, so the position is protected from its first fill; the levels
            # are moved to the fill price once it is known (see _set_protection).
            stop_loss=levels[0], take_profit=levels[1],
        )  # fmt: skip
        sent = self.broker.order_status(cid) or self.broker.submit(order)
        self.db.upsert_order(cfg.session, sent)
        if sent.status is OrderStatus.REJECTED:
            self._notice(NoticeKind.ORDER_REJECTED, "order rejected", f"{cid}: {sent.reason}")
        self._sync_fills(b, i, sent=True)
        return sent

    def _recorded_intent(self, cid: str) -> IntentRecord | None:
        """Return the intent recorded under ``cid`` (a stage being replayed), else None.

        Client order ids grow with the loop's clock and sequence, so one above the last recorded
        is new without asking the database.
        """
        last = self.cp.last_intent
        if not last or cid > last:
            return None
        return self.db.intent(self.config.session, cid)

    def _check(
        self, units: float, price: float, b: BarBatch, i: int, now: datetime, *, forced: bool
    ) -> str | None:
        """Return why the risk engine (or the loop's own guards) refuse an order, else None.

        The order is judged against the position once the orders still working have filled
        (the opening leg of a reverse adds exposure even while its closing leg waits). A
        paused session sends no strategy order at all; flattening (``forced``) still runs.
        """
        u = self._planned_units()
        entry = increases_exposure(u, units)
        if self._paused and not forced:
            return "paused"
        if self.cp.stale and not forced:
            return "stale feed"
        rate = self._rate_now(b, i)
        if entry and not (math.isfinite(rate) and rate > 0):
            return "no conversion quote"
        horizon = self.clock.now_ns() - 60_000_000_000
        times = self.cp.order_times
        while times and times[0] < horizon:
            times.pop(0)
        account = self.broker.account()
        gross = abs(u) * price * rate
        check = OrderCheck(
            ts=now, symbol=self.config.symbol, position_units=u, order_units=units,
            price=price, to_account=rate, contract_size=self.costs.contract_size,
            equity=account.equity, gross_exposure=gross,
            open_orders=len(self.broker.open_orders()), orders_last_minute=len(times),
            is_entry=entry,
        )  # fmt: skip
        verdict = self.risk.check(check)
        return None if verdict.allowed else verdict.reason

    def _trailing(self) -> float | None:
        pips = self.config.trailing_stop_pips
        return None if pips is None else pips * self.costs.pip_size

    # -- fills and the trade log -----------------------------------------------------------

    def _sync_fills(self, b: BarBatch, i: int, *, sent: bool = False) -> None:
        """Record the broker's new fills, apply them to the trade log, commit, then act."""
        cp = self.cp
        if not (sent or cp.expect_fills):
            return
        since = None if cp.last_fill_ns < 0 else utc_from_ns(cp.last_fill_ns)
        fills = self.broker.fills_since(since)
        skip = cp.seen_at_last if since is not None else 0
        new = fills[skip:]
        if new:
            balance = self.broker.account().balance
            for fill in new:
                lots = fill.units / self.costs.contract_size
                self.db.record_fill(self.config.session, fill, lots)
                now = self.broker.order_status(fill.client_order_id)
                if now is not None:  # the order as it stands after the fill
                    self.db.upsert_order(self.config.session, now)
                self._apply(fill, b, i, balance)
                ns = ns_from_utc(fill.ts)
                if ns == cp.last_fill_ns:
                    cp.seen_at_last += 1
                else:
                    cp.last_fill_ns, cp.seen_at_last = ns, 1
                cp.fills_seen += 1
            if cp.last_fill_ns > self.clock.now_ns():
                # What the loop does next happens after the fills it has seen.
                self.clock.set_ns(cp.last_fill_ns)
            positions = self.broker.positions()
            held = positions[0] if positions else None
            if held is None or not math.isclose(held.units, cp.units, rel_tol=1e-9, abs_tol=1e-6):
                cp.units = held.units if held is not None else 0.0
            self.db.set_position(
                self.config.session,
                held or Position(symbol=self.config.symbol, units=0.0, avg_price=0.0),
            )
        cp.expect_fills = bool(self.broker.open_orders()) or (cp.units != 0.0 and self._protected())

    def _protected(self) -> bool:
        cfg = self.config
        return not (
            cfg.stop_loss_pips is None
            and cfg.take_profit_pips is None
            and cfg.trailing_stop_pips is None
        )

    def _apply(self, fill: Fill, b: BarBatch, i: int, balance: float) -> None:
        cp = self.cp
        signed = fill.signed_units
        before = cp.units
        units = before + signed
        if abs(units) <= 1e-9 * max(abs(before), abs(signed)):
            units = 0.0
        cp.units = units
        spread = self.costs.spread_of(float(b.spread[i]))
        rate = self._rate_now(b, i)
        cost = fill.fees + fill.units * (0.5 * spread + fill.slippage) * rate - fill.swap
        trade = self.trade
        if trade is not None and before != 0.0 and (signed > 0) != (before > 0):
            q = min(fill.units, abs(before))
            trade.out_units += q
            trade.exit_price += (fill.price - trade.exit_price) * (q / trade.out_units)
            trade.costs += cost
            trade.pnl += fill.swap
            trade.pnl += fill.realized - fill.fees
            trade.last_balance = balance
            if units == 0.0 or (units > 0) != (before > 0):
                self._close_trade(trade, fill, b, i)
                self.trade = None
            return
        if trade is None:
            self.trade = trade = _Trade(
                entry_bar=cp.bar_index, entry_ts=int(b.ts[i]),
                direction=1.0 if signed > 0 else -1.0,
            )  # fmt: skip
            self._notice(NoticeKind.TRADE_OPENED, "trade opened",
                         f"{fill.side.value} {fill.units:g} {fill.symbol} at {fill.price:g}")  # fmt: skip
            self._set_protection(fill)
        trade.pnl += fill.swap
        trade.pnl -= fill.fees
        trade.in_units += fill.units
        trade.entry_price += (fill.price - trade.entry_price) * (fill.units / trade.in_units)
        trade.notional += fill.units * fill.price * rate
        trade.peak = max(trade.peak, abs(units))
        trade.costs += cost
        trade.last_balance = balance

    def _levels(self, units: float, price: float) -> tuple[float | None, float | None]:
        """Return the stop loss and take profit of a position opened at ``price``."""
        cfg = self.config
        side = 1.0 if units > 0 else -1.0
        return protective_levels(
            side, price, cfg.stop_loss_pips, cfg.take_profit_pips, self.costs.pip_size
        )

    def _set_protection(self, fill: Fill) -> None:
        """Put the stop loss and take profit at the broker, measured from the entry fill."""
        cfg = self.config
        if cfg.stop_loss_pips is None and cfg.take_profit_pips is None:
            return
        side = 1.0 if fill.side is OrderSide.BUY else -1.0
        stop, take = protective_levels(
            side, fill.price, cfg.stop_loss_pips, cfg.take_profit_pips, self.costs.pip_size
        )
        self.broker.modify(fill.client_order_id, stop_loss=stop, take_profit=take)

    def _close_trade(self, trade: _Trade, fill: Fill, b: BarBatch, i: int) -> None:
        pnl = trade.pnl
        ret = pnl / trade.notional if trade.notional else 0.0
        n = self.cp.trades + 1
        self.db.record_trade(
            self.config.session, n,
            {
                "entry_ts": utc_from_ns(trade.entry_ts), "exit_ts": utc_from_ns(int(b.ts[i])),
                "direction": "long" if trade.direction > 0 else "short", "units": trade.peak,
                "entry_price": trade.entry_price, "exit_price": trade.exit_price, "pnl": pnl,
                "return": ret, "costs": trade.costs, "exit_reason": fill.reason,
                "bars_held": self.cp.bar_index - trade.entry_bar,
            },
        )  # fmt: skip
        self.cp.trades = n
        self.sizer.trade_closed(ret)
        events = self.risk.on_trade_closed(self.clock.now(), pnl)
        self._risk_events(events, b, i)
        self._notice(NoticeKind.TRADE_CLOSED, "trade closed",
                     f"{fill.symbol} {fill.reason}: P&L {pnl:,.2f}")  # fmt: skip

    def _finish_open_trade(self) -> None:
        """List the trade still open (valued at the last mark), as the engine lists it."""
        trade = self.trade
        if trade is None:
            return
        account = self.broker.account()
        units = self._units()
        held = abs(units)
        out = trade.out_units + held
        exit_price = trade.exit_price
        if held and out:
            positions = self.broker.positions()
            mark = positions[0].avg_price if positions else exit_price
            bid_ask = getattr(self.broker, "bid_ask", None)
            if callable(bid_ask):
                bid, ask = bid_ask()
                mark = bid if units > 0 else ask
            exit_price += (mark - exit_price) * (held / out)
        # Swap earned since the last fill, then what the open position has accrued.
        pnl = trade.pnl + (account.balance - trade.last_balance)
        pnl += account.equity - account.balance
        self.db.record_trade(
            self.config.session, self.cp.trades + 1,
            {
                "entry_ts": utc_from_ns(trade.entry_ts), "exit_ts": None,
                "direction": "long" if trade.direction > 0 else "short", "units": trade.peak,
                "entry_price": trade.entry_price, "exit_price": exit_price, "pnl": pnl,
                "return": pnl / trade.notional if trade.notional else 0.0,
                # What the position earned or paid in swap since its last fill is a cost too.
                "costs": trade.costs - (account.balance - trade.last_balance),
                "exit_reason": "open",
                "bars_held": self.cp.bar_index - trade.entry_bar,
            },
        )  # fmt: skip

    # -- risk and controls -----------------------------------------------------------------

    def _risk_events(self, events: list[RiskEvent], b: BarBatch | None, i: int) -> None:
        for event in events:
            self.db.record_risk_event(
                RiskEventRecord(
                    account=event.account, session=self.config.session, ts=event.ts,
                    kind=event.kind, from_state=event.from_mode.value,
                    to_state=event.to_mode.value, reason=event.reason, equity=event.equity,
                )
            )  # fmt: skip
            if event.kind == "new_day" and self.config.mode != "backtest":
                self._daily_summary(event)
            if event.from_mode != event.to_mode:
                self._notice(NoticeKind.RISK_STATE, f"risk {event.to_mode.value}",
                             f"{event.account}: {event.reason}", key=f"risk-{event.to_mode}")  # fmt: skip
            if event.to_mode in (RiskMode.REDUCING, RiskMode.HALTED):
                self._cancel_increasing()
            if (
                event.to_mode is RiskMode.HALTED
                and event.from_mode is not RiskMode.HALTED
                and self.risk.limits.flatten_on_halt
                and b is not None
            ):
                self._flatten(b, i, "halt")

    def _daily_summary(self, event: RiskEvent) -> None:
        """Notify the day just ended: equity, the day's P&L, trades so far, the risk state."""
        before = self._day_equity
        equity = event.equity if event.equity is not None else float("nan")
        pnl = "" if before is None else f", day P&L {equity - before:,.2f}"
        self._day_equity = equity
        self._notice(
            NoticeKind.DAILY_SUMMARY,
            "daily summary",
            f"equity {equity:,.2f}{pnl}; {self.cp.trades} trades closed so far; "
            f"risk {self.risk.state.mode.value}",
            key=f"day-{event.ts:%Y%m%d}",
        )

    def _cancel_increasing(self) -> None:
        """Cancel working orders that would increase |exposure| (their unfilled rest too)."""
        u = self._units()
        for order in self.broker.open_orders():
            if increases_exposure(u, order.remaining * order.side.sign):
                cancelled = self.broker.cancel(order.client_order_id)
                self.db.upsert_order(self.config.session, cancelled)

    def _flatten(self, b: BarBatch, i: int, why: str) -> None:
        u = self._units()
        if u == 0.0:
            return
        x = float(b.close[i]) if self.cp.stage >= 1 else float(b.open[i])
        bid, ask = self._quote(x, float(b.spread[i]))
        self._order(-u, b, i, 0.0, int(b.ts[i]), f"flatten ({why})", price=bid if u > 0 else ask)

    def apply_controls(self) -> None:
        """Apply the controls waiting in the state database, acknowledge and notify each."""
        self._last_control = time.monotonic()
        pending = self.db.pending_controls(self.config.session, self.config.account)
        for request in pending:
            result = self._control(request)
            self.db.ack_control(int(request.id or 0), self.clock.now(), result)
            self._notice(NoticeKind.CONTROL, f"control: {request.action}",
                         f"{result} (by {request.who}: {request.why})")  # fmt: skip
            self.commit()

    def _control(self, request: ControlRequest) -> str:
        now = self.clock.now()
        session = self.config.session
        if request.action == "pause":
            self._paused = True
            self.db.update_session(session, paused=True)
            return "paused: no new orders"
        if request.action == "resume":
            self._paused = False
            self.db.update_session(session, paused=False)
            return "resumed"
        if request.action == "halt":
            events = self.risk.halt(now, request.why or "halted by control")
            self._risk_events(events, None, 0)
            if request.flatten:
                self.cp.flatten_pending = True
                self._flatten_now("halt")
            return "halted" + (" and flattening" if request.flatten else "")
        if request.action == "reset":
            self._risk_events(self.risk.reset(now, request.why or "reset by control"), None, 0)
            return "risk reset to active"
        if request.action == "flatten":
            self._flatten_now("control")
            return "flatten order sent"
        if request.action == "stop":
            self.cp.stopped = True
            return "stopping after this bar"
        return f"unknown action {request.action!r}"

    def _flatten_now(self, why: str) -> None:
        """Close the position at the broker's next quote (between bars)."""
        u = self._units()
        if u == 0.0:
            return
        cfg = self.config
        cid = self._next_cid()
        self.seq += 1
        now = self.clock.now()
        self.db.record_intent(
            IntentRecord(
                session=cfg.session,
                client_order_id=cid,
                ts=now,
                bar_ts=now,
                strategy=cfg.strategy,
                params=cfg.params,
                decision=0.0,
                units=-u,
                reason=f"flatten ({why})",
                risk="allowed",
            )
        )
        self.cp.last_intent = cid  # fmt: skip
        self.cp.seq = self.seq
        self.cp.orders += 1
        if not getattr(self.broker, "shares_journal", False):
            self.commit()
        order = Order(
            client_order_id=cid, ts=now, symbol=cfg.symbol,
            side=OrderSide.SELL if u > 0 else OrderSide.BUY, units=abs(u), reduce_only=True,
            reason=f"flatten ({why})",
        )  # fmt: skip
        sent = self.broker.order_status(cid) or self.broker.submit(order)
        self.db.upsert_order(cfg.session, sent)
        self.cp.expect_fills = True

    def reconcile(self) -> None:
        """Compare the broker's book with the session's before trading; halt on a mismatch.

        The session's recorded position must equal the broker's, and every order the session
        recorded as working must be known to the broker.
        """
        recorded = {p.symbol: p.units for _, p in self.db.positions(self.config.session)}
        actual = {p.symbol: p.units for p in self.broker.positions()}
        mine = recorded.get(self.config.symbol, 0.0)
        theirs = actual.get(self.config.symbol, 0.0)
        problems = []
        if not math.isclose(mine, theirs, rel_tol=1e-9, abs_tol=1e-9):
            problems.append(f"position {mine:g} recorded, {theirs:g} at the broker")
        for order in self.db.orders(self.config.session):
            if order.status.is_open and self.broker.order_status(order.client_order_id) is None:
                problems.append(f"order {order.client_order_id} unknown to the broker")
        if problems:
            reason = "reconciliation: " + "; ".join(problems)
            self._risk_events(self.risk.halt(self.clock.now(), reason), None, 0)

    # -- results ---------------------------------------------------------------------------

    def _totals(self, seconds: float) -> RunTotals:
        account = self.broker.account()
        fills = self.db.fills(self.config.session)
        digest = ledger_hash(
            [
                (iso_z_ns(ns_from_utc(f.ts)), f.symbol, f.side.value, f.units, f.price, f.fees)
                for f in fills
            ]
        )
        return RunTotals(
            bars=self.cp.bars, bars_this_run=self._bars_this_run, orders=self.cp.orders,
            fills=len(fills), trades=self.cp.trades + (1 if self.trade is not None else 0),
            final_equity=account.equity, balance=account.balance,
            risk_state=self.risk.state.mode.value, paused=self._paused,
            stopped=self.cp.stopped, ledger_hash=digest, seconds=seconds,
        )  # fmt: skip


def _flag(array: np.ndarray | None, i: int) -> bool:
    return array is not None and bool(array[i])


def _columns(batch: BarBatch) -> dict[str, np.ndarray]:
    return {
        "ts": batch.ts, "open": batch.open, "high": batch.high, "low": batch.low,
        "close": batch.close, "volume": batch.volume, "spread": batch.spread,
    }  # fmt: skip

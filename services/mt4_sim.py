"""The MT4 simulator: a process that binds the expert advisor's three sockets and behaves as
the EA does, in both dialects, over stored bars.

``run_simulator`` is load (each symbol's stored bars, :func:`feature_store.series.load_series`)
-> ticks (:func:`execution.brokers.mt4.replay.bar_ticks`, merged in time order) -> bind
(:class:`execution.brokers.mt4.sockets.BridgeSockets`, the ready line) -> loop: answer commands
until the next tick is due on the :class:`~execution.brokers.mt4.replay.ReplayClock`, publish
the due ticks in a burst (at most ``_BURST_TICKS`` or ``_BURST_SECONDS`` before the command
socket is looked at again, so a full-speed replay is not paced by polling), let the :class:`~execution.brokers.mt4.terminal.SimTerminal` trigger orders on it; after
the last tick keep answering and republish the last quotes every second. Closed trades are
written to ``SOLODESK_HOME/mt4-sim/<run>/history.parquet`` as they close.

**A named account** (``SimOptions.account``, ``--account NAME``) lives on across runs, as an MT4
account lives at its broker while the terminal restarts. Its folder,
``SOLODESK_HOME/mt4-sim/accounts/<NAME>/``, holds ``account.json`` (:class:`SimAccount`: the
terminal's :class:`~execution.brokers.mt4.terminal.TerminalState` and the account's simulated
time), written atomically after every change of the terminal (an order opened, modified,
triggered or closed; the balance), at most every second while only the time moves, and when
the run stops. A run on an existing account starts from it: its balance, open trades, pending
orders, history and next ticket; its replay skips the ticks at or before the account's time,
so prices never go back for a client that was trading on them, and each symbol starts from the
last quote the account saw (unless that time is outside ``[start, end)``: then the replay runs
from ``start`` and the time does go back). The account's trade history covers all its runs: it
is written to the account's folder, ``accounts/<NAME>/history.parquet``, instead of the run's.
A lock on the folder keeps a second simulator off an account in use.

Published market data follows the TRACK command that set the list: quotes of tracked symbols
when the bid or the ask changes; for tracked rates, the bar that has just opened (its open as
all four prices, tick volume 1) and, in the extended dialect, first the bar just closed, whole,
as the ticks made it. Bars of any timeframe up to D1 are cut from the ticks on the broker clock.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from core.errors import UsageError
from core.ids import new_run_id
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import as_utc, ns_from_utc, utc_from_ns
from core.types import Instrument
from execution.brokers.mt4.protocol import (
    BAD_COMMAND,
    Dialect,
    HelloCommand,
    HistCommand,
    MT4Bar,
    ProtocolError,
    Reply,
    TrackPricesCommand,
    TrackRatesCommand,
    error_reply,
    format_rate,
    format_reply,
    format_tick,
    from_mt4_datetime,
    hello_reply,
    hist_reply,
    mt4_datetime,
    parse_command,
    track_prices_reply,
    track_rates_reply,
)
from execution.brokers.mt4.replay import FaultPlan, ReplayClock, bar_ticks, frame_batch, tick_spread
from execution.brokers.mt4.sockets import DEFAULT_PORTS, BridgeSockets, CurveConfig
from execution.brokers.mt4.terminal import SimTerminal, TerminalConfig, TerminalState
from feature_store.series import SIDE_PREFERENCE, find_series, load_series, series_clock
from feature_store.store import BarStore, write_atomic

logger = logging.getLogger(__name__)

#: The kind of run a simulator run's id is made for (:func:`core.ids.new_run_id`).
RUN_KIND = "mt4_sim"
#: After the last tick, the last quotes are published again this often (seconds).
REPUBLISH_SECONDS = 1.0
#: Closed trades are written to the history file at most this often (seconds), and at the end.
HISTORY_SECONDS = 1.0
#: The longest the loop waits before looking at its stop event again (seconds).
_POLL_SLICE = 0.05
#: Due ticks are published in bursts between two looks at the command socket: at most this
#: many ticks, or this many wall seconds, so commands are answered within a few milliseconds.
_BURST_TICKS = 512
_BURST_SECONDS = 0.005
_DAY_MINUTES = 1440
#: A named account's time alone (no change of the terminal) is saved at most this often (s).
ACCOUNT_SAVE_SECONDS = 1.0
#: The file of a named account's state, and the version of its format.
ACCOUNT_FILE = "account.json"
ACCOUNT_VERSION = 1
#: An account's name: a folder name, portable and without path separators.
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class SimOptions(BaseModel):
    """What ``solodesk mt4 sim`` is started with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbols: tuple[str, ...] = Field(min_length=1)
    timeframe: Timeframe
    start: datetime | None = None
    end: datetime | None = None
    speed: float | None = Field(default=1.0, gt=0)
    spread: str = "data"
    host: str = "127.0.0.1"
    ports: tuple[int, int, int] = DEFAULT_PORTS
    cash: float = Field(default=10_000.0, gt=0)
    leverage: int = Field(default=30, gt=0)
    faults: tuple[str, ...] = ()
    seed: int = 0
    max_orders: int | None = Field(default=None, ge=0)
    max_lot_size: float | None = Field(default=None, gt=0)
    account: str | None = None
    curve: CurveConfig | None = None
    #: Start the replay when a client first tracks prices or bars, not at once.
    wait_for_client: bool = False

    @field_validator("account")
    @classmethod
    def _account_name(cls, value: str | None) -> str | None:
        if value is not None and account_name_problem(value):
            raise ValueError(account_name_problem(value))
        return value


def account_name_problem(name: str) -> str | None:
    """Return what is wrong with ``name`` as an account's name (a folder's), None if nothing."""
    if _ACCOUNT_NAME.fullmatch(name):
        return None
    return (
        f"--account {name!r}: give a name of letters, digits, '_', '.' and '-' "
        "(at most 64, starting with a letter or digit)"
    )


def sim_curve(secret_key: str, allowed_client_keys: Sequence[str]) -> CurveConfig:
    """Return the simulator's CURVE settings: its secret key and the client keys admitted.

    Raises
    ------
    UsageError
        If a key is not a CURVE key (40 characters of Z85 text) or no client key is given.
    """
    if not allowed_client_keys:
        raise UsageError("CURVE needs at least one client public key to admit (--curve-allow)")
    try:
        return CurveConfig(
            server_secret=SecretStr(secret_key.strip()),
            allowed_client_public_keys=tuple(allowed_client_keys),
        )
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise UsageError(f"CURVE keys: {problems}") from None


class SimAccount(BaseModel):
    """A named simulator account as saved (``accounts/<NAME>/account.json``).

    ``time`` is the account's simulated time (UTC) when it was saved: the replay of the next
    run resumes after it; None when no tick was replayed yet.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = ACCOUNT_VERSION
    name: str
    time: datetime | None = None
    terminal: TerminalState


class SimSummary(BaseModel):
    """A simulator run when it stopped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run: str
    ports: tuple[int, int, int]
    ticks: int
    ticks_published: int
    commands_answered: int
    faults_struck: dict[str, int]
    trades_closed: int
    history: str
    account: str | None = None
    resumed_at: datetime | None = None


@dataclass
class _Replay:
    """The merged tick stream of every symbol."""

    ts: np.ndarray
    symbol: np.ndarray  # index into ``symbols``
    bid: np.ndarray
    ask: np.ndarray
    #: The stored bar's volume on each bar's first tick, 0 on the others: a bar cut from the
    #: ticks carries the volume of the stored bars it spans.
    volume: np.ndarray
    symbols: tuple[str, ...]
    instruments: dict[str, Instrument]
    spread_points: dict[str, int]


@dataclass
class _Publisher:
    """What is published and how: tracked lists, their dialects, sequence numbers, faults."""

    sockets: BridgeSockets
    faults: FaultPlan
    prices: tuple[str, ...] = ()
    prices_dialect: Dialect = Dialect.LEGACY
    rates: tuple[tuple[str, Timeframe], ...] = ()
    rates_dialect: Dialect = Dialect.LEGACY
    seq: dict[str, int] = field(default_factory=dict)
    last_quote: dict[str, tuple[float, float]] = field(default_factory=dict)
    sent_quote: dict[str, tuple[float, float]] = field(default_factory=dict)
    bars: dict[tuple[str, Timeframe], tuple[int, list[float], int]] = field(default_factory=dict)
    #: The stored volume of the bar being built, by (symbol, timeframe).
    volumes: dict[tuple[str, Timeframe], float] = field(default_factory=dict)
    #: The UTC span (ns) of each bar being built, so ticks inside it skip the clock.
    spans: dict[tuple[str, Timeframe], tuple[int, int]] = field(default_factory=dict)
    held: str | None = None
    published: int = 0

    def next_seq(self, topic: str, dialect: Dialect) -> int | None:
        if dialect is Dialect.LEGACY:
            return None
        n = self.seq.get(topic, 0) + 1
        self.seq[topic] = n
        return n

    def send(self, text: str, *, tick: bool) -> None:
        if tick and self.faults.drop_tick():
            return
        if tick and self.faults.reorder_tick() and self.held is None:
            self.held = text
            return
        self._out(text)
        if tick and self.faults.duplicate_tick():
            self._out(text)
        if self.held is not None and text != self.held:
            held, self.held = self.held, None
            self._out(held)

    def _out(self, text: str) -> None:
        self.sockets.publish(text)
        self.published += 1


def run_simulator(
    settings: Settings,
    options: SimOptions,
    *,
    on_ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> SimSummary:
    """Run the MT4 simulator until ``stop`` is set; return what it did.

    ``on_ready`` gets the ready line (:func:`execution.brokers.mt4.sockets.ready_line`) once the
    sockets are bound. With ``options.account`` the run starts from that account and keeps it
    saved (the module's notes); ``ticks`` and ``trades_closed`` of the summary count this run's.

    Raises
    ------
    UsageError
        If a symbol's series is not stored, the spread cannot be had, a fault is misspelt, or
        the account is in use, unreadable or does not fit the run (its currency, its symbols).
    SolodeskError
        If a socket cannot be bound.
    """
    stop = stop or threading.Event()
    faults = FaultPlan.parse(options.faults, seed=options.seed)
    replay = _load_replay(settings, options)
    terminal = SimTerminal(
        TerminalConfig(
            cash=options.cash, leverage=options.leverage, currency=settings.account_currency,
            max_orders=options.max_orders, max_lot_size=options.max_lot_size,
        ),
        replay.instruments,
        faults=faults,
    )  # fmt: skip
    run = new_run_id(RUN_KIND)
    with _AccountKeeper.open(settings, options, terminal) as keeper:
        return _run(settings, options, run, replay, terminal, faults, keeper, on_ready, stop)


def _run(
    settings: Settings,
    options: SimOptions,
    run: str,
    replay: _Replay,
    terminal: SimTerminal,
    faults: FaultPlan,
    keeper: _AccountKeeper | None,
    on_ready: Callable[[str], None] | None,
    stop: threading.Event,
) -> SimSummary:
    if keeper is None:
        history_path = settings.mt4_sim_dir(run) / "history.parquet"
        first, resumed = 0, None
    else:
        history_path = keeper.folder / "history.parquet"
        first, resumed = _resume_index(replay, keeper.time_ns, options)
    clock = ReplayClock(options.speed)
    sockets = BridgeSockets(options.host, options.ports, options.curve)
    ports = sockets.ports
    pub = _Publisher(sockets, faults)
    server = _Server(settings, replay, terminal, pub, clock, resumed=resumed)
    server.prime(first)
    if on_ready is not None:
        on_ready(sockets.ready_line())
    delayed: list[tuple[float, str]] = []
    answered = 0
    restored = written = len(terminal.history)
    i, n = first, len(replay.ts)
    last_republish = time.monotonic()
    history_at = 0.0
    try:
        while not stop.is_set():
            now_wall = time.monotonic()
            for due, late in [d for d in delayed if d[0] <= now_wall]:
                delayed.remove((due, late))
                answered += bool(pub.sockets.reply(late))
            # Waiting for a client, the replay's clock starts when one first tracks something.
            held = options.wait_for_client and not (pub.prices or pub.rates)
            wait = clock.due_in(int(replay.ts[i])) if i < n and not held else _POLL_SLICE
            text = pub.sockets.poll(min(wait, _POLL_SLICE))
            if text is not None:
                down = faults.disconnect()
                if down:
                    pub.sockets = _rebind(pub.sockets, options, ports, down, stop)
                    continue
                reply = server.answer(text)
                if faults.drop_reply():
                    continue
                delay = faults.delay_reply()
                if delay:
                    delayed.append((time.monotonic() + delay, reply))
                else:
                    answered += bool(pub.sockets.reply(reply))
            elif i < n and not held and clock.due_in(int(replay.ts[i])) <= 0:
                i = server.burst(i, n)
            elif i >= n and time.monotonic() - last_republish >= REPUBLISH_SECONDS:
                last_republish = time.monotonic()
                server.republish()
            if keeper is not None:
                keeper.keep(server.account_ns())
            # The history is written at most once a second (and when the run stops): rewriting
            # it after every close would stall the replay for longer and longer.
            if len(terminal.history) != written and now_wall - history_at >= HISTORY_SECONDS:
                written, history_at = len(terminal.history), now_wall
                _write_history(terminal, history_path)
    finally:
        pub.sockets.close()
        if len(terminal.history) != written:
            _write_history(terminal, history_path)
        if keeper is not None:
            keeper.save(server.account_ns())
    return SimSummary(
        run=run, ports=ports, ticks=i - first, ticks_published=server.quotes_published,
        commands_answered=answered,
        faults_struck={k.value: v for k, v in faults.struck.items() if v},
        trades_closed=len(terminal.history) - restored, history=str(history_path),
        account=options.account, resumed_at=None if resumed is None else utc_from_ns(resumed),
    )  # fmt: skip


def _rebind(
    sockets: BridgeSockets, options: SimOptions, ports: tuple[int, int, int], seconds: float,
    stop: threading.Event,
) -> BridgeSockets:  # fmt: skip
    sockets.close()
    stop.wait(seconds)
    return BridgeSockets(options.host, ports, options.curve)


def _write_history(terminal: SimTerminal, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    terminal.history_frame().write_parquet(scratch)
    scratch.replace(path)


# -- a named account -------------------------------------------------------------------------


def load_account(settings: Settings, name: str) -> SimAccount | None:
    """Return the saved account ``name`` (``mt4-sim/accounts/<name>/account.json``); None if
    there is none yet.

    Raises
    ------
    UsageError
        If the file cannot be read as an account, naming it.
    """
    path = settings.mt4_account_dir(name) / ACCOUNT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        account = SimAccount.model_validate_json(text)
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        msg = f"{path}: not a simulator account ({first}); restore it or give another --account"
        raise UsageError(msg) from None
    if account.version != ACCOUNT_VERSION:
        msg = f"{path}: account format {account.version}, this simulator reads {ACCOUNT_VERSION}"
        raise UsageError(msg)
    return account


class _AccountKeeper:
    """Holds a named account's folder (locked) and saves the terminal's state to it."""

    def __init__(
        self, name: str, folder: Path, terminal: SimTerminal, time_ns: int | None, lock: IO[str]
    ) -> None:
        self.name = name
        self.folder = folder
        self.terminal = terminal
        #: The account's simulated time (UTC ns) as loaded; None for a new account.
        self.time_ns = time_ns
        self._lock = lock
        self._saved: tuple[int, int | None] | None = None
        self._saved_at = time.monotonic()

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, settings: Settings, options: SimOptions, terminal: SimTerminal
    ) -> Iterator[_AccountKeeper | None]:
        if options.account is None:
            yield None
            return
        name = options.account
        folder = settings.mt4_account_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "lock").open("a", encoding="utf-8") as lock:
            if not _try_lock(lock):
                msg = f"--account {name}: another simulator is running on it; stop it first"
                raise UsageError(msg)
            saved = load_account(settings, name)
            time_ns = None
            if saved is not None:
                terminal.restore(saved.terminal)
                time_ns = None if saved.time is None else ns_from_utc(as_utc(saved.time))
                logger.info(
                    "account %s: balance %s, %d orders open, next ticket %d, time %s",
                    name, terminal.balance, len(terminal.orders), terminal.next_ticket,
                    saved.time,
                )  # fmt: skip
            keeper = cls(name, folder, terminal, time_ns, lock)
            keeper.save(time_ns)
            yield keeper

    def keep(self, time_ns: int | None) -> None:
        """Save the account if the terminal changed, or if its time moved a while ago."""
        assert self._saved is not None
        revision, saved_ns = self._saved
        if self.terminal.revision != revision or (
            time_ns != saved_ns and time.monotonic() - self._saved_at >= ACCOUNT_SAVE_SECONDS
        ):
            self.save(time_ns)

    def save(self, time_ns: int | None) -> None:
        """Write the account's state and time, atomically."""
        account = SimAccount(
            name=self.name,
            time=None if time_ns is None else utc_from_ns(time_ns),
            terminal=self.terminal.state(),
        )
        write_atomic(self.folder / ACCOUNT_FILE, account.model_dump_json(indent=1).encode())
        self._saved = (self.terminal.revision, time_ns)
        self._saved_at = time.monotonic()


def _try_lock(handle: IO[str]) -> bool:
    try:
        import fcntl
    except ImportError:  # no advisory locks here (Windows): the account is not guarded
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _resume_index(
    replay: _Replay, time_ns: int | None, options: SimOptions
) -> tuple[int, int | None]:
    # The first tick after the account's time, and the time resumed from (None: from the start).
    if time_ns is None:
        return 0, None
    start = None if options.start is None else ns_from_utc(as_utc(options.start))
    end = None if options.end is None else ns_from_utc(as_utc(options.end))
    if (start is not None and time_ns < start) or (end is not None and time_ns >= end):
        logger.warning(
            "the account's time %s is outside the replay's [--from, --to): replaying from the "
            "start, so its prices go back in time",
            utc_from_ns(time_ns),
        )
        return 0, None
    return int(np.searchsorted(replay.ts, time_ns, side="right")), time_ns


# -- load ------------------------------------------------------------------------------------


def _load_replay(settings: Settings, options: SimOptions) -> _Replay:
    names: list[str] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    instruments: dict[str, Instrument] = {}
    spread_points: dict[str, int] = {}
    for k, symbol in enumerate(options.symbols):
        data = load_series(settings, symbol, options.timeframe, None, options.start, options.end)
        inst = data.instrument
        name = symbol.upper()
        if name in instruments:
            raise UsageError(f"--symbols names {name} twice: give each symbol once")
        spread = tick_spread(options.spread, inst)
        batch = frame_batch(
            data.bars, options.timeframe, series_clock(data.info, settings.registry)
        )
        ticks = bar_ticks(batch, spread=spread, side=data.key.side, digits=inst.digits)
        names.append(name)
        instruments[name] = inst
        if spread is None:
            column = data.bars["spread"].drop_nulls()
            spread = float(column.median() or 0.0) if column.len() else 0.0  # type: ignore[arg-type]
        spread_points[name] = round(spread * 10**inst.digits)
        first = np.ones(len(ticks), dtype=bool)
        first[1:] = ticks.bar[1:] != ticks.bar[:-1]
        volume = np.where(first, batch.volume[ticks.bar], 0.0)
        parts.append((ticks.ts, np.full(len(ticks), k), ticks.bid, ticks.ask, volume))
    ts = np.concatenate([p[0] for p in parts])
    order = np.argsort(ts, kind="stable")
    return _Replay(
        ts=ts[order],
        symbol=np.concatenate([p[1] for p in parts])[order],
        bid=np.concatenate([p[2] for p in parts])[order],
        ask=np.concatenate([p[3] for p in parts])[order],
        volume=np.nan_to_num(np.concatenate([p[4] for p in parts])[order]),
        symbols=tuple(names),
        instruments=instruments,
        spread_points=spread_points,
    )


# -- the server ------------------------------------------------------------------------------


class _Server:
    """Answers commands and publishes ticks: the EA's side, minus the sockets' loop."""

    def __init__(
        self,
        settings: Settings,
        replay: _Replay,
        terminal: SimTerminal,
        pub: _Publisher,
        clock: ReplayClock,
        *,
        resumed: int | None = None,
    ) -> None:
        self.settings = settings
        self.replay = replay
        self.terminal = terminal
        self.pub = pub
        self.clock = clock
        self.store = BarStore(settings.store_dir)
        self.quotes_published = 0
        #: The account's time the replay resumed after (UTC ns), None from the start.
        self.resumed = resumed

    def now(self) -> datetime:
        if not self.clock.started:
            if self.resumed is not None:
                return utc_from_ns(self.resumed)
            if len(self.replay.ts):
                return utc_from_ns(int(self.replay.ts[0]))
        return self.clock.now()

    def account_ns(self) -> int | None:
        """Return the simulated time an account keeps: the clock's once a tick set it."""
        return self.clock.now_ns() if self.clock.started else self.resumed

    def prime(self, first: int) -> None:
        """Give each symbol the last quote before tick ``first``, as already acted on."""
        r = self.replay
        for k, symbol in enumerate(r.symbols):
            seen = np.flatnonzero(r.symbol[:first] == k)
            if seen.size:
                j = int(seen[-1])
                quote = (float(r.bid[j]), float(r.ask[j]))
                self.terminal.set_quote(symbol, *quote)
                self.pub.last_quote[symbol] = quote

    # -- commands -------------------------------------------------------------------------

    def answer(self, text: str) -> str:
        try:
            command = parse_command(text)
        except ProtocolError as exc:
            dialect = Dialect.LEGACY if exc.request_id is None else Dialect.EXTENDED
            bad = error_reply(exc.verb or "", BAD_COMMAND)
            return format_reply(bad, dialect, request_id=exc.request_id)
        dialect = Dialect.LEGACY if command.request_id is None else Dialect.EXTENDED
        now = self.now()
        reply: Reply
        if isinstance(command, HelloCommand):
            reply = hello_reply(
                version=command.version, client_id=command.client_id, server_time=now
            )
        elif isinstance(command, HistCommand):
            reply = self._hist(command, now)
        elif isinstance(command, TrackPricesCommand):
            reply = self._track_prices(command.symbols, dialect)
        elif isinstance(command, TrackRatesCommand):
            reply = self._track_rates(command.rates, dialect)
        else:
            reply = self.terminal.handle(command, now)
        return format_reply(reply, dialect, request_id=command.request_id)

    def _hist(self, command: HistCommand, now: datetime) -> Reply:
        start, end = command.utc_range()
        end = min(end, now)
        registry = self.settings.registry
        try:
            info = find_series(
                self.store, registry, command.symbol, command.timeframe, prefer=SIDE_PREFERENCE
            )
        except UsageError:
            return hist_reply(command.symbol, command.timeframe, [])
        if end < start:
            return hist_reply(command.symbol, command.timeframe, [])
        frame = self.store.read(info.key, start, end + timedelta(microseconds=1), info=info)
        digits = registry.get(info.key.symbol).digits
        return hist_reply(command.symbol, command.timeframe, _mt4_bars(frame, digits))

    def _track_prices(self, symbols: tuple[str, ...], dialect: Dialect) -> Reply:
        known = tuple(s for s in dict.fromkeys(symbols) if s in self.replay.instruments)
        errors = [s for s in symbols if s not in self.replay.instruments]
        self.pub.prices, self.pub.prices_dialect = known, dialect
        for symbol in known:
            self.pub.seq.pop(symbol, None)
            self.pub.sent_quote.pop(symbol, None)
        return track_prices_reply(len(known), errors)

    def _track_rates(self, rates: tuple[tuple[str, Timeframe], ...], dialect: Dialect) -> Reply:
        kept: list[tuple[str, Timeframe]] = []
        errors: list[str] = []
        for symbol, timeframe in rates:
            if symbol in self.replay.instruments and timeframe.minutes <= _DAY_MINUTES:
                kept.append((symbol, timeframe))
            else:
                errors.append(symbol)
        self.pub.rates, self.pub.rates_dialect = tuple(dict.fromkeys(kept)), dialect
        for symbol, timeframe in kept:
            self.pub.seq.pop(f"{symbol}_{timeframe.value}", None)
            self.pub.bars.pop((symbol, timeframe), None)
            self.pub.volumes.pop((symbol, timeframe), None)
            self.pub.spans.pop((symbol, timeframe), None)
        return track_rates_reply(len(self.pub.rates), errors)

    # -- ticks ----------------------------------------------------------------------------

    def burst(self, i: int, n: int) -> int:
        """Publish the due ticks from ``i`` on, up to a burst's worth; return the next one."""
        ts, due_in = self.replay.ts, self.clock.due_in
        deadline = time.monotonic() + _BURST_SECONDS
        end = min(n, i + _BURST_TICKS)
        while i < end and due_in(int(ts[i])) <= 0:
            self.tick(i)
            i += 1
            if not i % 64 and time.monotonic() >= deadline:
                break
        return i

    def tick(self, i: int) -> None:
        r = self.replay
        ns = int(r.ts[i])
        self.clock.set_ns(ns)
        symbol = r.symbols[int(r.symbol[i])]
        bid, ask = float(r.bid[i]), float(r.ask[i])
        now = utc_from_ns(ns)
        self.terminal.on_quote(symbol, bid, ask, now)
        self.pub.last_quote[symbol] = (bid, ask)
        if symbol in self.pub.prices and self.pub.sent_quote.get(symbol) != (bid, ask):
            self._publish_quote(symbol, bid, ask)
        for tracked, timeframe in self.pub.rates:
            if tracked == symbol:
                self._rate(symbol, timeframe, bid, now, float(r.volume[i]))

    def republish(self) -> None:
        for symbol in self.pub.prices:
            if symbol in self.pub.last_quote:
                self._publish_quote(symbol, *self.pub.last_quote[symbol])

    def _publish_quote(self, symbol: str, bid: float, ask: float) -> None:
        digits = self.replay.instruments[symbol].digits
        seq = self.pub.next_seq(symbol, self.pub.prices_dialect)
        self.pub.send(format_tick(symbol, bid, ask, digits, seq=seq), tick=True)
        self.pub.sent_quote[symbol] = (bid, ask)
        self.quotes_published += 1

    def _grow(
        self,
        key: tuple[str, Timeframe],
        current: tuple[int, list[float], int],
        bid: float,
        volume: float,
    ) -> None:
        """Add a tick (its bid, and the stored volume it carries) to the bar being built."""
        self.pub.volumes[key] = self.pub.volumes.get(key, 0.0) + volume
        ohlc = current[1]
        ohlc[1], ohlc[2], ohlc[3] = max(ohlc[1], bid), min(ohlc[2], bid), bid
        self.pub.bars[key] = (current[0], ohlc, current[2] + 1)

    def _rate(
        self, symbol: str, timeframe: Timeframe, bid: float, now: datetime, volume: float = 0.0
    ) -> None:
        # Bars are cut on the broker clock (MT4 datetimes), so a D1 bar opens at its midnight.
        key = (symbol, timeframe)
        current = self.pub.bars.get(key)
        ns = ns_from_utc(now)
        span = self.pub.spans.get(key)
        if current is not None and span is not None and span[0] <= ns < span[1]:
            self._grow(key, current, bid, volume)  # no clock conversion needed
            return
        width = timeframe.minutes * 60
        bucket = mt4_datetime(now) // width * width
        if current is not None and current[0] == bucket:
            self._grow(key, current, bid, volume)
            return
        digits = self.replay.instruments[symbol].digits
        dialect = self.pub.rates_dialect
        spread = self.replay.spread_points[symbol]
        opened_at = now - timedelta(seconds=mt4_datetime(now) - bucket)
        if current is not None and dialect is Dialect.EXTENDED:
            o, h, lo, c = current[1]
            closed_at = opened_at - timedelta(seconds=bucket - current[0])
            # The stored bars' volume where they have one, else the ticks counted.
            stored = round(self.pub.volumes.get(key, 0.0))
            bar = MT4Bar(
                time=closed_at, open=o, high=h, low=lo, close=c,
                tick_volume=stored if stored > 0 else current[2], spread=spread, closed=True,
            )  # fmt: skip
            seq = self.pub.next_seq(f"{symbol}_{timeframe.value}", dialect)
            self.pub.send(format_rate(symbol, timeframe, bar, digits, seq=seq), tick=False)
        self.pub.bars[key] = (bucket, [bid, bid, bid, bid], 1)
        self.pub.volumes[key] = volume
        # The bar ends at the next bucket's wall time: 23 or 25 hours later for a D1 bar
        # across a change of daylight saving.
        self.pub.spans[key] = (
            ns_from_utc(opened_at),
            ns_from_utc(from_mt4_datetime(bucket + width)),
        )
        bar = MT4Bar(
            time=opened_at, open=bid, high=bid, low=bid, close=bid, tick_volume=1, spread=spread
        )
        seq = self.pub.next_seq(f"{symbol}_{timeframe.value}", dialect)
        self.pub.send(format_rate(symbol, timeframe, bar, digits, seq=seq), tick=False)


def _mt4_bars(frame: pl.DataFrame, digits: int) -> list[MT4Bar]:
    point = 10.0**-digits
    has_spread = "spread" in frame.columns
    out = []
    for row in frame.iter_rows(named=True):
        spread = row.get("spread") if has_spread else None
        ts = row["ts"]
        if ts.tzinfo is None:
            ts = utc_from_ns(ns_from_utc(ts))
        out.append(
            MT4Bar(
                time=ts,
                open=round(row["open"], digits),
                high=round(row["high"], digits),
                low=round(row["low"], digits),
                close=round(row["close"], digits),
                tick_volume=round(row.get("volume") or 0),
                spread=0 if spread is None else round(spread / point),
            )
        )
    return out

"""The desk's side of the MT4 bridge: one connection to the expert advisor (or the simulator).

:class:`BridgeClient` connects three sockets to the EA's three (commands PUSH -> PULL, replies
PULL <- PUSH, market data SUB <- PUB), speaks the extended dialect when the EA answers
``HELLO`` and the legacy one otherwise, and keeps the link honest:

- **Correlation.** In the extended dialect every request carries an id and only the reply
  echoing it is taken; in the legacy one there is one request in flight, and a reply whose
  ``_action`` is not the one asked for (a late answer to a request given up on) is set aside.
  Replies taken for nobody are counted (``stray_replies``).
- **Timeouts and retries.** A request unanswered within ``timeout_seconds`` is sent again, up
  to ``retries`` times; then the client reconnects and tries once more before giving up with
  :class:`BridgeDownError`. Only reads are retried blindly: an order is looked up first
  (:meth:`BridgeClient.find_order`, by the client order id its comment starts with and the
  magic number, among the open trades and, in the extended dialect, the closed ones), and sent
  again only if the terminal never had it, so a lost reply never makes a second order.
- **Nothing stale goes out.** The command socket is connected with ``IMMEDIATE``: a command
  is queued only to a live connection, and one that cannot leave within the timeout is dropped
  (``LINGER`` 0), never delivered when the bridge comes back.
- **High-water marks.** Replies up to :data:`REPLY_HWM`, market data up to
  :data:`MARKET_HWM` messages (the legacy client's 1 drops quotes without a word); every gap is
  seen anyway from the sequence numbers.
- **Heartbeats.** ZeroMQ's own (a peer silent for 3 s is dropped) and ``HEARTBEAT;`` when the
  link has been quiet for ``heartbeat_seconds`` (:meth:`BridgeClient.keep_alive`).
- **Reconnect.** With a backoff from ``backoff_seconds`` doubling to ``backoff_max_seconds``;
  then ``HELLO`` again, the tracked prices and bars again, and every ``on_reconnect``
  callback (the broker reconciles its orders there).
- **Sequence gaps and stale prices.** Published messages of the extended dialect carry a
  number per topic: a jump is counted as lost messages (``gaps``), a number already passed as
  late (``late``, dropped; ``recovered`` when it fills a gap), a 1 as the publisher starting
  over (``restarts``). A tracked symbol whose quote has not changed for ``stale_seconds`` while
  its market is open is reported stale once per episode. Gaps and stale prices are told through
  ``on_event``.
- **Clock.** :meth:`BridgeClient.check_clock` reads the terminal's UTC on the ``[mt4] clock``
  setting and compares it with the terminal's server time (extended dialect), or the
  account's server time with this machine's clock (legacy).
- **CURVE** when ``curve_server_key`` is set: the link is encrypted and the EA admits only
  allow-listed public keys.

One thread uses a client (ZeroMQ sockets are not thread safe); the live loop's feed and broker
share one, since the EA deals its replies round robin among the clients connected to it.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Self

import zmq
from zmq.utils.monitor import recv_monitor_message

from core.clocks import Clock, parse_clock
from core.errors import SolodeskError, UsageError
from core.settings import MT4Settings
from core.timeframes import Timeframe
from core.times import MT4_SECONDS, utc_now
from core.types import Frozen
from execution.brokers.mt4.protocol import (
    ERROR,
    HEARTBEAT_RESPONSE,
    NOT_AVAILABLE,
    PROTOCOL_VERSION,
    Dialect,
    MT4Bar,
    ProtocolError,
    Rate,
    Reply,
    Tick,
    TradeAction,
    client_order_id_of,
    from_mt4_time_text,
    get_history_command,
    heartbeat_command,
    hello_command,
    hist_command,
    parse_market,
    parse_reply,
    rate_topic,
    track_prices_command,
    track_rates_command,
    trade_command,
)

logger = logging.getLogger(__name__)

#: Replies queued before the client reads them; market data messages queued for the SUB.
REPLY_HWM: Final = 1_000
MARKET_HWM: Final = 100_000
#: ZeroMQ heartbeats on every socket: a ping each second, a peer silent for 3 s is dropped.
ZMQ_HEARTBEAT_MS: Final = 1_000
ZMQ_HEARTBEAT_TIMEOUT_MS: Final = 3_000
#: The closed trades an order is looked for among (extended dialect's GET_HISTORY): all of
#: them, since a terminal's clock (a replay's) need not be this machine's.
LOOKUP_SPAN: Final = (datetime(1971, 1, 1, tzinfo=UTC), datetime(2099, 12, 31, tzinfo=UTC))
#: Missing sequence numbers remembered per topic (to tell a late message from a duplicate).
_MISSING_KEPT: Final = 10_000


class BridgeDownError(SolodeskError):
    """The bridge did not answer, after the retries and a reconnect."""


class ClockMismatchError(SolodeskError):
    """The terminal's server time disagrees with the ``[mt4] clock`` setting."""


class ClockCheck(Frozen):
    """The terminal's server time beside what the clock setting makes of the reference.

    ``reference`` is the terminal's own UTC (extended dialect) or this machine's (legacy);
    ``expected`` is the reference on the clock setting, ``server`` what the terminal said, both
    naive wall times; ``off_seconds`` their difference (server minus expected).
    """

    clock: str
    source: str
    server: datetime
    expected: datetime
    off_seconds: float
    tolerance_seconds: float

    @property
    def ok(self) -> bool:
        """Return whether the two agree within the tolerance."""
        return abs(self.off_seconds) <= self.tolerance_seconds


@dataclass
class BridgeCounters:
    """What the client has seen go wrong (and right) since it was made."""

    requests: int = 0
    replies: int = 0
    timeouts: int = 0
    retries: int = 0
    not_sent: int = 0
    stray_replies: int = 0
    reconnects: int = 0
    messages: int = 0
    bad_messages: int = 0
    gaps: int = 0
    late: int = 0
    recovered: int = 0
    restarts: int = 0
    stale: int = 0
    orders_found: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters by name."""
        return dict(self.__dict__)


@dataclass
class _Topic:
    last: int = 0
    missing: set[int] = field(default_factory=set)


EventSink = Callable[[str, str], None]


class BridgeClient:
    """A connection to an MT4 bridge (see the module's notes).

    Parameters
    ----------
    config
        The ``[mt4]`` settings: address, ports, clock, magic, timeouts, CURVE keys.
    on_event
        Told ``(kind, message)`` of what a trader should hear about: ``gap``, ``stale``,
        ``reconnect``, ``down``.
    market_hwm
        The SUB socket's receive high-water mark (messages).
    """

    def __init__(
        self,
        config: MT4Settings,
        *,
        on_event: EventSink | None = None,
        market_hwm: int = MARKET_HWM,
    ) -> None:
        self.config = config
        self.clock = parse_clock(config.clock)
        self.counters = BridgeCounters()
        self.dialect: Dialect | None = None
        self.hello: Reply | None = None
        self.on_event = on_event
        self.on_reconnect: list[Callable[[], None]] = []
        self.market_hwm = market_hwm
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._push: zmq.Socket[bytes] | None = None
        self._pull: zmq.Socket[bytes] | None = None
        self._sub: zmq.Socket[bytes] | None = None
        self._ids = itertools.count(1)
        self._tag = f"{config.client_id}-{os.getpid() % 100_000:x}{int(time.time()) % 4096:x}"
        self._prices: tuple[str, ...] = ()
        self._rates: tuple[tuple[str, Timeframe], ...] = ()
        self._topics: dict[str, _Topic] = {}
        self._quoted: dict[str, float] = {}
        self._stale: set[str] = set()
        self._last_reply = 0.0

    # -- connection ----------------------------------------------------------------------------

    def connect(self) -> Self:
        """Connect the sockets and agree on the dialect; return the client.

        Raises
        ------
        BridgeDownError
            If ``[mt4] dialect`` is ``extended`` and the bridge does not answer ``HELLO``.
        """
        self._open_sockets()
        self._handshake()
        return self

    @property
    def connected(self) -> bool:
        """Return whether the sockets are open."""
        return self._push is not None

    def _endpoint(self, port: int) -> str:
        host = self.config.host
        if ":" in host:
            host = f"[{host.strip('[]')}]"
        return f"tcp://{host}:{port}"

    def _socket(self, kind: int, port: int, *, watch: bool = False) -> zmq.Socket[bytes]:
        """Return a socket connected to ``port``; with ``watch``, once its handshake is done
        (or the timeout has passed: a bridge that is down is found out by the requests)."""
        assert self._context is not None
        sock: zmq.Socket[bytes] = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.HEARTBEAT_IVL, ZMQ_HEARTBEAT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMQ_HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2_000)
        if ":" in self.config.host:
            sock.setsockopt(zmq.IPV6, 1)
        c = self.config
        if c.curve_server_key:
            if not c.curve_public_key or c.curve_secret_key is None:
                msg = (
                    "[mt4] curve_server_key is set without this desk's curve_public_key and "
                    "curve_secret_key: give both (docs/mt4.md says how to make a pair)"
                )
                raise UsageError(msg)
            sock.setsockopt(zmq.CURVE_SERVERKEY, c.curve_server_key.encode("ascii"))
            sock.setsockopt(zmq.CURVE_PUBLICKEY, c.curve_public_key.encode("ascii"))
            secret = c.curve_secret_key.get_secret_value().encode("ascii")
            sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        if kind == zmq.PUSH:
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.SNDHWM, 100)
        elif kind == zmq.PULL:
            sock.setsockopt(zmq.RCVHWM, REPLY_HWM)
        else:
            sock.setsockopt(zmq.RCVHWM, self.market_hwm)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED) if watch else None
        sock.connect(self._endpoint(port))
        if monitor is not None:
            if monitor.poll(int(self.config.timeout_seconds * 1000)):
                recv_monitor_message(monitor)
            sock.disable_monitor()
            monitor.close(0)
        return sock

    def _open_sockets(self) -> None:
        self._context = zmq.Context()
        commands, replies, market = self.config.ports
        # The reply link must be up before the first command leaves: a reply the EA cannot
        # queue to any client is dropped.
        self._pull = self._socket(zmq.PULL, replies, watch=True)
        self._push = self._socket(zmq.PUSH, commands)
        # So is the market link before a TRACK goes out: a publisher sends nothing to a
        # subscriber whose subscription has not reached it, and the first quotes would be lost.
        self._sub = self._socket(zmq.SUB, market, watch=True)

    def _close_sockets(self) -> None:
        for sock in (self._push, self._pull, self._sub):
            if sock is not None:
                sock.close(0)
        self._push = self._pull = self._sub = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def close(self) -> None:
        """Close the sockets (nothing queued is sent)."""
        self._close_sockets()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handshake(self) -> None:
        wanted = self.config.dialect
        if wanted == "legacy":
            self.dialect = Dialect.LEGACY
            return
        self.dialect = Dialect.EXTENDED
        # A bridge known to speak the extended dialect is asked again after a lost reply, as
        # any request is; "auto" asks once, so a legacy EA (silent to HELLO) is found quickly.
        attempts = self.config.retries + 1 if wanted == "extended" else 1
        reply = None
        for attempt in range(attempts):
            if attempt:
                self.counters.retries += 1
            reply = self._exchange(
                lambda rid: hello_command(
                    self.config.client_id, request_id=rid or "", version=PROTOCOL_VERSION
                ),
                ("HELLO",),
            )
            if reply is not None:
                break
        if reply is not None and reply.get("_response") == "OK":
            self.hello = reply
            return
        if wanted == "extended":
            self.dialect = None
            raise BridgeDownError(self._down_message("HELLO"))
        self.dialect = Dialect.LEGACY
        self.hello = None
        logger.info("no answer to HELLO from %s: speaking the legacy dialect", self._where())

    def _where(self) -> str:
        return f"{self.config.host}:{self.config.ports[0]}"

    def _down_message(self, what: str) -> str:
        return (
            f"the MT4 bridge at {self._where()} did not answer {what} within "
            f"{self.config.timeout_seconds:g} s: is the expert advisor (or `solodesk mt4 sim`) "
            "running, on these [mt4] ports, with DLL imports allowed?"
        )

    def reconnect(self, give_up_seconds: float = 300.0) -> None:
        """Close the sockets and connect again until the bridge answers, with a backoff; then
        track the same prices and bars and call every ``on_reconnect`` callback.

        Raises
        ------
        BridgeDownError
            If the bridge has not answered within ``give_up_seconds``.
        """
        deadline = time.monotonic() + give_up_seconds
        wait = self.config.backoff_seconds
        while True:
            self._close_sockets()
            self._open_sockets()
            try:
                self._handshake()
                if self._answers():
                    break
            except BridgeDownError:
                pass
            if time.monotonic() + wait > deadline:
                self._tell("down", self._down_message("after a reconnect"))
                raise BridgeDownError(
                    self._down_message(f"for {give_up_seconds:g} s of reconnecting")
                )
            time.sleep(wait)
            wait = min(wait * 2, self.config.backoff_max_seconds)
        self.counters.reconnects += 1
        self._topics.clear()
        self.retrack()
        self._tell("reconnect", f"reconnected to the MT4 bridge at {self._where()}")
        for callback in list(self.on_reconnect):
            callback()

    def _answers(self) -> bool:
        if self.dialect is Dialect.EXTENDED and self.hello is not None:
            return True
        reply = self._exchange(lambda rid: heartbeat_command(request_id=rid), ("heartbeat",))
        return reply is not None

    def _tell(self, kind: str, message: str) -> None:
        logger.warning("%s", message)
        if self.on_event is not None:
            self.on_event(kind, message)

    # -- requests ------------------------------------------------------------------------------

    def _next_id(self) -> str:
        return f"{self._tag}-{next(self._ids)}"

    def _send(self, text: str, timeout: float) -> bool:
        """Send one command if the link takes it within ``timeout``; False if it did not leave."""
        sock = self._push
        if sock is None:
            return False
        if not sock.poll(max(1, int(timeout * 1000)), zmq.POLLOUT):
            self.counters.not_sent += 1
            return False
        try:
            sock.send_string(text, zmq.NOBLOCK)
        except zmq.Again:
            self.counters.not_sent += 1
            return False
        self.counters.requests += 1
        return True

    def _await(self, rid: str | None, actions: Iterable[str], timeout: float) -> Reply | None:
        """Return the reply to request ``rid`` (legacy: the next reply of one of ``actions``)
        arriving within ``timeout`` seconds; None if none did."""
        sock = self._pull
        if sock is None:
            return None
        wanted = tuple(actions)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                return None
            text = sock.recv_string(zmq.NOBLOCK)
            extended = text.startswith('{"')
            try:
                reply = parse_reply(text, Dialect.EXTENDED if extended else Dialect.LEGACY)
            except ProtocolError as exc:
                self.counters.stray_replies += 1
                logger.warning("unreadable reply from the MT4 bridge: %s", exc)
                continue
            if rid is not None:
                if reply.get("_request_id") != rid:
                    self.counters.stray_replies += 1
                    continue
            elif extended or reply.get("_action") not in wanted:
                self.counters.stray_replies += 1
                continue
            self.counters.replies += 1
            self._last_reply = time.monotonic()
            return reply

    def _exchange(self, build: Callable[[str | None], str], actions: Iterable[str]) -> Reply | None:
        """Send once and wait once: the reply, or None if it did not leave or was not answered."""
        rid = self._next_id() if self.dialect is Dialect.EXTENDED else None
        timeout = self.config.timeout_seconds
        if not self._send(build(rid), timeout):
            return None
        reply = self._await(rid, actions, timeout)
        if reply is None:
            self.counters.timeouts += 1
        return reply

    def request(self, build: Callable[[str | None], str], actions: Iterable[str]) -> Reply:
        """Send a command that is safe to repeat (a read, a heartbeat, a TRACK) and return its
        reply, retrying and reconnecting as the module's notes say.

        ``build`` makes the command's text from a request id (None in the legacy dialect);
        ``actions`` are the ``_action`` values its reply may carry.

        Raises
        ------
        BridgeDownError
            If no answer came after the retries and a reconnect.
        """
        if self._push is None:
            self.connect()
        wanted = tuple(actions)
        for round_ in range(2):
            for attempt in range(self.config.retries + 1):
                if attempt:
                    self.counters.retries += 1
                reply = self._exchange(build, wanted)
                if reply is not None:
                    return reply
            if round_ == 0:
                self.reconnect()
        raise BridgeDownError(self._down_message(wanted[0]))

    def send_order(
        self, build: Callable[[str | None], str], actions: Iterable[str], client_order_id: str
    ) -> Reply:
        """Send an order (TRADE;OPEN) so that it reaches the terminal at most once.

        Before each retry, and after a reconnect, the order is looked up
        (:meth:`find_order`); found, its entry is returned as the terminal holds it (an
        ``OPEN_TRADES`` or ``HISTORY`` entry, with ``_ticket`` added) instead of sending it again.

        Raises
        ------
        BridgeDownError
            If no answer came after the retries and a reconnect.
        """
        if self._push is None:
            self.connect()
        wanted = tuple(actions)
        asked = False
        for round_ in range(2):
            for attempt in range(self.config.retries + 1):
                if asked:
                    found = self.find_order(client_order_id)
                    if found is not None:
                        self.counters.orders_found += 1
                        return found
                if attempt:
                    self.counters.retries += 1
                rid = self._next_id() if self.dialect is Dialect.EXTENDED else None
                timeout = self.config.timeout_seconds
                if not self._send(build(rid), timeout):
                    continue
                asked = True
                reply = self._await(rid, wanted, timeout)
                if reply is not None:
                    return reply
                self.counters.timeouts += 1
            if round_ == 0:
                self.reconnect()
        raise BridgeDownError(self._down_message(f"order {client_order_id}"))

    # -- reads ---------------------------------------------------------------------------------

    def _trade(self, action: TradeAction, **fields: object) -> Callable[[str | None], str]:
        magic = self.config.magic

        def build(rid: str | None) -> str:
            return trade_command(action, magic=magic, request_id=rid, **fields)  # type: ignore[arg-type]

        return build

    def heartbeat(self) -> Reply:
        """Send ``HEARTBEAT;`` and return the answer."""
        reply = self.request(lambda rid: heartbeat_command(request_id=rid), ("heartbeat",))
        if reply.get("_response") != HEARTBEAT_RESPONSE:
            raise BridgeDownError(f"unexpected heartbeat answer {reply!r:.120}")
        return reply

    def keep_alive(self) -> None:
        """Send a heartbeat if nothing was answered for ``heartbeat_seconds``."""
        if time.monotonic() - self._last_reply >= self.config.heartbeat_seconds:
            self.heartbeat()

    def open_trades(self) -> dict[int, Reply]:
        """Return the terminal's open trades and pending orders, ticket -> entry."""
        reply = self.request(self._trade(TradeAction.GET_OPEN_TRADES), ("OPEN_TRADES",))
        _refused(reply, "GET_OPEN_TRADES")
        trades = reply.get("_trades") or {}
        return {int(t): dict(e) for t, e in trades.items()}

    def account(self) -> Reply:
        """Return the account's ``_data`` entry, with ``account_number`` added."""
        reply = self.request(
            self._trade(TradeAction.GET_ACCOUNT_INFO), ("GET_ACCOUNT_INFORMATION",)
        )
        _refused(reply, "GET_ACCOUNT_INFO")
        data = reply.get("_data") or [{}]
        return {"account_number": reply.get("account_number"), **dict(data[0])}

    def history(
        self, start: datetime, end: datetime, *, magic: int | None = None
    ) -> dict[int, Reply]:
        """Return the trades closed from ``start`` to ``end`` (UTC), ticket -> entry; empty in
        the legacy dialect, which has no trade history."""
        if self.dialect is not Dialect.EXTENDED:
            return {}
        clock = self.clock

        def build(rid: str | None) -> str:
            assert rid is not None
            return get_history_command(start, end, clock, magic=magic, request_id=rid)

        reply = self.request(build, ("HISTORY",))
        if reply.get("_response") == NOT_AVAILABLE:
            return {}
        _refused(reply, "GET_HISTORY")
        return {int(t): dict(e) for t, e in (reply.get("_trades") or {}).items()}

    def find_order(self, client_order_id: str) -> Reply | None:
        """Return the terminal's entry of the order whose comment starts with
        ``client_order_id`` and whose magic number is ours (open, pending or, in the extended
        dialect, closed), with ``_ticket`` and ``_closed``
        (0 or 1) added; None if the terminal never had it."""
        magic = self.config.magic
        for ticket, entry in self.open_trades().items():
            if entry.get("_magic") == magic and _order_of(entry) == client_order_id:
                return {**entry, "_ticket": ticket, "_closed": 0}
        if self.dialect is Dialect.EXTENDED:
            closed = self.history(*LOOKUP_SPAN, magic=magic)
            for ticket, entry in closed.items():
                if entry.get("_magic") == magic and _order_of(entry) == client_order_id:
                    return {**entry, "_ticket": ticket, "_closed": 1}
        return None

    def hist(
        self, symbol: str, timeframe: Timeframe, start: datetime, end: datetime
    ) -> list[MT4Bar]:
        """Return the terminal's bars of ``symbol`` opening from ``start`` to ``end`` (UTC,
        both inclusive), times read on the clock setting.

        Raises
        ------
        SolodeskError
            If the terminal refuses (an unknown symbol, a range it does not hold is simply
            no bars).
        """
        clock = self.clock

        def build(rid: str | None) -> str:
            return hist_command(symbol, timeframe, start, end, clock, request_id=rid)

        reply = self.request(build, ("HIST",))
        if reply.get("_response") == NOT_AVAILABLE:
            return []
        _refused(reply, "HIST")
        return [_bar(row, clock) for row in reply.get("_data") or []]

    # -- market data ---------------------------------------------------------------------------

    def track(
        self,
        prices: Iterable[str] = (),
        rates: Iterable[tuple[str, Timeframe]] = (),
    ) -> None:
        """Ask the terminal to publish these symbols' quotes and these bars (replacing what it
        published before); kept and asked again after a reconnect.

        Raises
        ------
        UsageError
            If the terminal does not know a symbol.
        """
        self._prices = tuple(dict.fromkeys(prices))
        self._rates = tuple(dict.fromkeys(rates))
        self.retrack()

    def retrack(self) -> None:
        """Ask the terminal again for the prices and bars tracked (a terminal that restarted
        forgets them, though its sockets come back by themselves)."""
        prices, rates = self._prices, self._rates
        if prices:
            reply = self.request(
                lambda rid: track_prices_command(prices, request_id=rid), ("TRACK_PRICES",)
            )
            _unknown(reply, "prices")
        if rates:
            reply = self.request(
                lambda rid: track_rates_command(rates, request_id=rid), ("TRACK_RATES",)
            )
            _unknown(reply, "bars")
        now = time.monotonic()
        for symbol in prices:
            self._quoted.setdefault(symbol, now)

    def poll_market(self, timeout: float, limit: int = 10_000) -> list[Tick | Rate]:
        """Return the quotes and bars published since the last call (waiting up to ``timeout``
        seconds for the first), at most ``limit``; late and duplicate messages left out."""
        sock = self._sub
        if sock is None:
            return []
        out: list[Tick | Rate] = []
        if not sock.poll(max(0, int(timeout * 1000)), zmq.POLLIN):
            return out
        while len(out) < limit:
            try:
                text = sock.recv_string(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.counters.messages += 1
            try:
                message = parse_market(text, self.clock)
            except ProtocolError as exc:
                self.counters.bad_messages += 1
                logger.warning("unreadable market data from the MT4 bridge: %s", exc)
                continue
            if self._in_order(message):
                if isinstance(message, Tick):
                    self._quoted[message.symbol] = time.monotonic()
                    self._stale.discard(message.symbol)
                out.append(message)
        return out

    def _in_order(self, message: Tick | Rate) -> bool:
        if message.seq is None:
            return True
        name = (
            message.symbol
            if isinstance(message, Tick)
            else rate_topic(message.symbol, message.timeframe)
        )
        topic = self._topics.setdefault(name, _Topic())
        seq = message.seq
        if seq == topic.last + 1:
            topic.last = seq
            return True
        if seq == 1:
            self.counters.restarts += 1
            topic.last, topic.missing = 1, set()
            return True
        if seq > topic.last:
            lost = seq - topic.last - 1
            self.counters.gaps += lost
            if len(topic.missing) < _MISSING_KEPT:
                topic.missing.update(
                    range(topic.last + 1, min(seq, topic.last + 1 + _MISSING_KEPT))
                )
            self._tell_gap(name, topic.last, seq, lost)
            topic.last = seq
            return True
        self.counters.late += 1
        if seq in topic.missing:
            topic.missing.discard(seq)
            self.counters.recovered += 1
        return False

    def _tell_gap(self, topic: str, last: int, seq: int, lost: int) -> None:
        message = f"{topic}: {lost} message(s) lost between #{last} and #{seq}"
        logger.warning("%s", message)
        if self.on_event is not None:
            self.on_event("gap", message)

    def stale_symbols(self, is_open: Callable[[str], bool] | None = None) -> tuple[str, ...]:
        """Return the tracked symbols whose quote is older than ``stale_seconds`` (those whose
        market ``is_open`` says is closed are left out); each new one is counted and told."""
        now = time.monotonic()
        limit = self.config.stale_seconds
        out = []
        for symbol in self._prices:
            age = now - self._quoted.get(symbol, now)
            if age < limit or (is_open is not None and not is_open(symbol)):
                continue
            out.append(symbol)
            if symbol not in self._stale:
                self._stale.add(symbol)
                self.counters.stale += 1
                self._tell("stale", f"{symbol}: no new price for {age:.0f} s")
        return tuple(out)

    # -- the clock -----------------------------------------------------------------------------

    def hello_again(self) -> Reply:
        """Say ``HELLO`` again (extended dialect) and return the answer: the terminal's
        server time and UTC as they are now."""
        client_id = self.config.client_id
        return self.request(lambda rid: hello_command(client_id, request_id=rid or ""), ("HELLO",))

    def check_clock(self) -> ClockCheck:
        """Compare the terminal's server time with the clock setting (see the module's notes)."""
        if self.dialect is None:
            self.connect()
        tolerance = self.config.clock_tolerance_seconds
        if self.hello is not None and "_gmt_time" in self.hello:
            fresh = self.hello_again()
            server = _wall(fresh["_server_time"])
            reference = from_mt4_time_text(fresh["_gmt_time"], "utc")
            source = "the terminal's UTC"
        else:
            account = self.account()
            server = _wall(str(account.get("currenttime", "")))
            reference = utc_now().replace(second=0, microsecond=0)
            source = "this machine's clock"
            tolerance = max(tolerance, 60.0)
        expected = self.clock.local_at(reference)
        off = (server - expected).total_seconds()
        return ClockCheck(
            clock=self.config.clock, source=source, server=server, expected=expected,
            off_seconds=off, tolerance_seconds=tolerance,
        )  # fmt: skip

    def require_clock(self) -> ClockCheck:
        """Return :meth:`check_clock`'s result if the clocks agree.

        Raises
        ------
        ClockMismatchError
            If they do not, saying by how much and which setting to change.
        """
        check = self.check_clock()
        if not check.ok:
            hours = check.off_seconds / 3600
            msg = (
                f"the terminal's server time {check.server.strftime(MT4_SECONDS)} is "
                f"{hours:+.2f} h from {check.expected.strftime(MT4_SECONDS)}, {check.source} on the clock "
                f"{check.clock!r}: set [mt4] clock to the broker's server clock (an offset "
                "such as UTC+2, or broker:ny-close); refusing to trade"
            )
            raise ClockMismatchError(msg)
        return check


def _bar(row: Mapping[str, object], clock: Clock) -> MT4Bar:
    values = {k: row[k] for k in ("open", "high", "low", "close")}
    counts = {k: row.get(k, 0) for k in ("tick_volume", "spread", "real_volume")}
    time_ = from_mt4_time_text(str(row["time"]), clock)
    return MT4Bar.model_validate({"time": time_, **values, **counts})


def _wall(text: str) -> datetime:
    try:
        return from_mt4_time_text(text, "utc").replace(tzinfo=None)
    except ProtocolError as exc:
        raise BridgeDownError(f"the terminal's time {text!r} is unreadable: {exc}") from None


def _order_of(entry: Mapping[str, object]) -> str | None:
    comment = entry.get("_comment")
    return client_order_id_of(comment) if isinstance(comment, str) else None


def _refused(reply: Reply, what: str) -> None:
    if reply.get("_response_value") == ERROR:
        raise SolodeskError(f"the terminal refused {what}: {reply.get('_response')}")


def _unknown(reply: Reply, what: str) -> None:
    errors = (reply.get("_data") or {}).get("error_symbols") or []
    if errors:
        msg = (
            f"the terminal does not publish {what} of {', '.join(map(str, errors))}: check the "
            "symbol's name at the broker (a suffix such as EURUSD.ecn goes in the instrument's "
            "aliases)"
        )
        raise UsageError(msg)


def is_error(reply: Mapping[str, object]) -> bool:
    """Return whether a reply says the command failed."""
    return reply.get("_response_value") == ERROR


def price_points(distance: float, digits: int) -> float:
    """Return a price distance in points (the protocol's SL and TP), rounded to a whole point."""
    if not math.isfinite(distance) or distance <= 0:
        return 0.0
    return float(round(distance * 10**digits))

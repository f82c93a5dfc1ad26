"""The server side of the MT4 bridge's three ZeroMQ sockets, as the expert advisor binds them.

The EA (and the simulator standing in for it) binds three sockets; clients connect to them:

================  =========  ===================================================
default port      type       carries
================  =========  ===================================================
32768             PULL       commands, one text frame each (``HEARTBEAT;``)
32769             PUSH       replies, one text frame each
32770             PUB        market data (``EURUSD:|:1.10012;1.10020``)
================  =========  ===================================================

Socket options, chosen rather than left to chance:

- **Linger** :data:`LINGER_MS` (200 ms): on close, queued replies and quotes get that long to
  leave, then are discarded. Never -1 (libzmq's old default: a process with an unreachable
  peer would hang on exit forever) and not 0 (the last reply before a clean stop would be lost
  whenever the client is merely slow).
- **High-water marks.** The legacy DWX client sets every HWM to 1, and a PUB socket at its HWM
  drops messages without a word: one quote queued per subscriber, every further one lost until
  it is read. Here the queues are sized for a burst and a drop is never silent:

  - commands (PULL ``RCVHWM`` :data:`COMMAND_HWM`): PUSH/PULL never drops at the mark, it
    holds the sender back, so this only bounds memory; commands are small and few.
  - replies (PUSH ``SNDHWM`` :data:`REPLY_HWM`): a reply that cannot be queued (no client
    connected, or one that stopped reading) is not waited for: :meth:`BridgeSockets.reply`
    returns False and counts it, and the client's timeout and retry take over, exactly as for
    a lost reply. The simulator's loop never blocks on a client.
  - market data (``SNDHWM`` :data:`MARKET_HWM`, 100,000 messages a subscriber, about ten
    seconds of a 10k ticks/s burst and a few MB of memory): the socket is an XPUB in the
    PUB's role (a SUB client cannot tell them apart) with ``XPUB_NODROP``, so a quote that
    finds a subscriber's queue full is refused instead of silently dropped:
    :meth:`BridgeSockets.publish` returns False and counts it. Clients should set a generous
    ``RCVHWM`` on their SUB too; the extended dialect's sequence numbers make any gap visible.
- **Immediate.** ``IMMEDIATE`` governs only outgoing connections: messages are queued to a
  peer only once its connection is complete. The server binds, so on its sockets it changes
  nothing; what matters is a client's command PUSH, which must set it so a command sent while
  the bridge is down fails at once instead of waiting in a queue and reaching the terminal,
  unasked for, whenever the bridge comes back (a stale ``TRADE;OPEN`` is a duplicate order).
- **Heartbeats** (ZMTP ``PING`` every :data:`HEARTBEAT_IVL_MS`, a peer silent for
  :data:`HEARTBEAT_TIMEOUT_MS` is dropped): a client that vanished without closing its TCP
  connection (a network cut, a laptop asleep) would otherwise keep a pipe on the PUSH socket,
  which deals replies round robin, and half of them would go nowhere.
- **Largest command** :data:`MAX_COMMAND_BYTES`: a peer sending more is disconnected.

CURVE (:class:`CurveConfig`): every socket is a CURVE server with the server's secret key, and
a ZAP handler (:class:`zmq.auth.thread.ThreadAuthenticator`) admits only clients whose public
key is on the allow-list; any other client never completes its handshake, so nothing it sends
reaches :meth:`BridgeSockets.poll` and it receives nothing. Each :class:`BridgeSockets` has its
own context, so its handler judges its own sockets only.

One thread owns a :class:`BridgeSockets` (ZeroMQ sockets are not thread safe).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, NamedTuple, Self

import zmq
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from zmq.utils import z85

from core.errors import SolodeskError, UsageError

if TYPE_CHECKING:
    from types import TracebackType

    from zmq.auth.thread import ThreadAuthenticator

logger = logging.getLogger(__name__)

#: Commands (PULL), replies (PUSH), market data (PUB): the EA's defaults.
DEFAULT_PORTS: Final = (32768, 32769, 32770)
#: What each port carries, in the order of ``ports``.
ROLES: Final = ("commands", "replies", "market data")

LINGER_MS: Final = 200
COMMAND_HWM: Final = 1_000
REPLY_HWM: Final = 1_000
MARKET_HWM: Final = 100_000
HEARTBEAT_IVL_MS: Final = 1_000
HEARTBEAT_TIMEOUT_MS: Final = 3_000
MAX_COMMAND_BYTES: Final = 1 << 20
#: The ZAP domain the sockets are authenticated in.
ZAP_DOMAIN: Final = "solodesk"

_KEY_LENGTH: Final = 40  # a 32-byte Curve25519 key in Z85 text


# -- CURVE -----------------------------------------------------------------------------------


class CurveKeyPair(NamedTuple):
    """A CURVE key pair, each key as 40 characters of Z85 text."""

    public: str
    secret: str


def curve_key_pair() -> CurveKeyPair:
    """Return a new CURVE key pair (:func:`zmq.curve_keypair`)."""
    public, secret = zmq.curve_keypair()
    return CurveKeyPair(public.decode("ascii"), secret.decode("ascii"))


def _z85_key(value: str, what: str) -> str:
    text = value.strip()
    try:
        ok = len(text) == _KEY_LENGTH and len(z85.decode(text.encode("ascii"))) == 32
    except (ValueError, UnicodeEncodeError, KeyError):
        ok = False
    if not ok:
        msg = f"{what}: not a CURVE key (40 characters of Z85 text, as curve_key_pair makes)"
        raise ValueError(msg)
    return text


class CurveConfig(BaseModel):
    """CURVE encryption and client authentication for the bridge's sockets.

    ``server_secret`` is the server's secret key (give clients its public key,
    :attr:`server_public`); ``allowed_client_public_keys`` the public keys of the clients
    admitted; any other key is refused. Keys are Z85 text (:func:`curve_key_pair`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_secret: SecretStr
    allowed_client_public_keys: tuple[str, ...] = Field(min_length=1)

    @field_validator("server_secret")
    @classmethod
    def _secret_key(cls, value: SecretStr) -> SecretStr:
        return SecretStr(_z85_key(value.get_secret_value(), "server_secret"))

    @field_validator("allowed_client_public_keys")
    @classmethod
    def _public_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_z85_key(key, f"allowed client key {i}") for i, key in enumerate(value))

    @property
    def server_public(self) -> str:
        """Return the server's public key, which clients set as their ``CURVE_SERVERKEY``."""
        secret = self.server_secret.get_secret_value().encode("ascii")
        return zmq.curve_public(secret).decode("ascii")


class _AllowList:
    """The ZAP handler's verdict on a client's public key."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = frozenset(key.encode("ascii") for key in keys)
        self.refused: set[bytes] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed and key not in self.refused:
            # Once a key: a refused client reconnects (and is refused) every few hundred ms.
            self.refused.add(key)
            text = key.decode("ascii", errors="replace")
            logger.warning("refused a CURVE client whose key %s... is not allowed", text[:8])
        return allowed


# -- the sockets -----------------------------------------------------------------------------


def ready_line(ports: Sequence[int]) -> str:
    """Return the line a server prints on stdout once its sockets are bound.

    ``{"ready": true, "ports": [32768, 32769, 32770]}``: one JSON line that a parent process
    or a test waits for before connecting.
    """
    return json.dumps({"ready": True, "ports": [int(port) for port in ports]})


class BridgeSockets:
    """The three sockets an MT4 bridge server binds: commands in, replies out, market data out.

    Parameters
    ----------
    host
        The address to bind (``127.0.0.1`` by default, ``*`` for every interface, an IPv6
        address). Anything but loopback without ``curve`` is logged as a warning: commands
        would travel the network in the clear from anyone.
    ports
        Commands (PULL), replies (PUSH) and market data (PUB); 0 takes a free port (read the
        ports bound from :attr:`ports`).
    curve
        CURVE keys and the clients allowed (:class:`CurveConfig`); None for plain TCP.

    Raises
    ------
    UsageError
        If ``ports`` is not three ports in 0..65535, two of them the same.
    SolodeskError
        If a socket cannot be bound (a port in use), naming the port and what it carries.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        ports: Sequence[int] = DEFAULT_PORTS,
        curve: CurveConfig | None = None,
    ) -> None:
        wanted = _checked_ports(ports)
        self.host = host
        self.curve = curve
        #: Replies and quotes that could not be queued, and commands received.
        self.replies_dropped = 0
        self.publishes_dropped = 0
        self.commands_received = 0
        self._context = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._sockets: list[zmq.Socket[bytes]] = []
        self._closed = False
        try:
            if curve is not None:
                from zmq.auth.thread import ThreadAuthenticator

                self._auth = ThreadAuthenticator(self._context, log=logger)
                self._auth.start()
                self._auth.configure_curve_callback(
                    ZAP_DOMAIN, credentials_provider=_AllowList(curve.allowed_client_public_keys)
                )
            elif not _is_loopback(host):
                logger.warning(
                    "binding the MT4 bridge on %s without CURVE: anyone who reaches it can send "
                    "commands; give CURVE keys when clients connect from another host",
                    host,
                )
            self._commands = self._bind(zmq.PULL, wanted[0], ROLES[0])
            self._replies = self._bind(zmq.PUSH, wanted[1], ROLES[1])
            self._market = self._bind(zmq.XPUB, wanted[2], ROLES[2])
        except BaseException:
            self.close()
            raise
        self._poller = zmq.Poller()
        self._poller.register(self._commands, zmq.POLLIN)
        self._poller.register(self._market, zmq.POLLIN)

    # -- binding ------------------------------------------------------------------------------

    def _bind(self, kind: int, port: int, role: str) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self._context.socket(kind)
        self._sockets.append(sock)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        if kind == zmq.PULL:
            sock.setsockopt(zmq.RCVHWM, COMMAND_HWM)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_COMMAND_BYTES)
        elif kind == zmq.PUSH:
            sock.setsockopt(zmq.SNDHWM, REPLY_HWM)
        else:
            sock.setsockopt(zmq.SNDHWM, MARKET_HWM)
            sock.setsockopt(zmq.XPUB_NODROP, 1)
        if self.curve is not None:
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode("ascii"))
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            secret = self.curve.server_secret.get_secret_value().encode("ascii")
            sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        host = self.host
        if ":" in host:  # an IPv6 address
            sock.setsockopt(zmq.IPV6, 1)
            host = f"[{host.strip('[]')}]"
        endpoint = f"tcp://{host}:{port or '*'}"
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise SolodeskError(_bind_problem(self.host, port, role, exc)) from None
        return sock

    @property
    def ports(self) -> tuple[int, int, int]:
        """Return the ports bound: commands, replies, market data."""
        bound = [_port_of(sock) for sock in (self._commands, self._replies, self._market)]
        return bound[0], bound[1], bound[2]

    def ready_line(self) -> str:
        """Return the ready line (:func:`ready_line`) of the ports bound."""
        return ready_line(self.ports)

    # -- traffic ------------------------------------------------------------------------------

    def poll(self, timeout: float | None) -> str | None:
        """Return the next command's text, waiting up to ``timeout`` seconds; None if none came.

        ``timeout`` None waits until a command comes; 0 only looks. Text that is not UTF-8 is
        decoded with replacement characters, so the protocol rejects it as a bad command.
        Subscriptions arriving on the market-data socket are consumed here too.
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            wait_ms = (
                None if deadline is None else max(0, round((deadline - time.monotonic()) * 1000))
            )
            ready = dict(self._poller.poll(wait_ms))
            if self._market in ready:
                self._drain_subscriptions()
            if self._commands in ready:
                try:
                    frames = self._commands.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    frames = None
                if frames is not None:
                    self.commands_received += 1
                    return b"".join(frames).decode("utf-8", errors="replace")
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def reply(self, text: str) -> bool:
        """Send one reply; return False (and count it) when it cannot be queued at once.

        A reply finds no queue when no client is connected or the one connected stopped
        reading (:data:`REPLY_HWM`): it is dropped, never waited for.
        """
        try:
            self._replies.send(text.encode("utf-8"), zmq.NOBLOCK)
        except zmq.Again:
            self.replies_dropped += 1
            return False
        return True

    def publish(self, text: str) -> bool:
        """Publish one market-data message; return False (and count it) when it is refused.

        With no subscriber the message goes nowhere and counts as sent (as on any PUB). A
        subscriber whose queue is full (:data:`MARKET_HWM`) makes the message refused for all:
        it is counted rather than lost unseen.
        """
        try:
            self._market.send(text.encode("utf-8"), zmq.NOBLOCK)
        except zmq.Again:
            self.publishes_dropped += 1
            return False
        return True

    def _drain_subscriptions(self) -> None:
        while True:
            try:
                self._market.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sockets (queued messages get :data:`LINGER_MS` to leave) and the context."""
        if self._closed:
            return
        self._closed = True
        for sock in self._sockets:
            sock.close(linger=LINGER_MS)
        if self._auth is not None:
            self._auth.stop()
        self._context.term()

    @property
    def closed(self) -> bool:
        """Return whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _checked_ports(ports: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(ports)
    if len(values) != 3 or not all(isinstance(p, int) and 0 <= p <= 65535 for p in values):
        msg = f"ports {list(values)}: give three ports in 0..65535 (commands, replies, market data)"
        raise UsageError(msg)
    chosen = [p for p in values if p]
    if len(set(chosen)) != len(chosen):
        raise UsageError(f"ports {list(values)}: each socket needs a port of its own")
    return values[0], values[1], values[2]


def _port_of(sock: zmq.Socket[bytes]) -> int:
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    text = endpoint.decode("ascii") if isinstance(endpoint, bytes) else str(endpoint)
    return int(text.rsplit(":", 1)[1])


def _bind_problem(host: str, port: int, role: str, exc: zmq.ZMQError) -> str:
    where = f"cannot bind port {port} ({role}) on {host}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the port is in use; stop what holds it or give other --ports"
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied; give ports above 1023"
    if exc.errno in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.EINVAL):
        return f"{where}: no such local address ({exc}); give --host 127.0.0.1 or this host's IP"
    return f"{where}: {exc}"


def _is_loopback(host: str) -> bool:
    text = host.strip("[]")
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False

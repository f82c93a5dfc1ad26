"""The MT4 bridge's server sockets on loopback: commands, replies, market data, CURVE."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import zmq
from pydantic import SecretStr, ValidationError

from core.errors import SolodeskError, UsageError
from execution.brokers.mt4.sockets import (
    BridgeSockets,
    CurveConfig,
    CurveKeyPair,
    curve_key_pair,
    ready_line,
)

HOST = "127.0.0.1"
FREE = (0, 0, 0)  # free ports, chosen at bind time


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def server() -> Iterator[BridgeSockets]:
    with BridgeSockets(HOST, FREE) as sockets:
        yield sockets


def _client(
    context: zmq.Context[zmq.Socket[bytes]],
    kind: int,
    port: int,
    keys: CurveKeyPair | None = None,
    server_public: str | None = None,
) -> zmq.Socket[bytes]:
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if kind == zmq.PUSH:
        sock.setsockopt(zmq.IMMEDIATE, 1)
    if keys is not None and server_public is not None:
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret.encode())
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_public.encode())
    sock.connect(f"tcp://{HOST}:{port}")
    return sock


def _send_when_connected(push: zmq.Socket[bytes], text: str, within: float = 2.0) -> bool:
    # IMMEDIATE: the command is refused until the connection (and any handshake) is complete.
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            push.send_string(text, zmq.NOBLOCK)
            return True
        except zmq.Again:
            time.sleep(0.01)
    return False


def _recv(sock: zmq.Socket[bytes], timeout: float) -> str | None:
    if sock.poll(round(timeout * 1000)):
        return sock.recv_string()
    return None


def test_bridge_sockets_command_from_push_client_gets_its_reply_on_pull(
    server: BridgeSockets, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    # Arrange
    commands, replies, _ = server.ports
    push = _client(context, zmq.PUSH, commands)
    pull = _client(context, zmq.PULL, replies)

    # Act
    assert _send_when_connected(push, "HEARTBEAT;")
    got = server.poll(2.0)
    time.sleep(0.05)  # the reply socket's connection completes alongside
    sent = server.reply("{'_action': 'heartbeat', '_response': 'loud and clear!'}")

    # Assert
    assert got == "HEARTBEAT;"
    assert sent
    assert _recv(pull, 2.0) == "{'_action': 'heartbeat', '_response': 'loud and clear!'}"
    assert server.commands_received == 1


def test_bridge_sockets_sub_client_receives_published_messages_in_order(
    server: BridgeSockets, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    # Arrange: a subscriber, and a probe published until it arrives (subscriptions take a moment)
    sub = _client(context, zmq.SUB, server.ports[2])
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        server.poll(0.0)
        server.publish("PROBE:|:0;0")
        if _recv(sub, 0.02) is not None:
            break
    while _recv(sub, 0.05) is not None:
        pass

    # Act
    sent = [server.publish(f"EURUSD:|:1.{10000 + i};1.{10008 + i}") for i in range(1_000)]
    got = [_recv(sub, 1.0) for _ in range(1_000)]

    # Assert
    assert all(sent) and server.publishes_dropped == 0
    assert got == [f"EURUSD:|:1.{10000 + i};1.{10008 + i}" for i in range(1_000)]


def test_bridge_sockets_poll_without_command_returns_none_after_the_timeout(
    server: BridgeSockets,
) -> None:
    started = time.monotonic()

    got = server.poll(0.2)

    assert got is None
    assert 0.18 <= time.monotonic() - started < 1.0


def test_bridge_sockets_reply_with_no_client_is_counted_not_waited_for(
    server: BridgeSockets,
) -> None:
    started = time.monotonic()

    sent = server.reply("{'_action': 'heartbeat'}")

    assert not sent
    assert server.replies_dropped == 1
    assert time.monotonic() - started < 0.5


def test_bridge_sockets_second_bind_on_a_port_in_use_names_the_port(server: BridgeSockets) -> None:
    taken = server.ports[1]

    with pytest.raises(SolodeskError, match=rf"cannot bind port {taken} \(replies\).*in use"):
        BridgeSockets(HOST, (0, taken, 0))


def test_bridge_sockets_closed_ports_bind_again_at_once() -> None:
    # Arrange
    with BridgeSockets(HOST, FREE) as first:
        ports = first.ports

    # Act
    with BridgeSockets(HOST, ports) as second:
        again = second.ports

    # Assert
    assert first.closed and second.closed
    assert again == ports


def test_bridge_sockets_bad_ports_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"a port of its own"):
        BridgeSockets(HOST, (40001, 40001, 40002))
    with pytest.raises(UsageError, match=r"three ports"):
        BridgeSockets(HOST, (40001, 40002))


def test_ready_line_is_one_json_line_of_the_bound_ports(server: BridgeSockets) -> None:
    line = server.ready_line()

    assert "\n" not in line
    assert json.loads(line) == {"ready": True, "ports": list(server.ports)}
    assert ready_line((32768, 32769, 32770)) == '{"ready": true, "ports": [32768, 32769, 32770]}'


# -- CURVE -----------------------------------------------------------------------------------


@pytest.fixture
def curve_server() -> Iterator[tuple[BridgeSockets, CurveKeyPair, CurveKeyPair]]:
    server_keys, client_keys = curve_key_pair(), curve_key_pair()
    config = CurveConfig(
        server_secret=SecretStr(server_keys.secret),
        allowed_client_public_keys=(client_keys.public,),
    )
    with BridgeSockets(HOST, FREE, curve=config) as sockets:
        yield sockets, server_keys, client_keys


def test_bridge_sockets_curve_allowed_key_gets_its_reply(
    curve_server: tuple[BridgeSockets, CurveKeyPair, CurveKeyPair],
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    # Arrange
    server, server_keys, client_keys = curve_server
    commands, replies, _ = server.ports
    push = _client(context, zmq.PUSH, commands, client_keys, server_keys.public)
    pull = _client(context, zmq.PULL, replies, client_keys, server_keys.public)

    # Act
    assert _send_when_connected(push, "HEARTBEAT;")
    got = server.poll(2.0)
    deadline = time.monotonic() + 2.0
    while not server.reply("loud and clear") and time.monotonic() < deadline:
        time.sleep(0.01)  # the reply socket's handshake completes alongside

    # Assert
    assert got == "HEARTBEAT;"
    assert _recv(pull, 2.0) == "loud and clear"


def test_bridge_sockets_curve_wrong_key_gets_nothing(
    curve_server: tuple[BridgeSockets, CurveKeyPair, CurveKeyPair],
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    # Arrange: a stranger who knows the server's public key, and a client without CURVE
    server, server_keys, _ = curve_server
    commands, replies, market = server.ports
    stranger = curve_key_pair()
    push = _client(context, zmq.PUSH, commands, stranger, server_keys.public)
    pull = _client(context, zmq.PULL, replies, stranger, server_keys.public)
    sub = _client(context, zmq.SUB, market, stranger, server_keys.public)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    plain = _client(context, zmq.PUSH, commands)

    # Act
    sent = _send_when_connected(push, "TRADE;OPEN;0;EURUSD;0;0;0;x;0.01;1;0", within=0.25)
    sent_plain = _send_when_connected(plain, "HEARTBEAT;", within=0.1)
    got = server.poll(0.25)
    replied = server.reply("nobody should read this")
    server.publish("EURUSD:|:1.1;1.1001")

    # Assert: an allowed client completes its handshake in milliseconds on loopback
    assert not sent and not sent_plain  # never connected: the handshakes were refused
    assert got is None
    assert not replied  # no client was ever admitted to the reply socket
    assert _recv(pull, 0.1) is None
    assert _recv(sub, 0.1) is None


def test_curve_config_checks_keys_and_hides_the_secret() -> None:
    keys = curve_key_pair()
    config = CurveConfig(
        server_secret=SecretStr(keys.secret), allowed_client_public_keys=(keys.public,)
    )

    assert config.server_public == keys.public
    assert keys.secret not in repr(config)
    with pytest.raises(ValidationError, match=r"not a CURVE key"):
        CurveConfig(server_secret=SecretStr("short"), allowed_client_public_keys=(keys.public,))
    with pytest.raises(ValidationError, match=r"allowed client key 0: not a CURVE key"):
        CurveConfig(server_secret=SecretStr(keys.secret), allowed_client_public_keys=("," * 40,))
    with pytest.raises(ValidationError):
        CurveConfig(server_secret=SecretStr(keys.secret), allowed_client_public_keys=())

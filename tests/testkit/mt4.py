"""The MT4 simulator in a thread of the test's process, with raw client sockets, and the
``[mt4]`` settings a :class:`~execution.brokers.mt4.client.BridgeClient` needs to reach it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from core.settings import MT4Settings, Settings
from core.timeframes import Timeframe
from services.mt4_sim import SimOptions, SimSummary, run_simulator

HOST = "127.0.0.1"


def bridge_settings(ports: tuple[int, int, int], **overrides: Any) -> MT4Settings:
    """Return ``[mt4]`` settings reaching a simulator on ``ports``, with short timeouts."""
    chosen: dict[str, Any] = {
        "ports": ports, "timeout_seconds": 0.5, "retries": 2, "backoff_seconds": 0.1,
        "backoff_max_seconds": 0.5, **overrides,
    }  # fmt: skip
    return MT4Settings(**chosen)


@dataclass
class Client:
    """The three client sockets: commands (PUSH), replies (PULL), market data (SUB)."""

    commands: zmq.Socket[bytes]
    replies: zmq.Socket[bytes]
    market: zmq.Socket[bytes]

    def send(self, text: str) -> None:
        self.commands.send_string(text)

    def reply(self, timeout: float = 3.0) -> str | None:
        if self.replies.poll(round(timeout * 1000)):
            return self.replies.recv_string()
        return None

    def ask(self, text: str, timeout: float = 3.0) -> str:
        self.send(text)
        got = self.reply(timeout)
        assert got is not None, f"no reply to {text!r} within {timeout} s"
        return got

    def published(self, quiet: float = 0.3, limit: float = 8.0) -> list[str]:
        """Return what arrives on SUB until nothing has for ``quiet`` seconds."""
        out: list[str] = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self.market.poll(round(quiet * 1000)):
            out.append(self.market.recv_string())
        return out


@dataclass
class SimRun:
    """A simulator running in a thread: its ports, its client, and how it ended."""

    settings: Settings
    ports: tuple[int, int, int]
    client: Client
    go: threading.Event
    stop: threading.Event
    thread: threading.Thread
    result: dict[str, Any] = field(default_factory=dict)

    def finish(self) -> SimSummary:
        self.go.set()
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the simulator did not stop within 10 s"
        if "error" in self.result:
            raise self.result["error"]
        summary: SimSummary = self.result["summary"]
        return summary


@contextmanager
def simulator(
    home: Path, *, hold: bool = False, raw: bool = True, **options: Any
) -> Iterator[SimRun]:
    """Run a simulator over ``home``'s EURUSD H1 at full speed, spread 1 pip, free ports
    (``options`` override any of these).

    ``raw`` connects the run's own client sockets (:attr:`SimRun.client`); leave them out
    (``raw=False``) when another client talks to the simulator: the simulator deals its replies
    round robin among the clients connected, as the EA does.
    With ``hold`` the replay waits (in ``on_ready``) until the test sets ``go``.
    """
    settings = Settings(home=home)
    given: dict[str, Any] = {
        "symbols": ("EURUSD",), "timeframe": Timeframe.H1, "speed": None, "spread": "1.0",
        "ports": (0, 0, 0), **options,
    }  # fmt: skip
    chosen = SimOptions(**given)
    ready, go, stop = threading.Event(), threading.Event(), threading.Event()
    if not hold:
        go.set()
    result: dict[str, Any] = {}

    def on_ready(line: str) -> None:
        result["ready"] = json.loads(line)
        ready.set()
        go.wait(10)

    def main() -> None:
        try:
            result["summary"] = run_simulator(settings, chosen, on_ready=on_ready, stop=stop)
        except BaseException as exc:  # handed to the test by SimRun.finish
            result["error"] = exc
            ready.set()

    thread = threading.Thread(target=main, name="mt4-sim", daemon=True)
    thread.start()
    assert ready.wait(15), "the simulator did not bind within 15 s"
    if "error" in result:
        raise result["error"]
    ports = tuple(result["ready"]["ports"])
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        socks = []
        for kind, port in zip((zmq.PUSH, zmq.PULL, zmq.SUB), ports if raw else (), strict=False):
            sock = context.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            if kind == zmq.SUB:
                sock.setsockopt(zmq.RCVHWM, 0)  # the replay's burst must all arrive
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(f"tcp://{HOST}:{port}")
            socks.append(sock)
        client = Client(*socks) if raw else None
        run = SimRun(settings, ports, client, go, stop, thread, result)  # type: ignore[arg-type]
        yield run
        run.finish()
    finally:
        go.set()
        stop.set()
        thread.join(10)
        context.destroy(linger=0)


def release(run: SimRun) -> None:
    """Let a held simulator start its replay once the client's subscription has arrived."""
    # The subscription reaches the simulator's XPUB in the background: give it a moment.
    time.sleep(0.3)
    run.go.set()


def release_later(run: SimRun, seconds: float = 0.3) -> threading.Timer:
    """Let a held simulator start ``seconds`` from now, from a timer thread.

    For a client that must be answered (``HELLO``, ``TRACK``) while its test's thread waits:
    the commands it sends wait in the simulator's queue until the replay is let go, and its
    subscription has arrived by then.
    """
    timer = threading.Timer(seconds, run.go.set)
    timer.daemon = True
    timer.start()
    return timer

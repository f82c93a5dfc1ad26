"""MT4 bridge latency: tick -> signal -> order round trip through the simulator, beside bare pyzmq.

Two sides, each in a fresh interpreter (:func:`benchkit.run_worker`), at each tick rate:

1. **Bridge.** The MT4 simulator runs as its own process, ``solodesk mt4 sim --symbols EURUSD
   --timeframe H1 --speed N --spread 1.0 --ports 0,0,0`` on a scratch desk made by ``solodesk
   ingest sample:eurusd-h1`` (EURUSD H1, 2017). Each bar is published as 4 ticks spread evenly
   over the bar, so ``N = rate * 3600 / 4`` gives ``rate`` ticks/s while the market is open
   (weekends and holidays are pauses of a fraction of a second at these speeds, so the rate
   sustained over a run is lower; both are printed). The client is
   :class:`execution.brokers.mt4.client.BridgeClient` in the extended dialect: it tracks
   EURUSD, reads ticks with ``poll_market``, and a trivial signal (the sign of the last bid
   change) decides each tick's direction; every ``--every``-th tick it sends an order and waits
   for its reply, alternating ``TRADE;OPEN`` (0.01 lots, in the signal's direction, through
   ``send_order``) and ``TRADE;CLOSE`` of that ticket (through ``request``), so orders stay a
   tenth of the load and one trade at most is open.
2. **Bare echo** (the reference). A process with a PUB, a PULL and a PUSH socket publishes
   ticks (``EURUSD:|:SEQ:|:BID;ASK;STAMP``) at the same rate, as many as the bridge side
   received, paced as the simulator paces them (polling its command socket until the next tick
   is due, then publishing every due tick); it answers each command at once with one short
   text. Its client does what the bridge's does with plain pyzmq calls: read every queued
   tick, split it, and every ``--every``-th send an order text and wait for the answer.

**What is measured.** The round trip (tick->reply) runs from the moment the client has the tick
in hand (``poll_market`` returned it, i.e. it was read off the SUB socket and parsed; for the
echo side, the same point after its own read and split) to the moment the order's reply has
been received and read; a tick handed over in a batch waits there behind the orders of the
ticks before it, and that wait counts. The order figure runs from the decision to the reply
(the order path alone). One-way latency runs from the publisher's ``time.monotonic_ns()`` just
before its ZeroMQ send to that same "in hand" moment in the client: CLOCK_MONOTONIC is one
clock for every process of a Linux machine. The echo server writes the stamp into each tick;
the simulator cannot, so its process is started with a hook that records
``(monotonic_ns, text)`` of each published message in memory and writes them out when it
stops, matched to the client's ticks by their sequence numbers (``--plain-sim`` runs the
installed ``solodesk`` script unmodified instead, without one-way figures). Percentiles are
p50, p99, p99.9 and max in microseconds; sustained messages/s is ticks received over the
time from the first to the last one.

Targets: tick->reply p99 <= 5 ms at 1k ticks/s, and at most 3x the bare echo's p99. Nothing
is asserted; the verdicts are printed. Pure steps of the order path (building and reading
commands and replies, the simulator's terminal, its ``history.parquet`` rewrite) are timed
alone in the bridge worker and printed after the table.

Run: ``.venv/bin/python bench/bridge.py [--rates 1000,10000,max] [--every 10] [--seconds S]
[--plain-sim] [--no-history]`` (``--no-history``: a diagnostic run in which the simulator skips
its ``history.parquet`` rewrite after each close).
The result is written as JSON to ``<bench_dir>/bridge-<UTC>Z.json`` and printed as the last
line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import ROOT, emit, run_context, run_worker, write_result

SCRIPT = Path(__file__).resolve()
SOLODESK = Path(sys.executable).parent / "solodesk"
SYMBOL = "EURUSD"
TICKS_PER_BAR = 4
LOTS = 0.01
TARGET_P99_US = 5_000.0
TARGET_RATE = 1_000
TARGET_RATIO = 3.0
#: A run ends when no tick came for this long (a weekend at 1k ticks/s is about 0.2 s; after
#: the last tick the simulator republishes its last quote once a second).
QUIET_SECONDS = 0.7
_START_SECONDS = 30.0
_BURST_TICKS = 512


# -- figures ---------------------------------------------------------------------------------


def percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    """Return the count, p50, p99, p99.9, max and mean of durations in ns, in microseconds."""
    import numpy as np

    if not samples_ns:
        return {"n": 0}
    array = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {
        "n": int(array.size),
        "p50": float(np.percentile(array, 50)),
        "p99": float(np.percentile(array, 99)),
        "p99_9": float(np.percentile(array, 99.9)),
        "max": float(array.max()),
        "mean": float(array.mean()),
    }


def _one_way(published: dict[int, int], received: dict[int, int]) -> list[int]:
    return [received[s] - published[s] for s in received if s in published]


def _uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


# -- processes -------------------------------------------------------------------------------


def _start(
    command: list[str], env: dict[str, str], errors: Path
) -> tuple[subprocess.Popen[str], tuple[int, int, int]]:
    """Start a server process and return it with the ports of its ready line."""
    with errors.open("w") as sink:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=sink, text=True, env=env, cwd=ROOT
        )
    assert process.stdout is not None
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            ready = json.loads(line)
            if ready.get("ready"):
                p = ready["ports"]
                return process, (int(p[0]), int(p[1]), int(p[2]))
    process.kill()
    msg = f"{' '.join(command[:4])} printed no ready line: {errors.read_text()[-2000:]}"
    raise SystemExit(msg)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the simulator with publish stamps -------------------------------------------------------


def stamped_simulator(stamps: Path, args: list[str], *, history: bool = True) -> None:
    """Run the command line (``mt4 sim ...``), recording when each market message is sent.

    Each :meth:`BridgeSockets.publish` call is preceded by one ``time.monotonic_ns()`` and a
    list append; the stamps are written to ``stamps`` (one ``SEQ NS`` line per message) once
    the simulator stops. ``history=False`` skips the simulator's rewrite of
    ``history.parquet`` after each close (a diagnostic: what that rewrite costs the latency).
    """
    if not history:
        import services.mt4_sim

        if not hasattr(services.mt4_sim, "_write_history"):
            raise SystemExit("services.mt4_sim has no _write_history any more: drop --no-history")
        services.mt4_sim._write_history = lambda terminal, path: None
    from app.cli import main as cli_main
    from execution.brokers.mt4.protocol import TOPIC_SEPARATOR
    from execution.brokers.mt4.sockets import BridgeSockets

    log: list[tuple[int, str]] = []
    publish = BridgeSockets.publish

    def stamped(self: BridgeSockets, text: str) -> bool:
        log.append((time.monotonic_ns(), text))
        return publish(self, text)

    BridgeSockets.publish = stamped  # type: ignore[method-assign]
    try:
        cli_main(args)
    finally:
        lines = []
        for ns, text in log:
            parts = text.split(TOPIC_SEPARATOR)
            if len(parts) == 3 and parts[0] == SYMBOL:
                lines.append(f"{parts[1]} {ns}")
        stamps.write_text("\n".join(lines) + "\n")


# -- the bridge side -------------------------------------------------------------------------


def bridge_side(
    home: Path, rate: int | None, every: int, seconds: float | None, mode: str
) -> dict[str, Any]:
    """Run the simulator at ``rate`` ticks/s (None: as fast as it goes) and trade through
    :class:`BridgeClient`; return the figures.

    ``mode`` is ``stamped`` (publish stamps), ``plain`` (the installed script as is) or
    ``no-history`` (stamped, without the history rewrite after each close).
    """
    plain = mode == "plain"
    from core.ids import client_order_id
    from core.settings import MT4Settings
    from core.times import utc_now
    from execution.brokers.mt4.client import BridgeClient, is_error
    from execution.brokers.mt4.protocol import OrderKind, Tick, TradeAction, trade_command

    speed = "max" if rate is None else f"{rate * 3600 / TICKS_PER_BAR:g}"
    sim_args = ["mt4", "sim", "--symbols", SYMBOL, "--timeframe", "H1", "--speed", speed,
                "--spread", "1.0", "--ports", "0,0,0"]  # fmt: skip
    stamps = home / f"stamps-{os.getpid()}.txt"
    command = (
        [str(SOLODESK), *sim_args]
        if plain
        else [sys.executable, str(SCRIPT), "--stamped-sim", str(stamps), mode, "--", *sim_args]
    )
    env = {**os.environ, "SOLODESK_HOME": str(home)}
    errors = home / f"sim-{os.getpid()}.err"
    process, ports = _start(command, env, errors)
    settings = MT4Settings(ports=ports, dialect="extended", timeout_seconds=2.0)
    client = BridgeClient(settings)
    received: dict[int, int] = {}
    rtt: list[int] = []
    order: list[int] = []
    refused = 0
    opened = 0
    ticket: int | None = None
    cid = ""
    count = 0
    last_bid = 0.0
    up = True
    magic = settings.magic
    try:
        client.connect()
        client.track(prices=[SYMBOL])
        started = time.monotonic()
        first_ns = last_ns = 0
        while True:
            batch = client.poll_market(QUIET_SECONDS)
            in_hand = time.monotonic_ns()
            if not batch:
                if count:
                    break
                if time.monotonic() - started > _START_SECONDS:
                    raise SystemExit("the simulator published no tick")
                continue
            if seconds is not None and first_ns and in_hand - first_ns > seconds * 1e9:
                break
            for message in batch:
                if not isinstance(message, Tick):
                    continue
                count += 1
                first_ns = first_ns or in_hand
                last_ns = in_hand
                if message.seq is not None:
                    received[message.seq] = in_hand
                up = message.bid >= last_bid if last_bid else up
                last_bid = message.bid
                if count % every:
                    continue
                decided = time.monotonic_ns()
                if ticket is None:
                    opened += 1
                    cid = client_order_id(utc_now(), opened)
                    kind = OrderKind.BUY if up else OrderKind.SELL

                    def build(rid: str | None, cid: str = cid, kind: OrderKind = kind) -> str:
                        return trade_command(TradeAction.OPEN, kind, SYMBOL, lots=LOTS,
                                             comment=cid, magic=magic, request_id=rid)  # fmt: skip

                    reply = client.send_order(build, ("EXECUTION",), cid)
                    done = time.monotonic_ns()
                    if is_error(reply):
                        refused += 1
                    else:
                        ticket = int(reply["_ticket"])
                else:
                    held = ticket

                    def close(rid: str | None, held: int = held) -> str:
                        return trade_command(TradeAction.CLOSE, ticket=held, lots=LOTS,
                                             magic=magic, request_id=rid)  # fmt: skip

                    reply = client.request(close, ("CLOSE",))
                    done = time.monotonic_ns()
                    refused += is_error(reply)
                    ticket = None
                rtt.append(done - in_hand)
                order.append(done - decided)
        counters = client.counters.as_dict()
    finally:
        client.close()
        _stop(process)
    summary_lines = [ln for ln in errors.read_text().splitlines() if ln.startswith("{")]
    summary = json.loads(summary_lines[-1]) if summary_lines else {}
    one_way: list[int] = []
    if not plain and stamps.exists():
        published: dict[int, int] = {}
        for line in stamps.read_text().splitlines():
            if line:
                seq, ns = line.split()
                published[int(seq)] = int(ns)
        one_way = _one_way(published, received)
    span = (last_ns - first_ns) / 1e9
    return {
        "side": "bridge",
        "command": " ".join(["solodesk", *sim_args]),
        "mode": mode,
        "speed": speed,
        "ticks": count,
        "orders": len(rtt),
        "refused": refused,
        "seconds": span,
        "messages_per_s": count / span if span > 0 else 0.0,
        "round_trip_us": percentiles_us(rtt),
        "order_us": percentiles_us(order),
        "one_way_us": percentiles_us(one_way),
        "counters": counters,
        "simulator": summary,
        "costs_us": client_costs(),
    }


def client_costs(n: int = 5_000) -> dict[str, float]:
    """Return the cost in microseconds of the pure steps on the order path (the best of 5
    loops' means): reading a published tick, building an OPEN, reading its reply; and on the
    simulator's side, reading the command and writing the reply."""
    from datetime import UTC, datetime

    from execution.brokers.mt4.protocol import (
        Dialect,
        OrderKind,
        TradeAction,
        execution_reply,
        format_reply,
        format_tick,
        parse_command,
        parse_market,
        parse_reply,
        trade_command,
    )

    now = datetime(2017, 3, 14, 12, 0, 7, tzinfo=UTC)
    tick = format_tick(SYMBOL, 1.06379, 1.06389, 5, seq=17)
    command = trade_command(TradeAction.OPEN, OrderKind.BUY, SYMBOL, lots=LOTS,
                            comment="c170314120007-0000000001", magic=7_770_001,
                            request_id="solodesk-1a2b-17")  # fmt: skip
    reply = format_reply(
        execution_reply(magic=7_770_001, ticket=1001, open_time=now, open_price=1.06389,
                        sl=0.0, tp=0.0),
        Dialect.EXTENDED, request_id="solodesk-1a2b-17",
    )  # fmt: skip
    steps = {
        "parse_market (tick)": lambda: parse_market(tick),
        "trade_command (OPEN)": lambda: trade_command(
            TradeAction.OPEN, OrderKind.BUY, SYMBOL, lots=LOTS, comment="c170314120007-0000000001",
            magic=7_770_001, request_id="solodesk-1a2b-17"),
        "parse_reply (EXECUTION)": lambda: parse_reply(reply, Dialect.EXTENDED),
        "sim: parse_command (OPEN)": lambda: parse_command(command),
        "sim: format_reply (EXECUTION)": lambda: format_reply(
            execution_reply(magic=7_770_001, ticket=1001, open_time=now, open_price=1.06389,
                            sl=0.0, tp=0.0),
            Dialect.EXTENDED, request_id="solodesk-1a2b-17"),
        "sim: format_tick": lambda: format_tick(SYMBOL, 1.06379, 1.06389, 5, seq=17),
    }  # fmt: skip
    out = {}
    for name, step in steps.items():
        step()
        best = []
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for _ in range(n // 5):
                step()
            best.append((time.perf_counter_ns() - t0) / (n // 5) / 1e3)
        out[name] = min(best)
    out.update(terminal_costs(n // 5))
    return out


def terminal_costs(pairs: int) -> dict[str, float]:
    """Return the simulator's own costs in microseconds: its terminal answering an OPEN then
    a CLOSE (mean of a pair), and the ``history.parquet`` rewrite its loop does after each
    close, with ``pairs`` closed trades held (mean of 5)."""
    from datetime import UTC, datetime, timedelta

    from core.settings import Settings
    from execution.brokers.mt4.protocol import OrderKind, TradeAction, parse_command
    from execution.brokers.mt4.terminal import SimTerminal, TerminalConfig

    instrument = Settings().registry.get(SYMBOL)
    terminal = SimTerminal(TerminalConfig(), {SYMBOL: instrument})
    now = datetime(2017, 3, 14, 12, 0, 7, tzinfo=UTC)
    terminal.on_quote(SYMBOL, 1.06379, 1.06389, now)
    t0 = time.perf_counter_ns()
    for k in range(pairs):
        at = now + timedelta(seconds=k)
        text = trade_text(TradeAction.OPEN, OrderKind.BUY, k)
        reply = terminal.handle(parse_command(text), at)
        close = trade_text(TradeAction.CLOSE, OrderKind.BUY, k, ticket=int(reply["_ticket"]))
        terminal.handle(parse_command(close), at)
    pair_us = (time.perf_counter_ns() - t0) / pairs / 1e3
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "history.parquet"
        t0 = time.perf_counter_ns()
        for _ in range(5):
            terminal.history_frame().write_parquet(path)
        write_us = (time.perf_counter_ns() - t0) / 5 / 1e3
    return {
        "sim: OPEN + CLOSE, parse and terminal (pair)": pair_us,
        f"sim: history.parquet rewrite ({pairs:,} trades)": write_us,
    }


def trade_text(action: Any, kind: Any, k: int, ticket: int = 0) -> str:
    """Return an extended ``TRADE`` command as the bridge side sends it."""
    from execution.brokers.mt4.protocol import trade_command

    comment = f"c170314120007-{k:010d}" if ticket == 0 else ""
    return trade_command(action, kind, SYMBOL if ticket == 0 else "", lots=LOTS, comment=comment,
                         magic=7_770_001, ticket=ticket, request_id=f"solodesk-1a2b-{k}")  # fmt: skip


# -- the bare echo ---------------------------------------------------------------------------


def echo_server(rate: int | None, count: int) -> None:
    """Publish ``count`` ticks at ``rate`` a second (None: as fast as possible), answering each
    command at once; the first command (``GO``) starts the ticks. Stops on SIGTERM."""
    import zmq

    stop = False

    def stopped(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, stopped)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pull = context.socket(zmq.PULL)
    push = context.socket(zmq.PUSH)
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    ports = [s.bind_to_random_port("tcp://127.0.0.1") for s in (pull, push, pub)]
    print(json.dumps({"ready": True, "ports": ports}), flush=True)
    push.send_string(pull.recv_string() + ";OK")
    interval = 0 if rate is None else 1_000_000_000 // rate
    origin = time.monotonic_ns()
    i = 0
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    while not stop:
        now = time.monotonic_ns()
        wait_ms = 50 if i >= count else max(0, round((origin + i * interval - now) / 1e6))
        if poller.poll(wait_ms):
            text = pull.recv_string(zmq.NOBLOCK)
            push.send_string(text + ";FILLED")
            continue
        end = min(count, i + _BURST_TICKS)
        while i < end and origin + i * interval <= time.monotonic_ns():
            i += 1
            bid = 1.05 + (i % 97) * 1e-5
            stamp = time.monotonic_ns()
            pub.send_string(f"{SYMBOL}:|:{i}:|:{bid:.5f};{bid + 1e-4:.5f};{stamp}")
    for sock in (pull, push, pub):
        sock.close(0)
    context.term()


def echo_side(home: Path, rate: int | None, count: int, every: int) -> dict[str, Any]:
    """Run the bare echo server at ``rate`` for ``count`` ticks and trade through plain pyzmq
    sockets the way the bridge side does; return the figures."""
    import zmq

    arg = "max" if rate is None else str(rate)
    command = [sys.executable, str(SCRIPT), "--echo-server", arg, str(count)]
    process, (commands, replies, market) = _start(command, dict(os.environ), home / "echo.err")
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    push = context.socket(zmq.PUSH)
    pull = context.socket(zmq.PULL)
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    for sock, port in ((pull, replies), (push, commands), (sub, market)):
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
    rtt: list[int] = []
    order: list[int] = []
    one_way: list[int] = []
    count_in = 0
    last_bid = 0.0
    up = True
    position = False
    try:
        time.sleep(0.2)  # the SUB's subscription reaches the server before the first tick
        push.send_string("GO")
        if not pull.poll(int(_START_SECONDS * 1000)):
            raise SystemExit("the echo server did not answer GO")
        pull.recv_string()
        first_ns = last_ns = 0
        while True:
            if not sub.poll(int(QUIET_SECONDS * 1000)):
                if count_in:
                    break
                continue
            batch: list[tuple[int, float, float, int]] = []
            while len(batch) < 10_000:
                try:
                    text = sub.recv_string(zmq.NOBLOCK)
                except zmq.Again:
                    break
                _, seq, payload = text.split(":|:")
                bid, ask, stamp = payload.split(";")
                batch.append((int(seq), float(bid), float(ask), int(stamp)))
            in_hand = time.monotonic_ns()
            for _seq, bid_, _ask, stamp_ in batch:
                count_in += 1
                first_ns = first_ns or in_hand
                last_ns = in_hand
                one_way.append(in_hand - stamp_)
                up = bid_ >= last_bid if last_bid else up
                last_bid = bid_
                if count_in % every:
                    continue
                decided = time.monotonic_ns()
                verb = "CLOSE" if position else "OPEN"
                push.send_string(f"#{count_in};{verb};{SYMBOL};{'BUY' if up else 'SELL'}")
                if not pull.poll(2_000):
                    raise SystemExit("the echo server did not answer an order")
                pull.recv_string()
                done = time.monotonic_ns()
                rtt.append(done - in_hand)
                order.append(done - decided)
                position = not position
    finally:
        for sock in (push, pull, sub):
            sock.close(0)
        context.term()
        _stop(process)
    span = (last_ns - first_ns) / 1e9
    return {
        "side": "echo",
        "ticks": count_in,
        "orders": len(rtt),
        "seconds": span,
        "messages_per_s": count_in / span if span > 0 else 0.0,
        "round_trip_us": percentiles_us(rtt),
        "order_us": percentiles_us(order),
        "one_way_us": percentiles_us(one_way),
    }


# -- the run ---------------------------------------------------------------------------------


def _rate_arg(text: str) -> int | None:
    return None if text == "max" else int(text)


def worker(args: list[str]) -> None:
    """Run one side (``bridge HOME RATE EVERY SECONDS MODE`` or ``echo HOME RATE COUNT
    EVERY``) and print its result for :func:`benchkit.run_worker`."""
    side, home = args[0], Path(args[1])
    if side == "bridge":
        seconds = None if args[4] == "none" else float(args[4])
        emit(bridge_side(home, _rate_arg(args[2]), int(args[3]), seconds, args[5]))
    else:
        emit(echo_side(home, _rate_arg(args[2]), int(args[3]), int(args[4])))


def _ratio(mine: dict[str, float], reference: dict[str, float], key: str) -> float | None:
    if key not in mine or not reference.get(key):
        return None
    return mine[key] / reference[key]


def _x(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def _fmt(figures: dict[str, float], key: str) -> str:
    value = figures.get(key)
    return "" if value is None else f"{value:,.0f}"


def main() -> int:
    """Run every rate, print the table and the verdicts, write the JSON result."""
    parser = argparse.ArgumentParser(description="MT4 bridge latency benchmark (module docstring).")
    parser.add_argument("--rates", default="1000,10000", help="ticks/s, comma-separated; max too")
    parser.add_argument("--every", type=int, default=10, help="an order every N-th tick")
    parser.add_argument("--seconds", type=float, help="measure at most S seconds per side")
    parser.add_argument("--plain-sim", action="store_true",
                        help="run the installed solodesk script as is (no one-way figures)")  # fmt: skip
    parser.add_argument("--no-history", action="store_true",
                        help="diagnostic: the simulator skips its history.parquet rewrites")  # fmt: skip
    args = parser.parse_args()
    mode = "plain" if args.plain_sim else ("no-history" if args.no_history else "stamped")
    rates = [_rate_arg(r.strip()) for r in args.rates.split(",") if r.strip()]
    result: dict[str, Any] = {
        **run_context(),
        "uptime_before": _uptime(),
        "every": args.every,
        "mode": mode,
    }
    print(f"load before: {result['uptime_before']}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="solodesk-bridge-") as scratch:
        home = Path(scratch) / "home"
        started = time.perf_counter()
        done = subprocess.run(
            [str(SOLODESK), "ingest", "sample:eurusd-h1"], capture_output=True, text=True,
            env={**os.environ, "SOLODESK_HOME": str(home)}, cwd=ROOT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit("solodesk ingest sample:eurusd-h1 failed")
        result["desk_seconds"] = time.perf_counter() - started
        seconds = "none" if args.seconds is None else str(args.seconds)
        for rate in rates:
            name = "max" if rate is None else str(rate)
            bridge = run_worker(
                str(SCRIPT), "bridge", str(home), name, str(args.every), seconds, mode
            )
            echo = run_worker(
                str(SCRIPT), "echo", str(home), name, str(bridge["ticks"]), str(args.every)
            )
            b, e = bridge["round_trip_us"], echo["round_trip_us"]
            bo, eo = bridge["order_us"], echo["order_us"]
            rows.append({"rate": name, "bridge": bridge, "echo": echo,
                         "p99_ratio": _ratio(b, e, "p99"), "p50_ratio": _ratio(b, e, "p50"),
                         "order_p50_ratio": _ratio(bo, eo, "p50"),
                         "order_p99_ratio": _ratio(bo, eo, "p99")})  # fmt: skip
    result["runs"] = rows
    result["uptime_after"] = _uptime()
    print("tick->reply: from the tick in hand (read off the SUB socket and parsed, as")
    print("poll_market returns it) to the order's reply received; order: from the decision")
    print("to the reply; one way: the publisher's stamp just before its send to the tick in")
    print("hand. Microseconds.")
    print(f"{'rate':>6} {'side':<7} {'ticks':>7} {'msg/s':>7} {'orders':>6} | tick->reply "
          f"{'p50':>7} {'p99':>9} {'p99.9':>9} {'max':>9} | order {'p50':>5} {'p99':>7} "
          f"{'p99.9':>7} | one way {'p50':>7} {'p99':>9} {'p99.9':>9}")  # fmt: skip
    for row in rows:
        for side in ("bridge", "echo"):
            f = row[side]
            rt, od, ow = f["round_trip_us"], f["order_us"], f["one_way_us"]
            print(f"{row['rate']:>6} {side:<7} {f['ticks']:>7,} {f['messages_per_s']:>7,.0f} "
                  f"{f['orders']:>6,} | {'':11}{_fmt(rt, 'p50'):>7} {_fmt(rt, 'p99'):>9} "
                  f"{_fmt(rt, 'p99_9'):>9} {_fmt(rt, 'max'):>9} | {'':6}{_fmt(od, 'p50'):>5} "
                  f"{_fmt(od, 'p99'):>7} {_fmt(od, 'p99_9'):>7} | {'':8}{_fmt(ow, 'p50'):>7} "
                  f"{_fmt(ow, 'p99'):>9} {_fmt(ow, 'p99_9'):>9}")  # fmt: skip
        ratio = row["p99_ratio"]
        text = "n/a" if ratio is None else f"{ratio:.2f}x"
        verdict = "" if ratio is None else ("met" if ratio <= TARGET_RATIO else "MISSED")
        print(f"{row['rate']:>6} bridge / echo, tick->reply p99: {text} (target <= "
              f"{TARGET_RATIO:g}x: {verdict}); p50: {_x(row['p50_ratio'])}; order p50: "
              f"{_x(row['order_p50_ratio'])}, p99: {_x(row['order_p99_ratio'])}")  # fmt: skip
        row["ratio_target_met"] = ratio is not None and ratio <= TARGET_RATIO
        if row["rate"] == str(TARGET_RATE) and "p99" in row["bridge"]["round_trip_us"]:
            p99 = row["bridge"]["round_trip_us"]["p99"]
            row["p99_target_met"] = p99 <= TARGET_P99_US
            print(f"{row['rate']:>6} bridge tick->reply p99 {p99:,.0f} us (target <= "
                  f"{TARGET_P99_US:,.0f} us: {'met' if row['p99_target_met'] else 'MISSED'})")  # fmt: skip
    costs = rows[0]["bridge"]["costs_us"] if rows else {}
    if costs:
        print("pure steps on the order path (us, best of 5 loops' means): " +
              ", ".join(f"{k} {v:.1f}" for k, v in costs.items()))  # fmt: skip
    print(f"load after: {result['uptime_after']}")
    from core.times import iso_z, utc_now

    result["finished"] = iso_z(utc_now())
    path = write_result("bridge", result)
    print(f"written to {path}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--stamped-sim":
        stamped_simulator(Path(sys.argv[2]), sys.argv[5:], history=sys.argv[3] != "no-history")
    elif len(sys.argv) > 1 and sys.argv[1] == "--echo-server":
        echo_server(_rate_arg(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(main())

"""The MT4 bridge client against the simulator (and a bare CURVE server) over real sockets on
loopback, with the simulator's faults: lost and late replies, a disconnection, a burst of
quotes with drops, duplicates and reorders, a wrong CURVE key, a symbol gone quiet.

Every simulator runs in a thread of this process on free ports (:func:`testkit.mt4.simulator`
with ``raw=False``: the client under test is the only one connected, as the EA deals its
replies round robin among clients). The faults strike by a seeded draw per event, so each
test's seed fixes which command or quote they strike; the figures asserted are exact.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import SampleDesk
from pydantic import SecretStr
from testkit.mt4 import bridge_settings, release_later, simulator

from core.ids import client_order_id
from core.timeframes import Timeframe
from execution.brokers.mt4.client import (
    BridgeClient,
    BridgeDownError,
    ClockMismatchError,
)
from execution.brokers.mt4.protocol import (
    Dialect,
    Tick,
    format_reply,
    hello_reply,
    parse_command,
    trade_command,
)
from execution.brokers.mt4.sockets import BridgeSockets, CurveConfig, curve_key_pair
from feature_store.series import load_series

JUNE = datetime(2017, 6, 1, tzinfo=UTC)
#: Two days of June 2017: some fifty bars, replayed at full speed in a few milliseconds.
DAYS: dict[str, Any] = {"start": JUNE, "end": datetime(2017, 6, 3, tzinfo=UTC)}
#: Friday 19:00 UTC to Monday 02:00 UTC across the start of US daylight saving (12 March):
#: the broker clock (New York + 7 h) moves from UTC+2 to UTC+3 over that weekend.
DST_FROM, DST_TO = datetime(2017, 3, 10, 19, tzinfo=UTC), datetime(2017, 3, 13, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def home(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample desk (EURUSD H1 2017) the simulators of this module read."""
    target = tmp_path_factory.mktemp("mt4-client") / "home"
    shutil.copytree(sample_desk.home, target)
    return target


def _open(cid: str, magic: int) -> Callable[[str | None], str]:
    """Return the builder of a 0.01 lot EURUSD market buy whose comment is ``cid``."""

    def build(rid: str | None) -> str:
        return trade_command("OPEN", 0, "EURUSD", 0, 50, 100, cid, 0.01, magic, 0, request_id=rid)

    return build


def _ids(count: int) -> list[str]:
    return [client_order_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), k) for k in range(count)]


# -- 1. the handshake and the reads, in each dialect -------------------------------------------


@pytest.mark.parametrize(("dialect", "spoken"), [("auto", Dialect.EXTENDED), ("legacy", None)])
def test_mt4_client_reads_in_each_dialect_match_the_terminal_and_the_store(
    home: Path, dialect: str, spoken: Dialect | None
) -> None:
    with simulator(home, raw=False, **DAYS) as run:
        client = BridgeClient(bridge_settings(run.ports, dialect=dialect)).connect()
        try:
            beat = client.heartbeat()
            account = client.account()
            before = client.open_trades()
            [cid] = _ids(1)
            opened = client.send_order(_open(cid, client.config.magic), ("EXECUTION",), cid)
            after = client.open_trades()
            bars = client.hist("EURUSD", Timeframe.H1, DST_FROM, DST_TO)
            counters = client.counters.as_dict()
            chosen, hello = client.dialect, client.hello
        finally:
            client.close()
        summary = run.finish()
    stored = load_series(run.settings, "EURUSD", Timeframe.H1).bars.filter(
        pl.col("ts").is_between(DST_FROM, DST_TO)
    )

    # the dialect: HELLO answered by default, never sent in the legacy one
    assert chosen is (spoken or Dialect.LEGACY)
    if spoken is Dialect.EXTENDED:
        assert hello is not None and hello["_response"] == "OK" and hello["_version"] == 1
    else:
        assert hello is None
    assert beat["_action"] == "heartbeat" and beat["_response"] == "loud and clear!"
    assert ("_request_id" in beat) is (spoken is Dialect.EXTENDED)
    assert account["account_balance"] == 10_000.0 and account["account_leverage"] == 30
    assert isinstance(account["account_number"], int)
    # the order: none before, ours after, with our magic and id
    assert before == {}
    ticket = opened["_ticket"]
    assert list(after) == [ticket]
    assert after[ticket]["_magic"] == client.config.magic and after[ticket]["_comment"] == cid
    assert after[ticket]["_lots"] == 0.01 and after[ticket]["_symbol"] == "EURUSD"
    # HIST: both ends inclusive, the broker clock read back to the stored UTC bars
    assert stored.height == 9
    assert [(b.time, b.open, b.high, b.low, b.close, b.tick_volume) for b in bars] == [
        (r["ts"], r["open"], r["high"], r["low"], r["close"], round(r["volume"]))
        for r in stored.iter_rows(named=True)
    ]
    # every request answered once, nothing lost nor stray
    sent = 6 + (spoken is Dialect.EXTENDED)
    assert counters["requests"] == counters["replies"] == sent
    assert counters["timeouts"] == counters["stray_replies"] == counters["retries"] == 0
    assert summary.commands_answered == sent


# -- 2. the clock ------------------------------------------------------------------------------


@pytest.mark.parametrize(("clock", "hours"), [("UTC", "+3.00"), ("UTC+5", "-2.00")])
def test_mt4_client_clock_check_passes_on_the_broker_clock_refuses_another(
    home: Path, clock: str, hours: str
) -> None:
    with simulator(home, raw=False, **DAYS) as run:
        # "extended": HELLO asked again if its reply went to the closed client's connection
        with BridgeClient(bridge_settings(run.ports, dialect="extended")) as client:
            check = client.connect().require_clock()
        with BridgeClient(bridge_settings(run.ports, clock=clock, dialect="extended")) as wrong:
            wrong.connect()
            with pytest.raises(ClockMismatchError) as refused:
                wrong.require_clock()
            off = wrong.check_clock()

    # the simulator's terminal runs on broker:ny-close: UTC+3 in June
    assert check.ok and check.off_seconds == 0.0 and check.source == "the terminal's UTC"
    assert off.off_seconds == float(hours) * 3600
    assert f"is {hours} h from" in str(refused.value)
    assert f"on the clock {clock!r}" in str(refused.value)


# -- 3. lost replies ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["extended", "legacy"])
def test_mt4_client_lost_replies_are_retried_without_a_duplicate_order(
    home: Path, dialect: str
) -> None:
    # Seed 1 drops the replies of the sixth and seventh commands: the last OPEN's (the fifth
    # OPEN's after HELLO in the extended dialect) and the lookup's first GET_OPEN_TRADES.
    ids = _ids(6)
    with simulator(home, raw=False, faults=("drop_reply=0.5",), seed=1, **DAYS) as run:
        time.sleep(0.1)  # the replay gives the terminal its quotes
        settings = bridge_settings(run.ports, dialect=dialect, timeout_seconds=0.25)
        with BridgeClient(settings).connect() as client:
            replies = [client.send_order(_open(c, settings.magic), ("EXECUTION",), c) for c in ids]
            held = client.open_trades()
            counters = client.counters.as_dict()
        summary = run.finish()

    ours = {t: e for t, e in held.items() if e["_magic"] == settings.magic}
    assert len(held) == len(ours) == 6
    assert sorted(e["_comment"] for e in ours.values()) == ids
    # each order's reply, or its entry found on the terminal, names its own ticket
    assert sorted(r["_ticket"] for r in replies) == sorted(ours)
    assert summary.faults_struck == {"drop_reply": 2}
    assert counters["timeouts"] == 2 and counters["retries"] == 1
    assert counters["orders_found"] == 1
    assert counters["stray_replies"] == counters["reconnects"] == 0


# -- 4. late replies ---------------------------------------------------------------------------


def test_mt4_client_late_reply_is_never_taken_for_another_request(home: Path) -> None:
    faults = ("delay_reply=0.4:0.45",)
    with simulator(home, raw=False, faults=faults, seed=3, **DAYS) as run:
        time.sleep(0.1)
        settings = bridge_settings(run.ports, dialect="extended", timeout_seconds=0.25)
        with BridgeClient(settings).connect() as client:
            answers = []
            for _ in range(3):
                answers.append(client.heartbeat()["_action"])
                answers.append(str(client.account()["account_balance"]))
                answers.append(str(client.open_trades()))
                answers.append(str(client.hist("EURUSD", Timeframe.H1, DST_FROM, DST_FROM)))
            time.sleep(0.5)  # every reply held back is sent by now
            answers.append(client.heartbeat()["_action"])
            counters = client.counters.as_dict()
        summary = run.finish()

    bar = "[MT4Bar(time=datetime.datetime(2017, 3, 10, 19, 0, tzinfo=datetime.timezone.utc)"
    assert answers[:3] == ["heartbeat", "10000.0", "{}"] and answers[3].startswith(bar)
    assert answers[4:12] == answers[:4] * 2 and answers[12] == "heartbeat"
    delayed = summary.faults_struck["delay_reply"]
    assert delayed > 0
    assert counters["timeouts"] == counters["stray_replies"] == delayed
    assert counters["replies"] == 13 + 1  # the requests above and HELLO


# -- 5. a disconnection ------------------------------------------------------------------------


def test_mt4_client_reconnects_after_a_disconnection_and_tracks_again(home: Path) -> None:
    # 100 quotes a second (a wall second is 25 market hours), seeded so the fourth command's
    # disconnection is the only one: HELLO, TRACK_PRICES, two heartbeats, the fourth lost. The
    # sockets stay down 2.5 s, longer than both tries (0.4 s each), so the client must reconnect.
    events: list[tuple[str, str]] = []
    called: list[int] = []
    options: dict[str, Any] = {"start": JUNE, "end": datetime(2017, 7, 1, tzinfo=UTC)}
    faults = ("disconnect=0.1:2.5",)
    with simulator(home, raw=False, faults=faults, seed=87, speed=90_000, **options) as run:
        # a timeout long enough that only the disconnection, not a busy machine, goes unanswered
        settings = bridge_settings(run.ports, dialect="extended", timeout_seconds=0.4, retries=1)
        client = BridgeClient(settings, on_event=lambda k, m: events.append((k, m))).connect()
        try:
            client.on_reconnect.append(lambda: called.append(client.counters.reconnects))
            client.track(prices=["EURUSD"])
            before = _ticks(client, 5)
            beats = [client.heartbeat()["_response"] for _ in range(4)]
            after = _ticks(client, 5)
            counters = client.counters.as_dict()
        finally:
            client.close()
        summary = run.finish()

    assert summary.faults_struck == {"disconnect": 1}
    assert beats == ["loud and clear!"] * 4
    assert counters["reconnects"] == 1 and called == [1]
    # quotes published before TRACK came again may reach the new socket first: told as a gap
    assert events[0][0] == "reconnect" and {k for k, _ in events[1:]} <= {"gap"}
    assert counters["timeouts"] >= 1
    # quotes before and after; after, TRACK sent again started the numbering over at 1 (on a
    # busy machine the first quotes may go out before the new socket's subscription arrives:
    # then the first number seen is told as a gap from #0)
    assert [t.seq for t in before[:2]] == [1, 2]
    seqs = [t.seq for t in after]
    restart = seqs.index(1) if 1 in seqs else 0
    first = seqs[restart]
    assert first == 1 or any(f"between #0 and #{first}" in m for k, m in events if k == "gap")
    assert seqs[restart:] == list(range(first, first + len(seqs) - restart))


def _ticks(client: BridgeClient, count: int, limit: float = 5.0) -> list[Tick]:
    out: list[Tick] = []
    deadline = time.monotonic() + limit
    while len(out) < count and time.monotonic() < deadline:
        out.extend(m for m in client.poll_market(0.2) if isinstance(m, Tick))
    assert len(out) >= count, f"{len(out)} quotes within {limit} s, wanted {count}"
    return out


# -- 6. a burst of quotes ----------------------------------------------------------------------

#: An H1 bar makes 4 quotes: this speed publishes 10,000 quotes a second of wall time.
BURST_SPEED = 10_000 / 4 * 3600
#: What the burst must at least reach, weekends left out (measured here: 8,000 to 10,000).
BURST_FLOOR = 5_000
#: The quotes June 2017 makes when tracked from its first tick (a quote equal to the one before
#: is not published). The seed's drop_tick draws strike none of the last 700 of them nor the
#: 30 after: a quote lost at the very end would show as a gap only after the next one.
JUNE_QUOTES = 1_870
BURST_SEED = 1_330


def test_mt4_client_burst_counts_every_dropped_quote_as_a_gap(home: Path) -> None:
    faults = ("drop_tick=0.01", "duplicate_tick=0.01", "reorder_tick=0.01")
    options: dict[str, Any] = {"start": JUNE, "end": datetime(2017, 7, 1, tzinfo=UTC)}
    with simulator(
        home, raw=False, hold=True, faults=faults, seed=BURST_SEED, speed=BURST_SPEED, **options
    ) as run:
        release_later(run)
        settings = bridge_settings(run.ports, dialect="extended", timeout_seconds=2.0)
        with BridgeClient(settings).connect() as client:
            client.track(prices=["EURUSD"])
            ticks: list[Tick] = []
            arrived: list[tuple[float, int]] = []
            while True:
                seen = client.counters.messages
                batch = client.poll_market(0.15)
                if client.counters.messages == seen:
                    break  # quiet: the replay is over (a weekend lasts 0.02 s here)
                arrived.append((time.monotonic(), client.counters.messages - seen))
                ticks.extend(m for m in batch if isinstance(m, Tick))
            counters = client.counters.as_dict()
        summary = run.finish()

    # the rate while the market is open: pauses over 10 ms (the weekends) left out
    busy = sum(b[0] - a[0] for a, b in itertools.pairwise(arrived) if b[0] - a[0] < 0.01)
    rate = sum(n for _, n in arrived[1:]) / busy
    print(f"burst: {counters['messages']} quotes, {rate:,.0f} a second")
    assert rate >= BURST_FLOOR
    assert JUNE_QUOTES - 700 < summary.ticks_published <= JUNE_QUOTES, "the burst began late"
    struck = summary.faults_struck
    assert struck["drop_tick"] > 0 and struck["duplicate_tick"] > 0 and struck["reorder_tick"] > 0
    assert counters["gaps"] - counters["recovered"] == struck["drop_tick"]
    # what came late (duplicates, reordered quotes) is left out, never a gap
    assert counters["late"] > counters["recovered"] > 0
    seqs = [t.seq or 0 for t in ticks]
    assert seqs == sorted(set(seqs))
    assert counters["messages"] == len(ticks) + counters["late"]
    assert seqs[0] == 1 and seqs[-1] == len(ticks) + struck["drop_tick"] + counters["recovered"]
    assert counters["restarts"] == counters["bad_messages"] == 0


# -- 7. CURVE ----------------------------------------------------------------------------------


def test_mt4_client_with_a_key_not_allowed_gets_no_answer() -> None:
    server, allowed, stranger = curve_key_pair(), curve_key_pair(), curve_key_pair()
    curve = CurveConfig(
        server_secret=SecretStr(server.secret), allowed_client_public_keys=(allowed.public,)
    )
    sockets = BridgeSockets("127.0.0.1", (0, 0, 0), curve=curve)
    stop = threading.Event()
    hellos: list[str] = []

    def answer() -> None:
        while not stop.is_set():
            text = sockets.poll(0.05)
            if text is None:
                continue
            command = parse_command(text)
            hellos.append(text)
            reply = hello_reply(version=1, client_id="x", server_time=JUNE)
            sockets.reply(format_reply(reply, Dialect.EXTENDED, request_id=command.request_id))

    thread = threading.Thread(target=answer, name="curve-server", daemon=True)
    thread.start()
    try:
        keys = {"curve_server_key": curve.server_public, "dialect": "extended"}
        ours = bridge_settings(
            sockets.ports, curve_public_key=allowed.public, curve_secret_key=allowed.secret, **keys
        )
        with BridgeClient(ours) as client:
            hello = client.connect().hello
        received = sockets.commands_received
        theirs = bridge_settings(
            sockets.ports, curve_public_key=stranger.public, curve_secret_key=stranger.secret,
            timeout_seconds=0.3, retries=0, **keys,
        )  # fmt: skip
        with BridgeClient(theirs) as refused, pytest.raises(BridgeDownError):
            refused.connect()
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
        sockets.close()

    assert hello is not None and hello["_response"] == "OK"
    assert received == 1 and len(hellos) == 1
    assert sockets.commands_received == 1  # nothing from the stranger reached the server


# -- 8. stale prices ---------------------------------------------------------------------------


def test_mt4_client_quiet_symbol_is_reported_stale_once(home: Path) -> None:
    # At real speed the next quote is a quarter of an hour away: EURUSD goes quiet.
    events: list[tuple[str, str]] = []
    with simulator(home, raw=False, speed=1.0, **DAYS) as run:
        settings = bridge_settings(run.ports, stale_seconds=0.2)
        with BridgeClient(settings, on_event=lambda k, m: events.append((k, m))) as client:
            client.connect().track(prices=["EURUSD"])
            fresh = client.stale_symbols()
            quotes = client.poll_market(0.3)
            stale = [client.stale_symbols() for _ in range(3)]
            closed = client.stale_symbols(is_open=lambda symbol: False)
            counters = client.counters.as_dict()

    assert fresh == () and quotes == []
    assert stale == [("EURUSD",)] * 3 and closed == ()
    assert counters["stale"] == 1
    assert [k for k, _ in events] == ["stale"] and events[0][1].startswith("EURUSD: no new price")

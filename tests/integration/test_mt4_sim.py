"""The MT4 simulator over real sockets on loopback, on the sample desk's EURUSD H1 2017 bars.

Each test runs ``run_simulator`` in a thread of this process (free ports, a stop event), except
the last, which starts ``solodesk mt4 sim`` as a process. A simulator whose published data is
checked is held in ``on_ready`` until the client has connected and sent its TRACK commands, so
a replay at full speed publishes every tick to it.
"""

from __future__ import annotations

import json
import select
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import zmq
from conftest import SampleDesk
from testkit.cli import solodesk_command, solodesk_env
from testkit.mt4 import HOST, Client, release, simulator

from core.timeframes import Timeframe
from execution.brokers.mt4.protocol import (
    Dialect,
    Rate,
    Tick,
    parse_market,
    parse_reply,
)
from feature_store.series import load_series

TRANSCRIPT = Path(__file__).resolve().parents[1] / "data" / "mt4" / "transcript.jsonl"
SPREAD = 0.0001  # --spread 1.0: one EURUSD pip
NEW_YORK = ZoneInfo("America/New_York")
JUNE = datetime(2017, 6, 1, tzinfo=UTC)


def _broker_text(utc: datetime) -> str:
    # The broker clock broker:ny-close: New York's wall time plus 7 hours (UTC+2, or +3 in DST).
    wall = utc.astimezone(NEW_YORK).replace(tzinfo=None) + timedelta(hours=7)
    return wall.strftime("%Y.%m.%d %H:%M")


@pytest.fixture(scope="module")
def home(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample desk the simulators of this module read (and write history to)."""
    target = tmp_path_factory.mktemp("mt4-sim") / "home"
    shutil.copytree(sample_desk.home, target)
    return target


def _literal(text: str) -> dict[str, Any]:
    return parse_reply(text, Dialect.LEGACY)


def _json(text: str) -> dict[str, Any]:
    return parse_reply(text, Dialect.EXTENDED)


def _shape(value: Any) -> Any:
    """Return a reply's keys (recursively) and value types; ticket-keyed maps by their entries."""
    if isinstance(value, dict):
        if value and all(isinstance(k, int) for k in value):
            shapes = {json.dumps(_shape(v), sort_keys=True) for v in value.values()}
            assert len(shapes) == 1, f"entries of one map differ in shape: {shapes}"
            return {"<ticket>": _shape(next(iter(value.values())))}
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return type(value).__name__


def _transcript() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TRANSCRIPT.read_text().splitlines() if line.strip()]


def _line(dialect: str, name: str) -> dict[str, Any]:
    return next(x for x in _transcript() if x["dialect"] == dialect and x["name"] == name)


# -- 1. a session in each dialect --------------------------------------------------------------


def test_mt4_sim_legacy_session_tracks_answers_hist_and_trades(home: Path) -> None:
    with simulator(home, hold=True, start=JUNE) as run:
        # Arrange: tracking set before the replay starts
        client = run.client
        client.send("HEARTBEAT;")
        client.send("TRACK_PRICES;EURUSD;EURXYZ")
        client.send("TRACK_RATES;EURUSD;60")
        release(run)

        # Act: the replay at full speed, then the session's commands
        replies = [client.reply() for _ in range(3)]
        published = client.published()
        stored = load_series(run.settings, "EURUSD", Timeframe.H1).bars
        march = stored.filter(
            pl.col("ts").is_between(
                datetime(2017, 3, 14, 6, tzinfo=UTC), datetime(2017, 3, 14, 10, tzinfo=UTC)
            )
        )
        hist = _literal(client.ask("HIST;EURUSD;60;2017.03.14 09:00:00;2017.03.14 13:00:00"))
        empty = _literal(client.ask("HIST;EURUSD;60;2017.03.18 00:00:00;2017.03.18 23:00:00"))
        opened = _literal(client.ask("TRADE;OPEN;0;EURUSD;0;50;100;DWX_Python_to_MT;0.01;7;0"))
        ticket = opened["_ticket"]
        listed = _literal(client.ask("TRADE;GET_OPEN_TRADES;0;EURUSD;0;0;0;x;0.01;7;0"))
        closed = _literal(client.ask(f"TRADE;CLOSE;0;EURUSD;0;0;0;x;0.01;7;{ticket}"))
        account = _literal(client.ask("TRADE;GET_ACCOUNT_INFO;0;EURUSD;0;0;0;x;0.01;7;0"))
        summary = run.finish()

    # Assert: replies to HEARTBEAT and TRACK, exactly
    assert replies == [
        "{'_action': 'heartbeat', '_response': 'loud and clear!'}",
        "{'_action': 'TRACK_PRICES', '_data': {'symbol_count': 1, 'error_symbols': ['EURXYZ']}}",
        "{'_action': 'TRACK_RATES', '_data': {'instrument_count': 1, 'error_symbols': []}}",
    ]
    # quotes: the spread apart, changing from one to the next; bars of EURUSD_H1
    market = [parse_market(text) for text in published]
    quotes = [m for m in market if isinstance(m, Tick)][:2000]
    rates = [m for m in market if isinstance(m, Rate)]
    assert len(quotes) == 2000
    assert all(q.symbol == "EURUSD" and q.seq is None for q in quotes)
    assert all(round(q.ask - q.bid, 5) == SPREAD for q in quotes)
    assert all((a.bid, a.ask) != (b.bid, b.ask) for a, b in pairwise(quotes))
    assert rates and all((r.symbol, r.timeframe) == ("EURUSD", Timeframe.H1) for r in rates)
    # HIST before --from equals the stored bars on the broker clock; an empty range
    assert march.height == 5
    assert hist["_symbol"] == "EURUSD_H1"
    assert [(b["time"], b["open"], b["high"], b["low"], b["close"]) for b in hist["_data"]] == [
        (_broker_text(r["ts"]), r["open"], r["high"], r["low"], r["close"])
        for r in march.iter_rows(named=True)
    ]
    assert hist["_data"][0]["time"] == "2017.03.14 09:00"
    assert empty == {"_action": "HIST", "_symbol": "EURUSD_H1", "_response": "NOT_AVAILABLE"}
    # the trade: keys and types as the transcript's, listed, closed, in the history file
    assert _shape(opened) == _shape(_literal(_line("legacy", "open_market_buy")["reply"]))
    assert round(opened["_tp"] - opened["_open_price"], 5) == 0.001
    assert list(listed["_trades"]) == [ticket]
    assert listed["_trades"][ticket]["_symbol"] == "EURUSD"
    assert closed["_response"] == "CLOSE_MARKET" and closed["_ticket"] == ticket
    assert _shape(closed) == _shape(_literal(_line("legacy", "close_market")["reply"]))
    assert _shape(account) == _shape(_literal(_line("legacy", "get_account_info")["reply"]))
    assert isinstance(account["account_number"], int) and len(account["_data"]) == 1
    history = pl.read_parquet(summary.history)
    assert Path(summary.history).parent == run.settings.mt4_sim_dir(summary.run)
    assert history["ticket"].to_list() == [ticket]
    assert history["close_price"].to_list() == [closed["_close_price"]]
    assert summary.trades_closed == 1 and summary.ticks > 10_000


def test_mt4_sim_extended_dialect_echoes_ids_and_numbers_published_messages(home: Path) -> None:
    with simulator(home, hold=True, start=JUNE, end=datetime(2017, 7, 1, tzinfo=UTC)) as run:
        client = run.client
        client.send("#t-1;HELLO;1;tester")
        client.send("#t-2;TRACK_PRICES;EURUSD")
        client.send("#t-3;TRACK_RATES;EURUSD;60")
        release(run)

        hello, prices, rates = (_json(client.reply() or "") for _ in range(3))
        published = client.published()
        beat = client.ask("#t-4;HEARTBEAT;")
        run.finish()

    assert (hello["_request_id"], hello["_action"], hello["_response"]) == ("t-1", "HELLO", "OK")
    assert _shape(hello) == _shape(_json(_line("extended", "hello")["reply"]))
    assert prices == {
        "_request_id": "t-2", "_action": "TRACK_PRICES",
        "_data": {"symbol_count": 1, "error_symbols": []},
    }  # fmt: skip
    assert rates["_request_id"] == "t-3" and rates["_data"]["instrument_count"] == 1
    assert beat == '{"_request_id":"t-4","_action":"heartbeat","_response":"loud and clear!"}'
    market = [parse_market(text) for text in published]
    by_topic: dict[str, list[int]] = {}
    for m in market:
        topic = m.symbol if isinstance(m, Tick) else f"{m.symbol}_{m.timeframe.value}"
        assert m.seq is not None
        by_topic.setdefault(topic, []).append(m.seq)
    assert set(by_topic) == {"EURUSD", "EURUSD_H1"}
    for seqs in by_topic.values():
        assert seqs == list(range(1, len(seqs) + 1))
    # A closed bar carries the stored bar's volume, as HIST gives it
    closed = [m for m in market if isinstance(m, Rate) and m.bar.closed]
    stored = load_series(run.settings, "EURUSD", Timeframe.H1).bars
    volume = dict(zip(stored["ts"], stored["volume"], strict=True))
    assert closed
    assert [m.bar.tick_volume for m in closed] == [round(volume[m.bar.time]) for m in closed]


# -- 2. faults ---------------------------------------------------------------------------------

WEEK: dict[str, Any] = {"start": JUNE, "end": datetime(2017, 6, 3, tzinfo=UTC)}
OPEN = "TRADE;OPEN;0;EURUSD;0;50;100;DWX_Python_to_MT;0.01;123456;0"


def test_mt4_sim_drop_reply_fault_sends_no_reply(home: Path) -> None:
    with simulator(home, faults=("drop_reply=1",), **WEEK) as run:
        run.client.send("HEARTBEAT;")
        first = run.client.reply(0.5)
        run.client.send("HEARTBEAT;")
        second = run.client.reply(0.5)
        summary = run.finish()

    assert first is None and second is None
    assert summary.faults_struck == {"drop_reply": 2}


@pytest.mark.parametrize(
    ("fault", "code"), [("reject_trade=1", "138"), ("context_busy=1", "TRADE_CONTEXT_BUSY__")]
)
def test_mt4_sim_trade_faults_answer_with_the_ea_error(home: Path, fault: str, code: str) -> None:
    with simulator(home, faults=(fault,), **WEEK) as run:
        time.sleep(0.2)  # the replay gives the terminal its quotes
        reply = _literal(run.client.ask(OPEN))
        trades = _literal(run.client.ask("TRADE;GET_OPEN_TRADES;0;;0;0;0;;0;0;0"))

    assert reply == {"_action": "EXECUTION", "_response": code, "_response_value": "ERROR"}
    assert trades["_trades"] == {}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("duplicate_tick=1", [1, 1, 2, 2, 3, 3, 4, 4]), ("reorder_tick=1", [2, 1, 4, 3, 6, 5, 8, 7])],
)
def test_mt4_sim_tick_faults_show_in_the_sequence_numbers(
    home: Path, fault: str, expected: list[int]
) -> None:
    with simulator(home, hold=True, faults=(fault,), **WEEK) as run:
        run.client.send("#f-1;TRACK_PRICES;EURUSD")
        release(run)
        assert _json(run.client.reply() or "")["_request_id"] == "f-1"
        published = run.client.published()
        run.finish()

    seqs = [m.seq for m in map(parse_market, published)]
    assert len(seqs) > 50
    assert seqs[: len(expected)] == expected


@pytest.mark.parametrize(
    ("dialect", "name", "options"),
    [
        ("legacy", "open_trade_context_busy", {"faults": ("context_busy=1",)}),
        ("extended", "open_trade_context_busy", {"faults": ("context_busy=1",)}),
        ("legacy", "open_max_lot_size", {"max_lot_size": 1.0}),
    ],
)
def test_mt4_sim_given_lines_of_the_transcript(
    home: Path, dialect: str, name: str, options: dict[str, Any]
) -> None:
    line = _line(dialect, name)
    with simulator(home, **WEEK, **options) as run:
        time.sleep(0.2)
        got = run.client.ask(line["request"])

    assert got == line["reply"]


# -- 3. the transcript, key for key ------------------------------------------------------------

#: Replies compared exactly: they hold nothing that depends on prices, tickets or times.
EXACT = (
    "heartbeat", "hist_not_available", "track_prices_unknown_symbol", "track_prices_none",
    "track_rates", "open_not_enough_money", "close_unknown_ticket", "close_all_nothing_open",
    "get_open_trades_none",
)  # fmt: skip
#: What the sample desk lacks: lines naming these symbols are left out.
FOREIGN = ("USDJPY", "GBPUSD")


def _session_lines(dialect: str) -> list[dict[str, Any]]:
    keep = []
    for line in _transcript():
        if line["dialect"] != dialect or "request" not in line:
            continue
        if any(symbol in line["request"] for symbol in FOREIGN):
            continue
        if "given" in line and line["name"] not in (
            "open_not_enough_money",
            "close_unknown_ticket",
        ):
            continue
        keep.append(line)
    return keep


def _with_ticket(
    request: str, tickets: dict[int, int], opened: dict[int, float], client: Client
) -> str:
    # The transcript's tickets stand for ours: the n-th order it opened is our n-th, and the
    # rest of a partly closed order is our newest open one. MODIFY's PRICE is our open price.
    fields = request.split(";")
    verb_at = 1 if request.startswith("#") else 0
    if fields[verb_at] != "TRADE" or len(fields) != verb_at + 11 or not fields[-1].isdigit():
        return request
    ticket = int(fields[-1])
    if not ticket or ticket == 51230000:  # none, or the transcript's unknown ticket
        return request
    if ticket not in tickets:
        trades = _literal_or_json(client.ask(_open_trades_request(request)))["_trades"]
        tickets[ticket] = max(t for t in trades if t not in tickets.values())
        opened[tickets[ticket]] = trades[tickets[ticket]]["_open_price"]
    ours = tickets[ticket]
    fields[-1] = str(ours)
    if fields[verb_at + 1] == "MODIFY" and float(fields[verb_at + 4]):
        fields[verb_at + 4] = repr(opened[ours])
    return ";".join(fields)


def _stand_ins(line: dict[str, Any], read: Any, client: Client, k: int) -> None:
    # A bulk close whose transcript reply closed orders in symbols the desk lacks: open
    # EURUSD orders of the same magic numbers first, so there is something to close.
    entries = read(line["reply"]).get("_responses") or {}
    for n, entry in enumerate(entries.values()):
        if line["request"].startswith("#"):
            head, comment = f"#s{k}-{n};", f"c170314100599-{k:08d}{n:02d}"
        else:
            head, comment = "", "stand-in"
        lots, magic = entry["_close_lots"], entry["_magic"]
        reply = client.ask(f"{head}TRADE;OPEN;0;EURUSD;0;0;0;{comment};{lots};{magic};0")
        assert _literal_or_json(reply)["_action"] == "EXECUTION", reply


def _open_trades_request(request: str) -> str:
    if request.startswith("#"):
        return "#probe;TRADE;GET_OPEN_TRADES;0;;0;0;0;;0;0;0"
    return "TRADE;GET_OPEN_TRADES;0;;0;0;0;;0;0;0"


def _literal_or_json(text: str) -> dict[str, Any]:
    return _json(text) if text.startswith('{"') else _literal(text)


def test_mt4_sim_replies_match_the_transcript_in_both_dialects(home: Path) -> None:
    # The session's day: the replay stops at 13:00 on 2017-03-14, broker clock (10:00 UTC).
    end = datetime(2017, 3, 14, 10, tzinfo=UTC)
    compared: list[str] = []
    with simulator(home, start=datetime(2017, 3, 1, tzinfo=UTC), end=end) as run:
        time.sleep(0.3)  # the replay (some 200 bars) is over
        for dialect, read in (("legacy", _literal), ("extended", _json)):
            tickets: dict[int, int] = {}
            opened: dict[int, float] = {}
            for k, line in enumerate(_session_lines(dialect)):
                _stand_ins(line, read, run.client, k)
                request = _with_ticket(line["request"], tickets, opened, run.client)
                got_text = run.client.ask(request)
                expected = read(line["reply"])
                got = read(got_text)
                name = f"{dialect}:{line['name']}"
                if line.get("malformed") or line["name"] in EXACT:
                    assert got_text == line["reply"], name
                else:
                    assert _shape(got) == _shape(expected), name
                if got.get("_action") == "EXECUTION" and "_ticket" in expected:
                    tickets[expected["_ticket"]] = got["_ticket"]
                    opened[got["_ticket"]] = got["_open_price"]
                compared.append(name)

    assert len(compared) == 41  # 20 legacy lines, 21 extended


# -- 4. the command -------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    holders = [socket.socket() for _ in range(count)]
    try:
        for sock in holders:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in holders]
    finally:
        for sock in holders:
            sock.close()


def test_mt4_sim_command_prints_ready_within_5s_answers_and_exits_on_sigterm(home: Path) -> None:
    ports = _free_ports(3)
    args = [
        "mt4", "sim", "--symbols", "EURUSD", "--timeframe", "H1", "--spread", "1.0",
        "--ports", ",".join(map(str, ports)), "--speed", "max",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(
        [*solodesk_command(), *args], cwd=home.parent, env=solodesk_env(home),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 5.0)
        line = proc.stdout.readline() if readable else ""
        took = time.monotonic() - started
        push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
        push.connect(f"tcp://{HOST}:{ports[0]}")
        pull.connect(f"tcp://{HOST}:{ports[1]}")
        push.send_string("HEARTBEAT;")
        beat = pull.recv_string() if pull.poll(3000) else None
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        context.destroy(linger=0)

    assert json.loads(line) == {"ready": True, "ports": ports}, proc.stderr
    assert took <= 5.0
    assert beat == "{'_action': 'heartbeat', '_response': 'loud and clear!'}"
    assert code == 0

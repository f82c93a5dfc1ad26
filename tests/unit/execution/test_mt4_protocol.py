"""The MT4 bridge's wire protocol, against the transcript and on its own.

``tests/data/mt4/transcript.jsonl`` holds each command of both dialects next to its exact reply,
and a few published messages: every request must read to its typed command and be written back
to the same text, every reply and message likewise. Then the pieces one at a time: the
builders, the safe reading of replies (no code runs, whatever the text), the messages naming
the bad field, and MT4 times on the broker clock across New York's daylight-saving changes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.files import DATA_DIR, utc

from core.clocks import BROKER
from core.ids import client_order_id
from core.instruments import InstrumentRegistry
from core.timeframes import Timeframe
from core.types import Bar
from execution.brokers.mt4.protocol import (
    BAD_COMMAND,
    MAX_REPLY_CHARS,
    NOT_AVAILABLE,
    Dialect,
    GetHistoryCommand,
    HelloCommand,
    HistCommand,
    MT4Bar,
    OrderKind,
    ProtocolError,
    Rate,
    Tick,
    TradeAction,
    TradeCommand,
    account_reply,
    client_order_id_of,
    error_reply,
    format_command,
    format_rate,
    format_reply,
    format_tick,
    from_mt4_datetime,
    from_mt4_time_text,
    get_history_command,
    hello_command,
    hist_command,
    hist_reply,
    mt4_datetime,
    mt4_time_text,
    parse_command,
    parse_market,
    parse_reply,
    trade_command,
)

TRANSCRIPT = DATA_DIR / "mt4" / "transcript.jsonl"
LINES: list[dict[str, Any]] = [json.loads(line) for line in TRANSCRIPT.read_text().splitlines()]
EXCHANGES = [line for line in LINES if "request" in line]
WELL_FORMED = [line for line in EXCHANGES if not line.get("malformed")]
MALFORMED = [line for line in EXCHANGES if line.get("malformed")]
PUBLISHED = [line for line in LINES if "publish" in line]


def _ids(lines: list[dict[str, Any]]) -> list[str]:
    return [f"{line['dialect']}/{line['name']}" for line in lines]


# -- the transcript ---------------------------------------------------------------------------


def test_transcript_lines_have_unique_names_and_known_fields() -> None:
    # Arrange
    allowed = {"dialect", "name", "request", "reply", "publish", "given", "malformed"}

    # Act
    names = _ids(LINES)
    extra = [line["name"] for line in LINES if set(line) - allowed]

    # Assert
    assert len(names) == len(set(names))
    assert not extra
    assert {line["dialect"] for line in LINES} == {"legacy", "extended"}
    assert all(("request" in line) == ("reply" in line) != ("publish" in line) for line in LINES)


@pytest.mark.parametrize("dialect", ["legacy", "extended"])
def test_transcript_each_dialect_covers_every_command_and_reply_kind(dialect: str) -> None:
    # Arrange
    lines = [line for line in WELL_FORMED if line["dialect"] == dialect]
    commands = [parse_command(line["request"]) for line in lines]
    replies = [parse_reply(line["reply"], dialect) for line in lines]

    # Act
    actions = {c.action for c in commands if isinstance(c, TradeCommand)}
    kinds = {type(c).__name__ for c in commands}
    responses = {r.get("_response") for r in replies}
    responses |= {e["_response"] for r in replies for e in r.get("_responses", {}).values()}
    published = {
        type(parse_market(line["publish"])).__name__
        for line in PUBLISHED
        if line["dialect"] == dialect
    }

    # Assert
    assert actions == set(TradeAction)
    expected = {
        "TradeCommand",
        "HistCommand",
        "TrackPricesCommand",
        "TrackRatesCommand",
        "HeartbeatCommand",
    }
    if dialect == "extended":
        expected |= {"HelloCommand", "GetHistoryCommand"}
    assert kinds == expected
    assert {"CLOSE_MARKET", "CLOSE_PENDING", "CLOSE_PARTIAL", NOT_AVAILABLE} <= responses
    assert {"TRADE_CONTEXT_BUSY__", "NO_BROKER_CONNECTION__ABORTED_COMMAND", "4108"} <= responses
    assert any(r["_action"] == "CLOSE_ALL_MAGIC" for r in replies)
    assert any(line["dialect"] == dialect for line in MALFORMED)
    assert published == {"Tick", "Rate"}


@pytest.mark.parametrize("line", WELL_FORMED, ids=_ids(WELL_FORMED))
def test_transcript_request_parses_then_rebuilds_exact_text(line: dict[str, Any]) -> None:
    # Arrange
    text = line["request"]

    # Act
    command = parse_command(text)

    # Assert
    assert format_command(command) == text
    assert (command.request_id is not None) == (line["dialect"] == "extended")


@pytest.mark.parametrize("line", MALFORMED, ids=_ids(MALFORMED))
def test_transcript_malformed_request_raises_with_the_reply_s_action(line: dict[str, Any]) -> None:
    # Arrange
    reply = parse_reply(line["reply"], line["dialect"])

    # Act
    with pytest.raises(ProtocolError) as caught:
        parse_command(line["request"])

    # Assert
    assert reply["_response"] == BAD_COMMAND
    assert caught.value.verb == reply["_action"]
    assert caught.value.request_id == reply.get("_request_id")
    rebuilt = error_reply(caught.value.verb or "", BAD_COMMAND)
    assert (
        format_reply(rebuilt, line["dialect"], request_id=caught.value.request_id) == line["reply"]
    )


@pytest.mark.parametrize("line", EXCHANGES, ids=_ids(EXCHANGES))
def test_transcript_reply_parses_then_reformats_exact_text(line: dict[str, Any]) -> None:
    # Arrange
    text, dialect = line["reply"], line["dialect"]

    # Act
    reply = parse_reply(text, dialect)

    # Assert
    assert format_reply(reply, dialect) == text
    if dialect == "extended":
        assert reply["_request_id"] == line["request"][1:].partition(";")[0]


@pytest.mark.parametrize("line", PUBLISHED, ids=_ids(PUBLISHED))
def test_transcript_publish_parses_then_reformats_exact_text(line: dict[str, Any]) -> None:
    # Arrange
    text = line["publish"]
    registry = InstrumentRegistry.default()

    # Act
    message = parse_market(text)

    # Assert
    assert (message.seq is not None) == (line["dialect"] == "extended")
    digits = registry.get(message.symbol).digits
    if isinstance(message, Tick):
        assert (
            format_tick(message.symbol, message.bid, message.ask, digits, seq=message.seq) == text
        )
    else:
        rebuilt = format_rate(
            message.symbol, message.timeframe, message.bar, digits, seq=message.seq
        )
        assert rebuilt == text


def test_transcript_hist_reply_times_are_the_requested_bars_on_the_broker_clock() -> None:
    # Arrange
    line = next(x for x in WELL_FORMED if x["dialect"] == "legacy" and x["name"] == "hist_h1")
    command = parse_command(line["request"])
    assert isinstance(command, HistCommand)

    # Act
    start, end = command.utc_range()
    times = [from_mt4_time_text(bar["time"]) for bar in parse_reply(line["reply"])["_data"]]

    # Assert
    assert (start, end) == (utc(2017, 3, 14, 6), utc(2017, 3, 14, 8))
    assert times == [utc(2017, 3, 14, h) for h in (6, 7, 8)]


# -- commands ---------------------------------------------------------------------------------


def test_trade_command_open_gives_the_dwx_text() -> None:
    # Act
    text = trade_command("OPEN", 0, "EURUSD", 0, 50, 100, "c1234", 0.01, 123456, 0)

    # Assert
    assert text == "TRADE;OPEN;0;EURUSD;0;50;100;c1234;0.01;123456;0"


def test_parse_command_dwx_client_spelling_reads_the_same_command() -> None:
    # Arrange: the DWX client writes its default price as 0.0
    text = "TRADE;OPEN;1;EURUSD;0.0;500;500;DWX_Python_to_MT;0.01;123456;0"

    # Act
    command = parse_command(text)

    # Assert
    assert command == TradeCommand(
        action=TradeAction.OPEN,
        type=OrderKind.SELL,
        symbol="EURUSD",
        sl=500,
        tp=500,
        comment="DWX_Python_to_MT",
        lots=0.01,
        magic=123456,
    )
    assert format_command(command) == "TRADE;OPEN;1;EURUSD;0;500;500;DWX_Python_to_MT;0.01;123456;0"


def test_parse_command_hist_short_times_read_as_the_start_of_the_minute_or_day() -> None:
    # Act
    command = parse_command("HIST;EURUSD;1440;2017.03.01;2017.03.14 12:30")

    # Assert
    assert isinstance(command, HistCommand)
    assert command.timeframe is Timeframe.D1
    assert (command.start, command.end) == (datetime(2017, 3, 1), datetime(2017, 3, 14, 12, 30))


def test_hist_command_utc_instants_written_on_the_broker_clock() -> None:
    # Act: 06:00 UTC on 2017-03-14 is 09:00 on the broker clock (UTC+3 in US summer time)
    text = hist_command("EURUSD", "H1", utc(2017, 3, 14, 6), utc(2017, 3, 14, 8))

    # Assert
    assert text == "HIST;EURUSD;60;2017.03.14 09:00:00;2017.03.14 11:00:00"


def test_extended_builders_prefix_the_request_id() -> None:
    # Arrange
    coid = client_order_id(datetime(2017, 3, 14, 10, 0, 4, tzinfo=UTC), 1)

    # Act
    hello = hello_command("solodesk-a1b2", request_id="a1b2-1")
    history = get_history_command(
        utc(2017, 3, 13, 21), utc(2017, 3, 14, 20, 59), magic=7, request_id="a1b2-2"
    )
    opened = trade_command("OPEN", 0, "EURUSD", 0, 50, 100, coid, 0.01, 7, 0, request_id="r-3")

    # Assert
    assert hello == "#a1b2-1;HELLO;1;solodesk-a1b2"
    assert parse_command(hello) == HelloCommand(
        version=1, client_id="solodesk-a1b2", request_id="a1b2-1"
    )
    assert history == "#a1b2-2;GET_HISTORY;2017.03.14 00:00:00;2017.03.14 23:59:00;7"
    assert isinstance(parse_command(history), GetHistoryCommand)
    assert opened == f"#r-3;TRADE;OPEN;0;EURUSD;0;50;100;{coid};0.01;7;0"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("PING;1", "unknown command 'PING'"),
        ("TRADE;OPEN;0;EURUSD;0;50;100", "has 11 fields: got 7"),
        ("TRADE;OPEN;0;EURUSD;0;50;100;c;0,01;1;0", "LOTS '0,01' is not a number"),
        ("TRADE;OPEN;0;EURUSD;0;50;100;c;nan;1;0", "LOTS 'nan' is not a number"),
        ("TRADE;OPEN;0;EURUSD;0;-5;100;c;0.01;1;0", "SL '-5' must be a finite number"),
        ("TRADE;OPEN;9;EURUSD;0;50;100;c;0.01;1;0", "TYPE 9 is no MT4 order type"),
        ("TRADE;OPEN;x;EURUSD;0;50;100;c;0.01;1;0", "TYPE 'x' is not a whole number"),
        ("TRADE;OPEN;0;EURUSD;0;50;100;c;0.01;1.5;0", "MAGIC '1.5' is not a whole number"),
        ("TRADE;OPEN;0;EURUSD;0;50;100;c;0.01;1;-3", "TICKET -3 is negative"),
        ("TRADE;OPEN;0;EURUSD;0;50;100;c;0;1;0", "LOTS 0 must be above 0"),
        ("TRADE;BUY;0;EURUSD;0;50;100;c;0.01;1;0", "unknown TRADE ACTION 'BUY'"),
        ("TRADE;OPEN;0;;0;50;100;c;0.01;1;0", "SYMBOL is empty"),
        ("TRADE;OPEN;0;EURUSD;0;50;100;" + "x" * 32 + ";0.01;1;0", "MT4 keeps 31"),
        ("#r1;TRADE;OPEN;0;EURUSD;0;50;100;my order;0.01;1;0", "is not a client order id"),
        ("HIST;EURUSD;45;2017.03.14;2017.03.15", "TF_MINUTES 45 is no MT4 period"),
        ("HIST;EURUSD;H1;2017.03.14;2017.03.15", "TF_MINUTES 'H1' is not a number of minutes"),
        ("HIST;EURUSD;60;2017-03-14;2017.03.15", "START '2017-03-14' is not an MT4 time"),
        ("HIST;EURUSD;60;2017.03.14", "has 5 fields: got 4"),
        ("TRACK_RATES;EURUSD;60;USDJPY", "pairs: got 3 fields"),
        ("TRACK_PRICES;EURUSD;;USDJPY", "symbol 2 '' is not a symbol"),
        ("HEARTBEAT;now", "HEARTBEAT takes no fields"),
        ("HELLO;1;me", "start the command with #<request id>;"),
        ("#a b;HEARTBEAT;", "request id 'a b'"),
        ("#r1;HELLO;0;me", "VERSION 0 must be 1 or more"),
        ("#r1;GET_HISTORY;2017.03.14", "3 or 4 fields: got 2"),
        ("HEARTBEAT;" + "x" * 70_000, "the limit is 65536"),
        ("TRADE;OPEN;0;EURUSD;0;50;100;c\ufffd;0.01;1;0", "character 30 is not printable ASCII"),
        ("HEARTBEAT;\n", "character 10 is not printable ASCII"),
    ],
)
def test_parse_command_malformed_raises_naming_the_field(text: str, names: str) -> None:
    # Act
    with pytest.raises(ProtocolError) as caught:
        parse_command(text)

    # Assert
    assert names in str(caught.value)


def test_trade_command_long_comment_refused_rather_than_cut() -> None:
    # Act / Assert
    with pytest.raises(ProtocolError, match="MT4 keeps 31"):
        trade_command("OPEN", 0, "EURUSD", 0, 0, 0, "x" * 32, 0.01)


def test_client_order_id_of_comment_with_broker_suffix_gives_the_id() -> None:
    # Arrange
    coid = client_order_id(utc(2017, 3, 14, 10), 5)

    # Act / Assert
    assert client_order_id_of(coid + "[sl]") == coid
    assert client_order_id_of(coid) == coid
    assert client_order_id_of("DWX_Python_to_MT") is None


# -- replies ----------------------------------------------------------------------------------

_KEYS = st.one_of(st.text(max_size=12).filter(lambda k: not k.isdigit()), st.integers(0, 10**9))
_SCALARS = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=20,
)
_REPLY_KEYS = st.text(min_size=1, max_size=12).map(lambda k: f"_{k}")
_REPLY_KEYS = _REPLY_KEYS.filter(lambda k: k not in {"_action", "_request_id"})
_REPLIES = st.builds(
    lambda action, rest: {"_action": action, **rest},
    st.sampled_from(["EXECUTION", "CLOSE", "HIST", "OPEN_TRADES", "heartbeat"]),
    st.dictionaries(_REPLY_KEYS, _VALUES, max_size=6),
)


@settings(max_examples=60, deadline=None)
@given(reply=_REPLIES)
def test_reply_any_mapping_round_trips_in_the_legacy_dialect(reply: dict[str, Any]) -> None:
    # Act
    text = format_reply(reply)

    # Assert
    assert parse_reply(text) == reply
    assert format_reply(parse_reply(text)) == text


@settings(max_examples=60, deadline=None)
@given(reply=_REPLIES, request_id=st.from_regex(r"[A-Za-z0-9_.\-]{1,40}", fullmatch=True))
def test_reply_any_mapping_round_trips_in_the_extended_dialect(
    reply: dict[str, Any], request_id: str
) -> None:
    # Act
    text = format_reply(reply, Dialect.EXTENDED, request_id=request_id)

    # Assert
    assert parse_reply(text, Dialect.EXTENDED) == {"_request_id": request_id, **reply}
    assert format_reply(parse_reply(text, "extended"), "extended") == text


def test_format_reply_writes_python_literals_the_ea_way() -> None:
    # Arrange
    reply = {
        "_action": "X",
        "_ticket": 51234567,
        "_price": 1.0,
        "_note": "it's",
        "_list": [],
        "_map": {51234567: {"_a": -0.5}},
    }

    # Act
    text = format_reply(reply)

    # Assert
    assert text == (
        "{'_action': 'X', '_ticket': 51234567, '_price': 1.0, '_note': 'it\\'s', "
        "'_list': [], '_map': {51234567: {'_a': -0.5}}}"
    )


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo owned')",
        "{'_action': __import__('os').getcwd()}",
        "{'_action': 'X', 'a': open('/etc/passwd').read()}",
        "{'_action': 'X', 'a': os}",
        "(lambda: 1)()",
        "{'_action': 'X', 'a': [x for x in range(3)]}",
        "{'_action': 'X', 'a': (1, 2)}",
        "{'_action': 'X', 'a': {1, 2}}",
        "{'_action': 'X', 'a': 1+2j}",
        "{'_action': 'X', 'a': b'bytes'}",
        "{'_action': 'X', 'a': None}",
        "{'_action': True}",
        "{'_action': 'X', True: 1}",
        "{'_ticket': 1}",
        "['_action', 'X']",
        "{'_action': 'X'",
        "[" * 5000 + "]" * 5000,
        "{'_action': 'X', 'a': '" + "x" * MAX_REPLY_CHARS + "'}",
    ],
)
def test_parse_reply_refuses_anything_but_a_literal_reply(text: str) -> None:
    # Act / Assert
    with pytest.raises(ProtocolError):
        parse_reply(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"_request_id":"r1","_action":"X","a":NaN}',
        '{"_request_id":"r1","_action":"X","a":Infinity}',
        '{"_request_id":"r1","_action":"X","a":true}',
        '{"_request_id":"r1","_action":"X","a":null}',
        '{"_request_id":"r1","_action":"X","a":1,"a":2}',
        '{"_action":"X"}',
        "{'_request_id': 'r1', '_action': 'X'}",
    ],
)
def test_parse_reply_extended_refuses_what_the_dialect_never_writes(text: str) -> None:
    # Act / Assert
    with pytest.raises(ProtocolError):
        parse_reply(text, Dialect.EXTENDED)


def test_parse_reply_limit_is_a_parameter() -> None:
    # Act / Assert
    with pytest.raises(ProtocolError, match="the limit is 10"):
        parse_reply("{'_action': 'heartbeat'}", max_chars=10)


@pytest.mark.parametrize(
    ("reply", "dialect", "request_id"),
    [
        ({"_action": "X", "a": True}, "legacy", None),
        ({"_action": "X", "a": None}, "legacy", None),
        ({"_action": "X", "a": float("nan")}, "legacy", None),
        ({"_action": "X", "a": (1, 2)}, "legacy", None),
        ({"a": 1}, "legacy", None),
        ({"_action": "X"}, "legacy", "r1"),
        ({"_action": "X"}, "extended", None),
        ({"_action": "X", "_trades": {"51234567": {}}}, "extended", "r1"),
    ],
)
def test_format_reply_refuses_what_cannot_be_read_back(
    reply: dict[str, Any], dialect: str, request_id: str | None
) -> None:
    # Act / Assert
    with pytest.raises(ProtocolError):
        format_reply(reply, dialect, request_id=request_id)


def test_account_reply_keeps_the_number_on_top_and_one_element_data() -> None:
    # Act
    reply = account_reply(
        account_number=2090117,
        current_time=datetime(2017, 3, 14, 9, 3, 20, tzinfo=UTC),
        name="Solo Trader",
        balance=10000.0,
        equity=10000.0,
        profit=0.0,
        free_margin=10000.0,
        leverage=30,
    )

    # Assert
    assert list(reply) == ["_action", "account_number", "_data"]
    assert len(reply["_data"]) == 1
    assert reply["_data"][0]["currenttime"] == "2017.03.14 12:03"


def test_hist_reply_without_bars_says_not_available() -> None:
    # Act
    reply = hist_reply("EURUSD", Timeframe.H1, [])

    # Assert
    assert reply == {"_action": "HIST", "_symbol": "EURUSD_H1", "_response": NOT_AVAILABLE}


# -- market data ------------------------------------------------------------------------------


def test_format_tick_writes_the_instrument_s_digits() -> None:
    # Act / Assert
    assert format_tick("USDJPY", 115.16, 115.169, 3) == "USDJPY:|:115.160;115.169"
    assert format_tick("EURUSD", 1.1, 1.10011, 5, seq=7) == "EURUSD:|:7:|:1.10000;1.10011"


def test_mt4_bar_from_stored_bar_takes_spread_in_points() -> None:
    # Arrange
    bar = Bar(
        ts=utc(2017, 3, 14, 9),
        open=1.06379,
        high=1.06482,
        low=1.06328,
        close=1.0647200000000001,
        volume=2875.0,
        spread=0.00008,
    )

    # Act
    mt4 = MT4Bar.from_bar(bar, 5)

    # Assert
    assert (mt4.close, mt4.tick_volume, mt4.spread) == (1.06472, 2875, 8)
    assert format_rate("EURUSD", Timeframe.H1, mt4, 5) == (
        "EURUSD_H1:|:1489492800;1.06379;1.06482;1.06328;1.06472;2875;8;0"
    )


def test_format_rate_closed_bar_in_legacy_dialect_refused() -> None:
    # Arrange
    bar = MT4Bar(time=utc(2017, 3, 14, 9), open=1, high=1, low=1, close=1, closed=True)

    # Act / Assert
    with pytest.raises(ProtocolError, match="no closed flag"):
        format_rate("EURUSD", Timeframe.H1, bar, 5)


def test_parse_market_extended_rate_reads_seq_and_closed_flag() -> None:
    # Act
    rate = parse_market("EURUSD_H1:|:41:|:1489492800;1.06379;1.06482;1.06328;1.06472;2875;8;0;1")

    # Assert
    assert isinstance(rate, Rate)
    assert (rate.symbol, rate.timeframe, rate.seq) == ("EURUSD", Timeframe.H1, 41)
    assert rate.bar.closed
    assert rate.bar.time == utc(2017, 3, 14, 9)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("EURUSD:|:1.1", "a quote has 2 fields"),
        ("EURUSD:|:1.1;x", "ask 'x' is not a number"),
        ("EURUSD:|:0:|:1.1;1.2", "sequence number '0'"),
        ("EURUSD_H7:|:1489492800;1;1;1;1;1;8;0", "is not SYMBOL_TF"),
        ("EURUSD_H1:|:1489492800;1;1;1;1;-1;8;0", "tick_volume '-1' is not a count"),
        ("EURUSD_H1:|:3:|:1489492800;1;1;1;1;1;8;0;2", "closed flag '2'"),
        ("EURUSD 1.1;1.2", "is not TOPIC:|:PAYLOAD"),
    ],
)
def test_parse_market_malformed_raises_naming_the_field(text: str, names: str) -> None:
    # Act / Assert
    with pytest.raises(ProtocolError, match=names.replace("|", r"\|")):
        parse_market(text)


# -- MT4 times --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "walls"),
    [
        # 2017-03-12 02:00 New York becomes 03:00: the broker clock jumps from 08:59:59 to 10:00
        (
            utc(2017, 3, 12, 6, 59) + timedelta(seconds=59),
            utc(2017, 3, 12, 7),
            ("2017.03.12 08:59:59", "2017.03.12 10:00:00"),
        ),
        # 2017-11-05 02:00 New York becomes 01:00: the broker clock goes back from 08:59:59 to 08:00
        (
            utc(2017, 11, 5, 5, 59) + timedelta(seconds=59),
            utc(2017, 11, 5, 6),
            ("2017.11.05 08:59:59", "2017.11.05 08:00:00"),
        ),
    ],
)
def test_mt4_datetime_across_a_dst_change_follows_new_york(
    before: datetime, after: datetime, walls: tuple[str, str]
) -> None:
    # Act
    seconds = (mt4_datetime(before), mt4_datetime(after))
    texts = (mt4_time_text(before), mt4_time_text(after))

    # Assert
    assert texts == walls
    assert seconds[1] - seconds[0] == (3601 if after.month == 3 else -3599)
    assert from_mt4_datetime(seconds[0]) == before
    # the hour repeated in November reads as its first pass, an hour earlier
    assert from_mt4_datetime(seconds[1]) == after - timedelta(hours=after.month == 11)


def test_mt4_datetime_equals_the_broker_clock_of_core_clocks() -> None:
    # Arrange: every 20 minutes over the two weeks around each change of 2017
    starts = (utc(2017, 3, 5), utc(2017, 10, 29))
    instants = [s + timedelta(minutes=20 * k) for s in starts for k in range(14 * 72)]
    frame = pl.DataFrame({"ts": instants}, schema={"ts": pl.Datetime("us", "UTC")})

    # Act
    ours = [mt4_datetime(t) for t in instants]
    scalar = [int((BROKER.local_at(t) - datetime(1970, 1, 1)).total_seconds()) for t in instants]
    walls = frame.select(BROKER.from_utc(pl.col("ts")).alias("wall"))["wall"].to_list()

    # Assert
    assert ours == scalar
    assert [mt4_time_text(t) for t in instants] == [w.strftime("%Y.%m.%d %H:%M:%S") for w in walls]


def test_from_mt4_datetime_ambiguous_hour_takes_the_earlier_instant() -> None:
    # Arrange: 08:30 on 2017-11-05 happens twice on the broker clock
    seconds = mt4_datetime(utc(2017, 11, 5, 6, 30))

    # Act
    instant = from_mt4_datetime(seconds)

    # Assert
    assert instant == utc(2017, 11, 5, 5, 30)
    assert instant == BROKER.utc_at(datetime(2017, 11, 5, 8, 30))


def test_from_mt4_time_text_reads_each_form_on_the_clock_given() -> None:
    # Act / Assert
    assert from_mt4_time_text("2017.03.14 12:00:07") == datetime(2017, 3, 14, 9, 0, 7, tzinfo=UTC)
    assert from_mt4_time_text("2017.01.02 00:00") == utc(2017, 1, 1, 22)
    assert from_mt4_time_text("2017.01.02", "UTC") == utc(2017, 1, 2)
    with pytest.raises(ProtocolError, match="is not an MT4 time"):
        from_mt4_time_text("2017-01-02")

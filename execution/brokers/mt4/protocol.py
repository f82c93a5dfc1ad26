"""The MT4 bridge's wire protocol: commands, replies and published market data, in two dialects.

Pure code: text in, typed values out, and back. No socket, no thread, no file.

Sockets
-------
The expert advisor (EA) binds three ZeroMQ sockets
(:data:`execution.brokers.mt4.sockets.DEFAULT_PORTS`): PULL on 32768 for commands, PUSH on 32769
for replies, PUB on 32770 for market data. One command gets one reply. Commands are printable
ASCII; text holding anything else is a bad command.

The legacy dialect (DWX ZeroMQ v2.0.1)
--------------------------------------
What clients written for the DWX expert advisor send and expect, unchanged.

Commands are ``;``-separated text:

- ``TRADE;ACTION;TYPE;SYMBOL;PRICE;SL;TP;COMMENT;LOTS;MAGIC;TICKET``, always eleven fields.
  ACTION is one of :class:`TradeAction`; TYPE an MT4 order type (:class:`OrderKind`: 0 buy,
  1 sell, 2 buy limit, 3 sell limit, 4 buy stop, 5 sell stop); PRICE 0 for a market order; SL
  and TP in points from the price (0 for none): from the fill price for OPEN, and for MODIFY from
  PRICE when it is not 0, else from the order's open price; LOTS the volume (for CLOSE_PARTIAL,
  the volume to close); MAGIC the magic number (for CLOSE_MAGIC, the one whose orders close);
  TICKET the order (MODIFY, CLOSE, CLOSE_PARTIAL). Fields an action does not use are sent
  anyway and ignored. COMMENT holds at most 31 characters (MT4's limit; a longer one is refused
  rather than cut).
- ``HIST;SYMBOL;TF_MINUTES;START;END``: bars of SYMBOL whose open lies in [START, END], both
  ``YYYY.MM.DD[ HH:MM[:SS]]`` on the broker clock; TF_MINUTES an MT4 period (1 ... 43200).
- ``TRACK_PRICES;SYM;SYM...``: publish these symbols' quotes (replaces the list; none stops).
- ``TRACK_RATES;SYM;TF;SYM;TF...``: publish these symbols' bars (replaces the list).
- ``HEARTBEAT;``.

Replies are Python literals, because existing clients ``eval`` them: single-quoted strings,
numbers bare (shortest form that reads back to the same float), no ``True``/``False``/``None``,
tickets as bare integers (also as the keys of ``_trades`` and ``_responses``). Times are text on
the broker clock: ``YYYY.MM.DD HH:MM:SS`` for orders, ``YYYY.MM.DD HH:MM`` for bars and the
account's ``currenttime``. solodesk reads replies with :func:`ast.literal_eval` on bounded
input (:func:`parse_reply`), never with ``eval``. The builders (:func:`heartbeat_reply`,
:func:`execution_reply`, ...) return each reply's mapping key for key; :func:`format_reply`
writes it. Prices are written as given: round them to the instrument's digits first. A failed
command is answered ``{'_action': ..., '_response': CODE, '_response_value': 'ERROR'}``
(:func:`error_reply`), ``_action`` being the one success would carry; CODE is one of the EA's
codes (:data:`TRADE_CONTEXT_BUSY`, :data:`NO_BROKER_CONNECTION`, ...) or an MT4 error number
(:class:`MT4Error`) as text. A command that cannot be read is answered with :data:`BAD_COMMAND`
and its first field as ``_action``.

Market data on PUB: ``SYMBOL:|:bid;ask`` when the bid or the ask changes, prices with the
instrument's digits (:func:`format_tick`); ``SYMBOL_TF:|:time;open;high;low;close;tick_volume;
spread;real_volume`` when a bar opens (:func:`format_rate`), ``time`` its open as an MT4
datetime (seconds since 1970 on the broker clock, :func:`mt4_datetime`), ``spread`` in points.

The extended dialect (version :data:`PROTOCOL_VERSION`)
-------------------------------------------------------
The same commands and reply keys, plus what a client needs to never lose or duplicate anything.

- **Handshake.** The client sends ``#<request id>;HELLO;<version>;<client id>``. A server that
  speaks the extended dialect answers (JSON) with ``_action`` ``HELLO``, ``_response`` ``OK``,
  ``_version`` (the lower of the client's and its own), ``_client_id`` echoed, ``_features``
  (:data:`FEATURES`), ``_server_time`` (the terminal's server time, to the second) and
  ``_gmt_time`` (UTC by the terminal's own computer, MQL4's ``TimeGMT()``, ``YYYY.MM.DD
  HH:MM:SS``): the client reads the second on its ``[mt4] clock`` setting and refuses to trade
  when it is more than a minute from the first. A legacy EA ignores the command: no answer within the client's
  timeout means the legacy dialect.
- **Request ids.** Every extended command starts ``#<request id>;`` (1 to 40 characters of
  ``A-Z a-z 0-9 _ . -``; the client makes them unique, e.g. its client id and a counter). Its
  reply is a JSON object (compact, UTF-8) whose first key is ``_request_id``, the id echoed; the
  other keys are the legacy reply's, ticket keys written as JSON strings of digits and read back
  as integers. Commands without the prefix are answered in the legacy dialect, so one EA serves
  clients of both dialects.
- **Client order ids.** ``TRADE;OPEN`` carries the runtime's client order id
  (:func:`core.ids.client_order_id`, 24 characters) as its COMMENT, nothing else: it fits
  MT4's 31 characters with room for what brokers append. :func:`client_order_id_of` reads it
  back from a comment a broker may have extended.
- **Trade history.** ``GET_HISTORY;START;END[;MAGIC]`` (times as for HIST, on the close time)
  answers ``_action`` ``HISTORY`` with ``_trades`` {ticket: closed trade} (:func:`closed_trade`),
  or ``'_response': 'NOT_AVAILABLE'`` when none closed in the range.
- **Published messages** carry a sequence number per topic: ``TOPIC:|:SEQ:|:PAYLOAD``. SEQ
  starts at 1 for each topic when a TRACK command starts publishing it and grows by one per
  message, so a gap is a lost message and a 1 a restart. The dialect of what is published
  follows the TRACK command that set the list. Rate payloads end with a ``closed`` flag
  (``1``/``0``): when a bar closes the EA publishes it whole (flag 1), then the bar that has
  just opened (flag 0).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any, Final, TypeAlias

from pydantic import Field, field_validator

from core.clocks import BROKER, Clock, parse_clock
from core.errors import SolodeskError, UsageError
from core.ids import CLIENT_ORDER_ID_MAX, is_client_order_id
from core.timeframes import Timeframe, parse_timeframe
from core.times import MT4_DAY, MT4_MINUTES, MT4_SECONDS
from core.types import Bar, Frozen

#: The extended dialect's version this module speaks.
PROTOCOL_VERSION: Final = 1
#: What a server speaking the extended dialect offers (``_features`` of the HELLO reply).
FEATURES: Final = (
    "request_id",
    "json_replies",
    "sequence",
    "closed_bars",
    "client_order_id",
    "trade_history",
)
#: The longest reply text :func:`parse_reply` reads (a HIST reply of some 25,000 bars).
MAX_REPLY_CHARS: Final = 4_000_000
#: The longest command text :func:`parse_command` reads.
MAX_COMMAND_CHARS: Final = 65_536
#: The longest order comment MT4 keeps.
MT4_COMMENT_MAX: Final = 31
#: Between the topic, the sequence number and the payload of a published message.
TOPIC_SEPARATOR: Final = ":|:"
_MT4_EPOCH = datetime(1970, 1, 1)

# -- the EA's reply codes ---------------------------------------------------------------------

#: The heartbeat's answer.
HEARTBEAT_RESPONSE: Final = "loud and clear!"
#: ``_response_value`` of a command that failed, and of one that succeeded.
ERROR: Final = "ERROR"
SUCCESS: Final = "SUCCESS"
#: Another expert advisor holds MT4's trade context: retry later.
TRADE_CONTEXT_BUSY: Final = "TRADE_CONTEXT_BUSY__"
#: The terminal has no connection to the broker's server: the command was not tried.
NO_BROKER_CONNECTION: Final = "NO_BROKER_CONNECTION__ABORTED_COMMAND"
#: HIST (or GET_HISTORY) found nothing in the range: ``_response`` instead of ``_data``.
NOT_AVAILABLE: Final = "NOT_AVAILABLE"
#: The command could not be read (unknown verb, wrong field count, bad number).
BAD_COMMAND: Final = "BAD_COMMAND"
#: The EA's ``MaximumOrders`` input forbids another open order.
MAX_ORDERS_REACHED: Final = "MAX_ORDERS_REACHED"
#: The EA's ``MaximumLotSize`` input forbids an order this large.
MAX_LOT_SIZE_EXCEEDED: Final = "MAX_LOT_SIZE_EXCEEDED"

_REQUEST_ID = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
_SYMBOL = re.compile(r"[A-Za-z0-9_.#+\-]{1,32}")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_DIGITS = re.compile(r"\d+")


class ProtocolError(SolodeskError):
    """A command, reply or published message that does not follow the protocol.

    ``request_id`` is the extended command's id and ``verb`` its first field when they could
    be read, so a server can still answer :func:`error_reply` with :data:`BAD_COMMAND`.
    """

    def __init__(
        self, message: str, *, request_id: str | None = None, verb: str | None = None
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.verb = verb


class Dialect(StrEnum):
    """The two dialects: DWX v2.0.1 (Python-literal replies) and the extended one (JSON)."""

    LEGACY = "legacy"
    EXTENDED = "extended"


class TradeAction(StrEnum):
    """The second field of a ``TRADE`` command."""

    OPEN = "OPEN"
    MODIFY = "MODIFY"
    CLOSE = "CLOSE"
    CLOSE_PARTIAL = "CLOSE_PARTIAL"
    CLOSE_MAGIC = "CLOSE_MAGIC"
    CLOSE_ALL = "CLOSE_ALL"
    GET_OPEN_TRADES = "GET_OPEN_TRADES"
    GET_ACCOUNT_INFO = "GET_ACCOUNT_INFO"


class OrderKind(IntEnum):
    """MT4's order types (``OP_BUY`` ... ``OP_SELLSTOP``): the TYPE field and ``_type``."""

    BUY = 0
    SELL = 1
    BUY_LIMIT = 2
    SELL_LIMIT = 3
    BUY_STOP = 4
    SELL_STOP = 5

    @property
    def is_pending(self) -> bool:
        """Return whether the order waits for its price (limit and stop orders)."""
        return self >= OrderKind.BUY_LIMIT


class CloseResponse(StrEnum):
    """``_response`` of a successful close: a market order, a pending order, part of an order."""

    CLOSE_MARKET = "CLOSE_MARKET"
    CLOSE_PENDING = "CLOSE_PENDING"
    CLOSE_PARTIAL = "CLOSE_PARTIAL"


class MT4Error(IntEnum):
    """MT4's trade server error numbers (``GetLastError``) the EA passes on as ``_response``."""

    COMMON_ERROR = 2
    SERVER_BUSY = 4
    NO_CONNECTION = 6
    TRADE_TIMEOUT = 128
    INVALID_PRICE = 129
    INVALID_STOPS = 130
    INVALID_TRADE_VOLUME = 131
    MARKET_CLOSED = 132
    TRADE_DISABLED = 133
    NOT_ENOUGH_MONEY = 134
    PRICE_CHANGED = 135
    OFF_QUOTES = 136
    REQUOTE = 138
    TRADE_CONTEXT_BUSY = 146
    TOO_MANY_ORDERS = 148
    UNKNOWN_SYMBOL = 4106
    INVALID_TICKET = 4108


# -- MT4 times --------------------------------------------------------------------------------


def mt4_datetime(utc: datetime, clock: str | Clock = BROKER) -> int:
    """Return an MT4 datetime: seconds since 1970-01-01 00:00 on ``clock``'s wall time.

    MT4 counts time on its server's clock as if it were UTC; this is the wall time
    :meth:`core.clocks.Clock.local_at` gives, counted in whole seconds (earlier for a fraction).
    A naive ``utc`` is taken to be UTC.
    """
    wall = parse_clock(clock).local_at(utc)
    return (wall - _MT4_EPOCH) // timedelta(seconds=1)


def from_mt4_datetime(seconds: int, clock: str | Clock = BROKER) -> datetime:
    """Return the UTC instant of an MT4 datetime on ``clock`` (see :func:`mt4_datetime`).

    A wall time that is repeated when the clock goes back takes the earlier instant, and one
    that does not exist is read with the offset before the change, as
    :meth:`core.clocks.Clock.utc_at` does.
    """
    return parse_clock(clock).utc_at(_MT4_EPOCH + timedelta(seconds=seconds))


def mt4_time_text(utc: datetime, clock: str | Clock = BROKER, *, seconds: bool = True) -> str:
    """Return an instant as MT4 writes it on ``clock``: ``2017.03.14 12:00:07``.

    With ``seconds=False`` the seconds are left out (``2017.03.14 12:00``), as for bar times.
    """
    wall = parse_clock(clock).local_at(utc)
    return wall.strftime(MT4_SECONDS if seconds else MT4_MINUTES)


def from_mt4_time_text(text: str, clock: str | Clock = BROKER) -> datetime:
    """Return the UTC instant of ``YYYY.MM.DD[ HH:MM[:SS]]`` written on ``clock``.

    Raises
    ------
    ProtocolError
        If ``text`` has none of these forms.
    """
    return parse_clock(clock).utc_at(_wall_time(text, "time"))


def _wall_time(text: str, field: str) -> datetime:
    for pattern in (MT4_SECONDS, MT4_MINUTES, MT4_DAY):
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    msg = f"{field} {text!r} is not an MT4 time: write YYYY.MM.DD HH:MM:SS (or HH:MM, or the day)"
    raise ProtocolError(msg)


def client_order_id_of(comment: str) -> str | None:
    """Return the client order id an order comment starts with, or None.

    Brokers may append to a comment (``[sl]``, ``[tp]``, a partial close's note) but keep its
    start, so an order sent in the extended dialect is found again by its first 24 characters.
    """
    head = comment[:CLIENT_ORDER_ID_MAX]
    return head if is_client_order_id(head) else None


# -- commands ---------------------------------------------------------------------------------


class TradeCommand(Frozen):
    """``TRADE;ACTION;TYPE;SYMBOL;PRICE;SL;TP;COMMENT;LOTS;MAGIC;TICKET``.

    ``sl`` and ``tp`` are in points from the price (0 for none); ``request_id`` is set in the
    extended dialect only.
    """

    action: TradeAction
    type: OrderKind = OrderKind.BUY
    symbol: str = ""
    price: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    sl: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    tp: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    comment: str = ""
    lots: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    magic: int = 0
    ticket: int = Field(default=0, ge=0)
    request_id: str | None = None


class HistCommand(Frozen):
    """``HIST;SYMBOL;TF_MINUTES;START;END``: ``start`` and ``end`` are naive broker-clock wall
    times (see :meth:`utc_range`)."""

    symbol: str
    timeframe: Timeframe
    start: datetime
    end: datetime
    request_id: str | None = None

    def utc_range(self, clock: str | Clock = BROKER) -> tuple[datetime, datetime]:
        """Return START and END as UTC instants, read on ``clock``."""
        reader = parse_clock(clock)
        return reader.utc_at(self.start), reader.utc_at(self.end)


class TrackPricesCommand(Frozen):
    """``TRACK_PRICES;SYM;SYM...``: the symbols whose quotes are published (none: stop)."""

    symbols: tuple[str, ...] = ()
    request_id: str | None = None


class TrackRatesCommand(Frozen):
    """``TRACK_RATES;SYM;TF;SYM;TF...``: the (symbol, timeframe) pairs whose bars are published."""

    rates: tuple[tuple[str, Timeframe], ...] = ()
    request_id: str | None = None


class HeartbeatCommand(Frozen):
    """``HEARTBEAT;``."""

    request_id: str | None = None


class HelloCommand(Frozen):
    """``#<id>;HELLO;<version>;<client id>``: the extended dialect's handshake."""

    version: int = Field(ge=1)
    client_id: str
    request_id: str


class GetHistoryCommand(Frozen):
    """``#<id>;GET_HISTORY;START;END[;MAGIC]``: trades closed in [START, END] (naive broker-clock
    wall times), of one magic number or of all."""

    start: datetime
    end: datetime
    magic: int | None = None
    request_id: str

    def utc_range(self, clock: str | Clock = BROKER) -> tuple[datetime, datetime]:
        """Return START and END as UTC instants, read on ``clock``."""
        reader = parse_clock(clock)
        return reader.utc_at(self.start), reader.utc_at(self.end)


Command: TypeAlias = (
    TradeCommand
    | HistCommand
    | TrackPricesCommand
    | TrackRatesCommand
    | HeartbeatCommand
    | HelloCommand
    | GetHistoryCommand
)
_EXTENDED_ONLY = ("HELLO", "GET_HISTORY")
_VERBS = ("TRADE", "HIST", "TRACK_PRICES", "TRACK_RATES", "HEARTBEAT", *_EXTENDED_ONLY)
_TRADE_FIELDS = (
    "TRADE",
    "ACTION",
    "TYPE",
    "SYMBOL",
    "PRICE",
    "SL",
    "TP",
    "COMMENT",
    "LOTS",
    "MAGIC",
    "TICKET",
)
_AMOUNTS = ("PRICE", "SL", "TP", "LOTS")
_AMOUNT_AT = tuple((name, _TRADE_FIELDS.index(name)) for name in _AMOUNTS)
_ORDER_KINDS = frozenset(int(k) for k in OrderKind)
_COUNTS = ("tick_volume", "spread", "real_volume")


def _number_text(value: float) -> str:
    # Positional, shortest digits that read back to the same float: 0, 0.01, 1.06387, 500.
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _prefix(request_id: str | None) -> str:
    return "" if request_id is None else f"#{request_id};"


def _check_command(command: Command) -> None:
    # The rules a well-formed command keeps whichever way it was made.
    request_id = command.request_id
    if request_id is not None and not _REQUEST_ID.fullmatch(request_id):
        msg = f"request id {request_id!r}: use 1 to 40 characters of A-Z a-z 0-9 _ . -"
        raise ProtocolError(msg)
    if isinstance(command, TradeCommand):
        _check_trade(command)
    elif isinstance(command, HistCommand):
        _check_symbol(command.symbol, "SYMBOL")
    elif isinstance(command, TrackPricesCommand):
        for k, symbol in enumerate(command.symbols, start=1):
            _check_symbol(symbol, f"symbol {k}")
    elif isinstance(command, TrackRatesCommand):
        for k, (symbol, _) in enumerate(command.rates, start=1):
            _check_symbol(symbol, f"symbol {k}")
    elif isinstance(command, HelloCommand) and not _CLIENT_ID.fullmatch(command.client_id):
        msg = f"client id {command.client_id!r}: use 1 to 40 characters of A-Z a-z 0-9 _ . -"
        raise ProtocolError(msg)


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _check_symbol(symbol: str, field: str) -> None:
    if not _SYMBOL.fullmatch(symbol):
        msg = f"{field} {symbol!r} is not a symbol: use 1 to 32 letters, digits or _ . # + -"
        raise ProtocolError(msg)


def _check_trade(command: TradeCommand) -> None:
    if command.symbol:
        _check_symbol(command.symbol, "SYMBOL")
    elif command.action in {TradeAction.OPEN, TradeAction.MODIFY}:
        msg = f"TRADE;{command.action}: SYMBOL is empty: name the instrument"
        raise ProtocolError(msg)
    comment = command.comment
    if ";" in comment or len(comment) > MT4_COMMENT_MAX or not _printable_ascii(comment):
        msg = (
            f"COMMENT {comment!r} is {len(comment)} characters: MT4 keeps "
            f"{MT4_COMMENT_MAX}, of printable ASCII without ';'"
        )
        raise ProtocolError(msg)
    if (
        command.request_id is not None
        and command.action is TradeAction.OPEN
        and not is_client_order_id(command.comment)
    ):
        msg = (
            f"COMMENT {command.comment!r} of an extended TRADE;OPEN is not a client order id: "
            "send core.ids.client_order_id (24 characters)"
        )
        raise ProtocolError(msg)
    if command.action is TradeAction.OPEN and command.lots <= 0:
        msg = f"TRADE;OPEN: LOTS {_number_text(command.lots)} must be above 0"
        raise ProtocolError(msg)
    if command.action is TradeAction.CLOSE_PARTIAL and command.lots <= 0:
        msg = f"TRADE;CLOSE_PARTIAL: LOTS {_number_text(command.lots)} (to close) must be above 0"
        raise ProtocolError(msg)


def format_command(command: Command) -> str:
    """Return the text of a command: legacy, or extended (``#<id>;`` first) when it has an id.

    Raises
    ------
    ProtocolError
        If the command breaks a rule of the protocol (a comment over 31 characters, an
        extended OPEN without a client order id, a bad symbol or request id, ...).
    """
    _check_command(command)
    head = _prefix(command.request_id)
    if isinstance(command, TradeCommand):
        fields = (
            "TRADE",
            command.action.value,
            str(int(command.type)),
            command.symbol,
            _number_text(command.price),
            _number_text(command.sl),
            _number_text(command.tp),
            command.comment,
            _number_text(command.lots),
            str(command.magic),
            str(command.ticket),
        )
        return head + ";".join(fields)
    if isinstance(command, HistCommand):
        start, end = (t.strftime(MT4_SECONDS) for t in (command.start, command.end))
        return f"{head}HIST;{command.symbol};{command.timeframe.minutes};{start};{end}"
    if isinstance(command, TrackPricesCommand):
        return head + ";".join(("TRACK_PRICES", *command.symbols))
    if isinstance(command, TrackRatesCommand):
        pairs = [f"{symbol};{timeframe.minutes}" for symbol, timeframe in command.rates]
        return head + ";".join(("TRACK_RATES", *pairs))
    if isinstance(command, HeartbeatCommand):
        return f"{head}HEARTBEAT;"
    if isinstance(command, HelloCommand):
        return f"{head}HELLO;{command.version};{command.client_id}"
    start, end = (t.strftime(MT4_SECONDS) for t in (command.start, command.end))
    magic = "" if command.magic is None else f";{command.magic}"
    return f"{head}GET_HISTORY;{start};{end}{magic}"


def trade_command(
    action: TradeAction | str,
    type: OrderKind | int = OrderKind.BUY,
    symbol: str = "",
    price: float = 0.0,
    sl: float = 0.0,
    tp: float = 0.0,
    comment: str = "",
    lots: float = 0.0,
    magic: int = 0,
    ticket: int = 0,
    *,
    request_id: str | None = None,
) -> str:
    """Return ``TRADE;ACTION;TYPE;SYMBOL;PRICE;SL;TP;COMMENT;LOTS;MAGIC;TICKET``.

    ``trade_command("OPEN", 0, "EURUSD", 0, 50, 100, "c1234", 0.01, 123456, 0)`` is
    ``TRADE;OPEN;0;EURUSD;0;50;100;c1234;0.01;123456;0``. With ``request_id`` the command is
    extended: ``#<id>;`` first, and an OPEN's comment must be a client order id.

    Raises
    ------
    ProtocolError
        If a field is out of range or the command breaks a rule of the protocol.
    """
    try:
        command = TradeCommand(
            action=TradeAction(action),
            type=OrderKind(type),
            symbol=symbol,
            price=price,
            sl=sl,
            tp=tp,
            comment=comment,
            lots=lots,
            magic=magic,
            ticket=ticket,
            request_id=request_id,
        )
    except ValueError as exc:
        raise ProtocolError(f"bad TRADE command: {exc}") from None
    return format_command(command)


def hist_command(
    symbol: str,
    timeframe: Timeframe | int | str,
    start: datetime,
    end: datetime,
    clock: str | Clock = BROKER,
    *,
    request_id: str | None = None,
) -> str:
    """Return ``HIST;SYMBOL;TF_MINUTES;START;END`` for the UTC instants ``start`` to ``end``.

    The times are written on ``clock`` (the broker's) to the second; both ends are inclusive.
    ``timeframe`` is a :class:`core.timeframes.Timeframe` or anything
    :func:`core.timeframes.parse_timeframe` reads (``60``, ``H1``).
    """
    reader = parse_clock(clock)
    command = HistCommand(
        symbol=symbol,
        timeframe=_timeframe(timeframe),
        start=reader.local_at(start),
        end=reader.local_at(end),
        request_id=request_id,
    )
    return format_command(command)


def track_prices_command(symbols: Iterable[str], *, request_id: str | None = None) -> str:
    """Return ``TRACK_PRICES;SYM;SYM...`` (no symbols: stop publishing quotes)."""
    return format_command(TrackPricesCommand(symbols=tuple(symbols), request_id=request_id))


def track_rates_command(
    pairs: Iterable[tuple[str, Timeframe | int | str]], *, request_id: str | None = None
) -> str:
    """Return ``TRACK_RATES;SYM;TF;SYM;TF...`` for (symbol, timeframe) pairs."""
    rates = tuple((symbol, _timeframe(timeframe)) for symbol, timeframe in pairs)
    return format_command(TrackRatesCommand(rates=rates, request_id=request_id))


def heartbeat_command(*, request_id: str | None = None) -> str:
    """Return ``HEARTBEAT;``."""
    return format_command(HeartbeatCommand(request_id=request_id))


def hello_command(client_id: str, *, request_id: str, version: int = PROTOCOL_VERSION) -> str:
    """Return ``#<id>;HELLO;<version>;<client id>``, the extended dialect's handshake."""
    return format_command(HelloCommand(version=version, client_id=client_id, request_id=request_id))


def get_history_command(
    start: datetime,
    end: datetime,
    clock: str | Clock = BROKER,
    *,
    magic: int | None = None,
    request_id: str,
) -> str:
    """Return ``#<id>;GET_HISTORY;START;END[;MAGIC]`` for trades closed from ``start`` to
    ``end`` (UTC instants, written on ``clock``; both ends inclusive)."""
    reader = parse_clock(clock)
    command = GetHistoryCommand(
        start=reader.local_at(start), end=reader.local_at(end), magic=magic, request_id=request_id
    )
    return format_command(command)


def _timeframe(value: Timeframe | int | str) -> Timeframe:
    try:
        return parse_timeframe(value)
    except UsageError as exc:
        raise ProtocolError(str(exc)) from None


def parse_command(text: str) -> Command:
    """Return the typed command a text holds, in either dialect.

    Raises
    ------
    ProtocolError
        If the text is too long, names an unknown verb or action, has the wrong number of
        fields, or a field (named in the message) is not what it must be. The error carries
        the request id and verb when they could be read.
    """
    if len(text) > MAX_COMMAND_CHARS:
        msg = f"command of {len(text)} characters: the limit is {MAX_COMMAND_CHARS}"
        raise ProtocolError(msg)
    if not _printable_ascii(text):
        at = next(k for k, ch in enumerate(text) if not _printable_ascii(ch))
        msg = f"command {text[:80]!r}: character {at} is not printable ASCII"
        raise ProtocolError(msg, verb=text.split(";")[0][:32] or None)
    request_id: str | None = None
    body = text
    if text.startswith("#"):
        head, _, body = text.partition(";")
        request_id = head[1:]
        if not _REQUEST_ID.fullmatch(request_id):
            msg = f"request id {request_id!r}: use 1 to 40 characters of A-Z a-z 0-9 _ . -"
            raise ProtocolError(msg)
    fields = body.split(";")
    verb = fields[0]
    try:
        command = _parse_fields(verb, fields, request_id)
        _check_command(command)
    except (ProtocolError, ValueError) as exc:
        raise ProtocolError(str(exc), request_id=request_id, verb=verb[:32] or None) from None
    return command


def _parse_fields(verb: str, fields: list[str], request_id: str | None) -> Command:
    if verb not in _VERBS:
        msg = f"unknown command {verb[:32]!r}: use one of {', '.join(_VERBS)}"
        raise ProtocolError(msg)
    if verb in _EXTENDED_ONLY and request_id is None:
        msg = f"{verb} belongs to the extended dialect: start the command with #<request id>;"
        raise ProtocolError(msg)
    if verb == "TRADE":
        return _parse_trade(fields, request_id)
    if verb == "HIST":
        _expect_fields(fields, 5, "HIST;SYMBOL;TF_MINUTES;START;END")
        return HistCommand(
            symbol=fields[1],
            timeframe=_minutes_field(fields[2], "TF_MINUTES"),
            start=_wall_time(fields[3], "START"),
            end=_wall_time(fields[4], "END"),
            request_id=request_id,
        )
    if verb == "TRACK_PRICES":
        return TrackPricesCommand(symbols=tuple(fields[1:]), request_id=request_id)
    if verb == "TRACK_RATES":
        rest = fields[1:]
        if len(rest) % 2:
            msg = f"TRACK_RATES takes SYMBOL;TF_MINUTES pairs: got {len(rest)} fields after it"
            raise ProtocolError(msg)
        rates = tuple(
            (rest[k], _minutes_field(rest[k + 1], f"TF_MINUTES {k // 2 + 1}"))
            for k in range(0, len(rest), 2)
        )
        return TrackRatesCommand(rates=rates, request_id=request_id)
    if verb == "HEARTBEAT":
        if fields not in (["HEARTBEAT"], ["HEARTBEAT", ""]):
            msg = f"HEARTBEAT takes no fields: got {len(fields) - 1}"
            raise ProtocolError(msg)
        return HeartbeatCommand(request_id=request_id)
    assert request_id is not None  # the extended-only verbs were checked above
    if verb == "HELLO":
        _expect_fields(fields, 3, "HELLO;VERSION;CLIENT_ID")
        version = _int_field(fields[1], "VERSION")
        if version < 1:
            raise ProtocolError(f"VERSION {version} must be 1 or more")
        return HelloCommand(version=version, client_id=fields[2], request_id=request_id)
    if len(fields) not in (3, 4):
        msg = f"GET_HISTORY;START;END[;MAGIC] has 3 or 4 fields: got {len(fields)}"
        raise ProtocolError(msg)
    return GetHistoryCommand(
        start=_wall_time(fields[1], "START"),
        end=_wall_time(fields[2], "END"),
        magic=_int_field(fields[3], "MAGIC") if len(fields) == 4 else None,
        request_id=request_id,
    )


def _expect_fields(fields: list[str], count: int, form: str) -> None:
    if len(fields) != count:
        msg = f"{form} has {count} fields: got {len(fields)}"
        raise ProtocolError(msg)


def _parse_trade(fields: list[str], request_id: str | None) -> TradeCommand:
    _expect_fields(fields, len(_TRADE_FIELDS), ";".join(_TRADE_FIELDS))
    try:
        action = TradeAction(fields[1])
    except ValueError:
        actions = ", ".join(a.value for a in TradeAction)
        raise ProtocolError(
            f"unknown TRADE ACTION {fields[1][:32]!r}: use one of {actions}"
        ) from None
    kind = _int_field(fields[2], "TYPE")
    if kind not in _ORDER_KINDS:
        raise ProtocolError(f"TYPE {kind} is no MT4 order type: use 0 to 5")
    numbers = {name: _number_field(fields[at], name) for name, at in _AMOUNT_AT}
    ticket = _int_field(fields[10], "TICKET")
    if ticket < 0:
        raise ProtocolError(f"TICKET {ticket} is negative")
    return TradeCommand(
        action=action,
        type=OrderKind(kind),
        symbol=fields[3],
        price=numbers["PRICE"],
        sl=numbers["SL"],
        tp=numbers["TP"],
        comment=fields[7],
        lots=numbers["LOTS"],
        magic=_int_field(fields[9], "MAGIC"),
        ticket=ticket,
        request_id=request_id,
    )


def _number_field(text: str, field: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ProtocolError(f"{field} {text[:32]!r} is not a number")
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ProtocolError(f"{field} {text!r} must be a finite number at or above 0")
    return value


def _int_field(text: str, field: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ProtocolError(f"{field} {text[:32]!r} is not a whole number")
    return int(text)


def _minutes_field(text: str, field: str) -> Timeframe:
    if not _DIGITS.fullmatch(text):
        raise ProtocolError(f"{field} {text[:32]!r} is not a number of minutes")
    minutes = int(text)
    for timeframe in Timeframe:
        if timeframe.minutes == minutes:
            return timeframe
    periods = ", ".join(str(tf.minutes) for tf in Timeframe)
    raise ProtocolError(f"{field} {minutes} is no MT4 period: use one of {periods}")


# -- replies: the mappings --------------------------------------------------------------------

Reply: TypeAlias = dict[str, Any]


def heartbeat_reply() -> Reply:
    """Return the answer to ``HEARTBEAT``."""
    return {"_action": "heartbeat", "_response": HEARTBEAT_RESPONSE}


def execution_reply(
    *,
    magic: int,
    ticket: int,
    open_time: datetime,
    open_price: float,
    sl: float,
    tp: float,
    clock: str | Clock = BROKER,
) -> Reply:
    """Return the answer to a successful ``TRADE;OPEN``: ``sl`` and ``tp`` are price levels
    (0 for none), ``open_time`` a UTC instant written on ``clock`` to the second."""
    return {
        "_action": "EXECUTION",
        "_magic": magic,
        "_ticket": ticket,
        "_open_time": mt4_time_text(open_time, clock),
        "_open_price": open_price,
        "_sl": sl,
        "_tp": tp,
    }


def modify_reply(*, ticket: int, sl: float, tp: float) -> Reply:
    """Return the answer to a successful ``TRADE;MODIFY``: the new levels (0 for none)."""
    return {"_action": "MODIFY", "_ticket": ticket, "_sl": sl, "_tp": tp}


def close_reply(
    *, ticket: int, close_price: float, close_lots: float, response: CloseResponse | str
) -> Reply:
    """Return the answer to a successful ``TRADE;CLOSE`` or ``TRADE;CLOSE_PARTIAL``.

    A pending order's ``close_price`` is its entry price; ``close_lots`` is the volume closed.
    """
    return {
        "_action": "CLOSE",
        "_ticket": ticket,
        "_close_price": close_price,
        "_close_lots": close_lots,
        "_response": CloseResponse(response).value,
        "_response_value": SUCCESS,
    }


def closed_entry(
    *, symbol: str, magic: int, close_price: float, close_lots: float, response: CloseResponse | str
) -> Reply:
    """Return one order's entry in the ``_responses`` of ``CLOSE_ALL`` and ``CLOSE_ALL_MAGIC``.

    An order that could not be closed is entered as :func:`error_entry` instead.
    """
    return {
        "_symbol": symbol,
        "_magic": magic,
        "_close_price": close_price,
        "_close_lots": close_lots,
        "_response": CloseResponse(response).value,
        "_response_value": SUCCESS,
    }


def error_entry(code: str | int) -> Reply:
    """Return the ``_responses`` entry of an order ``CLOSE_ALL`` could not close."""
    return {"_response": str(code), "_response_value": ERROR}


def close_all_reply(responses: Mapping[int, Reply], *, by_magic: bool) -> Reply:
    """Return the answer to ``TRADE;CLOSE_MAGIC`` (``by_magic``) or ``TRADE;CLOSE_ALL``.

    ``responses`` maps each ticket tried to :func:`closed_entry` or :func:`error_entry`; it is
    empty when there was nothing to close.
    """
    action = "CLOSE_ALL_MAGIC" if by_magic else "CLOSE_ALL"
    return {"_action": action, "_responses": {int(t): dict(e) for t, e in responses.items()}}


def open_trade(
    *,
    magic: int,
    symbol: str,
    lots: float,
    type: OrderKind | int,
    open_price: float,
    open_time: datetime,
    sl: float,
    tp: float,
    pnl: float,
    comment: str,
    clock: str | Clock = BROKER,
) -> Reply:
    """Return one order of ``OPEN_TRADES``: ``sl`` and ``tp`` are price levels (0 for none),
    ``pnl`` the floating profit in the account currency (0 for a pending order)."""
    return {
        "_magic": magic,
        "_symbol": symbol,
        "_lots": lots,
        "_type": int(OrderKind(type)),
        "_open_price": open_price,
        "_open_time": mt4_time_text(open_time, clock),
        "_SL": sl,
        "_TP": tp,
        "_pnl": pnl,
        "_comment": comment,
    }


def open_trades_reply(trades: Mapping[int, Reply]) -> Reply:
    """Return the answer to ``TRADE;GET_OPEN_TRADES``: ticket -> :func:`open_trade`."""
    return {"_action": "OPEN_TRADES", "_trades": {int(t): dict(e) for t, e in trades.items()}}


def account_reply(
    *,
    account_number: int,
    current_time: datetime,
    name: str,
    balance: float,
    equity: float,
    profit: float,
    free_margin: float,
    leverage: int,
    clock: str | Clock = BROKER,
) -> Reply:
    """Return the answer to ``TRADE;GET_ACCOUNT_INFO``.

    ``account_number`` sits at the top and ``_data`` is a one-element list, as existing clients
    read it; ``currenttime`` is the terminal's time on ``clock``, to the minute.
    """
    return {
        "_action": "GET_ACCOUNT_INFORMATION",
        "account_number": account_number,
        "_data": [
            {
                "currenttime": mt4_time_text(current_time, clock, seconds=False),
                "account_name": name,
                "account_balance": balance,
                "account_equity": equity,
                "account_profit": profit,
                "account_free_margin": free_margin,
                "account_leverage": leverage,
            }
        ],
    }


class MT4Bar(Frozen):
    """A bar as MT4 keeps it: open time (aware UTC), prices, counts and the spread in points.

    ``closed`` says, in the extended dialect's published bars, whether the bar is complete.
    """

    time: datetime
    open: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    low: float = Field(allow_inf_nan=False)
    close: float = Field(allow_inf_nan=False)
    tick_volume: int = Field(default=0, ge=0)
    spread: int = Field(default=0, ge=0)
    real_volume: int = Field(default=0, ge=0)
    closed: bool = False

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError(f"bar time {value.isoformat()} must be timezone-aware")
        return value

    @classmethod
    def from_bar(cls, bar: Bar, digits: int, *, closed: bool = False) -> MT4Bar:
        """Return a stored bar as MT4 keeps it: prices rounded to ``digits``, the volume as the
        tick volume, the spread (price units) in points of ``digits``."""
        spread = 0 if bar.spread is None else round(bar.spread * 10**digits)
        return cls(
            time=bar.ts,
            open=round(bar.open, digits),
            high=round(bar.high, digits),
            low=round(bar.low, digits),
            close=round(bar.close, digits),
            tick_volume=round(bar.volume),
            spread=spread,
            closed=closed,
        )


def hist_reply(
    symbol: str, timeframe: Timeframe, bars: Iterable[MT4Bar], clock: str | Clock = BROKER
) -> Reply:
    """Return the answer to ``HIST``: ``_symbol`` is ``SYMBOL_TF`` and each bar's ``time`` its
    open on ``clock`` to the minute; no bars gives ``'_response': 'NOT_AVAILABLE'`` instead of
    ``_data``."""
    data = [
        {
            "time": mt4_time_text(bar.time, clock, seconds=False),
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "tick_volume": bar.tick_volume,
            "spread": bar.spread,
            "real_volume": bar.real_volume,
        }
        for bar in bars
    ]
    reply: Reply = {"_action": "HIST", "_symbol": rate_topic(symbol, timeframe)}
    if data:
        reply["_data"] = data
    else:
        reply["_response"] = NOT_AVAILABLE
    return reply


def track_prices_reply(symbol_count: int, error_symbols: Iterable[str] = ()) -> Reply:
    """Return the answer to ``TRACK_PRICES``: how many symbols are published, which failed."""
    return {
        "_action": "TRACK_PRICES",
        "_data": {"symbol_count": symbol_count, "error_symbols": list(error_symbols)},
    }


def track_rates_reply(instrument_count: int, error_symbols: Iterable[str] = ()) -> Reply:
    """Return the answer to ``TRACK_RATES``: how many (symbol, timeframe) pairs are published,
    which symbols failed."""
    return {
        "_action": "TRACK_RATES",
        "_data": {"instrument_count": instrument_count, "error_symbols": list(error_symbols)},
    }


def error_reply(action: str, code: str | int) -> Reply:
    """Return the answer to a command that failed: ``_action`` as success would have it
    (``EXECUTION``, ``MODIFY``, ``CLOSE``, ...), ``code`` one of the EA's codes or an MT4 error
    number (:class:`MT4Error`), written as text."""
    text = str(int(code)) if isinstance(code, int) else code
    return {"_action": action, "_response": text, "_response_value": ERROR}


def hello_reply(
    *,
    version: int,
    client_id: str,
    server_time: datetime,
    clock: str | Clock = BROKER,
    features: Iterable[str] = FEATURES,
) -> Reply:
    """Return the extended dialect's answer to ``HELLO``: the version both speak (the lower of
    the client's and :data:`PROTOCOL_VERSION`), the features, the server's time on ``clock`` and
    the same moment in UTC (``_gmt_time``)."""
    return {
        "_action": "HELLO",
        "_response": "OK",
        "_version": min(version, PROTOCOL_VERSION),
        "_client_id": client_id,
        "_features": list(features),
        "_server_time": mt4_time_text(server_time, clock),
        "_gmt_time": mt4_time_text(server_time, "utc"),
    }


def closed_trade(
    *,
    magic: int,
    symbol: str,
    lots: float,
    type: OrderKind | int,
    open_price: float,
    open_time: datetime,
    close_price: float,
    close_time: datetime,
    sl: float,
    tp: float,
    pnl: float,
    swap: float,
    commission: float,
    comment: str,
    clock: str | Clock = BROKER,
) -> Reply:
    """Return one trade of the extended ``HISTORY`` reply: :func:`open_trade`'s keys, plus the
    close, swap and commission (account currency)."""
    entry = open_trade(
        magic=magic,
        symbol=symbol,
        lots=lots,
        type=type,
        open_price=open_price,
        open_time=open_time,
        sl=sl,
        tp=tp,
        pnl=pnl,
        comment=comment,
        clock=clock,
    )
    entry["_close_price"] = close_price
    entry["_close_time"] = mt4_time_text(close_time, clock)
    entry["_swap"] = swap
    entry["_commission"] = commission
    return entry


def history_reply(trades: Mapping[int, Reply]) -> Reply:
    """Return the extended answer to ``GET_HISTORY``: ticket -> :func:`closed_trade`; no trades
    gives ``'_response': 'NOT_AVAILABLE'`` instead of ``_trades``, as HIST does."""
    if not trades:
        return {"_action": "HISTORY", "_response": NOT_AVAILABLE}
    return {"_action": "HISTORY", "_trades": {int(t): dict(e) for t, e in trades.items()}}


# -- replies: the text ------------------------------------------------------------------------


def _writable(value: object, extended: bool) -> bool:
    """Return whether ``value`` holds only what both dialects write and read back unchanged
    (the check :func:`_checked` makes, without building the path of every item; a False is
    then explained by :func:`_checked`)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is int:
            continue
        if kind is float:
            if not math.isfinite(item):  # type: ignore[arg-type]
                return False
            continue
        if kind is list:
            stack.extend(item)  # type: ignore[arg-type]
            continue
        if kind is dict:
            for key, inner in item.items():  # type: ignore[attr-defined]
                key_kind = type(key)
                if key_kind is str:
                    if extended and key.isdigit():
                        return False
                elif key_kind is not int:
                    return False
                stack.append(inner)
            continue
        return False
    return True


def _checked(value: object, where: str, dialect: Dialect) -> None:
    # Only what both dialects can write and read back unchanged.
    if _writable(value, dialect is Dialect.EXTENDED):
        return
    _explain(value, where, dialect)


def _explain(value: object, where: str, dialect: Dialect) -> None:
    """Raise the :class:`ProtocolError` naming the first item :func:`_writable` refuses."""
    if isinstance(value, bool) or value is None:
        raise ProtocolError(f"{where}: {value!r}: replies hold no booleans and no None")
    if isinstance(value, str | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProtocolError(f"{where}: {value!r}: replies hold finite numbers only")
        return
    if isinstance(value, list):
        for k, item in enumerate(value):
            _explain(item, f"{where}[{k}]", dialect)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise ProtocolError(f"{where}: key {key!r}: keys are text or tickets (int)")
            if dialect is Dialect.EXTENDED and isinstance(key, str) and key.isdigit():
                raise ProtocolError(f"{where}: key {key!r}: write a ticket as an int key")
            _explain(item, f"{where}[{key!r}]", dialect)
        return
    raise ProtocolError(
        f"{where}: {type(value).__name__} {value!r}: use text, numbers, lists, dicts"
    )


def _quoted(text: str) -> str:
    out = []
    for ch in text:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "'" + "".join(out) + "'"


def _literal(value: object) -> str:
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)  # int or finite float, checked before


def format_reply(
    reply: Mapping[str, Any],
    dialect: Dialect | str = Dialect.LEGACY,
    *,
    request_id: str | None = None,
) -> str:
    """Return the text of a reply: a Python literal (legacy) or a JSON object (extended).

    In the extended dialect ``_request_id`` comes first: ``request_id``, or the one ``reply``
    holds.

    Raises
    ------
    ProtocolError
        If the reply has no ``_action``, holds a value neither dialect writes (a boolean,
        None, NaN, a tuple, ...), or a request id is missing (extended) or given (legacy).
    """
    dialect = Dialect(dialect)
    body = dict(reply)
    if not isinstance(body.get("_action"), str):
        raise ProtocolError(f"reply {body!r:.80} has no _action")
    if dialect is Dialect.LEGACY:
        if request_id is not None or "_request_id" in body:
            raise ProtocolError("legacy replies carry no _request_id: use the extended dialect")
        _checked(body, "reply", dialect)
        return _literal(body)
    echoed = body.pop("_request_id", None)
    if request_id is None:
        request_id = echoed
    elif echoed is not None and echoed != request_id:
        raise ProtocolError(f"reply holds _request_id {echoed!r}, not {request_id!r}")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise ProtocolError(f"extended reply needs a request id: got {request_id!r}")
    body = {"_request_id": request_id, **body}
    _checked(body, "reply", dialect)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str | int, Any]:
    out: dict[str | int, Any] = {}
    for key, value in pairs:
        name: str | int = int(key) if key.isdigit() else key
        if name in out:
            raise ProtocolError(f"key {key!r} appears twice")
        out[name] = value
    return out


def _no_constant(name: str) -> float:
    raise ProtocolError(f"{name} is not a number replies may hold")


def parse_reply(
    text: str, dialect: Dialect | str = Dialect.LEGACY, *, max_chars: int = MAX_REPLY_CHARS
) -> Reply:
    """Return the mapping a reply's text holds, read safely.

    Legacy text is read with :func:`ast.literal_eval` (literals only: no names, calls or
    attributes can run), extended text with :func:`json.loads`. Either must be a dict with an
    ``_action`` holding only text, numbers, lists and dicts; an extended one also needs its
    ``_request_id``, and reads ticket keys (digits) back as integers.

    Raises
    ------
    ProtocolError
        If the text is longer than ``max_chars``, is not a literal (or JSON), or holds anything
        else.
    """
    dialect = Dialect(dialect)
    if len(text) > max_chars:
        raise ProtocolError(f"reply of {len(text)} characters: the limit is {max_chars}")
    value: object
    try:
        if dialect is Dialect.LEGACY:
            value = ast.literal_eval(text)
        else:
            value = json.loads(text, object_pairs_hook=_json_object, parse_constant=_no_constant)
    except ProtocolError as exc:
        raise ProtocolError(f"reply {text[:80]!r}: {exc}") from None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        msg = f"reply {text[:80]!r} is not a {dialect} reply: {type(exc).__name__}: {exc}"
        raise ProtocolError(msg) from None
    if not isinstance(value, dict) or not isinstance(value.get("_action"), str):
        raise ProtocolError(f"reply {text[:80]!r} is not a mapping with an _action")
    _checked(value, "reply", Dialect.LEGACY)
    if dialect is Dialect.EXTENDED and not isinstance(value.get("_request_id"), str):
        raise ProtocolError(f"extended reply {text[:80]!r} has no _request_id")
    return value


# -- market data (PUB) ------------------------------------------------------------------------


class Tick(Frozen):
    """A quote published on PUB: ``seq`` is set in the extended dialect only."""

    symbol: str
    bid: float = Field(allow_inf_nan=False)
    ask: float = Field(allow_inf_nan=False)
    seq: int | None = None


class Rate(Frozen):
    """A bar published on PUB: ``seq`` is set in the extended dialect only."""

    symbol: str
    timeframe: Timeframe
    bar: MT4Bar
    seq: int | None = None


def rate_topic(symbol: str, timeframe: Timeframe) -> str:
    """Return the name of a symbol's bars of one timeframe: ``EURUSD_H1``."""
    return f"{symbol}_{timeframe.value}"


def _price_text(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _published(topic: str, payload: str, seq: int | None) -> str:
    if seq is None:
        return f"{topic}{TOPIC_SEPARATOR}{payload}"
    if seq < 1:
        raise ProtocolError(f"sequence number {seq} of {topic}: count from 1")
    return f"{topic}{TOPIC_SEPARATOR}{seq}{TOPIC_SEPARATOR}{payload}"


def format_tick(symbol: str, bid: float, ask: float, digits: int, *, seq: int | None = None) -> str:
    """Return a published quote, ``EURUSD:|:1.06379;1.06387``, prices with the instrument's
    ``digits``; with ``seq``, the extended ``EURUSD:|:17:|:1.06379;1.06387``."""
    _check_symbol(symbol, "symbol")
    return _published(symbol, f"{_price_text(bid, digits)};{_price_text(ask, digits)}", seq)


def format_rate(
    symbol: str,
    timeframe: Timeframe,
    bar: MT4Bar,
    digits: int,
    clock: str | Clock = BROKER,
    *,
    seq: int | None = None,
) -> str:
    """Return a published bar, ``EURUSD_H1:|:time;open;high;low;close;tick_volume;spread;
    real_volume`` with ``time`` an MT4 datetime on ``clock`` and prices with ``digits``; with
    ``seq``, the extended form, whose payload ends with the ``closed`` flag.

    Raises
    ------
    ProtocolError
        If a closed bar is to be published in the legacy dialect, which has no flag for it.
    """
    _check_symbol(symbol, "symbol")
    fields = [
        str(mt4_datetime(bar.time, clock)),
        *(_price_text(p, digits) for p in (bar.open, bar.high, bar.low, bar.close)),
        str(bar.tick_volume),
        str(bar.spread),
        str(bar.real_volume),
    ]
    if seq is not None:
        fields.append("1" if bar.closed else "0")
    elif bar.closed:
        raise ProtocolError("the legacy dialect publishes opening bars only: no closed flag")
    return _published(rate_topic(symbol, timeframe), ";".join(fields), seq)


def parse_market(text: str, clock: str | Clock = BROKER) -> Tick | Rate:
    """Return the quote or bar a published message holds, in either dialect.

    A bar's MT4 datetime is read on ``clock``.

    Raises
    ------
    ProtocolError
        If the message has neither form; the message names the field.
    """
    if len(text) > MAX_COMMAND_CHARS:
        raise ProtocolError(f"published message of {len(text)} characters is too long")
    parts = text.split(TOPIC_SEPARATOR)
    seq: int | None = None
    if len(parts) == 3:
        if not _DIGITS.fullmatch(parts[1]) or int(parts[1]) < 1:
            raise ProtocolError(
                f"{text[:80]!r}: sequence number {parts[1][:32]!r} is not 1 or more"
            )
        seq = int(parts[1])
    elif len(parts) != 2:
        raise ProtocolError(f"{text[:80]!r} is not TOPIC:|:PAYLOAD or TOPIC:|:SEQ:|:PAYLOAD")
    topic, payload = parts[0], parts[-1].split(";")
    if len(payload) == 2:
        _check_symbol(topic, "symbol")
        bid, ask = (_signed_field(v, name) for v, name in zip(payload, ("bid", "ask"), strict=True))
        return Tick(symbol=topic, bid=bid, ask=ask, seq=seq)
    expected = 8 if seq is None else 9
    if len(payload) != expected:
        msg = f"{text[:80]!r}: a quote has 2 fields and a bar {expected}: got {len(payload)}"
        raise ProtocolError(msg)
    symbol, _, name = topic.rpartition("_")
    if name not in Timeframe.__members__:
        raise ProtocolError(f"{text[:80]!r}: topic {topic!r} is not SYMBOL_TF (EURUSD_H1)")
    _check_symbol(symbol, "symbol")
    closed = False
    if seq is not None:
        if payload[8] not in ("0", "1"):
            raise ProtocolError(f"{text[:80]!r}: closed flag {payload[8][:32]!r} is not 0 or 1")
        closed = payload[8] == "1"
    names = ("open", "high", "low", "close")
    prices = [_signed_field(v, n) for v, n in zip(payload[1:5], names, strict=True)]
    counts = [_count_field(v, n) for v, n in zip(payload[5:8], _COUNTS, strict=True)]
    bar = MT4Bar(
        time=from_mt4_datetime(_int_field(payload[0], "time"), clock),
        open=prices[0],
        high=prices[1],
        low=prices[2],
        close=prices[3],
        tick_volume=counts[0],
        spread=counts[1],
        real_volume=counts[2],
        closed=closed,
    )
    return Rate(symbol=symbol, timeframe=Timeframe[name], bar=bar, seq=seq)


def _signed_field(text: str, field: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ProtocolError(f"{field} {text[:32]!r} is not a number")
    return float(text)


def _count_field(text: str, field: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise ProtocolError(f"{field} {text[:32]!r} is not a count")
    return int(text)

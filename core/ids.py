"""Run ids: one format for every job a desk records.

A run id is ``<kind prefix>-<UTC time to the second>-<6 hex digits>``, for example
``bt-20261124T101500-3f9a1c``: it says what ran, sorts by time within a kind, and is unique
(the random part) even for runs started in the same second. Ids written by earlier versions
(``bt-20261124T101500-3f9a``, ingest runs ``20261124T101500Z-3f9a1b``) stay valid: ids are
looked up as strings, never parsed.

The trading runtime names its orders with :func:`client_order_id` (the loop clock's time and
the session's order sequence, short enough for an MT4 order comment) and a broker's fills of
an order with :func:`execution_id`.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import datetime
from enum import StrEnum

from core.errors import UsageError
from core.timeframes import Timeframe
from core.times import COMPACT, as_utc, utc_now

#: The prefix of each kind of run.
RUN_PREFIXES = {
    "ingest": "in",
    "resample": "rs",
    "backtest": "bt",
    "sweep": "sw",
    "portfolio": "pf",
    "walkforward": "wf",
    "train": "tr",
    "paper": "pp",
    "mt4_sim": "ms",
}

#: The longest client order id: it must fit an MT4 order comment.
CLIENT_ORDER_ID_MAX = 24
#: The longest execution id (a client order id, a dot and the fill's number).
EXECUTION_ID_MAX = 31
#: ``strftime`` pattern of the UTC time in a client order id.
CLIENT_ORDER_TIME = "%y%m%d%H%M%S"
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# Sequence digits are zero-padded to fill the id, so the ids of one time sort by sequence.
_SEQ_DIGITS = CLIENT_ORDER_ID_MAX - len("c") - len("YYMMDDHHMMSS") - len("-")
_SEQ_LIMIT = 36**_SEQ_DIGITS
_CLIENT_ORDER_ID = re.compile(rf"c\d{{12}}-[0-9a-z]{{{_SEQ_DIGITS}}}")


class BacktestKind(StrEnum):
    """The kinds of run the backtest store holds."""

    BACKTEST = "backtest"
    SWEEP = "sweep"
    PORTFOLIO = "portfolio"


def new_run_id(kind: str, at: datetime | None = None) -> str:
    """Return a new, unique run id of ``kind`` started ``at`` (default: now).

    Raises
    ------
    UsageError
        If ``kind`` is not one of :data:`RUN_PREFIXES`.
    """
    prefix = RUN_PREFIXES.get(kind)
    if prefix is None:
        known = ", ".join(RUN_PREFIXES)
        raise UsageError(f"unknown kind of run {kind!r} (known: {known})")
    moment = as_utc(at) if at is not None else utc_now()
    return f"{prefix}-{moment.strftime(COMPACT)}-{secrets.token_hex(3)}"


def registered_model_name(symbol: str, timeframe: Timeframe, feature_set: str) -> str:
    """Return the registry name of the models of a series and feature set: ``EURUSD-H1-default``."""
    return f"{symbol}-{timeframe.value}-{feature_set}"


def _base36(value: int, width: int) -> str:
    digits: list[str] = []
    while value:
        value, digit = divmod(value, 36)
        digits.append(_BASE36[digit])
    return "".join(reversed(digits)).rjust(width, "0")


def client_order_id(moment: datetime, seq: int) -> str:
    """Return the runtime's id of an order made at ``moment`` with session sequence ``seq``.

    The id is ``c`` + the UTC time as ``%y%m%d%H%M%S`` + ``-`` + ``seq`` in base 36 (lowercase,
    zero-padded to 10 digits), e.g. ``c260102030405-000000001z``: 24 printable ASCII characters
    without ``;``, so it fits an MT4 order comment. It is made from the loop's clock and the
    session's order counter only (never from the session name), is the same for the same
    arguments, and ids of one time sort in sequence order. A naive ``moment`` is taken to be
    UTC.

    Raises
    ------
    UsageError
        If ``seq`` is negative, or so large (36**10 or more) that the id would be longer than
        :data:`CLIENT_ORDER_ID_MAX` characters.
    """
    if seq < 0:
        msg = f"order sequence {seq} is negative: number a session's orders from 0"
        raise UsageError(msg)
    if seq >= _SEQ_LIMIT:
        msg = (
            f"order sequence {seq} would make a client order id longer than "
            f"{CLIENT_ORDER_ID_MAX} characters: keep it below 36**{_SEQ_DIGITS}"
        )
        raise UsageError(msg)
    return f"c{as_utc(moment).strftime(CLIENT_ORDER_TIME)}-{_base36(seq, _SEQ_DIGITS)}"


def execution_id(client_order_id: str, part: int) -> str:
    """Return the id of fill number ``part`` of an order: ``<client_order_id>.<part>``.

    Raises
    ------
    UsageError
        If ``part`` is negative, ``client_order_id`` is empty or holds a character other than
        printable ASCII without ``;``, or the id would be longer than :data:`EXECUTION_ID_MAX`.
    """
    if part < 0:
        msg = f"fill number {part} of order {client_order_id!r} is negative: number fills from 0"
        raise UsageError(msg)
    if not client_order_id or not all(" " < ch <= "~" and ch != ";" for ch in client_order_id):
        msg = (
            f"client order id {client_order_id!r} is not an order id: use printable ASCII "
            "without spaces or ';' (see client_order_id)"
        )
        raise UsageError(msg)
    fill_id = f"{client_order_id}.{part}"
    if len(fill_id) > EXECUTION_ID_MAX:
        msg = (
            f"execution id {fill_id!r} is {len(fill_id)} characters, longer than "
            f"{EXECUTION_ID_MAX}: shorten the order id or number fills below "
            f"10**{EXECUTION_ID_MAX - len(client_order_id) - 1}"
        )
        raise UsageError(msg)
    return fill_id


def is_client_order_id(text: str) -> bool:
    """Return whether ``text`` has the form :func:`client_order_id` makes.

    Such ids sort by the loop's clock and sequence, so a broker can tell a new one from the
    last it accepted without looking it up.
    """
    return _CLIENT_ORDER_ID.fullmatch(text) is not None


def actor(who: str | None = None) -> str:
    """Return who acts on the desk: the name given, else the login name (``$USER``), else
    ``someone``."""
    return who or os.environ.get("USER") or "someone"

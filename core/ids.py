"""Run ids: one format for every job a desk records.

A run id is ``<kind prefix>-<UTC time to the second>-<6 hex digits>``, for example
``bt-20261124T101500-3f9a1c``: it says what ran, sorts by time within a kind, and is unique
(the random part) even for runs started in the same second. Ids written by earlier versions
(``bt-20261124T101500-3f9a``, ingest runs ``20261124T101500Z-3f9a1b``) stay valid: ids are
looked up as strings, never parsed.
"""

from __future__ import annotations

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
}


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

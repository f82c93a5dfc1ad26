"""Timeframe names (M1 ... MN1) and the aliases people type for them."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum

from core.errors import UsageError


class Timeframe(StrEnum):
    """A bar length. W1 and MN1 have calendar lengths; their ``minutes`` are nominal."""

    M1 = "M1"
    M5 = "M5"
    M15 = "M15"
    M30 = "M30"
    H1 = "H1"
    H4 = "H4"
    D1 = "D1"
    W1 = "W1"
    MN1 = "MN1"

    @property
    def minutes(self) -> int:
        """Return the nominal bar length in minutes (MN1 counts 30 days)."""
        return _MINUTES[self]

    @property
    def duration(self) -> timedelta:
        """Return the nominal bar length."""
        return timedelta(minutes=self.minutes)

    @property
    def is_intraday(self) -> bool:
        """Return whether bars are shorter than a day."""
        return self.minutes < 1440

    @property
    def polars_every(self) -> str:
        """Return the Polars duration string of one bar (``1h``, ``1d``, ``1mo``)."""
        if self is Timeframe.MN1:
            return "1mo"
        if self is Timeframe.W1:
            return "1w"
        return f"{self.minutes}m"

    def __str__(self) -> str:
        return self.value


_MINUTES = {
    Timeframe.M1: 1,
    Timeframe.M5: 5,
    Timeframe.M15: 15,
    Timeframe.M30: 30,
    Timeframe.H1: 60,
    Timeframe.H4: 240,
    Timeframe.D1: 1440,
    Timeframe.W1: 10080,
    Timeframe.MN1: 43200,
}
_BY_MINUTES = {m: tf for tf, m in _MINUTES.items()}
_UNIT_MINUTES = {"m": 1, "min": 1, "h": 60, "d": 1440, "w": 10080}
_ALIASES = {
    "minute": Timeframe.M1,
    "hour": Timeframe.H1,
    "hourly": Timeframe.H1,
    "day": Timeframe.D1,
    "daily": Timeframe.D1,
    "week": Timeframe.W1,
    "weekly": Timeframe.W1,
    "month": Timeframe.MN1,
    "monthly": Timeframe.MN1,
    "mn": Timeframe.MN1,
    "mn1": Timeframe.MN1,
    "1mo": Timeframe.MN1,
}


def parse_timeframe(text: str | int | Timeframe) -> Timeframe:
    """Normalize ``H1``, ``60``, ``1h``, ``hour`` and the like to a :class:`Timeframe`.

    Raises
    ------
    UsageError
        If the text names no supported timeframe.
    """
    if isinstance(text, Timeframe):
        return text
    raw = str(text).strip()
    key = raw.lower()
    if key.upper() in Timeframe.__members__:
        return Timeframe[key.upper()]
    if key in _ALIASES:
        return _ALIASES[key]
    if key.isdigit() and int(key) in _BY_MINUTES:
        return _BY_MINUTES[int(key)]
    match = re.fullmatch(r"(\d+)\s*(min|m|h|d|w)", key)
    if match:
        minutes = int(match.group(1)) * _UNIT_MINUTES[match.group(2)]
        if minutes in _BY_MINUTES:
            return _BY_MINUTES[minutes]
    names = ", ".join(tf.value for tf in Timeframe)
    msg = f"unknown timeframe {raw!r}: use one of {names} (or minutes such as 60, or 1h)"
    raise UsageError(msg)

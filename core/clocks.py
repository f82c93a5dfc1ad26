"""Source clocks and their conversion to UTC.

A clock names how a file's timestamps were written:

- ``UTC`` (or ``GMT``);
- an IANA zone, such as ``Europe/London`` or the fixed ``Etc/GMT+5`` (UTC-5, HistData's EST);
- a fixed offset, ``UTC+2`` or ``UTC-05:00``;
- ``broker:ny-close``: MetaTrader servers on New York close, America/New_York + 7 h, so UTC+2 in
  winter and UTC+3 while US daylight saving is in force. The broker day starts at 17:00 New York.

Local times that do not exist (the hour skipped when clocks go forward) become null and are
quarantined by ingestion; ambiguous ones (the hour repeated when clocks go back) take the earlier
instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import UsageError
from core.timeframes import Timeframe

if TYPE_CHECKING:
    import polars as pl  # the expressions are only passed through: no import at start-up

NEW_YORK = "America/New_York"
BROKER_NY_CLOSE = "broker:ny-close"


@dataclass(frozen=True)
class Clock:
    """A source clock: an IANA zone plus a constant shift of the local wall time."""

    name: str
    zone: str
    shift: timedelta = timedelta(0)

    def to_utc(self, local: pl.Expr) -> pl.Expr:
        """Return the UTC instant of naive local wall times (null where the time does not exist)."""
        shifted = local - self.shift if self.shift else local
        if self.zone == "UTC":
            return shifted.dt.replace_time_zone("UTC")
        return shifted.dt.replace_time_zone(
            self.zone, ambiguous="earliest", non_existent="null"
        ).dt.convert_time_zone("UTC")

    def from_utc(self, utc: pl.Expr) -> pl.Expr:
        """Return naive local wall times of UTC instants."""
        local = utc.dt.convert_time_zone(self.zone).dt.replace_time_zone(None)
        return local + self.shift if self.shift else local

    def __str__(self) -> str:
        return self.name


UTC = Clock("UTC", "UTC")
BROKER = Clock(BROKER_NY_CLOSE, NEW_YORK, timedelta(hours=7))


def parse_clock(spec: str | Clock) -> Clock:
    """Parse a clock name (``UTC``, an IANA zone, ``UTC+2``, ``broker:ny-close``).

    Raises
    ------
    UsageError
        If the name is no known clock.
    """
    if isinstance(spec, Clock):
        return spec
    text = spec.strip()
    if text.upper() in {"UTC", "GMT", "Z", "ETC/UTC", "ETC/GMT"}:
        return UTC
    if text.lower() in {BROKER_NY_CLOSE, "broker", "ny-close", "mt4"}:
        return BROKER
    # Fixed offsets are plain arithmetic (much faster than a zone lookup per row).
    offset = re.fullmatch(r"(?:UTC|GMT)([+-])(\d{1,2})(?::?(\d{2}))?", text, flags=re.IGNORECASE)
    if offset:
        sign = 1 if offset.group(1) == "+" else -1
        hours, minutes = int(offset.group(2)), int(offset.group(3) or 0)
        return Clock(text, "UTC", timedelta(hours=sign * hours, minutes=sign * minutes))
    etc = re.fullmatch(r"Etc/GMT([+-])(\d{1,2})", text, flags=re.IGNORECASE)
    if etc:
        # POSIX signs: Etc/GMT+5 is five hours behind UTC.
        sign = -1 if etc.group(1) == "+" else 1
        return Clock(text, "UTC", timedelta(hours=sign * int(etc.group(2))))
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        msg = (
            f"unknown clock {spec!r}: use UTC, an IANA zone (America/New_York, Etc/GMT+5), "
            "a fixed offset (UTC+2) or broker:ny-close"
        )
        raise UsageError(msg) from None
    return Clock(text, text)


class Anchor(StrEnum):
    """Where buckets of H4 and longer bars start: UTC midnight, or the broker day (17:00 New York)."""

    UTC = "utc"
    BROKER = "broker"


#: Timeframes whose buckets depend on where the day starts.
DAY_ANCHORED = frozenset({Timeframe.H4, Timeframe.D1, Timeframe.W1, Timeframe.MN1})


def bar_clock(timeframe: Timeframe, calendar: str, anchor: str | Clock | None = None) -> Clock:
    """Return the clock that cuts bars of ``timeframe``: the bar clock of a series.

    The contract: bars shorter than four hours are cut on UTC. H4 and longer bars are cut on
    ``anchor`` when one is given (the ``--anchor`` a resample was made with, which a stored
    series records), else on the broker day (``broker:ny-close``) for instruments on the
    ``fx`` calendar and on UTC for every other calendar. Ingest, resampling, feature builds
    and research all ask this function, so a series' context bars are cut the same way
    wherever they are computed.

    Parameters
    ----------
    timeframe
        The bars' timeframe.
    calendar
        The instrument's trading calendar (``fx``, ``crypto``, ...).
    anchor
        ``utc``, ``broker``, a clock name (``UTC``, ``broker:ny-close``) or a clock; None for
        the instrument's default.
    """
    if timeframe not in DAY_ANCHORED:
        return UTC
    if anchor is not None:
        return parse_clock(anchor)
    return BROKER if calendar == "fx" else UTC

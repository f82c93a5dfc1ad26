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
from datetime import UTC as _UTC_TZ
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import UsageError
from core.timeframes import Timeframe
from core.times import as_utc

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

    def local_at(self, moment: datetime) -> datetime:
        """Return the naive local wall time of one UTC instant (the scalar :meth:`from_utc`)."""
        utc = as_utc(moment)
        local = utc if self.zone == "UTC" else utc.astimezone(ZoneInfo(self.zone))
        return local.replace(tzinfo=None) + self.shift

    def utc_at(self, local: datetime) -> datetime:
        """Return the UTC instant of a naive local wall time (the scalar :meth:`to_utc`).

        An ambiguous time takes the earlier instant, as :meth:`to_utc` does; a time that does
        not exist is read with the offset before the change.
        """
        wall = local - self.shift
        if self.zone == "UTC":
            return wall.replace(tzinfo=_UTC_TZ)
        return wall.replace(tzinfo=ZoneInfo(self.zone), fold=0).astimezone(_UTC_TZ)

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


def day_start_at(moment: datetime, start: str = "17:00", zone: str = NEW_YORK) -> datetime:
    """Return the UTC instant at which the day holding ``moment`` began.

    A day starts at ``start`` (``HH:MM``) local time in ``zone``; the default is the broker
    day, 17:00 New York (midnight on the ``broker:ny-close`` clock), so its length follows New
    York's daylight saving. This is the scalar form of cutting D1 bars on the broker clock.
    """
    hours, minutes = (int(part) for part in start.split(":"))
    offset = timedelta(hours=hours, minutes=minutes)
    # A day starting at HH:MM is a midnight-anchored day on a clock shifted by -HH:MM.
    clock = Clock(f"{zone} from {start}", zone, -offset)
    local = clock.local_at(moment)
    return clock.utc_at(datetime.combine(local.date(), time()))


# -- one bar at a time: the scalar form of how the store cuts buckets ----------------------

_LOCAL_EPOCH = datetime(1970, 1, 1)


def _bucket_label(local: datetime, timeframe: Timeframe) -> datetime:
    # Polars' windows (start_by="window") on naive wall times: whole multiples of the bar length
    # from the epoch, weeks from Monday, months from the 1st.
    if timeframe is Timeframe.MN1:
        return datetime(local.year, local.month, 1)
    if timeframe is Timeframe.W1:
        return datetime.combine(local.date() - timedelta(days=local.weekday()), time())
    step = timedelta(minutes=timeframe.minutes)
    return _LOCAL_EPOCH + (local - _LOCAL_EPOCH) // step * step


def _next_label(label: datetime, timeframe: Timeframe) -> datetime:
    if timeframe is Timeframe.MN1:
        year, month = divmod(label.year * 12 + label.month, 12)
        return datetime(year, month + 1, 1)
    if timeframe is Timeframe.W1:
        return label + timedelta(days=7)
    return label + timedelta(minutes=timeframe.minutes)


def bar_open_at(moment: datetime, timeframe: Timeframe, clock: Clock) -> datetime:
    """Return the open time (UTC) of the bar of ``timeframe`` on ``clock`` that holds ``moment``.

    This is the scalar form of :func:`pipelines.resample.resample_bars`: buckets are
    left-closed, left-labelled windows of local wall time on ``clock`` (whole multiples of the
    bar length from the epoch, W1 from Monday 00:00, MN1 from the 1st at 00:00), and a bucket's
    label is read back into UTC as :meth:`Clock.to_utc` reads it (an ambiguous label takes the
    earlier instant). A naive ``moment`` is taken to be UTC.

    Parameters
    ----------
    moment
        Any instant.
    timeframe
        The bar length.
    clock
        The clock that cuts the bars (see :func:`bar_clock`).
    """
    label = _bucket_label(clock.local_at(as_utc(moment)), timeframe)
    return clock.utc_at(label)


def bar_end_at(bar_open: datetime, timeframe: Timeframe, clock: Clock) -> datetime:
    """Return when the bar of ``timeframe`` cut on ``clock`` that opened at ``bar_open`` closes.

    The end is the next bucket's open (UTC), so a bar lasts its nominal length except across a
    change of the clock's offset: a D1 bar on the broker clock lasts 23 or 25 hours on the days
    New York changes to or from daylight saving, and W1 and MN1 bars follow the calendar. Any
    instant inside the bar gives the same end; a naive ``bar_open`` is taken to be UTC.

    Parameters
    ----------
    bar_open
        The bar's open time, as :func:`bar_open_at` returns it.
    timeframe
        The bar length.
    clock
        The clock that cuts the bars.
    """
    label = _bucket_label(clock.local_at(as_utc(bar_open)), timeframe)
    return clock.utc_at(_next_label(label, timeframe))

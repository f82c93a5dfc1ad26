"""Trading calendars: when a market is open, as vectorised Polars expressions.

Each calendar is a weekly session in a local clock:

- ``fx``: Sunday 17:00 to Friday 17:00 New York, i.e. Monday 00:00 to Saturday 00:00 on the
  ``broker:ny-close`` clock, around the clock in between (also used for metals, index and
  commodity CFDs, whose short daily breaks show up as gaps);
- ``nyse``: 09:30 to 16:00 New York, Monday to Friday (exchange holidays are not modelled yet and
  are reported as gaps);
- ``crypto``: always open.

``trading_minutes`` maps an instant to the number of open minutes since an epoch, so the number of
bars missing between two consecutive bars is a difference of two numbers. :meth:`is_open_at` and
:meth:`next_close_at` answer for one instant, for a runtime that handles one instant at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

import polars as pl

from core.clocks import BROKER, UTC, Clock, parse_clock
from core.errors import UsageError
from core.times import as_utc

_MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class TradingCalendar:
    """A weekly session: ``days`` open weekdays from Monday, ``start``..``end`` minutes each."""

    name: str
    clock: Clock
    days: int
    start: int
    end: int

    @property
    def minutes_per_day(self) -> int:
        """Return the open minutes of one trading day."""
        return self.end - self.start

    def _local_parts(self, ts_utc: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
        local = self.clock.from_utc(ts_utc)
        days = local.dt.epoch("d")
        # 1970-01-01 was a Thursday: (days + 3) // 7 counts weeks starting on Monday.
        week = (days + 3) // 7
        weekday = (days + 3) % 7  # 0 = Monday
        minute = local.dt.hour().cast(pl.Int64) * 60 + local.dt.minute().cast(pl.Int64)
        return week, weekday, minute

    def trading_minutes(self, ts_utc: pl.Expr) -> pl.Expr:
        """Return open minutes elapsed since the epoch at each instant."""
        week, weekday, minute = self._local_parts(ts_utc)
        per_day = self.minutes_per_day
        in_day = pl.when(weekday < self.days).then((minute - self.start).clip(0, per_day))
        return (
            week * self.days * per_day + weekday.clip(0, self.days) * per_day + in_day.otherwise(0)
        )

    def trading_days(self, ts_utc: pl.Expr) -> pl.Expr:
        """Return the trading-day number of each instant (weekends share the next Monday's)."""
        week, weekday, _ = self._local_parts(ts_utc)
        return week * self.days + weekday.clip(0, self.days)

    def is_open(self, ts_utc: pl.Expr) -> pl.Expr:
        """Return whether the market is open at each instant."""
        _, weekday, minute = self._local_parts(ts_utc)
        return (weekday < self.days) & (minute >= self.start) & (minute < self.end)

    def is_open_at(self, moment: datetime) -> bool:
        """Return whether the market is open at one instant (the scalar :meth:`is_open`).

        A naive ``moment`` is taken to be UTC.
        """
        local = self.clock.local_at(as_utc(moment))
        minute = local.hour * 60 + local.minute
        return local.weekday() < self.days and self.start <= minute < self.end

    def _weekly_closes(self) -> tuple[int, ...]:
        # Minutes from Monday 00:00 local at which a session ends; a day ending at midnight
        # whose next day opens at midnight runs on without a close.
        runs_on = self.start == 0 and self.end == _MINUTES_PER_DAY
        return tuple(
            day * _MINUTES_PER_DAY + self.end
            for day in range(self.days)
            if not (runs_on and (day + 1 < self.days or self.days == 7))
        )

    def next_close_at(self, moment: datetime) -> datetime | None:
        """Return the first instant (UTC) after ``moment`` at which the market closes.

        For ``fx`` this is the end of the weekly session, Friday 17:00 New York (the
        following Friday when ``moment`` falls on a weekend); for ``nyse`` the day's 16:00
        close; None for a market that never closes (``crypto``). A naive ``moment`` is taken
        to be UTC.
        """
        closes = self._weekly_closes()
        if not closes:
            return None
        utc = as_utc(moment)
        local = self.clock.local_at(utc)
        monday = datetime.combine(local.date() - timedelta(days=local.weekday()), time())
        for close in closes:
            at = self.clock.utc_at(monday + timedelta(minutes=close))
            if at > utc:
                return at
        return self.clock.utc_at(monday + timedelta(weeks=1, minutes=closes[0]))


CALENDARS = {
    "fx": TradingCalendar("fx", BROKER, days=5, start=0, end=1440),
    "nyse": TradingCalendar("nyse", parse_clock("America/New_York"), days=5, start=570, end=960),
    "crypto": TradingCalendar("crypto", UTC, days=7, start=0, end=1440),
}


def get_calendar(name: str) -> TradingCalendar:
    """Return a calendar by name (``fx``, ``nyse``, ``crypto``)."""
    try:
        return CALENDARS[name]
    except KeyError:
        msg = f"unknown trading calendar {name!r}: use one of {', '.join(CALENDARS)}"
        raise UsageError(msg) from None

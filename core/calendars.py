"""Trading calendars: when a market is open, as vectorised Polars expressions.

Each calendar is a weekly session in a local clock:

- ``fx``: Sunday 17:00 to Friday 17:00 New York, i.e. Monday 00:00 to Saturday 00:00 on the
  ``broker:ny-close`` clock, around the clock in between (also used for metals, index and
  commodity CFDs, whose short daily breaks show up as gaps);
- ``nyse``: 09:30 to 16:00 New York, Monday to Friday (exchange holidays are not modelled yet and
  are reported as gaps);
- ``crypto``: always open.

``trading_minutes`` maps an instant to the number of open minutes since an epoch, so the number of
bars missing between two consecutive bars is a difference of two numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from core.clocks import BROKER, UTC, Clock, parse_clock
from core.errors import UsageError


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

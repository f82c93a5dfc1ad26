"""How instants are written and read: ISO-8601 UTC with ``Z``.

The contract every command keeps: times in machine-readable output, stored records and file
names are UTC, written ISO-8601 with a ``Z`` (``2017-01-02T09:00:00Z``). Inputs may be a date
(``2017-01-02``), a time with ``Z`` or an offset (``2017-01-02T09:00Z``,
``2017-01-02T11:00+02:00``), or a naive time, which is taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from core.errors import UsageError

if TYPE_CHECKING:
    import polars as pl  # the expressions are only passed through: no import at start-up

#: ``strftime`` pattern of an instant to the second, as every stored file and JSON line writes it.
ISO_Z = "%Y-%m-%dT%H:%M:%SZ"
#: ``strftime`` pattern of an instant in a run id: compact, sortable, second resolution.
COMPACT = "%Y%m%dT%H%M%S"
#: ``strftime`` patterns of MetaTrader's local times (its history exports, its bridge's replies).
MT4_DAY = "%Y.%m.%d"
MT4_MINUTES = "%Y.%m.%d %H:%M"
MT4_SECONDS = "%Y.%m.%d %H:%M:%S"


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_z(moment: datetime, timespec: str = "seconds") -> str:
    """Return ``moment`` as ISO-8601 UTC with ``Z``: ``2017-01-02T09:00:00Z``.

    A naive datetime is taken to be UTC. ``timespec`` is :meth:`datetime.isoformat`'s
    (``seconds`` by default; ``microseconds`` keeps sub-second instants).
    """
    return as_utc(moment).isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_z_or_none(moment: datetime | None) -> str | None:
    """Return :func:`iso_z` of ``moment``, or None for None."""
    return None if moment is None else iso_z(moment)


def iso_z_ns(ns: int) -> str:
    """Return an instant in nanoseconds since the epoch (UTC) as ISO-8601 with ``Z``, to the second."""
    return iso_z(datetime.fromtimestamp(int(ns) // 1_000_000_000, tz=UTC))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_ns(ns: int) -> datetime:
    """Return the UTC instant of nanoseconds since the epoch (to the microsecond, exactly)."""
    return _EPOCH + timedelta(microseconds=int(ns) // 1000)


def ns_from_utc(moment: datetime) -> int:
    """Return nanoseconds since the epoch of an aware instant (exactly, microseconds and all)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def iso_z_expr(expr: pl.Expr) -> pl.Expr:
    """Return a Polars expression writing datetimes as ISO-8601 UTC with ``Z``, to the second."""
    return expr.dt.convert_time_zone("UTC").dt.strftime(ISO_Z)


def jsonable(value: object) -> object:
    """Return ``value`` as JSON writes it: instants as ISO-8601 UTC with ``Z``, dates as ISO.

    Other values come back as they are; JSON encoders call this for what they cannot write.
    """
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def parse_utc(text: str, what: str = "time") -> datetime:
    """Return the UTC instant of an ISO date or time (``2017-01-02``, ``2017-01-02T09:00Z``).

    Raises
    ------
    UsageError
        If ``text`` is no ISO date or time; the message names ``what`` (e.g. ``--from``).
    """
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        msg = f"{what} {text!r} is not a date: use ISO format, 2017-01-02 or 2017-01-02T09:00Z"
        raise UsageError(msg) from None
    return as_utc(value)


def reformat_iso_z(text: str) -> str:
    """Return an ISO time written with an offset or a space (``2017-01-02 09:00:00+00:00``) as
    ISO-8601 UTC with ``Z``; text that is no ISO time comes back unchanged."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return iso_z(moment, "auto" if moment.microsecond else "seconds")


def utc_now() -> datetime:
    """Return the current instant in UTC."""
    return datetime.now(UTC)

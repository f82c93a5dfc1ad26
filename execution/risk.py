"""The risk engine: pre-trade checks and account breakers between every decision and its broker.

Risk state and limits belong to an account (``paper:<session>``, or a broker login). The
engine is pure: no I/O and no wall clock. Every method takes the loop's ``ts``; the loop
persists the :class:`RiskState` and the :class:`RiskEvent` values it is given back.

Pre-trade checks (:meth:`RiskEngine.check`) apply to an order that increases the account's
exposure: one that makes ``|position|`` larger, reverses it, or that the loop marks as an entry.
An order that only reduces ``|position|`` is always allowed, so exits, stop-outs and flattening
run whatever the limits and the account's mode. The checks, in order:

- the mode: nothing increases exposure while the account is REDUCING or HALTED, and no entry
  is made during a cooldown;
- ``allowed_symbols``, ``trading_hours`` (UTC, on the loop's clock) and the weekend
  (``flatten_before_weekend``: no new exposure from :data:`WEEKEND_MARGIN` before the FX week
  closes, Friday 17:00 New York, until it reopens);
- ``max_open_orders`` (this order included) and ``max_orders_per_minute`` (this order
  included);
- ``max_position_lots`` on ``|position after the order| / contract_size``;
- ``max_gross_exposure``: ``gross before + (|after| - |before|) × price × to_account``;
- ``max_leverage``: that gross exposure divided by equity.

Account breakers (:meth:`RiskEngine.on_mark`), with ``D`` the risk day's starting equity and
``H`` the equity high-water mark:

- daily loss ``(D - equity) / D`` and drawdown ``(H - equity) / H``; the account is HALTED at
  the first mark where either is at or beyond its limit (``>=``), REDUCING from ``reduce_at``
  of either limit, ACTIVE below both. REDUCING is recomputed at each mark; a new risk day
  re-bases ``D``; HALTED stays until :meth:`RiskEngine.reset`;
- ``cooldown_after_losses`` losing closed trades in a row block entries for ``cooldown_bars``
  bars, after which the cooldown clears itself.

:meth:`RiskEngine.quiet_marks` is the same rule over an array of marks: how many in a row
change nothing, so a replay can take them at once.

A limit left unset is off. A loss fraction of a base that is not positive is infinite while
equity is not positive either (an account without equity trips every loss limit set), zero
otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field, ValidationError, field_validator

from core.calendars import get_calendar
from core.clocks import day_start_at
from core.errors import DataError, UsageError, options_error, validation_problems
from core.settings import RiskSettings
from core.times import as_utc, iso_z, ns_from_utc, parse_utc
from core.types import Frozen

#: How long before the FX week closes (Friday 17:00 New York) no new exposure is taken when
#: ``flatten_before_weekend`` is set; :meth:`RiskEngine.should_flatten` is true from then on.
WEEKEND_MARGIN = timedelta(minutes=15)

# Relative tolerance of size and exposure comparisons: float rounding of partial fills must
# neither block a flatten nor let an order through a limit.
_REL_TOL = 1e-9
# How close to a breaker or reduce threshold a mark may come and still be quiet.
_QUIET_MARGIN = 1e-12

_Fraction = TypeVar("_Fraction", float, npt.NDArray[np.float64])

RiskEventKind = Literal[
    "breaker", "reduce", "recover", "halt", "reset", "cooldown", "cooldown_cleared", "new_day"
]

_TIME_FIELDS = ("since", "day_start", "last_mark")
_NONE_WORDS = frozenset({"none", "off", "null"})


class RiskMode(StrEnum):
    """Where an account stands: trading, only reducing exposure, or stopped."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class RiskState(Frozen):
    """The risk state of one account, as the loop persists it between marks and restarts.

    ``since`` and ``reason`` describe the last change of ``mode``; ``day_start`` is the start
    of the current risk day and ``day_start_equity`` the equity it is measured from;
    ``equity_hwm`` is the high-water mark, ``last_equity`` and ``last_mark`` the last mark.
    """

    account: str = Field(min_length=1)
    mode: RiskMode = RiskMode.ACTIVE
    since: datetime | None = None
    reason: str = ""
    day_start: datetime | None = None
    day_start_equity: float | None = None
    equity_hwm: float | None = None
    last_equity: float | None = None
    last_mark: datetime | None = None
    losses_in_row: int = Field(default=0, ge=0)
    cooldown_bars_left: int = Field(default=0, ge=0)

    @field_validator(*_TIME_FIELDS)
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    def to_json(self) -> dict[str, Any]:
        """Return the state as JSON-ready values, times ISO-8601 UTC with ``Z``."""
        data = self.model_dump()
        data["mode"] = self.mode.value
        for key in _TIME_FIELDS:
            moment = data[key]
            data[key] = None if moment is None else iso_z(moment, "auto")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RiskState:
        """Return the state :meth:`to_json` wrote.

        Raises
        ------
        DataError
            If a value is missing or malformed, naming it.
        """
        values = dict(data)
        for key in _TIME_FIELDS:
            if isinstance(values.get(key), str):
                values[key] = parse_utc(values[key], f"risk state {key}")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            msg = (
                f"stored risk state of account {values.get('account')!r} is unreadable "
                f"({validation_problems(exc)}): fix or delete the stored state"
            )
            raise DataError(msg) from None


class RiskEvent(Frozen):
    """A change the engine made to an account's risk state, for the state database and notices.

    ``from_mode`` and ``to_mode`` are equal for events that change no mode (``new_day``,
    ``cooldown``, ``cooldown_cleared``); ``equity`` is the last marked equity.
    """

    ts: datetime
    account: str
    kind: RiskEventKind
    from_mode: RiskMode
    to_mode: RiskMode
    reason: str
    equity: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the event as JSON-ready values, its time ISO-8601 UTC with ``Z``."""
        data = self.model_dump()
        data.update(
            ts=iso_z(self.ts, "auto"), from_mode=self.from_mode.value, to_mode=self.to_mode.value
        )
        return data


class OrderCheck(Frozen):
    """What the engine needs to know of an order before it goes to the broker.

    Units are signed (positive buys, negative sells). ``price`` is quote currency per unit,
    ``to_account`` the account currency one unit of quote currency is worth.
    ``gross_exposure`` is the account's gross exposure in account currency over all its
    symbols before the order; ``open_orders`` and ``orders_last_minute`` count the orders
    already working and those sent in the minute before ``ts``, this one excluded.
    ``is_entry`` is true when the order opens or increases a position.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    ts: datetime
    symbol: str
    position_units: float
    order_units: float
    price: float = Field(gt=0)
    to_account: float = Field(gt=0)
    contract_size: float = Field(gt=0)
    equity: float
    gross_exposure: float = Field(ge=0)
    open_orders: int = Field(ge=0)
    orders_last_minute: int = Field(ge=0)
    is_entry: bool


class Verdict(Frozen):
    """Whether an order may go to the broker; ``reason`` names the limit and the numbers if not."""

    allowed: bool
    reason: str = ""


class RiskStatus(Frozen):
    """An account's risk standing, as the command line and the dashboard show it.

    ``drawdown`` is ``equity / equity_hwm - 1``: 0 at the high-water mark, negative below it.
    ``limits`` holds the limits that are set; those that are off are left out.
    """

    account: str
    state: RiskMode
    paused: bool
    since: datetime | None
    reason: str
    day_start_equity: float | None
    daily_pnl: float | None
    equity_hwm: float | None
    drawdown: float | None
    limits: dict[str, Any]


_ALLOWED = Verdict(allowed=True)


def increases_exposure(position_units: float, order_units: float) -> bool:
    """Return whether an order increases exposure: ``|after| > |before|``, or it reverses.

    A reverse (the order takes the position through flat to the other side) increases
    exposure on the new side even when the new position is smaller. Sizes within a relative
    1e-9 are taken as equal, so a flatten that leaves float dust is not an increase.

    Parameters
    ----------
    position_units
        The current signed position.
    order_units
        The order's signed units.
    """
    after = position_units + order_units
    tolerance = _REL_TOL * max(abs(position_units), abs(order_units))
    if abs(after) <= tolerance:
        return False
    if abs(after) > abs(position_units) + tolerance:
        return True
    return position_units * after < 0.0


def parse_risk_overrides(base: RiskSettings, items: Sequence[str]) -> RiskSettings:
    """Return ``base`` with ``KEY=VALUE`` overrides (``--risk``) applied, checked.

    Values are read as in TOML, without quotes: numbers, ``true``/``false``, ``none`` or
    ``off`` to switch a limit off, and a comma list for ``allowed_symbols``. Keys may be
    written with dashes (``max-daily-loss``).

    Raises
    ------
    UsageError
        For an item without ``=``, an unknown key (listing the known ones), or a value the
        limit refuses (naming the key).
    """
    fields = RiskSettings.model_fields
    updates: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"risk override {item!r}: write KEY=VALUE, e.g. max_daily_loss=0.03")
        if key not in fields:
            msg = f"unknown risk limit {key!r} in {item!r}: use one of {', '.join(fields)}"
            raise UsageError(msg)
        updates[key] = _override_value(key, fields[key].annotation, text.strip().strip("'\""))
    try:
        limits = RiskSettings.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        raise options_error("risk", exc) from None
    _check_limits(limits)
    return limits


def _override_value(key: str, annotation: Any, text: str) -> Any:
    # Switches, numbers and HH:MM text go to the settings model as text: it reads and checks
    # them (true/false/on/off for a switch), naming the key when it refuses one.
    if annotation is bool:
        return text
    if text.lower() in _NONE_WORDS:
        return None
    if key == "allowed_symbols":
        return tuple(part.strip().upper() for part in text.split(",") if part.strip())
    return text


def _clock_time(text: str, key: str, value: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours > 23 or minutes > 59:
        msg = f"risk {key} {value!r}: write times HH:MM with hours 00-23 and minutes 00-59"
        raise UsageError(msg)
    return time(hours, minutes)


def _trading_window(limits: RiskSettings) -> tuple[time, time] | None:
    hours = limits.trading_hours
    if hours is None:
        return None
    start, end = hours.split("-")
    return _clock_time(start, "trading_hours", hours), _clock_time(end, "trading_hours", hours)


def _check_limits(limits: RiskSettings) -> None:
    _trading_window(limits)
    _clock_time(limits.day_start, "day_start", limits.day_start)
    try:
        ZoneInfo(limits.day_zone)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"risk day_zone {limits.day_zone!r} is no IANA time zone: use e.g. America/New_York"
        raise UsageError(msg) from None


def _loss_fraction(base: float, equity: float) -> float:
    if base > 0.0:
        return (base - equity) / base
    return math.inf if equity <= 0.0 else 0.0


def _loss_fractions(
    base: float | npt.NDArray[np.float64], equity: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    # The array form of _loss_fraction.
    bases = np.broadcast_to(np.asarray(base, dtype=np.float64), equity.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (bases - equity) / bases
    return np.where(bases > 0.0, ratio, np.where(equity <= 0.0, np.inf, 0.0))


def _finite(value: float, what: str, ts: datetime) -> float:
    if not math.isfinite(value):
        msg = f"{what} {value} at {iso_z(ts)} is not a finite number: the risk engine needs one"
        raise DataError(msg)
    return float(value)


class RiskEngine:
    """The limits and risk state of one account; every method takes the loop's time.

    Parameters
    ----------
    limits
        The account's limits (``settings.risk`` with the session's ``--risk`` overrides).
    state
        The account's risk state, as last persisted (:meth:`fresh` for a new account).
    weekend_margin
        How long before the FX week closes no new exposure is taken, when
        ``limits.flatten_before_weekend`` is set.

    Raises
    ------
    UsageError
        If ``trading_hours``, ``day_start`` or ``day_zone`` is no valid time or zone.
    """

    def __init__(
        self, limits: RiskSettings, state: RiskState, *, weekend_margin: timedelta = WEEKEND_MARGIN
    ) -> None:
        _check_limits(limits)
        self._limits = limits
        self._state = state
        self._window = _trading_window(limits)
        self._weekend_margin = weekend_margin
        self._next_day: tuple[datetime, int] | None = None

    @classmethod
    def fresh(
        cls, limits: RiskSettings, account: str, *, weekend_margin: timedelta = WEEKEND_MARGIN
    ) -> RiskEngine:
        """Return an engine for an account with no risk history: ACTIVE, nothing marked yet."""
        return cls(limits, RiskState(account=account), weekend_margin=weekend_margin)

    @property
    def state(self) -> RiskState:
        """Return the current risk state."""
        return self._state

    @property
    def limits(self) -> RiskSettings:
        """Return the limits."""
        return self._limits

    # -- marks, trades and bars ---------------------------------------------------------------

    def on_mark(self, ts: datetime, equity: float) -> list[RiskEvent]:
        """Mark the account at ``equity``: roll the risk day, move the high-water mark and mode.

        The first mark, and the first of each new risk day, sets the day's starting equity.
        Then the account is HALTED if the daily loss or the drawdown is at or beyond its limit,
        REDUCING if either is at or beyond ``reduce_at`` of its limit, ACTIVE otherwise; a
        HALTED account stays so.

        Returns
        -------
        list[RiskEvent]
            The changes made: ``new_day``, then ``breaker``, ``reduce`` or ``recover``.

        Raises
        ------
        DataError
            If ``equity`` is not a finite number.
        """
        ts = as_utc(ts)
        equity = _finite(equity, "equity", ts)
        state = self._state
        events: list[RiskEvent] = []
        known = state.day_start
        if known is not None and known <= ts and ns_from_utc(ts) < self._next_day_ns(known):
            day = known  # still the same risk day: no time-zone arithmetic
        else:
            day = day_start_at(ts, self._limits.day_start, self._limits.day_zone)
        day_start, base = state.day_start, state.day_start_equity
        if day_start is None or base is None:
            day_start, base = day, equity
        elif day > day_start:
            day_start, base = day, equity
            reason = f"risk day from {iso_z(day)} starts at equity {equity:,.2f}"
            events.append(self._event(ts, "new_day", state.mode, reason, equity))
        hwm = equity if state.equity_hwm is None else max(state.equity_hwm, equity)
        self._state = state.model_copy(
            update={
                "day_start": day_start,
                "day_start_equity": base,
                "equity_hwm": hwm,
                "last_equity": equity,
                "last_mark": ts,
            }
        )
        if state.mode is RiskMode.HALTED:
            return events
        daily, drawdown = _loss_fraction(base, equity), _loss_fraction(hwm, equity)
        tripped = self._breaches(daily, drawdown, 1.0)
        warned = self._breaches(daily, drawdown, self._limits.reduce_at)
        if tripped:
            events += self._move(ts, "breaker", RiskMode.HALTED, tripped, equity)
        elif warned and state.mode is RiskMode.ACTIVE:
            events += self._move(ts, "reduce", RiskMode.REDUCING, warned, equity)
        elif not warned and state.mode is RiskMode.REDUCING:
            reason = (
                f"daily loss {daily:.3%} and drawdown {drawdown:.3%} back below "
                f"reduce_at {self._limits.reduce_at:g} of their limits"
            )
            events += self._move(ts, "recover", RiskMode.ACTIVE, reason, equity)
        return events

    def on_trade_closed(self, ts: datetime, pnl: float) -> list[RiskEvent]:
        """Count a closed trade: losses in a row start a cooldown at ``cooldown_after_losses``.

        A trade with ``pnl < 0`` is a loss; any other ends the run of losses. The run starts
        again from zero when a cooldown starts.

        Returns
        -------
        list[RiskEvent]
            ``cooldown`` when one starts, else nothing.
        """
        ts = as_utc(ts)
        pnl = _finite(pnl, "trade pnl", ts)
        state = self._state
        losses = state.losses_in_row + 1 if pnl < 0.0 else 0
        needed = self._limits.cooldown_after_losses
        if needed is None or losses < needed:
            self._state = state.model_copy(update={"losses_in_row": losses})
            return []
        bars = self._limits.cooldown_bars
        self._state = state.model_copy(update={"losses_in_row": 0, "cooldown_bars_left": bars})
        reason = f"{losses} losing trades in a row: no entries for {bars} bars"
        return [self._event(ts, "cooldown", state.mode, reason, state.last_equity)]

    def on_bar(self, ts: datetime) -> list[RiskEvent]:
        """Count one bar of a cooldown down; clear the cooldown at its last bar.

        Call it once per bar of the account's decision timeframe.

        Returns
        -------
        list[RiskEvent]
            ``cooldown_cleared`` when the cooldown ends, else nothing.
        """
        state = self._state
        if state.cooldown_bars_left == 0:
            return []
        left = state.cooldown_bars_left - 1
        self._state = state.model_copy(update={"cooldown_bars_left": left})
        if left:
            return []
        reason = f"cooldown of {self._limits.cooldown_bars} bars over"
        return [self._event(as_utc(ts), "cooldown_cleared", state.mode, reason, state.last_equity)]

    # -- commands -----------------------------------------------------------------------------

    def halt(self, ts: datetime, reason: str) -> list[RiskEvent]:
        """Move the account to HALTED (a trader's or the loop's decision); idempotent.

        Returns
        -------
        list[RiskEvent]
            ``halt``, or nothing when the account was HALTED already.
        """
        if self._state.mode is RiskMode.HALTED:
            return []
        return self._move(as_utc(ts), "halt", RiskMode.HALTED, reason, self._state.last_equity)

    def reset(self, ts: datetime, reason: str) -> list[RiskEvent]:
        """Clear the account back to ACTIVE, re-basing the high-water mark and the day.

        The high-water mark and the day's starting equity become the last marked equity, the
        risk day the one holding ``ts``; the run of losses and any cooldown are cleared.

        Returns
        -------
        list[RiskEvent]
            ``reset``.
        """
        ts = as_utc(ts)
        state = self._state
        equity = state.last_equity
        day = day_start_at(ts, self._limits.day_start, self._limits.day_zone)
        self._state = state.model_copy(
            update={
                "day_start": None if equity is None else day,
                "day_start_equity": equity,
                "equity_hwm": equity,
                "losses_in_row": 0,
                "cooldown_bars_left": 0,
            }
        )
        return self._move(ts, "reset", RiskMode.ACTIVE, reason, equity)

    # -- pre-trade ----------------------------------------------------------------------------

    def check(self, order: OrderCheck) -> Verdict:
        """Return whether an order may go to the broker, and if not which limit refused it.

        An order that does not increase exposure (see :func:`increases_exposure`) and is no
        entry is always allowed; any other must pass every check of the module's list.
        """
        grows = increases_exposure(order.position_units, order.order_units)
        if not (grows or order.is_entry):
            return _ALLOWED
        ts = as_utc(order.ts)
        for reason in (
            self._mode_refusal(),
            self._symbol_refusal(order.symbol),
            self._hours_refusal(ts),
            self._weekend_refusal(ts),
            self._count_refusal(order),
            self._size_refusal(order),
        ):
            if reason:
                return Verdict(allowed=False, reason=reason)
        return _ALLOWED

    def quiet_marks(self, ends: npt.NDArray[np.int64], equity: npt.NDArray[np.float64]) -> int:
        """Return how many leading marks would change nothing but the high-water mark and last mark.

        A quiet mark starts no new risk day, moves no mode and comes while no cooldown runs;
        the loop may take a run of ``n`` quiet marks at once, by :meth:`on_mark` of the
        highest of them and then of the last, which leaves the state as marking each one
        would (the bars in between need no :meth:`on_bar`). A mark within 1e-12 of a
        threshold, or with an equity that is not a finite number, is not quiet.

        Parameters
        ----------
        ends
            The marks' times, ns UTC, increasing.
        equity
            The equity at each mark.
        """
        state, limits = self._state, self._limits
        base = state.day_start_equity
        if state.cooldown_bars_left or state.day_start is None or base is None:
            return 0
        count = min(int(np.searchsorted(ends, self._next_day_ns(state.day_start))), len(equity))
        if count == 0:
            return 0
        marks = np.asarray(equity[:count], dtype=np.float64)
        moves = ~np.isfinite(marks)
        if state.mode is not RiskMode.HALTED:
            first_hwm = marks[0] if state.equity_hwm is None else state.equity_hwm
            hwm = np.maximum.accumulate(np.concatenate(([first_hwm], marks)))[1:]
            rows = self._loss_limits(_loss_fractions(base, marks), _loss_fractions(hwm, marks))
            reduce_at = limits.reduce_at
            if state.mode is RiskMode.ACTIVE:
                for _, _, value, limit in rows:
                    moves |= value >= reduce_at * limit - _QUIET_MARGIN
            else:  # REDUCING stays while a measure is past reduce_at and none at its limit
                held = np.zeros(count, dtype=bool)
                for _, _, value, limit in rows:
                    held |= value >= reduce_at * limit + _QUIET_MARGIN
                    moves |= value >= limit - _QUIET_MARGIN
                moves |= ~held
        hits = np.flatnonzero(moves)
        return int(hits[0]) if hits.size else count

    def _next_day_ns(self, day_start: datetime) -> int:
        """Return when the risk day after the one starting at ``day_start`` starts (ns UTC)."""
        cached = self._next_day
        if cached is None or cached[0] != day_start:
            limits = self._limits
            # A risk day lasts 23 to 25 hours: 25 h 1 min after this one's start is in the next.
            after = day_start + timedelta(hours=25, minutes=1)
            cached = (
                day_start,
                ns_from_utc(day_start_at(after, limits.day_start, limits.day_zone)),
            )
            self._next_day = cached
        return cached[1]

    def absorb_quiet(self, ts: datetime, top: float, last: float) -> None:
        """Take a run of quiet marks (:meth:`quiet_marks`) at once: the highest and the last.

        Equal to :meth:`on_mark` of the highest mark, then of the last, for marks the engine
        called quiet: only the high-water mark and the last mark move.
        """
        state = self._state
        hwm = top if state.equity_hwm is None else max(state.equity_hwm, top)
        self._state = state.model_copy(
            update={"equity_hwm": hwm, "last_equity": last, "last_mark": as_utc(ts)}
        )

    def should_flatten(self, ts: datetime) -> bool:
        """Return whether positions should be flat now: the weekend rule is set and it is time.

        True from :data:`WEEKEND_MARGIN` before the FX week closes (Friday 17:00 New York)
        until the week reopens (Sunday 17:00 New York).
        """
        return bool(self._weekend_refusal(as_utc(ts)))

    def status(self, paused: bool) -> RiskStatus:
        """Return the account's risk standing; ``paused`` is the loop's own pause flag."""
        state = self._state
        equity, base, hwm = state.last_equity, state.day_start_equity, state.equity_hwm
        daily_pnl = None if equity is None or base is None else equity - base
        drawdown = None if equity is None or hwm is None or hwm <= 0 else equity / hwm - 1.0
        return RiskStatus(
            account=state.account,
            state=state.mode,
            paused=paused,
            since=state.since,
            reason=state.reason,
            day_start_equity=base,
            daily_pnl=daily_pnl,
            equity_hwm=hwm,
            drawdown=drawdown,
            limits=self._limits_set(),
        )

    # -- helpers ------------------------------------------------------------------------------

    def _event(
        self,
        ts: datetime,
        kind: RiskEventKind,
        mode: RiskMode,
        reason: str,
        equity: float | None,
        before: RiskMode | None = None,
    ) -> RiskEvent:
        return RiskEvent(
            ts=ts, account=self._state.account, kind=kind, from_mode=before or mode, to_mode=mode,
            reason=reason, equity=equity,
        )  # fmt: skip

    def _move(
        self, ts: datetime, kind: RiskEventKind, mode: RiskMode, reason: str, equity: float | None
    ) -> list[RiskEvent]:
        before = self._state.mode
        self._state = self._state.model_copy(update={"mode": mode, "since": ts, "reason": reason})
        return [self._event(ts, kind, mode, reason, equity, before)]

    def _loss_limits(
        self, daily: _Fraction, drawdown: _Fraction
    ) -> list[tuple[str, str, _Fraction, float]]:
        # (what is measured, the limit's name, the measure, the limit) of each loss limit set
        limits = self._limits
        rows = [
            ("daily loss", "max_daily_loss", daily, limits.max_daily_loss),
            ("drawdown", "max_trailing_drawdown", drawdown, limits.max_trailing_drawdown),
        ]
        return [
            (what, name, value, limit) for what, name, value, limit in rows if limit is not None
        ]

    def _breaches(self, daily: float, drawdown: float, scale: float) -> str:
        return "; ".join(
            f"{what} {value:.3%} >= {_scaled(scale)}{name} {limit:.3%}"
            for what, name, value, limit in self._loss_limits(daily, drawdown)
            if value >= scale * limit
        )

    def _mode_refusal(self) -> str:
        state = self._state
        if state.mode is not RiskMode.ACTIVE:
            return (
                f"account {state.mode.value} ({state.reason}): only orders that reduce a "
                "position are allowed"
            )
        if state.cooldown_bars_left:
            return (
                f"cooldown after {self._limits.cooldown_after_losses} losing trades in a row: "
                f"no entries for {state.cooldown_bars_left} more bars"
            )
        return ""

    def _symbol_refusal(self, symbol: str) -> str:
        allowed = self._limits.allowed_symbols
        if allowed is None or symbol.upper() in {s.upper() for s in allowed}:
            return ""
        return f"symbol {symbol} not in allowed_symbols ({', '.join(allowed) or 'none'})"

    def _hours_refusal(self, ts: datetime) -> str:
        if self._window is None:
            return ""
        start, end = self._window
        now = ts.time()
        inside = start <= now < end if start < end else (now >= start or now < end)
        if inside:
            return ""
        return f"{iso_z(ts)} is outside trading_hours {self._limits.trading_hours} UTC"

    def _weekend_refusal(self, ts: datetime) -> str:
        if not self._limits.flatten_before_weekend:
            return ""
        fx = get_calendar("fx")
        if not fx.is_open_at(ts):
            return f"flatten_before_weekend: the FX market is closed for the weekend at {iso_z(ts)}"
        close = fx.next_close_at(ts)
        if close is None or close - ts > self._weekend_margin:
            return ""
        return (
            f"flatten_before_weekend: no new exposure in the {self._weekend_margin} before the "
            f"FX week closes at {iso_z(close)}"
        )

    def _count_refusal(self, order: OrderCheck) -> str:
        limits = self._limits
        if limits.max_open_orders is not None and order.open_orders >= limits.max_open_orders:
            return f"max_open_orders {limits.max_open_orders} reached ({order.open_orders} open)"
        per_minute = limits.max_orders_per_minute
        if per_minute is not None and order.orders_last_minute >= per_minute:
            return (
                f"max_orders_per_minute {per_minute} reached "
                f"({order.orders_last_minute} sent in the minute before {iso_z(order.ts)})"
            )
        return ""

    def _size_refusal(self, order: OrderCheck) -> str:
        limits = self._limits
        before = abs(order.position_units)
        after = abs(order.position_units + order.order_units)
        lots = after / order.contract_size
        if limits.max_position_lots is not None and _exceeds(lots, limits.max_position_lots):
            return (
                f"max_position_lots: {order.symbol} position after the order {lots:g} lots "
                f"> limit {limits.max_position_lots:g}"
            )
        gross = max(order.gross_exposure + (after - before) * order.price * order.to_account, 0.0)
        if limits.max_gross_exposure is not None and _exceeds(gross, limits.max_gross_exposure):
            return (
                f"max_gross_exposure: {gross:,.2f} after the order "
                f"> limit {limits.max_gross_exposure:,.2f}"
            )
        if limits.max_leverage is not None:
            if order.equity <= 0.0:
                return f"max_leverage: equity {order.equity:,.2f} is not positive"
            leverage = gross / order.equity
            if _exceeds(leverage, limits.max_leverage):
                return (
                    f"max_leverage: {leverage:.2f}x after the order > limit "
                    f"{limits.max_leverage:g}x (gross {gross:,.2f} / equity {order.equity:,.2f})"
                )
        return ""

    def _limits_set(self) -> dict[str, Any]:
        limits = self._limits
        values = {
            key: value
            for key, value in limits.model_dump(mode="json").items()
            if value is not None and value is not False
        }
        if limits.cooldown_after_losses is None:
            values.pop("cooldown_bars")
        if limits.max_daily_loss is None and limits.max_trailing_drawdown is None:
            values.pop("reduce_at")
        return values


def _scaled(scale: float) -> str:
    return "" if scale == 1.0 else f"{scale:g} x "


def _exceeds(value: float, limit: float) -> bool:
    return value > limit * (1.0 + _REL_TOL)

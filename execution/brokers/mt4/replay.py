"""The MT4 simulator's replay: stored bars as a tick stream, its clock, and the faults it injects.

Pure code: arrays in, arrays out; no socket, no file.

- :func:`bar_ticks` turns bars into quotes, :data:`TICKS_PER_BAR` per bar, spread over the bar:
  the open; the low then the high for an up bar (close >= open), the high then the low for a
  down bar; the close. Tick ``k`` of a bar lasting ``d`` comes at ``open + (2k + 1) d / 8``, so
  every tick lies strictly inside its bar and the stream is in time order. The bars' prices are
  on the series' side and the bid and ask follow the engine's spread shares
  (:data:`pipelines.backtest.engine.SPREAD_SHARES`): on a bid series the bid is the price and
  the ask is bid + spread.
- :class:`ReplayClock` paces the replay at ``speed`` times real time (or not at all) without
  blocking, so the simulator answers commands while it waits for the next tick.
- :class:`FaultPlan` says, event by event, whether a fault strikes; its draws are keyed by the
  seed, the fault and the event's number, so a run is reproducible.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from core.clocks import UTC, Clock
from core.errors import DataError, UsageError
from core.ports import BarBatch
from core.timeframes import Timeframe
from core.times import iso_z_ns, utc_from_ns
from core.types import Instrument, Side
from execution.clock import SimClock
from execution.feeds import bar_batch
from pipelines.backtest.config import parse_spread
from pipelines.backtest.engine import SPREAD_SHARES
from pipelines.pit import bar_end

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

#: Quotes made from each bar: the open, the two extremes in the bar's order, the close.
TICKS_PER_BAR: Final = 4


# -- ticks -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ticks:
    """A stream of quotes in time order, made from bars.

    ``ts`` is each quote's time (UTC ns), ``bid`` and ``ask`` its prices, ``bar`` the index of
    the bar it was made from (a bar's first tick is where ``bar`` changes).
    """

    ts: Ints
    bid: Floats
    ask: Floats
    bar: Ints

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def tick_spread(option: str | float, instrument: Instrument) -> float | None:
    """Return the spread ``--spread PIPS|data`` gives, in price units; None for ``data``.

    ``PIPS`` is a number of the instrument's pips (:attr:`core.types.Instrument.pip_size`);
    ``data`` takes each bar's own ``spread`` column.

    Raises
    ------
    UsageError
        If ``option`` is neither a number of pips at or above 0 nor ``data``.
    """
    pips, from_data = parse_spread(option)
    if from_data:
        return None
    if not (math.isfinite(pips) and pips >= 0):
        raise UsageError(f"--spread {option!r}: give pips at or above 0 (e.g. 0.8) or 'data'")
    return pips * instrument.pip_size


def frame_batch(bars: pl.DataFrame, timeframe: Timeframe, clock: Clock = UTC) -> BarBatch:
    """Return stored bars as a :class:`core.ports.BarBatch`, each ending on the series' clock.

    ``bars`` has ``ts`` (the open: a datetime, UTC when naive, or int ns), ``open``, ``high``,
    ``low``, ``close`` and optionally ``spread`` (price units, null where unknown) and
    ``volume``. ``clock`` is the one the bars were cut on (:func:`core.clocks.bar_clock`): a
    D1 bar on the broker clock lasts 23 or 25 hours across a daylight-saving change
    (:func:`pipelines.pit.bar_end`).

    Raises
    ------
    DataError
        If a price column is missing.
    """
    missing = [c for c in ("ts", "open", "high", "low", "close") if c not in bars.columns]
    if missing:
        raise DataError(f"bars without {', '.join(missing)}: give ts, open, high, low and close")
    stamp = bars["ts"]
    if isinstance(stamp.dtype, pl.Datetime):
        zone = stamp.dtype.time_zone
        stamp = stamp.dt.convert_time_zone("UTC") if zone else stamp.dt.replace_time_zone("UTC")
    else:
        stamp = stamp.cast(pl.Int64).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
    frame = pl.DataFrame({"ts": stamp.dt.cast_time_unit("ns")})
    frame = frame.with_columns(bar_end(pl.col("ts"), timeframe, clock).alias("end"))
    ts = frame["ts"].to_physical().to_numpy()
    end = frame["end"].dt.cast_time_unit("ns").to_physical().fill_null(0).to_numpy()
    # A bar whose end does not exist on the clock (a gap in local time) keeps its nominal length.
    end = np.where(end > ts, end, ts + timeframe.minutes * 60 * 1_000_000_000)

    def floats(name: str, missing: float) -> Floats:
        if name not in bars.columns:
            return np.full(bars.height, missing)
        return bars[name].cast(pl.Float64).fill_null(missing).to_numpy()

    return bar_batch(
        ts, floats("open", math.nan), floats("high", math.nan), floats("low", math.nan),
        floats("close", math.nan), volume=floats("volume", 0.0), spread=floats("spread", math.nan),
        end=end,
    )  # fmt: skip


def bar_ticks(
    bars: BarBatch,
    *,
    spread: float | None,
    side: Side = Side.BID,
    digits: int | None = None,
) -> Ticks:
    """Return the quotes a replay of ``bars`` publishes: :data:`TICKS_PER_BAR` a bar, in order.

    Each bar gives its open; its low then its high when it closed at or above its open (an up
    bar is taken to have dipped first), its high then its low otherwise; its close. Tick ``k``
    of a bar comes at ``ts + (2k + 1) (end - ts) / 8``: strictly inside the bar, increasing.

    Parameters
    ----------
    bars
        The bars (:func:`execution.feeds.bar_batch` from arrays, :func:`frame_batch` from a
        frame); ``end`` is each bar's close.
    spread
        The spread in price units (:func:`tick_spread`), or None for each bar's own ``spread``
        (a NaN counts as 0, as :meth:`execution.costs.CostModel.spread_of` counts it).
    side
        The side the bars' prices are on: ``bid`` (bid = price, ask = price + spread), ``mid``
        or ``ask``.
    digits
        Round the bid and the ask to this many decimals (the instrument's ``digits``); None
        keeps them as computed.

    Raises
    ------
    UsageError
        If ``spread`` is None and the bars carry no spread at all, or ``spread`` is negative.
    DataError
        If a bar opens before the one before it has ended.
    """
    n = len(bars)
    ts = bars.ts.astype(np.int64, copy=False)
    duration = bars.end - ts
    if n and int(duration.min()) < 2 * TICKS_PER_BAR:
        i = int(np.argmin(duration))
        msg = f"bar {i} at {iso_z_ns(int(ts[i]))}: it ends before it opens; check its end"
        raise DataError(msg)
    if n > 1:
        overlap = np.flatnonzero(ts[1:] < bars.end[:-1])
        if overlap.size:
            i = int(overlap[0]) + 1
            msg = (
                f"bar {i} opens at {iso_z_ns(int(ts[i]))}, before bar {i - 1} ends at "
                f"{iso_z_ns(int(bars.end[i - 1]))}: give the bars' own timeframe and clock, "
                "sorted by ts"
            )
            raise DataError(msg)

    if spread is None:
        if n and bool(np.isnan(bars.spread).all()):
            msg = "the bars carry no spread: give --spread PIPS (e.g. --spread 0.8)"
            raise UsageError(msg)
        widths: Floats | float = np.nan_to_num(bars.spread, nan=0.0)[:, None]
    elif not (math.isfinite(spread) and spread >= 0):
        raise UsageError(f"spread {spread!r}: give a price distance at or above 0")
    else:
        widths = spread

    up = bars.close >= bars.open
    first, second = np.where(up, bars.low, bars.high), np.where(up, bars.high, bars.low)
    prices = np.stack((bars.open, first, second, bars.close), axis=1)

    buy_share, sell_share = SPREAD_SHARES[side.value]
    bid = prices - sell_share * widths if sell_share else prices
    ask = prices + buy_share * widths if buy_share else prices
    if digits is not None:
        bid = np.round(bid, digits)
        ask = np.round(ask, digits)

    steps = np.arange(1, 2 * TICKS_PER_BAR, 2, dtype=np.int64)  # 1, 3, 5, 7 eighths
    times = ts[:, None] + duration[:, None] * steps // (2 * TICKS_PER_BAR)
    return Ticks(
        ts=times.ravel(),
        bid=np.ascontiguousarray(bid, dtype=np.float64).ravel(),
        ask=np.ascontiguousarray(ask, dtype=np.float64).ravel(),
        bar=np.repeat(np.arange(n, dtype=np.int64), TICKS_PER_BAR),
    )


# -- the clock -------------------------------------------------------------------------------


class ReplayClock(SimClock):
    """The simulator's market time: ``speed`` times real time from the first tick, or unpaced.

    It is the runtime's :class:`execution.clock.SimClock` (the paper session's ``--speed``),
    with what a server needs besides: :meth:`due_in` says how long to wait for a tick, so the
    simulator answers commands meanwhile instead of sleeping, and :meth:`now_ns` runs on
    between ticks when the replay is paced, as a terminal's server time does. ``speed`` None
    (``--speed max``) replays as fast as the ticks are sent; the default is real time.
    """

    def __init__(self, speed: float | None = 1.0) -> None:
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise UsageError(
                f"--speed {speed!r}: give a positive number of times real time, or max"
            )
        super().__init__(speed)
        self._started = False

    @property
    def started(self) -> bool:
        """Return whether a tick has set the clock yet (the first one anchors the pace)."""
        return self._started

    def set_ns(self, ns: int) -> None:
        """Move the clock to ``ns`` (UTC ns), waiting for it when paced and not yet due."""
        super().set_ns(ns)
        self._started = True

    def due_in(self, ns: int) -> float:
        """Return the wall seconds until market time ``ns`` is due; 0 when due or unpaced.

        Before the first :meth:`set_ns` nothing is anchored yet and every time is due.
        """
        if self.speed is None or self._wall_origin is None:
            return 0.0
        due = self._wall_origin + (ns - self._sim_origin) / 1e9 / self.speed
        return max(0.0, due - time.monotonic())

    def now_ns(self) -> int:
        """Return the market time (UTC ns): the last tick's, running on at ``speed`` when paced."""
        if self.speed is None or self._wall_origin is None:
            return self._ns
        running = self._sim_origin + round(
            (time.monotonic() - self._wall_origin) * self.speed * 1e9
        )
        return max(self._ns, running)

    def now(self) -> datetime:
        """Return the market time (:meth:`now_ns`) as a UTC datetime."""
        return utc_from_ns(self.now_ns())


# -- faults ----------------------------------------------------------------------------------


class FaultKind(StrEnum):
    """A fault the simulator can inject, struck event by event at a rate."""

    DROP_REPLY = "drop_reply"  # a command's reply is never sent
    DELAY_REPLY = "delay_reply"  # a command's reply is held back for some seconds
    DISCONNECT = "disconnect"  # the sockets close, stay down for some seconds, and rebind
    DROP_TICK = "drop_tick"  # a quote is lost on the way (its sequence number is spent)
    DUPLICATE_TICK = "duplicate_tick"  # a quote is published twice
    REORDER_TICK = "reorder_tick"  # a quote is published after the one that follows it
    REJECT_TRADE = "reject_trade"  # a trade command is refused with an MT4 error
    CONTEXT_BUSY = "context_busy"  # a trade command finds the trade context busy


#: Faults that last a while; ``KIND=RATE:SECONDS`` sets how long (else this many seconds).
FAULT_SECONDS: Final = {FaultKind.DELAY_REPLY: 1.0, FaultKind.DISCONNECT: 1.0}

_KINDS_TEXT = ", ".join(kind.value for kind in FaultKind)


class FaultPlan:
    """Which faults strike, at which rates: one method per event, reproducible for a seed.

    Each kind draws from its own keyed stream: the n-th draw of a kind is a uniform number
    made from ``seed``, the kind and n (as the paper broker keys its draws), so asking about
    one kind never changes what another draws, and a run with the same seed and the same
    events strikes the same faults. A rate of 0 never strikes and 1 always does.

    Parameters
    ----------
    rates
        The fraction in [0, 1] of events each fault strikes; kinds not given never strike.
    seed
        The seed of every draw.
    seconds
        How long a delayed reply waits and a disconnection lasts (:data:`FAULT_SECONDS`).
    """

    def __init__(
        self,
        rates: Mapping[FaultKind, float] | None = None,
        *,
        seed: int = 0,
        seconds: Mapping[FaultKind, float] | None = None,
    ) -> None:
        self.rates: dict[FaultKind, float] = {}
        for kind, rate in (rates or {}).items():
            kind = _fault_kind(str(kind))
            if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
                raise UsageError(f"fault {kind.value} rate {rate!r}: give a fraction in [0, 1]")
            self.rates[kind] = float(rate)
        self.seconds: dict[FaultKind, float] = dict(FAULT_SECONDS)
        for kind, value in (seconds or {}).items():
            kind = _fault_kind(str(kind))
            if kind not in FAULT_SECONDS:
                raise UsageError(f"fault {kind.value}: only {_timed_kinds()} take seconds")
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"fault {kind.value} seconds {value!r}: give a positive number")
            self.seconds[kind] = float(value)
        self.seed = seed
        #: Events asked about and faults struck, by kind.
        self.events: dict[FaultKind, int] = dict.fromkeys(FaultKind, 0)
        self.struck: dict[FaultKind, int] = dict.fromkeys(FaultKind, 0)

    @classmethod
    def parse(cls, options: Iterable[str], *, seed: int = 0) -> FaultPlan:
        """Return the plan that ``--fault KIND=RATE[:SECONDS]`` options give.

        ``KIND`` is one of :class:`FaultKind`; ``RATE`` a fraction in [0, 1]; ``SECONDS`` (for
        ``delay_reply`` and ``disconnect`` only) how long the fault lasts.

        Raises
        ------
        UsageError
            Naming the option: no ``=``, an unknown kind (listing the kinds), a rate that is
            no fraction in [0, 1], seconds that are not positive or for a kind that takes
            none, or a kind given twice.
        """
        rates: dict[FaultKind, float] = {}
        seconds: dict[FaultKind, float] = {}
        for option in options:
            name, sep, value = option.partition("=")
            if not sep or not name.strip() or not value.strip():
                msg = f"--fault {option!r}: give KIND=RATE (e.g. drop_reply=0.05); kinds: {_KINDS_TEXT}"
                raise UsageError(msg)
            kind = _fault_kind(name, option)
            if kind in rates:
                raise UsageError(f"--fault {option!r}: {kind.value} is given twice; give it once")
            rate_text, colon, seconds_text = value.partition(":")
            rate = _number(rate_text)
            if rate is None or not 0.0 <= rate <= 1.0:
                msg = f"--fault {option!r}: the rate must be a fraction in [0, 1] (e.g. 0.05)"
                raise UsageError(msg)
            rates[kind] = rate
            if colon:
                if kind not in FAULT_SECONDS:
                    msg = f"--fault {option!r}: only {_timed_kinds()} take :SECONDS"
                    raise UsageError(msg)
                duration = _number(seconds_text)
                if duration is None or not duration > 0:
                    msg = f"--fault {option!r}: the seconds must be a positive number (e.g. :2.5)"
                    raise UsageError(msg)
                seconds[kind] = duration
        return cls(rates, seed=seed, seconds=seconds)

    def options(self) -> list[str]:
        """Return the ``--fault`` options that give this plan back (rates above 0 only)."""
        out = []
        for kind in FaultKind:
            rate = self.rates.get(kind, 0.0)
            if rate > 0:
                timed = f":{self.seconds[kind]:g}" if kind in FAULT_SECONDS else ""
                out.append(f"{kind.value}={rate:g}{timed}")
        return out

    def __repr__(self) -> str:
        return f"FaultPlan({self.options()!r}, seed={self.seed})"

    def strikes(self, kind: FaultKind) -> bool:
        """Return whether ``kind`` strikes at this event (each call is a new event)."""
        n = self.events[kind]
        self.events[kind] = n + 1
        rate = self.rates.get(kind, 0.0)
        if rate <= 0.0:
            return False
        if rate < 1.0:
            digest = hashlib.sha256(f"{self.seed}:{kind.value}:{n}".encode()).digest()
            if int.from_bytes(digest[:8], "big") / 2.0**64 >= rate:
                return False
        self.struck[kind] += 1
        return True

    def drop_reply(self) -> bool:
        """Return whether this command's reply is dropped (never sent)."""
        return self.strikes(FaultKind.DROP_REPLY)

    def delay_reply(self) -> float:
        """Return how many seconds this command's reply is held back; 0 when it is not."""
        return self.seconds[FaultKind.DELAY_REPLY] if self.strikes(FaultKind.DELAY_REPLY) else 0.0

    def disconnect(self) -> float:
        """Return how many seconds the sockets go down now; 0 when they stay up."""
        return self.seconds[FaultKind.DISCONNECT] if self.strikes(FaultKind.DISCONNECT) else 0.0

    def drop_tick(self) -> bool:
        """Return whether this quote is lost (never published)."""
        return self.strikes(FaultKind.DROP_TICK)

    def duplicate_tick(self) -> bool:
        """Return whether this quote is published twice."""
        return self.strikes(FaultKind.DUPLICATE_TICK)

    def reorder_tick(self) -> bool:
        """Return whether this quote is held back and published after the next one."""
        return self.strikes(FaultKind.REORDER_TICK)

    def reject_trade(self) -> bool:
        """Return whether this trade command is rejected."""
        return self.strikes(FaultKind.REJECT_TRADE)

    def context_busy(self) -> bool:
        """Return whether this trade command finds the trade context busy."""
        return self.strikes(FaultKind.CONTEXT_BUSY)


def _fault_kind(name: str, option: str | None = None) -> FaultKind:
    text = name.strip().lower().replace("-", "_")
    try:
        return FaultKind(text)
    except ValueError:
        where = f"--fault {option!r}" if option is not None else f"fault {name!r}"
        raise UsageError(
            f"{where}: unknown fault {name.strip()!r}; the kinds are {_KINDS_TEXT}"
        ) from None


def _timed_kinds() -> str:
    return " and ".join(kind.value for kind in FAULT_SECONDS)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None

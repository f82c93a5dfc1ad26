"""Closed bars from an MT4 terminal, as the trading loop's :class:`core.ports.MarketFeed`.

:class:`MT4Feed` tracks one symbol's quotes and bars of one timeframe on a shared
:class:`~execution.brokers.mt4.client.BridgeClient` and hands the loop each bar once it has
closed:

- in the extended dialect the terminal publishes a closed bar whole (its ``closed`` flag);
- in the legacy dialect only the bar that has just opened is published, so the bar before it is
  asked for with ``HIST`` when the next one opens.

Nothing is lost across a silence: when a closed bar arrives more than one bar after the last
one handed out (a reconnect, a restart of the terminal or of the session), the bars between are
asked for with ``HIST`` first. Bars at or before the last one handed out (``after``) are never
handed out again. While the link is quiet the feed sends heartbeats and reports stale prices
(:meth:`BridgeClient.stale_symbols`); the loop's own staleness check reads :meth:`last_data`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from core.calendars import get_calendar
from core.clocks import bar_end_at, parse_clock
from core.ports import BarBatch
from core.timeframes import Timeframe
from core.times import ns_from_utc, utc_from_ns, utc_now
from core.types import Instrument
from execution.brokers.mt4.client import BridgeClient
from execution.brokers.mt4.protocol import MT4Bar, Rate, Tick
from execution.feeds import bar_batch

logger = logging.getLogger(__name__)


class MT4Feed:
    """A :class:`core.ports.MarketFeed` of one symbol's closed bars from an MT4 terminal.

    Parameters
    ----------
    client
        The connection (shared with the broker).
    instrument
        The instrument traded; ``broker_symbol`` is its name at the broker (``EURUSD.ecn``).
    timeframe
        The bars handed out.
    after
        The open time (UTC) of the last bar the session already has: only later bars are
        handed out, and the ones between it and the first bar published are fetched.
    until
        Stop (return None) once a bar opening at or after this time has been handed out.
    to_account
        The account currency one unit of the quote currency is worth (1 when they are the
        same); NaN lets the loop follow the conversion itself.
    """

    def __init__(
        self,
        client: BridgeClient,
        instrument: Instrument,
        timeframe: Timeframe,
        *,
        broker_symbol: str | None = None,
        after: datetime | None = None,
        until: datetime | None = None,
        to_account: float = 1.0,
    ) -> None:
        self.client = client
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.broker_symbol = broker_symbol or instrument.symbol
        self.timeframe = timeframe
        self.until = until
        self.to_account = to_account
        self._bar_ns = timeframe.minutes * 60 * 1_000_000_000
        self._point = 10.0**-instrument.digits
        self._clock = parse_clock(client.config.clock)
        self._calendar = get_calendar(instrument.calendar)
        self._last_ns = -1 if after is None else ns_from_utc(after)
        self._last_data: datetime | None = None
        # A session whose history already reaches its end has nothing left to trade.
        self._ended = until is not None and after is not None and after >= until
        #: The latest quote (bid, ask) and bars handed out, fetched to fill a silence.
        self.quote: tuple[float, float] | None = None
        self.bars_out = 0
        self.bars_backfilled = 0
        self.retracked = 0
        self._asked_at = time.monotonic()
        self._last_data_mono = time.monotonic()
        self.on_quote: Callable[[Tick], None] | None = None

    def start(self) -> None:
        """Ask the terminal to publish this symbol's quotes and bars."""
        self.client.track(prices=[self.broker_symbol], rates=[(self.broker_symbol, self.timeframe)])

    def _is_open(self, _symbol: str) -> bool:
        return self._calendar.is_open_at(utc_now())

    def poll(self, timeout: float) -> BarBatch | None:
        """Return the bars closed since the last call, an empty batch on a quiet wait, None
        once ``until`` has been passed."""
        if self._ended:
            return None
        bars: list[MT4Bar] = []
        for message in self.client.poll_market(timeout):
            self._last_data = utc_now()
            self._last_data_mono = time.monotonic()
            if isinstance(message, Tick):
                if message.symbol == self.broker_symbol:
                    self.quote = (message.bid, message.ask)
                    if self.on_quote is not None:
                        self.on_quote(message)
                continue
            if message.symbol != self.broker_symbol or message.timeframe is not self.timeframe:
                continue
            bars += self._closed(message)
        now = time.monotonic()
        if not bars:
            self.client.keep_alive()
            self.client.stale_symbols(self._is_open)
            self._ask_again(now)
        return self._batch(bars)

    def _ask_again(self, now: float) -> None:
        """Track the symbol again when nothing at all has been published for ``stale_seconds``
        (at most once per ``stale_seconds``): a terminal that restarted answers commands at
        once but publishes nothing until asked. On a closed market this asks again, harmlessly."""
        wait = self.client.config.stale_seconds
        if now - max(self._last_data_mono, self._asked_at) >= wait:
            self._asked_at = now
            self.retracked += 1
            self.client.retrack()

    def _closed(self, rate: Rate) -> list[MT4Bar]:
        """Return the bars a published bar closes: itself (extended), or the one before it
        (legacy), with any bars missed since the last one handed out before them."""
        bar = rate.bar
        if bar.closed:
            closed_ns = ns_from_utc(bar.time)
            found = [bar]
        elif rate.seq is None:
            closed_ns = ns_from_utc(bar.time) - self._bar_ns
            found = []
        else:
            return []  # the extended dialect publishes the closed bar itself first
        if closed_ns <= self._last_ns:
            return []
        out: list[MT4Bar] = []
        if (self._last_ns >= 0 and closed_ns - self._last_ns > self._bar_ns) or not found:
            start = closed_ns if self._last_ns < 0 else self._last_ns + self._bar_ns
            fetched = self.client.hist(
                self.broker_symbol, self.timeframe, utc_from_ns(start), utc_from_ns(closed_ns)
            )
            kept = [b for b in fetched if self._last_ns < ns_from_utc(b.time) <= closed_ns]
            if found:
                kept = [b for b in kept if ns_from_utc(b.time) < closed_ns]
                self.bars_backfilled += len(kept)
            out += kept
        out += found
        return out

    def _batch(self, bars: list[MT4Bar]) -> BarBatch:
        chosen: list[MT4Bar] = []
        for bar in sorted(bars, key=lambda b: b.time):
            ns = ns_from_utc(bar.time)
            if ns > self._last_ns:
                chosen.append(bar)
                self._last_ns = ns
        if self.until is not None and chosen and chosen[-1].time >= self.until:
            chosen = [b for b in chosen if b.time <= self.until]
            self._ended = True
        self.bars_out += len(chosen)
        ts = np.array([ns_from_utc(b.time) for b in chosen], dtype=np.int64)
        ends = np.array(
            [ns_from_utc(bar_end_at(b.time, self.timeframe, self._clock)) for b in chosen],
            dtype=np.int64,
        )
        return bar_batch(
            ts,
            np.array([b.open for b in chosen], dtype=np.float64),
            np.array([b.high for b in chosen], dtype=np.float64),
            np.array([b.low for b in chosen], dtype=np.float64),
            np.array([b.close for b in chosen], dtype=np.float64),
            volume=np.array([float(b.tick_volume) for b in chosen], dtype=np.float64),
            spread=np.array([b.spread * self._point for b in chosen], dtype=np.float64),
            end=ends,
            next_ts=ends.copy(),
            to_account=self.to_account,
        )

    def last_data(self) -> datetime | None:
        """Return the wall time (UTC) the terminal last published anything."""
        return self._last_data

    def window(self) -> timedelta:
        """Return one bar's length."""
        return timedelta(minutes=self.timeframe.minutes)

"""Trading sessions over the MT4 bridge: MT4 prices into the loop (``paper --feed mt4``) and,
live, MT4 orders out of it (``live --broker mt4``).

:func:`open_link` connects one :class:`~execution.brokers.mt4.client.BridgeClient` with the
desk's ``[mt4]`` settings (the feed and the broker share it: the EA deals its replies round
robin among the clients connected to it), and for a live session checks the terminal's clock
first (:meth:`BridgeClient.require_clock`). :meth:`BridgeLink.feed` makes the loop's feed: the
session's history is the stored series up to the terminal's current time plus the bars the
session kept itself; the loop warms up on it (or on what it had processed, when resumed) and
the feed hands out the bars that close after, fetching with ``HIST`` any it missed.
Notices of gaps, stale prices and reconnects go to the desk's notifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from core.ports import BarBatch, Notice, NoticeKind, Notifier
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import ns_from_utc, utc_from_ns
from core.types import Instrument
from execution.brokers.mt4.broker import MT4Broker
from execution.brokers.mt4.client import BridgeClient, ClockCheck
from execution.brokers.mt4.feed import MT4Feed
from execution.brokers.mt4.protocol import Dialect, Tick, from_mt4_time_text
from execution.feeds import bar_batch, slice_batch
from execution.journal import Journal
from execution.loop import Runtime
from feature_store.state import StateDB

logger = logging.getLogger(__name__)

_EVENT_KINDS = {
    "gap": NoticeKind.DATA_QUALITY,
    "stale": NoticeKind.STALE_FEED,
    "down": NoticeKind.STALE_FEED,
    "reconnect": NoticeKind.STALE_FEED,
}


@dataclass
class BridgeLink:
    """A session's connection to the terminal: the client, and the feed and broker on it."""

    client: BridgeClient
    instrument: Instrument
    timeframe: Timeframe
    symbol_at_broker: str
    clock_check: ClockCheck | None = None
    feed_made: MT4Feed | None = None
    broker_made: MT4Broker | None = None
    events: list[tuple[str, str]] = field(default_factory=list)

    def terminal_now(self) -> datetime:
        """Return the terminal's current time in UTC (its own UTC in the extended dialect,
        its server time read on the clock setting in the legacy one)."""
        client = self.client
        if client.dialect is Dialect.EXTENDED and client.hello is not None:
            fresh = client.hello_again()
            return from_mt4_time_text(str(fresh["_gmt_time"]), "utc")
        account = client.account()
        return from_mt4_time_text(str(account.get("currenttime", "")), client.clock)

    def broker_factory(self, settings: Settings, account: str) -> Callable[[Journal], MT4Broker]:
        """Return what makes the session's :class:`MT4Broker` on its journal."""

        def make(journal: Journal) -> MT4Broker:
            self.broker_made = MT4Broker(
                self.client, journal, account=account, instrument=self.instrument,
                currency=settings.account_currency, broker_symbol=self.symbol_at_broker,
            )  # fmt: skip
            return self.broker_made

        return make

    def feed(
        self,
        runtime: Runtime,
        db: StateDB,
        session: str,
        stored: BarBatch,
        *,
        resumed: bool,
        until: datetime | None,
        to_account: float,
    ) -> MT4Feed:
        """Warm the loop up and return the feed of the bars after what it has seen."""
        now_ns = ns_from_utc(self.terminal_now())
        closed = stored.end <= now_ns
        history = _merge(slice_batch(stored, 0, int(np.count_nonzero(closed))), db, session)
        start = runtime.resume_index(history) if resumed else len(history)
        runtime.warm_up(slice_batch(history, 0, start))
        after = utc_from_ns(int(history.ts[start - 1])) if start > 0 else None
        feed = MT4Feed(
            self.client, self.instrument, self.timeframe, broker_symbol=self.symbol_at_broker,
            after=after, until=until, to_account=to_account,
        )  # fmt: skip
        broker = self.broker_made

        def on_quote(tick: Tick) -> None:
            if broker is not None:
                broker.quote = (tick.bid, tick.ask)

        feed.on_quote = on_quote
        feed.start()
        self.feed_made = feed
        return feed

    def close(self) -> None:
        """Close the connection."""
        self.client.close()


def open_link(
    settings: Settings,
    instrument: Instrument,
    timeframe: Timeframe,
    notifier: Notifier,
    *,
    session: str,
    live: bool,
) -> BridgeLink:
    """Connect to the terminal for a session; a live one checks the clock first.

    Raises
    ------
    BridgeDownError
        If the terminal does not answer.
    ClockMismatchError
        If a live session's clock setting disagrees with the terminal's server time.
    """
    events: list[tuple[str, str]] = []

    def on_event(kind: str, message: str) -> None:
        events.append((kind, message))
        notifier.notify(
            Notice(_EVENT_KINDS.get(kind, NoticeKind.STALE_FEED), f"MT4 bridge: {kind}",
                   message, key=f"mt4-{kind}", session=session)
        )  # fmt: skip

    client = BridgeClient(settings.mt4, on_event=on_event).connect()
    try:
        check = client.require_clock() if live else None
    except BaseException:
        client.close()
        raise
    link = BridgeLink(
        client, instrument, timeframe, settings.mt4.broker_symbol(instrument.symbol),
        clock_check=check, events=events,
    )  # fmt: skip
    return link


def _merge(stored: BarBatch, db: StateDB, session: str) -> BarBatch:
    """Return the stored bars with the bars the session kept after them, in time order."""
    kept = [row for row in db.bars_of(session) if not len(stored) or row[0] > int(stored.ts[-1])]
    if not kept:
        return stored
    cols = list(zip(*kept, strict=True))
    ts = np.concatenate([stored.ts, np.asarray(cols[0], dtype=np.int64)])
    values = [
        np.concatenate([getattr(stored, name), np.asarray(cols[k], dtype=np.float64)])
        for k, name in enumerate(("open", "high", "low", "close", "volume", "spread"), start=1)
    ]
    bar_ns = int(stored.end[-1] - stored.ts[-1]) if len(stored) else None
    return bar_batch(
        ts, values[0], values[1], values[2], values[3], volume=values[4], spread=values[5],
        to_account=np.nan, bar_ns=bar_ns,
    )  # fmt: skip

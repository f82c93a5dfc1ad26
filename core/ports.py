"""Ports: the protocols that adapters outside ``core`` implement and pipelines receive.

A pipeline never imports a tracking library; it is handed an object with these methods. The
trading runtime talks to a :class:`Broker`, a :class:`MarketFeed`, a :class:`Clock` and a
:class:`Notifier` and never knows which one: the paper broker and the MT4 bridge, a replay and
a live feed, simulated and wall time, Apprise and a test receiver all fit the same protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from core.types import Account, Fill, Order, Position


class RunTracker(Protocol):
    """Where an experiment's runs, parameters, metrics and artifacts are recorded.

    Every method is required. Runs are addressed by the id :meth:`start_run` returns, so one
    tracker serves nested runs and several processes at once. The MLflow adapter is
    :class:`feature_store.tracking.MlflowTracker`; :class:`NullTracker` records nothing.
    """

    def start_run(
        self,
        name: str,
        *,
        parent_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Open a run (a child of ``parent_id`` when given) and return its id."""
        ...

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        """Record parameters (values are stored as text)."""
        ...

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Record metrics; NaN and infinite values are skipped."""
        ...

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on a run."""
        ...

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Store ``text`` as the artifact ``artifact_file`` (e.g. ``report/summary.json``)."""
        ...

    def end_run(self, run_id: str, status: Literal["FINISHED", "FAILED"] = "FINISHED") -> None:
        """Close a run."""
        ...


class NullTracker:
    """A :class:`RunTracker` that records nothing and hands out numbered ids."""

    def __init__(self) -> None:
        self._count = 0

    def start_run(
        self,
        name: str,
        *,
        parent_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Return a new id."""
        self._count += 1
        return f"run-{self._count}"

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        """Record nothing."""

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Record nothing."""

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Record nothing."""

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Record nothing."""

    def end_run(self, run_id: str, status: Literal["FINISHED", "FAILED"] = "FINISHED") -> None:
        """Record nothing."""


# -- the trading runtime's ports ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BarBatch:
    """Consecutive completed bars of one symbol, as arrays (one bar live, thousands in replay).

    ``ts`` holds the bars' open times in ns UTC, strictly increasing; prices are in the series'
    own side; ``spread`` is the bar's spread in price units (NaN where unknown). ``next_ts`` is
    when the bar after each one opens, where the feed knows it (a replay does; live feeds give
    the nominal bar end): the engine's swap convention counts rollovers up to it. ``end`` is
    when each bar closes on the series' clock (a D1 broker bar lasts 23 or 25 hours across a
    daylight-saving change).
    ``to_account`` is the account currency one unit of the quote currency is worth at each
    bar's close (the money conversion the backtest uses; NaN where the feed does not know it
    and the runtime follows the conversion pair itself).
    """

    ts: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]
    spread: npt.NDArray[np.float64]
    next_ts: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]
    to_account: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.ts.shape[0])


class MarketFeed(Protocol):
    """Where bars (or quotes aggregated into bars) come from, with a heartbeat.

    :meth:`poll` returns the bars completed since the last call, an empty batch when nothing
    arrived within ``timeout`` seconds (the loop then checks its controls and the feed's
    staleness), or None when the feed has ended (a replay at its last bar).
    """

    symbol: str

    def poll(self, timeout: float) -> BarBatch | None:
        """Return newly completed bars, an empty batch on a quiet wait, None at the end."""
        ...

    def last_data(self) -> datetime | None:
        """Return the wall time (UTC) at which the feed last delivered data: its heartbeat."""
        ...


class Clock(Protocol):
    """The loop's time: simulated in a replay (the bars' own times), the wall clock live.

    :meth:`now` is UTC and is what every recorded time uses; :meth:`monotonic` measures
    latencies and waits and never goes backwards.
    """

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Return seconds from an arbitrary origin that never decrease."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class Broker(Protocol):
    """An account at a broker: orders, positions, cash.

    Sizes cross this port in units; a broker that trades lots converts at its boundary. Orders
    are addressed by the runtime's ``client_order_id``; every call that changes an order returns
    the order as the broker now sees it (a rejection is an order with status ``rejected`` and
    the reason, not an exception). Protective stops (``stop_loss``, ``take_profit``,
    ``trailing``) are held by the broker, so a runtime that dies leaves no position bare.
    """

    name: str

    def submit(self, order: Order) -> Order:
        """Send a market, limit or stop order (with its protective levels)."""
        ...

    def modify(
        self,
        client_order_id: str,
        *,
        limit_price: float | None = None,
        stop_price: float | None = None,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing: float | None = None,
    ) -> Order:
        """Change a working order's prices, or a filled order's protective levels."""
        ...

    def cancel(self, client_order_id: str) -> Order:
        """Cancel what is left of a working order."""
        ...

    def positions(self) -> tuple[Position, ...]:
        """Return the open positions, one per symbol (net)."""
        ...

    def open_orders(self) -> tuple[Order, ...]:
        """Return the orders that may still fill."""
        ...

    def account(self) -> Account:
        """Return balance, equity and margin in the account currency."""
        ...

    def order_status(self, client_order_id: str) -> Order | None:
        """Return an order by the runtime's id, None if the broker never received it."""
        ...

    def fills_since(self, since: datetime | None) -> tuple[Fill, ...]:
        """Return the fills at or after ``since`` (all of them for None), in execution order."""
        ...

    def on_market(self, bars: BarBatch, index: int, stage: MarketStage) -> None:
        """Let a simulated broker see bar ``index`` of ``bars`` open (``"open"``: its first
        quote) or run to its close (``"close"``: its range, then its last quote); a live
        broker, which sees the market itself, ignores it."""
        ...


MarketStage = Literal["open", "close"]


class NoticeKind(StrEnum):
    """What a notification is about; each kind can be switched on, off or silent."""

    TRADE_OPENED = "trade_opened"
    TRADE_CLOSED = "trade_closed"
    ORDER_REJECTED = "order_rejected"
    RISK_STATE = "risk_state"
    CONTROL = "control"
    STALE_FEED = "stale_feed"
    LOOP_STARTED = "loop_started"
    LOOP_STOPPED = "loop_stopped"
    LOOP_CRASHED = "loop_crashed"
    MODEL_RELOADED = "model_reloaded"
    MODEL_DRIFT = "model_drift"
    MODEL_ROLLBACK = "model_rollback"
    RETRAIN = "retrain"
    SUPERVISOR_RESTART = "supervisor_restart"
    SUPERVISOR_GAVE_UP = "supervisor_gave_up"
    FLOW_FAILED = "flow_failed"
    DATA_QUALITY = "data_quality"
    DAILY_SUMMARY = "daily_summary"
    TEST = "test"


@dataclass(frozen=True)
class Notice:
    """One message for the trader's phone. ``key`` de-duplicates (same key, one message)."""

    kind: NoticeKind
    title: str
    body: str
    session: str = ""
    ts: datetime | None = None
    key: str = ""
    fields: Mapping[str, object] = field(default_factory=dict)


class Notifier(Protocol):
    """Where notices go. :meth:`notify` never blocks; :meth:`close` delivers what is queued."""

    def notify(self, notice: Notice) -> None:
        """Queue a notice for delivery."""
        ...

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (waiting at most ``timeout`` seconds), then stop."""
        ...


class NullNotifier:
    """A :class:`Notifier` that keeps the notices it is given in a list and sends nothing."""

    def __init__(self) -> None:
        self.sent: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        """Keep the notice."""
        self.sent.append(notice)

    def close(self, timeout: float = 10.0) -> None:
        """Nothing to deliver."""

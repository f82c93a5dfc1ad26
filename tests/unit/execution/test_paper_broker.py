"""The paper broker's simulation, one behaviour at a time, on tiny hand-made bars.

Every test builds a few H1 bars with :func:`execution.feeds.bar_batch`, a broker on a state
database in ``tmp_path`` with its :class:`Journal`, and walks the bars through
:meth:`PaperBroker.on_market` as the loop does: each bar's ``open`` stage, then its ``close``.
Prices are EURUSD-like on a bid series unless a test says otherwise (buys pay the whole spread,
sells none), and the first bar opens on Monday 2024-01-08 00:00 UTC, a winter week in which the
FX market is open from Sunday 22:00 to Friday 22:00 UTC.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit.files import utc

from core.ports import BarBatch
from core.times import ns_from_utc
from core.types import Order, OrderSide, OrderStatus, OrderType
from execution.brokers.paper import PaperBroker, PaperConfig
from execution.costs import CostModel
from execution.feeds import bar_batch
from execution.journal import Journal
from feature_store.state import StateDB
from pipelines.backtest.engine import SPREAD_SHARES

HOUR = 3_600_000_000_000
MONDAY = utc(2024, 1, 8)
LOT = 100_000.0
ACCOUNT = "paper:test"
Row = tuple[float, float, float, float]
ENTRY_BAR: Row = (1.1000, 1.1005, 1.0995, 1.1000)  # positions open at its close


# -- helpers ---------------------------------------------------------------------------------


def _costs(side: str = "bid", **fields: Any) -> CostModel:
    buy, sell = SPREAD_SHARES[side]
    return CostModel(pip_size=0.0001, contract_size=LOT, buy_share=buy, sell_share=sell, **fields)


def _bars(
    rows: Sequence[Row],
    *,
    start: datetime = MONDAY,
    times: Sequence[datetime] | None = None,
    spread: float | Sequence[float] | None = None,
    volume: Sequence[float] | None = None,
    to_account: float | Sequence[float] = 1.0,
) -> BarBatch:
    """Return H1 bars of ``(open, high, low, close)`` rows, hourly from ``start`` unless
    ``times`` gives each bar's open."""
    prices = np.asarray(rows, dtype=np.float64)
    n = prices.shape[0]
    if times is None:
        ts = ns_from_utc(start) + HOUR * np.arange(n, dtype=np.int64)
    else:
        ts = np.array([ns_from_utc(t) for t in times], dtype=np.int64)
    spreads = None if spread is None else np.broadcast_to(np.asarray(spread, float), (n,)).copy()
    return bar_batch(
        ts, prices[:, 0], prices[:, 1], prices[:, 2], prices[:, 3],
        volume=None if volume is None else np.asarray(volume, dtype=np.float64),
        spread=spreads, to_account=np.asarray(to_account, dtype=np.float64), bar_ns=HOUR,
    )  # fmt: skip


def _broker(
    db: StateDB, costs: CostModel | None = None, *, account: str = ACCOUNT, **fields: Any
) -> PaperBroker:
    config = PaperConfig(account=account, symbol="EURUSD", costs=costs or _costs(), **fields)
    return PaperBroker(config, Journal(db))


def _order(
    cid: str,
    side: OrderSide,
    units: float = LOT,
    *,
    kind: OrderType = OrderType.MARKET,
    limit: float | None = None,
    stop: float | None = None,
    trailing: float | None = None,
) -> Order:
    return Order(
        client_order_id=cid, ts=MONDAY, symbol="EURUSD", side=side, units=units, type=kind,
        limit_price=limit, stop_price=stop, trailing=trailing,
    )  # fmt: skip


def _bar(broker: PaperBroker, bars: BarBatch, index: int) -> None:
    """Run one bar through the broker: its open, then its range to its close."""
    broker.on_market(bars, index, "open")
    broker.on_market(bars, index, "close")


def _run(broker: PaperBroker, bars: BarBatch, start: int = 0, stop: int | None = None) -> None:
    for index in range(start, len(bars) if stop is None else stop):
        _bar(broker, bars, index)


def _delay(fill_ts: datetime, bars: BarBatch, index: int) -> float:
    """Return the seconds from bar ``index``'s close to ``fill_ts``."""
    return (ns_from_utc(fill_ts) - int(bars.end[index])) / 1e9


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    with StateDB(tmp_path / "state" / "runtime.db") as state:
        yield state


@dataclass
class Opened:
    """A broker holding a position opened at bar 0's close (fills at once, no calendar)."""

    broker: PaperBroker
    cid: str
    price: float


def _open(
    db: StateDB, bars: BarBatch, side: OrderSide, costs: CostModel, units: float = LOT,
    trailing: float | None = None, **fields: Any,
) -> Opened:  # fmt: skip
    broker = _broker(db, costs, immediate=True, calendar=None, **fields)
    _bar(broker, bars, 0)
    order = broker.submit(_order("entry", side, units, trailing=trailing))
    assert order.status is OrderStatus.FILLED
    return Opened(broker, "entry", float(order.avg_price or 0.0))


# -- market orders ---------------------------------------------------------------------------


@pytest.mark.parametrize("series_side", ["bid", "mid", "ask"])
@pytest.mark.parametrize("side", [OrderSide.BUY, OrderSide.SELL])
def test_market_order_sent_at_close_fills_at_next_open_on_its_side_of_the_spread(
    db: StateDB, series_side: str, side: OrderSide
) -> None:
    # Arrange
    spread = 0.0004
    bars = _bars([(1.1000, 1.1010, 1.0990, 1.1005), (1.1008, 1.1020, 1.1000, 1.1010)],
                 spread=spread)  # fmt: skip
    broker = _broker(db, _costs(series_side))
    _bar(broker, bars, 0)
    buy_share, sell_share = SPREAD_SHARES[series_side]

    # Act
    sent = broker.submit(_order("m1", side))
    waiting = broker.fills_since(None)
    broker.on_market(bars, 1, "open")

    # Assert
    assert sent.status is OrderStatus.WORKING
    assert waiting == ()
    (fill,) = broker.fills_since(None)
    expected = (
        1.1008 + buy_share * spread if side is OrderSide.BUY else 1.1008 - sell_share * spread
    )
    assert fill.price == pytest.approx(expected, abs=1e-12)
    assert fill.side is side and fill.units == LOT
    assert broker.order_status("m1").status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert broker.positions()[0].units == LOT * side.sign


def test_market_fill_time_is_close_plus_latency_and_seeded_jitter(tmp_path: Path) -> None:
    # Arrange
    bars = _bars([(1.1, 1.101, 1.099, 1.1), (1.1, 1.101, 1.099, 1.1)])

    def delay(seed: int, folder: str) -> float:
        with StateDB(tmp_path / folder / "runtime.db") as state:
            broker = _broker(state, latency_submit=0.05, jitter=0.02, seed=seed)
            _bar(broker, bars, 0)
            broker.submit(_order("m1", OrderSide.BUY))
            broker.on_market(bars, 1, "open")
            (fill,) = broker.fills_since(None)
            return _delay(fill.ts, bars, 0)

    # Act
    delays = [delay(seed, f"s{seed}") for seed in range(8)]
    again = delay(3, "again")

    # Assert
    assert all(0.05 <= d < 0.07 for d in delays), delays
    assert len(set(delays)) > 1  # the jitter is drawn, per seed
    assert again == delays[3]  # and the same seed draws the same


def test_market_order_arriving_inside_a_bar_fills_at_its_open_at_the_arrival_time(
    db: StateDB,
) -> None:
    # Arrange: 90 minutes of latency land the order half-way through bar 2
    bars = _bars([(1.10, 1.11, 1.09, 1.10), (1.20, 1.21, 1.19, 1.20), (1.30, 1.31, 1.29, 1.30)])
    broker = _broker(db, latency_submit=5400.0, jitter=0.0)
    _bar(broker, bars, 0)
    broker.submit(_order("m1", OrderSide.BUY))

    # Act
    _bar(broker, bars, 1)
    before = broker.fills_since(None)
    broker.on_market(bars, 2, "open")

    # Assert
    assert before == ()
    (fill,) = broker.fills_since(None)
    assert fill.price == 1.30
    assert _delay(fill.ts, bars, 0) == 5400.0


def test_market_order_in_immediate_mode_fills_at_the_current_quote(db: StateDB) -> None:
    # Arrange
    bars = _bars([(1.1000, 1.1010, 1.0990, 1.1005)], spread=0.0002)
    broker = _broker(db, immediate=True)
    _bar(broker, bars, 0)

    # Act
    order = broker.submit(_order("m1", OrderSide.BUY))

    # Assert
    assert order.status is OrderStatus.FILLED
    (fill,) = broker.fills_since(None)
    assert fill.price == pytest.approx(1.1007, abs=1e-12)
    assert ns_from_utc(fill.ts) == int(bars.end[0])


def test_market_slippage_grows_with_the_square_root_of_the_lots(db: StateDB) -> None:
    # Arrange: half a pip of impact per square-rooted lot, 1 pip fixed: 4 lots slip 2 pips
    bars = _bars([ENTRY_BAR, ENTRY_BAR], spread=0.0)
    broker = _broker(db, _costs(slippage=0.0001, impact_pips=0.5))
    _bar(broker, bars, 0)
    broker.submit(_order("m1", OrderSide.SELL, 4 * LOT))

    # Act
    broker.on_market(bars, 1, "open")

    # Assert
    (fill,) = broker.fills_since(None)
    assert fill.slippage == pytest.approx(0.0002, rel=1e-12)
    assert fill.price == pytest.approx(1.1000 - 0.0002, abs=1e-12)


# -- limit and stop orders -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "limit", "row"),
    [
        (OrderSide.BUY, 1.0995, (1.1000, 1.1010, 1.0990, 1.1000)),
        (OrderSide.SELL, 1.1005, (1.1000, 1.1010, 1.0990, 1.1000)),
    ],
)
def test_limit_order_traded_through_fills_at_the_limit(
    db: StateDB, side: OrderSide, limit: float, row: Row
) -> None:
    # Arrange: a 2-pip spread; buys compare the ask (1.0992 at the low) with the limit
    bars = _bars([(1.1, 1.101, 1.099, 1.1), row], spread=0.0002)
    broker = _broker(db)
    _bar(broker, bars, 0)
    broker.submit(_order("l1", side, kind=OrderType.LIMIT, limit=limit))

    # Act
    broker.on_market(bars, 1, "open")
    at_open = broker.fills_since(None)
    broker.on_market(bars, 1, "close")

    # Assert
    assert at_open == ()
    (fill,) = broker.fills_since(None)
    assert fill.price == limit
    assert broker.open_orders() == ()


def test_limit_buy_whose_ask_never_reaches_the_limit_keeps_working(db: StateDB) -> None:
    # Arrange: the bid's low touches 1.0990 but the ask's stays 2 pips above the 1.0991 limit
    bars = _bars([(1.1, 1.101, 1.099, 1.1), (1.1000, 1.1010, 1.0990, 1.1000)], spread=0.0002)
    broker = _broker(db)
    _bar(broker, bars, 0)
    broker.submit(_order("l1", OrderSide.BUY, kind=OrderType.LIMIT, limit=1.0991))

    # Act
    _bar(broker, bars, 1)

    # Assert
    assert broker.fills_since(None) == ()
    assert [o.client_order_id for o in broker.open_orders()] == ["l1"]


@pytest.mark.parametrize(("touch", "fills"), [(0.0, False), (1.0, True)])
def test_limit_touched_exactly_fills_only_with_touch_probability(
    db: StateDB, touch: float, fills: bool
) -> None:
    # Arrange: the low equals the limit, no spread
    bars = _bars([(1.25, 1.26, 1.24, 1.25), (1.25, 1.26, 1.125, 1.25)], spread=0.0)
    broker = _broker(db, touch_probability=touch)
    _bar(broker, bars, 0)
    broker.submit(_order("l1", OrderSide.BUY, kind=OrderType.LIMIT, limit=1.125))

    # Act
    _bar(broker, bars, 1)

    # Assert
    got = broker.fills_since(None)
    assert bool(got) is fills
    if fills:
        assert got[0].price == 1.125


def test_limit_touch_draw_is_deterministic_per_seed(tmp_path: Path) -> None:
    # Arrange
    bars = _bars([(1.25, 1.26, 1.24, 1.25), (1.25, 1.26, 1.125, 1.25)], spread=0.0)

    def touched(seed: int, folder: str) -> bool:
        with StateDB(tmp_path / folder / "runtime.db") as state:
            broker = _broker(state, touch_probability=0.5, seed=seed)
            _bar(broker, bars, 0)
            broker.submit(_order("l1", OrderSide.BUY, kind=OrderType.LIMIT, limit=1.125))
            _bar(broker, bars, 1)
            return bool(broker.fills_since(None))

    # Act
    first = [touched(seed, f"a{seed}") for seed in range(16)]
    second = [touched(seed, f"b{seed}") for seed in range(16)]

    # Assert
    assert first == second
    assert any(first) and not all(first)


def test_limit_order_gapped_through_at_the_open_fills_at_the_open(db: StateDB) -> None:
    # Arrange: a buy limit at 1.1000; the next bar opens at 1.0980 (the ask at 1.0982)
    bars = _bars([(1.1, 1.101, 1.099, 1.1), (1.0980, 1.0990, 1.0970, 1.0985)], spread=0.0002)
    broker = _broker(db)
    _bar(broker, bars, 0)
    broker.submit(_order("l1", OrderSide.BUY, kind=OrderType.LIMIT, limit=1.1000))

    # Act
    _bar(broker, bars, 1)

    # Assert
    (fill,) = broker.fills_since(None)
    assert fill.price == pytest.approx(1.0982, abs=1e-12)


@pytest.mark.parametrize(
    ("side", "trigger", "row", "expected"),
    [
        # touched: trigger plus slippage, against the trade
        (OrderSide.BUY, 1.1010, (1.1000, 1.1012, 1.0992, 1.1005), 1.1010),
        (OrderSide.SELL, 1.0995, (1.1000, 1.1012, 1.0992, 1.1005), 1.0995),
        # gapped: the open plus slippage
        (OrderSide.BUY, 1.1010, (1.1020, 1.1040, 1.1020, 1.1030), 1.1020),
        (OrderSide.SELL, 1.0995, (1.0980, 1.0980, 1.0960, 1.0970), 1.0980),
    ],
)
def test_stop_order_triggers_on_touch_with_slippage(
    db: StateDB, side: OrderSide, trigger: float, row: Row, expected: float
) -> None:
    # Arrange: 1 pip of slippage plus 10% of the bar's range, no spread
    bars = _bars([(1.1, 1.101, 1.099, 1.1), row], spread=0.0)
    broker = _broker(db, _costs(slippage=0.0001, slippage_vol=0.1))
    _bar(broker, bars, 0)
    broker.submit(_order("s1", side, kind=OrderType.STOP, stop=trigger))
    slip = 0.0001 + 0.1 * (row[1] - row[2])

    # Act
    _bar(broker, bars, 1)

    # Assert
    (fill,) = broker.fills_since(None)
    assert fill.price == pytest.approx(expected + side.sign * slip, abs=1e-12)
    assert fill.slippage == pytest.approx(slip, abs=1e-12)


def test_stop_order_not_reached_keeps_working(db: StateDB) -> None:
    # Arrange
    bars = _bars([(1.1, 1.101, 1.099, 1.1), (1.1000, 1.1009, 1.0992, 1.1005)], spread=0.0)
    broker = _broker(db)
    _bar(broker, bars, 0)
    broker.submit(_order("s1", OrderSide.BUY, kind=OrderType.STOP, stop=1.1010))

    # Act
    _bar(broker, bars, 1)

    # Assert
    assert broker.fills_since(None) == ()
    assert broker.order_status("s1").status is OrderStatus.WORKING  # type: ignore[union-attr]


def test_cancel_of_a_working_order_stops_it_filling(db: StateDB) -> None:
    # Arrange: a cancel that reaches the broker at once
    bars = _bars([(1.1, 1.101, 1.099, 1.1), (1.1000, 1.1010, 1.0980, 1.1000)], spread=0.0)
    broker = _broker(db, latency_cancel=0.0, jitter=0.0)
    _bar(broker, bars, 0)
    broker.submit(_order("l1", OrderSide.BUY, kind=OrderType.LIMIT, limit=1.0990))

    # Act
    cancelled = broker.cancel("l1")
    _bar(broker, bars, 1)

    # Assert
    assert cancelled.status is OrderStatus.CANCELLED
    assert broker.open_orders() == () and broker.fills_since(None) == ()


def test_cancel_in_flight_order_still_fills_in_the_bar_the_cancel_arrives_in(
    db: StateDB,
) -> None:
    # Arrange: the cancel takes 50 ms; the next bar trades through the limit before it lands
    bars = _bars(
        [(1.1, 1.101, 1.099, 1.1), (1.1000, 1.1010, 1.0980, 1.1000), (1.1, 1.101, 1.098, 1.1)],
        spread=0.0,
    )  # fmt: skip
    broker = _broker(db, latency_cancel=0.05, jitter=0.0)
    _bar(broker, bars, 0)
    broker.submit(_order("l1", OrderSide.BUY, kind=OrderType.LIMIT, limit=1.0990))

    # Act
    pending = broker.cancel("l1")
    _bar(broker, bars, 1)

    # Assert: still working when asked; filled by the bar the cancel arrived in
    assert pending.status is OrderStatus.WORKING
    (fill,) = broker.fills_since(None)
    assert fill.price == 1.0990
    assert broker.order_status("l1").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_cancel_in_flight_arriving_before_a_bar_opens_stops_it_filling(db: StateDB) -> None:
    # Arrange: the cancel lands before the next bar opens (its latency is shorter than the gap)
    bars = _bars(
        [(1.1, 1.101, 1.099, 1.1), (1.1, 1.101, 1.0995, 1.1), (1.1000, 1.1010, 1.0980, 1.1000)],
        spread=0.0,
    )  # fmt: skip
    broker = _broker(db, latency_cancel=0.05, jitter=0.0)
    _bar(broker, bars, 0)
    broker.submit(_order("l1", OrderSide.BUY, kind=OrderType.LIMIT, limit=1.0990))
    broker.cancel("l1")

    # Act
    _bar(broker, bars, 1)
    _bar(broker, bars, 2)

    # Assert
    assert broker.fills_since(None) == ()
    assert broker.order_status("l1").status is OrderStatus.CANCELLED  # type: ignore[union-attr]


def test_modify_of_a_working_limit_moves_where_it_fills(db: StateDB) -> None:
    # Arrange: a modify that reaches the broker at once
    bars = _bars([(1.1, 1.101, 1.099, 1.1), (1.1000, 1.1010, 1.0980, 1.1000)], spread=0.0)
    broker = _broker(db, latency_modify=0.0, jitter=0.0)
    _bar(broker, bars, 0)
    broker.submit(_order("l1", OrderSide.BUY, kind=OrderType.LIMIT, limit=1.0950))

    # Act
    moved = broker.modify("l1", limit_price=1.0985)
    _bar(broker, bars, 1)

    # Assert
    assert moved.limit_price == 1.0985
    (fill,) = broker.fills_since(None)
    assert fill.price == 1.0985


# -- protective levels -----------------------------------------------------------------------


def test_protective_stop_and_take_profit_both_reachable_takes_the_stop(db: StateDB) -> None:
    # Arrange: long at 1.1000, stop 1.0980, take profit 1.1030; the next bar reaches both
    bars = _bars([ENTRY_BAR, (1.1000, 1.1040, 1.0970, 1.1000)], spread=0.0)
    opened = _open(db, bars, OrderSide.BUY, _costs(slippage=0.0001))
    opened.broker.modify(opened.cid, stop_loss=1.0980, take_profit=1.1030)

    # Act
    _bar(opened.broker, bars, 1)

    # Assert
    exit_fill = opened.broker.fills_since(None)[-1]
    assert exit_fill.reason == "stop_loss"
    assert exit_fill.side is OrderSide.SELL
    assert exit_fill.price == pytest.approx(1.0980 - 0.0001, abs=1e-12)
    assert opened.broker.positions() == ()


def test_protective_stop_gapped_through_fills_at_the_open(db: StateDB) -> None:
    # Arrange
    bars = _bars([ENTRY_BAR, (1.0970, 1.0975, 1.0960, 1.0970)], spread=0.0)
    opened = _open(db, bars, OrderSide.BUY, _costs())
    opened.broker.modify(opened.cid, stop_loss=1.0980)

    # Act
    _bar(opened.broker, bars, 1)

    # Assert
    exit_fill = opened.broker.fills_since(None)[-1]
    assert (exit_fill.reason, exit_fill.price) == ("stop_loss", 1.0970)


def test_protective_take_profit_fills_at_its_level_without_slippage(db: StateDB) -> None:
    # Arrange
    bars = _bars([ENTRY_BAR, (1.1000, 1.1040, 1.0990, 1.1035)], spread=0.0)
    opened = _open(db, bars, OrderSide.BUY, _costs(slippage=0.0001))
    opened.broker.modify(opened.cid, stop_loss=1.0980, take_profit=1.1030)

    # Act
    _bar(opened.broker, bars, 1)

    # Assert
    exit_fill = opened.broker.fills_since(None)[-1]
    assert (exit_fill.reason, exit_fill.price, exit_fill.slippage) == ("take_profit", 1.1030, 0.0)


def test_protective_take_profit_gapped_through_fills_at_the_open(db: StateDB) -> None:
    # Arrange
    bars = _bars([ENTRY_BAR, (1.1040, 1.1050, 1.1035, 1.1045)], spread=0.0)
    opened = _open(db, bars, OrderSide.BUY, _costs(slippage=0.0001))
    opened.broker.modify(opened.cid, take_profit=1.1030)

    # Act
    _bar(opened.broker, bars, 1)

    # Assert
    exit_fill = opened.broker.fills_since(None)[-1]
    assert (exit_fill.reason, exit_fill.price) == ("take_profit", 1.1040)


def test_protective_stop_of_a_short_is_checked_against_the_ask(db: StateDB) -> None:
    # Arrange: short at 1.1000 (the bid), stop at 1.1015, a 3-pip spread. Bar 1's ask rises to
    # 1.1013 (no hit); bar 2's bid high of 1.1013 puts the ask at 1.1016, beyond the stop
    bars = _bars(
        [ENTRY_BAR, (1.1000, 1.1010, 1.0995, 1.1000), (1.1000, 1.1013, 1.0995, 1.1000)],
        spread=0.0003,
    )
    opened = _open(db, bars, OrderSide.SELL, _costs())
    opened.broker.modify(opened.cid, stop_loss=1.1015)

    # Act
    _bar(opened.broker, bars, 1)
    after_first = len(opened.broker.fills_since(None))
    _bar(opened.broker, bars, 2)

    # Assert
    assert after_first == 1
    exit_fill = opened.broker.fills_since(None)[-1]
    assert (exit_fill.reason, exit_fill.side, exit_fill.price) == (
        "stop_loss",
        OrderSide.BUY,
        1.1015,
    )


def test_trailing_stop_uses_the_level_the_bars_before_set(db: StateDB) -> None:
    # Arrange: long at 1.1000, trailing 20 pips. Bar 1 rises to 1.1030 and dips to 1.1005:
    # its level is still 1.0980 (set by the entry); bar 2 dips to 1.1009, below 1.1010
    bars = _bars(
        [ENTRY_BAR, (1.1010, 1.1030, 1.1005, 1.1020), (1.1020, 1.1031, 1.1009, 1.1015)],
        spread=0.0,
    )
    opened = _open(db, bars, OrderSide.BUY, _costs(), trailing=0.0020)

    # Act
    _bar(opened.broker, bars, 1)
    held = opened.broker.positions()
    _bar(opened.broker, bars, 2)

    # Assert
    assert held and held[0].trailing == pytest.approx(0.0020)
    exit_fill = opened.broker.fills_since(None)[-1]
    assert exit_fill.reason == "trailing_stop"
    assert exit_fill.price == pytest.approx(1.1010, abs=1e-12)
    assert opened.broker.positions() == ()


# -- partial fills, rejects, margin, lots -----------------------------------------------------


def test_partial_fills_take_a_share_of_real_volume_and_the_rest_keeps_working(
    db: StateDB,
) -> None:
    # Arrange: 10% of 1,000,000 traded units a bar; 2.5 lots wanted
    rows = [(1.1, 1.101, 1.099, 1.1)] * 4
    bars = _bars(rows, spread=0.0, volume=[1e6] * 4)
    broker = _broker(db, participation=0.1, volume_is_real=True)
    _bar(broker, bars, 0)
    broker.submit(_order("p1", OrderSide.BUY, 2.5 * LOT))

    # Act
    _bar(broker, bars, 1)
    partly = broker.order_status("p1")
    working = broker.open_orders()
    _run(broker, bars, 2)

    # Assert
    assert partly is not None and partly.status is OrderStatus.PARTIAL
    assert partly.filled_units == 100_000.0
    assert [o.client_order_id for o in working] == ["p1"]
    assert [f.units for f in broker.fills_since(None)] == [100_000.0, 100_000.0, 50_000.0]
    assert broker.order_status("p1").status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert broker.positions()[0].units == pytest.approx(250_000.0)


def test_partial_fills_need_real_volume(db: StateDB) -> None:
    # Arrange: the same participation, but the volume is a tick count
    bars = _bars([(1.1, 1.101, 1.099, 1.1)] * 2, spread=0.0, volume=[1e6] * 2)
    broker = _broker(db, participation=0.1, volume_is_real=False)
    _bar(broker, bars, 0)
    broker.submit(_order("p1", OrderSide.BUY, 2.5 * LOT))

    # Act
    _bar(broker, bars, 1)

    # Assert
    assert [f.units for f in broker.fills_since(None)] == [250_000.0]


def test_reject_draw_is_keyed_by_seed_and_client_order_id(db: StateDB) -> None:
    # Arrange
    bars = _bars([(1.1, 1.101, 1.099, 1.1)], spread=0.0)
    cids = [f"r{k}" for k in range(40)]

    def submitted(account: str, seed: int) -> list[Order]:
        broker = _broker(db, account=account, reject_probability=0.5, seed=seed)
        _bar(broker, bars, 0)
        return [broker.submit(_order(c, OrderSide.BUY, 0.01 * LOT)) for c in cids]

    # Act
    first = submitted("paper:a", 7)
    again = submitted("paper:b", 7)
    other = submitted("paper:c", 8)

    # Assert
    statuses = [o.status for o in first]
    assert statuses == [o.status for o in again]
    assert statuses != [o.status for o in other]
    assert OrderStatus.REJECTED in statuses and OrderStatus.WORKING in statuses
    reasons = {o.reason for o in first if o.status is OrderStatus.REJECTED}
    assert reasons == {"rejected by the broker (simulated)"}


@pytest.mark.parametrize(("lots", "accepted"), [(27.0, True), (28.0, False)])
def test_margin_above_equity_at_leverage_is_rejected(
    db: StateDB, lots: float, accepted: bool
) -> None:
    # Arrange: 100,000 of equity at 30:1 carries 3,000,000 of notional: 27 lots at 1.1 is
    # 99,000 of margin, 28 lots 102,667
    bars = _bars([(1.1, 1.1, 1.1, 1.1)], spread=0.0)
    broker = _broker(db, leverage=30.0, cash=100_000.0)
    _bar(broker, bars, 0)

    # Act
    order = broker.submit(_order("big", OrderSide.SELL, lots * LOT))

    # Assert
    if accepted:
        assert order.status is OrderStatus.WORKING
    else:
        assert order.status is OrderStatus.REJECTED
        assert order.reason.startswith("insufficient margin")


def test_lot_rounding_rounds_down_to_the_lot_step(db: StateDB) -> None:
    # Arrange
    bars = _bars([(1.1, 1.101, 1.099, 1.1)], spread=0.0)
    broker = _broker(db)
    _bar(broker, bars, 0)

    # Act
    order = broker.submit(_order("odd", OrderSide.BUY, 12_345.0))

    # Assert
    assert order.status is OrderStatus.WORKING
    assert order.units == pytest.approx(12_000.0, rel=1e-12)


def test_lot_rounding_refuses_less_than_the_minimum_lot(db: StateDB) -> None:
    # Arrange
    bars = _bars([(1.1, 1.101, 1.099, 1.1)], spread=0.0)
    broker = _broker(db)
    _bar(broker, bars, 0)

    # Act
    order = broker.submit(_order("tiny", OrderSide.BUY, 999.0))

    # Assert
    assert order.status is OrderStatus.REJECTED
    assert "below the minimum lot" in order.reason


def test_without_lot_rounding_units_are_kept(db: StateDB) -> None:
    # Arrange
    bars = _bars([(1.1, 1.101, 1.099, 1.1)], spread=0.0)
    broker = _broker(db, round_lots=False)
    _bar(broker, bars, 0)

    # Act
    order = broker.submit(_order("odd", OrderSide.BUY, 999.0))

    # Assert
    assert (order.status, order.units) == (OrderStatus.WORKING, 999.0)


# -- the market's hours ----------------------------------------------------------------------

FRIDAY_LAST = utc(2024, 1, 12, 21)  # the week's last H1 bar: the market closes at 22:00 UTC
SATURDAY = utc(2024, 1, 13, 12)
SUNDAY_OPEN = utc(2024, 1, 14, 22)


def test_market_order_arriving_during_the_weekend_waits_for_the_open(db: StateDB) -> None:
    # Arrange: sent at Friday's close; a stray Saturday bar; then Sunday's first bar
    bars = _bars(
        [(1.10, 1.11, 1.09, 1.10), (1.20, 1.21, 1.19, 1.20), (1.30, 1.31, 1.29, 1.30)],
        times=[FRIDAY_LAST, SATURDAY, SUNDAY_OPEN], spread=0.0,
    )  # fmt: skip
    broker = _broker(db)
    _bar(broker, bars, 0)
    broker.submit(_order("m1", OrderSide.BUY))

    # Act
    _bar(broker, bars, 1)
    on_saturday = broker.fills_since(None)
    broker.on_market(bars, 2, "open")

    # Assert
    assert on_saturday == ()
    (fill,) = broker.fills_since(None)
    assert (fill.price, fill.ts) == (1.30, SUNDAY_OPEN)


def test_limit_order_is_not_filled_by_a_bar_while_the_market_is_closed(db: StateDB) -> None:
    # Arrange: a buy limit at 1.15 working over the weekend; the Saturday bar trades through
    bars = _bars(
        [(1.20, 1.21, 1.19, 1.20), (1.20, 1.21, 1.10, 1.20), (1.20, 1.21, 1.19, 1.20)],
        times=[FRIDAY_LAST, SATURDAY, SUNDAY_OPEN], spread=0.0,
    )  # fmt: skip
    broker = _broker(db)
    _bar(broker, bars, 0)
    broker.submit(_order("l1", OrderSide.BUY, kind=OrderType.LIMIT, limit=1.15))

    # Act
    _bar(broker, bars, 1)

    # Assert
    assert broker.fills_since(None) == ()


def test_protective_stop_is_not_hit_by_a_bar_while_the_market_is_closed(db: StateDB) -> None:
    # Arrange: long 1 lot at Friday's last close with a stop at 1.19; a stray Saturday bar
    # trades through it, Sunday's first bar does not
    bars = _bars(
        [(1.20, 1.21, 1.19, 1.20), (1.20, 1.21, 1.10, 1.20), (1.20, 1.21, 1.195, 1.20)],
        times=[FRIDAY_LAST, SATURDAY, SUNDAY_OPEN], spread=0.0,
    )  # fmt: skip
    broker = _broker(db, immediate=True)
    _bar(broker, bars, 0)
    broker.submit(_order("m1", OrderSide.BUY))
    broker.modify("m1", stop_loss=1.19)

    # Act
    _run(broker, bars, 1)

    # Assert
    assert len(broker.fills_since(None)) == 1
    assert broker.positions()[0].units == LOT


# -- money -----------------------------------------------------------------------------------


def test_swap_counts_the_rollovers_up_to_the_next_bar_open(db: StateDB) -> None:
    # Arrange: long 1 lot from Friday 20:00; Friday's 21:00 bar closes at 22:00, but the next
    # bar opens on Sunday 22:00: the rollovers of Friday, Saturday and Sunday 21:00 are held
    swap = -0.5 * 0.0001  # per unit per night
    bars = _bars(
        [ENTRY_BAR, ENTRY_BAR, ENTRY_BAR],
        times=[utc(2024, 1, 12, 20), FRIDAY_LAST, SUNDAY_OPEN], spread=0.0, to_account=0.9,
    )  # fmt: skip
    opened = _open(db, bars, OrderSide.BUY, _costs(swap_long=swap, swap_short=0.3 * 0.0001))
    before = opened.broker.account().balance

    # Act
    _bar(opened.broker, bars, 1)
    after = opened.broker.account().balance
    exit_order = opened.broker.submit(_order("exit", OrderSide.SELL))

    # Assert
    nights = 3 * LOT * swap * 0.9
    assert after - before == pytest.approx(nights, rel=1e-12)
    assert exit_order.status is OrderStatus.FILLED
    assert opened.broker.fills_since(None)[-1].swap == pytest.approx(nights, rel=1e-12)


def test_fees_and_commission_are_charged_per_fill(db: StateDB) -> None:
    # Arrange: 2 bp of notional and 7 per lot, each leg
    bars = _bars([ENTRY_BAR, ENTRY_BAR], spread=0.0)
    opened = _open(db, bars, OrderSide.BUY, _costs(fees=0.0002, commission_per_lot=7.0))

    # Act
    _bar(opened.broker, bars, 1)
    opened.broker.submit(_order("exit", OrderSide.SELL))

    # Assert
    fills = opened.broker.fills_since(None)
    assert [f.fees for f in fills] == pytest.approx([0.0002 * LOT * 1.1 + 7.0] * 2)
    assert opened.broker.account().balance == pytest.approx(100_000.0 - 2 * (22.0 + 7.0))


# -- the book: idempotence and restarts --------------------------------------------------------


def test_submit_twice_with_one_client_order_id_returns_the_same_order(db: StateDB) -> None:
    # Arrange
    bars = _bars([ENTRY_BAR, ENTRY_BAR], spread=0.0)
    broker = _broker(db)
    _bar(broker, bars, 0)

    # Act
    first = broker.submit(_order("m1", OrderSide.BUY))
    second = broker.submit(_order("m1", OrderSide.BUY, 3 * LOT))
    _bar(broker, bars, 1)
    third = broker.submit(_order("m1", OrderSide.BUY))

    # Assert
    assert second == first
    assert third.status is OrderStatus.FILLED and third.ticket == first.ticket
    assert len(broker.fills_since(None)) == 1
    assert broker.positions()[0].units == LOT


def test_submit_of_a_filled_order_after_a_restart_returns_it_without_trading(
    tmp_path: Path,
) -> None:
    # Arrange
    path = tmp_path / "runtime.db"
    bars = _bars([ENTRY_BAR, ENTRY_BAR], spread=0.0)
    with StateDB(path) as state:
        broker = _broker(state)
        _bar(broker, bars, 0)
        broker.submit(_order("m1", OrderSide.BUY))
        _bar(broker, bars, 1)
        broker.journal.commit()

    # Act
    with StateDB(path) as state:
        restarted = _broker(state)
        again = restarted.submit(_order("m1", OrderSide.BUY))
        fills = restarted.fills_since(None)
        units = restarted.positions()[0].units

    # Assert
    assert again.status is OrderStatus.FILLED
    assert len(fills) == 1
    assert units == LOT


def test_rejected_order_is_known_after_a_restart(tmp_path: Path) -> None:
    # Arrange: c2 asks for 28 lots, more than 100,000 of equity carries at 30:1
    path = tmp_path / "runtime.db"
    bars = _bars([ENTRY_BAR], spread=0.0)
    with StateDB(path) as state:
        broker = _broker(state)
        _bar(broker, bars, 0)
        broker.submit(_order("c1", OrderSide.BUY))
        rejected = broker.submit(_order("c2", OrderSide.BUY, 28 * LOT))
        broker.journal.commit()

    # Act
    with StateDB(path) as state:
        found = _broker(state).order_status("c2")

    # Assert
    assert rejected.status is OrderStatus.REJECTED
    assert found == rejected


def _session_bars() -> BarBatch:
    rng = np.random.default_rng(5)
    close = 1.1 + np.cumsum(rng.normal(0.0, 0.0008, 12))
    rows = [(c - 0.0002, c + 0.0012, c - 0.0012, c) for c in close]
    return _bars(rows, spread=0.0001, to_account=np.linspace(0.9, 0.95, 12).tolist())


def _session(broker: PaperBroker, bars: BarBatch, upto: int) -> None:
    """Trade a small script through bars ``0..upto-1``: a market buy with a wide trailing stop
    after bar 1, a limit sell that keeps working after bar 3, swap and fees along the way."""
    for index in range(upto):
        _bar(broker, bars, index)
        if index == 1:
            broker.submit(_order("m1", OrderSide.BUY, 1.5 * LOT, trailing=0.0100))
        if index == 3:
            broker.submit(_order("l1", OrderSide.SELL, 0.5 * LOT, kind=OrderType.LIMIT,
                                 limit=float(bars.high.max()) + 0.0100))  # fmt: skip


def test_restart_after_commit_finds_the_same_account_position_orders_and_fills(
    tmp_path: Path,
) -> None:
    # Arrange
    path = tmp_path / "runtime.db"
    bars = _session_bars()
    costs = _costs(swap_long=-0.0001, fees=0.0001)
    with StateDB(path) as state:
        broker = _broker(state, costs)
        _session(broker, bars, 6)
        broker.journal.commit()
        seen = (broker.account(), broker.positions(), broker.open_orders(),
                broker.fills_since(None), broker.order_status("m1"))  # fmt: skip

    # Act
    with StateDB(path) as state:
        restarted = _broker(state, costs)
        found = (restarted.account(), restarted.positions(), restarted.open_orders(),
                 restarted.fills_since(None), restarted.order_status("m1"))  # fmt: skip
        since = restarted.fills_since(seen[3][0].ts)
        restarted.on_market(bars, 5, "open")
        restarted.on_market(bars, 5, "close")  # the last stage processed: nothing happens
        replayed = (restarted.account(), restarted.fills_since(None))

    # Assert
    assert found == seen
    assert seen[1][0].units == 1.5 * LOT and seen[2][0].client_order_id == "l1"
    assert since == seen[3]
    assert replayed == (seen[0], seen[3])


def test_restart_then_replaying_every_bar_ends_as_a_session_never_stopped(
    tmp_path: Path,
) -> None:
    # Arrange
    bars = _session_bars()
    costs = _costs(swap_long=-0.0001, fees=0.0001)
    with StateDB(tmp_path / "straight.db") as state:
        straight = _broker(state, costs)
        _session(straight, bars, len(bars))
        expected = (straight.account(), straight.positions(), straight.fills_since(None))
    path = tmp_path / "restarted.db"
    with StateDB(path) as state:
        first = _broker(state, costs)
        _session(first, bars, 4)
        first.journal.commit()

    # Act
    with StateDB(path) as state:
        second = _broker(state, costs)
        _session(second, bars, len(bars))  # bars 0..3 again: no-ops; submits: idempotent
        got = (second.account(), second.positions(), second.fills_since(None))

    # Assert
    assert got == expected


def test_modify_after_a_restart_sets_the_protective_levels_of_a_filled_order(
    tmp_path: Path,
) -> None:
    # Arrange
    path = tmp_path / "runtime.db"
    bars = _bars([ENTRY_BAR, ENTRY_BAR, (1.1000, 1.1005, 1.0970, 1.0990)], spread=0.0)
    with StateDB(path) as state:
        broker = _broker(state)
        _bar(broker, bars, 0)
        broker.submit(_order("m1", OrderSide.BUY))
        _bar(broker, bars, 1)
        broker.journal.commit()

    # Act
    with StateDB(path) as state:
        restarted = _broker(state)
        restarted.modify("m1", stop_loss=1.0980)
        _bar(restarted, bars, 2)
        last = restarted.fills_since(None)[-1]

    # Assert
    assert (last.reason, last.price) == ("stop_loss", 1.0980)


def test_order_with_a_stop_loss_protects_the_position_it_opens(db: StateDB) -> None:
    # Arrange
    bars = _bars([ENTRY_BAR, ENTRY_BAR, (1.1000, 1.1005, 1.0970, 1.0990)], spread=0.0)
    broker = _broker(db)
    _bar(broker, bars, 0)
    order = _order("m1", OrderSide.BUY).model_copy(update={"stop_loss": 1.0980})
    broker.submit(order)

    # Act
    _run(broker, bars, 1)

    # Assert
    assert broker.fills_since(None)[-1].reason == "stop_loss"


def test_on_market_of_a_stage_already_processed_changes_nothing(db: StateDB) -> None:
    # Arrange
    bars = _bars([ENTRY_BAR, ENTRY_BAR, ENTRY_BAR], spread=0.0,
                 times=[utc(2024, 1, 8, 20), utc(2024, 1, 8, 21), utc(2024, 1, 8, 22)])  # fmt: skip
    opened = _open(db, bars, OrderSide.BUY, _costs(swap_long=-0.0001))
    _bar(opened.broker, bars, 1)
    before = opened.broker.account()

    # Act
    _bar(opened.broker, bars, 1)
    opened.broker.on_market(bars, 0, "close")

    # Assert
    assert opened.broker.account() == before


# -- quiet bars in bulk ------------------------------------------------------------------------


def _state(broker: PaperBroker) -> tuple[object, ...]:
    return (broker.balance, broker.accrued, broker.units, broker.ref, broker.best,
            broker.swap_since_fill, broker.last_rate, broker.cursor, broker.account())  # fmt: skip


def _twins(
    tmp_path: Path, name: str, bars: BarBatch, side: OrderSide, costs: CostModel,
    trailing: float | None, stop_loss: float | None,
) -> tuple[PaperBroker, PaperBroker]:  # fmt: skip
    twins = []
    for k in range(2):
        state = StateDB(tmp_path / f"{name}-{k}.db")
        opened = _open(state, bars, side, costs, trailing=trailing, round_lots=False)
        if stop_loss is not None:
            opened.broker.modify(opened.cid, stop_loss=stop_loss)
        twins.append(opened.broker)
    return twins[0], twins[1]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 40),
    long=st.booleans(),
    protect=st.sampled_from(["none", "stop", "trailing"]),
    spread_from_data=st.booleans(),
)
def test_preview_and_apply_quiet_equal_bar_by_bar_on_market(
    tmp_path_factory: pytest.TempPathFactory, seed: int, n: int, long: bool, protect: str,
    spread_from_data: bool,
) -> None:  # fmt: skip
    # Arrange: a random walk across a few rollovers, a varying spread and conversion rate, and a
    # position whose protective level (if any) is far enough never to be reached
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0.0, 0.0005, n))
    high = close + rng.uniform(0.0, 0.0008, n)
    low = close - rng.uniform(0.0, 0.0008, n)
    rows = [
        (float(c), float(h), float(lo), float(c)) for c, h, lo in zip(close, high, low, strict=True)
    ]
    start = utc(2024, 1, 8, 17) + timedelta(hours=int(rng.integers(0, 24)))
    bars = _bars(rows, start=start,
                 spread=rng.uniform(0.00005, 0.0003, n).tolist(),
                 to_account=rng.uniform(0.8, 1.2, n).tolist())  # fmt: skip
    costs = _costs(spread=None if spread_from_data else 0.0002, swap_long=-0.00007,
                   swap_short=0.00003, fees=0.0001)  # fmt: skip
    side = OrderSide.BUY if long else OrderSide.SELL
    far = 0.05
    trailing = far if protect == "trailing" else None
    stop = (close[0] - side.sign * far) if protect == "stop" else None
    folder = tmp_path_factory.mktemp("quiet")
    stepped, bulk = _twins(folder, "q", bars, side, costs, trailing, stop)

    # Act
    balances, equities = [], []
    for index in range(1, n):
        _bar(stepped, bars, index)
        account = stepped.account()
        balances.append(account.balance)
        equities.append(account.equity)
    count, balance, equity = bulk.preview_quiet(bars, 1, n)
    bulk.apply_quiet(bars, 1, count, balance, equity)

    # Assert
    assert count == n - 1
    assert balance.tolist() == balances
    assert equity.tolist() == equities
    assert _state(bulk) == _state(stepped)
    assert bulk.fills_since(None) == stepped.fills_since(None)
    stepped.db.close()
    bulk.db.close()


def test_preview_quiet_stops_before_the_bar_that_reaches_a_protective_level(
    tmp_path: Path,
) -> None:
    # Arrange: long at 1.1000 with a stop at 1.0980; bar 3 reaches it
    rows = [ENTRY_BAR, (1.1000, 1.1010, 1.0990, 1.1005), (1.1005, 1.1010, 1.0985, 1.0990),
            (1.0990, 1.0995, 1.0975, 1.0980), (1.0980, 1.0990, 1.0970, 1.0985)]  # fmt: skip
    bars = _bars(rows, spread=0.0)
    stepped, bulk = _twins(tmp_path, "stop", bars, OrderSide.BUY, _costs(), None, 1.0980)

    # Act
    count, balance, equity = bulk.preview_quiet(bars, 1, len(bars))
    bulk.apply_quiet(bars, 1, count, balance, equity)
    _run(stepped, bars, 1, 3)

    # Assert
    assert count == 2
    assert _state(bulk) == _state(stepped)
    _bar(bulk, bars, 3)
    assert bulk.fills_since(None)[-1].reason == "stop_loss"
    stepped.db.close()
    bulk.db.close()


def test_preview_quiet_of_bars_already_processed_is_empty(db: StateDB) -> None:
    # Arrange
    bars = _bars([ENTRY_BAR] * 4, spread=0.0)
    opened = _open(db, bars, OrderSide.BUY, _costs())
    _run(opened.broker, bars, 1, 3)

    # Act
    count, balance, equity = opened.broker.preview_quiet(bars, 1, 4)

    # Assert
    assert count == 0 and balance.size == 0 and equity.size == 0


@pytest.mark.parametrize(
    ("side", "entry", "mark"), [(OrderSide.BUY, 1.1001, 1.1009), (OrderSide.SELL, 1.0999, 1.1011)]
)
def test_account_equity_marks_a_long_at_the_bid_and_a_short_at_the_ask(
    db: StateDB, side: OrderSide, entry: float, mark: float
) -> None:
    # Arrange: mid bars with a 2-pip spread; 1 lot opened at bar 0's close of 1.1000
    bars = _bars([ENTRY_BAR, (1.1000, 1.1012, 1.0998, 1.1010)], spread=0.0002)
    opened = _open(db, bars, side, _costs("mid"))

    # Act
    _bar(opened.broker, bars, 1)
    account = opened.broker.account()

    # Assert: bar 1's close of 1.1010 is a bid of 1.1009 and an ask of 1.1011
    assert opened.price == pytest.approx(entry, abs=1e-12)
    profit = side.sign * LOT * (mark - entry)
    assert account.equity - account.balance == pytest.approx(profit, rel=1e-9)
    assert math.isclose(account.margin_used, LOT * mark / 30.0, rel_tol=1e-12)

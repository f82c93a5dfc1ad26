"""The Desk page's view: a session's equity, today's P&L on the broker day, exposure, working
orders, risk limits in use and loop health, read from a state database opened read-only.

The desk here is a state database written directly: one running paper session on EURUSD H1
with a 10,000 account, marks either side of the broker day's start (17:00 New York, 22:00 UTC
in January), one position, a filled order and a working one, a saved risk state and an old
heartbeat.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.settings import RiskSettings, Settings
from core.times import ns_from_utc, utc_now
from core.types import Fill, Order, OrderSide, OrderStatus, OrderType, Position
from execution.risk import RiskMode, RiskState, RiskStatus
from feature_store.state import EQUITY_POINT, Heartbeat, SessionRecord, StateDB
from services.views.desk import (
    ExposureRow,
    Measures,
    default_session,
    desk_view,
    equity_charts,
    equity_now,
    equity_pictures,
    exposure_figure,
    exposure_picture,
    limit_usage,
    orders_since,
    session_health,
    session_records,
    today_pnl,
    working_orders,
)

T0 = datetime(2017, 1, 3, 20, tzinfo=UTC)
DAY_START = datetime(2017, 1, 3, 22, tzinfo=UTC)  # 17:00 New York in winter
CASH = 10_000.0
# (hours after T0, equity): the 22:00 mark opens the broker day at 10,050.
MARKS = ((0, 10_000.0), (1, 10_100.0), (2, 10_050.0), (3, 9_950.0), (4, 10_000.0))
UNITS = 20_000.0
PRICE = 1.1


def _record(name: str, status: str = "running", created: datetime = T0) -> SessionRecord:
    return SessionRecord(
        session=name, account=f"paper:{name}", kind="paper", symbol="EURUSD", timeframe="H1",
        strategy="sma_cross", params={"fast": 5, "slow": 20},
        options={
            "backtest": {"cash": CASH}, "feed": "replay",
            "risk": ["max_daily_loss=0.05", "max_position_lots=2", "max_open_orders=4"],
        },
        created=created, status=status, pid=os.getpid(), bars=5,
        last_bar_ts=ns_from_utc(T0 + timedelta(hours=3)), updated=T0 + timedelta(hours=4),
    )  # fmt: skip


def _points(marks: tuple[tuple[int, float], ...] = MARKS) -> np.ndarray:
    rows = [
        (ns_from_utc(T0 + timedelta(hours=h)), CASH, value, UNITS * PRICE / value)
        for h, value in marks
    ]
    return np.array(rows, dtype=EQUITY_POINT)


def _order(cid: str, ts: datetime, kind: OrderType = OrderType.MARKET) -> Order:
    return Order(
        client_order_id=cid, ts=ts, symbol="EURUSD", side=OrderSide.BUY, units=UNITS, type=kind,
        limit_price=1.05 if kind is OrderType.LIMIT else None, status=OrderStatus.WORKING,
    )  # fmt: skip


def _fill(cid: str, ts: datetime, units: float = UNITS) -> Fill:
    return Fill(
        execution_id=f"{cid}.1", client_order_id=cid, ts=ts, symbol="EURUSD",
        side=OrderSide.BUY, units=units, price=PRICE,
    )  # fmt: skip


@pytest.fixture
def desk(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    with StateDB.open(settings) as db:
        db.create_session(_record("old", status="finished", created=T0 - timedelta(days=1)))
        db.create_session(_record("s1"))
        db.record_equity("s1", _points())
        db.set_position("s1", Position(symbol="EURUSD", units=UNITS, avg_price=PRICE))
        entered = T0 + timedelta(hours=1)
        db.upsert_order("s1", _order("c1", entered))
        db.record_fill("s1", _fill("c1", entered), UNITS / 100_000)
        db.upsert_order("s1", _order("c2", T0 + timedelta(hours=3, minutes=59), OrderType.LIMIT))
        state = RiskState(
            account="paper:s1", day_start=DAY_START, day_start_equity=10_050.0,
            equity_hwm=10_100.0, last_equity=10_000.0, last_mark=T0 + timedelta(hours=4),
        )  # fmt: skip
        db.save_risk("paper:s1", state.to_json())
        db.beat("s1", os.getpid(), utc_now() - timedelta(seconds=100), 5)
        db.commit()
    return settings


def test_default_session_running_session_chosen_over_a_later_finished_one() -> None:
    # Arrange
    records = [_record("a"), _record("b", status="finished", created=T0 + timedelta(hours=1))]

    # Act
    chosen = default_session(records)

    # Assert
    assert chosen == "a"


def test_default_session_nothing_running_gives_the_latest() -> None:
    # Arrange
    records = [
        _record("a", status="finished"),
        _record("b", status="stopped", created=T0 + timedelta(hours=1)),
    ]

    # Act
    chosen = default_session(records)

    # Assert
    assert chosen == "b"


def test_default_session_no_sessions_gives_none() -> None:
    # Act
    chosen = default_session([])

    # Assert
    assert chosen is None


def test_today_pnl_last_mark_after_day_start_measures_from_the_days_first_mark() -> None:
    # Act
    today = today_pnl(_points(), RiskSettings())

    # Assert: the 22:00 UTC mark (17:00 New York) opens the day at 10,050
    assert today.day_start == DAY_START
    assert today.measured_at == T0 + timedelta(hours=4)
    assert today.day_start_equity == 10_050.0
    assert today.pnl == pytest.approx(-50.0)
    assert today.fraction == pytest.approx(-50.0 / 10_050.0)


def test_today_pnl_last_mark_before_day_start_belongs_to_the_previous_day() -> None:
    # Arrange: marks up to 21:00 UTC only
    points = _points(MARKS[:2])

    # Act
    today = today_pnl(points, RiskSettings())

    # Assert
    assert today.day_start == DAY_START - timedelta(days=1)
    assert today.pnl == pytest.approx(100.0)


def test_today_pnl_utc_day_setting_cuts_at_midnight() -> None:
    # Act
    today = today_pnl(_points(), RiskSettings(day_start="00:00", day_zone="UTC"))

    # Assert: the day of 2017-01-04 starts with the 00:00 mark
    assert today.day_start == datetime(2017, 1, 4, tzinfo=UTC)
    assert today.pnl == 0.0


def test_equity_now_below_initial_cash_draws_down_from_the_cash() -> None:
    # Arrange: one mark below the initial cash
    points = _points(((0, 9_500.0),))

    # Act
    now = equity_now(points, CASH)

    # Assert
    assert now.equity_hwm == CASH
    assert now.drawdown == pytest.approx(-0.05)
    assert now.max_drawdown == pytest.approx(-0.05)


def test_equity_now_curve_gives_high_water_mark_and_drawdowns() -> None:
    # Act
    now = equity_now(_points(), CASH)

    # Assert
    assert now.equity_hwm == 10_100.0
    assert now.drawdown == pytest.approx(10_000.0 / 10_100.0 - 1.0)
    assert now.max_drawdown == pytest.approx(9_950.0 / 10_100.0 - 1.0)
    assert now.points == len(MARKS)


def test_working_orders_filled_in_the_broker_book_is_left_out() -> None:
    # Arrange: recorded as sent (working), filled at the broker
    order = _order("c1", T0)
    book = {"c1": {"client_order_id": "c1", "status": "filled", "filled_units": UNITS}}

    # Act
    open_orders = working_orders([order], book, [])

    # Assert
    assert open_orders == ()


def test_working_orders_without_a_book_read_their_fills() -> None:
    # Arrange: one filled in full, one in part, one not at all
    orders = [_order("c1", T0), _order("c2", T0), _order("c3", T0, OrderType.LIMIT)]
    fills = [_fill("c1", T0), _fill("c2", T0, units=UNITS / 4)]

    # Act
    open_orders = working_orders(orders, {}, fills)

    # Assert
    assert [(o.client_order_id, o.status) for o in open_orders] == [
        ("c2", OrderStatus.PARTIAL), ("c3", OrderStatus.WORKING),
    ]  # fmt: skip
    assert open_orders[0].filled_units == UNITS / 4


def test_orders_since_counts_the_minute_up_to_the_moment() -> None:
    # Arrange
    now = T0 + timedelta(hours=1)
    orders = [_order("c1", now - timedelta(seconds=s)) for s in (0, 30, 60, 90)]

    # Act
    count = orders_since(orders, now, timedelta(minutes=1))

    # Assert
    assert count == 2


def test_limit_usage_loss_limits_give_fractions_of_their_budgets() -> None:
    # Arrange: down 150 on a day that started at 10,000; 2% below the high-water mark
    status = RiskStatus(
        account="paper:x", state=RiskMode.ACTIVE, paused=False, since=None, reason="",
        day_start_equity=10_000.0, daily_pnl=-150.0, equity_hwm=10_000.0, drawdown=-0.02,
        limits={"max_daily_loss": 0.03, "max_trailing_drawdown": 0.10, "reduce_at": 0.8},
    )  # fmt: skip
    limits = RiskSettings(max_daily_loss=0.03, max_trailing_drawdown=0.10)

    # Act
    rows = {
        u.limit: u for u in limit_usage(status, RiskState(account="paper:x"), limits, Measures())
    }

    # Assert
    assert rows["max_daily_loss"].usage == pytest.approx(150.0 / 300.0)
    assert rows["max_trailing_drawdown"].usage == pytest.approx(0.2)
    assert rows["reduce_at"].usage is None


def test_limit_usage_unknown_measures_give_no_usage() -> None:
    # Arrange: nothing marked, sizes unknown
    status = RiskStatus(
        account="paper:x", state=RiskMode.ACTIVE, paused=False, since=None, reason="",
        day_start_equity=None, daily_pnl=None, equity_hwm=None, drawdown=None,
        limits={"max_daily_loss": 0.03, "max_gross_exposure": 1e6, "max_leverage": 10.0,
                "day_start": "17:00", "day_zone": "America/New_York"},
    )  # fmt: skip
    limits = RiskSettings(max_daily_loss=0.03, max_gross_exposure=1e6, max_leverage=10.0)

    # Act
    rows = limit_usage(status, RiskState(account="paper:x"), limits, Measures())

    # Assert: the risk day is no limit and is left out
    assert [(u.limit, u.usage) for u in rows] == [
        ("max_daily_loss", None), ("max_gross_exposure", None), ("max_leverage", None),
    ]  # fmt: skip


def test_session_health_running_and_silent_past_hang_seconds_is_stale() -> None:
    # Arrange
    now = utc_now()
    beat = Heartbeat(session="s1", pid=1, at=now - timedelta(seconds=45), bars=5)

    # Act
    health = session_health(_record("s1"), beat, 30.0, now, alive=True)

    # Assert
    assert health.word == "stale"
    assert health.heartbeat_age == pytest.approx(45.0)


def test_session_health_running_with_a_fresh_beat_is_ok() -> None:
    # Arrange
    now = utc_now()
    beat = Heartbeat(session="s1", pid=1, at=now - timedelta(seconds=2), bars=5)

    # Act
    health = session_health(_record("s1"), beat, 30.0, now, alive=True)

    # Assert
    assert health.word == "ok"


def test_session_health_running_but_process_gone_is_not_running() -> None:
    # Act
    health = session_health(_record("s1"), None, 30.0, utc_now(), alive=False)

    # Assert
    assert health.word == "not running"
    assert (
        "solodesk paper --symbol EURUSD --timeframe H1 --strategy sma_cross --session s1"
        in health.note
    )


def test_session_health_live_feed_gives_bar_latency_replay_none() -> None:
    # Arrange: the last bar opened at T0+3h, so it was known at T0+4h; the beat came 1.5 s later
    live = _record("s1").model_copy(update={"options": {"feed": "live"}})
    beat = Heartbeat(session="s1", pid=1, at=T0 + timedelta(hours=4, seconds=1.5), bars=5)

    # Act
    fed = session_health(live, beat, 30.0, beat.at, alive=True)
    replayed = session_health(_record("s1"), beat, 30.0, beat.at, alive=True)

    # Assert
    assert fed.bar_latency == pytest.approx(1.5)
    assert replayed.bar_latency is None


def test_session_records_no_state_database_gives_none(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")

    # Act
    records = session_records(settings)

    # Assert: and nothing was created
    assert records == ()
    assert not settings.state_db_path.exists()


def test_desk_view_no_state_database_gives_none(tmp_path: Path) -> None:
    # Act
    view = desk_view(Settings(home=tmp_path / "home"), "s1")

    # Assert
    assert view is None


def test_desk_view_session_reads_equity_today_exposure_orders_and_limits(
    desk: Settings,
) -> None:
    # Act
    view = desk_view(desk, "s1")

    # Assert
    assert view is not None
    assert view.equity is not None and view.equity.equity == 10_000.0
    assert view.today is not None and view.today.pnl == pytest.approx(-50.0)
    (row,) = view.exposure
    assert row.notional == pytest.approx(UNITS * PRICE)
    assert row.of_equity == pytest.approx(UNITS * PRICE / 10_000.0)
    assert row.lots == pytest.approx(0.2)
    assert [o.client_order_id for o in view.orders] == ["c2"]
    usage = {u.limit: u.usage for u in view.limits}
    assert usage["max_daily_loss"] == pytest.approx(50.0 / (0.05 * 10_050.0))
    assert usage["max_position_lots"] == pytest.approx(0.1)
    assert usage["max_open_orders"] == pytest.approx(0.25)
    assert view.risk.drawdown == pytest.approx(10_000.0 / 10_100.0 - 1.0)


def test_desk_view_health_lists_the_chosen_session_first(desk: Settings) -> None:
    # Act
    view = desk_view(desk, "s1")

    # Assert: s1 runs in this very process, silent for 100 s: stale; "old" is finished
    assert view is not None
    assert [(h.session, h.word) for h in view.health] == [
        ("s1", "stale"), ("old", "not running"),
    ]  # fmt: skip


def test_desk_view_session_without_marks_has_no_equity(desk: Settings) -> None:
    # Act
    view = desk_view(desk, "old")

    # Assert
    assert view is not None
    assert view.equity is None and view.today is None and view.exposure == ()


def test_desk_view_unknown_session_gives_none(desk: Settings) -> None:
    # Act
    view = desk_view(desk, "nope")

    # Assert
    assert view is None


def test_equity_charts_give_the_curve_and_its_underwater_chart(desk: Settings) -> None:
    # Act
    charts = equity_charts(desk, "s1")

    # Assert
    assert charts is not None
    curve, under = charts
    assert list(curve.data[0].y) == [value for _, value in MARKS]
    assert min(under.data[0].y) == pytest.approx((9_950.0 / 10_100.0 - 1.0) * 100.0)
    assert under.layout.title.text.startswith("Drawdown (underwater)")


def test_equity_pictures_draw_the_same_figures_as_the_charts(desk: Settings) -> None:
    # Act
    pictures = equity_pictures(desk, "s1")
    charts = equity_charts(desk, "s1")

    # Assert: one SVG picture per chart, titled as the chart is
    assert pictures is not None and charts is not None
    for svg, figure in zip(pictures, charts, strict=True):
        assert svg.lstrip().startswith("<?xml") and svg.rstrip().endswith("</svg>")
        assert f"<!-- {figure.layout.title.text.split(' ·')[0]}" in svg


def test_exposure_picture_no_position_writes_the_note() -> None:
    # Act
    svg = exposure_picture(Settings(), [])

    # Assert
    assert "<!-- no open position -->" in svg


def test_exposure_figure_short_position_draws_below_zero() -> None:
    # Arrange
    row = ExposureRow(
        symbol="EURUSD", side="short", units=-1000.0, lots=0.01, mark=1.1, notional=1100.0,
        of_equity=0.11,
    )  # fmt: skip

    # Act
    figure = exposure_figure([row])

    # Assert
    assert list(figure.data[0].y) == [-1100.0]

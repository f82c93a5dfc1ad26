"""The Trades page's view: the trade log of one session or all, its filters, a trade on its
candles with its protective levels, and the P&L distribution.

The desk here is a state database written directly: session ``s1`` (EURUSD H1, a 20-pip
stop-loss and a 40-pip take-profit) with live bars recorded and three round trips (a long
closed on a signal, a short stopped out, a long still open), and session ``s2`` (GBPUSD H1, no
protection) with one trade and no bars anywhere.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from core.settings import Settings
from core.times import ns_from_utc
from feature_store.state import SessionRecord, StateDB
from services.views.trades import (
    CONTEXT_BARS,
    LOG_SCHEMA,
    NO_PROTECTION,
    TradeFilter,
    filter_trades,
    log_table,
    pnl_distribution,
    summarize,
    trade_chart,
    trade_fills,
    trade_label,
    trade_log,
)

T0 = datetime(2017, 3, 6, tzinfo=UTC)
BARS = 120
PIP = 1e-4


def _hour(h: int) -> datetime:
    return T0 + timedelta(hours=h)


def _record(name: str, symbol: str, backtest: dict[str, object]) -> SessionRecord:
    return SessionRecord(
        session=name, account=f"paper:{name}", kind="paper", symbol=symbol, timeframe="H1",
        strategy="sma_cross", options={"backtest": {"cash": 10_000.0, **backtest}},
        created=T0 if name == "s1" else _hour(1), status="finished",
        last_bar_ts=ns_from_utc(_hour(BARS - 1)), bars=BARS,
    )  # fmt: skip


def _trade(
    entry: int, exit_: int | None, direction: str, price: float, pnl: float, reason: str
) -> dict[str, object]:
    return {
        "entry_ts": _hour(entry), "exit_ts": None if exit_ is None else _hour(exit_),
        "direction": direction, "units": 10_000.0, "entry_price": price,
        "exit_price": price + pnl / 10_000.0, "pnl": pnl, "return": pnl / 11_000.0,
        "costs": 1.0, "exit_reason": reason,
        "bars_held": (exit_ if exit_ is not None else BARS) - entry,
    }  # fmt: skip


@pytest.fixture
def desk(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    with StateDB.open(settings) as db:
        db.create_session(
            _record("s1", "EURUSD", {"stop_loss_pips": 20.0, "take_profit_pips": 40.0})
        )
        db.create_session(_record("s2", "GBPUSD", {}))
        bars = [
            (ns_from_utc(_hour(h)), 1.1, 1.1010, 1.0990, 1.1005, 100.0, None) for h in range(BARS)
        ]
        db.record_bars("s1", bars)
        db.record_trade("s1", 1, _trade(10, 20, "long", 1.1000, 30.0, "signal"))
        db.record_trade("s1", 2, _trade(40, 45, "short", 1.1002, -20.0, "stop_loss"))
        db.record_trade("s1", 3, _trade(100, None, "long", 1.1003, 5.0, "open"))
        db.record_trade("s2", 1, _trade(5, 9, "short", 1.2500, 12.0, "signal"))
        db.commit()
    return settings


def test_trade_log_all_sessions_joins_each_sessions_symbol(desk: Settings) -> None:
    # Act
    log = trade_log(desk, None)

    # Assert
    assert log.schema == pl.Schema(LOG_SCHEMA)
    assert log.select("session", "n", "symbol").rows() == [
        ("s1", 1, "EURUSD"), ("s1", 2, "EURUSD"), ("s1", 3, "EURUSD"), ("s2", 1, "GBPUSD"),
    ]  # fmt: skip


def test_trade_log_one_session_keeps_its_trades_only(desk: Settings) -> None:
    # Act
    log = trade_log(desk, "s2")

    # Assert
    assert log["session"].to_list() == ["s2"]


def test_trade_log_no_state_database_is_empty(tmp_path: Path) -> None:
    # Act
    log = trade_log(Settings(home=tmp_path / "home"))

    # Assert
    assert log.height == 0
    assert log.schema == pl.Schema(LOG_SCHEMA)


def test_trade_fills_no_fills_is_an_empty_frame(desk: Settings) -> None:
    # Act
    fills = trade_fills(desk, "s1")

    # Assert
    assert fills.height == 0
    assert "price" in fills.columns


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        (TradeFilter(), [("s1", 1), ("s1", 2), ("s1", 3), ("s2", 1)]),
        (TradeFilter(symbols=("GBPUSD",)), [("s2", 1)]),
        (TradeFilter(sides=("short",)), [("s1", 2), ("s2", 1)]),
        (TradeFilter(reasons=("stop_loss", "open")), [("s1", 2), ("s1", 3)]),
        (TradeFilter(start=date(2017, 3, 7), end=date(2017, 3, 8)), [("s1", 2)]),
        (TradeFilter(sides=("long",), start=date(2017, 3, 10)), [("s1", 3)]),
    ],
    ids=["everything", "symbol", "side", "reasons", "entry-dates", "side-and-from"],
)
def test_filter_trades_choice_keeps_matching_rows(
    desk: Settings, keep: TradeFilter, expected: list[tuple[str, int]]
) -> None:
    # Arrange
    log = trade_log(desk)

    # Act
    kept = filter_trades(log, keep)

    # Assert
    assert kept.select("session", "n").rows() == expected


def test_log_table_times_are_iso_utc_with_z(desk: Settings) -> None:
    # Act
    table = log_table(trade_log(desk, "s1"))

    # Assert
    assert table["entry_ts"].to_list()[0] == "2017-03-06T10:00:00Z"
    assert table["exit_ts"].to_list()[2] is None


def test_trade_label_names_session_number_side_entry_and_pnl(desk: Settings) -> None:
    # Arrange
    row = trade_log(desk, "s1").row(1, named=True)

    # Act
    label = trade_label(row)

    # Assert
    assert label == "s1 #2 · short 2017-03-07T16:00:00Z · -20.00 · stop_loss"


def test_pnl_distribution_counts_closed_trades_only(desk: Settings) -> None:
    # Act
    figure = pnl_distribution(trade_log(desk))

    # Assert: 2 winners and 1 loser; the open trade is left out
    names = [trace.name for trace in figure.data]
    assert names == ["winners (2)", "losers (1)"]


def test_summarize_counts_every_trade_and_measures_the_closed_ones(desk: Settings) -> None:
    # Act
    figures = summarize(trade_log(desk))

    # Assert: 4 trades, 3 closed (+30, -20, +12), the open one left out of the P&L
    assert (figures.trades, figures.closed) == (4, 3)
    assert figures.pnl == pytest.approx(22.0)
    assert figures.winners == pytest.approx(2 / 3)


def test_summarize_empty_log_has_no_winners_share(tmp_path: Path) -> None:
    # Act
    figures = summarize(trade_log(Settings(home=tmp_path / "home")))

    # Assert
    assert (figures.trades, figures.closed, figures.pnl, figures.winners) == (0, 0, 0.0, None)


def test_trade_chart_closed_trade_marks_entry_exit_and_pips_levels(desk: Settings) -> None:
    # Act
    chart = trade_chart(desk, "s1", 1)

    # Assert: 30 bars before the entry at bar 10 (only 10 exist), the trade, 30 after the exit
    assert chart.figure is not None
    candles, entry, exit_ = chart.figure.data
    assert len(candles.x) == 10 + (20 - 10 + 1) + CONTEXT_BARS
    assert list(entry.y) == [1.1000] and list(exit_.y) == [pytest.approx(1.1030)]
    assert chart.stop_loss == pytest.approx(1.1000 - 20 * PIP)
    assert chart.take_profit == pytest.approx(1.1000 + 40 * PIP)
    lines = [shape.y0 for shape in chart.figure.layout.shapes]
    assert lines == [pytest.approx(chart.stop_loss), pytest.approx(chart.take_profit)]
    assert "live bars" in chart.bars


def test_trade_chart_short_trade_puts_the_stop_above_the_entry(desk: Settings) -> None:
    # Act
    chart = trade_chart(desk, "s1", 2)

    # Assert
    assert chart.stop_loss == pytest.approx(1.1002 + 20 * PIP)
    assert chart.take_profit == pytest.approx(1.1002 - 40 * PIP)


def test_trade_chart_open_trade_runs_to_the_last_bar(desk: Settings) -> None:
    # Act
    chart = trade_chart(desk, "s1", 3)

    # Assert
    assert chart.figure is not None
    candles = chart.figure.data[0]
    assert len(candles.x) == CONTEXT_BARS + (BARS - 100)
    assert chart.figure.data[2].name.startswith("marked (open)")


def test_trade_chart_no_bars_anywhere_names_the_ingest_command(desk: Settings) -> None:
    # Act
    chart = trade_chart(desk, "s2", 1)

    # Assert
    assert chart.figure is None
    assert "GBPUSD H1" in chart.missing
    assert chart.command == "solodesk ingest FILE --symbol GBPUSD --timeframe H1"


def test_trade_chart_unknown_trade_says_so(desk: Settings) -> None:
    # Act
    chart = trade_chart(desk, "s1", 99)

    # Assert
    assert chart.figure is None
    assert chart.missing == "No trade 99 in session 's1'"


def test_trade_chart_session_without_protection_says_none_was_set(desk: Settings) -> None:
    # Arrange: a session with live bars and neither stop-loss nor take-profit
    bars = [(ns_from_utc(_hour(h)), 1.1, 1.101, 1.099, 1.1, 1.0, None) for h in range(30)]
    with StateDB.open(desk) as db:
        db.create_session(_record("s3", "EURUSD", {}))
        db.record_bars("s3", bars)
        db.record_trade("s3", 1, _trade(5, 9, "long", 1.1, 3.0, "signal"))
        db.commit()

    # Act
    chart = trade_chart(desk, "s3", 1)

    # Assert
    assert chart.figure is not None
    assert chart.protection == NO_PROTECTION
    assert chart.stop_loss is None and chart.take_profit is None
    assert not chart.figure.layout.shapes

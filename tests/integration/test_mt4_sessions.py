"""Trading sessions over the MT4 bridge against the simulator, on the sample desk's real
EURUSD H1 2017 bars: MT4 prices into the paper broker, and live orders to the simulated terminal
whose trade history must hold exactly the session's fills, through a bridge that goes down."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import SampleDesk
from testkit.mt4 import bridge_settings, simulator

from core.ports import NullNotifier
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import ns_from_utc, utc_from_ns
from core.types import FeedKind, OrderSide
from execution.brokers.mt4.client import ClockMismatchError
from feature_store.series import load_series
from feature_store.state import FillRecord, StateDB
from services.runtime import PaperOptions, PaperSummary, run_paper

START = datetime(2017, 3, 1, tzinfo=UTC)
END = datetime(2017, 3, 15, tzinfo=UTC)
SPEED = 3600.0 * 250  # an H1 bar every 14.4 ms


@pytest.fixture(scope="module")
def home(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("mt4-sessions") / "home"
    shutil.copytree(sample_desk.home, target)
    return target


def _options(**update: object) -> PaperOptions:
    base = PaperOptions(
        symbol="EURUSD", timeframe=Timeframe.H1, strategy="sma_cross",
        params={"fast": "5", "slow": "20"}, feed=FeedKind.MT4, end=END,
    )  # fmt: skip
    return base.model_copy(update=update)


def test_paper_on_mt4_prices_trades_the_bars_the_terminal_closes(home: Path) -> None:
    # Arrange
    with simulator(home, raw=False, speed=SPEED, start=START) as run:
        settings = Settings(home=home, mt4=bridge_settings(run.ports))

        # Act
        summary = run_paper(settings, _options(), session="mt4-paper", notifier=NullNotifier())
        sim = run.finish()

    # Assert: every bar from the first closed after the start to the end, once, in order
    with StateDB.open(settings) as db:
        kept = [row[0] for row in db.bars_of("mt4-paper")]
    assert kept == sorted(set(kept))
    assert summary.status == "finished"
    assert summary.bars == len(kept) >= 200
    assert summary.fills > 0
    assert sim.trades_closed == 0  # the paper broker traded: nothing reached the terminal


def test_live_session_fills_are_the_terminals_trades_through_disconnects(home: Path) -> None:
    # Arrange: the bridge drops now and then (sockets down for 0.3 s)
    faults = ("disconnect=0.03:0.3",)
    with simulator(home, raw=False, speed=SPEED, start=START, faults=faults, seed=5) as run:
        settings = Settings(home=home, mt4=bridge_settings(run.ports))

        # Act
        summary = run_paper(
            settings, _options(broker="mt4"), session="mt4-live", notifier=NullNotifier()
        )
        sim = run.finish()

    # Assert: the bridge went down and the session went on
    assert sim.faults_struck.get("disconnect", 0) >= 1
    assert summary.status == "finished"
    with StateDB.open(settings) as db:
        fills = db.fills("mt4-live")
        position = db.positions("mt4-live")
    history = pl.read_parquet(sim.history).sort("ticket")
    assert summary.trades >= 2
    # Every closed ticket is an opening fill and a closing fill of the session, same lots and
    # prices; a position still open at the end is the one ticket not in the history.
    by_ticket: dict[str, list[FillRecord]] = {}
    for fill in fills:
        by_ticket.setdefault(str(fill.ticket), []).append(fill)
    assert len(history) >= 2
    for row in history.iter_rows(named=True):
        pair = by_ticket.pop(str(row["ticket"]))
        assert len(pair) == 2
        opened, closed = pair
        assert opened.side is (OrderSide.BUY if row["type"] == 0 else OrderSide.SELL)
        assert opened.units == pytest.approx(row["lots"] * 100_000)
        assert opened.price == pytest.approx(row["open_price"])
        assert closed.price == pytest.approx(row["close_price"])
        assert closed.units == pytest.approx(row["lots"] * 100_000)
    held = sum(p.units for _, p in position)
    assert len(by_ticket) == (1 if held else 0)


def test_live_session_refuses_a_clock_that_disagrees_with_the_terminal(home: Path) -> None:
    # Arrange
    with simulator(home, raw=False, speed=SPEED, start=START) as run:
        settings = Settings(home=home, mt4=bridge_settings(run.ports, clock="UTC"))

        # Act / Assert
        with pytest.raises(ClockMismatchError, match=r"\+2\.00 h from .* on the clock 'UTC'"):
            run_paper(
                settings, _options(broker="mt4"), session="mt4-clock", notifier=NullNotifier()
            )
        sim = run.finish()
    assert sim.trades_closed == 0


def _bars_kept(settings: Settings, session: str, *, at_least: int, within: float) -> int:
    """Wait until a running session has kept ``at_least`` bars; return how many it has."""
    deadline = time.monotonic() + within
    kept = 0
    while time.monotonic() < deadline:
        reader = StateDB.reader(settings)
        if reader is not None:
            with reader:
                kept = len(reader.bars_of(session))
        if kept >= at_least:
            break
        time.sleep(0.05)
    return kept


@pytest.mark.parametrize("broker", ["paper", "mt4"])
def test_session_survives_a_simulator_restart_with_its_account(home: Path, broker: str) -> None:
    # Arrange: a session trading against a simulator that is stopped mid-session, stays down
    # for a second, and comes back on the same ports with the same account
    account = f"restart-{broker}"
    session = f"mt4-restart-{broker}"
    result: dict[str, object] = {}
    common: dict[str, Any] = {
        "speed": SPEED, "start": START, "account": account, "wait_for_client": True,
    }  # fmt: skip
    with simulator(home, raw=False, **common) as first:
        ports = first.ports
        settings = Settings(home=home, mt4=bridge_settings(ports, stale_seconds=0.5))

        def trade() -> None:
            try:
                result["summary"] = run_paper(
                    settings, _options(broker=broker), session=session, notifier=NullNotifier()
                )
            except BaseException as exc:  # handed to the test below
                result["error"] = exc

        thread = threading.Thread(target=trade, daemon=True)
        thread.start()
        assert _bars_kept(settings, session, at_least=60, within=30.0) >= 60
        before = first.finish()
    time.sleep(1.0)
    with simulator(home, raw=False, ports=ports, **common) as second:
        thread.join(60)
        after = second.finish()

    # Act / Assert: the session finished on the second simulator's bars
    assert not thread.is_alive(), "the session did not finish within 60 s of the restart"
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert isinstance(summary, PaperSummary)
    assert summary.status == "finished"
    assert after.resumed_at is not None
    assert before.commands_answered > 0 and after.commands_answered > 0  # both served it
    with StateDB.open(settings) as db:
        kept = [row[0] for row in db.bars_of(session)]
        fills = db.fills(session)
    # every bar the store holds between the first and the last, once, in order, across the
    # restart (the bars the terminal closed while the session was cut off were fetched)
    first, last = utc_from_ns(kept[0]), utc_from_ns(kept[-1])
    stored = load_series(settings, "EURUSD", Timeframe.H1).bars
    between = stored.filter(pl.col("ts").is_between(first, last))["ts"]
    assert kept == [ns_from_utc(t) for t in between]
    assert utc_from_ns(kept[-1]) >= END - timedelta(days=1)
    if broker == "mt4":
        history = pl.read_parquet(after.history)
        closed = {str(t) for t in history["ticket"]}
        tickets = {str(f.ticket) for f in fills}
        assert closed <= tickets
        assert len(tickets - closed) <= 1  # the position still open at the end, if any
        assert before.run != after.run

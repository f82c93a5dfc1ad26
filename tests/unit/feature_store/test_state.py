"""The runtime's state database: idempotent writes, commit points, WAL readers, snapshots."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.errors import SolodeskError, UsageError
from core.settings import Settings
from core.types import Fill, Order, OrderSide, OrderStatus, OrderType, Position
from feature_store.catalog import open_catalog, rebuild_catalog, refresh_state_views
from feature_store.state import (
    SNAPSHOT_VIEWS,
    ControlRequest,
    FlowRequest,
    IntentRecord,
    RiskEventRecord,
    SessionRecord,
    StateDB,
    snapshot_state,
)

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2024, 1, 2, 9, tzinfo=UTC)
NS0 = int(T0.timestamp()) * 1_000_000_000
HOUR_NS = 3_600 * 1_000_000_000
STAMP = pl.Datetime("us", "UTC")


def _session(name: str = "s1", created: datetime = T0, account: str | None = None) -> SessionRecord:
    return SessionRecord(
        session=name,
        account=account or f"paper:{name}",
        kind="paper",
        symbol="EURUSD",
        timeframe="H1",
        strategy="sma_cross",
        params={"fast": 5, "slow": 20},
        options={"spread": 1.0, "sizing": "fraction:1"},
        created=created,
    )


def _fill(execution_id: str, cid: str = "c1", units: float = 1_000.0) -> Fill:
    return Fill(
        execution_id=execution_id,
        client_order_id=cid,
        ts=T0 + timedelta(microseconds=250),
        symbol="EURUSD",
        side=OrderSide.BUY,
        units=units,
        price=1.1,
        fees=0.2,
        slippage=0.00001,
        reason="signal",
    )


def _intent(cid: str, bar_ts: datetime = T0, session: str = "s1") -> IntentRecord:
    return IntentRecord(
        session=session,
        client_order_id=cid,
        ts=bar_ts + timedelta(hours=1, microseconds=17),
        bar_ts=bar_ts,
        strategy="sma_cross",
        params={"fast": 5},
        decision=0.5,
        units=5_000.0,
        reason="signal",
        model="m",
        model_version="3",
        feature_set_version="abc",
        risk="allowed",
    )


def _control(session: str | None = "s1", account: str | None = None) -> ControlRequest:
    return ControlRequest(
        session=session, account=account, action="pause", who="ops", why="news", requested=T0
    )


@pytest.fixture
def db(tmp_path: Path) -> StateDB:
    state = StateDB(tmp_path / "state" / "runtime.db")
    state.create_session(_session())
    state.commit()
    return state


# -- opening -----------------------------------------------------------------------------------


def test_state_open_new_file_uses_wal_and_settings(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")

    # Act
    with StateDB.open(settings) as state:
        pragmas = [
            state._con.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        ]
        tables = {
            row[0]
            for row in state._con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }

    # Assert
    assert settings.state_db_path.is_file()
    assert pragmas == ["wal", 1, 10_000, 0]  # synchronous 1 is NORMAL
    assert {
        "sessions", "intents", "orders", "fills", "positions", "trades", "equity", "risk_state",
        "risk_events", "controls", "bars", "broker_orders", "broker_fills", "broker_state",
    } <= tables  # fmt: skip


def test_state_newer_layout_refused_with_upgrade_hint(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "runtime.db"
    StateDB(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.close()

    # Act / Assert
    with pytest.raises(SolodeskError, match="upgrade solodesk"):
        StateDB(path)


def test_state_not_a_database_refused_naming_file(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "runtime.db"
    path.write_bytes(b"not sqlite at all" * 100)

    # Act / Assert
    with pytest.raises(SolodeskError, match=r"runtime\.db"):
        StateDB(path)


# -- sessions ----------------------------------------------------------------------------------


def test_state_session_round_trip_equal_after_reopen(db: StateDB) -> None:
    # Arrange
    path = db.path
    db.close()

    # Act
    with StateDB(path) as again:
        found = again.session("s1")
        missing = again.session("nope")

    # Assert
    assert found == _session()
    assert missing is None


def test_state_create_session_twice_usage_error(db: StateDB) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="exists"):
        db.create_session(_session())


def test_state_sessions_listed_by_created(db: StateDB) -> None:
    # Arrange
    db.create_session(_session("late", T0 + timedelta(days=1)))
    db.create_session(_session("early", T0 - timedelta(microseconds=1)))

    # Act
    names = [s.session for s in db.sessions()]

    # Assert
    assert names == ["early", "s1", "late"]


def test_state_update_session_changes_only_named_fields(db: StateDB) -> None:
    # Act
    db.update_session("s1", status="stopped", paused=True, pid=4242, updated=T0)
    found = db.session("s1")

    # Assert
    assert found is not None
    assert (found.status, found.paused, found.pid, found.updated) == ("stopped", True, 4242, T0)
    assert found.params == {"fast": 5, "slow": 20}


@pytest.mark.parametrize(
    ("session", "fields", "match"),
    [
        ("s1", {"strategy": "other"}, "cannot update"),
        ("s1", {"status": "sleeping"}, "bad update"),
        ("nope", {"paused": True}, "no session 'nope'"),
    ],
)
def test_state_update_session_bad_input_usage_error(
    db: StateDB, session: str, fields: dict[str, object], match: str
) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=match):
        db.update_session(session, **fields)


def test_state_watermark_committed_survives_reopen(db: StateDB) -> None:
    # Arrange
    db.set_watermark("s1", NS0 + 5 * HOUR_NS, 6, T0 + timedelta(hours=6, microseconds=3))
    db.commit()
    db.set_watermark("s1", NS0 + 9 * HOUR_NS, 10, T0 + timedelta(hours=10))  # never committed
    path = db.path
    db.close()

    # Act
    with StateDB(path) as again:
        found = again.session("s1")

    # Assert
    assert found is not None
    assert (found.last_bar_ts, found.bars) == (NS0 + 5 * HOUR_NS, 6)
    assert found.updated == T0 + timedelta(hours=6, microseconds=3)


def test_state_watermark_unknown_session_usage_error(db: StateDB) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="no session"):
        db.set_watermark("nope", NS0, 1, T0)


# -- intents and orders ------------------------------------------------------------------------


def test_state_same_intent_twice_second_false(db: StateDB) -> None:
    # Act
    first = db.record_intent(_intent("c1"))
    second = db.record_intent(_intent("c1"))

    # Assert
    assert (first, second) == (True, False)
    assert db.intents("s1") == [_intent("c1")]
    assert db.intent("s1", "c1") == _intent("c1")
    assert db.intent("s1", "c2") is None


def test_state_count_intents_before_bar_counts_earlier_bars(db: StateDB) -> None:
    # Arrange
    for i in range(4):
        db.record_intent(_intent(f"c{i}", T0 + timedelta(hours=i)))

    # Act
    counts = [db.count_intents("s1", NS0 + i * HOUR_NS) for i in range(5)]

    # Assert
    assert counts == [0, 1, 2, 3, 4]
    assert db.count_intents("s1") == 4
    assert db.count_intents("other") == 0


def test_state_upsert_order_twice_keeps_one_latest_row(db: StateDB) -> None:
    # Arrange
    order = Order(
        client_order_id="c1",
        ts=T0,
        symbol="EURUSD",
        side=OrderSide.SELL,
        units=2_000.0,
        type=OrderType.LIMIT,
        limit_price=1.2,
        stop_loss=1.25,
        take_profit=1.1,
        trailing=0.001,
        reduce_only=True,
        reason="signal",
    )
    done = order.model_copy(
        update={
            "status": OrderStatus.FILLED,
            "ticket": "T9",
            "filled_units": 2_000.0,
            "avg_price": 1.2,
            "updated": T0 + timedelta(seconds=1, microseconds=5),
        }
    )

    # Act
    db.upsert_order("s1", order)
    db.upsert_order("s1", done)
    db.upsert_order("s1", done)

    # Assert
    assert db.orders("s1") == [done]
    assert db.order("s1", "c1") == done
    assert db.order("s1", "c2") is None


# -- fills and positions -----------------------------------------------------------------------


def test_state_same_fill_twice_one_row(db: StateDB) -> None:
    # Act
    first = db.record_fill("s1", _fill("e1"), 0.01)
    second = db.record_fill("s1", _fill("e1"), 0.01)
    db.record_fill("s1", _fill("e2"), 0.02)

    # Assert
    assert (first, second) == (True, False)
    stored = db.fills("s1")
    assert [(f.execution_id, f.seq, f.lots) for f in stored] == [("e1", 1, 0.01), ("e2", 2, 0.02)]
    assert stored[0].fill() == _fill("e1")
    assert db.fill_ids("s1") == {"e1", "e2"}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=20))
def test_state_fills_replayed_in_any_order_stored_once_in_first_order(ids: list[str]) -> None:
    # Arrange
    with tempfile.TemporaryDirectory() as folder, StateDB(Path(folder) / "r.db") as state:
        # Act
        added = [state.record_fill("s", _fill(i), 0.01) for i in ids]
        stored = state.fills("s")

    # Assert
    first_seen = list(dict.fromkeys(ids))
    assert [f.execution_id for f in stored] == first_seen
    assert [f.seq for f in stored] == list(range(1, len(first_seen) + 1))
    assert sum(added) == len(first_seen)


def test_state_positions_replace_and_zero_deletes(db: StateDB) -> None:
    # Arrange
    long = Position(symbol="EURUSD", units=1_000.0, avg_price=1.1, stop_loss=1.0, opened=T0)

    # Act
    db.set_position("s1", long)
    db.set_position("s1", long.model_copy(update={"units": 3_000.0}))
    db.set_position("s2", Position(symbol="GBPUSD", units=-500.0, avg_price=1.3))
    both = db.positions()
    db.set_position("s1", long.model_copy(update={"units": 0.0}))

    # Assert
    assert both == [
        ("s1", long.model_copy(update={"units": 3_000.0})),
        ("s2", Position(symbol="GBPUSD", units=-500.0, avg_price=1.3)),
    ]
    assert db.positions("s1") == []
    assert [s for s, _ in db.positions()] == ["s2"]


# -- trades and equity -------------------------------------------------------------------------


def test_state_record_trade_upserts_named_columns(db: StateDB) -> None:
    # Arrange
    entry = {"entry_ts": T0, "exit_ts": None, "direction": "long", "units": 1_000.0,
             "entry_price": 1.1, "exit_reason": "open"}  # fmt: skip

    # Act
    db.record_trade("s1", 2, {"entry_ts": NS0 + HOUR_NS, "direction": "short"})
    db.record_trade("s1", 1, entry)
    db.record_trade("s1", 1, entry)
    db.record_trade("s1", 1, {"exit_ts": T0 + timedelta(hours=3), "exit_price": 1.2, "pnl": 10.0,
                              "return": 0.001, "costs": 0.5, "exit_reason": "signal",
                              "bars_held": 3})  # fmt: skip
    trades = db.trades("s1")

    # Assert
    assert [t["n"] for t in trades] == [1, 2]
    assert trades[0] == {
        "n": 1, "entry_ts": T0, "exit_ts": T0 + timedelta(hours=3), "direction": "long",
        "units": 1_000.0, "entry_price": 1.1, "exit_price": 1.2, "pnl": 10.0, "return": 0.001,
        "costs": 0.5, "exit_reason": "signal", "bars_held": 3,
    }  # fmt: skip
    assert trades[1]["entry_ts"] == T0 + timedelta(hours=1)


def test_state_record_trade_unknown_column_usage_error(db: StateDB) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="unknown columns"):
        db.record_trade("s1", 1, {"profit": 3.0})


def test_state_equity_100k_rows_replayed_stay_100k(db: StateDB) -> None:
    # Arrange
    rows = [(NS0 + i * 60_000_000_000, 10_000.0 + i, 10_000.5 + i, 0.25) for i in range(100_000)]

    # Act
    start = time.perf_counter()
    db.record_equity("s1", rows)
    db.commit()
    seconds = time.perf_counter() - start
    db.record_equity("s1", [(t, b, e + 1.0, x) for t, b, e, x in rows[:10]])
    curve = db.equity("s1")

    # Assert
    print(f"record_equity: 100,000 rows committed in {seconds:.3f} s")
    assert len(curve) == 100_000
    assert curve[0] == ("2024-01-02T09:00:00Z", 10_000.0, 10_001.5, 0.25)
    assert curve[-1][0] == "2024-03-11T19:39:00Z"


def test_state_bars_recorded_twice_no_duplicates(db: StateDB) -> None:
    # Arrange
    rows = [(NS0 + i * HOUR_NS, 1.1, 1.2, 1.0, 1.15, 10.0, None if i else 0.0001) for i in range(3)]

    # Act
    db.record_bars("s1", rows)
    db.record_bars("s1", rows[1:])

    # Assert
    assert db.bars_of("s1") == rows
    assert db.bars_of("s2") == []


# -- risk --------------------------------------------------------------------------------------


def test_state_risk_state_round_trip_upserts(db: StateDB) -> None:
    # Act
    missing = db.load_risk("paper:s1")
    db.save_risk("paper:s1", {"mode": "normal", "day_start": T0, "peak": 10_000.0})
    db.save_risk("paper:s1", {"mode": "halted", "day_start": T0, "peak": 10_500.0})

    # Assert
    assert missing is None
    assert db.load_risk("paper:s1") == {
        "mode": "halted", "day_start": "2024-01-02T09:00:00Z", "peak": 10_500.0,
    }  # fmt: skip


def test_state_same_risk_event_twice_one_row(db: StateDB) -> None:
    # Arrange
    event = RiskEventRecord(account="paper:s1", session="s1", ts=T0, kind="transition",
                            from_state="normal", to_state="halted", reason="daily loss",
                            equity=9_700.0)  # fmt: skip
    manual = RiskEventRecord(account="paper:s1", ts=T0 + timedelta(hours=1), kind="reset",
                             from_state="halted", to_state="normal", reason="by ops")  # fmt: skip
    other = event.model_copy(update={"account": "live:1"})

    # Act
    added = [db.record_risk_event(e) for e in (event, event, manual, manual, other)]

    # Assert
    assert added == [True, False, True, False, True]
    assert db.risk_events("paper:s1") == [event, manual]
    assert len(db.risk_events()) == 3


# -- controls ----------------------------------------------------------------------------------


def _request_from_other_process(path: Path, req: ControlRequest) -> int:
    with StateDB(path) as other:
        return other.request_control(req)


def test_state_control_from_second_connection_seen_inside_open_write_transaction(
    db: StateDB,
) -> None:
    # Arrange: the loop holds a write transaction open (a fill not yet committed).
    db.record_fill("s1", _fill("e1"), 0.01)

    # Act: the control waits for the loop's commit point, then the loop sees it while it holds
    # its next write transaction open.
    with ThreadPoolExecutor(1) as pool:
        asked = pool.submit(_request_from_other_process, db.path, _control())
        time.sleep(0.2)
        waited = not asked.done()
        db.commit()
        control_id = asked.result(timeout=10)
    db.record_fill("s1", _fill("e2"), 0.01)
    pending = db.pending_controls("s1", "paper:s1")
    db.rollback()

    # Assert
    assert waited  # one writer at a time: the request waited for the loop's commit
    assert [(c.id, c.action, c.who, c.requested) for c in pending] == [
        (control_id, "pause", "ops", T0)
    ]
    assert db.fill_ids("s1") == {"e1"}


def test_state_pending_controls_by_session_or_account_then_acked(db: StateDB) -> None:
    # Arrange
    mine = db.request_control(_control("s1"))
    other = db.request_control(_control("s2"))
    account_wide = db.request_control(_control(None, "paper:s1"))
    db.request_control(_control(None, "live:1"))

    # Act
    before = [c.id for c in db.pending_controls("s1", "paper:s1")]
    db.ack_control(mine, T0 + timedelta(seconds=1), "paused")
    db.ack_control(mine, T0 + timedelta(seconds=9), "again")
    after = [c.id for c in db.pending_controls("s1", "paper:s1")]
    listed = db.controls("s1")

    # Assert
    assert before == [mine, account_wide]
    assert after == [account_wide]
    assert [c.id for c in listed] == [mine, account_wide]
    assert (listed[0].applied, listed[0].result) == (T0 + timedelta(seconds=1), "paused")
    assert other not in [c.id for c in listed]
    assert len(db.controls()) == 4


def test_state_ack_unknown_control_usage_error(db: StateDB) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="no control request 7"):
        db.ack_control(7, T0, "done")


def test_state_control_without_target_refused() -> None:
    # Act / Assert
    with pytest.raises(ValidationError, match="name a session, an account"):
        _control(None, None)


def test_state_records_refuse_naive_times() -> None:
    # Act / Assert
    with pytest.raises(ValidationError, match="timezone"):
        _session(created=datetime(2024, 1, 2, 9))


# -- a simulated broker's book -----------------------------------------------------------------


def test_state_broker_book_idempotent_and_since_inclusive(db: StateDB) -> None:
    # Arrange
    times = [T0 + timedelta(seconds=i, microseconds=500) for i in range(3)]

    # Act
    db.broker_save_order("paper", "c1", {"status": "working", "ts": T0})
    db.broker_save_order("paper", "c2", {"status": "working"})
    db.broker_save_order("paper", "c1", {"status": "filled", "ts": T0})
    added = [db.broker_add_fill("paper", f"e{i}", t, {"id": f"e{i}"}) for i, t in enumerate(times)]
    again = db.broker_add_fill("paper", "e1", times[1], {"id": "e1"})
    db.broker_save_state("paper", {"balance": 10_000.0})
    db.broker_save_state("paper", {"balance": 9_990.0})

    # Assert
    assert db.broker_orders("paper") == [
        {"status": "filled", "ts": "2024-01-02T09:00:00Z"},
        {"status": "working"},
    ]
    assert (added, again) == ([True, True, True], False)
    assert db.broker_fills("paper") == [{"id": "e0"}, {"id": "e1"}, {"id": "e2"}]
    assert db.broker_fills("paper", since=times[1]) == [{"id": "e1"}, {"id": "e2"}]
    assert db.broker_state("paper") == {"balance": 9_990.0}
    assert (db.broker_orders("mt4"), db.broker_state("mt4")) == ([], None)


# -- other processes ---------------------------------------------------------------------------


def test_state_reader_during_writes_sees_whole_commits(db: StateDB) -> None:
    # Arrange
    path = db.path
    db.close()
    batches, size = 100, 10
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with StateDB(path) as writer:
                for b in range(batches):
                    for i in range(size):
                        writer.record_fill("s1", _fill(f"e{b}-{i}"), 0.01)
                    writer.set_watermark("s1", NS0 + b * HOUR_NS, b + 1, T0)
                    writer.commit()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    # Act
    thread = threading.Thread(target=write)
    seen: list[tuple[int, int]] = []
    with StateDB(path) as reader:
        thread.start()
        while not done.is_set():
            reader._con.execute("BEGIN")
            found = reader.session("s1")
            seen.append((len(reader.fill_ids("s1")), found.bars if found else -1))
            reader._con.execute("COMMIT")
        thread.join()
        final = len(reader.fill_ids("s1"))

    # Assert
    print(f"reader: {len(seen)} reads, {len(set(seen))} distinct states")
    assert errors == []
    assert final == batches * size
    assert all(count == bars * size for count, bars in seen)  # never half a commit
    assert [c for c, _ in seen] == sorted(c for c, _ in seen)


CRASH_SCRIPT = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from core.types import Fill, OrderSide
from feature_store.state import SessionRecord, StateDB

path = Path(sys.argv[1])
t0 = datetime(2024, 1, 2, 9, tzinfo=UTC)
db = StateDB(path)
db.create_session(SessionRecord(session="s1", account="paper:s1", kind="paper",
    symbol="EURUSD", timeframe="H1", strategy="x", created=t0))

def fill(name):
    return Fill(execution_id=name, client_order_id="c", ts=t0, symbol="EURUSD",
                side=OrderSide.BUY, units=1000.0, price=1.1, reason="x" * 200)

for i in range(100):
    db.record_fill("s1", fill(f"committed-{i}"), 0.01)
db.set_watermark("s1", 1, 100, t0)
db.commit()
wal = Path(f"{path}-wal")
print(wal.stat().st_size, flush=True)
for i in range(20_000):
    db.record_fill("s1", fill(f"uncommitted-{i}"), 0.01)
db.set_watermark("s1", 2, 20_100, t0)
print(wal.stat().st_size, flush=True)
time.sleep(120)
"""


def test_state_killed_mid_transaction_keeps_only_committed(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "runtime.db"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )

    # Act
    try:
        assert process.stdout is not None
        committed_wal = int(process.stdout.readline())
        spilled_wal = int(process.stdout.readline())
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    with StateDB(path) as state:
        ids = state.fill_ids("s1")
        found = state.session("s1")
        check = state._con.execute("PRAGMA integrity_check").fetchone()[0]

    # Assert
    assert process.returncode == -signal.SIGKILL
    assert spilled_wal > committed_wal  # uncommitted pages had reached the log on disk
    assert ids == {f"committed-{i}" for i in range(100)}
    assert found is not None
    assert (found.last_bar_ts, found.bars) == (1, 100)
    assert check == "ok"


# -- snapshots and the catalog -----------------------------------------------------------------

SNAPSHOT_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "live_orders": {
        "session": pl.String(), "client_order_id": pl.String(), "ts": STAMP,
        "symbol": pl.String(), "side": pl.String(), "type": pl.String(), "units": pl.Float64(),
        "status": pl.String(), "ticket": pl.String(), "filled_units": pl.Float64(),
        "avg_price": pl.Float64(), "reason": pl.String(), "strategy": pl.String(),
        "decision": pl.Float64(), "bar_ts": STAMP,
    },
    "live_fills": {
        "session": pl.String(), "client_order_id": pl.String(), "execution_id": pl.String(),
        "ts": STAMP, "symbol": pl.String(), "side": pl.String(), "units": pl.Float64(),
        "lots": pl.Float64(), "price": pl.Float64(), "fees": pl.Float64(),
        "slippage": pl.Float64(), "swap": pl.Float64(), "reason": pl.String(), "seq": pl.Int64(),
    },
    "live_equity": {
        "session": pl.String(), "ts": STAMP, "balance": pl.Float64(), "equity": pl.Float64(),
        "exposure": pl.Float64(),
    },
    "risk_events": {
        "account": pl.String(), "session": pl.String(), "ts": STAMP, "kind": pl.String(),
        "from_state": pl.String(), "to_state": pl.String(), "reason": pl.String(),
        "equity": pl.Float64(),
    },
    "live_trades": {
        "session": pl.String(), "n": pl.Int64(), "entry_ts": STAMP, "exit_ts": STAMP,
        "direction": pl.String(), "units": pl.Float64(), "entry_price": pl.Float64(),
        "exit_price": pl.Float64(), "pnl": pl.Float64(), "return": pl.Float64(),
        "costs": pl.Float64(), "exit_reason": pl.String(), "bars_held": pl.Int64(),
    },
    "live_sessions": {
        "session": pl.String(), "account": pl.String(), "kind": pl.String(),
        "symbol": pl.String(), "timeframe": pl.String(), "strategy": pl.String(),
        "params": pl.String(), "options": pl.String(), "created": STAMP, "status": pl.String(),
        "paused": pl.Boolean(), "last_bar_ts": STAMP, "bars": pl.Int64(), "updated": STAMP,
        "pid": pl.Int64(),
    },
}  # fmt: skip


def _fill_state(state: StateDB) -> None:
    state.record_intent(_intent("c1"))
    order = Order(client_order_id="c1", ts=T0 + timedelta(hours=1), symbol="EURUSD",
                  side=OrderSide.BUY, units=1_000.0, status=OrderStatus.FILLED, ticket="T1",
                  filled_units=1_000.0, avg_price=1.1, reason="signal")  # fmt: skip
    state.upsert_order("s1", order)
    state.record_fill("s1", _fill("e1"), 0.01)
    state.record_equity(
        "s1", [(NS0, 10_000.0, 10_000.0, 0.0), (NS0 + HOUR_NS, 10_000.0, 10_003.0, 0.1)]
    )
    state.record_trade("s1", 1, {"entry_ts": T0, "direction": "long", "units": 1_000.0})
    state.record_risk_event(RiskEventRecord(account="paper:s1", session="s1", ts=T0,
                                            kind="transition", from_state="normal",
                                            to_state="reducing", equity=9_800.0))  # fmt: skip
    state.set_watermark("s1", NS0 + HOUR_NS, 2, T0 + timedelta(hours=2))
    state.commit()


def test_snapshot_empty_database_files_have_schemas(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "runtime.db"
    StateDB(path).close()

    # Act
    files = snapshot_state(path, tmp_path / "snapshots")

    # Assert
    assert list(files) == list(SNAPSHOT_VIEWS) == list(SNAPSHOT_SCHEMAS)
    for view, file in files.items():
        frame = pl.read_parquet(file)
        assert frame.height == 0
        assert dict(frame.schema) == SNAPSHOT_SCHEMAS[view], view


def test_snapshot_contents_committed_only_and_reader_not_blocked(db: StateDB) -> None:
    # Arrange
    _fill_state(db)
    db.record_fill("s1", _fill("uncommitted"), 0.01)  # the loop's open write transaction

    # Act
    start = time.perf_counter()
    files = db.snapshot(db.path.parent / "snapshots")
    seconds = time.perf_counter() - start
    frames = {view: pl.read_parquet(file) for view, file in files.items()}
    db.rollback()

    # Assert
    assert seconds < 5  # not waiting for the writer's lock (busy timeout is 10 s)
    assert {v: dict(f.schema) for v, f in frames.items()} == SNAPSHOT_SCHEMAS
    orders = frames["live_orders"].row(0, named=True)
    assert (orders["client_order_id"], orders["strategy"], orders["decision"]) == (
        "c1",
        "sma_cross",
        0.5,
    )
    assert (orders["ts"], orders["bar_ts"]) == (T0 + timedelta(hours=1), T0)
    assert frames["live_fills"].select("execution_id", "ts", "lots", "seq").rows() == [
        ("e1", T0 + timedelta(microseconds=250), 0.01, 1)
    ]
    assert frames["live_equity"]["ts"].to_list() == [T0, T0 + timedelta(hours=1)]
    assert frames["live_trades"].select("n", "entry_ts", "exit_ts").rows() == [(1, T0, None)]
    assert frames["risk_events"]["to_state"].to_list() == ["reducing"]
    session = frames["live_sessions"].row(0, named=True)
    assert (session["last_bar_ts"], session["bars"], session["paused"]) == (
        T0 + timedelta(hours=1),
        2,
        False,
    )


def test_snapshot_missing_database_usage_error(tmp_path: Path) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="no state database"):
        snapshot_state(tmp_path / "runtime.db", tmp_path / "snapshots")


def test_catalog_state_views_follow_committed_writes(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")
    with StateDB.open(settings) as state:
        state.create_session(_session())
        _fill_state(state)
    rebuild_catalog(settings)

    # Act
    with StateDB.open(settings) as state:
        state.record_fill("s1", _fill("e2"), 0.01)
        state.commit()
    con = open_catalog(settings)
    try:
        fills = con.execute("SELECT execution_id FROM live_fills ORDER BY seq").fetchall()
        counts = {v: con.execute(f"SELECT count(*) FROM {v}").fetchone() for v in SNAPSHOT_VIEWS}
        ts_type = con.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'live_equity' AND column_name = 'ts'"
        ).fetchone()
    finally:
        con.close()

    # Assert
    assert fills == [("e1",), ("e2",)]
    assert counts == {
        "live_orders": (1,), "live_fills": (2,), "live_equity": (2,), "risk_events": (1,),
        "live_trades": (1,), "live_sessions": (1,),
    }  # fmt: skip
    assert ts_type == ("TIMESTAMP WITH TIME ZONE",)
    assert all((settings.state_snapshots_dir / f"{v}.parquet").is_file() for v in SNAPSHOT_VIEWS)


def test_catalog_without_state_database_has_no_live_views(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")

    # Act
    present = refresh_state_views(settings)
    con = open_catalog(settings)
    try:
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM live_fills")
        bars = con.execute("SELECT count(*) FROM bars").fetchone()
    finally:
        con.close()

    # Assert
    assert present is False
    assert bars == (0,)
    assert not settings.state_snapshots_dir.exists()


def test_catalog_state_appearing_later_rebuilds_views(tmp_path: Path) -> None:
    # Arrange: a catalog built before any session ran.
    settings = Settings(home=tmp_path / "home")
    rebuild_catalog(settings)
    with StateDB.open(settings) as state:
        state.create_session(_session())
        state.commit()

    # Act
    con = open_catalog(settings)
    try:
        sessions = con.execute("SELECT session, kind FROM live_sessions").fetchall()
    finally:
        con.close()

    # Assert
    assert sessions == [("s1", "paper")]


def test_flow_request_recorded_then_read_back_with_its_parameters(tmp_path: Path) -> None:
    # Arrange
    request = FlowRequest(
        deployment="retrain/weekly", parameters={"trials": 5, "symbol": "EURUSD"}, who="ann",
        why="new data", requested=datetime(2026, 1, 5, 12, 0, tzinfo=UTC), flow_run="bold-fox",
        flow_run_id="0d5c", outcome="Scheduled",
    )  # fmt: skip

    # Act
    with StateDB(tmp_path / "runtime.db") as db:
        ident = db.record_flow_request(request)
        stored = db.flow_requests()

    # Assert
    assert [r.model_dump() for r in stored] == [{**request.model_dump(), "id": ident}]


def test_state_db_reader_reads_without_writing_and_is_none_without_a_database(
    tmp_path: Path,
) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "home")
    absent = StateDB.reader(settings)
    with StateDB.open(settings) as db:
        db.beat("s", 7, datetime(2026, 1, 5, tzinfo=UTC), 3)
        db.commit()

    # Act
    reader = StateDB.reader(settings)
    assert reader is not None
    with reader:
        beat = reader.heartbeat("s")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.beat("s", 8, datetime(2026, 1, 6, tzinfo=UTC), 4)

    # Assert
    assert absent is None
    assert beat is not None and beat.pid == 7

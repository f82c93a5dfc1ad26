"""The trading runtime's state: one SQLite database at ``SOLODESK_HOME/state/runtime.db``.

The database holds every session of the runtime (paper, backtest replays, live): what each
decided (``intents``), sent (``orders``) and got (``fills``), its positions, round-trip
``trades``, ``equity`` curve and live ``bars``; the risk engine's state and events per account
(``risk_state``, ``risk_events``); the ``controls`` people request (pause, halt, flatten, ...);
the book of a simulated broker (``broker_orders``, ``broker_fills``, ``broker_state``); each
running loop's wall-clock ``heartbeats`` and what ``solodesk supervise`` did
(``supervisor_events``); and the flows people asked the Prefect server to run
(``flow_requests``, from the dashboard's controls).

It runs in WAL mode with ``synchronous=NORMAL``: one process writes (the loop) while others
read (the controls commands, the catalog snapshot) without waiting. A :class:`StateDB` is one
connection, used from one thread. Writes accumulate in a transaction until :meth:`StateDB.commit`;
the runtime decides the commit points (an order intent before it is sent, a fill before it is
acknowledged, the bar watermark at least every second). A process killed at any moment leaves
what it committed and nothing of what it did not. Writing the same thing twice stores it once.

Times are ISO-8601 UTC text with ``Z`` to the microsecond (fixed width, so text order is time
order). Equity and bar rows are keyed by their instant in int ns and keep its ISO text to the
second beside it; the watermark of a session (``last_bar_ts``, the open time of the last fully
processed bar) is int ns. Money and sizes are REAL.

:func:`snapshot_state` writes the views the DuckDB catalog reads (``live_orders``,
``live_fills``, ``live_equity``, ``risk_events``, ``live_trades``, ``live_sessions``) as Parquet,
from a read-only connection that never blocks a running loop.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import AwareDatetime, Field, model_validator

from core.errors import SolodeskError, UsageError
from core.settings import Settings
from core.times import iso_z, iso_z_expr, iso_z_ns, jsonable, parse_utc, utc_from_ns
from core.types import Fill, Frozen, Order, Position
from feature_store.store import write_atomic

#: The layout version written to ``PRAGMA user_version``.
SCHEMA_VERSION: Final = 3
#: Seconds a connection waits for another one's write lock before giving up.
BUSY_TIMEOUT: Final = 10.0
#: The columns of a round trip, as the backtest's trade table has them.
TRADE_COLUMNS: Final = (
    "entry_ts", "exit_ts", "direction", "units", "entry_price", "exit_price", "pnl", "return",
    "costs", "exit_reason", "bars_held",
)  # fmt: skip
_TRADE_TIMES: Final = frozenset({"entry_ts", "exit_ts"})

SessionKind = Literal["paper", "backtest", "live"]
SessionStatus = Literal["running", "finished", "stopped", "crashed"]
ControlAction = Literal["pause", "resume", "halt", "reset", "flatten", "stop"]
SupervisorEventKind = Literal["start", "restart", "gave_up", "guard", "finished"]


class SessionRecord(Frozen):
    """One session of the runtime: what runs, on which account, and how far it got.

    ``options`` are the canonical options the session started with (a resume reuses them).
    ``last_bar_ts`` is the watermark: the open time (ns UTC) of the last fully processed bar;
    ``bars`` counts the bars processed. ``updated`` is the loop clock's time of the last write.
    """

    session: str
    account: str
    kind: SessionKind
    symbol: str
    timeframe: str
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    created: AwareDatetime
    status: SessionStatus = "running"
    paused: bool = False
    last_bar_ts: int | None = None
    bars: int = 0
    updated: AwareDatetime | None = None
    pid: int | None = None


class IntentRecord(Frozen):
    """A decision and the order it became, written before the order is sent.

    ``ts`` is the loop clock's time, ``bar_ts`` the open time of the bar the decision was made
    on; ``decision`` is the strategies' target fraction and ``units`` the signed units asked.
    ``risk`` is ``allowed`` or the reason the risk engine refused. The model fields name the
    model, its version and the feature set version behind the decision, where there is one.
    """

    session: str
    client_order_id: str
    ts: AwareDatetime
    bar_ts: AwareDatetime
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    decision: float
    units: float
    reason: str = ""
    model: str | None = None
    model_version: str | None = None
    feature_set_version: str | None = None
    risk: str


class ControlRequest(Frozen):
    """A person's request to a running session, or to every session of an account.

    ``session`` None means every session of ``account``. ``flatten`` asks a ``halt`` or a
    ``stop`` to close the positions too. ``id`` is assigned when the request is stored;
    ``applied`` and ``result`` are set when a loop acts on it.
    """

    id: int | None = None
    session: str | None = None
    account: str | None = None
    action: ControlAction
    flatten: bool = False
    who: str
    why: str = ""
    requested: AwareDatetime
    applied: AwareDatetime | None = None
    result: str | None = None

    @model_validator(mode="after")
    def _target(self) -> ControlRequest:
        if self.session is None and self.account is None:
            msg = f"control {self.action}: name a session, an account or both"
            raise ValueError(msg)
        return self


class RiskEventRecord(Frozen):
    """A change of an account's risk state, at the loop's time, with the last marked equity
    (None before the first mark)."""

    account: str
    session: str | None = None
    ts: AwareDatetime
    kind: str
    from_state: str
    to_state: str
    reason: str = ""
    equity: float | None = None


class Heartbeat(Frozen):
    """A running loop's last sign of life: its process, the wall time (UTC, not the loop's
    clock, which a replay simulates) and the session's bars processed by then."""

    session: str
    pid: int
    at: AwareDatetime
    bars: int


class SupervisorEvent(Frozen):
    """One thing ``solodesk supervise`` did for a session, at wall time ``at``.

    ``kind``: ``start`` (a child process started: ``pid``), ``restart`` (the child crashed or
    hung, ``reason`` says how; another follows after a backoff), ``gave_up`` (the child cannot
    be kept running: the account is halted, unless its first start refused its options),
    ``guard`` (a fail-closed guard tripped: the child is stopped and the account halted),
    ``finished`` (the child ended the session cleanly).
    ``exit_code`` is the child's exit status (negative: the signal that ended it); ``restarts``
    counts the restarts so far. ``id`` is assigned when the event is stored.
    """

    id: int | None = None
    session: str
    at: AwareDatetime
    kind: SupervisorEventKind
    pid: int | None = None
    exit_code: int | None = None
    restarts: int = 0
    reason: str = ""


class FlowRequest(Frozen):
    """A person's request to run a flow (a retrain, a backtest) through the Prefect server.

    ``deployment`` is ``<flow>/<purpose>``; ``flow_run`` names the run the server created, or is
    None when the request was refused, ``outcome`` saying why (no server answering, no such
    deployment). ``id`` is assigned when the request is stored.
    """

    id: int | None = None
    deployment: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    who: str
    why: str = ""
    requested: AwareDatetime
    flow_run: str | None = None
    flow_run_id: str | None = None
    outcome: str = ""


class FillRecord(Fill):
    """A stored fill: the fill, its session, its size in lots and its execution order."""

    session: str
    lots: float
    seq: int

    def fill(self) -> Fill:
        """Return the plain fill."""
        return Fill.model_validate(self.model_dump(exclude={"session", "lots", "seq"}))


# The layout. Every statement is idempotent, so opening an existing database changes nothing.
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS sessions (
        session TEXT PRIMARY KEY, account TEXT NOT NULL, kind TEXT NOT NULL,
        symbol TEXT NOT NULL, timeframe TEXT NOT NULL, strategy TEXT NOT NULL,
        params TEXT NOT NULL, options TEXT NOT NULL, created TEXT NOT NULL,
        status TEXT NOT NULL, paused INTEGER NOT NULL, last_bar_ts INTEGER,
        bars INTEGER NOT NULL, updated TEXT, pid INTEGER)""",
    """CREATE TABLE IF NOT EXISTS intents (
        session TEXT NOT NULL, client_order_id TEXT NOT NULL, ts TEXT NOT NULL,
        bar_ts TEXT NOT NULL, strategy TEXT NOT NULL, params TEXT NOT NULL,
        decision REAL NOT NULL, units REAL NOT NULL, reason TEXT NOT NULL, model TEXT,
        model_version TEXT, feature_set_version TEXT, risk TEXT NOT NULL,
        PRIMARY KEY (session, client_order_id))""",
    "CREATE INDEX IF NOT EXISTS intents_bar ON intents (session, bar_ts)",
    """CREATE TABLE IF NOT EXISTS orders (
        session TEXT NOT NULL, client_order_id TEXT NOT NULL, ts TEXT NOT NULL,
        symbol TEXT NOT NULL, side TEXT NOT NULL, units REAL NOT NULL, type TEXT NOT NULL,
        time_in_force TEXT NOT NULL, limit_price REAL, stop_price REAL, stop_loss REAL,
        take_profit REAL, trailing REAL, reduce_only INTEGER NOT NULL, status TEXT NOT NULL,
        ticket TEXT, filled_units REAL NOT NULL, avg_price REAL, reason TEXT NOT NULL,
        updated TEXT, PRIMARY KEY (session, client_order_id))""",
    """CREATE TABLE IF NOT EXISTS fills (
        session TEXT NOT NULL, execution_id TEXT NOT NULL, client_order_id TEXT NOT NULL,
        ts TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, units REAL NOT NULL,
        price REAL NOT NULL, fees REAL NOT NULL, slippage REAL NOT NULL, swap REAL NOT NULL,
        realized REAL NOT NULL DEFAULT 0,
        reason TEXT NOT NULL, ticket TEXT, lots REAL NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (session, execution_id))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS fills_seq ON fills (session, seq)",
    """CREATE TABLE IF NOT EXISTS positions (
        session TEXT NOT NULL, symbol TEXT NOT NULL, units REAL NOT NULL,
        avg_price REAL NOT NULL, stop_loss REAL, take_profit REAL, trailing REAL, opened TEXT,
        PRIMARY KEY (session, symbol))""",
    """CREATE TABLE IF NOT EXISTS trades (
        session TEXT NOT NULL, n INTEGER NOT NULL, entry_ts TEXT, exit_ts TEXT,
        direction TEXT, units REAL, entry_price REAL, exit_price REAL, pnl REAL,
        "return" REAL, costs REAL, exit_reason TEXT, bars_held INTEGER,
        PRIMARY KEY (session, n))""",
    # The equity curve, one row per batch of bars: (ts ns, balance, equity, exposure) records
    # packed little-endian; a later batch's point for the same time replaces an earlier one.
    """CREATE TABLE IF NOT EXISTS equity (
        id INTEGER PRIMARY KEY, session TEXT NOT NULL, first_ns INTEGER NOT NULL,
        last_ns INTEGER NOT NULL, points BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS equity_session ON equity (session, id)",
    """CREATE TABLE IF NOT EXISTS risk_state (
        account TEXT PRIMARY KEY, state TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS risk_events (
        id INTEGER PRIMARY KEY, account TEXT NOT NULL, session TEXT, ts TEXT NOT NULL,
        kind TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL,
        reason TEXT NOT NULL, equity REAL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS risk_events_once ON risk_events
        (account, COALESCE(session, ''), ts, kind, from_state, to_state)""",
    """CREATE TABLE IF NOT EXISTS controls (
        id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT, account TEXT,
        action TEXT NOT NULL, flatten INTEGER NOT NULL, who TEXT NOT NULL, why TEXT NOT NULL,
        requested TEXT NOT NULL, applied TEXT, result TEXT)""",
    "CREATE INDEX IF NOT EXISTS controls_pending ON controls (id) WHERE applied IS NULL",
    "CREATE INDEX IF NOT EXISTS controls_session ON controls (session)",
    """CREATE TABLE IF NOT EXISTS bars (
        session TEXT NOT NULL, ts_ns INTEGER NOT NULL, ts TEXT NOT NULL, open REAL NOT NULL,
        high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
        spread REAL, PRIMARY KEY (session, ts_ns)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS broker_orders (
        broker TEXT NOT NULL, client_order_id TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (broker, client_order_id))""",
    """CREATE TABLE IF NOT EXISTS broker_fills (
        broker TEXT NOT NULL, execution_id TEXT NOT NULL, ts TEXT NOT NULL,
        seq INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (broker, execution_id))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS broker_fills_seq ON broker_fills (broker, seq)",
    """CREATE TABLE IF NOT EXISTS broker_state (
        broker TEXT PRIMARY KEY, body TEXT NOT NULL)""",
    # Every live-gate decision on a registered model version, never rewritten.
    """CREATE TABLE IF NOT EXISTS live_gates (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, name TEXT NOT NULL,
        version INTEGER NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('allowed', 'refused', 'overridden')),
        allowed INTEGER NOT NULL, overridden INTEGER NOT NULL, reason TEXT NOT NULL,
        missed TEXT NOT NULL, override_reason TEXT, who TEXT)""",
    "CREATE INDEX IF NOT EXISTS live_gates_version ON live_gates (name, version, id)",
    # Layout 2: each running loop's last heartbeat (one row a session, replaced at each beat)
    # and what the supervisor did.
    """CREATE TABLE IF NOT EXISTS heartbeats (
        session TEXT PRIMARY KEY, pid INTEGER NOT NULL, at TEXT NOT NULL,
        bars INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS supervisor_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, at TEXT NOT NULL,
        kind TEXT NOT NULL, pid INTEGER, exit_code INTEGER, restarts INTEGER NOT NULL,
        reason TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS supervisor_events_session ON supervisor_events (session, id)",
    """CREATE TABLE IF NOT EXISTS flow_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT, deployment TEXT NOT NULL, parameters TEXT NOT NULL,
        who TEXT NOT NULL, why TEXT NOT NULL, requested TEXT NOT NULL, flow_run TEXT,
        flow_run_id TEXT, outcome TEXT NOT NULL)""",
)
_GATE_FIELDS: Final = (
    "at", "name", "version", "decision", "allowed", "overridden", "reason", "missed",
    "override_reason", "who",
)  # fmt: skip

_ORDER_FIELDS: Final = tuple(Order.model_fields)
_FILL_FIELDS: Final = tuple(Fill.model_fields)
_POSITION_FIELDS: Final = tuple(Position.model_fields)
_SESSION_FIELDS: Final = tuple(SessionRecord.model_fields)
_INTENT_FIELDS: Final = tuple(IntentRecord.model_fields)

_RISK_EVENT_FIELDS: Final = tuple(RiskEventRecord.model_fields)
_CONTROL_FIELDS: Final = tuple(f for f in ControlRequest.model_fields if f != "id")
_SUPERVISOR_FIELDS: Final = tuple(f for f in SupervisorEvent.model_fields if f != "id")
_FLOW_REQUEST_FIELDS: Final = tuple(f for f in FlowRequest.model_fields if f != "id")
_SESSION_UPDATES: Final = frozenset({"status", "paused", "updated", "pid", "last_bar_ts", "bars"})


def _instant(moment: datetime) -> str:
    """Return the stored text of an instant: ISO-8601 UTC with ``Z``, to the microsecond."""
    return iso_z(moment, "microseconds")


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), default=jsonable, sort_keys=True)


def _cell(value: object) -> object:
    """Return a value as SQLite stores it: instants as text, enums as their value."""
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, datetime):
        return _instant(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return _json(value)
    return value


_PLAIN = (str, float, int, bool)

#: One point of an equity curve, as the ``equity`` table packs it.
EQUITY_POINT: Final = np.dtype(
    [("ts", "<i8"), ("balance", "<f8"), ("equity", "<f8"), ("exposure", "<f8")]
)


def _latest_points(chunks: list[npt.NDArray[np.void]]) -> npt.NDArray[np.void]:
    """Join batches of points in the order recorded; the last point for a time wins."""
    joined = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    backwards = joined[::-1]
    _, first = np.unique(backwards["ts"], return_index=True)  # the last recorded, in time order
    return backwards[first]


def _row(record: Frozen, fields: Iterable[str]) -> list[object]:
    values = record.__dict__  # a model's fields, without attribute lookups
    return [_cell(values[name]) for name in fields]


def _times(row: sqlite3.Row, *names: str) -> dict[str, Any]:
    """Return a row as a dict with the named ISO columns read back as UTC datetimes."""
    values = dict(row)
    for name in names:
        if values.get(name) is not None:
            values[name] = parse_utc(values[name])
    return values


def _columns(fields: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in fields)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


# The statements written on every order and fill, built once.
_SQL_INTENT: Final = (
    f"INSERT OR IGNORE INTO intents ({_columns(_INTENT_FIELDS)}) "
    f"VALUES ({_marks(len(_INTENT_FIELDS))})"
)
_SQL_ORDER: Final = (
    f"INSERT INTO orders (session, {_columns(_ORDER_FIELDS)}) "
    f"VALUES ({_marks(len(_ORDER_FIELDS) + 1)}) ON CONFLICT (session, client_order_id) DO UPDATE "
    "SET " + ", ".join(f'"{n}" = excluded."{n}"' for n in _ORDER_FIELDS[1:])
)
_SQL_FILL: Final = (
    f"INSERT OR IGNORE INTO fills (session, lots, seq, {_columns(_FILL_FIELDS)}) "
    f"SELECT ?, ?, COALESCE(MAX(seq), 0) + 1, {_marks(len(_FILL_FIELDS))} "
    "FROM fills WHERE session = ?"
)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
    con.row_factory = sqlite3.Row
    con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    con.execute("PRAGMA query_only = ON")
    return con


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT)
    try:
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            msg = f"state database {path}: cannot use WAL (journal mode {mode}); use a local disk"
            raise SolodeskError(msg)
        con.execute("PRAGMA synchronous = NORMAL")
        con.execute("PRAGMA foreign_keys = OFF")
    except BaseException:
        con.close()
        raise
    return con


class StateDB:
    """The runtime's SQLite state database: one connection, writes committed by the caller.

    Parameters
    ----------
    path
        The database file; its folder is created. Use :meth:`open` for the desk's database.
    read_only
        Open an existing database for reading only (:meth:`reader`): nothing is created or
        migrated, and a write raises.

    Raises
    ------
    SolodeskError
        If the file is no SQLite database, was written by a newer layout, or cannot use WAL.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._layout = SCHEMA_VERSION
        if read_only:
            self._open_read_only(path)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = _connect(path)
        except sqlite3.DatabaseError as exc:
            msg = f"state database {path} cannot be opened ({exc}); move it aside to start afresh"
            raise SolodeskError(msg) from None
        try:
            self._migrate()
        except BaseException as exc:
            self._con.close()
            if isinstance(exc, sqlite3.DatabaseError):
                msg = f"state database {path} cannot be read ({exc}); move it aside to start afresh"
                raise SolodeskError(msg) from None
            raise

    @classmethod
    def open(cls, settings: Settings) -> Self:
        """Return the desk's state database, ``settings.state_db_path``."""
        return cls(settings.state_db_path)

    @classmethod
    def reader(cls, settings: Settings) -> Self | None:
        """Return the desk's state database opened read-only, or None when there is none yet
        (no file, or a file whose tables are still being created).

        A reader never takes a write lock, so it never delays a running loop.
        """
        path = settings.state_db_path
        if not path.exists():
            return None
        reader = cls(path, read_only=True)
        if reader._layout == 0:
            reader.close()
            return None
        return reader

    def _open_read_only(self, path: Path) -> None:
        try:
            self._con = _connect_read_only(path)
            version = int(self._con.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            msg = f"state database {path} cannot be read ({exc}); move it aside to start afresh"
            raise SolodeskError(msg) from None
        if version > SCHEMA_VERSION:
            self._con.close()
            msg = (
                f"state database {path} has layout {version}, newer than this solodesk's "
                f"{SCHEMA_VERSION}: upgrade solodesk"
            )
            raise SolodeskError(msg)
        self._layout = version

    def _migrate(self) -> None:
        con = self._con
        if con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return  # the usual case: no lock taken, so opening never waits for a running loop
        con.execute("BEGIN IMMEDIATE")
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                msg = (
                    f"state database {self.path} has layout {version}, newer than this "
                    f"solodesk's {SCHEMA_VERSION}: upgrade solodesk"
                )
                raise SolodeskError(msg)
            for statement in _SCHEMA:
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection; what was not committed is rolled back."""
        self._con.close()

    def commit(self) -> None:
        """Commit every write since the last commit."""
        self._con.commit()

    def rollback(self) -> None:
        """Drop every write since the last commit."""
        self._con.rollback()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sessions ------------------------------------------------------------------------------

    def create_session(self, rec: SessionRecord) -> None:
        """Record a new session.

        Raises
        ------
        UsageError
            If a session of that name exists.
        """
        cur = self._con.execute(
            f"INSERT OR IGNORE INTO sessions ({_columns(_SESSION_FIELDS)}) "
            f"VALUES ({_marks(len(_SESSION_FIELDS))})",
            _row(rec, _SESSION_FIELDS),
        )
        if cur.rowcount == 0:
            msg = (
                f"session {rec.session!r} exists in {self.path}: resume it, or choose another name"
            )
            raise UsageError(msg)

    def session(self, session: str) -> SessionRecord | None:
        """Return a session, or None when there is none of that name."""
        row = self._con.execute("SELECT * FROM sessions WHERE session = ?", [session]).fetchone()
        return None if row is None else _session(row)

    def sessions(self) -> list[SessionRecord]:
        """Return every session, oldest first."""
        rows = self._con.execute("SELECT * FROM sessions ORDER BY created, session").fetchall()
        return [_session(row) for row in rows]

    def update_session(self, session: str, **fields: object) -> None:
        """Change a session's ``status``, ``paused``, ``updated``, ``pid``, ``last_bar_ts``
        or ``bars``.

        Raises
        ------
        UsageError
            If the session does not exist, a field is not one of these or a value is invalid.
        """
        unknown = sorted(set(fields) - _SESSION_UPDATES)
        if unknown:
            msg = f"cannot update session fields {unknown}: use {sorted(_SESSION_UPDATES)}"
            raise UsageError(msg)
        current = self._require_session(session)
        try:
            checked = SessionRecord.model_validate({**current.model_dump(), **fields})
        except ValueError as exc:
            raise UsageError(f"session {session!r}: bad update {fields}: {exc}") from None
        names = list(fields)
        if names:
            self._con.execute(
                f"UPDATE sessions SET {', '.join(f'{n} = ?' for n in names)} WHERE session = ?",
                [*_row(checked, names), session],
            )

    def set_watermark(self, session: str, last_bar_ts: int, bars: int, updated: datetime) -> None:
        """Record that the bars up to the one opening at ``last_bar_ts`` (ns) are processed.

        Raises
        ------
        UsageError
            If the session does not exist.
        """
        cur = self._con.execute(
            "UPDATE sessions SET last_bar_ts = ?, bars = ?, updated = ? WHERE session = ?",
            [int(last_bar_ts), int(bars), _instant(updated), session],
        )
        if cur.rowcount == 0:
            self._require_session(session)

    def _require_session(self, session: str) -> SessionRecord:
        found = self.session(session)
        if found is None:
            msg = f"no session {session!r} in {self.path}: create it first"
            raise UsageError(msg)
        return found

    # -- intents and orders --------------------------------------------------------------------

    def record_intent(self, rec: IntentRecord) -> bool:
        """Record a decision before its order is sent; return False if it was recorded already."""
        cur = self._con.execute(_SQL_INTENT, _row(rec, _INTENT_FIELDS))
        return cur.rowcount == 1

    def intent(self, session: str, cid: str) -> IntentRecord | None:
        """Return the intent behind an order, or None."""
        row = self._con.execute(
            "SELECT * FROM intents WHERE session = ? AND client_order_id = ?", [session, cid]
        ).fetchone()
        return None if row is None else _intent(row)

    def intents(self, session: str) -> list[IntentRecord]:
        """Return a session's intents in the order they were recorded."""
        rows = self._con.execute(
            "SELECT * FROM intents WHERE session = ? ORDER BY rowid", [session]
        ).fetchall()
        return [_intent(row) for row in rows]

    def count_intents(self, session: str, before_bar_ts: int | None = None) -> int:
        """Return how many intents a session has, only those decided on bars opening before
        ``before_bar_ts`` (ns) when given."""
        if before_bar_ts is None:
            sql, args = "SELECT count(*) FROM intents WHERE session = ?", [session]
        else:
            sql = "SELECT count(*) FROM intents WHERE session = ? AND bar_ts < ?"
            args = [session, _instant(utc_from_ns(before_bar_ts))]
        return int(self._con.execute(sql, args).fetchone()[0])

    def upsert_order(self, session: str, order: Order) -> None:
        """Record an order, or replace what is recorded of it (same client order id)."""
        self._con.execute(_SQL_ORDER, [session, *_row(order, _ORDER_FIELDS)])

    def orders(self, session: str) -> list[Order]:
        """Return a session's orders in the order they were first recorded."""
        rows = self._con.execute(
            f"SELECT {_columns(_ORDER_FIELDS)} FROM orders WHERE session = ? ORDER BY rowid",
            [session],
        ).fetchall()
        return [Order.model_validate(_times(row, "ts", "updated")) for row in rows]

    def order(self, session: str, cid: str) -> Order | None:
        """Return one order of a session, or None."""
        row = self._con.execute(
            f"SELECT {_columns(_ORDER_FIELDS)} FROM orders "
            "WHERE session = ? AND client_order_id = ?",
            [session, cid],
        ).fetchone()
        return None if row is None else Order.model_validate(_times(row, "ts", "updated"))

    # -- fills and positions -------------------------------------------------------------------

    def record_fill(self, session: str, fill: Fill, lots: float) -> bool:
        """Record a fill as the session's next execution; return False for a known execution id."""
        cur = self._con.execute(
            _SQL_FILL, [session, float(lots), *_row(fill, _FILL_FIELDS), session]
        )
        return cur.rowcount == 1

    def fills(self, session: str) -> list[FillRecord]:
        """Return a session's fills in execution order."""
        rows = self._con.execute(
            "SELECT * FROM fills WHERE session = ? ORDER BY seq", [session]
        ).fetchall()
        return [FillRecord.model_validate(_times(row, "ts")) for row in rows]

    def fill_ids(self, session: str) -> set[str]:
        """Return the execution ids of a session's fills."""
        rows = self._con.execute("SELECT execution_id FROM fills WHERE session = ?", [session])
        return {str(row[0]) for row in rows}

    def set_position(self, session: str, position: Position) -> None:
        """Record a session's position in a symbol; a position of 0 units is removed."""
        if position.units == 0:
            self._con.execute(
                "DELETE FROM positions WHERE session = ? AND symbol = ?",
                [session, position.symbol],
            )
            return
        self._con.execute(
            f"INSERT OR REPLACE INTO positions (session, {_columns(_POSITION_FIELDS)}) "
            f"VALUES ({_marks(len(_POSITION_FIELDS) + 1)})",
            [session, *_row(position, _POSITION_FIELDS)],
        )

    def positions(self, session: str | None = None) -> list[tuple[str, Position]]:
        """Return the open positions (of one session when given) as (session, position)."""
        where, args = ("WHERE session = ?", [session]) if session is not None else ("", [])
        rows = self._con.execute(
            f"SELECT * FROM positions {where} ORDER BY session, symbol", args
        ).fetchall()
        out = []
        for row in rows:
            values = _times(row, "opened")
            owner = values.pop("session")
            out.append((str(owner), Position.model_validate(values)))
        return out

    # -- trades and equity ---------------------------------------------------------------------

    def record_trade(self, session: str, n: int, row: Mapping[str, object]) -> None:
        """Record round trip ``n`` of a session, or update the columns ``row`` names.

        ``row`` has the backtest's trade columns (:data:`TRADE_COLUMNS`); ``entry_ts`` and
        ``exit_ts`` are datetimes or ns (``exit_ts`` None while the trade is open).

        Raises
        ------
        UsageError
            If ``row`` names a column that is not a trade column.
        """
        unknown = sorted(set(row) - set(TRADE_COLUMNS))
        if unknown:
            raise UsageError(f"trade {n} of {session!r}: unknown columns {unknown}")
        names = [c for c in TRADE_COLUMNS if c in row]
        values = [_trade_cell(c, row[c]) for c in names]
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in names)
        conflict = f"DO UPDATE SET {updates}" if names else "DO NOTHING"
        self._con.execute(
            f"INSERT INTO trades ({_columns(['session', 'n', *names])}) "
            f"VALUES ({_marks(len(names) + 2)}) ON CONFLICT (session, n) {conflict}",
            [session, int(n), *values],
        )

    def trades(self, session: str) -> list[dict[str, Any]]:
        """Return a session's round trips by ``n``: ``n`` and the trade columns, times as UTC
        datetimes."""
        rows = self._con.execute(
            f"SELECT n, {_columns(TRADE_COLUMNS)} FROM trades WHERE session = ? ORDER BY n",
            [session],
        ).fetchall()
        return [_times(row, *_TRADE_TIMES) for row in rows]

    def record_equity(
        self,
        session: str,
        rows: Iterable[tuple[int, float, float, float]] | npt.NDArray[np.void],
    ) -> None:
        """Record equity points (ts ns, balance, equity, exposure); a known ts is replaced.

        ``rows`` are tuples or an array of :data:`EQUITY_POINT` records. The points are kept as
        one packed row per call (a session records one per commit), so a million bars cost one
        row per batch rather than one per bar.
        """
        points = rows if isinstance(rows, np.ndarray) else np.array(list(rows), dtype=EQUITY_POINT)
        if points.shape[0] == 0:
            return
        points = points.astype(EQUITY_POINT, copy=False)
        self._con.execute(
            "INSERT INTO equity (session, first_ns, last_ns, points) VALUES (?, ?, ?, ?)",
            [session, int(points["ts"][0]), int(points["ts"][-1]), points.tobytes()],
        )

    def equity_points(self, session: str | None = None) -> dict[str, npt.NDArray[np.void]]:
        """Return each session's equity curve as :data:`EQUITY_POINT` records in time order."""
        sql = "SELECT session, points FROM equity"
        args: list[str] = []
        if session is not None:
            sql += " WHERE session = ?"
            args.append(session)
        parts: dict[str, list[npt.NDArray[np.void]]] = {}
        for name, blob in self._con.execute(sql + " ORDER BY session, id", args):
            parts.setdefault(str(name), []).append(np.frombuffer(blob, dtype=EQUITY_POINT))
        return {name: _latest_points(chunks) for name, chunks in parts.items()}

    def equity(self, session: str) -> list[tuple[str, float, float, float]]:
        """Return a session's equity curve as (ts ISO, balance, equity, exposure), in time order."""
        points = self.equity_points(session).get(session)
        if points is None:
            return []
        return [
            (iso_z_ns(int(p["ts"])), float(p["balance"]), float(p["equity"]), float(p["exposure"]))
            for p in points
        ]

    # -- risk ----------------------------------------------------------------------------------

    def load_risk(self, account: str) -> dict[str, Any] | None:
        """Return an account's saved risk state, or None."""
        row = self._con.execute(
            "SELECT state FROM risk_state WHERE account = ?", [account]
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save_risk(self, account: str, state: Mapping[str, object]) -> None:
        """Save an account's risk state (JSON; instants as ISO text), replacing the last one."""
        self._con.execute(
            "INSERT INTO risk_state (account, state) VALUES (?, ?) "
            "ON CONFLICT (account) DO UPDATE SET state = excluded.state",
            [account, _json(state)],
        )

    def record_risk_event(self, rec: RiskEventRecord) -> bool:
        """Record a risk event; return False if the same event was recorded already."""
        cur = self._con.execute(
            f"INSERT OR IGNORE INTO risk_events ({_columns(_RISK_EVENT_FIELDS)}) "
            f"VALUES ({_marks(len(_RISK_EVENT_FIELDS))})",
            _row(rec, _RISK_EVENT_FIELDS),
        )
        return cur.rowcount == 1

    def risk_events(self, account: str | None = None) -> list[RiskEventRecord]:
        """Return the risk events (of one account when given) in time order."""
        where, args = ("WHERE account = ?", [account]) if account is not None else ("", [])
        rows = self._con.execute(
            f"SELECT {_columns(_RISK_EVENT_FIELDS)} FROM risk_events {where} ORDER BY ts, id",
            args,
        ).fetchall()
        return [RiskEventRecord.model_validate(_times(row, "ts")) for row in rows]

    # -- controls ------------------------------------------------------------------------------

    def request_control(self, req: ControlRequest) -> int:
        """Store a control request and commit at once (a loop is waiting); return its id.

        The request's own ``id`` is ignored. This commits whatever else this connection wrote.
        """
        cur = self._con.execute(
            f"INSERT INTO controls ({_columns(_CONTROL_FIELDS)}) "
            f"VALUES ({_marks(len(_CONTROL_FIELDS))})",
            _row(req, _CONTROL_FIELDS),
        )
        self._con.commit()
        return int(cur.lastrowid or 0)

    def pending_controls(self, session: str, account: str) -> list[ControlRequest]:
        """Return the requests not yet applied that reach a session (named, or by its account),
        oldest first."""
        rows = self._con.execute(
            "SELECT * FROM controls WHERE applied IS NULL AND "
            "(session = ? OR (session IS NULL AND account = ?)) ORDER BY id",
            [session, account],
        ).fetchall()
        return [_control(row) for row in rows]

    def ack_control(self, id: int, applied: datetime, result: str) -> None:
        """Record that a request was applied (the first acknowledgement stands).

        Raises
        ------
        UsageError
            If there is no request with that id.
        """
        cur = self._con.execute(
            "UPDATE controls SET applied = ?, result = ? WHERE id = ? AND applied IS NULL",
            [_instant(applied), result, int(id)],
        )
        if cur.rowcount == 0:
            found = self._con.execute("SELECT 1 FROM controls WHERE id = ?", [int(id)]).fetchone()
            if found is None:
                raise UsageError(f"no control request {id} in {self.path}")

    def controls(self, session: str | None = None) -> list[ControlRequest]:
        """Return the requests (those reaching one session when given), oldest first."""
        if session is None:
            rows = self._con.execute("SELECT * FROM controls ORDER BY id").fetchall()
        else:
            rows = self._con.execute(
                "SELECT * FROM controls WHERE session = ? OR (session IS NULL AND account = "
                "(SELECT account FROM sessions WHERE session = ?)) ORDER BY id",
                [session, session],
            ).fetchall()
        return [_control(row) for row in rows]

    # -- the live gate -------------------------------------------------------------------------

    def record_live_gate(self, record: Mapping[str, object]) -> None:
        """Append one live-gate decision (the keys of ``services.models.gate_record``)."""
        values = [record.get(name) for name in _GATE_FIELDS]
        self._con.execute(
            f"INSERT INTO live_gates ({', '.join(_GATE_FIELDS)}) "
            f"VALUES ({', '.join('?' * len(_GATE_FIELDS))})",
            [int(v) if isinstance(v, bool) else v for v in values],
        )

    def live_gates(self, name: str | None = None) -> list[dict[str, object]]:
        """Return the live-gate decisions (on model ``name`` when given), oldest first."""
        where, args = ("WHERE name = ?", [name]) if name is not None else ("", [])
        rows = self._con.execute(
            f"SELECT {', '.join(_GATE_FIELDS)} FROM live_gates {where} ORDER BY id", args
        ).fetchall()
        out = []
        for row in rows:
            item = dict(zip(_GATE_FIELDS, row, strict=True))
            item["allowed"], item["overridden"] = bool(item["allowed"]), bool(item["overridden"])
            out.append(item)
        return out

    # -- heartbeats and the supervisor ---------------------------------------------------------

    def beat(self, session: str, pid: int, at: datetime, bars: int) -> None:
        """Record a running loop's heartbeat (wall time ``at``), replacing its last one."""
        self._con.execute(
            "INSERT INTO heartbeats (session, pid, at, bars) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (session) DO UPDATE SET pid = excluded.pid, at = excluded.at, "
            "bars = excluded.bars",
            [session, int(pid), _instant(at), int(bars)],
        )

    def heartbeat(self, session: str) -> Heartbeat | None:
        """Return a session's last committed heartbeat, or None before its first."""
        if self._layout < 2:  # an older database read as it is: the table came with layout 2
            return None
        row = self._con.execute(
            "SELECT session, pid, at, bars FROM heartbeats WHERE session = ?", [session]
        ).fetchone()
        return None if row is None else Heartbeat.model_validate(_times(row, "at"))

    def record_supervisor_event(self, event: SupervisorEvent) -> int:
        """Store what the supervisor did and commit at once; return the event's id.

        The event's own ``id`` is ignored. This commits whatever else this connection wrote.
        """
        cur = self._con.execute(
            f"INSERT INTO supervisor_events ({_columns(_SUPERVISOR_FIELDS)}) "
            f"VALUES ({_marks(len(_SUPERVISOR_FIELDS))})",
            _row(event, _SUPERVISOR_FIELDS),
        )
        self._con.commit()
        return int(cur.lastrowid or 0)

    def supervisor_events(self, session: str | None = None) -> list[SupervisorEvent]:
        """Return what the supervisor did (for one session when given), oldest first."""
        if self._layout < 2:  # an older database read as it is: the table came with layout 2
            return []
        where, args = ("WHERE session = ?", [session]) if session is not None else ("", [])
        rows = self._con.execute(
            f"SELECT * FROM supervisor_events {where} ORDER BY id", args
        ).fetchall()
        return [SupervisorEvent.model_validate(_times(row, "at")) for row in rows]

    # -- flow requests -------------------------------------------------------------------------

    def record_flow_request(self, request: FlowRequest) -> int:
        """Store a request to run a flow and commit at once; return its id (its own is ignored)."""
        cur = self._con.execute(
            f"INSERT INTO flow_requests ({_columns(_FLOW_REQUEST_FIELDS)}) "
            f"VALUES ({_marks(len(_FLOW_REQUEST_FIELDS))})",
            _row(request, _FLOW_REQUEST_FIELDS),
        )
        self._con.commit()
        return int(cur.lastrowid or 0)

    def flow_requests(self) -> list[FlowRequest]:
        """Return the requests to run flows, oldest first."""
        if self._layout < 3:  # an older database read as it is: the table came with layout 3
            return []
        rows = self._con.execute("SELECT * FROM flow_requests ORDER BY id").fetchall()
        return [
            FlowRequest.model_validate(
                {**_times(row, "requested"), "parameters": json.loads(row["parameters"])}
            )
            for row in rows
        ]

    # -- live bars -----------------------------------------------------------------------------

    def record_bars(
        self,
        session: str,
        rows: Iterable[tuple[int, float, float, float, float, float, float | None]],
    ) -> None:
        """Record bars a live session received (ts ns, open, high, low, close, volume, spread);
        a known ts is replaced."""
        self._con.executemany(
            "INSERT OR REPLACE INTO bars "
            "(session, ts_ns, ts, open, high, low, close, volume, spread) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _stamped(session, rows, ("open", "high", "low", "close", "volume", "spread")),
        )

    def bars_of(self, session: str) -> list[tuple[int, float, float, float, float, float, Any]]:
        """Return a session's recorded bars as (ts ns, open, high, low, close, volume, spread)."""
        rows = self._con.execute(
            "SELECT ts_ns, open, high, low, close, volume, spread FROM bars WHERE session = ? "
            "ORDER BY ts_ns",
            [session],
        )
        return [tuple(row) for row in rows]

    # -- a simulated broker's book ---------------------------------------------------------------

    def broker_save_order(self, broker: str, cid: str, body: Mapping[str, object]) -> None:
        """Save a simulated broker's order (JSON), replacing what it saved of it before."""
        self._con.execute(
            "INSERT INTO broker_orders (broker, client_order_id, body) VALUES (?, ?, ?) "
            "ON CONFLICT (broker, client_order_id) DO UPDATE SET body = excluded.body",
            [broker, cid, _json(body)],
        )

    def broker_order(self, broker: str, cid: str) -> dict[str, Any] | None:
        """Return one order of a simulated broker's book by client order id, or None."""
        row = self._con.execute(
            "SELECT body FROM broker_orders WHERE broker = ? AND client_order_id = ?", [broker, cid]
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def broker_orders(self, broker: str) -> list[dict[str, Any]]:
        """Return a simulated broker's orders in the order they were first saved."""
        rows = self._con.execute(
            "SELECT body FROM broker_orders WHERE broker = ? ORDER BY rowid", [broker]
        )
        return [dict(json.loads(row[0])) for row in rows]

    def broker_add_fill(
        self, broker: str, execution_id: str, ts: datetime, body: Mapping[str, object]
    ) -> bool:
        """Save a simulated broker's fill; return False for a known execution id."""
        cur = self._con.execute(
            "INSERT OR IGNORE INTO broker_fills (broker, execution_id, ts, seq, body) "
            "SELECT ?, ?, ?, COALESCE(MAX(seq), 0) + 1, ? FROM broker_fills WHERE broker = ?",
            [broker, execution_id, _instant(ts), _json(body), broker],
        )
        return cur.rowcount == 1

    def broker_fills(self, broker: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """Return a simulated broker's fills in execution order, those at or after ``since``
        when given."""
        if since is None:
            sql, args = "SELECT body FROM broker_fills WHERE broker = ? ORDER BY seq", [broker]
        else:
            sql = "SELECT body FROM broker_fills WHERE broker = ? AND ts >= ? ORDER BY seq"
            args = [broker, _instant(since)]
        return [dict(json.loads(row[0])) for row in self._con.execute(sql, args)]

    def broker_save_state(self, broker: str, body: Mapping[str, object]) -> None:
        """Save a simulated broker's account state (JSON), replacing the last one."""
        self._con.execute(
            "INSERT INTO broker_state (broker, body) VALUES (?, ?) "
            "ON CONFLICT (broker) DO UPDATE SET body = excluded.body",
            [broker, _json(body)],
        )

    def broker_state(self, broker: str) -> dict[str, Any] | None:
        """Return a simulated broker's saved account state, or None."""
        row = self._con.execute(
            "SELECT body FROM broker_state WHERE broker = ?", [broker]
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self, out_dir: Path) -> dict[str, Path]:
        """Write the catalog's views of what is committed as Parquet files under ``out_dir``.

        See :func:`snapshot_state`; writes not yet committed are not in the snapshot.
        """
        return snapshot_state(self.path, out_dir)


def _session(row: sqlite3.Row) -> SessionRecord:
    values = _times(row, "created", "updated")
    values["params"] = json.loads(values["params"])
    values["options"] = json.loads(values["options"])
    return SessionRecord.model_validate(values)


def _intent(row: sqlite3.Row) -> IntentRecord:
    values = _times(row, "ts", "bar_ts")
    values["params"] = json.loads(values["params"])
    return IntentRecord.model_validate(values)


def _control(row: sqlite3.Row) -> ControlRequest:
    return ControlRequest.model_validate(_times(row, "requested", "applied"))


def _stamped(
    session: str, rows: Iterable[Sequence[object]], values: tuple[str, ...]
) -> Iterator[tuple[Any, ...]]:
    """Return rows (ts ns, *values) as (session, ts ns, ts ISO, *values), formatted at once."""
    rows = list(rows)
    if len(rows) < 512:  # a frame costs more than it saves on a few rows
        return iter([(session, int(r[0]), iso_z_ns(int(r[0])), *r[1:]) for r in rows])  # type: ignore[call-overload]
    schema: dict[str, pl.DataType] = {"ts_ns": pl.Int64(), **dict.fromkeys(values, pl.Float64())}
    frame = pl.DataFrame(list(rows), schema=schema, orient="row")
    stamp = iso_z_expr(pl.from_epoch("ts_ns", "ns").dt.replace_time_zone("UTC"))
    return frame.select(pl.lit(session), "ts_ns", stamp.alias("ts"), *values).iter_rows()


def _trade_cell(column: str, value: object) -> object:
    if column in _TRADE_TIMES and value is not None:
        if isinstance(value, int):
            return _instant(utc_from_ns(value))
        if isinstance(value, str):
            return _instant(parse_utc(value, column))
    return _cell(value)


def check_state_db(path: Path) -> str | None:
    """Return what ``PRAGMA quick_check`` finds wrong with a state database, None when it is
    sound (or does not exist yet).

    The check runs on a read-only connection: it never blocks a running loop, and it writes
    nothing, so a damaged file stays as it was for whoever repairs it.
    """
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        try:
            rows = [str(row[0]) for row in con.execute("PRAGMA quick_check")]
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"state database {path} cannot be checked ({exc})"
    if rows == ["ok"]:
        return None
    return f"state database {path} fails its integrity check: {'; '.join(rows[:5])}"


# -- snapshots for the catalog -------------------------------------------------------------------

# Each view: its query and its columns with their kinds. ``time`` columns are stored ISO text and
# ``ns`` columns int ns; both become Datetime("us", "UTC").
_TEXT, _REAL, _INT, _BOOL, _TIME, _NS = "text", "real", "int", "bool", "time", "ns"
_VIEWS: Final[dict[str, tuple[str, tuple[tuple[str, str], ...]]]] = {
    "live_orders": (
        "SELECT o.session, o.client_order_id, o.ts, o.symbol, o.side, o.type, o.units, o.status,"
        " o.ticket, o.filled_units, o.avg_price, o.reason, i.strategy, i.decision, i.bar_ts"
        " FROM orders AS o LEFT JOIN intents AS i"
        " ON i.session = o.session AND i.client_order_id = o.client_order_id"
        " ORDER BY o.session, o.rowid",
        (("session", _TEXT), ("client_order_id", _TEXT), ("ts", _TIME), ("symbol", _TEXT),
         ("side", _TEXT), ("type", _TEXT), ("units", _REAL), ("status", _TEXT),
         ("ticket", _TEXT), ("filled_units", _REAL), ("avg_price", _REAL), ("reason", _TEXT),
         ("strategy", _TEXT), ("decision", _REAL), ("bar_ts", _TIME)),
    ),
    "live_fills": (
        "SELECT session, client_order_id, execution_id, ts, symbol, side, units, lots, price,"
        " fees, slippage, swap, reason, seq FROM fills ORDER BY session, seq",
        (("session", _TEXT), ("client_order_id", _TEXT), ("execution_id", _TEXT),
         ("ts", _TIME), ("symbol", _TEXT), ("side", _TEXT), ("units", _REAL), ("lots", _REAL),
         ("price", _REAL), ("fees", _REAL), ("slippage", _REAL), ("swap", _REAL),
         ("reason", _TEXT), ("seq", _INT)),
    ),
    "live_equity": (
        "",  # unpacked from the equity table's batches: see _equity_frame
        (("session", _TEXT), ("ts", _NS), ("balance", _REAL), ("equity", _REAL),
         ("exposure", _REAL)),
    ),
    "risk_events": (
        "SELECT account, session, ts, kind, from_state, to_state, reason, equity"
        " FROM risk_events ORDER BY ts, id",
        (("account", _TEXT), ("session", _TEXT), ("ts", _TIME), ("kind", _TEXT),
         ("from_state", _TEXT), ("to_state", _TEXT), ("reason", _TEXT), ("equity", _REAL)),
    ),
    "live_trades": (
        'SELECT session, n, entry_ts, exit_ts, direction, units, entry_price, exit_price, pnl,'
        ' "return", costs, exit_reason, bars_held FROM trades ORDER BY session, n',
        (("session", _TEXT), ("n", _INT), ("entry_ts", _TIME), ("exit_ts", _TIME),
         ("direction", _TEXT), ("units", _REAL), ("entry_price", _REAL),
         ("exit_price", _REAL), ("pnl", _REAL), ("return", _REAL), ("costs", _REAL),
         ("exit_reason", _TEXT), ("bars_held", _INT)),
    ),
    "live_sessions": (
        "SELECT session, account, kind, symbol, timeframe, strategy, params, options, created,"
        " status, paused, last_bar_ts, bars, updated, pid FROM sessions ORDER BY created, session",
        (("session", _TEXT), ("account", _TEXT), ("kind", _TEXT), ("symbol", _TEXT),
         ("timeframe", _TEXT), ("strategy", _TEXT), ("params", _TEXT), ("options", _TEXT),
         ("created", _TIME), ("status", _TEXT), ("paused", _BOOL), ("last_bar_ts", _NS),
         ("bars", _INT), ("updated", _TIME), ("pid", _INT)),
    ),
}  # fmt: skip
#: The views :func:`snapshot_state` writes, one Parquet file each (``<view>.parquet``).
SNAPSHOT_VIEWS: Final = tuple(_VIEWS)
_STAMP: Final = pl.Datetime("us", "UTC")
_READ_AS: Final[dict[str, pl.DataType]] = {
    _TEXT: pl.String(), _REAL: pl.Float64(), _INT: pl.Int64(), _BOOL: pl.Int64(),
    _TIME: pl.String(), _NS: pl.Int64(),
}  # fmt: skip


def _equity_frame(con: sqlite3.Connection) -> pl.DataFrame:
    parts: dict[str, list[npt.NDArray[np.void]]] = {}
    for name, blob in con.execute("SELECT session, points FROM equity ORDER BY session, id"):
        parts.setdefault(str(name), []).append(np.frombuffer(blob, dtype=EQUITY_POINT))
    frames = [
        pl.DataFrame(
            {
                "session": pl.Series([name] * len(points), dtype=pl.String),
                "ts": pl.Series(points["ts"] // 1000).cast(pl.Datetime("us")),
                "balance": points["balance"], "equity": points["equity"],
                "exposure": points["exposure"],
            }
        ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
        for name, points in ((n, _latest_points(c)) for n, c in sorted(parts.items()))
    ]  # fmt: skip
    if not frames:
        return pl.DataFrame(
            schema={
                "session": pl.String(),
                "ts": pl.Datetime("us", "UTC"),
                "balance": pl.Float64(),
                "equity": pl.Float64(),
                "exposure": pl.Float64(),
            }
        )
    return pl.concat(frames)


def _view_frame(con: sqlite3.Connection, view: str) -> pl.DataFrame:
    if view == "live_equity":
        return _equity_frame(con)
    sql, columns = _VIEWS[view]
    rows = con.execute(sql).fetchall()
    frame = pl.DataFrame(
        rows, schema={name: _READ_AS[kind] for name, kind in columns}, orient="row"
    )
    converted = []
    for name, kind in columns:
        if kind == _TIME:
            converted.append(pl.col(name).str.to_datetime(time_unit="us", time_zone="UTC"))
        elif kind == _NS:
            converted.append(
                (pl.col(name) // 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            )
        elif kind == _BOOL:
            converted.append(pl.col(name).cast(pl.Boolean))
    return frame.with_columns(converted) if converted else frame


def snapshot_state(path: Path, out_dir: Path) -> dict[str, Path]:
    """Write the state database's views as Parquet files, ``<out_dir>/<view>.parquet``.

    The views are ``live_orders`` (with the intent's strategy, decision and bar), ``live_fills``,
    ``live_equity``, ``risk_events``, ``live_trades`` and ``live_sessions``
    (:data:`SNAPSHOT_VIEWS`); times are ``Datetime("us", "UTC")`` columns and an empty table
    still gets a file with its columns. The database is read from one read-only transaction, so
    the files agree with one another and a running loop is never blocked; each file is replaced
    atomically, so a reader sees the old file or the new one.

    Returns
    -------
    dict[str, Path]
        Each view's file.

    Raises
    ------
    SolodeskError
        If the database cannot be read.
    """
    if not path.is_file():
        raise UsageError(f"no state database at {path}: a paper or live session creates it")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        try:
            con.execute("BEGIN")
            frames = {view: _view_frame(con, view) for view in _VIEWS}
            con.execute("COMMIT")
        finally:
            con.close()
    except sqlite3.Error as exc:
        msg = f"cannot read the state database {path} ({exc}); check it with `sqlite3 {path}`"
        raise SolodeskError(msg) from None
    written = {}
    for view, frame in frames.items():
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        target = out_dir / f"{view}.parquet"
        write_atomic(target, buffer.getvalue())
        written[view] = target
    return written

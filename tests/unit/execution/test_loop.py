"""The trading loop on synthetic bars: equal to the vectorized engine, equal with and without its
quiet-bar fast path, equal across restarts, and watching a live feed go stale.

The bars are a seeded random walk on EURUSD H1 with the FX weekend left out (so swap counts its
triple nights) and a spread column. The strategy is :class:`Scripted`: its events (or targets)
are drawn from a hash of each bar's open time, so they keep the prefix property every strategy
must have, fire often (entries and exits of both sides, sometimes on the same bar) and do not
depend on prices: a difference between two runs is the loop's, never the strategy's.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest

from core.instruments import fx_pair
from core.ports import BarBatch, Notice, NoticeKind, NullNotifier
from core.settings import RiskSettings
from core.timeframes import Timeframe
from core.types import Fill as FillMessage
from core.types import Instrument, SeriesKey, Side, VolumeKind
from execution.clock import SimClock
from execution.feeds import QueueFeed, ReplayFeed, slice_batch
from execution.loop import Runtime, RunTotals, ledger_hash
from execution.risk import RiskEngine, RiskState
from feature_store.series import SeriesData
from feature_store.state import ControlAction, ControlRequest, SessionRecord, StateDB
from feature_store.store import SeriesInfo
from models.strategies.base import ParamSpec, Signals
from models.strategies.registry import make_strategy
from pipelines.backtest.config import BacktestConfig, Direction, Fill
from pipelines.backtest.engine import BacktestResult, run_backtest
from services.runtime import (
    SessionInputs,
    SimulatorOptions,
    build_runtime,
    event_backtest,
    series_batch,
)

EURUSD = fx_pair("EUR", "USD")
USDJPY = fx_pair("USD", "JPY")
START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
BARS_PER_YEAR = 6240.0
CASH = 100_000.0
_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
_WORD = np.uint64(2**64 - 1)
LEVELS = np.array([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0])
LedgerLine = tuple[str, str, str, float, float, float]


# -- synthetic bars and a scripted strategy --------------------------------------------------


def _fx_hours(count: int, start: datetime = START) -> list[datetime]:
    """Return ``count`` H1 open times of the FX week (Sunday 22:00 to Friday 21:00 UTC)."""
    out: list[datetime] = []
    moment = start
    while len(out) < count:
        day, hour = moment.weekday(), moment.hour
        closed = day == 5 or (day == 4 and hour >= 21) or (day == 6 and hour < 22)
        if not closed:
            out.append(moment)
        moment += timedelta(hours=1)
    return out


def make_bars(
    count: int, *, seed: int = 1, price: float = 1.1, step: float = 0.002
) -> pl.DataFrame:
    """Return ``count`` H1 bars of a seeded random walk around ``price`` with a spread column."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0, step, count)))
    open_ = np.r_[price, close[:-1]] * np.exp(rng.normal(0.0, step / 6, count))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.0, step, count))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.0, step, count))
    return pl.DataFrame(
        {
            "ts": _fx_hours(count),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": np.ones(count),
            "spread": price * rng.uniform(0.00005, 0.0002, count),
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))


def make_series(
    bars: pl.DataFrame, instrument: Instrument = EURUSD, side: Side = Side.BID
) -> SeriesData:
    """Return bars as a loaded series (JPY-quoted pairs convert at 1 / close, as the store does)."""
    key = SeriesKey(symbol=instrument.symbol, timeframe=Timeframe.H1, side=side)
    info = SeriesInfo(key=key, volume_kind=VolumeKind.NONE, rows=bars.height, has_spread=True)
    rate: np.ndarray | float = 1.0
    if instrument.base == "USD":
        rate = 1.0 / bars["close"].to_numpy()
    return SeriesData(info, bars, instrument, rate, BARS_PER_YEAR, "synthetic")


def _uniform(ts_seconds: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Return a number in [0, 1) per bar from its open time alone (splitmix-style hashing)."""
    offset = np.uint64(((seed * 1_000_003 + salt) * _MIX[1]) & int(_WORD))
    h = (ts_seconds.astype(np.uint64) // np.uint64(60)) * np.uint64(_MIX[0]) + offset
    h ^= h >> np.uint64(31)
    h *= np.uint64(_MIX[2])
    h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) / 2.0**53


class Scripted:
    """Signals drawn from each bar's open time: events with probability ``rate`` each, or a
    target (one of :data:`LEVELS`) on ``2 × rate`` of the bars and NaN elsewhere."""

    name: ClassVar[str] = "scripted"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(name="seed", kind="int", default=0, low=0, high=1_000_000),
        ParamSpec(name="kind", kind="choice", default="events", choices=("events", "target")),
        ParamSpec(name="rate", kind="float", default=0.08, low=0.0, high=1.0),
    )
    needs_features: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, seed: int = 0, kind: str = "events", rate: float = 0.08) -> None:
        self.seed, self.kind, self.rate = seed, kind, rate

    def signals(self, bars: pl.DataFrame, features: pl.DataFrame | None = None) -> Signals:
        """Return the scripted signals of ``bars``."""
        ts = bars["ts"].dt.epoch("s").to_numpy()
        u = [_uniform(ts, self.seed, salt) for salt in range(6)]
        if self.kind == "target":
            level = LEVELS[(u[5] * len(LEVELS)).astype(np.int64)]
            return Signals(target=np.where(u[4] < 2 * self.rate, level, np.nan))
        rate = self.rate
        return Signals(
            entries=u[0] < rate, exits=u[1] < rate, short_entries=u[2] < rate,
            short_exits=u[3] < rate,
        )  # fmt: skip


def _config(
    *, fill: str = "close", direction: str = "both", sizing: str = "all-in", stops: str = "none",
    spread: str | float = 1.0,
) -> BacktestConfig:  # fmt: skip
    levels: dict[str, float] = {
        "none": {},
        "stop+take": {"stop_loss": 20.0, "take_profit": 30.0},
        "trailing": {"trailing_stop": 25.0},
    }[stops]
    return BacktestConfig.from_options(
        spread=spread, fees=0.00002, commission=3.5, slippage=0.2, slippage_vol=0.05,
        swap_long=-0.5, swap_short=0.2, fill=Fill(fill), direction=Direction(direction),
        sizing=sizing, **levels,
    )  # fmt: skip


def _vectorized(data: SeriesData, params: dict[str, Any], config: BacktestConfig) -> BacktestResult:
    signals = make_strategy(Scripted, params).signals(data.bars)
    return run_backtest(
        data.bars, signals, data.instrument, config, side=data.key.side.value,
        bars_per_year=data.bars_per_year, to_account=data.to_account,
    )  # fmt: skip


def assert_same_run(event: BacktestResult, vector: BacktestResult, cash: float = CASH) -> None:
    """Assert two engine results agree: equity within 1e-9 relative at every bar, the same
    positions, and the same trades (times, sides, reasons, bars held exactly; sizes and prices
    to 1e-9 relative, as Kelly sizing compounds rounding over the trades; money to 1e-9 of the
    starting cash)."""
    np.testing.assert_array_equal(event.ts, vector.ts)
    np.testing.assert_allclose(event.equity, vector.equity, rtol=1e-9, atol=0)
    np.testing.assert_allclose(event.position, vector.position, rtol=1e-9, atol=1e-6)
    got, want = event.trades, vector.trades
    assert got.height == want.height
    assert got.schema == want.schema
    for name in ("entry_ts", "exit_ts", "direction", "exit_reason", "bars_held"):
        assert got[name].to_list() == want[name].to_list(), name
    for name in ("units", "entry_price", "exit_price"):
        np.testing.assert_allclose(got[name].to_numpy(), want[name].to_numpy(), rtol=1e-9)
    for name in ("pnl", "costs"):
        np.testing.assert_allclose(got[name].to_numpy(), want[name].to_numpy(), atol=1e-9 * cash)
    np.testing.assert_allclose(got["return"].to_numpy(), want["return"].to_numpy(), atol=1e-12)


# -- the event engine against the vectorized engine ---------------------------------------------

FILLS = ("close", "next_open")
DIRECTIONS = ("both", "long", "short")
SIZINGS = ("all-in", "lots:1", "fraction:2", "vol-target:0.1", "kelly:0.5")
STOPS = ("none", "stop+take", "trailing")
PARITY_BARS = make_bars(400, seed=11)


@pytest.mark.parametrize(
    ("fill", "direction", "sizing", "stops"),
    list(itertools.product(FILLS, DIRECTIONS, SIZINGS, STOPS)),
)
def test_event_engine_events_equals_vectorized_engine(
    fill: str, direction: str, sizing: str, stops: str
) -> None:
    # Arrange
    data = make_series(PARITY_BARS)
    config = _config(fill=fill, direction=direction, sizing=sizing, stops=stops)
    params = {"seed": 3, "kind": "events"}

    # Act
    event = event_backtest(data, Scripted, params, config, None)
    vector = _vectorized(data, params, config)

    # Assert
    assert vector.trades.height >= 5  # enough trades to tell the engines apart
    assert_same_run(event, vector)


@pytest.mark.parametrize(
    ("fill", "direction", "sizing"), list(itertools.product(FILLS, DIRECTIONS, SIZINGS))
)
def test_event_engine_targets_equals_vectorized_engine(
    fill: str, direction: str, sizing: str
) -> None:
    # Arrange: the stops cycle through the cases
    index = SIZINGS.index(sizing) + DIRECTIONS.index(direction)
    data = make_series(PARITY_BARS)
    config = _config(fill=fill, direction=direction, sizing=sizing, stops=STOPS[index % 3])
    params = {"seed": 5, "kind": "target"}

    # Act
    event = event_backtest(data, Scripted, params, config, None)
    vector = _vectorized(data, params, config)

    # Assert
    assert vector.trades.height >= 5
    assert_same_run(event, vector)


@pytest.mark.parametrize(
    ("instrument", "side", "spread"),
    [(EURUSD, Side.ASK, 1.0), (EURUSD, Side.MID, "data"), (USDJPY, Side.BID, 1.5)],
    ids=["ask-side", "mid-side-data-spread", "converted-quote"],
)
def test_event_engine_price_sides_and_conversion_equals_vectorized_engine(
    instrument: Instrument, side: Side, spread: str | float
) -> None:
    # Arrange
    price = 150.0 if instrument.quote == "JPY" else 1.1
    data = make_series(make_bars(400, seed=12, price=price), instrument, side)
    config = _config(sizing="fraction:1", stops="trailing", spread=spread)
    params = {"seed": 4, "kind": "events"}

    # Act
    event = event_backtest(data, Scripted, params, config, None)
    vector = _vectorized(data, params, config)

    # Assert
    assert vector.trades.height >= 5
    assert_same_run(event, vector)


# -- runs of the loop on a state database ---------------------------------------------------


class _BarByBar:
    """A broker without the quiet-bar fast path: every other attribute is the wrapped one's."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        if name in ("preview_quiet", "apply_quiet"):
            raise AttributeError(name)
        return getattr(self._broker, name)


class InjectedCrashError(Exception):
    """A crash injected into a run."""


class _CrashingBroker:
    """A broker that raises :class:`InjectedCrashError` at the ``at``-th call of ``method``
    (``before`` the call reaches the broker, or after it returned)."""

    def __init__(self, broker: Any, method: str, at: int, *, before: bool = True) -> None:
        self._broker, self._method, self._at, self._before = broker, method, at, before
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._broker, name)
        if name != self._method:
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self._at and self._before:
                raise InjectedCrashError(f"{name} call {self.calls}")
            result = found(*args, **kwargs)
            if self.calls == self._at:
                raise InjectedCrashError(f"after {name} call {self.calls}")
            return result

        return call


class _CrashingFeed:
    """A feed that raises :class:`InjectedCrashError` when asked for more after ``after`` bars."""

    def __init__(self, feed: Any, after: int) -> None:
        self.feed, self.after, self.symbol = feed, after, feed.symbol
        self.handed = 0

    def poll(self, timeout: float) -> BarBatch | None:
        if self.handed >= self.after:
            raise InjectedCrashError(f"feed after {self.handed} bars")
        batch = self.feed.poll(timeout)
        self.handed += 0 if batch is None else len(batch)
        return batch

    def last_data(self) -> datetime | None:
        return self.feed.last_data()


@dataclass(frozen=True)
class Left:
    """What a session left on its state database (without its name)."""

    totals: RunTotals | None
    fills: list[dict[str, Any]]
    intents: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    trades: list[dict[str, Any]]
    equity: list[tuple[str, float, float, float]]
    risk: dict[str, Any]


def _left(db: StateDB, session: str, account: str, totals: RunTotals | None) -> Left:
    def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k != "session"} for row in rows]

    risk = {k: v for k, v in (db.load_risk(account) or {}).items() if k != "account"}
    return Left(
        totals, strip([f.model_dump() for f in db.fills(session)]),
        strip([i.model_dump() for i in db.intents(session)]),
        [o.model_dump() for o in db.orders(session)], db.trades(session), db.equity(session), risk,
    )  # fmt: skip


RESTART_LIMITS = RiskSettings(cooldown_after_losses=2, cooldown_bars=3)
SIMULATOR = SimulatorOptions(jitter_ms=20.0, reject_probability=0.05, leverage=50.0)


@dataclass
class Desk:
    """A state database holding sessions of one series, strategy and configuration."""

    path: Path
    data: SeriesData
    params: dict[str, Any]
    config: BacktestConfig
    mode: str = "paper"
    limits: RiskSettings = RESTART_LIMITS

    def runtime(
        self, db: StateDB, session: str, *, tune: dict[str, Any] | None = None,
        wrap: Callable[[Any], Any] | None = None, notifier: Any = None, collect: bool = False,
        speed: float | None = None,
    ) -> Runtime:  # fmt: skip
        """Return the loop of ``session`` (a new one, or where its last commit left it)."""
        account = f"{self.mode}:{session}"
        if db.session(session) is None:
            db.create_session(
                SessionRecord(
                    session=session, account=account, kind="paper", symbol=self.data.key.symbol,
                    timeframe="H1", strategy=Scripted.name, created=START,
                )
            )  # fmt: skip
            db.commit()
        saved = db.load_risk(account)
        risk = (
            RiskEngine.fresh(self.limits, account)
            if saved is None
            else RiskEngine(self.limits, RiskState.from_json(saved))
        )
        inputs = SessionInputs(
            self.data, series_batch(self.data), make_strategy(Scripted, self.params), Scripted,
            None,
        )  # fmt: skip
        runtime = build_runtime(
            db=db, session=session, account=account, mode=self.mode,  # type: ignore[arg-type]
            inputs=inputs, config=self.config,
            simulator=SIMULATOR if self.mode == "paper" else None, risk=risk,
            notifier=notifier or NullNotifier(), clock=SimClock(speed), seed=7, collect=collect,
        )  # fmt: skip
        if tune:  # e.g. commit more often, so that a crash resumes mid-run
            runtime.config = runtime.config.model_copy(update=tune)
        if wrap is not None:
            runtime.broker = wrap(runtime.broker)
        return runtime

    def run(
        self, session: str, *, batch: int = 4096, crash_after: int | None = None,
        tune: dict[str, Any] | None = None, wrap: Callable[[Any], Any] | None = None,
        feed: Callable[[ReplayFeed, Runtime], Any] | None = None, collect: bool = False,
    ) -> tuple[Left, Runtime]:  # fmt: skip
        """Run (or resume) a session as ``solodesk paper`` does; return what it left.

        An :class:`InjectedCrashError` leaves the database as a killed process would: what was
        not committed is lost (the connection closes without committing). ``tune`` changes the
        loop's configuration, ``wrap`` wraps its broker and ``feed`` its feed.
        """
        db = StateDB(self.path)
        try:
            runtime = self.runtime(db, session, tune=tune, wrap=wrap, collect=collect)
            bars = series_batch(self.data)
            start = runtime.resume_index(bars)
            runtime.warm_up(slice_batch(bars, 0, start))
            replay = ReplayFeed(self.data.key.symbol, bars, start=start, batch=batch)
            source: Any = replay if feed is None else feed(replay, runtime)
            if crash_after is not None:
                source = _CrashingFeed(source, crash_after)
            totals = runtime.run(source)
            return _left(db, session, runtime.config.account, totals), runtime
        finally:
            db.close()

    def committed_bars(self, session: str) -> int:
        """Return how many bars the last commit of a session holds (its loop checkpoint)."""
        with StateDB(self.path) as db:
            saved = db.broker_state(f"loop:{session}")
        return -1 if saved is None else int(saved["bars"])


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    """Paper sessions of the scripted events with stops, rejects, jitter and a risk cooldown."""
    data = make_series(make_bars(600, seed=21))
    config = _config(sizing="fraction:1.5", stops="stop+take")
    return Desk(tmp_path / "state.db", data, {"seed": 9, "kind": "events"}, config)


def _assert_same_session(got: Left, want: Left) -> None:
    assert got.fills == want.fills
    assert got.intents == want.intents
    assert got.orders == want.orders
    assert got.trades == want.trades
    assert got.equity == want.equity
    assert got.risk == want.risk


# -- the quiet-bar fast path ------------------------------------------------------------------


class _Counting:
    """A broker that counts the bars it is shown one at a time (its ``on_market`` calls)."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker
        self.market_calls = 0

    def __getattr__(self, name: str) -> Any:
        if name == "on_market":
            self.market_calls += 1
        return getattr(self._broker, name)


@pytest.mark.parametrize("mode", ["backtest", "paper"])
@pytest.mark.parametrize("stops", STOPS)
def test_loop_quiet_fast_path_equals_bar_by_bar(tmp_path: Path, mode: str, stops: str) -> None:
    # Arrange: few signals, so that most bars are quiet
    data = make_series(make_bars(600, seed=31))
    config = _config(sizing="fraction:1", stops=stops)
    fast = Desk(tmp_path / "fast.db", data, {"seed": 2, "rate": 0.03}, config, mode)
    slow = Desk(tmp_path / "slow.db", data, {"seed": 2, "rate": 0.03}, config, mode)
    counted: list[_Counting] = []

    def counting(broker: Any) -> Any:
        counted.append(_Counting(broker))
        return counted[-1]

    # Act
    got, fast_runtime = fast.run("s", collect=True, wrap=counting)
    want, slow_runtime = slow.run("s", collect=True, wrap=lambda b: counting(_BarByBar(b)))

    # Assert: the fast path was taken, and changed nothing
    assert counted[1].market_calls == 2 * 600
    assert counted[0].market_calls < 600  # fewer than half the bars one at a time
    assert want.totals is not None and got.totals is not None
    assert want.totals.fills >= 10
    assert got.totals.ledger_hash == want.totals.ledger_hash
    assert got.totals.final_equity == want.totals.final_equity
    _assert_same_session(got, want)
    fast_bars, slow_bars = fast_runtime.collected, slow_runtime.collected
    assert fast_bars is not None and slow_bars is not None
    assert fast_bars.ts == slow_bars.ts
    assert fast_bars.equity == slow_bars.equity
    assert fast_bars.position == slow_bars.position
    np.testing.assert_allclose(fast_bars.exposure, slow_bars.exposure, rtol=1e-12, atol=1e-15)


# -- the ledger hash ---------------------------------------------------------------------------


def test_ledger_hash_same_fills_other_session_name_same_hash(desk: Desk) -> None:
    # Arrange, Act
    first, _ = desk.run("alpha")
    second, _ = desk.run("a-rather-different-name")

    # Assert
    assert first.totals is not None and second.totals is not None
    assert first.totals.fills >= 10
    assert first.totals.ledger_hash == second.totals.ledger_hash


LEDGER: list[LedgerLine] = [
    ("2024-01-02T10:00:00Z", "EURUSD", "buy", 1000.0, 1.1, 0.02),
    ("2024-01-02T11:00:00Z", "EURUSD", "sell", 1000.0, 1.1004, 0.02),
]
CHANGED: list[LedgerLine] = [
    ("2024-01-02T11:00:01Z", "EURUSD", "sell", 1000.0, 1.1004, 0.02),
    ("2024-01-02T11:00:00Z", "GBPUSD", "sell", 1000.0, 1.1004, 0.02),
    ("2024-01-02T11:00:00Z", "EURUSD", "buy", 1000.0, 1.1004, 0.02),
    ("2024-01-02T11:00:00Z", "EURUSD", "sell", 1000.0000000001, 1.1004, 0.02),
    ("2024-01-02T11:00:00Z", "EURUSD", "sell", 1000.0, 1.1004000000000003, 0.02),
    ("2024-01-02T11:00:00Z", "EURUSD", "sell", 1000.0, 1.1004, 0.020000000000000004),
]


@pytest.mark.parametrize("changed", CHANGED, ids=["ts", "symbol", "side", "units", "price", "fees"])
def test_ledger_hash_one_field_of_a_fill_changed_hash_changes(changed: LedgerLine) -> None:
    # Arrange
    before = ledger_hash(LEDGER)

    # Act
    after = ledger_hash([LEDGER[0], changed])

    # Assert
    assert after != before


def test_ledger_hash_fills_in_other_order_hash_changes() -> None:
    # Arrange, Act, Assert
    assert ledger_hash(LEDGER[::-1]) != ledger_hash(LEDGER)
    assert ledger_hash(list(LEDGER)) == ledger_hash(LEDGER)


# -- restarts ----------------------------------------------------------------------------------

CRASHES: dict[str, dict[str, Any]] = {
    "feed-after-137-bars": {"crash_after": 137, "batch": 7},
    "feed-after-451-bars": {"crash_after": 451, "batch": 11},
    "before-submit-30": {"wrap": ("submit", 30, True)},
    "after-submit-61": {"wrap": ("submit", 61, False)},
    "mid-bar-at-close-300": {"wrap": ("on_market", 300, True)},
    "after-fills-sync-200": {"wrap": ("fills_since", 200, False)},
    "at-modify-12": {"wrap": ("modify", 12, True)},
}


def _crash_options(crash: dict[str, Any]) -> dict[str, Any]:
    options = dict(crash)
    if "wrap" in options:
        method, at, before = options.pop("wrap")
        options["wrap"] = lambda broker: _CrashingBroker(broker, method, at, before=before)
    return options


@pytest.mark.parametrize("crash", list(CRASHES))
def test_loop_crash_mid_run_restarted_equals_uninterrupted(desk: Desk, crash: str) -> None:
    # Arrange
    want, _ = desk.run("whole")
    with pytest.raises(InjectedCrashError):
        desk.run("crashed", tune={"commit_bars": 40}, **_crash_options(CRASHES[crash]))
    committed = desk.committed_bars("crashed")

    # Act
    got, _ = desk.run("crashed", tune={"commit_bars": 40})

    # Assert
    assert want.totals is not None and got.totals is not None
    assert want.totals.fills >= 20
    assert 0 < committed < 600  # the crash came after a commit: the restart resumed mid-run
    assert got.totals.bars_this_run == 600 - committed
    assert got.totals.ledger_hash == want.totals.ledger_hash
    assert got.totals.final_equity == want.totals.final_equity
    assert (got.totals.bars, got.totals.orders, got.totals.trades) == (
        want.totals.bars, want.totals.orders, want.totals.trades,
    )  # fmt: skip
    _assert_same_session(got, want)


def test_loop_crashed_twice_restarted_equals_uninterrupted(desk: Desk) -> None:
    # Arrange
    want, _ = desk.run("whole")
    for crash in ("feed-after-137-bars", "mid-bar-at-close-300"):
        with pytest.raises(InjectedCrashError):
            desk.run("crashed", tune={"commit_bars": 25}, **_crash_options(CRASHES[crash]))

    # Act
    got, _ = desk.run("crashed", tune={"commit_bars": 25})

    # Assert
    assert want.totals is not None and got.totals is not None
    assert got.totals.ledger_hash == want.totals.ledger_hash
    _assert_same_session(got, want)


# -- a live feed going stale ------------------------------------------------------------------


class _Stamped(NullNotifier):
    """Keeps each notice with the wall time it was given (monotonic)."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def notify(self, notice: Notice) -> None:
        super().notify(notice)
        self.at.append(time.monotonic())


def _bars_one_by_one(bars: BarBatch, start: int, stop: int) -> Iterator[BarBatch]:
    for i in range(start, stop):
        yield slice_batch(bars, i, i + 1)


def test_live_feed_quiet_past_stale_limit_notifies_once_and_fresh_bars_trade(
    tmp_path: Path,
) -> None:
    # Arrange: bars every 10 ms, then 0.5 s of silence, then bars again; stale after 0.2 s
    bar_seconds, intervals = 0.1, 2.0
    data = make_series(make_bars(80, seed=41))
    desk = Desk(tmp_path / "live.db", data, {"seed": 6, "rate": 0.15}, _config(), "paper")
    notifier = _Stamped()
    db = StateDB(desk.path)
    runtime = desk.runtime(db, "live", notifier=notifier)
    runtime.config = runtime.config.model_copy(
        update={"mode": "live", "bar_seconds": bar_seconds, "stale_intervals": intervals,
                "control_seconds": 0.01}
    )  # fmt: skip
    feed = QueueFeed(data.key.symbol)
    bars = series_batch(data)
    seen: dict[str, Any] = {}

    def push() -> None:
        for batch in _bars_one_by_one(bars, 0, 40):
            time.sleep(0.01)
            seen["quiet_from"] = time.monotonic()  # the loop takes the bar after this
            feed.push(batch)
        time.sleep(0.4)
        with StateDB(desk.path) as reader:  # what another process sees during the silence
            seen["committed_stale"] = (reader.broker_state("loop:live") or {}).get("stale")
        time.sleep(0.1)
        for batch in _bars_one_by_one(bars, 40, 80):
            feed.push(batch)
            time.sleep(0.01)
        feed.push(None)

    pusher = threading.Thread(target=push, daemon=True)

    # Act
    pusher.start()
    totals = runtime.run(feed, poll_timeout=0.01)
    pusher.join(5)
    intents = db.intents("live")
    db.close()

    # Assert: one notice, after the limit and well before the fresh bars, and the flag that
    # blocks new exposure committed for everyone to see
    limit = bar_seconds * intervals
    stale = [k for k, n in enumerate(notifier.sent) if n.kind is NoticeKind.STALE_FEED]
    assert len(stale) == 1
    waited = notifier.at[stale[0]] - seen["quiet_from"]
    assert limit <= waited < limit + 0.2
    assert notifier.sent[stale[0]].key == "stale"
    assert seen["committed_stale"] is True
    # Assert: trading before the silence, and again on the fresh bars (the block is lifted)
    split = datetime.fromtimestamp(int(bars.ts[40]) / 1e9, UTC)
    before = [i for i in intents if i.bar_ts < split]
    after = [i for i in intents if i.bar_ts >= split]
    assert any(i.risk == "allowed" for i in before)
    assert any(i.risk == "allowed" for i in after)
    assert all(i.risk != "stale feed" for i in after)
    assert totals.bars == 80 and not runtime.cp.stale


def test_live_feed_bars_within_stale_limit_no_notice(tmp_path: Path) -> None:
    # Arrange: bars every 30 ms, the limit 0.3 s
    data = make_series(make_bars(30, seed=42))
    desk = Desk(tmp_path / "live.db", data, {"seed": 6}, _config(), "paper")
    notifier = _Stamped()
    db = StateDB(desk.path)
    runtime = desk.runtime(db, "live", notifier=notifier)
    runtime.config = runtime.config.model_copy(
        update={"mode": "live", "bar_seconds": 0.1, "stale_intervals": 3.0}
    )
    feed = QueueFeed(data.key.symbol)
    bars = series_batch(data)

    def push() -> None:
        for batch in _bars_one_by_one(bars, 0, 30):
            feed.push(batch)
            time.sleep(0.03)
        feed.push(None)

    pusher = threading.Thread(target=push, daemon=True)

    # Act
    pusher.start()
    totals = runtime.run(feed, poll_timeout=0.01)
    pusher.join(5)
    db.close()

    # Assert
    assert totals.bars == 30
    assert not [n for n in notifier.sent if n.kind is NoticeKind.STALE_FEED]


# -- controls mid-run, and the broker's fills --------------------------------------------------


class _ControlledFeed:
    """A replay that stores a control request for the loop at the first batch after ``after``
    bars at which the loop holds a position and no order is on its way (through the loop's own
    connection: a second writer would wait for the loop's lock)."""

    def __init__(
        self, feed: ReplayFeed, runtime: Runtime, action: ControlAction, after: int
    ) -> None:
        self.feed, self.runtime, self.action, self.after = feed, runtime, action, after
        self.symbol = feed.symbol
        self.handed = 0
        self.sent = False

    def poll(self, timeout: float) -> BarBatch | None:
        held = self.runtime.cp.units != 0.0 and not self.runtime.broker.open_orders()
        if not self.sent and self.handed >= self.after and held:
            self.sent = True
            cfg = self.runtime.config
            request = ControlRequest(
                session=cfg.session, account=cfg.account, action=self.action,
                who="test", requested=START,
            )  # fmt: skip
            self.runtime.db.request_control(request)
        batch = self.feed.poll(timeout)
        self.handed += 0 if batch is None else len(batch)
        return batch

    def last_data(self) -> datetime | None:
        return self.feed.last_data()


def _broker_positions(db: StateDB, account: str, after: datetime) -> list[float]:
    """Return the broker's position before ``after`` and after each of its later fills."""
    fills = [FillMessage.model_validate(f) for f in db.broker_fills(account)]
    held = sum(f.signed_units for f in fills if f.ts <= after)
    out = [held]
    for fill in (f for f in fills if f.ts > after):
        held += fill.signed_units
        out.append(held)
    return out


@pytest.mark.parametrize("action", ["halt", "pause"])
@pytest.mark.parametrize("kind", ["events", "target"], ids=["exit", "reverse"])
def test_loop_halted_or_paused_holding_a_position_no_fill_adds_exposure(
    tmp_path: Path, action: ControlAction, kind: str
) -> None:
    # Arrange: one lot a trade; the next decision after the control is an exit (events) or a
    # reverse to half a position the other way (target)
    data = make_series(make_bars(600, seed=21))
    params = {"seed": 9, "rate": 0.1, "kind": kind}
    desk = Desk(tmp_path / "s.db", data, params, _config(sizing="lots:1"))

    def controlled(feed: ReplayFeed, runtime: Runtime) -> _ControlledFeed:
        return _ControlledFeed(feed, runtime, action, after=200)

    # Act
    desk.run("s", batch=5, tune={"control_seconds": 0.0}, feed=controlled)

    # Assert
    with StateDB(desk.path) as db:
        (control,) = db.controls("s")
        assert control.applied is not None
        positions = _broker_positions(db, "paper:s", control.applied)
        intents = [i for i in db.intents("s") if i.ts > control.applied]
    assert positions[0] != 0.0  # a position was open when the control came
    why = "paused" if action == "pause" else "account halted"
    assert [i for i in intents if i.risk.startswith(why)]  # and later decisions were refused
    exposure = [abs(p) for p in positions]
    assert exposure == sorted(exposure, reverse=True), "a fill added exposure"


def test_loop_paper_fills_with_latency_and_stops_all_recorded(desk: Desk) -> None:
    # Arrange, Act
    left, runtime = desk.run("s")

    # Assert: the session's fills are the broker's, and so is its position
    with StateDB(desk.path) as db:
        broker = [f["execution_id"] for f in db.broker_fills("paper:s")]
    assert [f["execution_id"] for f in left.fills] == broker
    assert runtime.cp.units == sum(p.units for p in runtime.broker.positions())


# -- a paced replay and another process's controls --------------------------------------------


class _Paced:
    """A paced replay of a desk's session in a thread (its connection made there), as
    ``solodesk paper --speed`` runs it, one bar a poll."""

    def __init__(self, desk: Desk, speed: float, tune: dict[str, Any]) -> None:
        self.desk, self.speed, self.tune = desk, speed, tune
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        db = StateDB(self.desk.path)
        try:
            runtime = self.desk.runtime(db, "paced", tune=self.tune, speed=self.speed)
            feed = ReplayFeed(self.desk.data.key.symbol, series_batch(self.desk.data), batch=1)
            self.started.set()
            runtime.run(feed)
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            db.close()

    def request(self, action: ControlAction) -> tuple[int, float]:
        """Store a control from another connection; return its id and how long that took."""
        started = time.monotonic()
        with StateDB(self.desk.path) as db:
            ident = db.request_control(
                ControlRequest(session="paced", action=action, who="test", requested=START)
            )
        return ident, time.monotonic() - started

    def applied_after(self, ident: int, timeout: float = 10.0) -> float:
        """Return how long after now the loop acknowledges the control ``ident``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with StateDB(self.desk.path) as db:
                if any(c.id == ident and c.applied for c in db.controls("paced")):
                    return time.monotonic() - started
            time.sleep(0.005)
        return math.inf

    def stop(self) -> None:
        """Ask the loop to stop and wait for it."""
        self.request("stop")
        self.join()

    def join(self) -> None:
        """Wait for the replay to end."""
        self.thread.join(30)
        assert not self.thread.is_alive() and self.error is None, self.error


def _gapped_bars() -> pl.DataFrame:
    """Return 10 H1 bars, a gap of 100 hours, then 40 more."""
    bars = make_bars(50, seed=51)
    ts = [START + timedelta(hours=k if k < 10 else k + 100) for k in range(50)]
    return bars.with_columns(pl.Series("ts", ts).dt.cast_time_unit("us"))


def test_paced_replay_control_during_a_gap_applied_within_control_interval(
    tmp_path: Path,
) -> None:
    # Arrange: bars of 20 ms, the gap 2 s; a commit after every bar keeps the write lock free
    data = make_series(_gapped_bars())
    desk = Desk(tmp_path / "paced.db", data, {"seed": 1, "rate": 0.0}, _config())
    paced = _Paced(desk, speed=3600 / 0.02, tune={"commit_bars": 1, "control_seconds": 0.2})
    paced.thread.start()
    paced.started.wait(10)
    time.sleep(0.2 + 0.3)  # the ten bars, then well inside the gap

    # Act
    ident, storing = paced.request("pause")
    answering = paced.applied_after(ident)
    paced.stop()

    # Assert
    assert storing < 0.1
    assert answering <= 0.02 + 0.2 + 0.3


def test_paced_replay_trading_control_stored_from_another_connection_without_waiting(
    tmp_path: Path,
) -> None:
    # Arrange: 2 s of bars of 20 ms with decisions at most bars, the shipped commit cadence
    data = make_series(make_bars(100, seed=52))
    desk = Desk(tmp_path / "paced.db", data, {"seed": 1, "rate": 0.3}, _config())
    paced = _Paced(desk, speed=3600 / 0.02, tune={"commit_seconds": 1.0})
    paced.thread.start()
    paced.started.wait(10)
    time.sleep(0.3)

    # Act: controls 0.15 s apart, until one waits
    storing: list[float] = []
    while len(storing) < 4 and max(storing, default=0.0) < 0.25:
        storing.append(paced.request("resume")[1])
        time.sleep(0.15)
    paced.join()

    # Assert: a command that stores a control returns at once
    assert max(storing) < 0.25, storing

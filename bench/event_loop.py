"""Event loop benchmark: paper sessions through the trading loop beside backtesting.py, and restarts.

1. **The loop.** SMA cross (fast 20, slow 100, long only unless ``--allow-short``) paper-traded
   over the last 1,000,000 bars of the HistData EURUSD M1 history with
   :func:`services.runtime.run_paper`, as ``solodesk paper`` runs it: the stored bars replayed
   into the paper broker (50 ms latency plus seeded jitter, lots rounded to 0.01, margin at
   30:1), the risk engine on (``max_daily_loss=0.05``, ``max_trailing_drawdown=0.2``: it
   evaluates every mark), everything persisted in the bench home's state database (WAL; a
   commit every 1,000 bars or second, the paper broker's book in the loop's transaction, the
   equity row of every bar). A
   fresh session each repeat. The figure is bars / wall seconds of the replay itself, from the
   first batch the feed hands out to the end of ``run_paper``, best of ``--repeat`` (the first
   repeat's replay also loads the compiled indicator kernels from Numba's cache); the wall
   time of the whole call (loading the series from the store, building the session) is
   reported beside it, and the interpreter's imports apart.
2. **backtesting.py** (the reference) on the same bars (the same store read, the same closes)
   as a pandas frame with Open/High/Low/Close: the same strategy with ``self.I`` rolling means
   and ``crossover``, cash 100,000, commission 0, ``trade_on_close=True``,
   ``exclusive_orders=True``, ``finalize_trades=True``; bars / wall seconds of ``Backtest.run``.
3. The ratio loop / backtesting.py, against the target of at least 2x and 300,000 bars/s.
4. **Restart latency.** A paper session on the last 200,000 bars is killed (SIGKILL) once its
   committed watermark (the session's ``bars`` in the state database) has passed half of
   them, then restarted with the same ``--session``:
   a. as a person does, ``solodesk paper ... --session S`` in a fresh process: from spawning
      it to the first commit of a bar after the watermark at the kill, read by polling the
      session every millisecond (a commit holds at most 1,000 bars, so the figure is an upper
      bound by at most that many bars' processing);
   b. in process, ``run_paper(..., session=S)`` in an interpreter that has already imported
      the runtime: from the call to the first batch handed out after the watermark and to
      the next one (the ``on_batch`` callback), between which the first bar after the
      watermark is processed. Twice: first in a fresh interpreter (the compiled indicator
      kernels load from Numba's cache on their first call), then, on a second killed
      session, after an uninterrupted run has loaded them.
   Each resumed session's ledger hash is compared with the uninterrupted session's on the
   same bars: a killed session must end as one that never was.

Also reported: the trade counts of both engines, which differ by convention (the paper broker
fills a decision at the first quote after its bar's close plus latency, backtesting.py at the
signal bar's close; solodesk's crossings are vectorbt's, where below, then equal, then above
is a crossing, while backtesting.py's ``crossover`` needs strictly below on the bar before),
and the decision-equal check: the bars on which the loop decided (its order intents) against
the entries and exits of ``solodesk backtest --engine vector`` on the same bars, and the
round trips of both.

The bars are ingested once (``services.ingest.ingest``, data docs off) into a bench home,
``<bench_dir>/event_loop/home`` of the desk's settings, and reused; its state folder is
emptied at the start of each run. Each measured side runs in a fresh interpreter.

Run: ``.venv/bin/python bench/event_loop.py [--data DIR] [--repeat N] [--bars N]
[--restart-bars N] [--allow-short] [--skip loop,reference,vector,restart] [--profile]``.
``--profile`` adds a cProfile of ``run_paper`` on the restart slice (the top functions by own
time). Without the shared data the benchmark says so and exits 0. The result is written as
JSON to ``<bench_dir>/event_loop-<UTC>Z.json`` and printed as the last line of stdout; the exit
status is 1 when a resumed session's ledger differs from the uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import Settings
    from feature_store.state import StateDB
    from services.runtime import PaperOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import HISTORY, ROOT, emit, run_context, run_worker, shared_data_root

SYMBOL = "EURUSD"
FAST, SLOW = 20, 100
CASH = 100_000.0
RISK = ("max_daily_loss=0.05", "max_trailing_drawdown=0.2")
TARGET_RATIO = 2.0
TARGET_RATE = 300_000.0
POLL_SECONDS = 0.001
SOLODESK = Path(sys.executable).parent / "solodesk"
#: Bars of the unmeasured run each measuring interpreter makes first (its first calls).
WARM_BARS = 5_000


def bench_home() -> Path:
    """Return the benchmark's own desk, ``<bench_dir>/event_loop/home`` of the desk's settings."""
    from core.settings import load_settings

    folder = load_settings().bench_dir
    return (folder if folder.is_absolute() else ROOT / folder) / "event_loop" / "home"


def strategy_params(allow_short: bool) -> dict[str, str]:
    """Return the strategy's parameters as ``--param`` gives them."""
    return {"fast": str(FAST), "slow": str(SLOW), "allow_short": str(allow_short).lower()}


def cli_options(start: str, allow_short: bool) -> list[str]:
    """Return the ``solodesk paper`` / ``backtest`` options of a session from ``start``."""
    params = [f"--param={k}={v}" for k, v in strategy_params(allow_short).items()]
    return ["--symbol", SYMBOL, "--timeframe", "M1", "--strategy", "sma_cross", *params,
            "--from", start, "--cash", f"{CASH:g}"]  # fmt: skip


def paper_options(start: str, allow_short: bool) -> PaperOptions:
    """Return the :class:`PaperOptions` that ``solodesk paper`` builds from :func:`cli_options`
    plus ``--spread 0`` and the risk limits."""
    from core.timeframes import Timeframe
    from core.times import parse_utc
    from pipelines.backtest.config import BacktestConfig
    from services.runtime import PaperOptions, SimulatorOptions

    config = BacktestConfig.from_options(cash=CASH, spread=0.0)
    return PaperOptions(
        symbol=SYMBOL, timeframe=Timeframe.M1, strategy="sma_cross",
        params=strategy_params(allow_short), start=parse_utc(start, "start"), risk=RISK,
        backtest=config, simulator=SimulatorOptions(),
    )  # fmt: skip


def _settings(home: Path) -> Settings:
    from core.settings import load_settings

    return load_settings(home=home)


class _FirstBatch:
    """An ``on_batch`` callback that keeps when the first two batches were handed out."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.next_at: float | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.at is None:
            self.at = time.perf_counter()
        elif self.next_at is None:
            self.next_at = time.perf_counter()


def _session_counts(settings: Settings, session: str, account: str) -> dict[str, Any]:
    """Return a session's round trips (closed and open) and its account's risk events by kind."""
    from collections import Counter

    from feature_store.state import StateDB

    with StateDB.open(settings) as db:
        rows = db.trades(session)
        events = Counter(e.kind for e in db.risk_events(account))
    still_open = sum(1 for r in rows if r["exit_reason"] == "open")
    return {"round_trips": len(rows), "closed": len(rows) - still_open, "open": still_open,
            "risk_events": dict(events)}  # fmt: skip


def _summary_figures(summary: Any) -> dict[str, Any]:
    return {k: getattr(summary, k) for k in (
        "session", "bars", "bars_this_run", "orders", "fills", "trades", "final_equity",
        "ledger_hash", "risk_state", "resumed", "status", "seconds")}  # fmt: skip


# -- workers ---------------------------------------------------------------------------------


def _prepare(home: Path, source: Path, counts: list[int]) -> None:
    """Ingest the EURUSD M1 history into the bench home (once); emit where the windows start."""
    from core.errors import UsageError
    from core.timeframes import Timeframe
    from core.times import iso_z
    from feature_store.series import load_series
    from services.ingest import IngestOptions, ingest

    settings = _settings(home)
    started = time.perf_counter()
    ingested: float | None = None
    try:
        data = load_series(settings, SYMBOL, Timeframe.M1)
    except UsageError:
        ingest([str(source)], IngestOptions(symbol=SYMBOL, reports=False), settings)
        ingested = time.perf_counter() - started
        data = load_series(settings, SYMBOL, Timeframe.M1)
    ts = data.bars["ts"]
    n = data.bars.height
    starts = {str(c): iso_z(ts[n - c]) for c in counts if c <= n}
    sums = {str(c): float(data.bars["close"].tail(c).sum()) for c in counts if c <= n}
    emit({"ingest_seconds": ingested, "rows": n, "first": iso_z(ts[0]), "last": iso_z(ts[-1]),
          "starts": starts, "closes_sum": sums})  # fmt: skip


def _loop(home: Path, start: str, warm_start: str, allow_short: bool) -> None:
    """Paper-trade the bars from ``warm_start`` (not measured), then the window from ``start``."""
    began = time.perf_counter()
    from services.runtime import run_paper

    imports = time.perf_counter() - began
    settings = _settings(home)
    called = time.perf_counter()
    run_paper(settings, paper_options(warm_start, allow_short), spread_given=True)
    warm_up = time.perf_counter() - called
    first = _FirstBatch()
    called = time.perf_counter()
    summary = run_paper(settings, paper_options(start, allow_short), spread_given=True,
                        on_batch=first)  # fmt: skip
    ended = time.perf_counter()
    assert first.at is not None
    emit({"import_seconds": imports, "warm_up_seconds": warm_up, **_summary_figures(summary),
          "wall_seconds": ended - called, "load_seconds": first.at - called,
          "replay_seconds": ended - first.at,
          **_session_counts(settings, summary.session, summary.account)})  # fmt: skip


def _reference(home: Path, start: str, warm_rows: int, allow_short: bool) -> None:
    """Run the same strategy in backtesting.py on the last ``warm_rows`` bars (not measured),
    then on the window from ``start``."""
    began = time.perf_counter()
    import numpy as np
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    from core.timeframes import Timeframe
    from core.times import parse_utc
    from feature_store.series import load_series

    imports = time.perf_counter() - began

    def sma(values: Any, n: int) -> Any:
        return pd.Series(values).rolling(n).mean().to_numpy()

    class SmaCross(Strategy):
        fast = FAST
        slow = SLOW

        def init(self) -> None:
            self.sma_fast = self.I(sma, self.data.Close, self.fast)
            self.sma_slow = self.I(sma, self.data.Close, self.slow)

        def next(self) -> None:
            if crossover(self.sma_fast, self.sma_slow):
                if not self.position.is_long:
                    self.buy()
            elif crossover(self.sma_slow, self.sma_fast):
                if allow_short and not self.position.is_short:
                    self.sell()
                elif not allow_short and self.position:
                    self.position.close()

    settings = _settings(home)
    t0 = time.perf_counter()
    data = load_series(settings, SYMBOL, Timeframe.M1, start=parse_utc(start, "start"))
    t1 = time.perf_counter()
    bars = data.bars
    index = pd.DatetimeIndex(bars["ts"].dt.replace_time_zone(None).to_numpy())
    frame = pd.DataFrame(
        {c.capitalize(): bars[c].to_numpy() for c in ("open", "high", "low", "close")},
        index=index,
    )
    t2 = time.perf_counter()
    options: dict[str, Any] = {"cash": CASH, "commission": 0.0, "trade_on_close": True,
                               "exclusive_orders": True, "finalize_trades": True}  # fmt: skip
    Backtest(frame.tail(warm_rows), SmaCross, **options).run()
    called = time.perf_counter()
    stats = Backtest(frame, SmaCross, **options).run()
    seconds = time.perf_counter() - called
    emit({"import_seconds": imports, "load_seconds": t1 - t0, "frame_seconds": t2 - t1,
          "bars": len(frame), "closes_sum": float(np.sum(frame["Close"].to_numpy())),
          "run_seconds": seconds, "trades": len(stats["_trades"]),
          "final_equity": float(stats["Equity Final [$]"])})  # fmt: skip


def _paper_child(home: Path, start: str, session: str, allow_short: bool) -> None:
    """Run a paper session until it ends (or is killed)."""
    from services.runtime import run_paper

    run_paper(_settings(home), paper_options(start, allow_short), session=session,
              spread_given=True)  # fmt: skip


def _resume(home: Path, start: str, cold: str, warm: str, allow_short: bool) -> None:
    """Resume a killed session in an interpreter with the runtime imported, run the same bars
    uninterrupted, then resume a second killed session."""
    began = time.perf_counter()
    from services.runtime import run_paper

    imports = time.perf_counter() - began
    settings = _settings(home)
    options = paper_options(start, allow_short)
    out: dict[str, Any] = {"import_seconds": imports}
    for name, given in (("resumed_cold", cold), ("uninterrupted", None), ("resumed_warm", warm)):
        first = _FirstBatch()
        called = time.perf_counter()
        summary = run_paper(settings, options, session=given, spread_given=True, on_batch=first)
        ended = time.perf_counter()
        assert first.at is not None
        out[name] = {**_summary_figures(summary), "first_batch_seconds": first.at - called,
                     "first_batch_done_seconds": (first.next_at or ended) - called,
                     "wall_seconds": ended - called}  # fmt: skip
    out["identity"] = options.identity()
    emit(out)


def _profile(home: Path, start: str, allow_short: bool, top: int) -> None:
    """Profile one paper session on the window with cProfile; emit the top functions."""
    import cProfile
    import pstats

    from services.runtime import run_paper

    settings = _settings(home)
    options = paper_options(start, allow_short)
    run_paper(settings, options, spread_given=True)  # caches and first calls out of the profile
    profiler = cProfile.Profile()
    called = time.perf_counter()
    profiler.enable()
    summary = run_paper(settings, options, spread_given=True)
    profiler.disable()
    seconds = time.perf_counter() - called
    stats = pstats.Stats(profiler)
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = Path(path)
        label = f"{where.parent.name}/{where.name}:{line}({name})" if line else name
        rows.append({"function": label, "calls": calls, "own": own, "cumulative": cumulative})
    by_own = sorted(rows, key=lambda r: -r["own"])[:top]
    by_cumulative = sorted(rows, key=lambda r: -r["cumulative"])[:top]
    emit({"bars": summary.bars_this_run, "seconds": seconds, "by_own": by_own,
          "by_cumulative": by_cumulative})  # fmt: skip


# -- the parent ------------------------------------------------------------------------------


def _watermark(db: StateDB, session: str) -> tuple[int, int]:
    """Return a session's committed watermark: bars processed, the last one's open (ns)."""
    record = db.session(session)
    if record is None:
        return -1, -1
    return record.bars, -1 if record.last_bar_ts is None else record.last_bar_ts


def _wait_for(
    db: StateDB, session: str, done: Callable[[int], bool], process: subprocess.Popen[Any]
) -> float:
    """Poll the watermark until ``done(bars)``; return when (perf_counter), or fail if the
    process ends first."""
    while True:
        bars, _ = _watermark(db, session)
        if done(bars):
            return time.perf_counter()
        if process.poll() is not None:
            msg = f"session {session} ended (exit status {process.returncode}) before the mark"
            raise SystemExit(msg)
        time.sleep(POLL_SECONDS)


def _kill_midway(
    command: list[str], env: dict[str, str], db: StateDB, session: str, at: int
) -> dict[str, Any]:
    """Start a session, SIGKILL it once its watermark has passed ``at`` bars; return where the
    committed watermark stood."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    started = time.perf_counter()
    try:
        _wait_for(db, session, lambda bars: bars >= at, process)
    finally:
        process.send_signal(signal.SIGKILL)  # also when the wait failed: no session left behind
        process.wait()
    bars, bar_ts = _watermark(db, session)
    return {"killed_after_seconds": time.perf_counter() - started, "bars_at_kill": bars,
            "watermark_at_kill": bar_ts}  # fmt: skip


def _restart(home: Path, start: str, count: int, allow_short: bool) -> dict[str, Any]:
    from core.ids import new_run_id
    from feature_store.state import StateDB

    settings = _settings(home)
    env = {**os.environ, "SOLODESK_HOME": str(home)}
    db = StateDB.open(settings)
    try:
        # a. the command line, killed and restarted
        cli_session = new_run_id("paper")
        paper = [str(SOLODESK), "paper", *cli_options(start, allow_short), "--spread", "0",
                 *(f"--risk={r}" for r in RISK), "--session", cli_session]  # fmt: skip
        cli = _kill_midway(paper, env, db, cli_session, count // 2)
        called = time.perf_counter()
        process = subprocess.Popen([*paper, "--json"], cwd=ROOT, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            first = _wait_for(db, cli_session, lambda bars: bars > cli["bars_at_kill"], process)
        except BaseException:
            process.kill()
            process.wait()
            raise
        stdout, _ = process.communicate()
        ended = time.perf_counter()
        cli_summary = json.loads(stdout.strip().splitlines()[-1])
        record = db.session(cli_session)
        cli |= {"session": cli_session, "first_bar_seconds": first - called,
                "wall_seconds": ended - called, "summary": cli_summary,
                "options": None if record is None else record.options}  # fmt: skip
        # b. in process, the runtime imported: two sessions killed, resumed by one interpreter
        own: dict[str, dict[str, Any]] = {}
        for name in ("resumed_cold", "resumed_warm"):
            session = new_run_id("paper")
            child = [sys.executable, str(Path(__file__).resolve()), "--worker", "paper-child",
                     str(home), start, session, str(int(allow_short))]  # fmt: skip
            own[name] = {"session": session, **_kill_midway(child, env, db, session, count // 2)}
    finally:
        db.close()
    resumed = run_worker(__file__, "resume", str(home), start, own["resumed_cold"]["session"],
                         own["resumed_warm"]["session"], str(int(allow_short)))  # fmt: skip
    reference = resumed["uninterrupted"]
    for name, figures in own.items():
        done = resumed[name]
        figures |= {"first_batch_seconds": done["first_batch_seconds"],
                    "first_batch_done_seconds": done["first_batch_done_seconds"],
                    "wall_seconds": done["wall_seconds"], "summary": done,
                    "ledger_equal": done["ledger_hash"] == reference["ledger_hash"]}  # fmt: skip
    cli["same_options"] = cli["options"] == resumed["identity"]
    cli["ledger_equal"] = cli["same_options"] and (
        cli_summary["ledger_hash"] == reference["ledger_hash"]
    )
    return {"bars": count, "start": start, "cli": cli, **own, "uninterrupted": reference,
            "import_seconds": resumed["import_seconds"]}  # fmt: skip


def _vector(home: Path, start: str, allow_short: bool) -> dict[str, Any]:
    """Run ``solodesk backtest --engine vector`` on the window; return its summary."""
    env = {**os.environ, "SOLODESK_HOME": str(home)}
    command = [str(SOLODESK), "backtest", *cli_options(start, allow_short), "--engine", "vector",
               "--no-report", "--json"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"solodesk backtest failed with exit status {done.returncode}")
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"command": " ".join(["solodesk", *command[1:]]), "run_id": summary["run_id"],
            "n_trades": summary["n_trades"], "seconds": summary["seconds"]}  # fmt: skip


def _decisions(home: Path, session: str, run_id: str) -> dict[str, Any]:
    """Compare the bars a paper session decided on with a vector backtest's entries and exits."""
    from collections import Counter

    import polars as pl

    from core.times import iso_z_ns, ns_from_utc
    from feature_store.backtests import BacktestStore
    from feature_store.state import StateDB

    settings = _settings(home)
    with StateDB.open(settings) as db:
        intents = db.intents(session)
        fills = len(db.fills(session))
    loop = Counter(ns_from_utc(i.bar_ts) for i in intents)
    store = BacktestStore.backtests(settings)
    trades = store.table(store.get(run_id), "trades")
    stamps = pl.concat([trades["entry_ts"], trades["exit_ts"].drop_nulls()])
    vector = Counter(stamps.dt.cast_time_unit("ns").to_physical().to_list())
    only_loop, only_vector = loop - vector, vector - loop
    return {"loop_decisions": loop.total(), "vector_decisions": vector.total(),
            "equal": not only_loop and not only_vector,
            "only_loop": [iso_z_ns(t) for t in sorted(only_loop.elements())][:10],
            "only_vector": [iso_z_ns(t) for t in sorted(only_vector.elements())][:10],
            "loop_orders_unfilled": len(intents) - fills}  # fmt: skip


def _write(result: dict[str, Any]) -> Path:
    """Write the result as JSON under the desk's ``bench_dir``."""
    from core.settings import load_settings
    from core.times import COMPACT, utc_now

    folder = load_settings().bench_dir
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"event_loop-{utc_now().strftime(COMPACT)}Z.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def _print_speed(
    loop: dict[str, Any] | None, ref: dict[str, Any] | None, bars: int, closes: float
) -> dict[str, Any]:
    """Print the loop's and backtesting.py's runs and the ratio; return the figures."""
    out: dict[str, Any] = {}
    if loop is not None:
        runs = loop["runs"]
        best = min(r["replay_seconds"] for r in runs)
        out |= {"loop_replay_seconds": best, "loop_bars_per_second": bars / best,
                "loop_wall_seconds": min(r["wall_seconds"] for r in runs)}  # fmt: skip
        print(f"1. the loop: run_paper over the last {bars:,} EURUSD M1 bars, risk engine on, "
              f"state persisted (imports {runs[0]['import_seconds']:.2f} s, then an unmeasured "
              f"run on {WARM_BARS:,} bars)")  # fmt: skip
        print(f"   {'repeat':<7}{'replay s':>9}{'bars/s':>10}{'load s':>8}{'wall s':>8}"
              f"{'wall bars/s':>12}{'trades':>7}{'orders':>7}{'load avg':>9}  risk")  # fmt: skip
        for k, r in enumerate(runs, 1):
            events = ", ".join(f"{n} {kind}" for kind, n in sorted(r["risk_events"].items()))
            print(f"   {k:<7}{r['replay_seconds']:9.2f}{bars / r['replay_seconds']:10,.0f}"
                  f"{r['load_seconds']:8.2f}{r['wall_seconds']:8.2f}"
                  f"{bars / r['wall_seconds']:12,.0f}{r['round_trips']:7}{r['orders']:7}"
                  f"{r['load_before']:9.2f}  {r['risk_state']}, {events or 'no events'}")  # fmt: skip
    if ref is not None:
        runs = ref["runs"]
        best = min(r["run_seconds"] for r in runs)
        out |= {"reference_seconds": best, "reference_bars_per_second": bars / best}
        same = all(abs(r["closes_sum"] - closes) <= 1e-12 * abs(closes) for r in runs)
        first = runs[0]
        print(f"2. backtesting.py on the same {first['bars']:,} bars (sum of closes "
              f"{'equal' if same else 'DIFFERENT'}; imports {first['import_seconds']:.2f} s, "
              f"store read {first['load_seconds']:.2f} s, frame {first['frame_seconds']:.2f} s, "
              f"then an unmeasured run on {WARM_BARS:,} bars)")  # fmt: skip
        print(f"   {'repeat':<7}{'run s':>9}{'bars/s':>10}{'trades':>8}{'load avg':>9}")
        for k, r in enumerate(runs, 1):
            print(f"   {k:<7}{r['run_seconds']:9.2f}{bars / r['run_seconds']:10,.0f}"
                  f"{r['trades']:8}{r['load_before']:9.2f}")  # fmt: skip
    if loop is not None and ref is not None:
        rate = out["loop_bars_per_second"]
        ratio = rate / out["reference_bars_per_second"]
        pairs = [r["run_seconds"] / q["replay_seconds"] for q, r in
                 zip(loop["runs"], ref["runs"], strict=False)]  # fmt: skip
        verdict = "met" if ratio >= TARGET_RATIO and rate >= TARGET_RATE else "MISSED"
        print(f"3. ratio loop / backtesting.py, best against best: {ratio:.2f}x at {rate:,.0f} "
              f"bars/s (target >= {TARGET_RATIO:g}x and >= {TARGET_RATE:,.0f} bars/s: {verdict}); "
              f"repeat by repeat: {', '.join(f'{x:.2f}x' for x in pairs)}")  # fmt: skip
        out |= {"ratio": ratio, "ratios_by_repeat": pairs, "verdict": verdict}
    return out


def _print_restart(restart: dict[str, Any]) -> None:
    cli, ref = restart["cli"], restart["uninterrupted"]
    print(f"4. restart latency: paper sessions on the last {restart['bars']:,} bars, SIGKILLed "
          "once their watermark passed half of them")  # fmt: skip
    print(f"   {'restarted by':<46}{'killed at':>10}{'first bar after it':>24}{'whole resume':>14}"
          "  ledger")  # fmt: skip
    rows = [("solodesk paper --session (fresh process)", cli,
             f"<= {cli['first_bar_seconds']:.3f} s (commit)")]  # fmt: skip
    for name, label in (("resumed_cold", "run_paper, runtime imported, kernels cold"),
                        ("resumed_warm", "run_paper, runtime imported, kernels warm")):  # fmt: skip
        r = restart[name]
        rows.append((label, r, f"{r['first_batch_seconds']:.3f}-"
                     f"{r['first_batch_done_seconds']:.3f} s"))  # fmt: skip
    for label, r, first in rows:
        print(f"   {label:<46}{r['bars_at_kill']:>10,}{first:>24}{r['wall_seconds']:>12.2f} s"
              f"  {'equal' if r['ledger_equal'] else 'DIFFERENT'}")  # fmt: skip
    print(f"   the ledgers are compared with an uninterrupted session on the same bars (runtime "
          f"imported, kernels warm): first batch {ref['first_batch_seconds']:.3f} s, done "
          f"{ref['first_batch_done_seconds']:.3f} s, whole run {ref['wall_seconds']:.2f} s")  # fmt: skip


def _print_trades(loop: dict[str, Any] | None, ref: dict[str, Any] | None,
                  vector: dict[str, Any] | None) -> None:  # fmt: skip
    print("5. trades (conventions differ: the loop fills at the first quote after latency, "
          "backtesting.py at the signal close; crossings through equal averages)")  # fmt: skip
    if loop is not None:
        r = loop["runs"][-1]
        print(
            f"   loop: {r['round_trips']} round trips ({r['closed']} closed, {r['open']} open), "
            f"{r['orders']} orders, {r['fills']} fills, final equity {r['final_equity']:,.2f}"
        )
    if ref is not None:
        r = ref["runs"][-1]
        print(f"   backtesting.py: {r['trades']} trades (open ones closed at the end), final "
              f"equity {r['final_equity']:,.2f}")  # fmt: skip
    if vector is not None:
        print(f"   solodesk backtest --engine vector: {vector['n_trades']} trades (an open one "
              f"counted), {vector['seconds']:.2f} s")  # fmt: skip
        d = vector.get("decisions")
        if d is not None:
            verdict = "EQUAL" if d["equal"] else "DIFFERENT"
            print(
                f"   decision bars: loop {d['loop_decisions']}, vector {d['vector_decisions']}: "
                f"{verdict}; loop orders unfilled at the end: {d['loop_orders_unfilled']}"
            )
            if not d["equal"]:
                print(f"   only the loop: {d['only_loop']}; only vector: {d['only_vector']}")


def _print_profile(profile: dict[str, Any]) -> None:
    print(f"6. cProfile of run_paper on {profile['bars']:,} bars: {profile['seconds']:.2f} s "
          "under the profiler; top by own time")  # fmt: skip
    for r in profile["by_own"]:
        print(f"   {r['own']:8.3f} s own {r['cumulative']:8.3f} s cum {r['calls']:>10,}  "
              f"{r['function']}")  # fmt: skip


def main() -> int:
    """Run the benchmark, print its figures and its JSON result; return the exit status."""
    parser = argparse.ArgumentParser(description="Event loop benchmark (see the module docstring).")
    parser.add_argument("--data", help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (best kept)")
    parser.add_argument("--bars", type=int, default=1_000_000, help="the last N bars replayed")
    parser.add_argument("--restart-bars", type=int, default=200_000, help="bars of the restart")
    parser.add_argument("--allow-short", action="store_true", help="also trade the short side")
    parser.add_argument("--skip", default="", help="loop, reference, vector and/or restart")
    parser.add_argument("--profile", action="store_true", help="profile run_paper as well")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, home_text, *rest = args.worker
        home = Path(home_text)
        if kind == "prepare":
            _prepare(home, Path(rest[0]), [int(c) for c in rest[1:]])
        elif kind == "loop":
            _loop(home, rest[0], rest[1], rest[2] == "1")
        elif kind == "reference":
            _reference(home, rest[0], int(rest[1]), rest[2] == "1")
        elif kind == "paper-child":
            _paper_child(home, rest[0], rest[1], rest[2] == "1")
        elif kind == "resume":
            _resume(home, rest[0], rest[1], rest[2], rest[3] == "1")
        elif kind == "profile":
            _profile(home, rest[0], rest[1] == "1", int(rest[2]))
        else:
            parser.error(f"unknown worker {kind!r}")
        return 0

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    source = shared_data_root(args.data) / HISTORY
    if not source.is_dir() or not any(source.glob("*.zip")):
        print(f"skipped: no HistData EURUSD zips at {source} (shared data absent; set "
              "SOLODESK_SHARED_DATA or pass --data)")  # fmt: skip
        return 0
    short = str(int(args.allow_short))
    home = bench_home()
    shutil.rmtree(_settings(home).state_dir, ignore_errors=True)
    result: dict[str, Any] = run_context()
    result["command"] = " ".join([".venv/bin/python", "bench/event_loop.py", *sys.argv[1:]])
    result["setup"] = {"symbol": SYMBOL, "timeframe": "M1", "strategy": "sma_cross",
                       "params": strategy_params(args.allow_short), "risk": list(RISK),
                       "cash": CASH, "spread_pips": 0.0, "home": str(home)}  # fmt: skip
    print(f"bench home {home}: reading (or ingesting once) the EURUSD M1 history ...", flush=True)
    prepared = run_worker(__file__, "prepare", str(home), str(source), str(args.bars),
                          str(args.restart_bars), str(WARM_BARS))  # fmt: skip
    result["data"] = prepared
    if prepared["ingest_seconds"] is not None:
        print(f"   ingested {prepared['rows']:,} bars in {prepared['ingest_seconds']:.1f} s")
    start = prepared["starts"][str(args.bars)]
    print(f"   {prepared['rows']:,} bars stored ({prepared['first']} to {prepared['last']}); "
          f"replaying the last {args.bars:,}, from {start}")  # fmt: skip
    warm_start = prepared["starts"][str(WARM_BARS)]
    loop_runs: list[dict[str, Any]] = []
    ref_runs: list[dict[str, Any]] = []
    for k in range(max(1, args.repeat)):
        # Interleaved, the order alternating: a busy spell of the machine hits both sides.
        sides = [("loop", loop_runs), ("reference", ref_runs)]
        for side, runs in sides if k % 2 == 0 else sides[::-1]:
            if side in skip:
                continue
            given = warm_start if side == "loop" else str(WARM_BARS)
            print(f"   repeat {k + 1}: {side} ...", flush=True)
            runs.append(run_worker(__file__, side, str(home), start, given, short))
    loop = {"runs": loop_runs} if loop_runs else None
    ref = {"runs": ref_runs} if ref_runs else None
    vector = None
    result["loop"], result["reference"] = loop, ref
    closes = prepared["closes_sum"][str(args.bars)]
    result["figures"] = _print_speed(loop, ref, args.bars, closes)
    ok = True
    if "restart" not in skip:
        restart_start = prepared["starts"][str(args.restart_bars)]
        restart = _restart(home, restart_start, args.restart_bars, args.allow_short)
        result["restart"] = restart
        _print_restart(restart)
        ok = all(restart[k]["ledger_equal"] for k in ("cli", "resumed_cold", "resumed_warm"))
    if "vector" not in skip:
        vector = _vector(home, start, args.allow_short)
        if loop is not None:
            vector["decisions"] = _decisions(home, loop["runs"][-1]["session"], vector["run_id"])
        result["vector"] = vector
    if loop is not None or ref is not None or vector is not None:
        _print_trades(loop, ref, vector)
    if args.profile:
        restart_start = prepared["starts"][str(args.restart_bars)]
        profile = run_worker(__file__, "profile", str(home), restart_start, short, "25")
        result["profile"] = profile
        _print_profile(profile)
    path = _write(result)
    print(f"result written to {path}")
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Backtest benchmark: the engine, a parameter sweep and a portfolio, each beside its reference.

1. **Engine.** SMA cross (fast 20, slow 100, long only, fees 0.01% of notional per leg, all-in,
   fills at the signal bar's close) on the full HistData EURUSD M1 history (~5.95M bars): the
   same boolean entries and exits go through solodesk's ``run_backtest`` (the public call:
   Polars bars in, equity, positions and a trade table out), its compiled core ``simulate``
   alone, and ``vectorbt.Portfolio.from_signals`` (its Numba engine). The first call of each
   is timed apart (JIT compilation or loading its cache, on 1,000 bars); then the best of
   ``--repeat`` runs. A NumPy pass over the close array (``close.sum()``) gives the memory
   bandwidth floor in ns per bar. Final equity and trade count are compared (1e-9 relative).
2. **Sweep.** 1,000 (fast, slow) pairs on the last 1M bars of the history: solodesk's
   ``run_sweep`` over all cores (processes spawned, indicators, signals, backtest and metrics
   per combination all counted) against vectorbt in column chunks (``MA.run`` for the fast and
   the slow windows, ``crossed_above``/``crossed_below``, ``from_signals``; indicator time
   counted), single-threaded as vectorbt runs. The final equities of all 1,000 combinations are
   compared.
3. **Portfolio.** The 28 FX pairs of 2017 (HistData M1 zips) resampled to M5, SMA-sign
   directions, shared equity, risk-parity sizing with daily rebalancing, rolling covariance and
   VaR/ES: seconds and peak RSS.

Each measured side runs in its own subprocess (peak RSS is that process's own high-water
mark). Targets printed beside the figures, never lowered: engine >= 5x vectorbt's bars/s,
sweep >= 5x vectorbt's combinations/s.

Run: ``.venv/bin/python bench/backtest.py [--data DIR] [--repeat N] [--combos N]
[--sweep-bars N] [--skip engine,sweep,portfolio]``. Without the shared data the benchmark says
so and exits 0. The last line of stdout is the result as JSON, also written to
``$SOLODESK_HOME/bench/`` (or a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import (
    HISTORY,
    ROOT,
    emit,
    run_context,
    run_worker,
    shared_data_root,
    write_result,
)

FAST, SLOW, FEES, CASH = 20, 100, 0.0001, 100_000.0
PAIRS_2017 = [
    "audcad",
    "audchf",
    "audjpy",
    "audnzd",
    "audusd",
    "cadchf",
    "cadjpy",
    "chfjpy",
    "euraud",
    "eurcad",
    "eurchf",
    "eurgbp",
    "eurjpy",
    "eurnzd",
    "eurusd",
    "gbpaud",
    "gbpcad",
    "gbpchf",
    "gbpjpy",
    "gbpnzd",
    "gbpusd",
    "nzdcad",
    "nzdchf",
    "nzdjpy",
    "nzdusd",
    "usdcad",
    "usdchf",
    "usdjpy",
]


def peak_rss_bytes() -> int:
    """Return this process's own peak resident set size (``VmHWM``) in bytes."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def best_of(repeat: int, call: Any) -> tuple[float, Any]:
    """Return the fastest wall time of ``repeat`` calls and the last call's value."""
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = call()
        best = min(best, time.perf_counter() - start)
    return best, value


def combinations(count: int) -> list[tuple[int, int]]:
    """Return ``count`` (fast, slow) pairs: fast 5, 10, ..., slow from fast + 5 upwards."""
    pairs = [(f, s) for f in range(5, 205, 5) for s in range(10, 510, 10) if f < s]
    step = len(pairs) / count
    return [pairs[int(i * step)] for i in range(count)]


# -- workers ---------------------------------------------------------------------------------


def _prepare_pairs(folder: Path, source: Path) -> None:
    """Parse the 28 pairs' 2017 M1 zips, resample to M5, write one Parquet file per pair."""
    import polars as pl

    from core.clocks import UTC as UTC_CLOCK
    from core.settings import Settings
    from core.timeframes import Timeframe
    from pipelines.ingest.merge import combine_batches
    from pipelines.resample import resample_bars
    from services.ingest import IngestOptions, load_sources

    start = time.perf_counter()
    out = folder / "pairs"
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for pair in PAIRS_2017:
        zips = sorted((source / pair).glob("*_2017.zip"))
        if not zips:
            continue
        settings = Settings(home=folder / "home")
        batches = load_sources([str(z) for z in zips], IngestOptions(reports=False), settings)
        bars = combine_batches([b.bars for b, _ in batches]).bars
        kind = batches[0][0].volume_kind
        m5 = resample_bars(
            bars.with_columns(spread=pl.lit(None, dtype=pl.Float64)), Timeframe.M1,
            Timeframe.M5, anchor=UTC_CLOCK, volume_kind=kind,
        ).select("ts", "open", "high", "low", "close")  # fmt: skip
        m5.write_parquet(out / f"{pair.upper()}.parquet")
        rows[pair.upper()] = m5.height
    emit({"seconds": time.perf_counter() - start, "pairs": rows})


def _engine_solodesk(folder: Path, repeat: int) -> None:
    import numpy as np
    import polars as pl

    from core.instruments import fx_pair
    from models.strategies.sma_cross import SmaCross
    from pipelines.backtest import _kernels
    from pipelines.backtest.config import BacktestConfig, CostConfig
    from pipelines.backtest.engine import run_backtest, simulate

    bars = pl.read_parquet(folder / "M1.parquet").select("ts", "open", "high", "low", "close")
    close = bars["close"].to_numpy()
    indicator_seconds, signals = best_of(1, lambda: SmaCross.signal_arrays(close, FAST, SLOW))
    np.save(folder / "entries.npy", signals.entries)
    np.save(folder / "exits.npy", signals.exits)
    config = BacktestConfig(cash=CASH, costs=CostConfig(fees=FEES), direction="long")
    instrument = fx_pair("EUR", "USD")
    ts = bars["ts"].dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()
    arrays = [bars[c].to_numpy() for c in ("open", "high", "low", "close")]
    empty_b, empty_f = np.zeros(0, dtype=np.bool_), np.zeros(0)

    def core(n: int) -> Any:
        return simulate(
            arrays[0][:n], arrays[1][:n], arrays[2][:n], arrays[3][:n], np.zeros(1), ts[:n],
            np.ones(1), signals.entries[:n], signals.exits[:n], empty_b, empty_b, empty_f,
            CASH, FEES, 0.0, 100_000.0, 0.0001, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 21, False,
            _kernels.DIRECTION_LONG, _kernels.SIZING_ALL_IN, 1.0, 100, 10.0, 374_400.0,
            float("nan"), float("nan"), float("nan"),
        )  # fmt: skip

    def full() -> Any:
        return run_backtest(bars, signals, instrument, config, bars_per_year=374_400.0)

    first_start = time.perf_counter()
    core(1_000)
    first_core = time.perf_counter() - first_start
    first_start = time.perf_counter()
    run_backtest(bars.head(1_000), type(signals)(entries=signals.entries[:1_000],
                 exits=signals.exits[:1_000]), instrument, config, bars_per_year=374_400.0)  # fmt: skip
    first_full = time.perf_counter() - first_start
    core_seconds, _ = best_of(repeat, lambda: core(len(close)))
    full_seconds, result = best_of(repeat, full)
    numpy_seconds, _ = best_of(max(5, repeat), close.sum)
    emit(
        {
            "bars": len(close),
            "indicator_seconds": indicator_seconds,
            "first_call_core": first_core,
            "first_call_run_backtest": first_full,
            "core_seconds": core_seconds,
            "run_backtest_seconds": full_seconds,
            "numpy_sum_seconds": numpy_seconds,
            "final_equity": float(result.equity[-1]),
            "n_trades": result.trades.height,
            "entries": int(signals.entries.sum()),
            "peak_rss": peak_rss_bytes(),
        }
    )


def _engine_vectorbt(folder: Path, repeat: int) -> None:
    import numpy as np
    import polars as pl

    import_start = time.perf_counter()
    import vectorbt as vbt

    import_seconds = time.perf_counter() - import_start
    close = pl.read_parquet(folder / "M1.parquet", columns=["close"])["close"].to_numpy()
    entries, exits = np.load(folder / "entries.npy"), np.load(folder / "exits.npy")

    def run(n: int) -> Any:
        return vbt.Portfolio.from_signals(
            close[:n], entries[:n], exits[:n], fees=FEES, init_cash=CASH, freq="1min"
        )

    first_start = time.perf_counter()
    run(1_000)
    first = time.perf_counter() - first_start
    seconds, portfolio = best_of(repeat, lambda: run(len(close)))
    emit(
        {
            "import_seconds": import_seconds,
            "first_call": first,
            "seconds": seconds,
            "final_equity": float(portfolio.final_value()),
            "n_trades": int(portfolio.trades.count()),
            "peak_rss": peak_rss_bytes(),
        }
    )


def _sweep_solodesk(folder: Path, rows: int, count: int, jobs: int) -> None:
    import polars as pl

    from core.instruments import fx_pair
    from pipelines.backtest.config import BacktestConfig, CostConfig
    from pipelines.backtest.sweep import StrategyRef, SweepJob, run_sweep

    bars = pl.read_parquet(folder / "M1.parquet").select("ts", "open", "high", "low", "close")
    bars = bars.tail(rows)
    config = BacktestConfig(cash=CASH, costs=CostConfig(fees=FEES), direction="long")
    job = SweepJob(StrategyRef("sma_cross"), bars, None, fx_pair("EUR", "USD"), config, "bid",
                   374_400.0)  # fmt: skip
    combos = [{"fast": f, "slow": s} for f, s in combinations(count)]
    run_sweep(job, combos[:2], jobs=1)  # compiled kernels loaded: not part of the figure
    start = time.perf_counter()
    # The figure is the sweep over worker processes: start them whatever the work's size.
    swept = run_sweep(job, combos, jobs=jobs, startup_seconds=0.0)
    seconds = time.perf_counter() - start
    swept.results.select("fast", "slow", "final_equity", "n_trades").write_parquet(
        folder / f"sweep-solodesk-{jobs}.parquet"
    )
    emit({"seconds": seconds, "combinations": swept.results.height, "jobs": swept.workers,
          "peak_rss": peak_rss_bytes()})  # fmt: skip


def _sweep_vectorbt(folder: Path, rows: int, count: int, chunk: int) -> None:
    import numpy as np
    import pandas as pd
    import polars as pl
    import vectorbt as vbt

    close = pl.read_parquet(folder / "M1.parquet", columns=["close"])["close"].tail(rows)
    price = pd.Series(close.to_numpy())
    pairs = combinations(count)
    # Compile (or load from cache) every function the chunks call, with the chunks' 2-D shapes.
    head = price.head(1_000)
    warm_fast = pd.DataFrame(vbt.MA.run(head, window=[5, 10]).ma.to_numpy())
    warm_slow = pd.DataFrame(vbt.MA.run(head, window=[20, 30]).ma.to_numpy())
    vbt.Portfolio.from_signals(
        head, warm_fast.vbt.crossed_above(warm_slow), warm_fast.vbt.crossed_below(warm_slow),
        fees=FEES, init_cash=CASH, freq="1min",
    ).trades.count()  # fmt: skip
    finals, trades = [], []
    start = time.perf_counter()
    for offset in range(0, len(pairs), chunk):
        part = pairs[offset : offset + chunk]
        fast = vbt.MA.run(price, window=[f for f, _ in part]).ma.to_numpy()
        slow = vbt.MA.run(price, window=[s for _, s in part]).ma.to_numpy()
        fast_frame, slow_frame = pd.DataFrame(fast), pd.DataFrame(slow)
        entries = fast_frame.vbt.crossed_above(slow_frame)
        exits = fast_frame.vbt.crossed_below(slow_frame)
        portfolio = vbt.Portfolio.from_signals(
            price, entries, exits, fees=FEES, init_cash=CASH, freq="1min"
        )
        finals.extend(np.asarray(portfolio.final_value()).tolist())
        trades.extend(np.asarray(portfolio.trades.count()).tolist())
    seconds = time.perf_counter() - start
    pl.DataFrame({"fast": [f for f, _ in pairs], "slow": [s for _, s in pairs],
                  "final_equity": finals, "n_trades": trades}).write_parquet(
        folder / "sweep-vectorbt.parquet")  # fmt: skip
    emit({"seconds": seconds, "combinations": len(pairs), "chunk": chunk,
          "peak_rss": peak_rss_bytes()})  # fmt: skip


def _portfolio(folder: Path) -> None:
    import numpy as np
    import polars as pl

    from core.instruments import InstrumentRegistry
    from models.strategies.indicators import sma
    from pipelines.backtest.config import CostConfig
    from pipelines.backtest.portfolio import PortfolioConfig, run_portfolio

    registry = InstrumentRegistry.default()
    frames = {p.stem: pl.read_parquet(p) for p in sorted((folder / "pairs").glob("*.parquet"))}
    load_rss = peak_rss_bytes()
    start = time.perf_counter()
    usd = {}
    for symbol, frame in frames.items():
        if symbol.endswith("USD"):
            usd[symbol[:3]] = frame.select("ts", pl.col("close").alias("rate"))
        elif symbol.startswith("USD"):
            usd[symbol[3:]] = frame.select("ts", (1.0 / pl.col("close")).alias("rate"))
    directions, to_account, instruments = {}, {}, {}
    for symbol, frame in frames.items():
        close = frame["close"].to_numpy()
        directions[symbol] = np.sign(np.nan_to_num(sma(close, 50) - sma(close, 200)))
        instruments[symbol] = registry.get(symbol)
        quote = symbol[3:]
        if quote == "USD":
            to_account[symbol] = 1.0
        else:
            joined = frame.select("ts").join_asof(usd[quote], on="ts", strategy="backward")
            to_account[symbol] = joined["rate"].fill_null(strategy="backward").to_numpy()
    config = PortfolioConfig(
        bars_per_year=260 * 288, costs=CostConfig(spread_pips=1.0), sizing="risk-parity",
        target_vol=0.10, max_weight=0.25, max_gross=3.0, rebalance="daily", lookback=2_000,
    )  # fmt: skip
    prepared = time.perf_counter() - start
    start = time.perf_counter()
    result = run_portfolio(frames, directions, instruments, config, to_account=to_account)
    seconds = time.perf_counter() - start
    emit(
        {
            "symbols": len(frames),
            "bars": int(sum(f.height for f in frames.values())),
            "timeline": len(result.ts),
            "prepare_seconds": prepared,
            "seconds": seconds,
            "final_equity": float(result.equity[-1]),
            "trades": int(result.n_trades.sum()),
            "rebalances": len(result.rebalance_ts),
            "peak_rss": peak_rss_bytes(),
            "rss_after_load": load_rss,
        }
    )


# -- driver ----------------------------------------------------------------------------------


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _engine(folder: Path, repeat: int) -> dict[str, Any]:
    ours = run_worker(__file__, "engine-solodesk", str(folder), str(repeat))
    theirs = run_worker(__file__, "engine-vectorbt", str(folder), str(repeat))
    bars = ours["bars"]
    ratio = theirs["seconds"] / ours["run_backtest_seconds"]
    core_ratio = theirs["seconds"] / ours["core_seconds"]
    same = _close(ours["final_equity"], theirs["final_equity"]) and (
        ours["n_trades"] == theirs["n_trades"]
    )
    print(f"1. engine: SMA cross {FAST}/{SLOW} on {bars:,} EURUSD M1 bars, "
          f"{ours['entries']:,} entries, fees {FEES:g} per leg")  # fmt: skip
    rows = [
        ("solodesk run_backtest", ours["run_backtest_seconds"], ours["first_call_run_backtest"]),
        ("solodesk simulate (core)", ours["core_seconds"], ours["first_call_core"]),
        ("vectorbt from_signals", theirs["seconds"], theirs["first_call"]),
    ]
    for name, seconds, first in rows:
        print(f"   {name:<26} {seconds:8.3f} s  {bars / seconds / 1e6:8.1f} M bars/s  "
              f"{seconds / bars * 1e9:6.2f} ns/bar  first call {first:6.2f} s")  # fmt: skip
    numpy_ns = ours["numpy_sum_seconds"] / bars * 1e9
    print(f"   numpy close.sum()          {ours['numpy_sum_seconds']:8.4f} s  "
          f"{numpy_ns:6.2f} ns/bar (memory-bandwidth floor)")  # fmt: skip
    print(
        f"   signals (two SMAs + crossings) {ours['indicator_seconds']:.3f} s, outside the "
        "figures above"
    )
    print(
        f"   ratio run_backtest / vectorbt: {ratio:.1f}x (target >= 5x: "
        f"{'met' if ratio >= 5 else 'MISSED'}); core: {core_ratio:.1f}x"
    )
    print(
        f"   final equity {ours['final_equity']:.6f} vs {theirs['final_equity']:.6f}, trades "
        f"{ours['n_trades']} vs {theirs['n_trades']}: {'equal' if same else 'DIFFERENT'}"
    )
    return {"solodesk": ours, "vectorbt": theirs, "ratio": ratio, "core_ratio": core_ratio,
            "equal": same, "numpy_ns_per_bar": numpy_ns}  # fmt: skip


def _sweep(folder: Path, rows: int, count: int) -> dict[str, Any]:
    import polars as pl

    jobs = max(1, len(os.sched_getaffinity(0)))
    ours = run_worker(__file__, "sweep-solodesk", str(folder), str(rows), str(count), str(jobs))
    single = run_worker(__file__, "sweep-solodesk", str(folder), str(rows), str(count), "1")
    theirs = run_worker(__file__, "sweep-vectorbt", str(folder), str(rows), str(count), "50")
    a = pl.read_parquet(folder / f"sweep-solodesk-{jobs}.parquet")
    b = pl.read_parquet(folder / "sweep-vectorbt.parquet")
    joined = a.join(b, on=["fast", "slow"], suffix="_vbt")
    mismatched = sum(
        not _close(x, y) or t != u
        for x, y, t, u in joined.select(
            "final_equity", "final_equity_vbt", "n_trades", "n_trades_vbt"
        ).iter_rows()
    )
    ratio = theirs["seconds"] / ours["seconds"]
    print(f"2. sweep: {count} (fast, slow) pairs on the last {rows:,} bars")
    for name, r in ((f"solodesk, {jobs} processes", ours), ("solodesk, 1 process", single),
                    ("vectorbt, 50-column chunks", theirs)):  # fmt: skip
        print(f"   {name:<28} {r['seconds']:8.2f} s  {count / r['seconds']:8.1f} combinations/s"
              f"  peak RSS {r['peak_rss'] / 1e9:.2f} GB")  # fmt: skip
    print(
        f"   ratio: {ratio:.1f}x (target >= 5x: {'met' if ratio >= 5 else 'MISSED'}); one "
        f"process against vectorbt: {theirs['seconds'] / single['seconds']:.1f}x"
    )
    print(
        f"   {joined.height} combinations compared, {mismatched} differ in final equity "
        "(1e-9 relative) or trade count"
    )
    return {"solodesk": ours, "solodesk_single": single, "vectorbt": theirs, "ratio": ratio,
            "compared": joined.height, "mismatched": mismatched}  # fmt: skip


def _portfolio_figures(folder: Path) -> dict[str, Any]:
    result = run_worker(__file__, "portfolio", str(folder))
    print(
        f"3. portfolio: {result['symbols']} pairs, 2017 M5 ({result['bars']:,} bars, "
        f"{result['timeline']:,} on the shared timeline), risk parity, daily rebalance"
    )
    print(
        f"   run {result['seconds']:.2f} s (+ {result['prepare_seconds']:.2f} s for directions "
        f"and conversions), peak RSS {result['peak_rss'] / 1e9:.2f} GB "
        f"({result['rss_after_load'] / 1e9:.2f} GB after loading the bars)"
    )
    print(
        f"   {result['rebalances']} rebalances, {result['trades']:,} trades, final equity "
        f"{result['final_equity']:,.2f}"
    )
    return result


def main() -> int:
    """Run the benchmark, print its figures and its JSON result; return the exit status."""
    parser = argparse.ArgumentParser(description="Backtest benchmark (see the module docstring).")
    parser.add_argument("--data", help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (best kept)")
    parser.add_argument("--combos", type=int, default=1000, help="sweep combinations")
    parser.add_argument("--sweep-bars", type=int, default=1_000_000, help="bars of the sweep")
    parser.add_argument("--skip", default="", help="engine, sweep and/or portfolio")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        folder = Path(rest[0])
        if kind == "prepare-pairs":
            _prepare_pairs(folder, Path(rest[1]))
        elif kind == "engine-solodesk":
            _engine_solodesk(folder, int(rest[1]))
        elif kind == "engine-vectorbt":
            _engine_vectorbt(folder, int(rest[1]))
        elif kind == "sweep-solodesk":
            _sweep_solodesk(folder, int(rest[1]), int(rest[2]), int(rest[3]))
        elif kind == "sweep-vectorbt":
            _sweep_vectorbt(folder, int(rest[1]), int(rest[2]), int(rest[3]))
        elif kind == "portfolio":
            _portfolio(folder)
        else:
            parser.error(f"unknown worker {kind!r}")
        return 0

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    root = shared_data_root(args.data)
    source = root / HISTORY
    if not source.is_dir() or not any(source.glob("*.zip")):
        print(f"skipped: no HistData EURUSD zips at {source} (shared data absent; set "
              "SOLODESK_SHARED_DATA or pass --data)")  # fmt: skip
        return 0
    folder = Path(tempfile.mkdtemp(prefix="solodesk-bench-backtest-"))
    result: dict[str, Any] = run_context()
    try:
        ok = True
        if not {"engine", "sweep"} <= skip:
            print("reading the EURUSD M1 history with the project's ingest code ...", flush=True)
            run_worker(str(ROOT / "bench" / "features.py"), "prepare", str(source), str(folder),
                       "0", "M1")  # fmt: skip
        if "engine" not in skip:
            result["engine"] = _engine(folder, max(1, args.repeat))
            ok &= result["engine"]["equal"]
        if "sweep" not in skip:
            result["sweep"] = _sweep(folder, args.sweep_bars, args.combos)
            ok &= result["sweep"]["mismatched"] == 0
        if "portfolio" not in skip:
            run_worker(__file__, "prepare-pairs", str(folder), str(root / "histdata_m1"))
            result["portfolio"] = _portfolio_figures(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    path = write_result("backtest", result)
    print(f"result written to {path}")
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

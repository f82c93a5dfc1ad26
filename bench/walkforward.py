"""Walk-forward benchmark: how much of a tuned walk-forward is LightGBM itself.

``mt4/EURUSD60.csv`` (EURUSD H1, 2010-2018, about 52k bars) is ingested into a temporary desk;
then, in a fresh interpreter, the same work as ``solodesk walkforward --symbol EURUSD
--timeframe H1 --feature-set default --folds 8 --trials 20 --jobs 1 --threads 2``: the default
feature set computed from the bars, eight rolling windows plus the final one each tuned by 20
Optuna trials on three inner purged folds, fitted, traded out of sample with a 1-pip spread,
judged (bootstrap, PSR/DSR, SPA, PBO), tracked in MLflow, reported, and its model registered.

``lightgbm.train`` is wrapped by a timer in that interpreter, so the wall time spent inside it
is measured in the same run. The figure is the overhead ratio, pipeline wall time / time in
``lgb.train``: 1.0 would mean everything around the learner is free. Target <= 1.3.

Two ratios are printed: for the walk-forward job alone (``run_stored_walkforward``) and for
the whole command path including the feature computation. Imports happen inside the timed
span, as they do in the command.

Run: ``.venv/bin/python bench/walkforward.py [--data DIR] [--folds N] [--trials N]
[--threads N]``. Without the shared data it says so and exits 0. The last line of stdout is the
result as JSON, also written to ``$SOLODESK_HOME/bench/`` (or a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import ROOT, emit, run_context, run_worker, shared_data_root, write_result

TARGET = 1.3
SOURCE = Path("mt4") / "EURUSD60.csv"


def _prepare(source: Path, home: Path) -> None:
    from core.settings import Settings
    from services.ingest import IngestOptions, ingest

    ingest([str(source)], IngestOptions(symbol="EURUSD"), Settings(home=home))
    emit({"home": str(home)})


def _measure(home: Path, folds: int, trials: int, threads: int) -> None:
    started = time.perf_counter()
    # What importing models.learners does, done before LightGBM loads (see its docstring).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import lightgbm

    inside = {"seconds": 0.0, "calls": 0}
    original = lightgbm.train

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            inside["seconds"] += time.perf_counter() - t0
            inside["calls"] += 1

    lightgbm.train = timed  # type: ignore[assignment]

    from core.settings import Settings
    from core.timeframes import Timeframe
    from pipelines.backtest.config import BacktestConfig, CostConfig, SizingConfig
    from pipelines.train.config import SplitConfig, TuningConfig, WalkForwardConfig
    from services.research import load_research_inputs, run_stored_walkforward

    settings = Settings(home=home)
    inputs = load_research_inputs(
        settings, symbol="EURUSD", timeframe=Timeframe.H1, feature_set="default",
        params_path=ROOT / "params.yaml",
    )  # fmt: skip
    features_done = time.perf_counter()
    config = WalkForwardConfig(
        model="lightgbm",
        split=SplitConfig(folds=folds),
        tuning=TuningConfig(trials=trials),
        backtest=BacktestConfig(
            costs=CostConfig(spread_pips=1.0), sizing=SizingConfig.parse("fraction:1")
        ),
        threads=threads,
        jobs=1,
    )
    job_started = time.perf_counter()
    outcome = run_stored_walkforward(settings, inputs, config)
    finished = time.perf_counter()
    oos = outcome.summary.oos
    emit(
        {
            "rows": inputs.data.n,
            "features": len(inputs.data.feature_names),
            "folds": folds,
            "trials": trials,
            "threads": threads,
            "command_seconds": finished - started,
            "features_seconds": features_done - started,
            "job_seconds": finished - job_started,
            "lgb_seconds": inside["seconds"],
            "lgb_calls": inside["calls"],
            "oos_sharpe": oos.sharpe,
            "oos_sharpe_ci": list(oos.sharpe_ci),
            "dsr": oos.dsr,
            "trials_total": outcome.summary.trials.total,
        }
    )


def main() -> int:
    """Run the benchmark, print its figures and its JSON result; return the exit status."""
    parser = argparse.ArgumentParser(description="Walk-forward benchmark (see the docstring).")
    parser.add_argument("--data", help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--folds", type=int, default=8)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "prepare":
            _prepare(Path(rest[0]), Path(rest[1]))
        elif kind == "measure":
            _measure(Path(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]))
        else:
            parser.error(f"unknown worker {kind!r}")
        return 0

    source = shared_data_root(args.data) / SOURCE
    if not source.is_file():
        print(f"skipped: {source} not found (shared data absent; set SOLODESK_SHARED_DATA or "
              "pass --data)")  # fmt: skip
        return 0
    home = Path(tempfile.mkdtemp(prefix="solodesk-bench-walkforward-"))
    result: dict[str, Any] = run_context()
    try:
        print(f"ingesting {source} ...", flush=True)
        run_worker(__file__, "prepare", str(source), str(home))
        print(f"walk-forward: {args.folds} folds x {args.trials} trials, --jobs 1, LightGBM on "
              f"{args.threads} threads ...", flush=True)  # fmt: skip
        run = run_worker(
            __file__, "measure", str(home), str(args.folds), str(args.trials), str(args.threads)
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    job_ratio = run["job_seconds"] / run["lgb_seconds"]
    command_ratio = run["command_seconds"] / run["lgb_seconds"]
    result["walkforward"] = {**run, "job_ratio": job_ratio, "command_ratio": command_ratio,
                             "target": TARGET}  # fmt: skip

    def verdict(ratio: float) -> str:
        return f"{ratio:.2f}x (target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'})"

    low, high = run["oos_sharpe_ci"]
    rows = [
        ("rows x features", f"{run['rows']:,} x {run['features']}"),
        ("lgb.train calls", f"{run['lgb_calls']:,}"),
        ("time inside lgb.train", f"{run['lgb_seconds']:.1f} s"),
        ("walk-forward job wall time", f"{run['job_seconds']:.1f} s"),
        ("  + features (command path)", f"{run['command_seconds']:.1f} s"),
        ("overhead ratio, job", verdict(job_ratio)),
        ("overhead ratio, command path", verdict(command_ratio)),
        ("out-of-sample Sharpe (95% CI)", f"{run['oos_sharpe']:.2f} [{low:.2f}, {high:.2f}]"),
        ("deflated Sharpe", f"{run['dsr']:.3f} ({run['trials_total']} trials)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    path = write_result("walkforward", result)
    print(f"result written to {path}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

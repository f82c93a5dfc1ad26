"""Decision latency benchmark: a LightGBM model on the default feature set, one bar at a time.

On the MT4 EURUSD H1 history from the shared data (ingested with its H4 and D1 series, as
``solodesk ingest ... --resample H4 --resample D1`` stores them), with the desk's default
feature set of ``params.yaml`` (its H4 and D1 context included):

1. **Per-bar decision latency.** A LightGBM classifier (the learner's defaults, one thread)
   fitted on the first 8,000 bars; the live features warmed up on every bar before the last
   ``--bars`` (5,000 by default); then each of those bars, one at a time, goes through what the
   loop does at a bar's close: the H4 and D1 aggregation and the live features with their
   context (:class:`execution.live_features.LiveFeatures`), the model's P(up) on that row, the
   ``ml_model`` rule, and the risk engine's mark and order check. p50, p99 and max of the
   whole, and the p50 and p99 of each part, in microseconds. Target: p99 <= 2 ms.
2. **Event backtest of the model**, every bar of the history, through the trading loop
   (:func:`services.backtest.compute_backtest` with ``engine=event``: the features bar by bar
   in the loop, fills at once), in bars per second, beside the vectorized backtest of the same
   model (the research feature table, the model's probabilities, the compiled engine) and the
   batch feature computation alone (:meth:`FeatureRecipe.table` on the same bars). Both
   backtests must give the same trades (checked).
3. **Rebuild after a crash.** The time to bring the live features up to the last bar from the
   stored bars: from the set's warm-up window (what a resumed session does), and from the
   first bar of the history.
4. For reference, one :class:`pipelines.features.online.OnlineFeatures` update of the series'
   own default features (the Polars bar-by-bar path the per-bar engine replaces): p50 over 200
   bars.

Run: ``.venv/bin/python bench/decision_latency.py [--data DIR] [--bars N]``. Without the
shared data it says so and exits 0. The result is written as JSON to
``<bench_dir>/decision_latency-<UTC>Z.json`` and printed as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import ROOT, run_context, shared_data_root, write_result

SOURCE = Path("mt4") / "EURUSD60.csv"
FIT_BARS = 8_000
TARGET_P99_US = 2_000.0


def bench_home() -> Path:
    """Return the benchmark's desk, ``<bench_dir>/decision_latency/home``."""
    from core.settings import load_settings

    folder = load_settings().bench_dir
    return (folder if folder.is_absolute() else ROOT / folder) / "decision_latency" / "home"


def _percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {
        "p50": float(np.percentile(array, 50)),
        "p99": float(np.percentile(array, 99)),
        "max": float(array.max()),
    }


def run(source: Path, bars: int) -> dict[str, Any]:
    """Measure everything on the history in ``source``; return the figures."""
    from core.settings import RiskSettings, load_settings
    from core.timeframes import Timeframe
    from core.types import VolumeKind
    from execution.feeds import slice_batch
    from execution.model_signals import ModelRelease
    from execution.risk import OrderCheck, RiskEngine
    from feature_store.series import load_series
    from models.learners.registry import make_learner
    from models.strategies.ml_model import DEFAULT_COLUMN, MlModel
    from pipelines.backtest.config import BacktestConfig, Engine
    from pipelines.evaluate.dataset import FeatureRecipe, research_data
    from pipelines.features import default_feature_set
    from pipelines.features.online import OnlineFeatures
    from pipelines.features.sets import SeriesFrame
    from pipelines.train.config import RuleConfig
    from pipelines.train.tuning import TrainedModel
    from services.backtest import compute_backtest
    from services.features import load_feature_set
    from services.ingest import IngestOptions, ingest
    from services.live_model import model_inputs, model_probabilities, model_signals, release_params
    from services.runtime import series_batch

    home = bench_home()
    settings = load_settings(home=home)
    if not settings.store_dir.exists():
        options = IngestOptions(reports=False, resample=(Timeframe.H4, Timeframe.D1))
        ingest([str(source)], options, settings)
    data = load_series(settings, "EURUSD", Timeframe.H1)
    params = ROOT / "params.yaml"
    resolved = load_feature_set(params, "default").resolve().for_timeframe(Timeframe.H1)
    version = resolved.definition_hash()

    class _Reads:
        feature_names: tuple[str, ...] = ()

    def release(predictor: object) -> ModelRelease:
        return ModelRelease(
            name="bench", version=1, predictor=predictor, feature_set="default",
            feature_set_version=version, upper=0.55, lower=0.45, allow_short=True, scores={},
        )  # fmt: skip

    inputs = model_inputs(settings, data, release(_Reads()), params)
    frame = inputs.frame
    series = SeriesFrame(data.bars, frame.timeframe, frame.clock, frame.has_spread,
                         frame.volume_kind)  # fmt: skip
    started = time.perf_counter()
    table = FeatureRecipe(resolved, inputs.clocks).table(series)
    batch_seconds = time.perf_counter() - started
    head = data.bars.head(FIT_BARS)
    fit_table = FeatureRecipe(resolved, inputs.clocks).table(
        SeriesFrame(head, frame.timeframe, frame.clock, frame.has_spread, frame.volume_kind)
    )
    rows = research_data(fit_table, head)
    learner = make_learner("lightgbm", seed=0, threads=1).fit(rows.X, rows.y, weight=rows.weight)
    model = TrainedModel(learner, rows.feature_names, RuleConfig(), "lightgbm", {})
    chosen = release(model)
    all_bars = series_batch(data)
    n = len(all_bars)
    start = n - bars

    # 3. rebuild after a crash (and the warm-up of the latency run)
    started = time.perf_counter()
    signals = model_signals(inputs, chosen)
    live = signals.features
    live.push(slice_batch(all_bars, 0, start))
    rebuild_full = time.perf_counter() - started
    keep = inputs.warmup_bars()
    started = time.perf_counter()
    window = model_signals(inputs, chosen).features
    window.push(slice_batch(all_bars, max(0, start - keep), start))
    rebuild_window = time.perf_counter() - started

    # 1. per-bar decision latency
    index = np.array([live.columns.index(c) for c in model.feature_names], dtype=np.intp)
    stream = MlModel(upper=0.55, lower=0.45, allow_short=True).incremental()
    risk = RiskEngine.fresh(RiskSettings(max_daily_loss=0.05, max_trailing_drawdown=0.2), "bench")
    from core.times import utc_from_ns

    parts: dict[str, list[float]] = {"features": [], "predict": [], "rule_risk": []}
    total: list[float] = []
    position = 0.0
    for k in range(start, n):
        one = slice_batch(all_bars, k, k + 1)
        t0 = time.perf_counter_ns()
        row = live.push(one)
        t1 = time.perf_counter_ns()
        proba = model.predict_proba(row[:, index])
        t2 = time.perf_counter_ns()
        target = stream.update({"close": one.close}, {DEFAULT_COLUMN: proba}).target[-1]
        at = utc_from_ns(int(one.end[0]))
        risk.on_mark(at, 100_000.0)
        units = (target - position) * 100_000.0
        risk.check(OrderCheck(ts=at, symbol="EURUSD", position_units=position * 100_000.0,
                              order_units=units, price=float(one.close[0]), to_account=1.0,
                              contract_size=100_000.0, equity=100_000.0, gross_exposure=0.0,
                              open_orders=0, orders_last_minute=0, is_entry=units != 0.0))  # fmt: skip
        position = float(target)
        t3 = time.perf_counter_ns()
        parts["features"].append((t1 - t0) / 1e3)
        parts["predict"].append((t2 - t1) / 1e3)
        parts["rule_risk"].append((t3 - t2) / 1e3)
        total.append((t3 - t0) / 1e3)

    # 2. event and vectorized backtests of the model over every bar
    config = BacktestConfig.from_options(spread=1.0, sizing="fraction:1")
    strategy_params = release_params(chosen)
    started = time.perf_counter()
    event = compute_backtest(
        data, MlModel, strategy_params, config, None, run_id="event", report=False,
        engine=Engine.EVENT, signals=model_signals(inputs, chosen),
    ).result  # fmt: skip
    event_seconds = time.perf_counter() - started
    started = time.perf_counter()
    vector = compute_backtest(
        data, MlModel, strategy_params, config, model_probabilities(inputs, chosen, data),
        run_id="vector", report=False,
    ).result  # fmt: skip
    vector_seconds = time.perf_counter() - started
    keys = ["entry_ts", "exit_ts", "direction"]
    same_trades = event.trades.select(keys).equals(vector.trades.select(keys))
    equity_gap = abs(event.equity[-1] / vector.equity[-1] - 1.0)

    # 4. the Polars bar-by-bar path, for reference
    own = [s for s in default_feature_set()]
    online = OnlineFeatures(own, has_spread=frame.has_spread, volume_kind=frame.volume_kind
                            if frame.volume_kind is not VolumeKind.NONE else VolumeKind.NONE,
                            history=data.bars.slice(start - 2_000, 2_000))  # fmt: skip
    online_times = []
    for row_dict in data.bars.slice(start, 200).iter_rows(named=True):
        t0 = time.perf_counter_ns()
        online.update(row_dict)
        online_times.append((time.perf_counter_ns() - t0) / 1e3)

    latency = _percentiles(total)
    return {
        "series": "EURUSD H1 (MT4)",
        "bars_total": n,
        "bars_measured": bars,
        "features": len(live.columns),
        "model_inputs": len(model.feature_names),
        "latency_us": latency,
        "parts_us": {name: _percentiles(v) for name, v in parts.items()},
        "target_p99_us": TARGET_P99_US,
        "target_met": latency["p99"] <= TARGET_P99_US,
        "event_backtest": {"bars": n, "seconds": event_seconds, "bars_per_s": n / event_seconds},
        "vector_backtest": {"bars": n, "seconds": vector_seconds, "bars_per_s": n / vector_seconds},
        "batch_features": {"bars": n, "seconds": batch_seconds, "bars_per_s": n / batch_seconds},
        "trades": event.trades.height,
        "same_trades": bool(same_trades),
        "final_equity_relative_gap": float(equity_gap),
        "rebuild_seconds": {
            "window": rebuild_window,
            "window_bars": min(keep, start),
            "full": rebuild_full,
            "full_bars": start,
        },
        "online_features_update_us_p50": float(np.percentile(online_times, 50)),
        "table_rows": table.frame.height,
    }


def main() -> int:
    """Run the benchmark, print its figures and its JSON result; return the exit status."""
    parser = argparse.ArgumentParser(description="Decision latency benchmark (module docstring).")
    parser.add_argument("--data", help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--bars", type=int, default=5_000, help="the last N bars measured")
    args = parser.parse_args()
    source = shared_data_root(args.data) / SOURCE
    if not source.is_file():
        print(f"skipped: no {SOURCE} under the shared data (set SOLODESK_SHARED_DATA or --data)")
        return 0
    result = {**run_context(), **run(source, args.bars)}
    lat, parts = result["latency_us"], result["parts_us"]
    print(f"per-bar decision on {result['series']}, last {result['bars_measured']:,} bars, "
          f"{result['features']} live features, {result['model_inputs']} model inputs:")  # fmt: skip
    print(
        f"  p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, max {lat['max']:.0f} us "
        f"(target p99 <= {TARGET_P99_US:.0f} us: {'met' if result['target_met'] else 'MISSED'})"
    )
    for name, figures in parts.items():
        print(f"  {name}: p50 {figures['p50']:.0f} us, p99 {figures['p99']:.0f} us")
    for key in ("event_backtest", "vector_backtest", "batch_features"):
        f = result[key]
        print(f"{key.replace('_', ' ')}: {f['bars']:,} bars in {f['seconds']:.2f} s "
              f"({f['bars_per_s']:,.0f} bars/s)")  # fmt: skip
    print(f"same trades: {result['same_trades']} ({result['trades']} trades), final equity gap "
          f"{result['final_equity_relative_gap']:.2e}")  # fmt: skip
    r = result["rebuild_seconds"]
    print(f"rebuild after a crash: {r['window']:.2f} s from the {r['window_bars']:,}-bar warm-up "
          f"window, {r['full']:.2f} s from the first bar ({r['full_bars']:,} bars)")  # fmt: skip
    print(f"OnlineFeatures.update (Polars path, own features only): p50 "
          f"{result['online_features_update_us_p50'] / 1e3:.1f} ms")  # fmt: skip
    from core.times import iso_z, utc_now

    result["finished"] = iso_z(utc_now())
    path = write_result("decision_latency", result)
    print(f"written to {path}")
    print(json.dumps(result))
    return 0 if result["same_trades"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

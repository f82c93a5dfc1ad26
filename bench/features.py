"""Feature benchmark: the default feature set over the full EURUSD M1 history and its H1 bars.

The bars come from the HistData zips of the shared data (``histdata_m1/eurusd``, ~5.95M
one-minute bars 2000-2018), read, parsed and checked by the project's own ingest code
(``services.ingest.load_sources``, then ``pipelines.ingest.merge.combine_batches``) and
resampled to H1 by ``pipelines.resample.resample_bars``; both are written once to a temporary
Parquet file (ts, open, high, low, close, volume).

For each timeframe three workers run, each in a subprocess of its own, so each peak RSS
belongs to that measurement alone:

1. solodesk: ``compute_features(bars, default_feature_set(), ...)``;
2. the reference: ``bench/pandas_features.py``, the same features in vectorized pandas; its
   values are checked against solodesk's and the speed targets are judged against it;
3. the same pandas code with pandas' own ``rolling().std()``, timed only: faster than the
   reference's two-pass std, but it drifts on long series, so its values are not checked.

A worker reads its input, warms up on the first 1,000 bars (Numba's compiled kernels load,
pandas' first calls), then times the feature computation alone; the input read and the output
write are timed apart. Peak RSS is the worker's own high-water mark (``VmHWM`` of
``/proc/self/status``; ``ru_maxrss`` elsewhere) taken right after the computation: input frame
included, output write excluded. ``--repeat N`` keeps the fastest of N runs and the largest
peak RSS.

Then the two outputs are compared value by value: the same columns and ts, identical null
masks (null or NaN counts as missing on both sides), and every value equal:

- strict rule: bitwise, or to 1e-9 relative, or both values within 1e-12 of zero (the only
  place an absolute tolerance applies);
- scaled rule (the verdict unless ``--strict``): the strict rule, or, for the features that
  subtract nearly equal terms (MACD, distances to averages, z-scores, %b, rate of change,
  slope), a difference within 1e-9 of the size of those terms on that row, as
  ``pandas_features.operand_scales`` gives it. Two correct implementations that round their
  EMAs and means differently differ there by far more than 1e-9 relative wherever the
  feature is near 0; any larger difference still fails.

The values compared, the values beyond 1e-9 relative and the worst relative difference are
printed per feature family; a failed check makes the exit status 1.

Targets printed beside the figures (never lowered): solodesk >= 3x faster than pandas (2x at
the least), <= 60 s and <= 6 GB (6 * 10^9 bytes) peak RSS for the M1 history, on 2 cores.

Run: ``.venv/bin/python bench/features.py [--data DIR] [--repeat N] [--timeframes M1,H1]
[--rows N] [--volume-features] [--strict]``. The data folder is ``$SOLODESK_SHARED_DATA`` or
``../shared/data`` from the repository root; without it the benchmark says so and exits 0. The
last line of stdout is the result as JSON; it is also written to ``$SOLODESK_HOME/bench/`` (or a
temporary folder).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchkit import (
    HISTORY,
    emit,
    gb,
    git_state,
    machine,
    rate,
    run_worker,
    shared_data_root,
    write_result,
)

from core.times import iso_z, utc_now

TARGET_SPEEDUP = 3.0
MIN_SPEEDUP = 2.0
TARGET_SECONDS = 60.0
# 6 GB read strictly: 6 * 10^9 bytes (6 GiB would allow 7 % more).
TARGET_PEAK_RSS = 6 * 10**9
REL_TOLERANCE = 1e-9
ZERO_TOLERANCE = 1e-12
WARM_UP_ROWS = 1_000
SIDES = ("solodesk", "pandas")
# pandas with its own rolling std: timed only, its values drift on long series.
NATIVE = "pandas-native-std"
WORKERS = (*SIDES, NATIVE)


# -- measuring inside a worker --------------------------------------------------------------


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes.

    On Linux the high-water mark of the process's own memory (``VmHWM``): ``ru_maxrss``
    keeps, across ``exec``, the peak of the parent forked from, so a worker started by a
    driver holding a large frame would report the driver's memory.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def load_pandas_reference() -> ModuleType:
    """Import ``bench/pandas_features.py`` by its path (``bench`` is not a package)."""
    path = Path(__file__).resolve().parent / "pandas_features.py"
    spec = importlib.util.spec_from_file_location("solodesk_bench_pandas_features", path)
    if spec is None or spec.loader is None:
        msg = f"cannot load {path}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _solodesk_worker(source: Path, output: Path | None, volume_kind: str) -> None:
    import polars as pl

    from core.types import VolumeKind
    from pipelines.features import compute_features, default_feature_set

    specs = default_feature_set()
    kind = VolumeKind(volume_kind)
    start = time.perf_counter()
    bars = pl.read_parquet(source)
    read_seconds = time.perf_counter() - start
    compute_features(bars.head(WARM_UP_ROWS), specs, has_spread=False, volume_kind=kind)
    gc.collect()
    rss_before = peak_rss_bytes()
    start = time.perf_counter()
    features = compute_features(bars, specs, has_spread=False, volume_kind=kind)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    write_seconds = None
    if output is not None:
        start = time.perf_counter()
        features.write_parquet(output, compression="uncompressed")
        write_seconds = time.perf_counter() - start
    emit(
        {
            "rows": bars.height,
            "features": features.width - 1,
            "seconds": seconds,
            "read_seconds": read_seconds,
            "write_seconds": write_seconds,
            "peak_rss_before": rss_before,
            "peak_rss": peak,
            "threads": pl.thread_pool_size(),
        }
    )


def scales_path(output: Path) -> Path:
    """Return where the pandas worker writes the operand scales beside its ``output``."""
    return output.with_name(output.stem + "-scales.parquet")


def _pandas_worker(
    source: Path, output: Path | None, volume_kind: str, native_std: bool = False
) -> None:
    import pandas as pd

    reference = load_pandas_reference()
    start = time.perf_counter()
    bars = pd.read_parquet(source)
    read_seconds = time.perf_counter() - start
    reference.pandas_features(bars.head(WARM_UP_ROWS), False, volume_kind, native_std=native_std)
    gc.collect()
    rss_before = peak_rss_bytes()
    start = time.perf_counter()
    features = reference.pandas_features(bars, False, volume_kind, native_std=native_std)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    width = features.shape[1] - 1
    write_seconds = None
    if output is not None:
        start = time.perf_counter()
        features.to_parquet(output, compression=None, index=False)
        write_seconds = time.perf_counter() - start
        del features
        scales = reference.operand_scales(bars, False, volume_kind)
        scales.to_parquet(scales_path(output), compression=None, index=False)
    emit(
        {
            "rows": len(bars),
            "features": width,
            "seconds": seconds,
            "read_seconds": read_seconds,
            "write_seconds": write_seconds,
            "peak_rss_before": rss_before,
            "peak_rss": peak,
            "pandas": pd.__version__,
        }
    )


def _prepare_worker(source: Path, folder: Path, rows: int, timeframes: list[str]) -> None:
    """Read the HistData zips with the project's ingest code, write M1 (and H1) Parquet."""
    import polars as pl

    from core.clocks import UTC as UTC_CLOCK
    from core.settings import Settings
    from core.timeframes import Timeframe
    from core.times import iso_z
    from pipelines.ingest.merge import combine_batches
    from pipelines.resample import resample_bars, resampled_volume_kind
    from services.ingest import IngestOptions, load_sources

    start = time.perf_counter()
    home = folder / "home"
    batches = load_sources([str(source)], IngestOptions(reports=False), Settings(home=home))
    kinds = {b.volume_kind for b, _ in batches}
    quarantined = sum(b.quarantine.height for b, _ in batches)
    bars = combine_batches([b.bars for b, _ in batches]).bars
    del batches
    if rows > 0:
        bars = bars.head(rows)
    bars = bars.select("ts", "open", "high", "low", "close", "volume").rechunk()
    volume_kind = kinds.pop() if len(kinds) == 1 else None
    if volume_kind is None:
        msg = f"the sources disagree on the volume kind: {sorted(map(str, kinds))}"
        raise SystemExit(msg)
    parse_seconds = time.perf_counter() - start
    series: dict[str, Any] = {}
    if "M1" in timeframes:
        bars.write_parquet(folder / "M1.parquet")
        series["M1"] = {"rows": bars.height, "volume_kind": str(volume_kind)}
    if "H1" in timeframes:
        hourly = resample_bars(
            bars.with_columns(spread=pl.lit(None, dtype=pl.Float64)),
            Timeframe.M1,
            Timeframe.H1,
            anchor=UTC_CLOCK,
            volume_kind=volume_kind,
        ).select("ts", "open", "high", "low", "close", "volume")
        hourly.write_parquet(folder / "H1.parquet")
        kind = resampled_volume_kind(volume_kind, Timeframe.M1)
        series["H1"] = {"rows": hourly.height, "volume_kind": str(kind)}
    emit(
        {
            "seconds": time.perf_counter() - start,
            "parse_seconds": parse_seconds,
            "quarantined": quarantined,
            "m1_rows": bars.height,
            "first": iso_z(bars["ts"][0]) if bars.height else None,
            "last": iso_z(bars["ts"][-1]) if bars.height else None,
            "series": series,
        }
    )


# -- the equality check ---------------------------------------------------------------------


def compare_columns(a: Any, b: Any, scale: Any = None) -> dict[str, Any]:
    """Compare two float64 arrays of one feature (NaN = missing); return the figures.

    A value is equal under the strict rule if it is bitwise equal, within ``REL_TOLERANCE``
    relative, or both values lie within ``ZERO_TOLERANCE`` of zero; under the scaled rule also
    if the difference is within ``REL_TOLERANCE`` of ``scale``, the size of the terms the
    feature subtracts on that row (see ``pandas_features.operand_scales``), when given.
    """
    import numpy as np

    missing_a, missing_b = np.isnan(a), np.isnan(b)
    both = ~missing_a & ~missing_b
    a, b = a[both], b[both]
    terms = np.zeros(a.shape[0]) if scale is None else np.nan_to_num(scale[both], nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        same = a == b  # infinities of one sign included
        diff = np.abs(a - b)
        rel = np.where(same, 0.0, diff / np.maximum(np.abs(a), np.abs(b)))
    near_zero = (np.abs(a) <= ZERO_TOLERANCE) & (np.abs(b) <= ZERO_TOLERANCE)
    strict = same | (rel <= REL_TOLERANCE) | near_zero
    scaled = strict | (diff <= REL_TOLERANCE * terms)
    away = ~near_zero

    def worst(failed: Any, by: Any) -> str | None:
        if not np.any(failed):
            return None
        at = np.flatnonzero(failed)
        position = int(at[np.argmax(by[at])])
        return f"solodesk {float(a[position])!r}, pandas {float(b[position])!r}"

    return {
        "compared": int(a.shape[0]),
        "missing": int(np.count_nonzero(missing_a)),
        "mask_differs": int(np.count_nonzero(missing_a != missing_b)),
        "bitwise_equal": int(np.count_nonzero(same)),
        "near_zero": int(np.count_nonzero(near_zero & ~same)),
        "beyond_relative": int(np.count_nonzero(~strict)),
        "beyond_scaled": int(np.count_nonzero(~scaled)),
        "worst_rel": float(np.nanmax(rel[away])) if np.any(away) else 0.0,
        "scaled_rule_used": int(np.count_nonzero(scaled & ~strict)),
        "largest_scale": float(terms.max()) if terms.shape[0] else 0.0,
        "worst_strict_failure": worst(~strict, rel),
        "worst_scaled_failure": worst(~scaled, diff),
    }


def compare_outputs(solodesk: Path, reference: Path, scales: Path, strict: bool) -> dict[str, Any]:
    """Compare two feature files column by column; return the verdict and figures by family."""
    import polars as pl

    from pipelines.features import default_feature_set

    family_of = {s.name: str(s.family) for s in default_feature_set()}
    with_scale = set(pl.read_parquet_schema(scales))
    ours = pl.read_parquet_schema(solodesk)
    theirs = pl.read_parquet_schema(reference)
    problems: list[str] = []
    if list(ours) != list(theirs):
        problems.append(f"columns differ: solodesk {list(ours)} vs pandas {list(theirs)}")
        return {"ok": False, "problems": problems, "families": {}, "features": {}}
    left_ts = pl.read_parquet(solodesk, columns=["ts"])["ts"]
    right_ts = pl.read_parquet(reference, columns=["ts"])["ts"].cast(left_ts.dtype)
    if not left_ts.equals(right_ts):
        problems.append("the ts columns differ")
    rule_name = "strict" if strict else "scaled"
    failed_key = "beyond_relative" if strict else "beyond_scaled"
    families: dict[str, dict[str, Any]] = {}
    features: dict[str, dict[str, Any]] = {}
    for name in list(ours)[1:]:
        a = pl.read_parquet(solodesk, columns=[name])[name].cast(pl.Float64).to_numpy()
        b = pl.read_parquet(reference, columns=[name])[name].cast(pl.Float64).to_numpy()
        scale = (
            pl.read_parquet(scales, columns=[name])[name].to_numpy() if name in with_scale else None
        )
        entry = {"family": family_of.get(name, "?"), **compare_columns(a, b, scale)}
        features[name] = entry
        family = families.setdefault(
            entry["family"],
            {"features": 0, "compared": 0, "bitwise_equal": 0, "near_zero": 0,
             "mask_differs": 0, "beyond_relative": 0, "beyond_scaled": 0, "worst_rel": 0.0,
             "worst_feature": None},
        )  # fmt: skip
        family["features"] += 1
        for key in ("compared", "bitwise_equal", "near_zero", "mask_differs",
                    "beyond_relative", "beyond_scaled"):  # fmt: skip
            family[key] += entry[key]
        if entry["worst_rel"] >= family["worst_rel"]:
            family["worst_rel"] = entry["worst_rel"]
            family["worst_feature"] = name
        if entry["mask_differs"]:
            problems.append(f"{name}: null masks differ on {entry['mask_differs']:,} rows")
        if entry[failed_key]:
            rule = "relative" if strict or scale is None else "relative and of the terms"
            worst = "largest relative" if strict else "largest"
            problems.append(
                f"{name}: {entry[failed_key]:,} values differ by more than {REL_TOLERANCE:g} "
                f"{rule}; {worst} difference: {entry['worst_' + rule_name + '_failure']}"
            )
    return {
        "ok": not problems,
        "rule": rule_name,
        "problems": problems,
        "families": families,
        "features": features,
    }


# -- the driver -----------------------------------------------------------------------------


def _best_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the fastest run, with every time and the largest peak RSS of all runs."""
    best = dict(min(runs, key=lambda r: float(r["seconds"])))
    best["all_seconds"] = [r["seconds"] for r in runs]
    best["peak_rss_fastest_run"] = best["peak_rss"]
    # Memory is judged on the worst run, not the fastest one.
    best["peak_rss"] = max(int(r["peak_rss"]) for r in runs)
    return best


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _measure(
    timeframe: str,
    info: dict[str, Any],
    folder: Path,
    repeat: int,
    volume_kind: str,
    strict: bool,
) -> dict[str, Any]:
    """Run both workers ``repeat`` times on one timeframe; the first runs write their output."""
    source = folder / f"{timeframe}.parquet"
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in WORKERS}
    outputs = {side: folder / f"{timeframe}-{side}-features.parquet" for side in SIDES}
    for n in range(repeat):
        for side in WORKERS:
            output = str(outputs[side]) if n == 0 and side in outputs else "-"
            run = run_worker(__file__, side, str(source), volume_kind, output)
            runs[side].append(run)
            print(
                f"  {timeframe} {side}, run {n + 1} of {repeat}: started {run['started_utc']} UTC "
                f"(load {run['load_before']:.2f}), {run['seconds']:.2f} s",
                flush=True,
            )
    best = {side: _best_run(runs[side]) for side in WORKERS}
    print(f"  {timeframe}: comparing the two outputs ...", flush=True)
    scales = scales_path(outputs["pandas"])
    check = compare_outputs(outputs["solodesk"], outputs["pandas"], scales, strict)
    for path in (*outputs.values(), scales):
        path.unlink(missing_ok=True)
    solodesk = best["solodesk"]["seconds"]
    return {
        "timeframe": timeframe,
        **info,
        **best,
        "speedup": best["pandas"]["seconds"] / solodesk,
        "speedup_native_std": best[NATIVE]["seconds"] / solodesk,
        "check": check,
    }


def _report(results: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Print the timing table, the targets and the equality check; return the targets."""
    table: list[tuple[str, ...]] = [
        ("series", "side", "rows", "features", "seconds (best)", "all runs", "rows/s",
         "peak RSS", "RSS before"),
    ]  # fmt: skip
    for r in results:
        for side in WORKERS:
            m = r[side]
            table.append((
                r["timeframe"], side, f"{m['rows']:,}", str(m["features"]),
                f"{m['seconds']:.2f} s", ", ".join(f"{s:.2f}" for s in m["all_seconds"]),
                rate(m["rows"] / m["seconds"]), gb(m["peak_rss"]), gb(m["peak_rss_before"]),
            ))  # fmt: skip
    _print_table(table)
    print()
    for r in results:
        print(
            f"{r['timeframe']}: pandas / solodesk = {r['pandas']['seconds']:.2f} s / "
            f"{r['solodesk']['seconds']:.2f} s = {r['speedup']:.2f}x  (the checked reference; "
            f"with pandas' own drifting rolling std: {r['speedup_native_std']:.2f}x)"
        )
    print()
    targets: dict[str, list[Any]] = {}
    rows: list[tuple[str, ...]] = [("target", "figure", "verdict")]
    for r in results:
        tf, speedup = r["timeframe"], r["speedup"]
        targets[f"{tf}_speedup"] = [TARGET_SPEEDUP, speedup, speedup >= TARGET_SPEEDUP]
        targets[f"{tf}_speedup_floor"] = [MIN_SPEEDUP, speedup, speedup >= MIN_SPEEDUP]
        rows.append((f"{tf}: >= {TARGET_SPEEDUP:g}x faster than pandas", f"{speedup:.2f}x",
                     _verdict(speedup >= TARGET_SPEEDUP)))  # fmt: skip
        rows.append((f"{tf}: >= {MIN_SPEEDUP:g}x faster than pandas (at the least)",
                     f"{speedup:.2f}x", _verdict(speedup >= MIN_SPEEDUP)))  # fmt: skip
        if tf == "M1":
            seconds, peak = r["solodesk"]["seconds"], r["solodesk"]["peak_rss"]
            targets["M1_seconds"] = [TARGET_SECONDS, seconds, seconds <= TARGET_SECONDS]
            targets["M1_peak_rss"] = [TARGET_PEAK_RSS, peak, peak <= TARGET_PEAK_RSS]
            rows.append((f"M1: <= {TARGET_SECONDS:g} s", f"{seconds:.2f} s",
                         _verdict(seconds <= TARGET_SECONDS)))  # fmt: skip
            rows.append((f"M1: peak RSS <= {gb(TARGET_PEAK_RSS)}", gb(peak),
                         _verdict(peak <= TARGET_PEAK_RSS)))  # fmt: skip
    _print_table(rows)
    return targets


def _report_check(results: list[dict[str, Any]], strict: bool) -> bool:
    print(
        f"\nequality check: null masks identical (null or NaN = missing on both sides), and every "
        f"value equal\n- strictly: bitwise, or to {REL_TOLERANCE:g} relative, or both values "
        f"within {ZERO_TOLERANCE:g} of zero (an absolute\n  tolerance only there);\n"
        f"- scaled: strictly, or, for the features that subtract nearly equal terms (MACD, "
        f"distances to\n  averages, z-scores, %b, rate of change, slope), the difference "
        f"within {REL_TOLERANCE:g} of the size of\n  those terms on that row (e.g. "
        "(|c| + |mean|) / std for a z-score): rounding in the terms, blown up\n  by the "
        "cancellation, passes; anything larger does not.\n"
        f"Verdict on the {'strict' if strict else 'scaled'} rule "
        f"({'--strict' if strict else 'pass --strict for the strict one'})."
    )
    ok = True
    for r in results:
        check = r["check"]
        ok = ok and check["ok"]
        print(f"\n{r['timeframe']}: {'PASS' if check['ok'] else 'FAIL'}")
        rows: list[tuple[str, ...]] = [
            ("family", "features", "values compared", "bitwise equal", "both near 0",
             "mask diffs", "beyond 1e-9 rel", "beyond scaled rule", "worst rel diff", "in"),
        ]  # fmt: skip
        for name, f in check["families"].items():
            rows.append((
                name, str(f["features"]), f"{f['compared']:,}", f"{f['bitwise_equal']:,}",
                f"{f['near_zero']:,}", f"{f['mask_differs']:,}", f"{f['beyond_relative']:,}",
                f"{f['beyond_scaled']:,}", f"{f['worst_rel']:.2e}", str(f["worst_feature"] or ""),
            ))  # fmt: skip
        families = check["families"].values()
        rows.append((
            "all", str(len(check["features"])), f"{sum(f['compared'] for f in families):,}",
            f"{sum(f['bitwise_equal'] for f in families):,}",
            f"{sum(f['near_zero'] for f in families):,}",
            f"{sum(f['mask_differs'] for f in families):,}",
            f"{sum(f['beyond_relative'] for f in families):,}",
            f"{sum(f['beyond_scaled'] for f in families):,}", "", "",
        ))  # fmt: skip
        _print_table(rows)
        strict_only = [
            f"{name} {f['beyond_relative']:,} (worst {f['worst_rel']:.1e})"
            for name, f in check["features"].items()
            if f["beyond_relative"] and not f["beyond_scaled"]
        ]
        if strict_only and not strict:
            print("  beyond 1e-9 relative but within the scaled rule: " + ", ".join(strict_only))
        for problem in check["problems"][:40]:
            print(f"  {problem}")
        if len(check["problems"]) > 40:
            print(f"  ... and {len(check['problems']) - 40} more")
    return ok


def main() -> int:
    """Run the benchmark, print its tables and its JSON result; return the exit status."""
    parser = argparse.ArgumentParser(description="Feature benchmark (see the module docstring).")
    parser.add_argument("--data", help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side (best kept)")
    parser.add_argument("--timeframes", default="M1,H1", help="M1, H1 or both (default M1,H1)")
    parser.add_argument("--rows", type=int, default=0, help="use only the first N M1 bars")
    parser.add_argument(
        "--volume-features",
        action="store_true",
        help="treat the volume column as tick volume, so the volume features are computed too",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on any value beyond 1e-9 relative, even where the feature's scale allows it",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind in WORKERS:
            output = None if rest[2] == "-" else Path(rest[2])
            if kind == "solodesk":
                _solodesk_worker(Path(rest[0]), output, rest[1])
            else:
                _pandas_worker(Path(rest[0]), output, rest[1], native_std=kind == NATIVE)
        elif kind == "prepare":
            _prepare_worker(Path(rest[0]), Path(rest[1]), int(rest[2]), rest[3].split(","))
        else:
            parser.error(f"unknown worker {kind!r}")
        return 0

    timeframes = [t.strip().upper() for t in args.timeframes.split(",") if t.strip()]
    unknown = sorted(set(timeframes) - {"M1", "H1"})
    if unknown or not timeframes:
        parser.error(f"--timeframes takes M1, H1 or M1,H1, not {args.timeframes!r}")
    source = shared_data_root(args.data) / HISTORY
    zips = sorted(source.glob("*.zip")) if source.is_dir() else []
    if not zips:
        print(
            f"skipped: no HistData EURUSD zips at {source} (shared data absent; "
            "set SOLODESK_SHARED_DATA or pass --data)"
        )
        return 0
    repeat = max(1, args.repeat)
    folder = Path(tempfile.mkdtemp(prefix="solodesk-bench-features-"))
    try:
        print(f"feature benchmark: {len(zips)} HistData EURUSD M1 zips in {source}", flush=True)
        print("  reading the zips with the project's ingest code, writing Parquet ...", flush=True)
        prepared = run_worker(
            __file__,
            "prepare",
            str(source),
            str(folder),
            str(max(0, args.rows)),
            ",".join(timeframes),
        )
        print(
            f"  {prepared['m1_rows']:,} M1 bars "
            f"({prepared['first']} .. {prepared['last']}), "
            f"{prepared['quarantined']} quarantined by the ingest rules; "
            f"prepared in {prepared['seconds']:.1f} s",
            flush=True,
        )
        results = []
        for tf in timeframes:
            info = prepared["series"][tf]
            kind = "tick" if args.volume_features else info["volume_kind"]
            results.append(_measure(tf, info, folder, repeat, kind, args.strict))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    kinds = ", ".join(f"{r['timeframe']} {r['volume_kind']}" for r in results)
    print()
    print(
        "solodesk: pipelines.features.compute_features(bars, default_feature_set()); pandas: "
        "bench/pandas_features.py.\nSeconds: the feature computation alone (input read and "
        "output write excluded), best of the runs.\nPeak RSS: the worker's peak right after the "
        "computation (input frame included), worst of the runs;\n'RSS before': its peak before "
        f"the computation (input read, {WARM_UP_ROWS:,}-bar warm-up done).\n"
        f"Volume kinds: {kinds}{' (treated as tick volume)' if args.volume_features else ''}; "
        "no spread column."
    )
    print()
    targets = _report(results)
    ok = _report_check(results, args.strict)

    result = {
        "benchmark": "features",
        "at": iso_z(utc_now()),
        "source": str(source),
        "zips": len(zips),
        "prepare": prepared,
        "repeat": repeat,
        "volume_features": args.volume_features,
        "results": results,
        "targets": targets,
        "equal": ok,
        "rule": "strict" if args.strict else "scaled",
        "tolerance": {"relative": REL_TOLERANCE, "near_zero_absolute": ZERO_TOLERANCE},
        "machine": machine(),
        "git": git_state(),
    }
    path = write_result("features", result)
    print(f"\nresult written to {path} (with the figures of every feature)")
    for r in results:  # the last line stays short: families only
        r["check"] = {k: v for k, v in r["check"].items() if k != "features"}
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

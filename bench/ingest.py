"""Ingest benchmark: the full EURUSD M1 history (HistData, ~5.95M bars) into a fresh store.

Each measurement runs in a subprocess of its own, so its peak RSS is its alone:

1. solodesk, end to end: ``services.ingest.ingest`` over every zip of
   ``histdata_m1/eurusd`` into a fresh store, with validation (Great Expectations suite,
   quarantine, quality flags), HTML data docs off;
2. the HTML data docs apart: the same ingest into another fresh store with reports on; their cost
   is the ingest's own ``reports`` stage timing and, as a check, the difference of the two runs;
3. the reference, bare DuckDB: the CSVs are extracted from the zips to a temporary folder (timed
   apart), then one ``COPY (SELECT ... FROM read_csv([...])) TO 'bars.parquet'`` that also parses
   the timestamp and moves it to UTC, as solodesk does.

Targets printed beside the figures (never lowered): >= 1M rows/s end to end, >= 0.5x the bare
DuckDB rate, peak RSS <= 2 GB (2 * 10^9 bytes). With ``--stages`` a further run times each
ingest stage by wrapping the functions ``services.ingest`` calls (read, parse, normalize...).

Run: ``.venv/bin/python bench/ingest.py [--data DIR] [--repeat N] [--stages] [--no-reports]``
(``make bench``). The data folder is ``$SOLODESK_SHARED_DATA`` or ``../shared/data`` from the
repository root; without it the benchmark says so and exits 0. The last line of stdout is the
result as JSON; it is also written to ``$SOLODESK_HOME/bench/`` (or a temporary folder).
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
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
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

TARGET_ROWS_PER_SECOND = 1_000_000
TARGET_DUCKDB_RATIO = 0.5
# 2 GB read strictly: 2 * 10^9 bytes (2 GiB would allow 7 % more).
TARGET_PEAK_RSS = 2 * 10**9


# -- measuring inside a worker --------------------------------------------------------------


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _solodesk_worker(source: Path, home: Path, reports: bool) -> None:
    from core.settings import Settings
    from services.ingest import IngestOptions, ingest

    settings = Settings(home=home)
    start = time.perf_counter()
    outcome = ingest([str(source)], IngestOptions(reports=reports), settings)
    seconds = time.perf_counter() - start
    emit(
        {
            "rows": sum(s.rows_read for s in outcome.series),
            "rows_added": sum(s.rows_added for s in outcome.series),
            "rows_quarantined": sum(s.rows_quarantined for s in outcome.series),
            "series": [str(s.key) for s in outcome.series],
            "seconds": seconds,
            "peak_rss": peak_rss_bytes(),
            "timings": dict(getattr(outcome, "timings", {}) or {}),
            "report": str(outcome.report) if outcome.report else None,
        }
    )


def _wrap(owner: Any, name: str, label: str, totals: dict[str, float], generator: bool) -> None:
    original = getattr(owner, name, None)
    if original is None:
        return  # the function was renamed or removed: that stage is simply not reported

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0.0) + time.perf_counter() - start

    def timed_iter(*args: Any, **kwargs: Any) -> Iterator[Any]:
        items = original(*args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - start
            yield item

    setattr(owner, name, timed_iter if generator else timed)


def _stages_worker(source: Path, home: Path) -> None:
    import feature_store.catalog as catalog_module
    import feature_store.store as store_module
    import pipelines.validate.suite as suite_module
    import services.ingest as ingest_module
    from core.settings import Settings

    totals: dict[str, float] = {}
    stages: list[tuple[Any, str, str, bool]] = [
        (ingest_module, "read_sources", "read files, unzip", True),
        (ingest_module, "parse_source", "parse", False),
        (ingest_module, "normalize", "normalize (clock, row rules, quarantine)", False),
        (ingest_module, "digest", "sha256 of sources", False),
        (ingest_module, "combine_batches", "combine sources per series", False),
        (ingest_module, "quality_flags", "flags (jumps, gaps)", False),
        (suite_module, "validate_bars", "validate (Great Expectations)", False),
        (ingest_module, "merge_bars", "merge with stored bars", False),
        (store_module.Transaction, "put_series", "write Parquet", False),
        (store_module.Transaction, "commit", "commit manifest", False),
        (catalog_module, "rebuild_catalog", "rebuild DuckDB catalog", False),
    ]
    for owner, name, label, generator in stages:
        _wrap(owner, name, label, totals, generator)
    settings = Settings(home=home)
    start = time.perf_counter()
    outcome = ingest_module.ingest(
        [str(source)], ingest_module.IngestOptions(reports=False), settings
    )
    seconds = time.perf_counter() - start
    emit(
        {
            "rows": sum(s.rows_read for s in outcome.series),
            "seconds": seconds,
            "stages": totals,
            "peak_rss": peak_rss_bytes(),
        }
    )


def _duckdb_worker(source: Path, scratch: Path) -> None:
    import duckdb

    start = time.perf_counter()
    csvs: list[str] = []
    for archive_path in sorted(source.glob("*.zip")):
        with zipfile.ZipFile(archive_path) as archive:
            for member in archive.namelist():
                if member.lower().endswith(".csv"):
                    csvs.append(archive.extract(member, scratch / archive_path.stem))
    extract_seconds = time.perf_counter() - start
    files = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in csvs) + "]"
    target = (scratch / "bars.parquet").as_posix().replace("'", "''")
    columns = (
        "{'t': 'VARCHAR', 'open': 'DOUBLE', 'high': 'DOUBLE', 'low': 'DOUBLE', "
        "'close': 'DOUBLE', 'volume': 'DOUBLE'}"
    )
    # HistData stamps are EST without daylight saving: UTC = local + 5 h.
    query = (
        "COPY (SELECT strptime(t, '%Y%m%d %H%M%S') + INTERVAL 5 HOUR AS ts, "
        "open, high, low, close, volume "
        f"FROM read_csv({files}, delim=';', header=false, columns={columns})) "
        f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
    )
    con = duckdb.connect()
    start = time.perf_counter()
    con.execute(query)
    copy_seconds = time.perf_counter() - start
    row = con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()
    con.close()
    emit(
        {
            "rows": int(row[0]) if row else 0,
            "files": len(csvs),
            "extract_seconds": extract_seconds,
            "copy_seconds": copy_seconds,
            "threads": os.cpu_count(),
            "peak_rss": peak_rss_bytes(),
        }
    )


# -- the driver -----------------------------------------------------------------------------


def _in_fresh_folder(run: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="solodesk-bench-"))
    try:
        return run(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _median_run(repeat: int, run: Callable[[], dict[str, Any]], key: str) -> dict[str, Any]:
    """Run ``repeat`` times; return the run with the median ``key``, with the largest peak RSS."""
    results = sorted((run() for _ in range(repeat)), key=lambda r: float(r[key]))
    chosen = results[len(results) // 2]
    chosen["all_" + key] = [r[key] for r in results]
    # Memory is judged on the worst run, not the median one.
    chosen["peak_rss_median_run"] = chosen["peak_rss"]
    chosen["peak_rss"] = max(int(r["peak_rss"]) for r in results)
    return chosen


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _print_table(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    """Run the benchmark, print its table and its JSON result; return the exit status."""
    parser = argparse.ArgumentParser(description="Ingest benchmark (see the module docstring).")
    parser.add_argument("--data", help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each rate (median kept)")
    parser.add_argument("--stages", action="store_true", help="also time each ingest stage")
    parser.add_argument("--no-reports", action="store_true", help="skip the HTML data docs run")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind == "solodesk":
            _solodesk_worker(Path(rest[0]), Path(rest[1]), rest[2] == "reports")
        elif kind == "stages":
            _stages_worker(Path(rest[0]), Path(rest[1]))
        elif kind == "duckdb":
            _duckdb_worker(Path(rest[0]), Path(rest[1]))
        else:
            parser.error(f"unknown worker {kind!r}")
        return 0

    source = shared_data_root(args.data) / HISTORY
    zips = sorted(source.glob("*.zip")) if source.is_dir() else []
    if not zips:
        print(
            f"skipped: no HistData EURUSD zips at {source} (shared data absent; "
            "set SOLODESK_SHARED_DATA or pass --data)"
        )
        return 0
    repeat = max(1, args.repeat)
    print(f"ingest benchmark: {len(zips)} HistData EURUSD M1 zips in {source}", flush=True)

    def solodesk_run(reports: bool) -> dict[str, Any]:
        mode = "reports" if reports else "no-reports"
        return _in_fresh_folder(
            lambda home: run_worker(__file__, "solodesk", str(source), str(home), mode)
        )

    print("  solodesk ingest, validation on, HTML reports off ...", flush=True)
    plain = _median_run(repeat, lambda: solodesk_run(False), "seconds")
    with_docs = None
    if not args.no_reports:
        print("  solodesk ingest with HTML data docs ...", flush=True)
        with_docs = solodesk_run(True)
    stages = None
    if args.stages:
        print("  solodesk ingest, stage by stage ...", flush=True)
        stages = _in_fresh_folder(
            lambda home: run_worker(__file__, "stages", str(source), str(home))
        )
    print("  bare DuckDB: extract, then read_csv -> Parquet ...", flush=True)
    duck = _median_run(
        repeat,
        lambda: _in_fresh_folder(lambda tmp: run_worker(__file__, "duckdb", str(source), str(tmp))),
        "copy_seconds",
    )
    print()

    rows = int(plain["rows"])
    solodesk_rate = rows / plain["seconds"]
    duck_rate = duck["rows"] / duck["copy_seconds"]
    duck_rate_with_unzip = duck["rows"] / (duck["copy_seconds"] + duck["extract_seconds"])
    ratio = solodesk_rate / duck_rate
    table: list[tuple[str, str, str, str]] = [
        ("measure", "figure", "target / reference", "verdict"),
        ("rows (solodesk read | DuckDB read)", f"{rows:,} | {duck['rows']:,}", "", ""),
        ("solodesk ingest, no HTML: seconds (median)", f"{plain['seconds']:.2f} s",
         f"runs: {', '.join(f'{x:.2f}' for x in plain['all_seconds'])}", ""),
        ("solodesk end-to-end rate", rate(solodesk_rate), f">= {rate(TARGET_ROWS_PER_SECOND)}",
         _verdict(solodesk_rate >= TARGET_ROWS_PER_SECOND)),
        ("solodesk peak RSS (worst run)", f"{gb(plain['peak_rss'])} ({plain['peak_rss'] / 1024**3:.2f} GiB)",
         f"<= {gb(TARGET_PEAK_RSS)}",
         _verdict(plain["peak_rss"] <= TARGET_PEAK_RSS)),
        ("solodesk process wall (start-up included)", f"{plain['process_seconds']:.2f} s", "",
         ""),
    ]  # fmt: skip
    if with_docs is not None:
        alone = with_docs["timings"].get("reports")
        table += [
            ("HTML data docs: report writing alone",
             f"{alone:.2f} s" if alone is not None else "n/a", "", ""),
            ("HTML data docs: run with - run without",
             f"{with_docs['seconds'] - plain['seconds']:+.2f} s", "", ""),
            ("solodesk ingest with HTML: seconds | peak RSS",
             f"{with_docs['seconds']:.2f} s | {gb(with_docs['peak_rss'])}", "", ""),
        ]  # fmt: skip
    table += [
        ("DuckDB: extract CSVs from zips", f"{duck['extract_seconds']:.2f} s", "", ""),
        ("DuckDB: COPY read_csv -> Parquet (median)", f"{duck['copy_seconds']:.2f} s",
         f"runs: {', '.join(f'{x:.2f}' for x in duck['all_copy_seconds'])}", ""),
        ("DuckDB rate (COPY only) = reference", rate(duck_rate), "", ""),
        ("DuckDB rate (extract + COPY)", rate(duck_rate_with_unzip), "", ""),
        ("DuckDB peak RSS (worst run)", gb(duck["peak_rss"]), "", ""),
        ("solodesk / DuckDB (COPY only)", f"{ratio:.2f}x", f">= {TARGET_DUCKDB_RATIO}x",
         _verdict(ratio >= TARGET_DUCKDB_RATIO)),
        ("solodesk / DuckDB (extract + COPY)", f"{solodesk_rate / duck_rate_with_unzip:.2f}x", "", ""),
    ]  # fmt: skip
    _print_table(table)
    if rows != duck["rows"]:
        print(f"\nWARNING: solodesk read {rows:,} rows, DuckDB {duck['rows']:,}: not the same work")
    if plain["timings"]:
        print("\nstages reported by the ingest itself (IngestResult.timings, no-HTML run):")
        for name, seconds in plain["timings"].items():
            print(f"  {name:<28} {seconds:8.2f} s")
    if stages is not None:
        print(f"\nstages timed by wrapping their functions ({stages['seconds']:.2f} s in all):")
        accounted = 0.0
        for name, seconds in sorted(stages["stages"].items(), key=lambda kv: -kv[1]):
            accounted += seconds
            print(f"  {name:<42} {seconds:7.2f} s {100 * seconds / stages['seconds']:5.1f} %")
        rest = stages["seconds"] - accounted
        print(f"  {'(not wrapped)':<42} {rest:7.2f} s {100 * rest / stages['seconds']:5.1f} %")

    result = {
        "benchmark": "ingest",
        "at": iso_z(utc_now()),
        "source": str(source),
        "zips": len(zips),
        "rows": rows,
        "solodesk": plain,
        "solodesk_with_reports": with_docs,
        "stages": stages,
        "duckdb": duck,
        "rows_per_second": solodesk_rate,
        "duckdb_rows_per_second": duck_rate,
        "ratio_to_duckdb": ratio,
        "targets": {
            "rows_per_second": [TARGET_ROWS_PER_SECOND, solodesk_rate >= TARGET_ROWS_PER_SECOND],
            "ratio_to_duckdb": [TARGET_DUCKDB_RATIO, ratio >= TARGET_DUCKDB_RATIO],
            "peak_rss_bytes": [TARGET_PEAK_RSS, plain["peak_rss"] <= TARGET_PEAK_RSS],
        },
        "machine": machine(),
        "git": git_state(),
    }
    path = write_result("ingest", result)
    print(f"\nresult written to {path}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

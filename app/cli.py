"""The ``solodesk`` command line.

Heavy libraries are imported inside the commands that need them, so ``solodesk --help`` stays
fast. ``--json`` prints JSON Lines on stdout and nothing else there; progress and messages go to
stderr. Exit status: 0 success, 1 unexpected failure, 2 bad input or usage.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from app.backtest_commands import register as register_research_commands
from app.model_commands import register as register_model_commands

if TYPE_CHECKING:
    from rich.console import Console

    from core.settings import Settings

app = typer.Typer(
    name="solodesk",
    help="solodesk: a one-person trading desk. Data, research, execution, risk and monitoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect stored bar series and quarantined rows.", no_args_is_help=True)
app.add_typer(data_app, name="data")
features_app = typer.Typer(
    help="Build, list and inspect feature sets declared in params.yaml.", no_args_is_help=True
)
app.add_typer(features_app, name="features")


def _err() -> Console:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=True, soft_wrap=True, width=160)
    return console


def _out() -> Console:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # pipes and make: do not squeeze tables to 80 columns
    return console


def _settings() -> Settings:
    from core.settings import load_settings

    return load_settings()


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


def _parse_utc(text: str | None, option: str) -> datetime | None:
    from core.errors import UsageError

    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"{option} {text!r} is not a date: use ISO format, 2017-01-02 or 2017-01-02T09:00Z"
        raise UsageError(msg) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _params_ingest(path: Path) -> dict[str, Any]:
    import yaml

    from core.errors import UsageError

    try:
        params = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read parameters ({exc})") from None
    section = params.get("ingest")
    if not isinstance(section, dict) or not section.get("sources"):
        raise UsageError(f"{path}: needs an 'ingest' section with a 'sources' list")
    allowed = {"sources", "resample", "symbol", "timeframe", "format", "tz", "side", "anchor"}
    unknown = set(section) - allowed
    if unknown:
        raise UsageError(
            f"{path}: unknown ingest keys {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    return section


@app.command()
def ingest(
    sources: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional here
        typer.Argument(help="Files, folders, .zip/.gz archives or sample:eurusd-h1."),
    ] = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol, when the name does not say.")] = None,
    timeframe: Annotated[Optional[str], typer.Option(help="M1..MN1, 60, 1h...")] = None,  # noqa: UP045
    format: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--format", help="mt4-csv, hst, histdata, csv, lean or parquet."),
    ] = None,
    tz: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Source clock: UTC, an IANA zone, UTC+2, or broker:ny-close."),
    ] = None,
    side: Annotated[Optional[str], typer.Option(help="bid, ask or mid.")] = None,  # noqa: UP045
    date_order: Annotated[
        Optional[str], typer.Option("--date-order", help="dmy or mdy, for ambiguous dates.")  # noqa: UP045
    ] = None,
    volume_kind: Annotated[
        Optional[str], typer.Option("--volume-kind", help="none, m1_count, tick or real.")  # noqa: UP045
    ] = None,
    as_of: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--as-of", help="When the export was taken (UTC); decides the last bar."),
    ] = None,
    resample: Annotated[
        Optional[list[str]], typer.Option(help="Also resample to this timeframe (repeatable).")  # noqa: UP045
    ] = None,
    anchor: Annotated[
        Optional[str], typer.Option(help="utc or broker: where H4/D1 buckets start.")  # noqa: UP045
    ] = None,
    params: Annotated[
        Optional[Path], typer.Option(help="Read sources and options from params.yaml 'ingest'.")  # noqa: UP045
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line per series.")
    ] = False,
) -> None:
    """Read, validate and store bars; bad rows are quarantined with file, line and reason."""
    from rich.markup import escape

    from core.errors import UsageError
    from core.timeframes import parse_timeframe
    from core.types import Side, VolumeKind
    from feature_store.ingest import IngestOptions
    from feature_store.ingest import ingest as run_ingest

    specs = list(sources or [])
    if params is not None:
        section = _params_ingest(params)
        specs += [str(s) for s in section["sources"]]
        resample = list(resample or []) + [str(t) for t in section.get("resample", [])]
        symbol = symbol or section.get("symbol")
        timeframe = timeframe or section.get("timeframe")
        format = format or section.get("format")
        tz = tz or section.get("tz")
        side = side or section.get("side")
        anchor = anchor or section.get("anchor")
    if not specs:
        raise UsageError("nothing to ingest: name files, folders or sample:eurusd-h1 (or --params)")
    if anchor not in (None, "utc", "broker"):
        raise UsageError(f"--anchor {anchor!r}: use utc or broker")
    if date_order not in (None, "dmy", "mdy"):
        raise UsageError(f"--date-order {date_order!r}: use dmy or mdy")
    try:
        side_value = Side(side.lower()) if side else None
        kind = VolumeKind(volume_kind) if volume_kind else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = IngestOptions(
        symbol=symbol,
        timeframe=parse_timeframe(timeframe) if timeframe else None,
        format=format,
        clock=tz,
        side=side_value,
        date_order=date_order,
        volume_kind=kind,
        as_of=_parse_utc(as_of, "--as-of"),
        resample=tuple(parse_timeframe(t) for t in resample or []),
        anchor=anchor,
    )
    console = _err()
    with _Progress(console) as advance:
        outcome = run_ingest(specs, options, _settings(), progress=advance)
    for warning in outcome.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if as_json:
        for series in outcome.series:
            _emit(series.as_json())
        return
    from rich.table import Table

    table = Table(title=f"ingest {outcome.run}")
    for column in ("series", "read", "added", "duplicate", "conflicting", "quarantined",
                   "first", "last", "jumps", "gaps"):  # fmt: skip
        table.add_column(
            column, justify="left" if column in ("series", "first", "last") else "right"
        )
    for s in outcome.series:
        j = s.as_json()
        table.add_row(str(s.key), *(str(j[k]) for k in ("rows_read", "rows_added",
                      "rows_duplicate", "rows_conflicting", "rows_quarantined", "first", "last",
                      "jumps", "gaps")))  # fmt: skip
    console.print(table)
    if outcome.report:
        console.print(f"validation report: {outcome.report}")
    if any(s.rows_quarantined for s in outcome.series):
        console.print("quarantined rows: solodesk data quarantine")


class _Progress:
    """A rich progress bar on stderr, fed by (stage, done, total) callbacks."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
            disable=not console.is_terminal,
        )  # fmt: skip
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        self.bar.__enter__()

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)


@app.command("resample")
def resample_command(
    symbol: Annotated[str, typer.Option(help="Stored symbol.")],
    timeframe: Annotated[
        list[str], typer.Option(help="Target timeframe(s), e.g. H1 (repeatable).")
    ],
    source: Annotated[str, typer.Option(help="Timeframe to resample from.")] = "M1",
    side: Annotated[str, typer.Option(help="bid, ask or mid.")] = "bid",
    anchor: Annotated[Optional[str], typer.Option(help="utc or broker.")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Resample a stored series to longer timeframes (left-closed, left-labelled)."""
    from core.errors import UsageError
    from core.timeframes import parse_timeframe
    from core.types import SeriesKey, Side
    from feature_store.ingest import resample_stored

    if anchor not in (None, "utc", "broker"):
        raise UsageError(f"--anchor {anchor!r}: use utc or broker")
    settings = _settings()
    key = SeriesKey(symbol=settings.registry.canonical(symbol), timeframe=parse_timeframe(source),
                    side=Side(side.lower()))  # fmt: skip
    targets = tuple(parse_timeframe(t) for t in timeframe)
    for outcome in resample_stored(key, targets, settings, anchor):
        if as_json:
            _emit(outcome.as_json())
        else:
            j = outcome.as_json()
            _err().print(f"{outcome.key}: {j['rows_read']} bars, {j['rows_added']} added, "
                         f"{j['first']} .. {j['last']}")  # fmt: skip


@data_app.command("list")
def data_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List stored series: side, rows, first, last, volume kind, version."""
    from feature_store.store import BarStore

    series = BarStore(_settings().store_dir).series()
    records = [
        {"symbol": s.key.symbol, "timeframe": s.key.timeframe.value, "side": s.key.side.value,
         "rows": s.rows, "first": s.first, "last": s.last, "volume_kind": s.volume_kind.value,
         "spread": s.has_spread, "version": s.version,
         "sources": [src["name"] for src in s.sources]}
        for s in series
    ]  # fmt: skip
    if as_json:
        for record in records:
            _emit(record)
        return
    from rich.table import Table

    if not records:
        _err().print("no series stored yet: try  solodesk ingest sample:eurusd-h1")
        return
    table = Table(title=f"{len(records)} series")
    for column in (
        "symbol",
        "timeframe",
        "side",
        "rows",
        "first",
        "last",
        "volume_kind",
        "spread",
        "version",
    ):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for r in records:
        table.add_row(*(str(r[c]) for c in ("symbol", "timeframe", "side", "rows", "first", "last",
                                             "volume_kind", "spread", "version")))  # fmt: skip
    _out().print(table)


@data_app.command("show")
def data_show(
    symbol: Annotated[str, typer.Option(help="Stored symbol.")],
    timeframe: Annotated[str, typer.Option(help="M1..MN1.")],
    side: Annotated[
        str | None, typer.Option(help="bid, ask or mid (default: the only one).")
    ] = None,
    tail: Annotated[int, typer.Option(help="Show the last N bars.")] = 10,
    start: Annotated[
        str | None, typer.Option("--from", help="From this UTC date (inclusive).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="To this UTC date (exclusive).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show the bars of one series."""
    from core.errors import UsageError
    from core.timeframes import parse_timeframe
    from feature_store.store import BarStore

    settings = _settings()
    store = BarStore(settings.store_dir)
    canonical = settings.registry.canonical(symbol)
    tf = parse_timeframe(timeframe)
    matches = [s for s in store.series() if s.key.symbol == canonical and s.key.timeframe is tf
               and (side is None or s.key.side.value == side.lower())]  # fmt: skip
    if len(matches) != 1:
        have = ", ".join(str(s.key) for s in store.series()) or "none"
        what = "several sides: give --side" if matches else "no such series"
        raise UsageError(f"{canonical} {tf.value}: {what} (stored: {have})")
    bars = store.read(matches[0].key, _parse_utc(start, "--from"), _parse_utc(end, "--to"))
    bars = bars.tail(tail)
    if as_json:
        for row in bars.iter_rows(named=True):
            row["ts"] = row["ts"].strftime("%Y-%m-%dT%H:%M:%SZ")
            _emit(row)
        return
    from rich.table import Table

    table = Table(title=f"{matches[0].key} ({matches[0].rows} bars, version {matches[0].version})")
    for column in bars.columns:
        table.add_column(column)
    for values in bars.iter_rows():
        table.add_row(*(str(v) for v in values))
    _out().print(table)


@data_app.command("quarantine")
def data_quarantine(
    symbol: Annotated[Optional[str], typer.Option(help="Only this symbol.")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option(help="Show at most N rows (0: all).")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show quarantined rows with their run, source file, line and reason."""
    import polars as pl

    from feature_store.store import BarStore

    settings = _settings()
    rows = BarStore(settings.store_dir).quarantine()
    if symbol:
        rows = rows.filter(pl.col("symbol") == settings.registry.canonical(symbol))
    total = rows.height
    if limit:
        rows = rows.head(limit)
    if as_json:
        for row in rows.iter_rows(named=True):
            if row["ts"] is not None:
                row["ts"] = row["ts"].strftime("%Y-%m-%dT%H:%M:%SZ")
            _emit(row)
        return
    from rich.table import Table

    if total == 0:
        _err().print("no quarantined rows")
        return
    table = Table(
        title=f"{total} quarantined rows"
        + (f" (first {rows.height})" if total > rows.height else "")
    )
    for column in ("run", "source", "line", "series", "reason", "raw"):
        table.add_column(column, overflow="fold")
    for r in rows.iter_rows(named=True):
        table.add_row(r["run"], r["source"], str(r["line"] or ""),
                      f"{r['symbol']} {r['timeframe']} {r['side']}", r["reason"], r["raw"])  # fmt: skip
    _out().print(table)


@data_app.command("sql")
def data_sql(
    query: Annotated[
        str,
        typer.Argument(
            help="SQL over the views bars, series, quarantine, ingest_runs, feature_builds "
            "and features_<set>."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Query the DuckDB catalog, e.g. "select symbol, timeframe, count(*) from bars group by all"."""
    import duckdb

    from core.errors import SolodeskError, UsageError
    from feature_store.catalog import open_catalog
    from feature_store.store import BarStore

    settings = _settings()
    try:
        con = open_catalog(BarStore(settings.store_dir), settings.catalog_path)
    except duckdb.IOException as exc:
        msg = f"cannot open the catalog {settings.catalog_path}: {exc}; close the other process"
        raise SolodeskError(msg) from None
    try:
        try:
            frame = con.sql(query).pl()
        except duckdb.Error as exc:
            raise UsageError(f"query failed: {exc}") from None
    finally:
        con.close()
    if as_json:
        for row in frame.iter_rows(named=True):
            _emit(row)
        return
    from rich.table import Table

    table = Table(title=f"{frame.height} rows")
    for column in frame.columns:
        table.add_column(column)
    for values in frame.head(200).iter_rows():
        table.add_row(*(str(v) for v in values))
    _out().print(table)


def _iso_values(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(v, datetime) else v
        for k, v in row.items()
    }


def _feature_sets(path: Path) -> dict[str, Any]:
    import yaml

    from core.errors import UsageError
    from pipelines.features.sets import parse_feature_sets

    try:
        params = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UsageError(f"{path}: not found: give the parameters file with --params") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read parameters ({exc})") from None
    if not isinstance(params, dict) or "features" not in params:
        raise UsageError(f"{path}: needs a 'features' section with 'sets' (see docs/features.md)")
    return parse_feature_sets(params["features"], str(path))


def _side(side: str | None) -> Any:
    from core.errors import UsageError
    from core.types import Side

    if side is None:
        return None
    try:
        return Side(side.lower())
    except ValueError:
        raise UsageError(f"--side {side!r}: use bid, ask or mid") from None


@features_app.command("build")
def features_build(
    feature_set: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--feature-set", help="A set declared in params.yaml (all sets with --all)."),
    ] = None,
    symbol: Annotated[Optional[str], typer.Option(help="Stored symbol.")] = None,  # noqa: UP045
    timeframe: Annotated[Optional[str], typer.Option(help="M1..MN1.")] = None,  # noqa: UP045
    side: Annotated[
        Optional[str], typer.Option(help="bid, ask or mid (default: the only one).")  # noqa: UP045
    ] = None,
    params: Annotated[
        Path, typer.Option(help="Parameters file with the 'features' section.")
    ] = Path("params.yaml"),
    all_series: Annotated[
        bool, typer.Option("--all", help="Build the set(s) on every stored series they fit.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line per build.")] = False,
) -> None:
    """Compute, check and store a feature set on a series; an unchanged build is a cache hit."""
    from rich.markup import escape

    from core.errors import UsageError
    from core.timeframes import parse_timeframe
    from feature_store.features import FeatureBuildOutcome, build_all, build_feature_set

    if all_series and (symbol or timeframe or side):
        raise UsageError("--all builds on every stored series: drop --symbol, --timeframe, --side")
    if not all_series and (feature_set is None or symbol is None or timeframe is None):
        raise UsageError("give --feature-set, --symbol and --timeframe (or --all)")
    sets = _feature_sets(params)
    if feature_set is not None and feature_set not in sets:
        msg = f"{params}: no feature set {feature_set!r} (declared: {', '.join(sorted(sets))})"
        raise UsageError(msg)
    settings = _settings()
    console = _err()
    outcomes: list[FeatureBuildOutcome]
    warnings: list[str]
    with _Progress(console) as advance:
        if all_series:
            chosen = {feature_set: sets[feature_set]} if feature_set else sets
            result = build_all(settings, chosen, progress=advance)
            outcomes, warnings = result.builds, result.warnings
            for skipped in result.skipped:
                console.print(f"skipped {escape(skipped)}")
        else:
            assert feature_set is not None and symbol is not None and timeframe is not None
            outcome = build_feature_set(
                settings, feature_set, sets[feature_set], symbol, parse_timeframe(timeframe),
                _side(side), progress=advance,
            )  # fmt: skip
            outcomes, warnings = [outcome], outcome.warnings
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if as_json:
        for o in outcomes:
            _emit(o.as_json())
        return
    from rich.table import Table

    table = Table(title=f"{len(outcomes)} feature build(s)")
    for column in ("set", "series", "version", "cache", "rows", "features", "labels",
                   "first", "last", "checks", "seconds"):  # fmt: skip
        table.add_column(column, justify="right" if column in ("rows", "features", "seconds")
                         else "left")  # fmt: skip
    for o in outcomes:
        j = o.as_json()
        table.add_row(j["feature_set"], f"{j['symbol']} {j['timeframe']} {j['side']}",
                      j["version"], "hit" if o.cache_hit else "built", str(j["rows"]),
                      str(j["features"]), str(len(j["labels"])), str(j["first"]),
                      str(j["last"]), j["expectations"], f"{j['seconds']:.2f}")  # fmt: skip
    console.print(table)


@features_app.command("list")
def features_list(
    feature_set: Annotated[
        Optional[str], typer.Option("--feature-set", help="Only this set.")  # noqa: UP045
    ] = None,
    symbol: Annotated[Optional[str], typer.Option(help="Only this symbol.")] = None,  # noqa: UP045
    latest: Annotated[bool, typer.Option("--latest", help="Only the latest builds.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List feature builds: set, series, version, rows, features, created, latest, cache.

    ``cache`` is ``fresh`` while every series a build read is unchanged (building it again
    is a cache hit) and ``stale`` once one has changed.
    """
    from feature_store.feature_index import FeatureStore
    from feature_store.features import features_root
    from feature_store.store import BarStore

    settings = _settings()
    current = {s.key.slug: s.version for s in BarStore(settings.store_dir).series()}
    canonical = settings.registry.canonical(symbol) if symbol else None
    records: list[dict[str, Any]] = []
    for b in FeatureStore(features_root(settings)).builds():
        if (feature_set and b.feature_set != feature_set) or (canonical and b.symbol != canonical):
            continue
        if latest and not b.latest:
            continue
        fresh = all(current.get(slug) == version for slug, version in b.sources.items())
        records.append(
            {"feature_set": b.feature_set, "symbol": b.symbol, "timeframe": b.timeframe,
             "side": b.side, "version": b.version, "rows": b.rows, "features": b.features,
             "labels": b.labels, "created": b.created, "seconds": b.seconds,
             "latest": b.latest, "cache": "fresh" if fresh else "stale"}
        )  # fmt: skip
    if as_json:
        for record in records:
            _emit(record)
        return
    if not records:
        _err().print(
            "no feature builds yet: try  solodesk features build --feature-set default "
            "--symbol EURUSD --timeframe H1"
        )
        return
    from rich.table import Table

    table = Table(title=f"{len(records)} feature build(s)")
    for column in ("set", "symbol", "timeframe", "side", "version", "rows", "features",
                   "labels", "created", "latest", "cache"):  # fmt: skip
        table.add_column(column, justify="right" if column in ("rows", "features", "labels")
                         else "left")  # fmt: skip
    for r in records:
        table.add_row(r["feature_set"], r["symbol"], r["timeframe"], r["side"],
                      r["version"][:12], str(r["rows"]), str(r["features"]), str(len(r["labels"])),
                      r["created"], "yes" if r["latest"] else "", r["cache"])  # fmt: skip
    _out().print(table)


@features_app.command("show")
def features_show(
    feature_set: Annotated[str, typer.Option("--feature-set", help="A built feature set.")],
    symbol: Annotated[str, typer.Option(help="Stored symbol.")],
    timeframe: Annotated[str, typer.Option(help="M1..MN1.")],
    side: Annotated[
        Optional[str], typer.Option(help="bid, ask or mid (default: the only one).")  # noqa: UP045
    ] = None,
    version: Annotated[
        Optional[str], typer.Option(help="A build version or its prefix (default: latest).")  # noqa: UP045
    ] = None,
    columns: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Only these columns, comma separated (rsi_14,h4_rsi_14,label)."),
    ] = None,
    rows: Annotated[int, typer.Option(help="Show the last N rows.")] = 5,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one build: each column's role, warm-up, nulls, min and max, then its last rows.

    With ``--json``, one line per column (``"record": "column"``), then one per row
    (``"record": "row"``).
    """
    import polars as pl

    from core.errors import UsageError
    from core.timeframes import parse_timeframe
    from feature_store.feature_index import FeatureStore
    from feature_store.features import column_summary, features_root, read_build

    settings = _settings()
    canonical = settings.registry.canonical(symbol)
    tf = parse_timeframe(timeframe)
    wanted_side = _side(side)
    builds = FeatureStore(features_root(settings)).builds()
    matches = [
        b for b in builds
        if b.feature_set == feature_set and b.symbol == canonical and b.timeframe == tf.value
        and (wanted_side is None or b.side == wanted_side.value)
        and (b.version.startswith(version) if version else b.latest)
    ]  # fmt: skip
    if len({b.side for b in matches}) > 1:
        raise UsageError(
            f"{feature_set} on {canonical} {tf.value} is built on several sides: give --side"
        )
    if len(matches) != 1:
        have = ", ".join(
            sorted({f"{b.feature_set} {b.symbol} {b.timeframe} {b.side}" for b in builds})
        )
        what = f"version {version!r} of " if version else ""
        msg = (
            f"no build of {what}{feature_set} on {canonical} {tf.value} (built: {have or 'none'}):"
            f" build it with  solodesk features build --feature-set {feature_set} --symbol "
            f"{canonical} --timeframe {tf.value}"
        )
        raise UsageError(msg)
    build = matches[0]
    frame = read_build(settings, build)
    summary = column_summary(frame, build)
    if columns:
        names = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [n for n in names if n not in summary["column"].to_list()]
        if unknown:
            raise UsageError(f"--columns: {', '.join(unknown)} not in the build")
        summary = summary.filter(pl.col("column").is_in(names))
        shown = ["ts", *names]
    else:
        features = [c["name"] for c in build.columns if c["role"] != "label"]
        shown = ["ts", *features[:6], *build.labels[:1]]
    tail = frame.select(shown).tail(rows) if rows > 0 else frame.select(shown).clear()
    if as_json:
        for record in summary.iter_rows(named=True):
            _emit({"record": "column", **record})
        for row in tail.iter_rows(named=True):
            _emit({"record": "row", **_iso_values(row)})
        return
    from rich.table import Table

    title = (
        f"{build.feature_set} on {build.symbol} {build.timeframe} {build.side}: version "
        f"{build.version}, {build.rows} rows, {build.features} features, built {build.created}"
    )
    table = Table(title=title)
    for column in summary.columns:
        table.add_column(column, justify="left" if column in ("column", "role", "source")
                         else "right")  # fmt: skip
    for values in summary.iter_rows():
        table.add_row(*("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)
                        for v in values))  # fmt: skip
    out = _out()
    out.print(table)
    if tail.height:
        rows_table = Table(title=f"last {tail.height} rows")
        for column in tail.columns:
            rows_table.add_column(column)
        for values in tail.iter_rows():
            rows_table.add_row(*("" if v is None else f"{v:.6g}" if isinstance(v, float)
                                 else str(v) for v in values))  # fmt: skip
        out.print(rows_table)


def _bounds(lower: float | None, upper: float | None) -> str:
    if lower is None and upper is None:
        return ""
    low = "-inf" if lower is None else f"{lower:g}"
    high = "inf" if upper is None else f"{upper:g}"
    return f"[{low}, {high}]"


@features_app.command("specs")
def features_specs(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the default feature set: name, family, kind, parameters, warm-up, range."""
    from pipelines.features import default_feature_set

    records: list[dict[str, Any]] = [
        {"name": s.name, "family": s.family.value, "kind": s.kind, "params": s.parameters,
         "warmup": s.warmup, "recursive": s.recursive, "lower": s.lower, "upper": s.upper}
        for s in default_feature_set()
    ]  # fmt: skip
    if as_json:
        for record in records:
            _emit(record)
        return
    from rich.table import Table

    table = Table(title=f"default feature set: {len(records)} features")
    for column in ("name", "family", "kind", "params", "warmup", "recursive", "range"):
        table.add_column(column)
    for r in records:
        params = ", ".join(f"{k}={v:g}" for k, v in r["params"].items())
        bounds = _bounds(r["lower"], r["upper"])
        table.add_row(r["name"], r["family"], r["kind"], params, str(r["warmup"]),
                      "yes" if r["recursive"] else "", bounds)  # fmt: skip
    _out().print(table)


@app.command()
def instruments(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the instrument registry (built-ins plus solodesk.toml)."""
    registry = _settings().registry
    if as_json:
        for instrument in registry:
            _emit(instrument.model_dump(mode="json"))
        return
    from rich.table import Table

    table = Table(title=f"{len(registry)} instruments")
    for column in (
        "symbol",
        "class",
        "base",
        "quote",
        "digits",
        "pip",
        "contract",
        "calendar",
        "aliases",
    ):
        table.add_column(column)
    for i in registry:
        table.add_row(i.symbol, i.asset_class.value, i.base, i.quote, str(i.digits), str(i.pip_size),
                      f"{i.contract_size:g}", i.calendar, ", ".join(i.aliases))  # fmt: skip
    _out().print(table)


register_research_commands(app)
register_model_commands(app)


def main() -> None:
    """Run the command line, mapping errors to exit statuses (1 unexpected, 2 bad input)."""
    from core.errors import SolodeskError

    try:
        app(standalone_mode=False)
    except SolodeskError as exc:
        from rich.markup import escape

        # Escape: file names and hints may hold [brackets]; soft_wrap keeps paths on one line.
        message = escape(str(exc))
        _err().print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
        raise SystemExit(exc.exit_code) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except SystemExit:
        raise
    except Exception as exc:
        import click

        # Typer may run on its own vendored copy of click, whose errors are not click's classes.
        usage_error = isinstance(exc, click.exceptions.ClickException) or (
            callable(getattr(exc, "show", None))
            and isinstance(getattr(exc, "exit_code", None), int)
        )
        if usage_error:
            exc.show()  # type: ignore[attr-defined]
            raise SystemExit(exc.exit_code) from None  # type: ignore[attr-defined]
        import traceback

        traceback.print_exc()
        from rich.markup import escape

        _err().print(f"[bold red]unexpected error:[/] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

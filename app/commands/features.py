"""``solodesk features ...``: build, list and inspect feature sets declared in params.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from app.options import (
    JsonOpt,
    SideOpt,
    SymbolFilterOpt,
    SymbolOpt,
    TimeframeHintOpt,
    TimeframeOpt,
)
from app.output import Progress, emit_all, err, out, print_table, warn
from core.errors import UsageError

app = typer.Typer(
    help="Build, list and inspect feature sets declared in params.yaml.", no_args_is_help=True
)

SetFilterOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--feature-set", help="A set declared in params.yaml (all sets with --all)."),
]


def _number(value: object) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


@app.command("build")
def features_build(
    feature_set: SetFilterOpt = None,
    symbol: Annotated[Optional[str], typer.Option(help="Stored symbol.")] = None,  # noqa: UP045
    timeframe: TimeframeHintOpt = None,
    side: SideOpt = None,
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

    from core.settings import load_settings
    from services.features import build_all, build_feature_set, load_feature_sets

    if all_series and (symbol or timeframe or side):
        raise UsageError("--all builds on every stored series: drop --symbol, --timeframe, --side")
    if not all_series and (feature_set is None or symbol is None or timeframe is None):
        raise UsageError("give --feature-set, --symbol and --timeframe (or --all)")
    sets = load_feature_sets(params)
    if feature_set is not None and feature_set not in sets:
        msg = f"{params}: no feature set {feature_set!r} (declared: {', '.join(sorted(sets))})"
        raise UsageError(msg)
    settings = load_settings()
    console = err()
    with Progress(console) as advance:
        if all_series:
            chosen = {feature_set: sets[feature_set]} if feature_set else sets
            result = build_all(settings, chosen, progress=advance)
            builds, warnings = result.builds, result.warnings
            for skipped in result.skipped:
                console.print(f"skipped {escape(skipped)}")
        else:
            assert feature_set is not None and symbol is not None and timeframe is not None
            one = build_feature_set(
                settings, feature_set, sets[feature_set], symbol, timeframe,
                side, progress=advance,
            )  # fmt: skip
            builds, warnings = (one,), one.warnings
    warn(warnings)
    if as_json:
        emit_all(builds)
        return
    print_table(
        f"{len(builds)} feature build(s)",
        ("set", "series", "version", "cache", "rows", "features", "labels", "first", "last",
         "checks", "seconds"),
        ((b.feature_set, f"{b.symbol} {b.timeframe} {b.side}", b.version,
          "hit" if b.cache_hit else "built", str(b.rows), str(b.features), str(len(b.labels)),
          str(b.first), str(b.last), b.expectations, f"{b.seconds:.2f}") for b in builds),
        right=("rows", "features", "seconds"),
        console=console,
    )  # fmt: skip


@app.command("list")
def features_list(
    feature_set: Annotated[
        Optional[str], typer.Option("--feature-set", help="Only this set.")  # noqa: UP045
    ] = None,
    symbol: SymbolFilterOpt = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the latest builds.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List feature builds: set, series, version, rows, features, created, latest, cache.

    ``cache`` is ``fresh`` while every series a build read is unchanged (building it again
    is a cache hit) and ``stale`` once one has changed.
    """
    from core.settings import load_settings
    from services.features import list_builds

    rows = list_builds(load_settings(), feature_set=feature_set, symbol=symbol, latest=latest)
    if as_json:
        emit_all(rows)
        return
    if not rows:
        err().print(
            "no feature builds yet: try  solodesk features build --feature-set default "
            "--symbol EURUSD --timeframe H1"
        )
        return
    print_table(
        f"{len(rows)} feature build(s)",
        ("set", "symbol", "timeframe", "side", "version", "rows", "features", "labels",
         "created", "latest", "cache"),
        ((r.feature_set, r.symbol, r.timeframe, r.side, r.version[:12], str(r.rows),
          str(r.features), str(len(r.labels)), r.created, "yes" if r.latest else "", r.cache)
         for r in rows),
        right=("rows", "features", "labels"),
    )  # fmt: skip


@app.command("show")
def features_show(
    feature_set: Annotated[str, typer.Option("--feature-set", help="A built feature set.")],
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    side: SideOpt = None,
    version: Annotated[
        Optional[str], typer.Option(help="A build version or its prefix (default: latest).")  # noqa: UP045
    ] = None,
    columns: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Only these columns, comma separated (rsi_14,h4_rsi_14,label)."),
    ] = None,
    rows: Annotated[int, typer.Option(help="Show the last N rows.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Show one build: each column's role, warm-up, nulls, min and max, then its last rows.

    With ``--json``, one line per column (``"record": "column"``), then one per row
    (``"record": "row"``).
    """
    from core.settings import load_settings
    from services.features import show_build

    names = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    view = show_build(
        load_settings(), feature_set, symbol, timeframe, side=side, version=version,
        columns=names, rows=rows,
    )  # fmt: skip
    if as_json:
        emit_all({"record": "column", **record} for record in view.summary.iter_rows(named=True))
        emit_all({"record": "row", **row} for row in view.tail.iter_rows(named=True))
        return
    build = view.build
    console = out()
    print_table(
        f"{build.feature_set} on {build.symbol} {build.timeframe} {build.side}: version "
        f"{build.version}, {build.rows} rows, {build.features} features, built {build.created}",
        view.summary.columns,
        ([_number(v) for v in values] for values in view.summary.iter_rows()),
        right=[c for c in view.summary.columns if c not in ("column", "role", "source")],
        console=console,
    )
    if view.tail.height:
        print_table(
            f"last {view.tail.height} rows",
            view.tail.columns,
            ([_number(v) for v in values] for values in view.tail.iter_rows()),
            console=console,
        )


def _bounds(lower: float | None, upper: float | None) -> str:
    if lower is None and upper is None:
        return ""
    low = "-inf" if lower is None else f"{lower:g}"
    high = "inf" if upper is None else f"{upper:g}"
    return f"[{low}, {high}]"


@app.command("specs")
def features_specs(as_json: JsonOpt = False) -> None:
    """List the default feature set: name, family, kind, parameters, warm-up, range."""
    from services.features import default_specs

    specs = default_specs()
    if as_json:
        emit_all(specs)
        return
    print_table(
        f"default feature set: {len(specs)} features",
        ("name", "family", "kind", "params", "warmup", "recursive", "range"),
        ((s.name, s.family, s.kind, ", ".join(f"{k}={v:g}" for k, v in s.params.items()),
          str(s.warmup), "yes" if s.recursive else "", _bounds(s.lower, s.upper))
         for s in specs),
    )  # fmt: skip

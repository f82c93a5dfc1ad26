"""``solodesk data ...`` and ``solodesk instruments``: what the store holds."""

from __future__ import annotations

from typing import Annotated

import typer

from app.options import (
    FromOpt,
    JsonOpt,
    SideOpt,
    SymbolFilterOpt,
    SymbolOpt,
    TimeframeOpt,
    ToOpt,
)
from app.output import emit_all, err, print_table

app = typer.Typer(help="Inspect stored bar series and quarantined rows.", no_args_is_help=True)

SERIES_COLUMNS = ("symbol", "timeframe", "side", "rows", "first", "last", "volume_kind",
                  "spread", "version")  # fmt: skip


@app.command("list")
def data_list(as_json: JsonOpt = False) -> None:
    """List stored series: side, rows, first, last, volume kind, version."""
    from core.settings import load_settings
    from services.catalog import list_series

    rows = list_series(load_settings())
    if as_json:
        emit_all(rows)
        return
    if not rows:
        err().print("no series stored yet: try  solodesk ingest sample:eurusd-h1")
        return
    print_table(
        f"{len(rows)} series",
        SERIES_COLUMNS,
        ([str(d[c]) for c in SERIES_COLUMNS] for d in (r.model_dump(mode="json") for r in rows)),
        right=("rows",),
    )  # fmt: skip


@app.command("show")
def data_show(
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    side: SideOpt = None,
    tail: Annotated[int, typer.Option(help="Show the last N bars.")] = 10,
    start: FromOpt = None,
    end: ToOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the bars of one series."""
    from core.settings import load_settings
    from services.catalog import show_bars

    info, bars = show_bars(
        load_settings(), symbol, timeframe, side=side, start=start, end=end, tail=tail
    )
    if as_json:
        emit_all(bars.iter_rows(named=True))
        return
    print_table(
        f"{info.key} ({info.rows} bars, version {info.version})",
        bars.columns,
        ([str(v) for v in values] for values in bars.iter_rows()),
    )


@app.command("quarantine")
def data_quarantine(
    symbol: SymbolFilterOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most N rows (0: all).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show quarantined rows with their run, source file, line and reason."""
    from core.settings import load_settings
    from services.catalog import quarantined

    rows = quarantined(load_settings(), symbol)
    total = rows.height
    if limit:
        rows = rows.head(limit)
    if as_json:
        emit_all(rows.iter_rows(named=True))
        return
    if total == 0:
        err().print("no quarantined rows")
        return
    shown = f" (first {rows.height})" if total > rows.height else ""
    print_table(
        f"{total} quarantined rows{shown}",
        ("run", "source", "line", "series", "reason", "raw"),
        ((r["run"], r["source"], str(r["line"] or ""),
          f"{r['symbol']} {r['timeframe']} {r['side']}", r["reason"], r["raw"])
         for r in rows.iter_rows(named=True)),
        fold=("run", "source", "line", "series", "reason", "raw"),
    )  # fmt: skip


@app.command("sql")
def data_sql(
    query: Annotated[
        str,
        typer.Argument(
            help="SQL over the views bars, series, quarantine, ingest_runs, feature_builds "
            "and features_<set>."
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Query the DuckDB catalog, e.g. "select symbol, timeframe, count(*) from bars group by all"."""
    from core.settings import load_settings
    from services.catalog import query as run_query

    frame = run_query(load_settings(), query)
    if as_json:
        emit_all(frame.iter_rows(named=True))
        return
    print_table(
        f"{frame.height} rows",
        frame.columns,
        ([str(v) for v in values] for values in frame.head(200).iter_rows()),
    )


def instruments(as_json: JsonOpt = False) -> None:
    """List the instrument registry (built-ins plus solodesk.toml)."""
    from core.settings import load_settings
    from services.catalog import instruments as registry

    found = registry(load_settings())
    if as_json:
        emit_all(found)
        return
    print_table(
        f"{len(found)} instruments",
        ("symbol", "class", "base", "quote", "digits", "pip", "contract", "calendar", "aliases"),
        ((i.symbol, i.asset_class.value, i.base, i.quote, str(i.digits), str(i.pip_size),
          f"{i.contract_size:g}", i.calendar, ", ".join(i.aliases)) for i in found),
    )  # fmt: skip

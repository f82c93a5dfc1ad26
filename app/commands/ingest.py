"""``solodesk ingest`` and ``solodesk resample``: bars into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from app.options import (
    AnchorOpt,
    AsOfOpt,
    DateOrderOpt,
    FormatOpt,
    JsonOpt,
    ResampleOpt,
    ResampleSideOpt,
    SideHintOpt,
    SourceTimeframeOpt,
    SymbolHintOpt,
    SymbolOpt,
    TargetTimeframesOpt,
    TimeframeHintOpt,
    TzOpt,
    VolumeKindOpt,
)
from app.output import Progress, emit_all, err, print_table, warn
from core.errors import UsageError
from core.timeframes import Timeframe
from core.types import SeriesKey, Side

SourcesArg = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Argument(help="Files, folders, .zip/.gz archives or sample:eurusd-h1."),
]
ParamsOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="Read sources and options from params.yaml 'ingest'."),
]
COUNTS = ("rows_read", "rows_added", "rows_duplicate", "rows_conflicting", "rows_quarantined")


def ingest(
    sources: SourcesArg = None,
    symbol: SymbolHintOpt = None,
    timeframe: TimeframeHintOpt = None,
    format: FormatOpt = None,
    tz: TzOpt = None,
    side: SideHintOpt = None,
    date_order: DateOrderOpt = None,
    volume_kind: VolumeKindOpt = None,
    as_of: AsOfOpt = None,
    resample: ResampleOpt = None,
    anchor: AnchorOpt = None,
    params: ParamsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read, validate and store bars; bad rows are quarantined with file, line and reason."""
    from core.params import read_params
    from core.settings import load_settings
    from services.ingest import ingest as run_ingest
    from services.ingest import ingest_options

    specs = list(sources or [])
    targets: list[Timeframe] = list(resample or [])
    if params is not None:
        section = read_params(params).require_ingest()
        specs += list(section.sources)
        targets += list(section.resample)
        symbol = symbol or section.symbol
        timeframe = timeframe or section.timeframe
        format = format or section.format
        tz = tz or section.tz
        side = side or section.side
        anchor = anchor or section.anchor
    if not specs:
        raise UsageError("nothing to ingest: name files, folders or sample:eurusd-h1 (or --params)")
    options = ingest_options(
        symbol=symbol, timeframe=timeframe, format=format, tz=tz, side=side,
        date_order=date_order, volume_kind=volume_kind, as_of=as_of, resample=tuple(targets),
        anchor=anchor,
    )  # fmt: skip
    console = err()
    with Progress(console) as advance:
        outcome = run_ingest(specs, options, load_settings(), progress=advance)
    warn(outcome.warnings)
    if as_json:
        emit_all(outcome.series)
        return
    print_table(
        f"ingest {outcome.run}",
        ("series", "read", "added", "duplicate", "conflicting", "quarantined", "first", "last",
         "jumps", "gaps"),
        ((str(s.key), *(getattr(s, c) for c in COUNTS), str(s.first), str(s.last), s.jumps,
          s.gaps) for s in outcome.series),
        right=("read", "added", "duplicate", "conflicting", "quarantined", "jumps", "gaps"),
        console=console,
    )  # fmt: skip
    if outcome.report:
        console.print(f"validation report: {outcome.report}")
    if any(s.rows_quarantined for s in outcome.series):
        console.print("quarantined rows: solodesk data quarantine")


def resample(
    symbol: SymbolOpt,
    timeframe: TargetTimeframesOpt,
    source: SourceTimeframeOpt = Timeframe.M1,
    side: ResampleSideOpt = Side.BID,
    anchor: AnchorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Resample a stored series to longer timeframes (left-closed, left-labelled)."""
    from core.settings import load_settings
    from services.ingest import resample_stored

    settings = load_settings()
    key = SeriesKey(symbol=settings.registry.canonical(symbol), timeframe=source, side=side)
    outcome = resample_stored(key, tuple(timeframe), settings, anchor)
    warn(outcome.warnings)
    if as_json:
        emit_all(outcome.series)
        return
    console = err()
    for s in outcome.series:
        console.print(f"{s.key}: {s.rows_read} bars, {s.rows_added} added, {s.first} .. {s.last}")

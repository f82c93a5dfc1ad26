"""Bars pulled from MetaTrader 4 (``HIST``) into the bar store through the ordinary ingest path.

The job: :func:`pull_bars` asks the terminal for the range in chunks of
:data:`CHUNK_BARS` bars (a terminal answers one ``HIST`` with one message, so a year of M1
bars is asked for a piece at a time); :func:`history_frame` turns the terminal's bars into the
columns the ingest parsers read (``ts`` the bar's open in UTC, prices, the tick volume and the
spread in price units: MT4's spread points times the instrument's point, ``10**-digits``);
:func:`write_history_file` writes them to a Parquet file in the drop folder
:func:`history_inbox`; :func:`ingest_history_file` ingests that file (validation and
quarantine included) and moves it to ``done/``. A file whose ingest failed stays in the folder.

:func:`pull_history` chains them for ``solodesk mt4 history``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl
from pydantic import BaseModel, ConfigDict

from core.errors import UsageError
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import COMPACT, iso_z
from core.types import SeriesKey, Side, VolumeKind
from execution.brokers.mt4.client import BridgeClient
from execution.brokers.mt4.protocol import MT4Bar
from feature_store.store import write_atomic
from pipelines.ingest.normalize import BAR_SCHEMA
from services.common import Progress
from services.ingest import IngestResult, SeriesIngest, ingest, ingest_options, move_to_done

#: Bars asked for in one ``HIST`` request.
CHUNK_BARS: Final = 2_000
#: The price side of a terminal's bars (MT4 charts bid prices) and what their volume counts.
MT4_SIDE: Final = Side.BID
MT4_VOLUME: Final = VolumeKind.TICK


class HistoryResult(BaseModel):
    """What ``solodesk mt4 history`` did: the bars pulled and what the ingest stored of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    timeframe: Timeframe
    start: datetime
    end: datetime
    chunks: int
    bars_pulled: int
    file: Path
    ingest: IngestResult

    @property
    def series(self) -> SeriesIngest:
        """Return the ingest's entry of the pulled series."""
        return self.ingest.series[0]


def history_inbox(settings: Settings) -> Path:
    """Return the drop folder of bars pulled from MT4, ``inbox/mt4``."""
    return settings.mt4_inbox_dir


def check_range(start: datetime, end: datetime) -> None:
    """Refuse an empty or reversed range.

    Raises
    ------
    UsageError
        If ``end`` is not after ``start``.
    """
    if end <= start:
        msg = (
            f"--from {iso_z(start)} is not before --to {iso_z(end)}: give a range whose end "
            "(exclusive) is after its start"
        )
        raise UsageError(msg)


def history_chunks(
    timeframe: Timeframe, start: datetime, end: datetime, chunk_bars: int = CHUNK_BARS
) -> list[tuple[datetime, datetime]]:
    """Return the ``HIST`` ranges covering ``[start, end)``: each both-inclusive (to the second,
    as MT4 times are written) and spanning at most ``chunk_bars`` bars."""
    span = timedelta(minutes=timeframe.minutes * max(1, chunk_bars))
    second = timedelta(seconds=1)
    chunks: list[tuple[datetime, datetime]] = []
    at = start
    while at < end:
        upto = min(at + span, end)
        chunks.append((at, max(at, upto - second)))
        at = upto
    return chunks


def pull_bars(
    client: BridgeClient,
    symbol: str,
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    *,
    chunk_bars: int = CHUNK_BARS,
    progress: Progress | None = None,
) -> list[MT4Bar]:
    """Return the terminal's bars of ``symbol`` opening in ``[start, end)``, oldest first, each
    once, asked for in chunks of ``chunk_bars`` bars."""
    chunks = history_chunks(timeframe, start, end, chunk_bars)
    seen: dict[datetime, MT4Bar] = {}
    for n, (lo, hi) in enumerate(chunks, 1):
        for bar in client.hist(symbol, timeframe, lo, hi):
            if start <= bar.time < end:
                seen[bar.time] = bar
        if progress is not None:
            progress("pull", n, len(chunks))
    return [seen[t] for t in sorted(seen)]


def history_frame(bars: list[MT4Bar], digits: int) -> pl.DataFrame:
    """Return MT4 bars in the store's bar schema: UTC open times, prices, the tick volume (the
    real volume where the terminal gives one) and the spread in price units."""
    point = 10.0**-digits
    rows = [
        (b.time, b.open, b.high, b.low, b.close,
         float(b.real_volume or b.tick_volume), b.spread * point)
        for b in bars
    ]  # fmt: skip
    frame = pl.DataFrame(rows, schema=list(BAR_SCHEMA), orient="row")
    return frame.cast(BAR_SCHEMA).sort("ts")  # type: ignore[arg-type]


def write_history_file(settings: Settings, key: SeriesKey, frame: pl.DataFrame) -> Path:
    """Write pulled bars atomically to ``inbox/mt4/<SYMBOL>-<TF>-<first>-<last>.parquet``."""
    first: datetime = frame["ts"].min()  # type: ignore[assignment]
    last: datetime = frame["ts"].max()  # type: ignore[assignment]
    name = f"{key.symbol}-{key.timeframe.value}-{first.strftime(COMPACT)}-{last.strftime(COMPACT)}"
    path = history_inbox(settings) / f"{name}.parquet"
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    write_atomic(path, buffer.getvalue())
    return path


def ingest_history_file(
    settings: Settings, path: Path, key: SeriesKey, progress: Progress | None = None
) -> tuple[IngestResult, Path]:
    """Ingest a pulled file as ``key``'s bars (tick volume) and move it to ``done/`` once
    stored; return what was stored and where the file went. A file whose ingest failed stays
    where it is."""
    options = ingest_options(
        symbol=key.symbol, timeframe=key.timeframe, side=key.side, volume_kind=MT4_VOLUME
    )
    result = ingest([str(path)], options, settings, progress)
    return result, move_to_done(path)


def pull_history(
    settings: Settings,
    symbol: str,
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    *,
    chunk_bars: int = CHUNK_BARS,
    progress: Progress | None = None,
    connect: Callable[[], BridgeClient] | None = None,
) -> HistoryResult:
    """Pull ``symbol``'s bars opening in ``[start, end)`` from MT4 (the ``[mt4]`` settings) and
    ingest them; return the bars pulled and what was stored.

    Raises
    ------
    UsageError
        If the range is empty, the instrument unknown, or the terminal has no bars of it in
        the range; nothing is stored.
    BridgeDownError
        If the bridge does not answer.
    """
    check_range(start, end)
    instrument = settings.registry.get(symbol)
    key = SeriesKey(symbol=instrument.symbol, timeframe=timeframe, side=MT4_SIDE)
    client = connect() if connect is not None else BridgeClient(settings.mt4).connect()
    try:
        bars = pull_bars(
            client, settings.mt4.broker_symbol(instrument.symbol), timeframe, start, end,
            chunk_bars=chunk_bars,
            progress=progress,
        )  # fmt: skip
    finally:
        client.close()
    if not bars:
        msg = (
            f"the MT4 terminal at {settings.mt4.host}:{settings.mt4.ports[0]} has no "
            f"{instrument.symbol} {timeframe.value} bars from {iso_z(start)} to {iso_z(end)}: "
            "check the symbol's name at the broker and scroll its chart back so the terminal "
            "loads the history"
        )
        raise UsageError(msg)
    frame = history_frame(bars, instrument.digits)
    path = write_history_file(settings, key, frame)
    result, done = ingest_history_file(settings, path, key, progress)
    return HistoryResult(
        symbol=instrument.symbol, timeframe=timeframe, start=start, end=end,
        chunks=len(history_chunks(timeframe, start, end, chunk_bars)), bars_pulled=len(bars),
        file=done, ingest=result,
    )  # fmt: skip

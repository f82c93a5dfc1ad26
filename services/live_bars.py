"""The closed bars live sessions kept, written out for the ingest path into the bar store.

A live loop keeps every closed bar it trades on in the state database (``bars``), never in the
Parquet store. :func:`export_live_bars` writes a session's kept bars that the store does not
hold yet to a Parquet file in the session's drop folder (:func:`session_inbox`), with the
columns the ingest parsers read (``ts, open, high, low, close, volume`` and ``spread`` when the
feed gave one); ingesting that folder stores them like any other file and moves the file to
``done/``. Bars the store already holds are left out, so a bar is offered once and a stored
bar is never contradicted by a second copy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from core.errors import UsageError
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import COMPACT
from core.types import SeriesKey, Side, VolumeKind
from feature_store.series import SIDE_PREFERENCE, find_series
from feature_store.state import SessionRecord, StateDB
from feature_store.store import BarStore, write_atomic
from pipelines.ingest.normalize import BAR_SCHEMA

#: The volume a broker's live feed gives when no stored series says otherwise: ticks counted.
LIVE_VOLUME = VolumeKind.TICK
_STATE_COLUMNS = ("ts_ns", "open", "high", "low", "close", "volume", "spread")


@dataclass(frozen=True)
class LiveBarsExport:
    """A session's kept bars written out: its series, how many it kept, how many were new.

    ``file`` is the Parquet file written (None when the store held every kept bar already);
    ``folder`` the session's drop folder, which may also hold files a failed ingest left.
    """

    session: str
    key: SeriesKey
    volume_kind: VolumeKind
    kept: int
    new: int
    file: Path | None
    folder: Path


def check_session_name(session: str) -> str:
    """Return a session's name if it can name a file or folder.

    Raises
    ------
    UsageError
        If it is empty, ``.`` or ``..``, or holds a path separator.
    """
    if not session or Path(session).name != session or session in (".", ".."):
        raise UsageError(f"session {session!r} cannot name a file: give a name without '/'")
    return session


def session_inbox(settings: Settings, session: str) -> Path:
    """Return the drop folder of a session's live bars, ``inbox/live/<session>``.

    Raises
    ------
    UsageError
        If the session's name cannot name a folder.
    """
    return settings.live_inbox_dir / check_session_name(session)


def kept_bars(db: StateDB, session: str) -> pl.DataFrame:
    """Return the closed bars a session kept, in the store's bar schema (NaN spread: none)."""
    rows = db.bars_of(session)
    schema = {"ts_ns": pl.Int64, **dict.fromkeys(_STATE_COLUMNS[1:], pl.Float64)}
    raw = pl.DataFrame(rows, schema=schema, orient="row")
    return raw.select(
        pl.col("ts_ns").cast(pl.Datetime("ns", "UTC")).alias("ts"),
        *(pl.col(c) for c in ("open", "high", "low", "close", "volume")),
        pl.col("spread").fill_nan(None),
    ).cast(BAR_SCHEMA)  # type: ignore[arg-type]


def _series(settings: Settings, record: SessionRecord) -> tuple[SeriesKey, VolumeKind]:
    """Return the series a session's bars belong to and the volume they carry.

    The side is the session's, else the side of its stored series, else bid (a broker feed's
    prices); the volume kind is the stored series', else :data:`LIVE_VOLUME`.
    """
    given = record.options.get("side")
    side = Side(given) if given else None
    timeframe = Timeframe(record.timeframe)
    store = BarStore(settings.store_dir)
    try:
        info = find_series(store, settings.registry, record.symbol, timeframe, side,
                           prefer=SIDE_PREFERENCE)  # fmt: skip
    except UsageError:
        symbol = settings.registry.canonical(record.symbol)
        return SeriesKey(symbol=symbol, timeframe=timeframe, side=side or Side.BID), LIVE_VOLUME
    return info.key, info.volume_kind


def _unstored(store: BarStore, key: SeriesKey, bars: pl.DataFrame) -> pl.DataFrame:
    """Return the bars whose open time the stored series does not hold."""
    if bars.is_empty():
        return bars
    first: datetime = bars["ts"].min()  # type: ignore[assignment]
    last: datetime = bars["ts"].max()  # type: ignore[assignment]
    stored = store.read(key, first, last + timedelta(microseconds=1))
    return bars.join(stored.select("ts"), on="ts", how="anti")


def export_live_bars(settings: Settings, record: SessionRecord) -> LiveBarsExport:
    """Write the session's kept bars the store lacks to a Parquet file in its drop folder.

    The file is named after the session and its first and last bar (UTC) and written
    atomically, so an ingest never reads half of it.
    """
    folder = session_inbox(settings, record.session)
    key, volume_kind = _series(settings, record)
    with StateDB.open(settings) as db:
        bars = kept_bars(db, record.session)
    new = _unstored(BarStore(settings.store_dir), key, bars)
    path = None
    if not new.is_empty():
        if new["spread"].null_count() == new.height:
            new = new.drop("spread")
        first: datetime = new["ts"].min()  # type: ignore[assignment]
        last: datetime = new["ts"].max()  # type: ignore[assignment]
        path = (
            folder / f"{record.session}-{first.strftime(COMPACT)}-{last.strftime(COMPACT)}.parquet"
        )
        buffer = io.BytesIO()
        new.write_parquet(buffer)
        write_atomic(path, buffer.getvalue())
    return LiveBarsExport(
        session=record.session, key=key, volume_kind=volume_kind, kept=bars.height,
        new=new.height, file=path, folder=folder,
    )  # fmt: skip


def live_sessions(settings: Settings) -> list[SessionRecord]:
    """Return the sessions that kept bars in the state database, oldest first."""
    if not settings.state_db_path.exists():
        return []
    with StateDB.open(settings) as db:
        return [r for r in db.sessions() if db.bars_of(r.session)]

"""Small inputs in every supported format, written by the tests themselves."""

from __future__ import annotations

import calendar
import gzip
import io
import struct
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from pipelines.ingest.normalize import BAR_SCHEMA

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

# MT4 .hst: a 148-byte header, then fixed-size records (little endian throughout).
HST_HEADER = struct.Struct("<i64s12siiii52s")
HST_401_RECORD = struct.Struct("<qddddqiq")  # ctm, open, high, low, close, volume, spread, real
HST_400_RECORD = struct.Struct("<iddddd")  # ctm, open, low, high, close, volume


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """Return an aware UTC datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@dataclass(frozen=True)
class RawBar:
    """One bar as a source writes it: naive wall time of the source clock, prices, volume."""

    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    spread: float | None = None


def hourly_bars(
    start: datetime, count: int, *, price: float = 1.1, step: float = 0.0004
) -> list[RawBar]:
    """Return ``count`` valid hourly bars from ``start``, drifting up by ``step`` each hour."""
    bars = []
    for i in range(count):
        o = round(price + i * step, 5)
        c = round(o + step / 2, 5)
        bars.append(
            RawBar(
                start + timedelta(hours=i), o, round(c + 0.0003, 5), round(o - 0.0002, 5), c, 10 + i
            )
        )
    return bars


def mt4_csv(bars: Iterable[RawBar]) -> str:
    """Return MetaTrader 4 history-center CSV text: ``2017.01.02,09:00,o,h,l,c,volume``."""
    return "".join(
        f"{b.ts:%Y.%m.%d,%H:%M},{b.open},{b.high},{b.low},{b.close},{b.volume:g}\n" for b in bars
    )


def histdata_csv(bars: Iterable[RawBar]) -> str:
    """Return HistData generic ASCII text: ``20170102 020000;o;h;l;c;0``."""
    return "".join(f"{b.ts:%Y%m%d %H%M%S};{b.open};{b.high};{b.low};{b.close};0\n" for b in bars)


def header_csv(bars: Iterable[RawBar], *, time_format: str = "%Y-%m-%d %H:%M") -> str:
    """Return a CSV with a ``time,open,high,low,close,volume`` header."""
    lines = ["time,open,high,low,close,volume"]
    lines += [
        f"{b.ts:{time_format}},{b.open},{b.high},{b.low},{b.close},{b.volume:g}" for b in bars
    ]
    return "\n".join(lines) + "\n"


def _epoch_seconds(wall_time: datetime) -> int:
    return calendar.timegm(wall_time.timetuple())


def hst_header(
    *, version: int = 401, symbol: str = "EURUSD", period: int = 60, digits: int = 5
) -> bytes:
    """Return a 148-byte MT4 history header."""
    return HST_HEADER.pack(version, b"(C)opyright test", symbol.encode(), period, digits, 0, 0, b"")


def hst_bytes(
    bars: Sequence[RawBar],
    *,
    version: int = 401,
    symbol: str = "EURUSD",
    period: int = 60,
    digits: int = 5,
    spread_points: Sequence[int] | None = None,
) -> bytes:
    """Return an MT4 ``.hst`` file (version 401 or 400) holding ``bars`` (broker wall times)."""
    body = bytearray(hst_header(version=version, symbol=symbol, period=period, digits=digits))
    for i, b in enumerate(bars):
        ctm = _epoch_seconds(b.ts)
        if version == 401:
            spread = spread_points[i] if spread_points is not None else 0
            body += HST_401_RECORD.pack(
                ctm, b.open, b.high, b.low, b.close, int(b.volume), spread, 0
            )
        else:
            body += HST_400_RECORD.pack(ctm, b.open, b.low, b.high, b.close, float(b.volume))
    return bytes(body)


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    """Return a frame as Parquet bytes."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """Return a deflated zip archive of ``members`` (fixed timestamps: reproducible bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """Return ``data`` gzip-compressed (fixed mtime, so the bytes are reproducible)."""
    return gzip.compress(data, mtime=0)


def bar_frame(rows: Iterable[tuple[object, ...]]) -> pl.DataFrame:
    """Return a BAR_SCHEMA frame from ``(ts, open, high, low, close, volume, spread)`` tuples."""
    return pl.DataFrame(list(rows), schema=list(BAR_SCHEMA), orient="row").cast(BAR_SCHEMA)  # type: ignore[arg-type]


HOUR_BARS_START = datetime(2024, 1, 2, 9, tzinfo=UTC)  # a Tuesday


def ohlc_bars(
    rows: Sequence[tuple[float, float, float, float]], ts: Sequence[datetime] | None = None
) -> pl.DataFrame:
    """Return hourly bars from ``(open, high, low, close)`` rows, from HOUR_BARS_START unless
    ``ts`` is given (volume 1, no spread)."""
    times = (
        ts
        if ts is not None
        else [HOUR_BARS_START + i * timedelta(hours=1) for i in range(len(rows))]
    )
    return bar_frame(
        (t, o, h, lo, c, 1.0, None) for t, (o, h, lo, c) in zip(times, rows, strict=True)
    )


def close_bars(closes: Sequence[float], ts: Sequence[datetime] | None = None) -> pl.DataFrame:
    """Return hourly bars whose open, high, low and close all equal the given closes."""
    return ohlc_bars([(c, c, c, c) for c in closes], ts)


def write(path: Path, data: bytes | str) -> Path:
    """Write text or bytes to ``path`` (making folders) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path

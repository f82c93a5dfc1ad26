"""Parsers: bytes of one source in, a frame of raw bars out.

Every parser returns a :class:`ParsedSource` whose ``frame`` has one row per data line:
``line`` (1-based line, or record number for binary files), ``raw`` (the line's text, kept for
quarantine), ``symbol`` (null unless the file names it per row), ``ts_local`` (naive wall time
of the source clock), ``open``, ``high``, ``low``, ``close``, ``volume``, ``spread`` (price units,
null where the source has none) and ``error`` (why the line could not be read; null when it
could). Parsers never drop a line: unreadable ones carry an ``error``.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import polars as pl

from core.clocks import BROKER, UTC, Clock, parse_clock
from core.errors import DataError, UsageError
from core.timeframes import Timeframe, parse_timeframe
from core.times import MT4_MINUTES
from core.types import Side, SourceFormat, VolumeKind

PRICE_COLUMNS = ("open", "high", "low", "close")
FRAME_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.Int64(),
    "raw": pl.String(),
    "symbol": pl.String(),
    "ts_local": pl.Datetime("us"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "spread": pl.Float64(),
    "error": pl.String(),
}


@dataclass(frozen=True)
class RawSource:
    """The bytes of one source and what its name tells."""

    name: str
    data: bytes
    format: str | None = None  # forced format, or None to detect
    hints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedSource:
    """A parsed source: raw bars plus what the format says about them."""

    name: str
    format: str
    frame: pl.DataFrame
    clock: Clock
    side: Side
    volume_kind: VolumeKind
    symbol: str | None = None
    timeframe: Timeframe | None = None
    digits: int | None = None
    # Exports of a live feed (MetaTrader, Dukascopy) may end with the bar still forming.
    may_end_with_forming_bar: bool = False
    # MT5 exports give the spread in points (10^-digits); everything else in price units.
    spread_in_points: bool = False
    # The source text, when the parser left ``raw`` empty for speed (filled in on quarantine).
    text: bytes | None = None

    def with_frame(self, frame: pl.DataFrame) -> ParsedSource:
        """Return a copy with another frame."""
        return replace(self, frame=frame)


FORMATS = tuple(f.value for f in SourceFormat)


def detect_format(source: RawSource) -> str:
    """Tell a source's format from its first bytes and its name.

    Raises
    ------
    DataError
        If the content matches no supported format.
    """
    data = source.data
    name = source.name.lower()
    if data[:4] == b"PAR1":
        return "parquet"
    if len(data) >= 148 and int.from_bytes(data[:4], "little") in (400, 401):
        return "hst"
    if name.endswith(".hst"):
        msg = "not a MetaTrader 4 history file (version 400 or 401 expected in the header)"
        raise DataError(msg, source=source.name, line=1)
    head = data[:4096].decode("utf-8", errors="replace").lstrip("\ufeff")
    first = next((ln.strip() for ln in head.splitlines() if ln.strip()), "")
    if re.match(r"\d{8} \d{6};", first):
        return "histdata"
    if re.match(r"\d{4}\.\d{2}\.\d{2},\d{2}:\d{2},", first):
        return "mt4-csv"
    if re.match(r"\d{8} \d{2}:\d{2},", first):
        return "lean"
    if re.search(r"[,;\t|]", first):
        return "csv"
    msg = (
        "unknown format: expected MT4 CSV or .hst, HistData ASCII, LEAN, a CSV with a header, "
        "or Parquet; name it with --format"
    )
    raise DataError(msg, source=source.name, line=1)


def read_lines(data: bytes) -> pl.DataFrame:
    """Split text into numbered, non-blank lines (invalid UTF-8 is replaced, not fatal)."""
    frame = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["raw"],
        schema={"raw": pl.String},
        encoding="utf8-lossy",
        truncate_ragged_lines=True,
    )
    raw = pl.col("raw").str.strip_chars_end("\r\n").str.strip_chars_start("\ufeff")
    return (
        frame.with_row_index("line", offset=1)
        .with_columns(pl.col("line").cast(pl.Int64), raw)
        .filter(pl.col("raw").is_not_null() & (pl.col("raw").str.strip_chars() != ""))
    )


def _fast_frame(
    data: bytes, separator: str, names: list[str], time_expr: pl.Expr, time_format: str
) -> pl.DataFrame | None:
    """Read a headerless, clean file in one pass; None when it is not clean (use the slow path).

    Clean means: every line has every field, numbers and times parse, no blank lines. Any
    doubt sends the file to the line-by-line parser, which explains each bad line.
    """
    schema = {n: (pl.String if n in ("date", "time") else pl.Float64) for n in names}
    try:
        frame = pl.read_csv(
            io.BytesIO(data), has_header=False, separator=separator, new_columns=names,
            schema=schema, quote_char=None,
        )  # fmt: skip
        n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if frame.height != n_lines or frame.null_count().sum_horizontal()[0] > 0:
            return None
        ts = frame.select(time_expr.str.to_datetime(time_format, strict=True, time_unit="us"))
    except (pl.exceptions.PolarsError, ValueError):
        return None
    return frame.with_row_index("line", offset=1).with_columns(
        pl.col("line").cast(pl.Int64),
        ts.to_series().alias("ts_local"),
        pl.lit(None, dtype=pl.String).alias("raw"),
    )


def _field(index: int) -> pl.Expr:
    return (
        pl.col("_fields").list.get(index, null_on_oob=True).str.strip_chars().str.strip_chars('"')
    )


def _number(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Float64, strict=False)


def _finish(frame: pl.DataFrame, checks: list[tuple[pl.Expr, str]]) -> pl.DataFrame:
    """Attach the first failing check's message as ``error`` and conform to FRAME_SCHEMA."""
    error: pl.Expr = pl.lit(None, dtype=pl.String)
    for failed, message in reversed(checks):
        error = pl.when(failed).then(pl.lit(message)).otherwise(error)
    frame = frame.with_columns(error.alias("error"))
    missing = [pl.lit(None, dtype=dtype).alias(n) for n, dtype in FRAME_SCHEMA.items()
               if n not in frame.columns]  # fmt: skip
    return frame.with_columns(missing).select(
        [pl.col(n).cast(dtype) for n, dtype in FRAME_SCHEMA.items()]
    )


def _split(lines: pl.DataFrame, separator: str) -> pl.DataFrame:
    return lines.with_columns(pl.col("raw").str.split(separator).alias("_fields"))


def _standard_checks(min_fields: int) -> list[tuple[pl.Expr, str]]:
    n_fields = pl.col("_fields").list.len()
    checks: list[tuple[pl.Expr, str]] = [
        (n_fields < min_fields, f"expected at least {min_fields} fields"),
        (pl.col("ts_local").is_null(), "unreadable timestamp"),
    ]
    for column in PRICE_COLUMNS:
        checks.append((pl.col(column).is_null(), f"unreadable {column} price"))
    checks.append((pl.col("volume").is_null(), "unreadable volume"))
    return checks


def parse_histdata(source: RawSource) -> ParsedSource:
    """Parse HistData generic ASCII M1: ``20170102 020000;open;high;low;close;volume``.

    Prices are bid, the clock is EST without daylight saving (``Etc/GMT+5``), volume is always 0.
    """
    names = ["time", "open", "high", "low", "close", "volume"]
    fast = _fast_frame(source.data, ";", names, pl.col("time"), "%Y%m%d %H%M%S")
    if fast is not None:
        return ParsedSource(
            name=source.name, format="histdata", frame=_finish(fast, []),
            clock=parse_clock("Etc/GMT+5"), side=Side.BID, volume_kind=VolumeKind.NONE,
            timeframe=Timeframe.M1, text=source.data,
        )  # fmt: skip
    lines = _split(read_lines(source.data), ";")
    time_text = _field(0)
    frame = lines.with_columns(
        ts_local=time_text.str.to_datetime("%Y%m%d %H%M%S", strict=False, time_unit="us"),
        open=_number(_field(1)),
        high=_number(_field(2)),
        low=_number(_field(3)),
        close=_number(_field(4)),
        volume=_number(_field(5)).fill_null(0.0),
    )
    frame = _finish(frame, _standard_checks(5))
    return ParsedSource(
        name=source.name, format="histdata", frame=frame, clock=parse_clock("Etc/GMT+5"),
        side=Side.BID, volume_kind=VolumeKind.NONE, timeframe=Timeframe.M1,
    )  # fmt: skip


def parse_mt4_csv(source: RawSource) -> ParsedSource:
    """Parse a MetaTrader 4 history-center CSV: ``2017.01.02,09:00,o,h,l,c,volume``.

    Prices are bid, the clock is the broker's (``broker:ny-close``), volume counts ticks.
    """
    names = ["date", "time", "open", "high", "low", "close", "volume"]
    both = pl.concat_str([pl.col("date"), pl.col("time")], separator=" ")
    fast = _fast_frame(source.data, ",", names, both, MT4_MINUTES)
    if fast is not None:
        return ParsedSource(
            name=source.name, format="mt4-csv", frame=_finish(fast, []), clock=BROKER,
            side=Side.BID, volume_kind=VolumeKind.TICK, may_end_with_forming_bar=True,
            text=source.data,
        )  # fmt: skip
    lines = _split(read_lines(source.data), ",")
    time_text = pl.concat_str([_field(0), _field(1)], separator=" ")
    frame = lines.with_columns(
        ts_local=time_text.str.to_datetime(MT4_MINUTES, strict=False, time_unit="us"),
        open=_number(_field(2)),
        high=_number(_field(3)),
        low=_number(_field(4)),
        close=_number(_field(5)),
        volume=_number(_field(6)),
    )
    frame = _finish(frame, _standard_checks(7))
    return ParsedSource(
        name=source.name, format="mt4-csv", frame=frame, clock=BROKER, side=Side.BID,
        volume_kind=VolumeKind.TICK, may_end_with_forming_bar=True,
    )  # fmt: skip


_LEAN_CLOCKS = {"oanda": "UTC", "fxcm": "Etc/GMT+5"}


def parse_lean(source: RawSource) -> ParsedSource:
    """Parse LEAN bars: FX/CFD quote bars (bid and ask OHLC) or equity trade bars.

    Quote bars ``YYYYMMDD HH:mm,bo,bh,bl,bc,bsize,ao,ah,al,ac,asize`` become a bid series with a
    per-bar ``spread`` (ask close - bid close). Trade bars ``YYYYMMDD HH:mm,o,h,l,c,volume`` carry
    prices in 1/10000 dollars. Clock: OANDA UTC, FXCM UTC-5, equities New York (from the path).
    """
    lines = _split(read_lines(source.data), ",")
    time_text = _field(0)
    ts = time_text.str.to_datetime("%Y%m%d %H:%M", strict=False, time_unit="us")
    path = source.name.lower().replace("\\", "/")
    n_fields = int(lines["_fields"].list.len().median() or 0) if lines.height else 0  # type: ignore[arg-type]
    if n_fields >= 11:
        frame = lines.with_columns(
            ts_local=ts,
            open=_number(_field(1)),
            high=_number(_field(2)),
            low=_number(_field(3)),
            close=_number(_field(4)),
            volume=pl.lit(0.0),
            spread=_number(_field(9)) - _number(_field(4)),
        )
        checks = _standard_checks(11)
        checks.append((pl.col("spread").is_null(), "unreadable ask close"))
        clock = next((c for market, c in _LEAN_CLOCKS.items() if f"/{market}/" in path), "UTC")
        return ParsedSource(
            name=source.name, format="lean", frame=_finish(frame, checks),
            clock=parse_clock(clock), side=Side.BID, volume_kind=VolumeKind.NONE,
        )  # fmt: skip
    scale = 1e-4 if "/equity/" in path else 1.0
    frame = lines.with_columns(
        ts_local=ts,
        open=_number(_field(1)) * scale,
        high=_number(_field(2)) * scale,
        low=_number(_field(3)) * scale,
        close=_number(_field(4)) * scale,
        volume=_number(_field(5)),
    )
    clock = "America/New_York" if "/equity/" in path else "UTC"
    return ParsedSource(
        name=source.name, format="lean", frame=_finish(frame, _standard_checks(6)),
        clock=parse_clock(clock), side=Side.BID, volume_kind=VolumeKind.REAL,
    )  # fmt: skip


_HST_HEADER = 148
_HST_401 = np.dtype(
    [("ctm", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
     ("volume", "<i8"), ("spread", "<i4"), ("real_volume", "<i8")]
)  # fmt: skip
_HST_400 = np.dtype(
    [("ctm", "<i4"), ("open", "<f8"), ("low", "<f8"), ("high", "<f8"), ("close", "<f8"),
     ("volume", "<f8")]
)  # fmt: skip


def parse_hst(source: RawSource) -> ParsedSource:
    """Parse a MetaTrader 4 ``.hst`` history file, version 401 (or the older 400).

    Header: 148 bytes (version, copyright, symbol, period in minutes, digits, ...). Version 401
    records are 60 bytes (time as int64 seconds of the broker clock, OHLC doubles, tick volume,
    spread in points, real volume); version 400 records are 44 bytes. A truncated last record is
    reported as an unreadable line.
    """
    data = source.data
    version = int.from_bytes(data[:4], "little")
    symbol = data[68:80].split(b"\0", 1)[0].decode("ascii", errors="replace").strip() or None
    period = int.from_bytes(data[80:84], "little", signed=True)
    digits = int.from_bytes(data[84:88], "little", signed=True)
    dtype = _HST_401 if version == 401 else _HST_400
    body = data[_HST_HEADER:]
    n_full, remainder = divmod(len(body), dtype.itemsize)
    records = np.frombuffer(body[: n_full * dtype.itemsize], dtype=dtype)
    spread = None
    if version == 401 and n_full and (records["spread"] != 0).any() and 0 <= digits <= 10:
        spread = records["spread"].astype("f8") * 10.0**-digits
    frame = pl.DataFrame(
        {
            "line": np.arange(1, n_full + 1, dtype="i8"),
            "ts_local": records["ctm"].astype("i8") * 1_000_000,
            "open": records["open"],
            "high": records["high"],
            "low": records["low"],
            "close": records["close"],
            "volume": records["volume"].astype("f8"),
            "spread": spread if spread is not None else np.full(n_full, np.nan),
        }
    ).with_columns(
        pl.col("ts_local").cast(pl.Datetime("us")),
        pl.col("spread").fill_nan(None),
        raw=pl.format("record {}", pl.col("line")),
    )
    if remainder:
        truncated = pl.DataFrame(
            {
                "line": [n_full + 1],
                "raw": [f"record {n_full + 1}: {remainder} of {dtype.itemsize} bytes"],
            }
        ).with_columns(pl.col("line").cast(pl.Int64))
        frame = pl.concat([frame, truncated], how="diagonal")
    checks: list[tuple[pl.Expr, str]] = [(pl.col("open").is_null(), "truncated record")]
    try:
        timeframe = parse_timeframe(period) if period > 0 else None
    except UsageError as exc:
        raise DataError(f"bad period in the header ({exc})", source=source.name, line=1) from None
    return ParsedSource(
        name=source.name, format="hst", frame=_finish(frame, checks), clock=BROKER,
        side=Side.BID, volume_kind=VolumeKind.TICK, symbol=symbol, timeframe=timeframe,
        digits=digits if 0 <= digits <= 10 else None, may_end_with_forming_bar=True,
    )  # fmt: skip


# Header names people use for each column; matched after lower-casing, dropping <> and spaces,
# and keeping only the part after the last '.' ('BTC.close' -> 'close').
_HEADER_NAMES: dict[str, tuple[str, ...]] = {
    "time": ("time", "date", "timestamp", "datetime", "date_time", "gmttime", "localtime",
             "ts", "dt", "opentime", "open_time", "utc", "period"),
    "clock_time": ("hour", "clock", "hhmm", "time_of_day"),
    "open": ("open", "o", "first", "openbid", "bidopen", "open_bid"),
    "high": ("high", "h", "max", "highbid", "bidhigh", "high_bid"),
    "low": ("low", "l", "min", "lowbid", "bidlow", "low_bid"),
    "close": ("close", "c", "last", "closebid", "bidclose", "close_bid", "price"),
    "volume": ("volume", "vol", "v", "tickvol", "tick_volume", "tickvolume", "real_volume",
               "volume_traded", "qty"),
    "spread": ("spread",),
    "symbol": ("name", "symbol", "ticker", "instrument", "pair", "asset"),
}  # fmt: skip
_TICK_VOLUME_NAMES = ("tickvol", "tick_volume", "tickvolume")
_DATE_ONLY_NAMES = ("date",)

# Candidate timestamp layouts; (day-first, month-first) pairs are told apart from the data.
_DATE_PARTS = {
    "ymd": ("%Y-%m-%d", "%Y.%m.%d", "%Y/%m/%d", "%Y%m%d"),
    "dmy": ("%d.%m.%Y", "%d/%m/%Y", "%d-%m-%Y"),
    "mdy": ("%m.%d.%Y", "%m/%d/%Y", "%m-%d-%Y"),
}
_TIME_PARTS = (" %H:%M:%S%.f", "T%H:%M:%S%.f", " %H:%M:%S", "T%H:%M:%S", " %H:%M", "T%H:%M",
               " %H%M%S", "")  # fmt: skip


def _normalise_header(name: str) -> str:
    text = name.strip().strip('"').strip("<>").lower()
    text = text.rsplit(".", 1)[-1]
    return re.sub(r"[\s]+", "", text)


def _map_header(header: list[str]) -> dict[str, int]:
    mapping: dict[str, int] = {}
    for index, name in enumerate(header):
        norm = _normalise_header(name)
        for role, names in _HEADER_NAMES.items():
            if norm in names and role not in mapping:
                if role == "close" and norm == "price" and "close" in mapping:
                    continue
                mapping[role] = index
                break
    # 'Date' and 'Time' as two columns: the second becomes the clock time.
    if "time" in mapping:
        first = _normalise_header(header[mapping["time"]])
        for index, name in enumerate(header):
            if index != mapping["time"] and _normalise_header(name) == "time" and first == "date":
                mapping["clock_time"] = index
    return mapping


def _guess_separator(first: str) -> str:
    counts = {sep: first.count(sep) for sep in ("\t", ",", ";", "|")}
    return max(counts, key=lambda s: counts[s])


def _datetime_candidates(date_order: str | None) -> list[tuple[str, str]]:
    orders = ["ymd", "dmy", "mdy"]
    if date_order == "dmy":
        orders.remove("mdy")
    elif date_order == "mdy":
        orders.remove("dmy")
    return [
        (order, date + time)
        for order in orders
        for date in _DATE_PARTS[order]
        for time in _TIME_PARTS
    ]


def _parse_times(text: pl.Series, date_order: str | None, name: str) -> pl.Series:
    """Parse timestamps, choosing the layout that reads the data (and keeps it increasing)."""
    sample = text.drop_nulls()
    if sample.len() > 5000:
        step = sample.len() // 5000
        sample = sample.gather_every(step)
    if sample.len() and sample.str.contains(r"(Z|[+-]\d{2}:?\d{2})$").all():
        aware = text.str.to_datetime(strict=False, time_unit="us")
        if aware.dtype == pl.Datetime("us", "UTC") or getattr(aware.dtype, "time_zone", None):
            return aware.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    if sample.len() and sample.str.contains(r"^\d{9,13}$").all():
        values = text.cast(pl.Int64, strict=False)
        largest = values.max()
        unit: Literal["ms", "s"] = "ms" if isinstance(largest, int) and largest > 10**11 else "s"
        return pl.from_epoch(values, time_unit=unit).cast(pl.Datetime("us"))
    fits: list[tuple[str, str]] = []
    for order, layout in _datetime_candidates(date_order):
        parsed = sample.str.to_datetime(layout, strict=False, time_unit="us")
        nulls = parsed.null_count()
        # A layout fits when it reads the values but a few (and at least one of them).
        if nulls <= max(1, sample.len() // 100) and nulls < sample.len():
            fits.append((order, layout))
    if not fits:
        msg = f"cannot read the timestamps (first value {sample[0] if sample.len() else None!r})"
        raise DataError(msg, source=name)
    orders = {order for order, _ in fits}
    if {"dmy", "mdy"} <= orders:
        increasing = []
        for order, layout in fits:
            if order in {"dmy", "mdy"}:
                parsed = sample.str.to_datetime(layout, strict=False, time_unit="us").drop_nulls()
                if parsed.len() > 1 and parsed.is_sorted():
                    increasing.append((order, layout))
        if len({o for o, _ in increasing}) == 1:
            fits = increasing
        else:
            msg = "day-first and month-first dates both read this file: say --date-order dmy|mdy"
            raise DataError(msg, source=name)
    return text.str.to_datetime(fits[0][1], strict=False, time_unit="us")


def parse_csv(source: RawSource, *, date_order: str | None = None) -> ParsedSource:
    """Parse a delimited file with or without a header, in any column order and naming.

    With a header, columns are found by name (``Time``/``Date``/``timestamp``, ``Open``...,
    prefixed names such as ``BTC.close``, MT5's ``<DATE>``/``<TIME>``/``<SPREAD>``); a symbol
    column (``Name``, ``symbol``, ``ticker``) splits the file into several series. Without a
    header the columns are ``time, open, high, low, close[, volume]`` (Dukascopy's variants).
    Clock UTC, bid prices unless told otherwise.
    """
    lines = read_lines(source.data)
    if lines.height == 0:
        raise DataError("no data lines", source=source.name)
    first = lines["raw"][0]
    separator = _guess_separator(first)
    header_fields = [f.strip() for f in first.split(separator)]
    has_header = not re.match(r"\s*\"?\d", header_fields[0]) and not all(
        re.fullmatch(r"-?[\d.]+", f.strip('"')) for f in header_fields[1:] if f
    )
    if has_header:
        mapping = _map_header(header_fields)
        lines = lines.slice(1)
        if lines.height == 0:
            raise DataError("no data lines below the header", source=source.name, line=1)
    else:
        mapping = {"time": 0, "open": 1, "high": 2, "low": 3, "close": 4}
        if len(header_fields) > 5:
            mapping["volume"] = 5
    missing = [r for r in ("time", "open", "high", "low", "close") if r not in mapping]
    if missing:
        msg = (
            f"no usable {', '.join(missing)} column in header {header_fields!r}: name columns "
            "Time/Open/High/Low/Close (any case, optionally prefixed like BTC.close)"
        )
        raise DataError(msg, source=source.name, line=1)
    lines = _split(lines, separator)
    time_text = _field(mapping["time"])
    if "clock_time" in mapping:
        time_text = pl.concat_str([time_text, _field(mapping["clock_time"])], separator=" ")
    texts = lines.select(time_text.alias("t"))["t"]
    ts = _parse_times(texts, date_order, source.name)
    frame = lines.with_columns(
        pl.Series("ts_local", ts),
        open=_number(_field(mapping["open"])),
        high=_number(_field(mapping["high"])),
        low=_number(_field(mapping["low"])),
        close=_number(_field(mapping["close"])),
        volume=_number(_field(mapping["volume"])) if "volume" in mapping else pl.lit(0.0),
    )
    if "spread" in mapping:
        frame = frame.with_columns(spread=_number(_field(mapping["spread"])))
    if "symbol" in mapping:
        frame = frame.with_columns(symbol=_field(mapping["symbol"]))
    checks = _standard_checks(len(mapping) - ("clock_time" in mapping))
    if "symbol" in mapping:
        checks.append(((pl.col("symbol").is_null()) | (pl.col("symbol") == ""), "no symbol"))
    volume_kind = VolumeKind.NONE
    if "volume" in mapping:
        vol_name = _normalise_header(header_fields[mapping["volume"]]) if has_header else ""
        volume_kind = VolumeKind.TICK if vol_name in _TICK_VOLUME_NAMES else VolumeKind.REAL
        if has_header and vol_name.startswith("real"):
            volume_kind = VolumeKind.REAL
    spread_in_points = (
        has_header
        and "spread" in mapping
        and (header_fields[mapping["spread"]].strip().startswith("<"))
    )
    return ParsedSource(
        name=source.name, format="csv", frame=_finish(frame, checks), clock=UTC,
        side=Side.BID, volume_kind=volume_kind, may_end_with_forming_bar=True,
        spread_in_points=spread_in_points,
    )  # fmt: skip


def parse_parquet(source: RawSource) -> ParsedSource:
    """Parse a Parquet file of bars (columns named as in :func:`parse_csv`)."""
    try:
        table = pl.read_parquet(io.BytesIO(source.data))
    except Exception as exc:  # polars raises several error types for corrupt files
        msg = f"unreadable Parquet file ({exc.__class__.__name__}: {exc})"
        raise DataError(msg, source=source.name) from None
    mapping = _map_header(table.columns)
    missing = [r for r in ("time", "open", "high", "low", "close") if r not in mapping]
    if missing:
        msg = f"no usable {', '.join(missing)} column among {table.columns!r}"
        raise DataError(msg, source=source.name)
    col = {role: table.columns[i] for role, i in mapping.items()}
    ts = table[col["time"]]
    if ts.dtype == pl.String:
        ts = _parse_times(ts, None, source.name)
    elif isinstance(ts.dtype, pl.Datetime) and ts.dtype.time_zone:
        ts = ts.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    elif ts.dtype == pl.Date:
        ts = ts.cast(pl.Datetime("us"))
    frame = pl.DataFrame(
        {
            "line": np.arange(1, table.height + 1, dtype="i8"),
            "ts_local": ts.cast(pl.Datetime("us")),
            **{r: table[col[r]].cast(pl.Float64, strict=False) for r in PRICE_COLUMNS},
            "volume": table[col["volume"]].cast(pl.Float64, strict=False)
            if "volume" in col
            else np.zeros(table.height),
        }
    )
    if "spread" in col:
        frame = frame.with_columns(table[col["spread"]].cast(pl.Float64).alias("spread"))
    if "symbol" in col:
        frame = frame.with_columns(table[col["symbol"]].cast(pl.String).alias("symbol"))
    frame = frame.with_columns(raw=pl.format("row {}", pl.col("line")))
    checks: list[tuple[pl.Expr, str]] = [(pl.col("ts_local").is_null(), "unreadable timestamp")]
    checks += [(pl.col(c).is_null(), f"missing {c} price") for c in PRICE_COLUMNS]
    return ParsedSource(
        name=source.name, format="parquet", frame=_finish(frame, checks), clock=UTC,
        side=Side.BID, volume_kind=VolumeKind.REAL if "volume" in col else VolumeKind.NONE,
    )  # fmt: skip


def parse_source(source: RawSource, *, date_order: str | None = None) -> ParsedSource:
    """Detect (unless forced) the format of a source and parse it."""
    fmt = source.format or detect_format(source)
    if fmt == "histdata":
        return parse_histdata(source)
    if fmt == "mt4-csv":
        return parse_mt4_csv(source)
    if fmt == "hst":
        return parse_hst(source)
    if fmt == "lean":
        return parse_lean(source)
    if fmt == "csv":
        return parse_csv(source, date_order=date_order)
    if fmt == "parquet":
        return parse_parquet(source)
    msg = f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}"
    raise DataError(msg, source=source.name)

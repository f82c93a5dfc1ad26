"""Turn a parsed source into checked bar batches, one per series, with every bad row explained.

Row rules (a row failing any is quarantined with the first reason that applies): readable
fields; a timestamp that exists on the source clock and lies on the timeframe's grid; no NaN;
prices > 0; low <= open, close <= high; volume >= 0; spread >= 0. Repeated timestamps inside one
source: exact repeats count as duplicates, differing ones are conflicts settled by
:func:`preferred_first`. The final bar of an export taken from a live feed is held back as
partial unless ``as_of`` proves it complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from core.clocks import Clock
from core.errors import DataError, UsageError
from core.instruments import InstrumentRegistry
from core.timeframes import Timeframe
from core.types import SeriesKey, Side, VolumeKind
from pipelines.ingest.names import symbol_timeframe_from_name
from pipelines.ingest.parsers import PRICE_COLUMNS, ParsedSource

BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume", "spread")
BAR_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "spread": pl.Float64(),
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "line": pl.Int64(),
    "symbol": pl.String(),
    "timeframe": pl.String(),
    "side": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "reason": pl.String(),
    "raw": pl.String(),
}
PARTIAL_BAR = "partial bar"


@dataclass(frozen=True)
class SeriesBatch:
    """Checked bars of one series from one source, and what was set aside."""

    key: SeriesKey
    source: str
    format: str
    volume_kind: VolumeKind
    bars: pl.DataFrame  # BAR_SCHEMA, sorted by ts, unique ts
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA
    conflicts: pl.DataFrame  # QUARANTINE_SCHEMA: in-source versions that lost to another
    rows_read: int
    rows_duplicate: int
    rows_unsorted: int
    first_local: datetime | None = None

    @property
    def rows_conflicting(self) -> int:
        """Return the rows that lost a conflict inside the source."""
        return self.conflicts.height


def preferred_first(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort versions of each timestamp so the preferred one comes first.

    The rule, independent of the order sources arrive in: a bar carrying a spread beats one
    without; then the larger volume (more of the market seen); then the lower close, open, high,
    low and spread, an arbitrary but fixed tie-break.
    """
    return frame.sort(
        [pl.col("ts"), pl.col("spread").is_null(), pl.col("volume"), "close", "open", "high",
         "low", "spread"],
        descending=[False, False, True, False, False, False, False, False],
        nulls_last=True,
    )  # fmt: skip


def _grid_check(timeframe: Timeframe) -> pl.Expr | None:
    local = pl.col("ts_local")
    minutes = local.dt.hour().cast(pl.Int64) * 60 + local.dt.minute().cast(pl.Int64)
    if timeframe.minutes <= 240:
        return ((minutes % timeframe.minutes) != 0) | (local.dt.second() != 0)
    return None


def _row_failures(timeframe: Timeframe) -> list[tuple[pl.Expr, pl.Expr]]:
    """Return (failed, reason) pairs in priority order; reasons are built for bad rows only."""
    o, h, lo, c = (pl.col(n) for n in PRICE_COLUMNS)
    v, s = pl.col("volume"), pl.col("spread")
    any_nan = pl.any_horizontal([pl.col(n).is_nan() for n in PRICE_COLUMNS])
    any_inf = pl.any_horizontal([pl.col(n).is_infinite() for n in PRICE_COLUMNS])
    rules: list[tuple[pl.Expr, pl.Expr]] = [
        (pl.col("error").is_not_null(), pl.col("error")),
        (
            pl.col("ts").is_null(),
            pl.format(
                "local time {} does not exist on clock {}", pl.col("ts_local"), pl.col("_clock")
            ),
        ),
        (any_nan, pl.lit("NaN price")),
        (any_inf, pl.lit("infinite price")),
        (pl.min_horizontal(o, h, lo, c) <= 0, pl.lit("price not above 0")),
        (h < lo, pl.format("high {} below low {}", h, lo)),
        ((o < lo) | (o > h), pl.format("open {} outside low {} .. high {}", o, lo, h)),
        ((c < lo) | (c > h), pl.format("close {} outside low {} .. high {}", c, lo, h)),
        (v.is_nan(), pl.lit("NaN volume")),
        (v.is_infinite(), pl.lit("infinite volume")),
        (v < 0, pl.format("volume {} below 0", v)),
        (s.is_not_null() & s.is_nan(), pl.lit("NaN spread")),
        (s.is_not_null() & s.is_infinite(), pl.lit("infinite spread")),
        (s.is_not_null() & (s < 0), pl.format("spread {} below 0", s.round(10))),
    ]
    grid = _grid_check(timeframe)
    if grid is not None:
        rules.insert(2, (grid, pl.lit(f"timestamp not on the {timeframe.value} grid")))
    return [(failed.fill_null(False), reason) for failed, reason in rules]


def _split_bad_rows(
    frame: pl.DataFrame, timeframe: Timeframe, clock: Clock
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows into (good, bad); bad rows get ``_reason``, the first rule they break."""
    rules = _row_failures(timeframe)
    bad_mask = frame.select(pl.any_horizontal([failed for failed, _ in rules]))[:, 0]
    good = frame.filter(~bad_mask)
    bad = frame.filter(bad_mask).with_columns(pl.lit(str(clock)).alias("_clock"))
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for failed, message in reversed(rules):
        reason = pl.when(failed).then(message).otherwise(reason)
    return good, bad.with_columns(reason.alias("_reason"))


def _quarantine_rows(
    frame: pl.DataFrame, key: SeriesKey, source: str, reason: pl.Expr | str
) -> pl.DataFrame:
    return frame.select(
        pl.lit(source).alias("source"),
        pl.col("line"),
        pl.lit(key.symbol).alias("symbol"),
        pl.lit(key.timeframe.value).alias("timeframe"),
        pl.lit(key.side.value).alias("side"),
        pl.col("ts"),
        (pl.lit(reason) if isinstance(reason, str) else reason).alias("reason"),
        pl.col("raw"),
    ).cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]


def normalize(
    parsed: ParsedSource,
    *,
    registry: InstrumentRegistry,
    symbol: str | None = None,
    timeframe: Timeframe | None = None,
    side: Side | None = None,
    clock: Clock | None = None,
    volume_kind: VolumeKind | None = None,
    as_of: datetime | None = None,
) -> list[SeriesBatch]:
    """Check a parsed source and split it into one batch per series.

    Explicit arguments override what the content and the name say.

    Raises
    ------
    DataError
        If no symbol or timeframe can be found, or a symbol is unknown.
    """
    name_symbol, name_timeframe = symbol_timeframe_from_name(parsed.name, registry.__contains__)
    timeframe = timeframe or parsed.timeframe or name_timeframe
    if timeframe is None:
        msg = "no timeframe in the file name or content: give --timeframe (M1, H1, D1, 60, ...)"
        raise DataError(msg, source=parsed.name)
    clock = clock or parsed.clock
    side = side or parsed.side
    frame = parsed.frame
    file_symbol = symbol or parsed.symbol or name_symbol
    if symbol is not None or frame["symbol"].null_count() == frame.height:
        if file_symbol is None:
            msg = "no symbol in the file name or content: give --symbol (EURUSD, XAUUSD, ...)"
            raise DataError(msg, source=parsed.name)
        frame = frame.with_columns(symbol=pl.lit(file_symbol))
    try:
        # A blank symbol cell leaves its row without a symbol (quarantined), not the file unread.
        symbols = [s for s in frame["symbol"].drop_nulls().unique() if s.strip()]
        canonical = {s: registry.canonical(s) for s in symbols}
    except UsageError as exc:  # an unknown symbol: name the file it came from
        raise DataError(str(exc), source=parsed.name) from None
    frame = frame.with_columns(
        pl.col("symbol").replace_strict(canonical, default=None, return_dtype=pl.String),
        ts=clock.to_utc(pl.col("ts_local")),
    )
    if parsed.spread_in_points:
        digits = {s: registry.get(s).digits for s in canonical.values()}
        factor = pl.col("symbol").replace_strict(
            {s: 10.0**-d for s, d in digits.items()}, default=None, return_dtype=pl.Float64
        )
        frame = frame.with_columns(spread=pl.col("spread") * factor)
    batches: list[SeriesBatch] = []
    orphans = frame.filter(pl.col("symbol").is_null())
    for (sym,), rows in frame.filter(pl.col("symbol").is_not_null()).group_by(
        "symbol", maintain_order=True
    ):
        key = SeriesKey(symbol=str(sym), timeframe=timeframe, side=side)
        batch = _series_batch(parsed, key, rows, volume_kind or parsed.volume_kind, as_of, clock)
        if orphans.height and not batches:
            extra = _quarantine_rows(orphans, key, parsed.name, pl.lit("no symbol"))
            batch = _with_extra_quarantine(batch, extra, orphans.height)
        batches.append(batch)
    if not batches:
        msg = "no data rows with a symbol"
        raise DataError(msg, source=parsed.name)
    return batches


def _with_extra_quarantine(batch: SeriesBatch, extra: pl.DataFrame, n: int) -> SeriesBatch:
    return SeriesBatch(
        key=batch.key, source=batch.source, format=batch.format, volume_kind=batch.volume_kind,
        bars=batch.bars, quarantine=pl.concat([batch.quarantine, extra]),
        conflicts=batch.conflicts, rows_read=batch.rows_read + n,
        rows_duplicate=batch.rows_duplicate, rows_unsorted=batch.rows_unsorted,
    )  # fmt: skip


def _with_raw(rows: pl.DataFrame, parsed: ParsedSource) -> pl.DataFrame:
    """Fill ``raw`` from the source text for rows a fast parser left without it."""
    if rows.height == 0 or parsed.text is None or rows["raw"].null_count() == 0:
        return rows
    from pipelines.ingest.parsers import read_lines

    lines = read_lines(parsed.text).rename({"raw": "_text"})
    return (
        rows.join(lines, on="line", how="left")
        .with_columns(pl.coalesce("raw", "_text").alias("raw"))
        .drop("_text")
    )


def _series_batch(
    parsed: ParsedSource,
    key: SeriesKey,
    rows: pl.DataFrame,
    volume_kind: VolumeKind,
    as_of: datetime | None,
    clock: Clock,
) -> SeriesBatch:
    good, bad = _split_bad_rows(rows, key.timeframe, clock)
    quarantine = _quarantine_rows(_with_raw(bad, parsed), key, parsed.name, pl.col("_reason"))
    steps = good["ts"].diff().dt.total_microseconds().drop_nulls()
    unsorted = int((steps < 0).sum())
    if good.height and (steps > 0).all():
        # The common case: strictly increasing, so no repeats to settle.
        winners, losers, rows_duplicate = good, good.clear(), 0
    else:
        # Exact repeats of a bar are duplicates; differing bars at one time are conflicts.
        value_cols = ["ts", *PRICE_COLUMNS, "volume", "spread"]
        dedup = good.unique(subset=value_cols, keep="first", maintain_order=True)
        rows_duplicate = good.height - dedup.height
        ranked = preferred_first(dedup)
        winners_mask = ranked["ts"].is_first_distinct()
        winners = ranked.filter(winners_mask).sort("ts")
        losers = ranked.filter(~winners_mask)
    conflicts = _quarantine_rows(
        _with_raw(losers, parsed), key, parsed.name,
        pl.lit("conflict: another bar with this timestamp in the source"),
    )  # fmt: skip
    if winners.height and (parsed.may_end_with_forming_bar or as_of is not None):
        last = winners.tail(1)
        end = last["ts"][0] + key.timeframe.duration
        partial = end > as_of if as_of is not None else True
        if partial:
            reason = (
                f"{PARTIAL_BAR}: the source may end inside this bar; re-ingest a later export "
                "to store it, or pass --as-of with the export time"
            )
            last_row = _quarantine_rows(_with_raw(last, parsed), key, parsed.name, reason)
            quarantine = pl.concat([quarantine, last_row])
            winners = winners.head(winners.height - 1)
    bars = winners.select([pl.col(c).cast(dtype) for c, dtype in BAR_SCHEMA.items()])
    return SeriesBatch(
        key=key,
        source=parsed.name,
        format=parsed.format,
        volume_kind=volume_kind,
        bars=bars,
        quarantine=quarantine,
        conflicts=conflicts,
        rows_read=rows.height,
        rows_duplicate=rows_duplicate,
        rows_unsorted=unsorted,
    )

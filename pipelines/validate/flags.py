"""Flags that keep bars but tell a person to look: price jumps and calendar gaps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from core.calendars import TradingCalendar
from core.timeframes import Timeframe
from core.times import iso_z


def jump_score(close: pl.Expr, window: int) -> pl.Expr:
    """Return |log return| in units of the rolling sigma of the previous ``window`` returns."""
    ret = (close / close.shift(1)).log()
    sigma = ret.shift(1).rolling_std(window_size=window, min_samples=max(10, window // 4))
    return (ret.abs() / sigma).fill_nan(None)


def missing_bars(
    previous: pl.Expr, ts: pl.Expr, timeframe: Timeframe, calendar: TradingCalendar
) -> pl.Expr:
    """Return how many bars the calendar expected strictly between ``previous`` and ``ts``."""
    if timeframe.is_intraday:
        start, end = calendar.trading_minutes(previous), calendar.trading_minutes(ts)
        step = (end - start) // timeframe.minutes
    elif timeframe is Timeframe.D1:
        step = calendar.trading_days(ts) - calendar.trading_days(previous)
    else:
        return pl.lit(0, dtype=pl.Int64)
    return (step - 1).clip(lower_bound=0).fill_null(0)


@dataclass
class QualityFlags:
    """Jumps and gaps found in one batch of bars."""

    jumps: int = 0
    jump_examples: list[dict[str, Any]] = field(default_factory=list)
    gaps: int = 0
    missing_bars: int = 0
    largest_gaps: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""
        return {
            "jumps": self.jumps,
            "jump_examples": self.jump_examples,
            "gaps": self.gaps,
            "missing_bars": self.missing_bars,
            "largest_gaps": self.largest_gaps,
        }


def quality_flags(
    bars: pl.DataFrame,
    timeframe: Timeframe,
    calendar: TradingCalendar,
    *,
    jump_sigmas: float,
    jump_window: int,
    listed: int = 20,
) -> QualityFlags:
    """Flag price jumps beyond ``jump_sigmas`` rolling sigmas and gaps against the calendar.

    A gap is a run of expected bars (market open by the calendar) with no bar: an FX weekend is
    no gap, a quiet minute inside the session is.
    """
    if bars.height < 2:
        return QualityFlags()
    scored = bars.select(
        "ts",
        "close",
        jump_score(pl.col("close"), jump_window).alias("z"),
        pl.col("ts").shift(1).alias("previous"),
    )
    # Only a step longer than one bar can hide missing bars: place just those on the calendar.
    longer = scored.filter(
        pl.col("previous").is_not_null()
        & ((pl.col("ts") - pl.col("previous")) > timeframe.duration)
    )
    gaps_frame = longer.with_columns(
        missing_bars(pl.col("previous"), pl.col("ts"), timeframe, calendar).alias("missing")
    )
    jumps = scored.filter(pl.col("z") > jump_sigmas)
    gaps = gaps_frame.filter(pl.col("missing") > 0)
    top_jumps = jumps.sort("z", descending=True).head(listed)
    top_gaps = gaps.sort("missing", descending=True).head(listed)
    return QualityFlags(
        jumps=jumps.height,
        jump_examples=[
            {"ts": iso_z(r["ts"]), "close": r["close"], "sigmas": round(r["z"], 1)}
            for r in top_jumps.iter_rows(named=True)
        ],
        gaps=gaps.height,
        missing_bars=int(gaps["missing"].sum() or 0),
        largest_gaps=[
            {
                "after": iso_z(r["previous"]),
                "before": iso_z(r["ts"]),
                "missing_bars": int(r["missing"]),
            }
            for r in top_gaps.iter_rows(named=True)
        ],
    )

"""Merge new bars into a stored series by timestamp, counting what each row became."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import polars as pl

from pipelines.ingest.normalize import BAR_SCHEMA, preferred_first

# Two prices are the same bar value when they differ by less than this fraction (sources that
# store doubles, such as .hst, and sources that print decimals round differently).
PRICE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class MergeResult:
    """The merged series and the fate of each new row."""

    bars: pl.DataFrame
    added: int
    duplicate: int
    conflicting: int
    losers: pl.DataFrame  # versions that lost a conflict (old or new), BAR_SCHEMA


def _close(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return (a - b).abs() <= PRICE_TOLERANCE * pl.max_horizontal(a.abs(), b.abs())


def merge_bars(existing: pl.DataFrame, new: pl.DataFrame) -> MergeResult:
    """Merge ``new`` bars into ``existing`` ones (both BAR_SCHEMA, unique timestamps).

    A new bar at a timestamp the series lacks is added; one equal to the stored bar is a
    duplicate; one that differs is a conflict, settled by :func:`preferred_first`, so the result
    does not depend on the order sources arrive in.
    """
    if existing.height == 0:
        return MergeResult(new.sort("ts"), new.height, 0, 0, new.clear())
    joined = new.join(existing, on="ts", how="left", suffix="_old")
    stored = pl.col("open_old").is_not_null()
    same = (
        _close(pl.col("open"), pl.col("open_old"))
        & _close(pl.col("high"), pl.col("high_old"))
        & _close(pl.col("low"), pl.col("low_old"))
        & _close(pl.col("close"), pl.col("close_old"))
        & (pl.col("volume") == pl.col("volume_old"))
        & (
            (pl.col("spread").is_null() & pl.col("spread_old").is_null())
            | _close(pl.col("spread"), pl.col("spread_old")).fill_null(False)
        )
    )
    status = joined.select(
        pl.when(~stored).then(pl.lit("added")).when(same).then(pl.lit("duplicate"))
        .otherwise(pl.lit("conflict")).alias("status")
    )["status"]  # fmt: skip
    columns = list(BAR_SCHEMA)
    added = new.filter(status == "added")
    conflicting = new.filter(status == "conflict")
    if conflicting.height:
        contested = existing.join(conflicting.select("ts"), on="ts", how="semi")
        versions = preferred_first(pl.concat([contested, conflicting]))
        first = versions["ts"].is_first_distinct()
        winners, losers = versions.filter(first), versions.filter(~first)
        kept = existing.join(conflicting.select("ts"), on="ts", how="anti")
        merged = pl.concat([kept, winners.select(columns), added])
    else:
        losers = new.clear()
        merged = pl.concat([existing, added])
    return MergeResult(
        bars=merged.sort("ts"),
        added=added.height,
        duplicate=int((status == "duplicate").sum()),
        conflicting=conflicting.height,
        losers=losers.select(columns),
    )


@dataclass(frozen=True)
class CombinedBatches:
    """New bars of one series from several sources, repeats across sources settled."""

    bars: pl.DataFrame
    duplicate: int
    losers: pl.DataFrame  # versions that lost a conflict between sources, BAR_SCHEMA


def combine_batches(frames: list[pl.DataFrame]) -> CombinedBatches:
    """Combine the (each unique, sorted) bars of several sources of one series.

    Sources that do not overlap in time are concatenated; otherwise exact repeats count as
    duplicates and differing bars are settled by :func:`preferred_first`.
    """
    frames = sorted((f for f in frames if f.height), key=lambda f: f["ts"][0])
    if not frames:
        return CombinedBatches(pl.DataFrame(schema=BAR_SCHEMA), 0, pl.DataFrame(schema=BAR_SCHEMA))
    disjoint = all(a["ts"][-1] < b["ts"][0] for a, b in itertools.pairwise(frames))
    if disjoint:
        return CombinedBatches(pl.concat(frames, rechunk=False), 0, frames[0].clear())
    allbars = pl.concat(frames)
    unique = allbars.unique(keep="first", maintain_order=True)
    ranked = preferred_first(unique)
    first = ranked["ts"].is_first_distinct()
    return CombinedBatches(
        bars=ranked.filter(first).sort("ts"),
        duplicate=allbars.height - unique.height,
        losers=ranked.filter(~first),
    )

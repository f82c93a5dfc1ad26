"""Check a store the way a reader would: only through what ``manifest.json`` names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl

from core.timeframes import Timeframe
from core.types import SeriesKey, Side
from feature_store.store import BarStore


def assert_bars_well_formed(bars: pl.DataFrame, label: str = "") -> None:
    """Assert low <= open, close <= high, prices > 0 and strictly increasing timestamps."""
    prices = bars.select("open", "high", "low", "close")
    assert bars["ts"].null_count() == 0, label
    assert (prices.min_horizontal() > 0).all(), f"{label}: a price is not above 0"
    bad_ohlc = bars.filter(
        (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
    )
    assert bad_ohlc.height == 0, f"{label}: OHLC out of order:\n{bad_ohlc}"
    steps = bars["ts"].diff().drop_nulls().dt.total_microseconds()
    assert (steps > 0).all(), f"{label}: timestamps not unique and increasing"


def assert_store_consistent(root: Path) -> dict[str, Any]:
    """Assert the committed manifest names only complete, readable files that add up.

    Returns the manifest (an empty one when nothing was ever committed).
    """
    store = BarStore(root)
    path = root / "manifest.json"
    if not path.exists():
        return store.manifest()
    manifest: dict[str, Any] = json.loads(path.read_text())
    for slug, series in manifest["series"].items():
        total = 0
        for year, part in series["partitions"].items():
            file = root / part["file"]
            assert file.is_file(), f"{slug}: manifest names missing file {part['file']}"
            data = file.read_bytes()
            assert hashlib.sha256(data).hexdigest() == part["sha256"], f"{slug}: {file} changed"
            frame = pl.read_parquet(file)
            assert frame.height == part["rows"], f"{slug} {year}: rows differ from the manifest"
            assert (frame["ts"].dt.year() == int(year)).all(), f"{slug}: rows outside {year}"
            total += part["rows"]
        assert series["rows"] == total, f"{slug}: series rows {series['rows']} != {total}"
        key = SeriesKey(
            symbol=series["symbol"],
            timeframe=Timeframe(series["timeframe"]),
            side=Side(series["side"]),
        )
        assert key.slug == slug
        assert_bars_well_formed(store.read(key), slug)
    for relative in manifest["quarantine"]:
        assert pl.read_parquet(root / relative).height > 0, relative
    for relative in manifest["runs"]:
        assert "run" in json.loads((root / relative).read_text()), relative
    return manifest


def stored_series(root: Path) -> dict[str, tuple[str, pl.DataFrame]]:
    """Return every stored series as ``slug -> (version, bars)``."""
    store = BarStore(root)
    return {info.key.slug: (info.version, store.read(info.key)) for info in store.series()}


def manifest_rows(manifest: dict[str, Any]) -> int:
    """Return the number of bars the manifest says are stored, over every series."""
    return sum(int(series["rows"]) for series in manifest["series"].values())

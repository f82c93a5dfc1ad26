"""The bar store: Parquet partitioned by symbol / timeframe / side / year, one manifest.

Layout under ``SOLODESK_HOME/store``::

    manifest.json                      the only source of truth: series, files, quarantine, runs
    bars/symbol=EURUSD/timeframe=H1/side=bid/year=2017/<sha>.parquet
    quarantine/<run>.parquet           rows set aside, with source, line and reason
    runs/<run>.json                    what each ingest did

Writes are copy-on-write: new files get new content-addressed names, and a transaction commits by
atomically replacing ``manifest.json`` (write, fsync, rename). A process killed at any moment
leaves the previous manifest, which names only complete files, or the new one. Files no manifest
names are removed by the next commit. One writer at a time holds ``.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from core.timeframes import Timeframe
from core.times import iso_z_or_none
from core.types import SeriesKey, Side, VolumeKind
from pipelines.ingest.normalize import BAR_SCHEMA, QUARANTINE_SCHEMA

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries to disk, so a rename into it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@dataclass
class SeriesInfo:
    """What the manifest records about one series."""

    key: SeriesKey
    volume_kind: VolumeKind
    rows: int = 0
    first: str | None = None
    last: str | None = None
    version: str = ""
    partitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    has_spread: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Return the manifest entry."""
        return {
            "symbol": self.key.symbol,
            "timeframe": self.key.timeframe.value,
            "side": self.key.side.value,
            "volume_kind": self.volume_kind.value,
            "rows": self.rows,
            "first": self.first,
            "last": self.last,
            "version": self.version,
            "has_spread": self.has_spread,
            "partitions": self.partitions,
            "sources": self.sources,
        }

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> SeriesInfo:
        """Read a manifest entry."""
        key = SeriesKey(
            symbol=entry["symbol"],
            timeframe=Timeframe(entry["timeframe"]),
            side=Side(entry["side"]),
        )
        return cls(
            key=key,
            volume_kind=VolumeKind(entry["volume_kind"]),
            rows=entry["rows"],
            first=entry["first"],
            last=entry["last"],
            version=entry["version"],
            partitions=entry["partitions"],
            sources=entry["sources"],
            has_spread=entry.get("has_spread", False),
        )

    @property
    def anchors(self) -> set[str]:
        """Return the clocks the series' resampled sources record (``--anchor``)."""
        return {str(s["anchor"]) for s in self.sources if "anchor" in s}

    @property
    def anchor(self) -> str | None:
        """Return the ``--anchor`` clock the series was resampled on, when it records one."""
        anchors = self.anchors
        return anchors.pop() if len(anchors) == 1 else None


def _empty_manifest() -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "generation": 0, "series": {}, "quarantine": [], "runs": []}


class BarStore:
    """Read and write bar series under one store folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """Return the committed manifest (an empty one for a new store)."""
        path = self.root / MANIFEST
        if not path.exists():
            return _empty_manifest()
        manifest: dict[str, Any] = json.loads(path.read_text())
        return manifest

    def series(self) -> list[SeriesInfo]:
        """Return every stored series, sorted by key."""
        entries = self.manifest()["series"].values()
        return sorted(
            (SeriesInfo.from_dict(e) for e in entries),
            key=lambda s: (s.key.symbol, s.key.timeframe.minutes, s.key.side.value),
        )

    def info(self, key: SeriesKey) -> SeriesInfo | None:
        """Return one series' manifest entry, or None."""
        entry = self.manifest()["series"].get(key.slug)
        return SeriesInfo.from_dict(entry) if entry else None

    def files(self, info: SeriesInfo, years: set[int] | None = None) -> list[Path]:
        """Return the partition files of a series (optionally only some years)."""
        return [
            self.root / part["file"]
            for year, part in sorted(info.partitions.items())
            if years is None or int(year) in years
        ]

    def read(
        self,
        key: SeriesKey,
        start: datetime | None = None,
        end: datetime | None = None,
        years: set[int] | None = None,
        info: SeriesInfo | None = None,
    ) -> pl.DataFrame:
        """Return a series' bars with ``start <= ts < end`` (BAR_SCHEMA, sorted)."""
        info = info or self.info(key)
        if info is None:
            return pl.DataFrame(schema=BAR_SCHEMA)
        files = self.files(info, years)
        if not files:
            return pl.DataFrame(schema=BAR_SCHEMA)
        frame = pl.scan_parquet(files).select(list(BAR_SCHEMA))
        if start is not None:
            frame = frame.filter(pl.col("ts") >= start)
        if end is not None:
            frame = frame.filter(pl.col("ts") < end)
        return frame.collect().sort("ts")

    def quarantine(self) -> pl.DataFrame:
        """Return every quarantined row, newest run first."""
        files = [self.root / f for f in self.manifest()["quarantine"]]
        if not files:
            return pl.DataFrame(schema={"run": pl.String(), **QUARANTINE_SCHEMA})
        return pl.read_parquet(files).sort(
            ["run", "source", "line"], descending=[True, False, False]
        )

    def runs(self) -> list[dict[str, Any]]:
        """Return the records of past ingest runs, oldest first."""
        return [json.loads((self.root / f).read_text()) for f in self.manifest()["runs"]]

    # -- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Hold the writer lock and yield a transaction; commit it to make its writes visible."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield Transaction(self, self.manifest())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def collect_garbage(self, manifest: dict[str, Any]) -> int:
        """Delete files under the store that ``manifest`` does not name; return how many."""
        named = {
            part["file"] for s in manifest["series"].values() for part in s["partitions"].values()
        }
        named |= set(manifest["quarantine"]) | set(manifest["runs"])
        removed = 0
        for folder in ("bars", "quarantine", "runs"):
            for path in (self.root / folder).rglob("*"):
                if path.is_file() and path.relative_to(self.root).as_posix() not in named:
                    path.unlink()
                    removed += 1
        return removed


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


class Transaction:
    """Staged writes to a store; nothing is visible until :meth:`commit`."""

    def __init__(self, store: BarStore, manifest: dict[str, Any]) -> None:
        self.store = store
        self.manifest = json.loads(json.dumps(manifest))

    def _write_file(self, relative: str, data: bytes) -> None:
        path = self.store.root / relative
        if not path.exists():
            write_atomic(path, data)

    def put_series(
        self,
        info: SeriesInfo,
        bars_by_year: dict[int, pl.DataFrame],
        source: dict[str, Any] | None = None,
    ) -> SeriesInfo:
        """Stage new contents for some years of a series and return its updated entry."""
        key = info.key
        for year, frame in bars_by_year.items():
            if frame.height == 0:
                info.partitions.pop(str(year), None)
                continue
            data = _parquet_bytes(frame.sort("ts"))
            digest = hashlib.sha256(data).hexdigest()
            relative = (
                f"bars/symbol={key.symbol}/timeframe={key.timeframe.value}/side={key.side.value}"
                f"/year={year}/{digest[:20]}.parquet"
            )
            self._write_file(relative, data)
            info.partitions[str(year)] = {
                "file": relative,
                "rows": frame.height,
                "sha256": digest,
                "first": iso_z_or_none(frame["ts"].min()),  # type: ignore[arg-type]
                "last": iso_z_or_none(frame["ts"].max()),  # type: ignore[arg-type]
            }
        parts = [info.partitions[y] for y in sorted(info.partitions)]
        info.rows = sum(p["rows"] for p in parts)
        info.first = parts[0]["first"] if parts else None
        info.last = parts[-1]["last"] if parts else None
        info.version = hashlib.sha256("".join(p["sha256"] for p in parts).encode()).hexdigest()[:16]
        info.has_spread = info.has_spread or any(
            f["spread"].null_count() < f.height for f in bars_by_year.values()
        )
        if source is not None:
            info.sources.append(source)
        self.manifest["series"][key.slug] = info.as_dict()
        return info

    def put_quarantine(self, run: str, rows: pl.DataFrame) -> None:
        """Stage the quarantined rows of a run."""
        if rows.height == 0:
            return
        relative = f"quarantine/{run}.parquet"
        frame = rows.with_columns(pl.lit(run).alias("run")).select(["run", *QUARANTINE_SCHEMA])
        self._write_file(relative, _parquet_bytes(frame))
        self.manifest["quarantine"].append(relative)

    def put_run(self, run: str, record: dict[str, Any]) -> None:
        """Stage the record of a run."""
        relative = f"runs/{run}.json"
        self._write_file(relative, json.dumps(record, indent=1, default=str).encode())
        self.manifest["runs"].append(relative)

    def commit(self) -> int:
        """Make the staged writes visible at once; return the new generation."""
        self.manifest["generation"] = int(self.manifest.get("generation", 0)) + 1
        data = json.dumps(self.manifest, indent=1, sort_keys=True).encode()
        write_atomic(self.store.root / MANIFEST, data)
        self.store.collect_garbage(self.manifest)
        return int(self.manifest["generation"])

"""The feature store: built feature sets as Parquet files, listed in one index.

Layout under ``SOLODESK_HOME/features``::

    index.json                                        every build, the only source of truth
    set=default/symbol=EURUSD/timeframe=H1/side=ask/<version>.parquet
    .lock                                             held by the one writer of the index

A build is one feature set computed on one series. Its ``version`` is a hash of the set's
definition and of the versions of every series it read, so a file's name says what it holds;
files are written once (temporary file, fsync, rename) and never changed. The index is replaced
atomically, like the bar store's manifest; older builds stay listed, and one build per
(set, symbol, timeframe, side) is marked ``latest``.

This module only reads and writes; computing a build is the feature build job,
:mod:`services.features`.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from core.timeframes import Timeframe
from core.types import SeriesKey, Side
from feature_store.store import write_atomic

INDEX = "index.json"
FORMAT_VERSION = 1


def _empty_index() -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "generation": 0, "builds": []}


@dataclass
class FeatureBuild:
    """What the index records about one build."""

    feature_set: str
    symbol: str
    timeframe: str
    side: str
    version: str
    definition: str
    file: str
    sha256: str
    rows: int
    features: int
    columns: list[dict[str, Any]]
    sources: dict[str, str]
    first: str | None
    last: str | None
    created: str
    seconds: float
    validation: dict[str, Any] = field(default_factory=dict)
    latest: bool = False

    @property
    def key(self) -> SeriesKey:
        """Return the key of the series the rows belong to."""
        return SeriesKey(symbol=self.symbol, timeframe=Timeframe(self.timeframe),
                         side=Side(self.side))  # fmt: skip

    @property
    def labels(self) -> list[str]:
        """Return the names of the label columns."""
        return [c["name"] for c in self.columns if c["role"] == "label"]

    def as_dict(self) -> dict[str, Any]:
        """Return the index entry."""
        return asdict(self)

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> FeatureBuild:
        """Read an index entry."""
        return cls(**entry)


def build_version(definition: str, sources: Mapping[str, str]) -> str:
    """Return the version of a build: a hash of the set's definition and its source versions::

    version = sha256({"definition": definition hash of the set,
                      "sources": {series slug: series version, ...}})[:16]
    """
    text = json.dumps({"definition": definition, "sources": dict(sources)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def feature_file(feature_set: str, key: SeriesKey, version: str) -> str:
    """Return the path of a build's Parquet file, relative to the feature store."""
    return (
        f"set={feature_set}/symbol={key.symbol}/timeframe={key.timeframe.value}"
        f"/side={key.side.value}/{version}.parquet"
    )


class FeatureStore:
    """Read and write feature builds under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def index(self) -> dict[str, Any]:
        """Return the committed index (an empty one for a new store)."""
        path = self.root / INDEX
        if not path.exists():
            return _empty_index()
        index: dict[str, Any] = json.loads(path.read_text())
        return index

    def generation(self) -> int:
        """Return how many times the index was committed."""
        return int(self.index()["generation"])

    def builds(self) -> list[FeatureBuild]:
        """Return every build, oldest first."""
        return [FeatureBuild.from_dict(entry) for entry in self.index()["builds"]]

    def find(self, feature_set: str, key: SeriesKey, version: str) -> FeatureBuild | None:
        """Return the build of ``version`` of a set on a series, or None."""
        for build in self.builds():
            if build.feature_set == feature_set and build.key == key and build.version == version:
                return build
        return None

    def latest(self, feature_set: str, key: SeriesKey) -> FeatureBuild | None:
        """Return the build marked latest for a set on a series, or None."""
        for build in self.builds():
            if build.feature_set == feature_set and build.key == key and build.latest:
                return build
        return None

    def path(self, build: FeatureBuild) -> Path:
        """Return the Parquet file of a build."""
        return self.root / build.file

    def read(self, build: FeatureBuild) -> pl.DataFrame:
        """Return the stored table of a build."""
        return pl.read_parquet(self.path(build))

    def is_complete(self, build: FeatureBuild) -> bool:
        """Return whether a build's file exists and holds the bytes the index recorded."""
        path = self.path(build)
        if not path.is_file():
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() == build.sha256

    def write_file(self, relative: str, data: bytes) -> str:
        """Write a build's file atomically and return its SHA-256."""
        write_atomic(self.root / relative, data)
        return hashlib.sha256(data).hexdigest()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[IndexTransaction]:
        """Hold the writer lock and yield a transaction on a copy of the current index."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield IndexTransaction(self, self.index())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class IndexTransaction:
    """Staged changes to the index; nothing is visible until :meth:`commit`."""

    def __init__(self, store: FeatureStore, index: dict[str, Any]) -> None:
        self.store = store
        self.index = copy.deepcopy(index)

    def record(self, build: FeatureBuild) -> None:
        """Stage a build (replacing an entry of the same version) and mark it latest."""
        entries = [
            e
            for e in self.index["builds"]
            if not (
                e["feature_set"] == build.feature_set
                and FeatureBuild.from_dict(e).key == build.key
                and e["version"] == build.version
            )
        ]
        entries.append(build.as_dict())
        self.index["builds"] = entries
        self.mark_latest(build.feature_set, build.key, build.version)

    def mark_latest(self, feature_set: str, key: SeriesKey, version: str) -> None:
        """Mark one build latest for its set and series, and the others of that pair not."""
        for entry in self.index["builds"]:
            if entry["feature_set"] == feature_set and FeatureBuild.from_dict(entry).key == key:
                entry["latest"] = entry["version"] == version

    def commit(self) -> int:
        """Make the staged index visible at once; return the new generation."""
        self.index["generation"] = int(self.index.get("generation", 0)) + 1
        data = json.dumps(self.index, indent=1, sort_keys=True).encode()
        write_atomic(self.store.root / INDEX, data)
        return int(self.index["generation"])

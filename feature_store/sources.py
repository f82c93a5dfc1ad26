"""Read sources: files, folders, ``.zip`` and ``.gz`` archives and the bundled samples."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
import zlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from core.errors import DataError
from pipelines.ingest.parsers import RawSource

DATA_ENDINGS = (".csv", ".txt", ".tsv", ".hst", ".parquet", ".zip", ".gz")
SAMPLES = {
    "sample:eurusd-h1": {
        "package": "gym_anytrading",
        "path": "datasets/data/FOREX_EURUSD_1H_ASK.csv",
        "symbol": "EURUSD",
        "timeframe": "H1",
        "side": "ask",
        "clock": "UTC",
        "date_order": "dmy",
        "format": "csv",
        "volume_kind": "tick",
        "complete": "yes",
    },
}


def sample_path(name: str) -> Path:
    """Return the installed file behind a ``sample:`` source."""
    spec = SAMPLES.get(name)
    if spec is None:
        msg = f"unknown sample {name!r}: available: {', '.join(SAMPLES)}"
        raise DataError(msg, source=name)
    try:
        root = resources.files(spec["package"])
    except ModuleNotFoundError:
        msg = f"the package {spec['package']!r} that ships this sample is not installed"
        raise DataError(msg, source=name) from None
    return Path(str(root.joinpath(spec["path"])))


def digest(data: bytes) -> str:
    """Return the SHA-256 of a source's bytes."""
    return hashlib.sha256(data).hexdigest()


def _from_zip(path: Path, data: bytes, forced: str | None) -> Iterator[RawSource]:
    import io

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [n for n in archive.namelist() if not n.endswith("/")]
    except zipfile.BadZipFile as exc:
        raise DataError(f"damaged zip archive ({exc})", source=str(path)) from None
    primary = [n for n in names if n.lower().endswith((".csv", ".hst", ".parquet", ".tsv"))]
    # HistData zips carry a .txt status report beside the .csv: only take .txt when alone.
    members = primary or [n for n in names if n.lower().endswith(".txt")]
    if not members:
        raise DataError(
            "the zip archive holds no data file (.csv, .hst, .parquet)", source=str(path)
        )
    for member in members:
        try:
            body = archive.read(member)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"cannot read {member} ({exc})", source=str(path)) from None
        yield RawSource(f"{path}!{member}", body, forced)


def read_sources(spec: str, forced_format: str | None = None) -> Iterator[RawSource]:
    """Yield the raw sources a path, folder or ``sample:`` name stands for.

    Raises
    ------
    DataError
        If the path does not exist or cannot be read.
    """
    if spec.startswith("sample:"):
        path = sample_path(spec)
        yield RawSource(spec, path.read_bytes(), forced_format or SAMPLES[spec]["format"])
        return
    path = Path(spec)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(DATA_ENDINGS)
        )
        if not files:
            raise DataError("the folder holds no data files", source=spec)
        for file in files:
            yield from read_sources(str(file), forced_format)
        return
    if not path.exists():
        raise DataError("no such file or folder", source=spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror})", source=spec) from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"damaged gzip file ({exc})", source=spec) from None
    if data[:4] == b"PK\x03\x04":
        yield from _from_zip(path, data, forced_format)
        return
    yield RawSource(spec, data, forced_format)

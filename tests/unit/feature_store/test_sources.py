"""Sources: files, folders, zip and gzip archives, the bundled sample, and damaged inputs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from testkit.files import gzip_bytes, hourly_bars, mt4_csv, write, zip_bytes

from core.errors import DataError
from feature_store.sources import read_sources, sample_path

TEXT = b"2017.01.02,09:00,1.1,1.2,1.0,1.15,5\n"


def test_read_sources_plain_file_yields_its_bytes(tmp_path: Path) -> None:
    # Arrange
    path = write(tmp_path / "EURUSD60.csv", TEXT)

    # Act
    (raw,) = read_sources(str(path))

    # Assert
    assert (raw.name, raw.data, raw.format) == (str(path), TEXT, None)


def test_read_sources_forced_format_passed_on(tmp_path: Path) -> None:
    # Arrange
    path = write(tmp_path / "x.csv", TEXT)

    # Act
    (raw,) = read_sources(str(path), "csv")

    # Assert
    assert raw.format == "csv"


def test_read_sources_folder_yields_data_files_sorted_recursively(tmp_path: Path) -> None:
    # Arrange
    write(tmp_path / "b" / "GBPUSD60.csv", TEXT)
    write(tmp_path / "a.txt", TEXT)
    write(tmp_path / "notes.md", b"ignored")

    # Act
    names = [Path(raw.name).name for raw in read_sources(str(tmp_path))]

    # Assert
    assert names == ["a.txt", "GBPUSD60.csv"]


def test_read_sources_zip_yields_members_named_archive_bang_member(tmp_path: Path) -> None:
    # Arrange: HistData zips carry a .txt report beside the data; only the .csv is data.
    path = write(
        tmp_path / "h.zip", zip_bytes({"DAT_ASCII_EURUSD_M1_2017.csv": TEXT, "report.txt": b"x"})
    )

    # Act
    (raw,) = read_sources(str(path))

    # Assert
    assert raw.name == f"{path}!DAT_ASCII_EURUSD_M1_2017.csv"
    assert raw.data == TEXT


def test_read_sources_gzip_decompressed(tmp_path: Path) -> None:
    # Arrange
    path = write(tmp_path / "EURUSD60.csv.gz", gzip_bytes(TEXT))

    # Act
    (raw,) = read_sources(str(path))

    # Assert
    assert raw.data == TEXT


def test_read_sources_sample_resolves_installed_file() -> None:
    # Act
    (raw,) = read_sources("sample:eurusd-h1")

    # Assert
    assert raw.name == "sample:eurusd-h1"
    assert raw.format == "csv"
    assert raw.data.startswith(b"Time,Open,High,Low,Close,Volume")
    assert sample_path("sample:eurusd-h1").is_file()


_LONG = mt4_csv(hourly_bars(datetime(2017, 1, 2), 200)).encode()


def _damaged_zip() -> bytes:
    data = bytearray(zip_bytes({"EURUSD60.csv": _LONG}))
    assert len(data) > 400  # header 42 bytes, then the deflate stream
    data[100:160] = bytes(b ^ 0xFF for b in data[100:160])
    return bytes(data)


def _damaged_gzip() -> bytes:
    data = bytearray(gzip_bytes(_LONG))
    data[100:160] = bytes(b ^ 0xFF for b in data[100:160])
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("cut.zip", zip_bytes({"EURUSD60.csv": TEXT})[:40], "damaged zip archive"),
        ("bits.zip", _damaged_zip(), "cannot read EURUSD60.csv"),
        ("empty.zip", zip_bytes({"readme.md": b"x"}), "holds no data file"),
        ("cut.csv.gz", gzip_bytes(TEXT * 50)[:30], "damaged gzip file"),
        ("bits.csv.gz", _damaged_gzip(), "damaged gzip file"),
    ],
)
def test_read_sources_damaged_archive_raises_data_error_naming_file(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    # Arrange
    path = write(tmp_path / name, data)

    # Act
    with pytest.raises(DataError) as caught:
        list(read_sources(str(path)))

    # Assert
    assert caught.value.source == str(path)
    assert message in str(caught.value)


def test_read_sources_missing_path_raises_naming_it(tmp_path: Path) -> None:
    # Act
    with pytest.raises(DataError) as caught:
        list(read_sources(str(tmp_path / "nope.csv")))

    # Assert
    assert str(caught.value) == f"{tmp_path / 'nope.csv'}: no such file or folder"


def test_read_sources_folder_without_data_raises(tmp_path: Path) -> None:
    # Arrange
    write(tmp_path / "notes.md", b"x")

    # Act / Assert
    with pytest.raises(DataError, match="holds no data files"):
        list(read_sources(str(tmp_path)))


def test_read_sources_unknown_sample_raises_listing_samples() -> None:
    # Act / Assert
    with pytest.raises(DataError, match="available: sample:eurusd-h1"):
        list(read_sources("sample:gbpusd-m1"))

"""Invariants of ingest over generated files that overlap, repeat, conflict and hold bad rows.

(a) Ingesting the same files again adds no row and changes no version.
(b) The stored series do not depend on the order the files arrive in, in one invocation or in
    several.
(c) Stored bars always satisfy low <= open, close <= high, prices > 0, unique increasing ts, and
    every row read is accounted for (added, duplicate, conflicting or quarantined).

(a) and (b) are about merging and storing, and make several ingests per example: they run with
the Great Expectations suite replaced by a pass-through (it costs most of a small ingest). (c)
runs the real suite, so rows the row rules accept are proven to pass it on arbitrary prices.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit.files import utc, write
from testkit.store import assert_store_consistent, stored_series

from core.settings import Settings
from services.ingest import IngestOptions, IngestResult, ingest

START = utc(2017, 12, 31, 20)  # eight hours that cross into 2018: two year partitions
HOURS = 8
OPTIONS = IngestOptions(reports=False)

PROPERTY_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _good_row(hour: int, version: int) -> str:
    # Versions of one hour differ in close, volume or spread: every pair of them conflicts,
    # and some differ in one column only, so every tie-break of the preference is exercised.
    base = 1.1 + hour / 100
    close = (base + 0.0001, base + 0.0002, base + 0.0001, base + 0.0001, base + 0.0001)[version]
    volume = (10, 10, 20, 10, 10)[version]
    spread = ("", "", "", "0.0001", "0.0002")[version]
    ts = START + timedelta(hours=hour)
    return f"{ts:%Y-%m-%d %H:%M},{base:.5f},{base + 0.001:.5f},{base - 0.001:.5f},{close:.5f},{volume},{spread}"


def _bad_row(hour: int, kind: int) -> str:
    ts = START + timedelta(hours=hour)
    base = 1.1 + hour / 100
    return (
        f"{ts:%Y-%m-%d %H:%M},{base},{base - 0.01},{base + 0.01},{base},1,",  # high < low
        f"{ts:%Y-%m-%d %H:%M},{base},{base},{base},nan,1,",  # NaN close
        f"{ts:%Y-%m-%d %H:%M},-{base},{base},{base},{base},1,",  # negative open
        f"{ts:%Y-%m-%d %H:%M},\x00\x7f??,zz,,",  # garbage cells
        f"{ts:%Y-%m-%d %H}:30,{base},{base},{base},{base},1,",  # off the H1 grid
        f"{ts:%Y-%m-%d %H:%M},{base},inf,{base},{base},1,",  # infinite high
    )[kind]


@dataclass(frozen=True)
class Entry:
    good: bool
    hour: int
    variant: int

    def line(self) -> str:
        return (
            _good_row(self.hour, self.variant) if self.good else _bad_row(self.hour, self.variant)
        )


entries = st.one_of(
    st.builds(Entry, st.just(True), st.integers(0, HOURS - 1), st.integers(0, 4)),
    st.builds(Entry, st.just(False), st.integers(0, HOURS - 1), st.integers(0, 5)),
)
# One file: rows in any order, repeats allowed; at least one good row keeps its dates readable.
files = st.lists(
    st.lists(entries, min_size=1, max_size=10).filter(lambda rows: any(r.good for r in rows)),
    min_size=1,
    max_size=4,
)


def _write_files(folder: Path, contents: list[list[Entry]]) -> list[str]:
    header = "time,open,high,low,close,volume,spread\n"
    return [
        str(
            write(
                folder / f"src{i}" / "EURUSD_H1.csv",
                header + "\n".join(e.line() for e in rows) + "\n",
            )
        )
        for i, rows in enumerate(contents)
    ]


@contextmanager
def _suite_passes() -> Iterator[None]:
    """Replace the validation suite by one that passes every series, for this block."""

    def passes(series: Mapping[str, pl.DataFrame], name: str) -> list[object]:
        return []

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pipelines.validate.suite.validate_series", passes)
        yield


def _assert_accounted(outcome: IngestResult) -> None:
    for s in outcome.series:
        assert (
            s.rows_read == s.rows_added + s.rows_duplicate + s.rows_conflicting + s.rows_quarantined
        )


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(contents=files)
def test_ingest_same_files_twice_second_time_adds_nothing(contents: list[list[Entry]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, _suite_passes():
        # Arrange
        paths = _write_files(Path(tmp) / "in", contents)
        desk = Settings(home=Path(tmp) / "home")
        first = ingest(paths, OPTIONS, desk)
        before = stored_series(desk.store_dir)

        # Act
        second = ingest(paths, OPTIONS, desk)

        # Assert
        assert [s.rows_added for s in second.series] == [0] * len(second.series)
        after = stored_series(desk.store_dir)
        assert after.keys() == before.keys()
        for slug, (version, bars) in before.items():
            assert after[slug][0] == version
            assert after[slug][1].equals(bars)
        _assert_accounted(first)
        _assert_accounted(second)
        assert_store_consistent(desk.store_dir)


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(contents=files, data=st.data())
def test_ingest_files_in_any_order_store_same_bars_and_version(
    contents: list[list[Entry]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp, _suite_passes():
        # Arrange
        paths = _write_files(Path(tmp) / "in", contents)
        reordered = data.draw(st.permutations(paths), label="arrival order")
        together = Settings(home=Path(tmp) / "together")
        one_by_one = Settings(home=Path(tmp) / "one_by_one")

        # Act
        _assert_accounted(ingest(paths, OPTIONS, together))
        for path in reordered:
            _assert_accounted(ingest([path], OPTIONS, one_by_one))

        # Assert
        expected = stored_series(together.store_dir)
        actual = stored_series(one_by_one.store_dir)
        assert actual.keys() == expected.keys()
        for slug, (version, bars) in expected.items():
            assert actual[slug][1].equals(bars), slug
            assert actual[slug][0] == version, slug
        assert_store_consistent(together.store_dir)
        assert_store_consistent(one_by_one.store_dir)


price = st.one_of(
    st.floats(min_value=-2, max_value=3),
    st.sampled_from([0.0, 1.1, 1.1000000001, 1e-300, float("nan"), float("inf"), float("-inf")]),
)


@PROPERTY_SETTINGS
@given(
    rows=st.lists(
        st.tuples(st.integers(0, HOURS - 1), price, price, price, price,
                  st.sampled_from([0, 1, 5, -1, float("nan")])),
        min_size=1,
        max_size=30,
    )
)  # fmt: skip
def test_ingest_any_prices_stored_bars_keep_ohlc_order(
    rows: list[tuple[int, float, float, float, float, float]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Arrange: arbitrary numbers in every cell, on valid timestamps.
        lines = [
            f"{START + timedelta(hours=h):%Y-%m-%d %H:%M},{o!r},{hi!r},{lo!r},{c!r},{v!r}"
            for h, o, hi, lo, c, v in rows
        ]
        path = write(
            Path(tmp) / "EURUSD_H1.csv",
            "time,open,high,low,close,volume\n" + "\n".join(lines) + "\n",
        )
        desk = Settings(home=Path(tmp) / "home")

        # Act
        outcome = ingest([str(path)], IngestOptions(reports=False, as_of=utc(2030, 1, 1)), desk)

        # Assert: assert_store_consistent checks low <= open, close <= high, > 0, increasing ts.
        _assert_accounted(outcome)
        manifest = assert_store_consistent(desk.store_dir)
        for _, bars in stored_series(desk.store_dir).values():
            finite = bars.select("open", "high", "low", "close", "volume")
            assert all(finite[c].is_finite().all() for c in finite.columns)
            assert (bars["volume"] >= 0).all()
        stored = sum(s["rows"] for s in manifest["series"].values())
        assert stored == sum(s.rows_added for s in outcome.series)

"""Run ``solodesk ARGS`` with its slow imports done first, announcing moments on stdout.

Prints ``ready`` once everything is imported, and ``store`` when the ingest takes the store's
writer lock (its writing phase begins). The crash test kills the process a random moment after
one of them, so the moment falls inside the ingest rather than inside Python's start-up.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import polars as pl

import app.cli
from feature_store import store
from pipelines.validate.suite import validate_bars


def _say(word: str) -> None:
    sys.stdout.write(f"{word}\n")
    sys.stdout.flush()


def _warm_up() -> None:
    # Great Expectations' import and first validation take seconds; pay them before "ready".
    frame = pl.DataFrame(
        {"ts": [0], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [0.0],
         "spread": [None]},
        schema={"ts": pl.Datetime("us", "UTC"), "open": pl.Float64, "high": pl.Float64,
                "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64, "spread": pl.Float64},
    )  # fmt: skip
    validate_bars(frame, "warm-up")


def _announce_store_phase() -> None:
    original = store.BarStore.transaction

    @contextlib.contextmanager
    def announced(self: store.BarStore) -> Iterator[store.Transaction]:
        with original(self) as tx:
            _say("store")
            yield tx

    store.BarStore.transaction = announced  # type: ignore[method-assign]


if __name__ == "__main__":
    _warm_up()
    _announce_store_phase()
    _say("ready")
    sys.argv = ["solodesk", *sys.argv[1:]]
    app.cli.main()

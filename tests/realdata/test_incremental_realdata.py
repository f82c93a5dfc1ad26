"""Signal streams equal ``signals()`` on real EURUSD one-minute bars, bit for bit.

200,000 HistData bars of 2017 (flat minutes make the moving averages tie exactly), fed bar by
bar for the first 5,000, in batches of 1,000, and in random batches; the concatenated updates
of each built-in's ``incremental()`` stream must equal one ``signals()`` call on all the bars.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from models.strategies.base import Strategy
from models.strategies.donchian import DonchianBreakout
from models.strategies.incremental import signal_stream
from models.strategies.indicators import sma
from models.strategies.rsi_reversion import RsiReversion
from models.strategies.sma_cross import SmaCross

pytestmark = pytest.mark.realdata

HISTDATA_YEAR = "histdata_m1/eurusd/HISTDATA_COM_ASCII_EURUSD_M1_2017.zip"
N_BARS = 200_000
ONE_AT_A_TIME = 5_000
FIELDS = ("entries", "exits", "short_entries", "short_exits", "target")
EST_OFFSET_NS = 5 * 3_600 * 10**9  # HistData stamps are EST, fixed UTC-5

STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "sma_cross_2_3": lambda: SmaCross(fast=2, slow=3, allow_short=True),
    "sma_cross_10_50": lambda: SmaCross(fast=10, slow=50, allow_short=True),
    "donchian_20_10": lambda: DonchianBreakout(entry_window=20, exit_window=10, allow_short=True),
    "rsi_14": lambda: RsiReversion(window=14, allow_short=True),
}


@pytest.fixture(scope="module")
def bars(data_file: Callable[[str], Path]) -> dict[str, np.ndarray]:
    """Return the first 200,000 bars of HistData's EURUSD M1 2017 as the stream's arrays."""
    with zipfile.ZipFile(data_file(HISTDATA_YEAR)) as archive:
        member = next(name for name in archive.namelist() if name.endswith(".csv"))
        raw = archive.read(member)
    names = ["stamp", "open", "high", "low", "close", "volume"]
    table = pl.read_csv(raw, separator=";", has_header=False, new_columns=names).head(N_BARS)
    stamps = table["stamp"].str.strptime(pl.Datetime("ns"), "%Y%m%d %H%M%S")
    arrays = {name: table[name].cast(pl.Float64).to_numpy() for name in names[1:]}
    arrays["ts"] = stamps.dt.epoch("ns").to_numpy() + EST_OFFSET_NS
    arrays["spread"] = np.full(table.height, np.nan)
    return arrays


@pytest.fixture(scope="module")
def expected(bars: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Return each strategy's ``signals()`` on all the bars, by field."""
    frame = pl.DataFrame({name: values for name, values in bars.items() if name != "ts"})
    result = {}
    for name, make in STRATEGIES.items():
        signals = make().signals(frame)
        result[name] = {f: v for f in FIELDS if (v := getattr(signals, f)) is not None}
    return result


def stream_outputs(
    strategy: Strategy, bars: dict[str, np.ndarray], bounds: list[int]
) -> dict[str, np.ndarray]:
    """Feed the bars between consecutive ``bounds`` as batches; return the outputs joined."""
    stream = signal_stream(strategy)
    parts: dict[str, list[np.ndarray]] = {}
    for start, stop in pairwise(bounds):
        signals = stream.update({name: values[start:stop] for name, values in bars.items()})
        for field in FIELDS:
            if (values := getattr(signals, field)) is not None:
                parts.setdefault(field, []).append(values)
    return {field: np.concatenate(arrays) for field, arrays in parts.items()}


def differing(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rows: int) -> list[str]:
    """Return the fields that differ over the first ``rows`` bars."""
    bad = sorted(set(got) ^ set(want))
    bad += [f for f in sorted(set(got) & set(want)) if not np.array_equal(got[f], want[f][:rows])]
    return bad


def test_eurusd_m1_averages_tie_and_events_happen(
    bars: dict[str, np.ndarray], expected: dict[str, dict[str, np.ndarray]]
) -> None:
    # Arrange / Act
    ties = int(np.sum(sma(bars["close"], 2) == sma(bars["close"], 3)))

    # Assert: the data exercises exact ties, and every strategy trades
    assert bars["close"].shape[0] == N_BARS
    assert ties > 1_000
    assert all(signals["entries"].sum() > 100 for signals in expected.values())


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_update_one_bar_at_a_time_equals_signals(
    name: str, bars: dict[str, np.ndarray], expected: dict[str, dict[str, np.ndarray]]
) -> None:
    # Arrange
    bounds = list(range(ONE_AT_A_TIME + 1))

    # Act
    got = stream_outputs(STRATEGIES[name](), bars, bounds)

    # Assert: by the prefix property the first rows of signals() on all bars are the target
    assert differing(got, expected[name], ONE_AT_A_TIME) == []


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_update_batches_of_1000_equal_signals(
    name: str, bars: dict[str, np.ndarray], expected: dict[str, dict[str, np.ndarray]]
) -> None:
    # Arrange
    bounds = list(range(0, N_BARS + 1, 1_000))

    # Act
    got = stream_outputs(STRATEGIES[name](), bars, bounds)

    # Assert
    assert differing(got, expected[name], N_BARS) == []


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_update_random_batches_equal_signals(
    name: str, bars: dict[str, np.ndarray], expected: dict[str, dict[str, np.ndarray]]
) -> None:
    # Arrange: batch sizes from 1 to 5,000, seeded
    rng = np.random.default_rng(len(name))
    cuts = np.cumsum(rng.integers(1, 5_001, N_BARS))
    bounds = [0, *cuts[cuts < N_BARS].tolist(), N_BARS]

    # Act
    got = stream_outputs(STRATEGIES[name](), bars, bounds)

    # Assert
    assert differing(got, expected[name], N_BARS) == []

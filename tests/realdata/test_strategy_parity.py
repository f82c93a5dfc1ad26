"""sma_cross equals vectorbt's moving-average crossings exactly on real EURUSD bars.

vectorbt 1.2.0 is the reference: ``MA.run(close, fast).ma_crossed_above(MA.run(close, slow))``
for entries and ``ma_crossed_below`` for exits. Flat one-minute stretches make the two
averages exactly equal at times, so the comparison covers ties as well as NaN warm-up.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl
import pytest

from models.strategies.indicators import sma
from models.strategies.sma_cross import SmaCross

pytestmark = pytest.mark.realdata

MT4_H1 = "mt4/EURUSD60.csv"
HISTDATA_MONTH = "histdata_m1/eurusd/HISTDATA_COM_ASCII_EURUSD_M1_201803.zip"
PAIRS = [(2, 3), (3, 4), (5, 20), (10, 50), (20, 100), (50, 200)]
OHLCV = ["open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def vbt() -> ModuleType:
    """Return vectorbt (imported here: it takes seconds)."""
    return pytest.importorskip("vectorbt")


@pytest.fixture(scope="module")
def mt4_h1(data_file: Callable[[str], Path]) -> pl.DataFrame:
    """Return MT4's EURUSD H1 history-center CSV (date, time, OHLCV; no header)."""
    return pl.read_csv(data_file(MT4_H1), has_header=False, new_columns=["date", "time", *OHLCV])


@pytest.fixture(scope="module")
def histdata_m1(data_file: Callable[[str], Path]) -> pl.DataFrame:
    """Return one month of HistData EURUSD M1 bid bars (``;``-separated, no header)."""
    with zipfile.ZipFile(data_file(HISTDATA_MONTH)) as archive:
        member = next(name for name in archive.namelist() if name.endswith(".csv"))
        raw = archive.read(member)
    return pl.read_csv(raw, separator=";", has_header=False, new_columns=["stamp", *OHLCV])


def vectorbt_crossings(vbt: Any, close: np.ndarray, fast: int, slow: int) -> tuple[Any, Any]:
    import pandas as pd

    series = pd.Series(close)
    fast_ma = vbt.MA.run(series, fast)
    slow_ma = vbt.MA.run(series, slow)
    above = fast_ma.ma_crossed_above(slow_ma).to_numpy()
    below = fast_ma.ma_crossed_below(slow_ma).to_numpy()
    return above, below


def assert_parity(vbt: Any, bars: pl.DataFrame) -> None:
    close = bars["close"].to_numpy()
    context = SmaCross.sweep_context(bars)
    for fast, slow in PAIRS:
        above, below = vectorbt_crossings(vbt, close, fast, slow)
        strategy = SmaCross(fast=fast, slow=slow, allow_short=True)
        for signals in (strategy.signals(bars), strategy.signals_from(context)):
            assert above.any(), (fast, slow)
            np.testing.assert_array_equal(signals.entries, above, err_msg=f"{fast}/{slow} up")
            np.testing.assert_array_equal(signals.exits, below, err_msg=f"{fast}/{slow} down")
            np.testing.assert_array_equal(signals.short_entries, below)
            np.testing.assert_array_equal(signals.short_exits, above)


def test_sma_cross_mt4_h1_equals_vectorbt(vbt: ModuleType, mt4_h1: pl.DataFrame) -> None:
    # Arrange
    assert mt4_h1.height > 50_000

    # Act / Assert
    assert_parity(vbt, mt4_h1)


def test_sma_cross_histdata_m1_month_equals_vectorbt(
    vbt: ModuleType, histdata_m1: pl.DataFrame
) -> None:
    # Arrange: the month holds exact ties of the two averages, so their treatment is tested
    close = histdata_m1["close"].to_numpy()
    ties = int(np.sum(sma(close, 3) == sma(close, 4)))
    assert ties > 0

    # Act / Assert
    assert_parity(vbt, histdata_m1)


def test_sma_histdata_m1_month_equals_vectorbt_bit_for_bit(
    vbt: ModuleType, histdata_m1: pl.DataFrame
) -> None:
    # Arrange
    import pandas as pd

    close = histdata_m1["close"].to_numpy()

    # Act
    ours = {window: sma(close, window) for window in (3, 20, 200)}
    theirs = {w: vbt.MA.run(pd.Series(close), w).ma.to_numpy() for w in ours}

    # Assert
    for window, values in ours.items():
        np.testing.assert_array_equal(values, theirs[window], err_msg=f"window {window}")

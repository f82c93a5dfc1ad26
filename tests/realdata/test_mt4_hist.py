"""The MT4 simulator's HIST over a real broker's bars: a terminal's own H1 history (the shared
``mt4/EURUSD60.hst``), ingested, then asked back over loopback with times written on the broker
clock, must come back as the same bars at the same UTC instants."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from testkit.mt4 import bridge_settings, simulator

from core.timeframes import Timeframe
from core.types import SeriesKey, Side
from execution.brokers.mt4.client import BridgeClient
from services.mt4_history import history_frame, pull_bars

if TYPE_CHECKING:
    from .conftest import Desk

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

DIGITS = 5


def test_hist_of_real_bars_equals_stored_bars_on_broker_clock(
    data_file: Callable[[str], Path], new_desk: Callable[[], Desk]
) -> None:
    # Arrange: the terminal's history stored; a simulator replaying its last day
    desk = new_desk()
    desk.ingest_one([data_file("mt4/EURUSD60.hst")])
    key = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)
    stored = desk.bars(key)
    last: datetime = stored["ts"].max()  # type: ignore[assignment]
    wanted = stored.filter(stored["ts"] >= last - timedelta(days=120))
    wanted = wanted.filter(wanted["ts"] < last - timedelta(days=2))
    start: datetime = wanted["ts"].min()  # type: ignore[assignment]
    end: datetime = wanted["ts"].max() + timedelta(hours=1)  # type: ignore[operator,assignment]
    with simulator(desk.settings.home, raw=False, start=last - timedelta(days=1), end=last) as run:
        client = BridgeClient(bridge_settings(run.ports)).connect()
        try:
            # Act: four months, asked for in chunks of 500 bars
            pulled = history_frame(pull_bars(client, "EURUSD", Timeframe.H1, start, end,
                                             chunk_bars=500), DIGITS)  # fmt: skip
        finally:
            client.close()
    # Assert: the same open times (UTC) and prices
    assert pulled.height == wanted.height > 1000
    assert pulled["ts"].to_list() == wanted["ts"].to_list()
    for column in ("open", "high", "low", "close"):
        off: float = (pulled[column] - wanted[column].round(DIGITS)).abs().max()  # type: ignore[assignment]
        assert off < 1e-9, column

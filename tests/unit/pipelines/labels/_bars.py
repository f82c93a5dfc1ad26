"""Small bar frames for the label tests."""

from __future__ import annotations

from datetime import timedelta

from testkit.files import HOUR_BARS_START, close_bars, ohlc_bars

START = HOUR_BARS_START
HOUR = timedelta(hours=1)

__all__ = ["HOUR", "START", "close_bars", "ohlc_bars"]

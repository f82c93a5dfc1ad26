"""Domain types: bars keep OHLC order and UTC time; messages are immutable."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from testkit.files import utc

from core.timeframes import Timeframe
from core.types import Bar, SeriesKey, Side, Signal


def test_bar_consistent_ohlc_accepted() -> None:
    # Act
    bar = Bar(ts=utc(2017, 1, 2), open=1.1, high=1.2, low=1.0, close=1.15, volume=3)

    # Assert
    assert bar.spread is None
    assert bar.high == 1.2


@pytest.mark.parametrize(
    ("open_", "high", "low", "close"),
    [(1.1, 1.0, 1.2, 1.1), (1.3, 1.2, 1.0, 1.1), (1.1, 1.2, 1.0, 0.9)],
)
def test_bar_ohlc_out_of_order_rejected(
    open_: float, high: float, low: float, close: float
) -> None:
    # Act / Assert
    with pytest.raises(ValidationError, match="low <= open, close <= high"):
        Bar(ts=utc(2017, 1, 2), open=open_, high=high, low=low, close=close)


@pytest.mark.parametrize(
    "ts", [datetime(2017, 1, 2), datetime(2017, 1, 2, tzinfo=timezone(timedelta(hours=2)))]
)
def test_bar_timestamp_not_utc_rejected(ts: datetime) -> None:
    # Act / Assert
    with pytest.raises(ValidationError, match="timezone-aware UTC"):
        Bar(ts=ts, open=1, high=1, low=1, close=1)


def test_series_key_slug_and_text_name_symbol_timeframe_side() -> None:
    # Act
    key = SeriesKey(symbol="EURUSD", timeframe=Timeframe.H1, side=Side.BID)

    # Assert
    assert key.slug == "EURUSD.H1.bid"
    assert str(key) == "EURUSD H1 bid"


def test_signal_is_frozen() -> None:
    # Arrange
    signal = Signal(ts=utc(2017, 1, 2), symbol="EURUSD", target=1.0, strategy="s")

    # Act / Assert
    with pytest.raises(ValidationError):
        signal.target = 2.0  # type: ignore[misc]
    assert signal.model_copy(update={"target": 2.0}).target == 2.0

"""Domain types shared by every layer: instruments, series keys, bars and trading messages.

Messages are immutable: derive a new one with ``model_copy(update=...)``, never mutate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.timeframes import Timeframe


class Side(StrEnum):
    """The price side a bar series quotes."""

    BID = "bid"
    ASK = "ask"
    MID = "mid"


class VolumeKind(StrEnum):
    """What a series' volume column counts."""

    NONE = "none"  # no volume in the source (HistData, most FX files)
    M1_COUNT = "m1_count"  # number of 1-minute bars inside the bar (MT4 exports, resamples)
    TICK = "tick"  # number of price updates
    REAL = "real"  # traded quantity (exchange volume)


class SourceFormat(StrEnum):
    """The file formats ingestion reads (detected from the content and name, or forced)."""

    MT4_CSV = "mt4-csv"
    HST = "hst"
    HISTDATA = "histdata"
    CSV = "csv"
    LEAN = "lean"
    PARQUET = "parquet"


class DateOrder(StrEnum):
    """How to read an ambiguous date such as 02/03/2017: day first, or month first."""

    DMY = "dmy"
    MDY = "mdy"


class Scheme(StrEnum):
    """How research cuts rows into windows: rolling or anchored walk-forward, or CPCV."""

    ROLLING = "rolling"
    ANCHORED = "anchored"
    CPCV = "cpcv"


class AssetClass(StrEnum):
    """Broad instrument families; each has its own calendar and conventions."""

    FX = "fx"
    METAL = "metal"
    INDEX = "index"
    EQUITY = "equity"
    COMMODITY = "commodity"
    CRYPTO = "crypto"


class Frozen(BaseModel):
    """Base of immutable, strict domain models."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None):
        msg = f"timestamp {value.isoformat()} must be timezone-aware UTC"
        raise ValueError(msg)
    return value


class Instrument(Frozen):
    """A tradable instrument and its contract conventions."""

    symbol: str
    asset_class: AssetClass
    base: str
    quote: str
    digits: int = Field(ge=0, le=10)
    pip_size: float = Field(gt=0)
    contract_size: float = Field(gt=0)
    lot_step: float = Field(default=0.01, gt=0)
    calendar: str = "fx"
    swap_long: float = 0.0  # points per lot per night
    swap_short: float = 0.0
    aliases: tuple[str, ...] = ()
    description: str = ""

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class SeriesKey(Frozen):
    """The key of a stored bar series: (symbol, timeframe, price side)."""

    symbol: str
    timeframe: Timeframe
    side: Side

    def __str__(self) -> str:
        return f"{self.symbol} {self.timeframe.value} {self.side.value}"

    @property
    def slug(self) -> str:
        """Return a path- and name-safe identifier, ``EURUSD.H1.bid``."""
        return f"{self.symbol}.{self.timeframe.value}.{self.side.value}"


class Bar(Frozen):
    """One OHLCV bar. ``ts`` is the bar's open time in UTC; the bar is known at ts + duration."""

    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    spread: float | None = None

    _utc = field_validator("ts")(_require_utc)

    @model_validator(mode="after")
    def _ohlc(self) -> Bar:
        if not (self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high):
            msg = f"bar at {self.ts.isoformat()}: need low <= open, close <= high"
            raise ValueError(msg)
        return self


class OrderSide(StrEnum):
    """Direction of an order or a fill."""

    BUY = "buy"
    SELL = "sell"


class Signal(Frozen):
    """A strategy's wish: a target position in lots for a symbol, decided at ``ts``."""

    ts: datetime
    symbol: str
    target: float
    strategy: str
    strength: float | None = None

    _utc = field_validator("ts")(_require_utc)


class Order(Frozen):
    """An instruction to a broker."""

    id: str
    ts: datetime
    symbol: str
    side: OrderSide
    lots: float = Field(gt=0)
    limit: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None

    _utc = field_validator("ts")(_require_utc)


class Fill(Frozen):
    """A broker's report that (part of) an order traded."""

    order_id: str
    ts: datetime
    symbol: str
    side: OrderSide
    lots: float = Field(gt=0)
    price: float = Field(gt=0)
    commission: float = 0.0

    _utc = field_validator("ts")(_require_utc)


class Position(Frozen):
    """Net holding in one symbol: positive lots long, negative short."""

    symbol: str
    lots: float
    avg_price: float


class Account(Frozen):
    """Cash and equity in the account currency."""

    currency: str
    balance: float
    equity: float
    margin_used: float = 0.0

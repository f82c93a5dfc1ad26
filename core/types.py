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


class FeedKind(StrEnum):
    """Where a trading session's bars come from: the stored series replayed, or an MT4
    terminal's closed bars over the bridge."""

    REPLAY = "replay"
    MT4 = "mt4"


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

    @property
    def sign(self) -> int:
        """Return +1 for a buy, -1 for a sell."""
        return 1 if self is OrderSide.BUY else -1


class OrderType(StrEnum):
    """How an order executes: at the market, at a limit price or better, or once a stop trades."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class TimeInForce(StrEnum):
    """How long a working order lives: until cancelled, the broker day, or fill what can now."""

    GTC = "gtc"
    DAY = "day"
    IOC = "ioc"


class OrderStatus(StrEnum):
    """Where an order stands at its broker."""

    NEW = "new"  # recorded by the runtime, not yet acknowledged by the broker
    WORKING = "working"  # accepted, waiting to fill (a pending market order, a limit, a stop)
    PARTIAL = "partial"  # partly filled, the rest still working
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_open(self) -> bool:
        """Return whether the order may still fill."""
        return self in (OrderStatus.NEW, OrderStatus.WORKING, OrderStatus.PARTIAL)


class Signal(Frozen):
    """A decision: the wanted position in ``symbol`` as a signed fraction of the full size.

    ``target`` is what strategies speak: 1 is a full long as the sizing rule sizes it, -1 a full
    short, 0 flat. ``ts`` is the open time of the bar the decision was made on.
    """

    ts: datetime
    symbol: str
    target: float
    strategy: str
    strength: float | None = None

    _utc = field_validator("ts")(_require_utc)


class Order(Frozen):
    """An instruction to a broker and what became of it.

    Sizes are units of the instrument (``lots = units / contract_size`` at the broker boundary).
    ``stop_loss`` and ``take_profit`` are absolute prices the broker holds for the position the
    order opens; ``trailing`` a trailing-stop distance in price. ``limit_price`` is the price of
    a limit order, ``stop_price`` the trigger of a stop order. ``client_order_id`` is the
    runtime's name for the order, ``ticket`` the broker's.
    """

    client_order_id: str = Field(min_length=1, max_length=24, pattern=r"^[\x20-\x3a\x3c-\x7e]+$")
    ts: datetime
    symbol: str
    side: OrderSide
    units: float = Field(gt=0)
    type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    limit_price: float | None = Field(default=None, gt=0)
    stop_price: float | None = Field(default=None, gt=0)
    stop_loss: float | None = Field(default=None, gt=0)
    take_profit: float | None = Field(default=None, gt=0)
    trailing: float | None = Field(default=None, gt=0)
    reduce_only: bool = False
    status: OrderStatus = OrderStatus.NEW
    ticket: str | None = None
    filled_units: float = Field(default=0.0, ge=0)
    avg_price: float | None = None
    reason: str = ""
    updated: datetime | None = None

    _utc = field_validator("ts")(_require_utc)

    @model_validator(mode="after")
    def _prices(self) -> Order:
        if self.type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError(f"order {self.client_order_id}: a limit order needs limit_price")
        if self.type is OrderType.STOP and self.stop_price is None:
            raise ValueError(f"order {self.client_order_id}: a stop order needs stop_price")
        return self

    @property
    def remaining(self) -> float:
        """Return the units still to fill."""
        return max(self.units - self.filled_units, 0.0)

    @property
    def signed_units(self) -> float:
        """Return the units, positive for a buy and negative for a sell."""
        return self.units * self.side.sign


class Fill(Frozen):
    """A broker's report that (part of) an order traded.

    ``execution_id`` is unique per fill at its broker. ``fees`` are the fill's commission and
    fees, ``slippage`` the adverse price move per unit beyond the quote, ``swap`` the carry the
    closed units accrued, ``realized`` the profit or loss the fill closed out, before fees (all
    in account currency except ``slippage``, a price). ``reason``
    says why it traded: ``signal``, ``reverse``, ``stop_loss``, ``take_profit``,
    ``trailing_stop``, ``flatten``, ...
    """

    execution_id: str
    client_order_id: str
    ts: datetime
    symbol: str
    side: OrderSide
    units: float = Field(gt=0)
    price: float = Field(gt=0)
    fees: float = 0.0
    slippage: float = 0.0
    swap: float = 0.0
    realized: float = 0.0
    reason: str = ""
    ticket: str | None = None

    _utc = field_validator("ts")(_require_utc)

    @property
    def signed_units(self) -> float:
        """Return the units, positive for a buy and negative for a sell."""
        return self.units * self.side.sign


class Position(Frozen):
    """Net holding in one symbol: positive units long, negative short, with its protection."""

    symbol: str
    units: float
    avg_price: float
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing: float | None = None
    opened: datetime | None = None


class Account(Frozen):
    """Cash, equity and margin in the account currency."""

    currency: str
    balance: float
    equity: float
    margin_used: float = 0.0
    leverage: float | None = None

    @property
    def free_margin(self) -> float:
        """Return the equity not tied up as margin."""
        return self.equity - self.margin_used


class Quote(Frozen):
    """A bid and an ask at an instant."""

    ts: datetime
    bid: float = Field(gt=0)
    ask: float = Field(gt=0)

    _utc = field_validator("ts")(_require_utc)

"""Backtest settings: costs, fills, direction, sizing and stops, parsed once at the edge."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import UsageError, options_error

SizingKind = Literal["all-in", "lots", "fraction", "vol-target", "kelly"]


class Fill(StrEnum):
    """Where an order fills: at the signal bar's close, or at the next bar's open."""

    CLOSE = "close"
    NEXT_OPEN = "next_open"


class Engine(StrEnum):
    """Which engine runs a backtest: the compiled vectorized one, or the trading loop on replay."""

    VECTOR = "vector"
    EVENT = "event"


class Direction(StrEnum):
    """Which of a strategy's positions are taken: both sides, longs only, shorts only."""

    BOTH = "both"
    LONG = "long"
    SHORT = "short"


class PortfolioSizing(StrEnum):
    """How a portfolio weighs its symbols (see :mod:`pipelines.backtest.portfolio`)."""

    EQUAL = "equal"
    VOL_TARGET = "vol-target"
    INVERSE_VOL = "inverse-vol"
    RISK_PARITY = "risk-parity"
    HRP = "hrp"
    MIN_VARIANCE = "min-variance"


class Rebalance(StrEnum):
    """When a portfolio rebalances: every bar, every n bars, each new UTC day or ISO week."""

    EVERY_BAR = "every-bar"
    EVERY_N_BARS = "every-n-bars"
    DAILY = "daily"
    WEEKLY = "weekly"


class SweepSearch(StrEnum):
    """How a sweep picks parameter combinations: every point of a grid, or random draws."""

    GRID = "grid"
    RANDOM = "random"


def parse_spread(text: str | float) -> tuple[float, bool]:
    """Return ``(pips, from_data)`` of a spread option: a number of pips, or ``data`` for the
    series' own per-bar spread.

    Raises
    ------
    UsageError
        If ``text`` is neither.
    """
    if isinstance(text, int | float):
        return float(text), False
    if text.strip().lower() == "data":
        return 0.0, True
    try:
        return float(text), False
    except ValueError:
        raise UsageError(f"--spread {text!r}: give pips (e.g. 0.8) or 'data'") from None


class SizingConfig(BaseModel):
    """How big a position is when a strategy asks for a full one.

    - ``all-in``: units = equity / (price x (1 + fees)), no leverage (vectorbt's default).
    - ``lots:N``: N lots of the instrument's contract size.
    - ``fraction:F``: notional = F x equity (F = 2 is 2:1 leverage).
    - ``vol-target:X``: notional = equity x X / (annualized volatility of recent returns).
    - ``kelly:F``: notional = equity x F x k, with the Kelly fraction k = p - (1 - p) / b of
      the strategy's own closed trades so far (p the share of winners, b the mean win over the
      mean loss), clipped to [0, max_leverage]; equity x F until 20 trades have closed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: SizingKind = "all-in"
    value: float = Field(default=1.0, gt=0)
    lookback: int = Field(default=100, ge=2, description="bars of returns behind vol-target")
    max_leverage: float = Field(default=10.0, gt=0)

    @classmethod
    def parse(cls, text: str) -> SizingConfig:
        """Parse ``all-in``, ``lots:N``, ``fraction:F``, ``vol-target:X`` or ``kelly:F``."""
        kind, _, value = text.strip().partition(":")
        kinds = ("all-in", "lots", "fraction", "vol-target", "kelly")
        if kind not in kinds:
            msg = f"sizing {text!r}: expected one of all-in, lots:N, fraction:F, vol-target:X, kelly:F"
            raise UsageError(msg)
        if kind == "all-in":
            if value:
                raise UsageError(f"sizing {text!r}: all-in takes no value")
            return cls(kind="all-in")
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"sizing {text!r}: {value!r} is not a number") from None
        if not number > 0:
            raise UsageError(f"sizing {text!r}: the value must be positive")
        return cls(kind=kind, value=number)  # type: ignore[arg-type]


class CostConfig(BaseModel):
    """What trading costs. Pips are the instrument's pip size; money is in account currency.

    - ``fees``: fraction of traded notional, charged on both legs.
    - ``commission_per_lot``: account currency per lot per leg (MT4 style, e.g. 3.5).
    - ``spread_pips``: a fixed spread; ``spread_from_data`` uses the series' ``spread`` column
      (price units) instead, and a series without one raises.
    - ``slippage_pips``: fixed adverse slippage per fill; ``slippage_vol``: extra slippage of
      this fraction of the bar's high-low range.
    - ``swap_long_pips`` / ``swap_short_pips``: carry credited (positive) or charged
      (negative) per unit held over the daily rollover, in pips of price per night.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fees: float = Field(default=0.0, ge=0, lt=1)
    commission_per_lot: float = Field(default=0.0, ge=0)
    spread_pips: float = Field(default=0.0, ge=0)
    spread_from_data: bool = False
    slippage_pips: float = Field(default=0.0, ge=0)
    slippage_vol: float = Field(default=0.0, ge=0)
    swap_long_pips: float = 0.0
    swap_short_pips: float = 0.0
    rollover_hour: int = Field(default=21, ge=0, le=23, description="UTC hour of the rollover")


class BacktestConfig(BaseModel):
    """One backtest's settings (prices in the series' own units, money in account currency)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cash: float = Field(default=100_000.0, gt=0)
    costs: CostConfig = CostConfig()
    fill: Fill = Fill.CLOSE
    direction: Direction = Direction.BOTH
    sizing: SizingConfig = SizingConfig()
    stop_loss_pips: float | None = Field(default=None, gt=0)
    take_profit_pips: float | None = Field(default=None, gt=0)
    trailing_stop_pips: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _stops(self) -> BacktestConfig:
        if self.stop_loss_pips is not None and self.trailing_stop_pips is not None:
            raise ValueError("give a stop loss or a trailing stop, not both")
        return self

    @classmethod
    def from_options(
        cls,
        *,
        cash: float = 100_000.0,
        fees: float = 0.0,
        commission: float = 0.0,
        slippage: float = 0.0,
        slippage_vol: float = 0.0,
        spread: str | float = 0.0,
        swap_long: float = 0.0,
        swap_short: float = 0.0,
        fill: Fill = Fill.CLOSE,
        direction: Direction = Direction.BOTH,
        sizing: str = "all-in",
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
    ) -> BacktestConfig:
        """Return the configuration the command-line options describe, checked.

        ``spread`` is pips or ``data`` (:func:`parse_spread`), ``sizing`` the text
        :meth:`SizingConfig.parse` reads; stops are in pips.

        Raises
        ------
        UsageError
            Naming each rejected option and why.
        """
        spread_pips, from_data = parse_spread(spread)
        try:
            costs = CostConfig(
                fees=fees, commission_per_lot=commission, spread_pips=spread_pips,
                spread_from_data=from_data, slippage_pips=slippage, slippage_vol=slippage_vol,
                swap_long_pips=swap_long, swap_short_pips=swap_short,
            )  # fmt: skip
            return cls(
                cash=cash, costs=costs, fill=fill, direction=direction,
                sizing=SizingConfig.parse(sizing), stop_loss_pips=stop_loss,
                take_profit_pips=take_profit, trailing_stop_pips=trailing_stop,
            )  # fmt: skip
        except ValidationError as exc:
            raise options_error("backtest", exc) from None

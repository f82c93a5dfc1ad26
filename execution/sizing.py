"""Sizing: how many units a full position is, by the backtest engine's five rules.

A strategy asks for a target, a signed fraction of the full size; :class:`Sizer` says what the
full size is at a fill price, with the same arithmetic as the compiled engine
(:mod:`pipelines.backtest._kernels`), so the event-driven backtest reproduces the vectorized one:

- ``all-in``: ``units = (E / (1 + fees)) / (price × r + commission per unit / (1 + fees))``;
- ``lots:N``: ``N × contract_size``;
- ``fraction:F``: ``F × E / (price × r)``;
- ``vol-target:X``: notional ``min(E × X / σ, max_leverage × E)``, σ the annualized sample
  standard deviation of the last ``lookback`` log returns of close, nothing before they exist;
- ``kelly:F``: notional ``E × F × k`` with the Kelly fraction ``k`` of the closed trades, once
  20 have closed (``E × F`` before).

``E`` is equity in account currency, ``r`` the account currency one unit of quote currency is
worth. The state the rules need (recent closes, closed-trade statistics) is small and rebuilt on
restart from the bars and the trade log.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipelines.backtest._kernels import KELLY_MIN_TRADES
from pipelines.backtest.config import SizingConfig


@dataclass
class KellyStats:
    """Closed trades' returns, summarized as the Kelly rule reads them."""

    closed: float = 0.0
    wins: float = 0.0
    sum_win: float = 0.0
    losses: float = 0.0
    sum_loss: float = 0.0

    def add(self, trade_return: float) -> None:
        """Count one closed trade's return (pnl / entry notional)."""
        self.closed += 1.0
        if trade_return > 0.0:
            self.wins += 1.0
            self.sum_win += trade_return
        elif trade_return < 0.0:
            self.losses += 1.0
            self.sum_loss -= trade_return

    def fraction(self, max_leverage: float) -> float:
        """Return the Kelly fraction ``p - (1 - p) / b`` clipped to ``[0, max_leverage]``."""
        if self.wins == 0.0:
            return 0.0
        p = self.wins / self.closed
        k = p
        if self.losses > 0.0:
            b = (self.sum_win / self.wins) / (self.sum_loss / self.losses)
            k = p - (1.0 - p) / b
        return min(max(k, 0.0), max_leverage)


@dataclass
class Sizer:
    """The full size of a position under one sizing rule, with the state the rule needs.

    Call :meth:`observe_close` with every bar's close in order (vol-target reads the last
    ``lookback`` returns up to the signal bar) and :meth:`trade_closed` with every closed
    trade's return (Kelly).
    """

    config: SizingConfig
    fees: float
    commission_per_lot: float
    contract_size: float
    bars_per_year: float
    kelly: KellyStats = field(default_factory=KellyStats)
    closes: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.closes = deque(maxlen=self.config.lookback + 1)

    def observe_close(self, close: float) -> None:
        """Remember a bar's close (only the last ``lookback + 1`` are kept, by vol-target)."""
        if self.config.kind == "vol-target":
            self.closes.append(close)

    def observe_closes(self, closes: Iterable[float]) -> None:
        """Remember several closes in order (see :meth:`observe_close`)."""
        if self.config.kind == "vol-target":
            self.closes.extend(float(c) for c in closes)

    def trade_closed(self, trade_return: float) -> None:
        """Count a closed trade for Kelly sizing."""
        self.kelly.add(trade_return)

    def annual_vol(self) -> float:
        """Return the annualized stdev of the last ``lookback`` log returns (NaN before)."""
        lookback = self.config.lookback
        closes = self.closes
        if len(closes) < lookback + 1:
            return math.nan
        values = list(closes)
        logs = [math.log(values[k] / values[k - 1]) for k in range(1, lookback + 1)]
        mean = 0.0
        for x in logs:
            mean += x
        mean /= lookback
        var = 0.0
        for x in logs:
            d = x - mean
            var += d * d
        return math.sqrt(var / (lookback - 1) * self.bars_per_year)

    def full_units(self, equity: float, price: float, to_account: float) -> float:
        """Return the units of a full position filled at ``price`` (quote) with ``equity``."""
        if not equity > 0.0:
            return 0.0
        kind = self.config.kind
        value = self.config.value
        pa = price * to_account
        if kind == "all-in":
            grossed = 1.0 + self.fees
            return (equity / grossed) / (
                pa + (self.commission_per_lot / self.contract_size) / grossed
            )
        if kind == "lots":
            return value * self.contract_size
        if kind == "fraction":
            return value * equity / pa
        cap = self.config.max_leverage * equity
        if kind == "vol-target":
            vol = self.annual_vol()
            if math.isnan(vol):
                return 0.0
            notional = cap if vol == 0.0 else min(equity * value / vol, cap)
            return notional / pa
        fraction = value
        if self.kelly.closed >= KELLY_MIN_TRADES:
            fraction *= self.kelly.fraction(self.config.max_leverage)
        return equity * fraction / pa

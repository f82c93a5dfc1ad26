"""What trading costs in the runtime: spread shares, slippage, commissions, swap.

The paper broker charges these and the loop prices its sizing with them, both through
:class:`CostModel`, so an order is sized at the price it will fill at. The conventions are the
backtest engine's (:mod:`pipelines.backtest.engine`): a bid series buys at bid + spread, a mid
series at ± half the spread, an ask series sells at ask − spread; slippage is
``slippage_pips × pip + slippage_vol × (high − low)`` of the fill bar, plus, in paper trading,
``impact_pips × pip × √lots`` for size.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from core.types import Instrument, Side
from pipelines.backtest.config import BacktestConfig
from pipelines.backtest.engine import SPREAD_SHARES

Nanos = TypeVar("Nanos", int, npt.NDArray[np.int64])

DAY_NS = 86_400_000_000_000
HOUR_NS = 3_600_000_000_000


class CostModel(BaseModel):
    """Spread, slippage, fees, commission and swap of one instrument, in price units and money."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pip_size: float = Field(gt=0)
    contract_size: float = Field(gt=0)
    buy_share: float
    sell_share: float
    spread: float | None = Field(default=None, ge=0, description="price units; None: the bars'")
    fees: float = 0.0
    commission_per_lot: float = 0.0
    slippage: float = 0.0
    slippage_vol: float = 0.0
    impact_pips: float = 0.0
    swap_long: float = 0.0
    swap_short: float = 0.0
    rollover_hour: int = 21

    @classmethod
    def of(
        cls, config: BacktestConfig, instrument: Instrument, side: Side, impact_pips: float = 0.0
    ) -> CostModel:
        """Return the cost model a backtest configuration describes for ``instrument``."""
        costs = config.costs
        buy, sell = SPREAD_SHARES[side.value]
        pip = instrument.pip_size
        return cls(
            pip_size=pip,
            contract_size=instrument.contract_size,
            buy_share=buy,
            sell_share=sell,
            spread=None if costs.spread_from_data else costs.spread_pips * pip,
            fees=costs.fees,
            commission_per_lot=costs.commission_per_lot,
            slippage=costs.slippage_pips * pip,
            slippage_vol=costs.slippage_vol,
            impact_pips=impact_pips,
            swap_long=costs.swap_long_pips * pip,
            swap_short=costs.swap_short_pips * pip,
            rollover_hour=costs.rollover_hour,
        )

    def spread_of(self, bar_spread: float) -> float:
        """Return the spread in force: the fixed one, else the bar's (NaN counts as 0)."""
        if self.spread is not None:
            return self.spread
        return 0.0 if math.isnan(bar_spread) else bar_spread

    def bid_ask(self, x: float, spread: float) -> tuple[float, float]:
        """Return the bid and the ask around a bar price ``x`` with ``spread`` in force."""
        return x - self.sell_share * spread, x + self.buy_share * spread

    def slip(self, high: float, low: float, units: float = 0.0) -> float:
        """Return the adverse slippage of a market or stop fill in a bar, price units."""
        out = self.slippage + self.slippage_vol * (high - low)
        if self.impact_pips and units:
            out += self.impact_pips * self.pip_size * math.sqrt(abs(units) / self.contract_size)
        return out

    @property
    def commission_per_unit(self) -> float:
        """Return the commission of one unit, account currency."""
        return self.commission_per_lot / self.contract_size

    def rollovers(self, start_ns: Nanos, end_ns: Nanos) -> Nanos:
        """Return the daily rollovers (``rollover_hour`` UTC) in ``[start_ns, end_ns)``: one bar's
        (ints) or each bar's (int64 arrays)."""
        offset = self.rollover_hour * HOUR_NS
        return (end_ns - offset - 1) // DAY_NS - (start_ns - offset - 1) // DAY_NS


def protective_levels(
    direction: float,
    price: float,
    stop_loss_pips: float | None,
    take_profit_pips: float | None,
    pip_size: float,
) -> tuple[float | None, float | None]:
    """Return the stop-loss and take-profit prices of a position opened at ``price``.

    ``direction`` is +1 for a long position and -1 for a short one; each level is measured in
    pips from ``price`` against (stop) or with (take) the position. A level not asked for, or at
    or below 0, is None.
    """
    stop = None if stop_loss_pips is None else price - direction * stop_loss_pips * pip_size
    take = None if take_profit_pips is None else price + direction * take_profit_pips * pip_size
    return (stop if stop and stop > 0 else None), (take if take and take > 0 else None)

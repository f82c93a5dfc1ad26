"""Multi-symbol portfolios: one account, shared cash, sized and capped at each rebalance.

The run, in order:

1. **Timeline.** Every symbol's bars are placed on the union of their timestamps (UTC). A close
   is carried forward over bars a symbol has no data for, to value what it holds; a symbol is
   traded only on its own bars. Its per-bar return is ``rᵢ = cᵢ / cᵢ₋₁ - 1`` of the carried
   close (0 over a bar without data, NaN before its first bar), in its quote currency.
2. **Directions.** ``signals[sym]`` is aligned with the symbol's bars: +1 long, -1 short, 0 flat,
   a fraction for a partial position (``|s| ≤ 1``, as ``Signals.target``), NaN to keep the last
   one. Before the first value the direction is 0.
3. **Rebalance bars** (:func:`rebalance_schedule`): every bar, every N bars, or the first bar of
   each new UTC day or ISO week, the first bar included.
4. **Targets at a rebalance bar ``i``**, from returns up to ``i`` only (point in time):

   - *eligible* symbols have a covariance estimate at ``i`` (``lookback`` bars of returns) with
     a variance above 1e-20; with ``equal`` sizing and neither ``target_vol`` nor
     ``max_portfolio_vol``, every symbol with a first bar at or before ``i`` is eligible.
     Others get weight 0.
   - *sizing weights* ``b ≥ 0`` summing to 1 over the eligible symbols, one sleeve per symbol
     whatever its direction: ``equal`` ``bⱼ = 1/n``; ``inverse-vol`` and ``vol-target``
     ``bⱼ ∝ 1/σⱼ``; ``risk-parity`` (skfolio ``RiskBudgeting``, equal variance budgets),
     ``hrp`` (skfolio ``HierarchicalRiskParity``) and ``min-variance`` (skfolio ``MeanRisk``
     minimizing variance, long only) fitted on the lookback window's returns with the run's own
     covariance estimate. A failed fit falls back to inverse volatility and is counted in
     ``PortfolioResult.sizing_fallbacks``.
   - *volatility target* (``target_vol``, required by ``vol-target``, optional for every other
     scheme): ``k = target_vol / σₚ(s ⊙ b)``, with ``σₚ(w) = sqrt(wᵀ Σ w · bars_per_year)`` the
     ex-ante annualized volatility of the signed book (of the all-long book while every
     direction is 0); ``k = 1`` without a target.
   - *caps*: magnitude ``mⱼ = min(k bⱼ, max_weight)``; target ``wⱼ = sⱼ mⱼ``; if
     ``Σ|w| > max_gross`` every ``w`` and ``m`` are scaled by ``max_gross / Σ|w|``.
   - *correlation-aware limit*: if ``σₚ(w) > max_portfolio_vol`` every ``w`` and ``m`` are
     scaled by ``max_portfolio_vol / σₚ(w)``. Through the full covariance, same-way bets on
     correlated symbols (or opposite bets on anti-correlated ones) use the budget faster than
     diversifying ones. Caps and the limit win over the target.

   The optimizers size sleeves from the symbols' own (long) returns; the directions then sign
   them, and the target and the limit see the signed book.
5. **Trades** at a bar's close, against the equity before the bar's trades ``E``:
   ``units = w E / (close · to_account)``, so the bar's costs lift the weights after it by the
   fraction of equity they took. At a rebalance bar every symbol with a bar moves to its
   target (unless ``|Δw| < min_trade_weight`` and its direction is unchanged). Between
   rebalances units are held, except that a direction change of a symbol trades that symbol at
   once to ``s mⱼ``, ``mⱼ`` its magnitude from the last rebalance (0 for a symbol not eligible
   then: it can only close). A symbol without a bar at a rebalance keeps its units, which
   count against ``max_gross`` as they are, and moves to ``s mⱼ`` at its next bar. Trades
   between rebalances first make room by reductions and then grow positions only as far as
   ``max_gross`` allows (in symbol order). Weights drift with prices between trades. While
   equity is not positive nothing trades and weights are NaN.
6. **Costs.** Bars are bid prices: a buy fills at ``close + spread + slippage``, a sell at
   ``close - slippage``, where spread is ``costs.spread_pips`` in the instrument's pips (or the
   bar's ``spread`` column with ``spread_from_data``) and slippage is
   ``slippage_pips · pip + slippage_vol · (high - low)``. Fees are ``fees × |Δunits| × fill
   × to_account``, commissions ``commission_per_lot × |Δunits| / contract_size`` in account
   currency. Positions held over the daily rollover (``rollover_hour`` UTC, counted at the
   close of the first bar past it, one per day crossed) earn ``|units| × swap_pips × pip ×
   to_account``.
7. **Accounting.** Cash is shared; ``equity = cash + Σ units × close × to_account`` at every
   close (marked at the bid). ``to_account`` converts a symbol's quote currency to the
   account's: 1.0 by default, right when the quote is the account currency; for other pairs
   pass an array aligned with that symbol's bars (for a USD account and USDJPY, ``1 / close``;
   for EURGBP, the GBPUSD close), carried forward like the close. A position is funded in its
   quote currency, the way a margin account books it: a bar earns
   ``units × (cᵢ - cᵢ₋₁) × to_accountᵢ`` (a USDJPY long in a USD account earns
   ``units × Δc / c``), so ``cash`` is the account-currency value of every balance, the quote
   balances that fund open positions included, and moves by
   ``-units × cᵢ₋₁ × (to_accountᵢ - to_accountᵢ₋₁)`` as the rate changes.
8. **Risk** (:func:`pipelines.backtest.risk.book_risk`): the weights held at each close against
   the covariance and the returns up to that close.

The bar loop runs compiled (numba); sizing runs once per rebalance bar in Python, so the
optimizer schemes cost one fit per rebalance (tens of milliseconds each).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import DataError, UsageError, options_error
from core.types import Instrument
from pipelines.backtest.config import BacktestConfig, CostConfig, PortfolioSizing, Rebalance
from pipelines.backtest.risk import book_risk, covariance_at

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SizingScheme = PortfolioSizing
RebalanceRule = Rebalance

_jit = njit(cache=True, nogil=True, error_model="numpy")

_US_PER_DAY = 86_400_000_000
_US_PER_HOUR = 3_600_000_000
# Variance below which a symbol counts as not moving (a per-bar volatility of 1e-10).
_MIN_VARIANCE = 1e-20
# Rebalance bars whose covariances are built at once.
_CHUNK = 2048
_OPTIMIZED = ("risk-parity", "hrp", "min-variance")


class PortfolioConfig(BaseModel):
    """How a multi-symbol portfolio is sized, capped, rebalanced and measured.

    Weights are signed fractions of equity (value / equity); volatilities are annualized with
    ``bars_per_year`` (M5 FX: about 260 days × 288 bars = 74,880).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bars_per_year: float = Field(gt=0, description="bars in a year, annualizes volatility")
    cash: float = Field(default=100_000.0, gt=0, description="starting cash, account currency")
    costs: CostConfig = CostConfig()
    sizing: SizingScheme = PortfolioSizing.EQUAL
    target_vol: float | None = Field(default=None, gt=0, description="annualized, e.g. 0.10")
    max_weight: float = Field(default=1.0, gt=0, description="cap on each |weight|")
    max_gross: float = Field(default=1.0, gt=0, description="cap on Σ|weight|")
    max_portfolio_vol: float | None = Field(
        default=None, gt=0, description="cap on the ex-ante annualized volatility"
    )
    rebalance: RebalanceRule = Rebalance.DAILY
    rebalance_bars: int = Field(default=1, ge=1, description="N of every-n-bars")
    lookback: int = Field(default=288, ge=2, description="bars of returns behind covariance")
    covariance: Literal["sample", "ewma"] = "sample"
    ewma_halflife: float | None = Field(
        default=None, gt=0, description="bars; default the lookback (ewma only)"
    )
    var_window: int = Field(default=288, ge=2, description="bars behind historical VaR/ES")
    var_confidences: tuple[float, ...] = (0.95, 0.99)
    min_trade_weight: float = Field(default=0.0, ge=0, description="skip smaller rebalances")

    @model_validator(mode="after")
    def _consistent(self) -> PortfolioConfig:
        if self.sizing == "vol-target" and self.target_vol is None:
            raise ValueError("vol-target sizing needs target_vol (annualized, e.g. 0.10)")
        if self.ewma_halflife is not None and self.covariance != "ewma":
            raise ValueError("ewma_halflife applies to covariance='ewma' only")
        if not self.var_confidences or any(not 0.5 < c < 1.0 for c in self.var_confidences):
            raise ValueError("var_confidences: give levels between 0.5 and 1, e.g. (0.95, 0.99)")
        if len(set(self.var_confidences)) != len(self.var_confidences):
            raise ValueError("var_confidences: give each level once")
        return self

    @classmethod
    def from_options(
        cls,
        *,
        bars_per_year: float,
        base: BacktestConfig,
        sizing: PortfolioSizing = PortfolioSizing.INVERSE_VOL,
        target_vol: float | None = None,
        max_weight: float = 0.5,
        max_gross: float = 1.0,
        max_portfolio_vol: float | None = None,
        rebalance: Rebalance = Rebalance.DAILY,
        rebalance_bars: int = 1,
        lookback: int = 500,
        var_window: int = 500,
    ) -> PortfolioConfig:
        """Return the portfolio configuration the command-line options describe, checked.

        Cash and costs come from ``base`` (:meth:`BacktestConfig.from_options`).

        Raises
        ------
        UsageError
            Naming each rejected option and why.
        """
        try:
            return cls(
                bars_per_year=bars_per_year, cash=base.cash, costs=base.costs, sizing=sizing,
                target_vol=target_vol, max_weight=max_weight, max_gross=max_gross,
                max_portfolio_vol=max_portfolio_vol, rebalance=rebalance,
                rebalance_bars=rebalance_bars, lookback=lookback, var_window=var_window,
            )  # fmt: skip
        except ValidationError as exc:
            raise options_error("portfolio", exc) from None

    @property
    def halflife(self) -> float | None:
        """Return the EWMA half-life in bars, or None for the sample covariance."""
        if self.covariance == "sample":
            return None
        return self.ewma_halflife if self.ewma_halflife is not None else float(self.lookback)

    @property
    def needs_covariance(self) -> bool:
        """Return whether sizing needs a covariance estimate (and so a warm-up)."""
        return (
            self.sizing != "equal"
            or self.target_vol is not None
            or self.max_portfolio_vol is not None
        )


def confidence_label(confidence: float) -> str:
    """Return the column suffix of a confidence level: 0.95 → ``95``, 0.975 → ``97.5``."""
    return f"{confidence * 100:g}"


@dataclass(frozen=True, eq=False)
class PortfolioResult:
    """What a portfolio run did, bar by bar on the union timeline (T bars, N symbols).

    Attributes
    ----------
    symbols
        Column order of every (T, N) array.
    ts
        Bar open times, UTC.
    equity, cash
        At each close after the bar's trades; ``equity = cash + Σ units × close × to_account``,
        cash counting the quote-currency balances that fund positions at the bar's rate.
    weights
        Held value / equity at each close, (T, N).
    units
        Held units at each close (negative short), (T, N).
    pnl
        Cumulative P&L per symbol in account currency after costs and swaps, (T, N);
        ``Σ pnl[i] = equity[i] - starting cash``.
    costs
        Spread, slippage, fees and commissions paid at each bar.
    turnover
        Traded value at each bar / the equity before the bar's trades.
    n_trades
        Bars at which each symbol's units changed, (N,).
    costs_by_symbol
        Total costs paid per symbol, (N,).
    risk
        ts, gross_exposure, net_exposure, portfolio_vol (ex-ante, annualized) and, per
        confidence (suffix ``95``, ``99``...), var_hist, es_hist, var_param, es_param.
    rebalance_ts
        Times of the rebalance bars.
    correlation
        Correlation of the symbols' returns over the bars both have data for (reports only).
    config
        The run's settings.
    sizing_fallbacks
        Rebalances where the optimizer failed and inverse volatility was used.
    """

    symbols: tuple[str, ...]
    ts: pl.Series
    equity: Array
    cash: Array
    weights: Array
    units: Array
    pnl: Array
    costs: Array
    turnover: Array
    n_trades: IntArray
    costs_by_symbol: Array
    risk: pl.DataFrame
    rebalance_ts: pl.Series
    correlation: Array
    config: PortfolioConfig
    sizing_fallbacks: int = field(default=0)

    def per_symbol_table(self) -> pl.DataFrame:
        """Return one row per symbol: pnl, trades, costs, mean |weight|, max |weight|."""
        magnitude = np.abs(self.weights)
        has_rows = magnitude.shape[0] > 0
        return pl.DataFrame(
            {
                "symbol": list(self.symbols),
                "pnl": self.pnl[-1] if has_rows else np.zeros(len(self.symbols)),
                "trades": self.n_trades,
                "costs": self.costs_by_symbol,
                "mean_abs_weight": np.nanmean(magnitude, axis=0) if has_rows else np.nan,
                "max_abs_weight": np.nanmax(magnitude, axis=0) if has_rows else np.nan,
            }
        )


def rebalance_schedule(ts: pl.Series, rule: RebalanceRule, every: int = 1) -> BoolArray:
    """Return which bars rebalance: all, every ``every``-th, or each new UTC day / ISO week.

    ``every-n-bars`` marks bars 0, N, 2N…; ``daily`` and ``weekly`` mark the first bar whose
    UTC date (ISO week, Monday to Sunday) differs from the previous bar's, and bar 0.
    """
    return _schedule(_epoch_us(ts, "ts"), rule, every)


def _schedule(ts_us: IntArray, rule: RebalanceRule, every: int) -> BoolArray:
    n = ts_us.shape[0]
    if rule == "every-bar":
        return np.ones(n, dtype=np.bool_)
    if rule == "every-n-bars":
        if every < 1:
            raise UsageError(f"rebalance every {every} bars: give a positive number")
        return np.asarray(np.arange(n) % every == 0)
    day = ts_us // _US_PER_DAY
    # 1970-01-01 was a Thursday: shifting by 3 days starts each week on a Monday.
    period = day if rule == "daily" else (day + 3) // 7
    marks = np.ones(n, dtype=np.bool_)
    marks[1:] = period[1:] != period[:-1]
    return marks


def _epoch_us(ts: pl.Series, where: str) -> IntArray:
    dtype = ts.dtype
    if not isinstance(dtype, pl.Datetime):
        raise DataError(f"{where}: ts is {dtype}, expected a UTC Datetime column")
    if dtype.time_zone is None:
        utc = ts.dt.replace_time_zone("UTC")
    else:
        utc = ts.dt.convert_time_zone("UTC")
    if utc.null_count():
        raise DataError(f"{where}: ts has {utc.null_count()} missing timestamps")
    return utc.dt.epoch("us").to_numpy().astype(np.int64)


@dataclass(frozen=True)
class _Market:
    """Every symbol's inputs on the union timeline, (T, N) unless said otherwise."""

    ts_us: IntArray  # (T,)
    close: Array  # carried forward; NaN before a symbol's first bar
    has_bar: BoolArray
    fx: Array  # carried forward
    buy_add: Array  # spread + slippage, price units, on a symbol's bars
    sell_sub: Array  # slippage, price units, on a symbol's bars
    signal: Array  # NaN where none or no bar
    returns: Array


def _carry_forward(values: Array, present: BoolArray) -> Array:
    rows = np.where(present, np.arange(values.shape[0])[:, None], -1)
    np.maximum.accumulate(rows, axis=0, out=rows)
    out = np.take_along_axis(values, np.maximum(rows, 0), axis=0)
    out[rows < 0] = np.nan
    return np.asarray(out)


def _column(frame: pl.DataFrame, name: str, symbol: str) -> Array:
    if name not in frame.columns:
        raise DataError(f"{symbol}: bars have no {name!r} column (columns: {frame.columns})")
    values = frame[name].cast(pl.Float64).to_numpy()
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(f"{symbol}: {name} at row {bad} is {values[bad]}; fill or drop the bar")
    return np.asarray(values, dtype=np.float64)


def _align(
    bars: Mapping[str, pl.DataFrame],
    signals: Mapping[str, npt.ArrayLike],
    instruments: Mapping[str, Instrument],
    costs: CostConfig,
    to_account: Mapping[str, npt.ArrayLike | float] | None,
) -> tuple[tuple[str, ...], _Market]:
    symbols = tuple(bars)
    if not symbols:
        raise UsageError("no bars given: pass at least one symbol's bars")
    if set(signals) != set(symbols):
        msg = f"signals are for {sorted(signals)} but bars for {sorted(symbols)}: give one each"
        raise UsageError(msg)
    missing = [s for s in symbols if s not in instruments]
    if missing:
        raise UsageError(f"no instrument for {missing}: pass each symbol's Instrument")
    extra = sorted(set(to_account or {}) - set(symbols))
    if extra:
        raise UsageError(f"to_account names {extra}, which have no bars")
    for symbol in symbols:
        if "ts" not in bars[symbol].columns:
            raise DataError(f"{symbol}: bars have no 'ts' column (columns: {bars[symbol].columns})")
    stamps = [_epoch_us(bars[symbol]["ts"], symbol) for symbol in symbols]
    for symbol, ts in zip(symbols, stamps, strict=True):
        if ts.shape[0] and np.any(np.diff(ts) <= 0):
            bad = int(np.flatnonzero(np.diff(ts) <= 0)[0]) + 1
            raise DataError(f"{symbol}: ts at row {bad} is not after the previous bar; sort it")
    timeline = np.unique(np.concatenate(stamps))
    if timeline.shape[0] == 0:
        raise DataError(f"bars of {list(symbols)} hold no rows: pass at least one bar")
    n_bars, n = timeline.shape[0], len(symbols)
    close = np.full((n_bars, n), np.nan)
    fx = np.full((n_bars, n), np.nan)
    has_bar = np.zeros((n_bars, n), dtype=np.bool_)
    buy_add = np.zeros((n_bars, n))
    sell_sub = np.zeros((n_bars, n))
    signal = np.full((n_bars, n), np.nan)
    for j, (symbol, ts) in enumerate(zip(symbols, stamps, strict=True)):
        frame = bars[symbol]
        rows = np.searchsorted(timeline, ts)
        price = _column(frame, "close", symbol)
        if np.any(price <= 0):
            raise DataError(f"{symbol}: close at row {int(np.argmax(price <= 0))} is not positive")
        direction = np.asarray(signals[symbol], dtype=np.float64)
        if direction.shape != price.shape:
            msg = f"{symbol}: {direction.shape[0]} signals for {price.shape[0]} bars; align them"
            raise UsageError(msg)
        wrong = ~np.isnan(direction) & ~(np.abs(direction) <= 1.0)
        if np.any(wrong):
            bad = int(np.flatnonzero(wrong)[0])
            msg = f"{symbol}: signal {direction[bad]} at bar {bad}; give -1..1 or NaN to keep"
            raise UsageError(msg)
        conversion = np.broadcast_to(
            np.asarray((to_account or {}).get(symbol, 1.0), dtype=np.float64), price.shape
        )
        if not np.all(np.isfinite(conversion) & (conversion > 0)):
            raise UsageError(f"{symbol}: to_account must be positive and finite on every bar")
        pip = instruments[symbol].pip_size
        if costs.spread_from_data:
            spread = _column(frame, "spread", symbol)
        else:
            spread = np.full(price.shape, costs.spread_pips * pip)
        slip = np.full(price.shape, costs.slippage_pips * pip)
        if costs.slippage_vol > 0:
            slip = slip + costs.slippage_vol * (
                _column(frame, "high", symbol) - _column(frame, "low", symbol)
            )
        close[rows, j] = price
        fx[rows, j] = conversion
        has_bar[rows, j] = True
        buy_add[rows, j] = spread + slip
        sell_sub[rows, j] = slip
        signal[rows, j] = direction
    close = _carry_forward(close, has_bar)
    fx = _carry_forward(fx, has_bar)
    returns = np.full((n_bars, n), np.nan)
    returns[1:] = close[1:] / close[:-1] - 1.0
    market = _Market(timeline, close, has_bar, fx, buy_add, sell_sub, signal, returns)
    return symbols, market


@cache
def _given_covariance() -> Any:
    """Return a skfolio covariance estimator class that hands back a covariance it is given."""
    from skfolio.moments import BaseCovariance

    class GivenCovariance(BaseCovariance):
        """The run's own covariance estimate, so optimizers and caps see the same risk."""

        def __init__(self, covariance: Array | None = None, nearest: bool = True) -> None:
            super().__init__(nearest=nearest)
            self.covariance = covariance

        def fit(self, X: Array, y: None = None, **fit_params: Any) -> GivenCovariance:
            values = np.asarray(X, dtype=np.float64)
            self.n_features_in_ = values.shape[1]
            self.location_ = values.mean(axis=0)
            self._set_covariance(np.asarray(self.covariance, dtype=np.float64))
            return self

    return GivenCovariance


def _optimized_weights(scheme: str, covariance: Array, window: Array) -> Array | None:
    """Fit a skfolio optimizer on one window; None when it fails."""
    from skfolio.exceptions import SkfolioError
    from skfolio.optimization import (
        HierarchicalRiskParity,
        MeanRisk,
        ObjectiveFunction,
        RiskBudgeting,
    )
    from skfolio.prior import EmpiricalPrior

    prior = EmpiricalPrior(covariance_estimator=_given_covariance()(covariance))
    model: Any
    if scheme == "risk-parity":
        model = RiskBudgeting(prior_estimator=prior)
    elif scheme == "hrp":
        model = HierarchicalRiskParity(prior_estimator=prior)
    else:
        model = MeanRisk(objective_function=ObjectiveFunction.MINIMIZE_RISK, prior_estimator=prior)
    try:
        model.fit(window)
    except (SkfolioError, ValueError, ArithmeticError):
        return None
    weights = np.clip(np.asarray(model.weights_, dtype=np.float64), 0.0, None)
    total = float(weights.sum())
    if not math.isfinite(total) or total <= 0.0:
        return None
    return np.asarray(weights / total)


def _sizing_weights(
    config: PortfolioConfig, covariance: Array | None, window: Array | None, n: int
) -> tuple[Array, bool]:
    """Return the sizing weights of ``n`` eligible symbols (sum 1) and whether a fit failed."""
    if config.sizing == "equal" or covariance is None:
        return np.full(n, 1.0 / n), False
    inverse = 1.0 / np.sqrt(np.diag(covariance))
    inverse_vol = inverse / inverse.sum()
    if config.sizing in ("inverse-vol", "vol-target") or n == 1 or window is None:
        return inverse_vol, False
    fitted = _optimized_weights(config.sizing, covariance, window)
    if fitted is None:
        return inverse_vol, True
    return fitted, False


def _book_targets(
    config: PortfolioConfig,
    eligible: BoolArray,
    covariance: Array | None,
    window: Array | None,
    direction: Array,
) -> tuple[Array, Array, bool]:
    """Return one rebalance's target weights, magnitudes and whether the optimizer failed."""
    n = eligible.shape[0]
    weights = np.zeros(n)
    magnitudes = np.zeros(n)
    chosen = np.flatnonzero(eligible)
    if chosen.size == 0:
        return weights, magnitudes, False
    sub = None if covariance is None else covariance[np.ix_(chosen, chosen)]
    base, failed = _sizing_weights(config, sub, window, chosen.size)
    signs = direction[chosen]

    def volatility(w: Array) -> float:
        assert sub is not None
        return math.sqrt(max(float(w @ sub @ w), 0.0) * config.bars_per_year)

    scale = 1.0
    if config.target_vol is not None:
        sigma = volatility(signs * base)
        if sigma == 0.0:
            sigma = volatility(base)
        scale = config.target_vol / sigma if sigma > 0.0 else 0.0
    m = np.minimum(scale * base, config.max_weight)
    w = signs * m
    gross = float(np.abs(w).sum())
    if gross > config.max_gross:
        m = m * (config.max_gross / gross)
        w = signs * m
    if config.max_portfolio_vol is not None:
        sigma = volatility(w)
        if sigma > config.max_portfolio_vol:
            m = m * (config.max_portfolio_vol / sigma)
            w = signs * m
    weights[chosen] = w
    magnitudes[chosen] = m
    return weights, magnitudes, failed


def _targets(
    market: _Market, direction: Array, rows: IntArray, config: PortfolioConfig
) -> tuple[Array, Array, int]:
    """Return the target weights and magnitudes at each rebalance bar, and the fit failures."""
    n = market.close.shape[1]
    weights = np.zeros((rows.shape[0], n))
    magnitudes = np.zeros((rows.shape[0], n))
    failures = 0
    optimized = config.sizing in _OPTIMIZED
    for first in range(0, rows.shape[0], _CHUNK):
        chunk = rows[first : first + _CHUNK]
        covariances = None
        if config.needs_covariance:
            covariances = covariance_at(
                market.returns, chunk, config.lookback, ewma_halflife=config.halflife
            )
        for k, i in enumerate(chunk):
            covariance = None if covariances is None else covariances[k]
            if covariance is None:
                eligible = np.isfinite(market.close[i])
            else:
                variance = np.diag(covariance)
                eligible = np.isfinite(variance) & (variance > _MIN_VARIANCE)
            window = None
            if optimized and covariance is not None:
                start = max(0, int(i) - config.lookback + 1)
                window = np.nan_to_num(market.returns[start : i + 1][:, eligible])
            w, m, failed = _book_targets(config, eligible, covariance, window, direction[i])
            weights[first + k] = w
            magnitudes[first + k] = m
            failures += int(failed)
    return weights, magnitudes, failures


def _nights(ts_us: IntArray, rollover_hour: int) -> IntArray:
    """Return how many daily rollovers each bar's close is the first past (0 for bar 0)."""
    nights = np.zeros(ts_us.shape[0], dtype=np.int64)
    steps = np.diff(ts_us)
    if not np.any(steps > 0):
        return nights
    duration = int(steps[steps > 0].min())
    day = (ts_us + duration - rollover_hour * _US_PER_HOUR) // _US_PER_DAY
    nights[1:] = np.diff(day)
    return nights


@_jit
def _simulate(
    close: Array,
    has_bar: BoolArray,
    fx: Array,
    buy_add: Array,
    sell_sub: Array,
    fees: float,
    commission: Array,
    swap_long: Array,
    swap_short: Array,
    nights: IntArray,
    direction: Array,
    changed: BoolArray,
    rebalance_row: IntArray,
    targets: Array,
    magnitudes: Array,
    cash0: float,
    max_gross: float,
    min_trade: float,
    equity: Array,
    cash_out: Array,
    units_out: Array,
    weights_out: Array,
    pnl_out: Array,
    costs_out: Array,
    turnover: Array,
    n_trades: IntArray,
    symbol_costs: Array,
) -> None:  # pragma: no cover
    """Run the bars: mark, earn swaps, pick the trading symbols and trade them at the close."""
    n_bars, n = close.shape
    units = np.zeros(n)
    magnitude = np.zeros(n)
    pending = np.zeros(n, dtype=np.bool_)
    last_close = np.full(n, np.nan)
    last_fx = np.full(n, np.nan)
    pnl = np.zeros(n)
    value = np.zeros(n)
    want = np.zeros(n)
    current = np.zeros(n)
    trading = np.zeros(n, dtype=np.bool_)
    cash = cash0
    for i in range(n_bars):
        for j in range(n):
            value[j] = close[i, j] * fx[i, j]
            if units[j] != 0.0:
                # The bar's quote-currency P&L at this bar's rate; the funding leg revalues.
                pnl[j] += units[j] * (close[i, j] - last_close[j]) * fx[i, j]
                cash -= units[j] * last_close[j] * (fx[i, j] - last_fx[j])
                if nights[i] > 0:
                    rate = swap_long[j] if units[j] > 0.0 else swap_short[j]
                    credit = abs(units[j]) * rate * nights[i] * fx[i, j]
                    cash += credit
                    pnl[j] += credit
            if not math.isnan(value[j]):
                last_close[j] = close[i, j]
                last_fx[j] = fx[i, j]
        before = cash
        for j in range(n):
            if units[j] != 0.0:
                before += units[j] * value[j]
        row = rebalance_row[i]
        if row >= 0:
            magnitude[:] = magnitudes[row]
        any_trade = False
        for j in range(n):
            trading[j] = False
            current[j] = units[j] * value[j] / before if units[j] != 0.0 else 0.0
            if not has_bar[i, j]:
                if row >= 0:
                    pending[j] = True
                continue
            if row >= 0:
                want[j] = targets[row, j]
            elif changed[i, j] or pending[j]:
                want[j] = direction[i, j] * magnitude[j]
            else:
                continue
            pending[j] = False
            if not changed[i, j] and abs(want[j] - current[j]) < min_trade:
                continue
            trading[j] = True
            any_trade = True
        traded = 0.0
        if any_trade and before > 0.0:
            if row < 0:
                # Between rebalances: reductions first, then growth within the gross cap.
                gross = 0.0
                for j in range(n):
                    gross += abs(current[j])
                for j in range(n):
                    if trading[j] and abs(want[j]) <= abs(current[j]):
                        gross += abs(want[j]) - abs(current[j])
                for j in range(n):
                    if trading[j] and abs(want[j]) > abs(current[j]):
                        room = max(0.0, max_gross - (gross - abs(current[j])))
                        if abs(want[j]) > room:
                            want[j] = room if want[j] > 0.0 else -room
                        gross += abs(want[j]) - abs(current[j])
            for j in range(n):
                if not trading[j]:
                    continue
                delta = want[j] * before / value[j] - units[j]
                if delta == 0.0:
                    continue
                price = close[i, j]
                fill = price + buy_add[i, j] if delta > 0.0 else price - sell_sub[i, j]
                size = abs(delta)
                cost = (
                    delta * (fill - price) * fx[i, j]
                    + fees * size * fill * fx[i, j]
                    + commission[j] * size
                )
                cash -= delta * price * fx[i, j] + cost
                pnl[j] -= cost
                symbol_costs[j] += cost
                costs_out[i] += cost
                traded += size * value[j]
                units[j] += delta
                n_trades[j] += 1
        after = cash
        for j in range(n):
            if units[j] != 0.0:
                after += units[j] * value[j]
        equity[i] = after
        cash_out[i] = cash
        turnover[i] = traded / before if before > 0.0 else 0.0
        for j in range(n):
            units_out[i, j] = units[j]
            pnl_out[i, j] = pnl[j]
            if after > 0.0:
                weights_out[i, j] = units[j] * value[j] / after if units[j] != 0.0 else 0.0
            else:
                weights_out[i, j] = np.nan


def _correlation(returns: Array, has_bar: BoolArray) -> Array:
    """Pairwise correlation of returns over the bars where both symbols have data."""
    mask = (has_bar & np.isfinite(returns)).astype(np.float64)
    x = np.where(mask > 0, returns, 0.0)
    count = mask.T @ mask
    sums = x.T @ mask  # (j, k): Σ r_j over bars where both have data
    squares = (x * x).T @ mask
    cross = x.T @ x
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = cross - sums * sums.T / count
        var_j = squares - sums * sums / count
        corr = cov / np.sqrt(var_j * var_j.T)
    corr[count < 3] = np.nan
    return np.asarray(np.clip(corr, -1.0, 1.0))


def run_portfolio(
    bars: Mapping[str, pl.DataFrame],
    signals: Mapping[str, npt.ArrayLike],
    instruments: Mapping[str, Instrument],
    config: PortfolioConfig,
    *,
    to_account: Mapping[str, npt.ArrayLike | float] | None = None,
) -> PortfolioResult:
    """Run a multi-symbol portfolio with shared cash, sizing, caps and risk limits.

    Parameters
    ----------
    bars
        Per symbol: ts (UTC Datetime, strictly increasing), open, high, low, close (bid)
        [, spread in price units].
    signals
        Per symbol: directions aligned with its bars (+1, -1, 0, fractions, NaN keeps).
    instruments
        Per symbol: pip size (spread and slippage in pips) and contract size (commissions).
    config
        Sizing, caps, limit, rebalancing, covariance and risk settings.
    to_account
        Per symbol: quote → account currency rate, a number or an array aligned with its
        bars; 1.0 where absent.

    Returns
    -------
    PortfolioResult
        Equity, cash, weights, units, P&L, costs, turnover and the risk frame on the union
        of the symbols' timestamps (the module docstring gives every rule).

    Raises
    ------
    UsageError
        If symbols, signals, instruments or conversions do not match, or a signal is outside
        -1..1.
    DataError
        If bars lack a column, hold a non-finite or non-positive price, or are not in order.
    """
    symbols, market = _align(bars, signals, instruments, config.costs, to_account)
    n_bars, n = market.close.shape
    known = ~np.isnan(market.signal)
    direction = _carry_forward(market.signal, known)
    direction[np.isnan(direction)] = 0.0
    before = np.vstack([np.zeros((1, n)), direction[:-1]])
    changed = direction != before
    rows = np.flatnonzero(_schedule(market.ts_us, config.rebalance, config.rebalance_bars))
    targets, magnitudes, failures = _targets(market, direction, rows, config)
    rebalance_row = np.full(n_bars, -1, dtype=np.int64)
    rebalance_row[rows] = np.arange(rows.shape[0])
    costs = config.costs
    pips = np.array([instruments[s].pip_size for s in symbols])
    contract = np.array([instruments[s].contract_size for s in symbols])
    if costs.swap_long_pips or costs.swap_short_pips:
        nights = _nights(market.ts_us, costs.rollover_hour)
    else:
        nights = np.zeros(n_bars, dtype=np.int64)
    equity = np.zeros(n_bars)
    cash = np.zeros(n_bars)
    units = np.zeros((n_bars, n))
    weights = np.zeros((n_bars, n))
    pnl = np.zeros((n_bars, n))
    paid = np.zeros(n_bars)
    turnover = np.zeros(n_bars)
    n_trades = np.zeros(n, dtype=np.int64)
    costs_by_symbol = np.zeros(n)
    _simulate(
        market.close,
        market.has_bar,
        market.fx,
        market.buy_add,
        market.sell_sub,
        costs.fees,
        costs.commission_per_lot / contract,
        costs.swap_long_pips * pips,
        costs.swap_short_pips * pips,
        nights,
        direction,
        changed,
        rebalance_row,
        targets,
        magnitudes,
        config.cash,
        config.max_gross,
        config.min_trade_weight,
        equity,
        cash,
        units,
        weights,
        pnl,
        paid,
        turnover,
        n_trades,
        costs_by_symbol,
    )
    ts = pl.Series("ts", market.ts_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    risk = _risk_frame(ts, market.returns, weights, config)
    return PortfolioResult(
        symbols=symbols,
        ts=ts,
        equity=equity,
        cash=cash,
        weights=weights,
        units=units,
        pnl=pnl,
        costs=paid,
        turnover=turnover,
        n_trades=n_trades,
        costs_by_symbol=costs_by_symbol,
        risk=risk,
        rebalance_ts=ts.gather(rows).alias("rebalance_ts"),
        correlation=_correlation(market.returns, market.has_bar),
        config=config,
        sizing_fallbacks=failures,
    )


def _risk_frame(
    ts: pl.Series, returns: Array, weights: Array, config: PortfolioConfig
) -> pl.DataFrame:
    """Gross and net exposure, ex-ante volatility and VaR/ES of the held weights per bar."""
    measured = book_risk(
        returns,
        weights,
        lookback=config.lookback,
        var_window=config.var_window,
        bars_per_year=config.bars_per_year,
        confidences=config.var_confidences,
        ewma_halflife=config.halflife,
    )
    columns: dict[str, Sequence[float] | Array | pl.Series] = {
        "ts": ts,
        "gross_exposure": np.abs(weights).sum(axis=1),
        "net_exposure": weights.sum(axis=1),
        "portfolio_vol": measured.volatility,
    }
    for k, confidence in enumerate(measured.confidences):
        label = confidence_label(confidence)
        columns[f"var_hist_{label}"] = measured.var_hist[:, k]
        columns[f"es_hist_{label}"] = measured.es_hist[:, k]
        columns[f"var_param_{label}"] = measured.var_param[:, k]
        columns[f"es_param_{label}"] = measured.es_param[:, k]
    return pl.DataFrame(columns)

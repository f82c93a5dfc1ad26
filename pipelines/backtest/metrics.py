"""Performance of a backtest: returns, risk, drawdowns and trade statistics from its equity.

Every figure is computed from the equity curve (one value per bar, in account currency, marked
at the bar) and the initial cash, which stands before the first bar. Per-bar simple returns are

    r₀ = equity₀ / initial_cash − 1,   rᵢ = equityᵢ / equityᵢ₋₁ − 1,

so the first bar's costs and moves are part of every statistic. The ratios follow empyrical's
definitions with a zero risk-free rate and a zero required return, annualized with
``bars_per_year`` (see :func:`bars_per_year`); the real-data tests check them against it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from numba import njit
from pydantic import BaseModel, ConfigDict

from core.errors import UsageError
from core.timeframes import Timeframe, parse_timeframe
from core.times import iso_z
from core.types import AssetClass

FX_DAYS_PER_YEAR = 260
"""Trading days a year on the FX calendar (five 24-hour days a week, 52 weeks)."""
EQUITY_DAYS_PER_YEAR = 252
"""Trading days a year on a stock exchange (weekdays less about nine holidays)."""
CRYPTO_DAYS_PER_YEAR = 365
"""Trading days a year of a market open around the clock."""
EQUITY_SESSION_MINUTES = 390
"""Minutes of a regular US equity session, 09:30 to 16:00 New York."""

_FX_CALENDAR_CLASSES = frozenset(
    {AssetClass.FX, AssetClass.METAL, AssetClass.INDEX, AssetClass.COMMODITY}
)


def bars_per_year(timeframe: Timeframe | str, asset_class: AssetClass | str) -> float:
    """Return how many bars of a timeframe a market prints in a year.

    - FX, and metals, indices and commodities traded on the FX calendar:
      260 days × 1440 / bar minutes (H1 → 6,240; D1 → 260);
    - equities: 252 days × ⌈390 / bar minutes⌉ bars per 6.5-hour session, a shorter last
      bar of the session counting as one bar (M1 → 98,280; H1 → 7 × 252 = 1,764;
      H4 → 2 × 252 = 504; D1 → 252);
    - crypto: 365 days × 1440 / bar minutes (D1 → 365);
    - W1 → 52 and MN1 → 12 for every asset class.

    Parameters
    ----------
    timeframe
        A timeframe or a name for one (``H1``, ``60``, ``1h``).
    asset_class
        An asset class or its value (``fx``, ``equity``, ...).

    Returns
    -------
    float
        The annualization factor of per-bar statistics.

    Raises
    ------
    UsageError
        If the timeframe or the asset class is unknown.
    """
    tf = parse_timeframe(timeframe)
    kind = _asset_class(asset_class)
    if tf is Timeframe.W1:
        return 52.0
    if tf is Timeframe.MN1:
        return 12.0
    if kind is AssetClass.EQUITY:
        return float(EQUITY_DAYS_PER_YEAR * math.ceil(EQUITY_SESSION_MINUTES / tf.minutes))
    days = CRYPTO_DAYS_PER_YEAR if kind is AssetClass.CRYPTO else FX_DAYS_PER_YEAR
    return days * 1440 / tf.minutes


def _asset_class(value: AssetClass | str) -> AssetClass:
    if isinstance(value, AssetClass):
        return value
    try:
        return AssetClass(str(value).strip().lower())
    except ValueError:
        names = ", ".join(a.value for a in AssetClass)
        msg = f"unknown asset class {value!r}: use one of {names}"
        raise UsageError(msg) from None


@dataclass(frozen=True)
class Metrics:
    """Performance figures of one backtest. Returns and ratios are fractions.

    Attributes
    ----------
    start, end
        Timestamps (UTC) of the first and the last bar; ``None`` without bars.
    n_bars
        Number of bars of the equity curve.
    bars_per_year
        The annualization factor used.
    initial_cash
        Account value before the first bar.
    final_equity
        Account value at the last bar.
    total_return
        final_equity / initial_cash − 1.
    annualized_return
        Compound annual growth from bars: (1 + total_return)^(bars_per_year / n_bars) − 1;
        −1 when the account is wiped out (final equity ≤ 0).
    volatility
        Annualized standard deviation of per-bar returns: stdev(r, ddof=1) × √bars_per_year.
    sharpe
        mean(r) / stdev(r, ddof=1) × √bars_per_year, risk-free rate 0; NaN when the returns
        do not vary or there are fewer than two bars.
    sortino
        mean(r) / DD × √bars_per_year with the downside deviation DD = √mean(min(r, 0)²) over
        all bars (required return 0); +inf with no losing bar and a positive mean, NaN with
        fewer than two bars.
    calmar
        annualized_return / |max_drawdown|; NaN without a drawdown or when infinite.
    max_drawdown
        Worst fall from a running peak, min(equity / running max − 1), a negative fraction (0
        when equity never falls); the initial cash is the first peak.
    max_drawdown_duration
        Longest number of bars from a peak until equity regains it, or until the last bar if it
        never does (the initial cash counts as a peak one bar before the first).
    max_drawdown_duration_ns
        The same measured in time, in nanoseconds between the peak's and the recovery's bar
        timestamps (the initial cash is dated at the first bar).
    hit_rate
        Winning closed trades / closed trades (pnl > 0 wins); NaN without closed trades.
    profit_factor
        Gross profit / gross loss of closed trades; +inf with profits and no losses, NaN
        without closed trades or when every closed trade made exactly nothing.
    expectancy
        Mean pnl of a closed trade, in account currency; NaN without closed trades.
    exposure
        Fraction of bars holding a non-zero position; NaN when positions are not given.
    turnover
        Traded notional per year in units of mean equity:
        Σ|traded notionalᵢ| / mean(equity) × bars_per_year / n_bars; NaN when not given.
    n_trades
        Every trade, including one still open at the last bar.
    """

    start: datetime | None
    end: datetime | None
    n_bars: int
    bars_per_year: float
    initial_cash: float
    final_equity: float
    total_return: float
    annualized_return: float
    volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_duration: int
    max_drawdown_duration_ns: int
    hit_rate: float
    profit_factor: float
    expectancy: float
    exposure: float
    turnover: float
    n_trades: int

    @property
    def max_drawdown_timedelta(self) -> timedelta:
        """Return the longest drawdown duration as a time span (microsecond resolution)."""
        return timedelta(microseconds=self.max_drawdown_duration_ns // 1000)

    def to_dict(self) -> dict[str, float | int | str | None]:
        """Return the figures as JSON-safe values.

        NaN and infinite floats become ``None``; timestamps become ISO-8601 UTC strings ending
        in ``Z``.
        """
        out: dict[str, float | int | str | None] = {}
        for name, value in asdict(self).items():
            if isinstance(value, datetime):
                out[name] = iso_z(value)
            elif isinstance(value, float):
                out[name] = value if math.isfinite(value) else None
            else:
                out[name] = value
        return out

    def figures(self) -> PerformanceFigures:
        """Return the figures as a frozen model (the JSON-safe values of :meth:`to_dict`)."""
        return PerformanceFigures.model_validate(self.to_dict())


class PerformanceFigures(BaseModel):
    """The figures of :class:`Metrics` as they cross into results and JSON.

    Times are ISO-8601 UTC with ``Z``; a ratio that is NaN or infinite is None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: str | None
    end: str | None
    n_bars: int
    bars_per_year: float
    initial_cash: float
    final_equity: float | None
    total_return: float | None
    annualized_return: float | None
    volatility: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    max_drawdown: float | None
    max_drawdown_duration: int
    max_drawdown_duration_ns: int
    hit_rate: float | None
    profit_factor: float | None
    expectancy: float | None
    exposure: float | None
    turnover: float | None
    n_trades: int


def performance(
    equity: np.ndarray,
    *,
    ts: np.ndarray,
    bars_per_year: float,
    initial_cash: float,
    trades: pl.DataFrame | None = None,
    position: np.ndarray | None = None,
    traded_notional: np.ndarray | None = None,
) -> Metrics:
    """Measure a backtest from its equity curve, its trades and its positions.

    Parameters
    ----------
    equity
        Account value at each bar, in account currency.
    ts
        Bar timestamps (``datetime64`` of any unit, or integer nanoseconds since the epoch, UTC),
        one per equity value.
    bars_per_year
        Annualization factor (see :func:`bars_per_year`).
    initial_cash
        Account value before the first bar; the base of the first bar's return.
    trades
        One row per trade with at least ``pnl`` (account currency) and ``exit_reason``
        (``"open"`` for a trade still open at the last bar: it counts in ``n_trades`` only).
    position
        Position held at each bar (any signed size); zero means flat.
    traded_notional
        Notional traded at each bar, in account currency (its sign is ignored).

    Returns
    -------
    Metrics
        The figures; see :class:`Metrics` for each definition.

    Raises
    ------
    ValueError
        If the arrays disagree in length, or ``bars_per_year`` or ``initial_cash`` is not
        positive.
    """
    values = np.asarray(equity, dtype=np.float64)
    n = int(values.shape[0])
    stamps = _as_ns(ts)
    _check_lengths(n, stamps=stamps, position=position, traded_notional=traded_notional)
    if not bars_per_year > 0:
        raise ValueError(f"bars_per_year must be positive, got {bars_per_year}")
    if not initial_cash > 0:
        raise ValueError(f"initial_cash must be positive, got {initial_cash}")

    returns = bar_returns(values, initial_cash)
    final = float(values[-1]) if n else float(initial_cash)
    total = final / initial_cash - 1.0
    annual = _annualized_return(total, n, bars_per_year)
    worst, bars_long, ns_long = _drawdown_summary(values, stamps, initial_cash)
    hit, factor, expect, count = _trade_figures(trades)
    return Metrics(
        start=_datetime(stamps[0]) if n else None,
        end=_datetime(stamps[-1]) if n else None,
        n_bars=n,
        bars_per_year=float(bars_per_year),
        initial_cash=float(initial_cash),
        final_equity=final,
        total_return=total,
        annualized_return=annual,
        volatility=_volatility(returns, bars_per_year),
        sharpe=_sharpe(returns, bars_per_year),
        sortino=_sortino(returns, bars_per_year),
        calmar=_calmar(annual, worst),
        max_drawdown=worst,
        max_drawdown_duration=bars_long,
        max_drawdown_duration_ns=ns_long,
        hit_rate=hit,
        profit_factor=factor,
        expectancy=expect,
        exposure=_exposure(position),
        turnover=_turnover(traded_notional, values, bars_per_year),
        n_trades=count,
    )


def bar_returns(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """Return per-bar simple returns: r₀ = e₀ / initial_cash − 1, rᵢ = eᵢ / eᵢ₋₁ − 1."""
    values = np.asarray(equity, dtype=np.float64)
    previous = np.empty_like(values)
    if values.size:
        previous[0] = initial_cash
        previous[1:] = values[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return values / previous - 1.0


def drawdown(equity: np.ndarray, *, initial_cash: float | None = None) -> np.ndarray:
    """Return the drawdown at each bar: equity / running max of equity − 1 (0 at a new high).

    Parameters
    ----------
    equity
        Account value at each bar.
    initial_cash
        When given, the account value before the first bar, which starts the running max (so
        a first bar below the initial cash is already in drawdown).

    Returns
    -------
    numpy.ndarray
        Non-positive fractions, one per bar.
    """
    values = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(values) if values.size else values.copy()
    if initial_cash is not None:
        peak = np.maximum(peak, initial_cash)
    with np.errstate(divide="ignore", invalid="ignore"):
        return values / peak - 1.0


def monthly_returns(ts: np.ndarray, equity: np.ndarray, initial_cash: float) -> pl.DataFrame:
    """Return each calendar month's return (UTC): last equity / previous month's last − 1.

    The first month is measured from the initial cash.

    Returns
    -------
    polars.DataFrame
        Columns ``year`` (Int32), ``month`` (Int8, 1-12) and ``return`` (Float64), in time
        order, one row per month holding at least one bar.
    """
    stamps = _as_ns(ts)
    values = np.asarray(equity, dtype=np.float64)
    _check_lengths(values.shape[0], stamps=stamps, position=None, traded_notional=None)
    frame = pl.DataFrame(
        {"ts": pl.Series(stamps, dtype=pl.Int64).cast(pl.Datetime("ns")), "equity": values}
    )
    months = (
        frame.group_by(
            pl.col("ts").dt.year().alias("year"),
            pl.col("ts").dt.month().cast(pl.Int8).alias("month"),
            maintain_order=True,
        )
        .agg(pl.col("equity").last().alias("last"))
        .with_columns(pl.col("last").shift(1, fill_value=float(initial_cash)).alias("previous"))
    )
    return months.select(
        pl.col("year").cast(pl.Int32),
        "month",
        (pl.col("last") / pl.col("previous") - 1.0).alias("return"),
    )


def _as_ns(ts: np.ndarray) -> np.ndarray:
    stamps = np.asarray(ts)
    if stamps.dtype.kind == "M":
        return stamps.astype("datetime64[ns]").astype(np.int64)
    if stamps.dtype.kind in "iu":
        return stamps.astype(np.int64)
    return np.asarray(stamps, dtype="datetime64[ns]").astype(np.int64)


def _check_lengths(
    n: int,
    *,
    stamps: np.ndarray,
    position: np.ndarray | None,
    traded_notional: np.ndarray | None,
) -> None:
    given = {"ts": stamps, "position": position, "traded_notional": traded_notional}
    for name, array in given.items():
        if array is not None and len(array) != n:
            msg = f"{name} has {len(array)} values but equity has {n}: give one per bar"
            raise ValueError(msg)


def _datetime(ns: np.int64) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(ns) // 1000)


def _annualized_return(total: float, n: int, per_year: float) -> float:
    if n == 0:
        return math.nan
    growth = 1.0 + total
    if growth <= 0:
        return -1.0
    with np.errstate(over="ignore"):
        return float(np.power(growth, per_year / n) - 1.0)


def _volatility(returns: np.ndarray, per_year: float) -> float:
    if returns.size < 2:
        return math.nan
    return float(np.std(returns, ddof=1) * math.sqrt(per_year))


def _sharpe(returns: np.ndarray, per_year: float) -> float:
    if returns.size < 2 or returns.max() == returns.min():
        return math.nan
    spread = float(np.std(returns, ddof=1))
    if not spread > 0:
        return math.nan
    return float(np.mean(returns)) / spread * math.sqrt(per_year)


def _sortino(returns: np.ndarray, per_year: float) -> float:
    if returns.size < 2:
        return math.nan
    mean = float(np.mean(returns))
    downside = math.sqrt(float(np.mean(np.square(np.minimum(returns, 0.0)))))
    if downside == 0:
        return math.inf if mean > 0 else math.nan
    return mean / downside * math.sqrt(per_year)


def _calmar(annual: float, worst: float) -> float:
    if not worst < 0:
        return math.nan
    ratio = annual / abs(worst)
    return ratio if math.isfinite(ratio) else math.nan


@njit(cache=True, nogil=True)
def _drawdown_pass(
    equity: np.ndarray, stamps: np.ndarray, initial_cash: float
) -> tuple[float, int, int]:  # pragma: no cover - compiled
    # The path starts with the initial cash, dated at the first bar. A drawdown runs from a
    # peak (a value >= every value before it) to the next peak, or to the end.
    peak = initial_cash
    worst = 0.0
    last_peak = 0
    last_time = stamps[0]
    longest_bars = 0
    longest_ns = 0
    for i in range(equity.shape[0]):
        value = equity[i]
        if value >= peak:
            peak = value
            if i + 1 - last_peak > 1:
                longest_bars = max(longest_bars, i + 1 - last_peak)
                longest_ns = max(longest_ns, stamps[i] - last_time)
            last_peak = i + 1
            last_time = stamps[i]
        else:
            worst = min(worst, value / peak - 1.0)
    end = equity.shape[0]
    if last_peak < end:
        longest_bars = max(longest_bars, end - last_peak)
        longest_ns = max(longest_ns, stamps[end - 1] - last_time)
    return worst, longest_bars, longest_ns


def _drawdown_summary(
    equity: np.ndarray, stamps: np.ndarray, initial_cash: float
) -> tuple[float, int, int]:
    """Return the worst drawdown (<= 0) and the longest one in bars and in nanoseconds."""
    if equity.size == 0:
        return 0.0, 0, 0
    worst, bars, ns = _drawdown_pass(
        np.ascontiguousarray(equity, dtype=np.float64),
        np.ascontiguousarray(stamps, dtype=np.int64),
        float(initial_cash),
    )
    return float(worst), int(bars), int(ns)


def _trade_figures(trades: pl.DataFrame | None) -> tuple[float, float, float, int]:
    if trades is None or trades.height == 0:
        return math.nan, math.nan, math.nan, 0
    closed = trades
    if "exit_reason" in trades.columns:
        closed = trades.filter((pl.col("exit_reason") != "open").fill_null(True))
    pnl = closed["pnl"].drop_nulls().cast(pl.Float64).to_numpy()
    if pnl.size == 0:
        return math.nan, math.nan, math.nan, trades.height
    gross_profit = float(pnl[pnl > 0].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    if gross_loss > 0:
        factor = gross_profit / gross_loss
    else:
        factor = math.inf if gross_profit > 0 else math.nan
    hit = float(np.count_nonzero(pnl > 0)) / pnl.size
    return hit, factor, float(pnl.mean()), trades.height


def _exposure(position: np.ndarray | None) -> float:
    if position is None:
        return math.nan
    held = np.nan_to_num(np.asarray(position, dtype=np.float64))
    if held.size == 0:
        return math.nan
    return float(np.count_nonzero(held)) / held.size


def _turnover(traded: np.ndarray | None, equity: np.ndarray, per_year: float) -> float:
    if traded is None or equity.size == 0:
        return math.nan
    mean_equity = float(np.mean(equity))
    if mean_equity == 0:
        return math.nan
    total = float(np.abs(np.asarray(traded, dtype=np.float64)).sum())
    return total / mean_equity * per_year / equity.size

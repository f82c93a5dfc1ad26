"""Triple-barrier labels: profit-take, stop-loss and vertical barrier, scanned with array ops."""

from __future__ import annotations

import numpy as np
import polars as pl

from core.errors import UsageError
from core.timeframes import Timeframe
from pipelines.labels._bars import TS_DTYPE, check_bars

UPPER = "upper"
LOWER = "lower"
VERTICAL = "vertical"


def log_return_volatility(close: pl.Expr, span: int) -> pl.Expr:
    """Return sigma_t: the exponentially weighted std of log returns ``ln(c_t / c_{t-1})``.

    The weights are ``(1 - a)^i`` on the i-th latest return with ``a = 2 / (span + 1)``
    (adjusted, bias-corrected). Sigma at t uses closes up to and including t only, so it is known
    at the end of bar t, the moment of entry. It is null until ``span`` returns exist.
    """
    log_return = (close / close.shift(1)).log()
    return log_return.ewm_std(span=span, adjust=True, bias=False, min_samples=span)


def triple_barrier_labels(
    bars: pl.DataFrame,
    sigma: pl.Series,
    *,
    pt: float,
    sl: float,
    max_holding: int,
    zero_at_vertical: bool,
    timeframe: Timeframe,
) -> pl.DataFrame:
    """Return the triple-barrier label of every bar.

    A long trade enters at ``close[t]``. The upper barrier is ``close[t] * (1 + pt * sigma[t])``,
    the lower ``close[t] * (1 - sl * sigma[t])``. Bars ``t+1 .. t+max_holding`` are scanned in
    order; bar j touches the upper barrier when ``high[j] >= upper`` and the lower when
    ``low[j] <= lower``. The first touching bar is the exit bar. When one bar touches both, the
    path inside it is unknown and the stop-loss is counted (the conservative choice).

    Exit prices: the upper barrier itself (a limit order; a gap above it is not credited);
    ``min(lower, open[j])`` for the stop (a stop order gaps through); ``close[t+max_holding]`` at
    the vertical barrier. ``log_return = ln(exit_price / close[t])``.

    ``label`` is 1 for the upper barrier, -1 for the lower, and at the vertical barrier 0 (if
    ``zero_at_vertical``) or ``sign(log_return)``. The label is known at the end of the exit bar:
    ``label_end = ts[exit] + duration``.

    A row gets null in every label column when ``sigma[t]`` is null, NaN or not positive, or when
    no barrier is touched before the data ends and bar ``t+max_holding`` does not exist. A barrier
    touched before the end of the data gives a label even if the full window would run past it:
    that label cannot change with later bars.

    Parameters
    ----------
    bars
        Bars with ``ts`` (open time, strictly increasing), ``open``, ``high``, ``low``, ``close``.
    sigma
        Volatility known at the end of each bar, as a fraction (same length as ``bars``), e.g.
        :func:`log_return_volatility`.
    pt, sl
        Barrier distances in units of sigma, both positive.
    max_holding
        Number of bars to the vertical barrier, at least 1.
    zero_at_vertical
        Label vertical-barrier exits 0 instead of by the sign of their return.
    timeframe
        The bars' timeframe; its duration turns the open time of the exit bar into its end.

    Returns
    -------
    pl.DataFrame
        ``ts``, ``label`` (Int8), ``log_return`` (Float64), ``barrier`` (String: ``upper``,
        ``lower`` or ``vertical``), ``label_end`` (Datetime UTC).

    Raises
    ------
    UsageError
        If a parameter is out of range, ``sigma`` has the wrong length, or the bars are unsorted
        or have null or non-positive prices.
    """
    if not (pt > 0.0 and sl > 0.0 and max_holding >= 1):
        msg = f"pt {pt}, sl {sl}, max_holding {max_holding}: need pt > 0, sl > 0, max_holding >= 1"
        raise UsageError(msg)
    if sigma.len() != bars.height:
        msg = f"sigma has {sigma.len()} values for {bars.height} bars: pass one per bar"
        raise UsageError(msg)
    check_bars(bars, ("open", "high", "low", "close"))

    n = bars.height
    open_ = bars["open"].to_numpy().astype(np.float64, copy=False)
    high = bars["high"].to_numpy().astype(np.float64, copy=False)
    low = bars["low"].to_numpy().astype(np.float64, copy=False)
    close = bars["close"].to_numpy().astype(np.float64, copy=False)
    vol = sigma.cast(pl.Float64).fill_null(np.nan).to_numpy()
    with np.errstate(invalid="ignore"):
        active = np.isfinite(vol) & (vol > 0.0)
    upper = close * (1.0 + pt * vol)
    lower = close * (1.0 - sl * vol)

    exit_at = np.full(n, -1, dtype=np.int64)
    exit_price = np.full(n, np.nan)
    side = np.zeros(n, dtype=np.int8)  # 1 upper, -1 lower, 0 vertical or none
    rows = np.arange(n)
    for k in range(1, min(max_holding, n - 1) + 1):
        m = n - k  # rows 0 .. m-1 have a bar k ahead
        waiting = active[:m] & (exit_at[:m] < 0)
        stop = waiting & (low[k:] <= lower[:m])
        take = waiting & ~stop & (high[k:] >= upper[:m])
        hit_stop = rows[:m][stop]
        hit_take = rows[:m][take]
        exit_at[hit_stop] = hit_stop + k
        exit_price[hit_stop] = np.minimum(lower[hit_stop], open_[hit_stop + k])
        side[hit_stop] = -1
        exit_at[hit_take] = hit_take + k
        exit_price[hit_take] = upper[hit_take]
        side[hit_take] = 1

    vertical = active & (exit_at < 0) & (rows + max_holding < n)
    hit_vertical = rows[vertical]
    exit_at[hit_vertical] = hit_vertical + max_holding
    exit_price[hit_vertical] = close[hit_vertical + max_holding]

    done = exit_at >= 0
    log_return = np.full(n, np.nan)
    log_return[done] = np.log(exit_price[done] / close[done])
    label = side.copy()
    if not zero_at_vertical:
        label[vertical] = np.sign(log_return[vertical]).astype(np.int8)
    barrier = np.where(side == 1, UPPER, np.where(side == -1, LOWER, VERTICAL))

    ts = bars["ts"]
    exit_ts = ts.gather(np.where(done, exit_at, 0)) if n else ts
    columns = {
        "label": pl.Series(label, dtype=pl.Int8),
        "log_return": pl.Series(log_return, dtype=pl.Float64),
        "barrier": pl.Series(barrier, dtype=pl.String),
        "label_end": (exit_ts + timeframe.duration).cast(TS_DTYPE),
    }
    return pl.DataFrame({"ts": ts, "_done": done, **columns}).select(
        "ts", *(pl.when(pl.col("_done")).then(pl.col(c)).alias(c) for c in columns)
    )

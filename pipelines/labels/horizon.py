"""Fixed-horizon forward-return labels."""

from __future__ import annotations

import polars as pl

from core.errors import UsageError
from core.timeframes import Timeframe
from pipelines.labels._bars import check_bars


def horizon_labels(
    bars: pl.DataFrame, horizon: int, threshold: float, timeframe: Timeframe
) -> pl.DataFrame:
    """Return the fixed-horizon label of every bar.

    For the bar at row t, ``log_return = ln(close[t+h] / close[t])`` and
    ``label = sign(log_return)`` if ``|log_return| > threshold``, else 0.
    The label is known at the end of bar t+h: ``label_end = ts[t+h] + duration``.
    Rows with ``t + h`` past the last bar get null in every label column.

    Parameters
    ----------
    bars
        Bars with ``ts`` (open time, strictly increasing) and ``close``.
    horizon
        ``h``, the number of bars ahead, at least 1.
    threshold
        Dead band on ``|log_return|``, at least 0.
    timeframe
        The bars' timeframe; its duration turns the open time of bar t+h into its end.

    Returns
    -------
    pl.DataFrame
        ``ts``, ``label`` (Int8), ``log_return`` (Float64), ``label_end`` (Datetime UTC).

    Raises
    ------
    UsageError
        If ``horizon < 1``, ``threshold < 0``, or the bars are unsorted or have null or
        non-positive closes.
    """
    if horizon < 1 or not threshold >= 0.0:
        msg = f"horizon {horizon} / threshold {threshold}: need horizon >= 1 and threshold >= 0"
        raise UsageError(msg)
    check_bars(bars, ("close",))
    log_return = (pl.col("close").shift(-horizon) / pl.col("close")).log()
    label = (
        pl.when(log_return.abs() <= threshold)
        .then(pl.lit(0, pl.Int8))
        .otherwise(log_return.sign().cast(pl.Int8))
    )
    return bars.select(
        pl.col("ts"),
        label.alias("label"),
        log_return.alias("log_return"),
        (pl.col("ts").shift(-horizon) + timeframe.duration).alias("label_end"),
    )

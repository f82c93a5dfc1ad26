"""Returns family: log returns over several horizons."""

from __future__ import annotations

import polars as pl


def log_return(close: pl.Expr, horizon: int) -> pl.Expr:
    """Log return over ``h`` bars: ln(c_t / c_{t-h}).

    Warm-up: ``horizon`` bars.
    """
    return (close / close.shift(horizon)).log()

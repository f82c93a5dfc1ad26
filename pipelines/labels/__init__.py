"""Labels: what a model learns to predict, each stamped with the moment it becomes known.

Every label belongs to one bar (the row's ``ts``, the bar's open time) and describes what
happens *after* that bar closes: a position is entered at ``close[t]``, known at
``ts[t] + duration``. The outcome is made of later bars, so the label becomes known only at
the end of the bar that settles it. That moment is the ``label_end`` column::

    label_end = ts[exit] + duration,   exit > t,   hence label_end > ts[t] + duration

Two label types:

Fixed horizon (:func:`horizon_labels`)
    ``log_return = ln(close[t+h] / close[t])``; ``label = sign(log_return)``, or 0 when
    ``|log_return| <= threshold``. Exit bar ``t+h``: known at the end of bar ``t+h``.

Triple barrier (:func:`triple_barrier_labels`)
    Barriers ``close[t] * (1 + pt * sigma[t])`` and ``close[t] * (1 - sl * sigma[t])`` with
    ``sigma`` an EWM std of log returns known at the end of bar t
    (:func:`log_return_volatility`), and a vertical barrier ``max_holding`` bars ahead. The exit
    bar is the first of ``t+1 .. t+max_holding`` whose high reaches the upper barrier (label 1)
    or whose low reaches the lower one (label -1; when one bar reaches both, the stop counts),
    else bar ``t+max_holding`` (label 0, or the sign of the return). Known at the end of the exit
    bar, which may come before the vertical barrier.

Point in time: a row whose outcome is not settled by the last available bar gets null in every
label column, never a label built from part of its window. Hence labels computed on a prefix of
the bars agree with the labels on all bars wherever the prefix has them, and the prefix has
every label whose ``label_end`` is no later than the end of its last bar.

Weights (:func:`uniqueness_weights`): label i spans the bars ``t+1 .. exit``; its weight is its
average uniqueness, the mean of ``1 / c`` over those bars with ``c`` the number of labels
spanning each. Weights use all labels of the frame, including ones known later than row i, so
they belong to a training window and are not point in time.
"""

from __future__ import annotations

import polars as pl

from core.timeframes import Timeframe
from pipelines.labels._bars import check_bars
from pipelines.labels.config import HorizonLabelConfig, LabelConfig, TripleBarrierConfig
from pipelines.labels.horizon import horizon_labels
from pipelines.labels.triple_barrier import log_return_volatility, triple_barrier_labels
from pipelines.labels.weights import average_uniqueness, uniqueness_weights

__all__ = [
    "HorizonLabelConfig",
    "LabelConfig",
    "TripleBarrierConfig",
    "average_uniqueness",
    "horizon_labels",
    "log_return_volatility",
    "make_labels",
    "triple_barrier_labels",
    "uniqueness_weights",
]


def make_labels(
    bars: pl.DataFrame,
    config: HorizonLabelConfig | TripleBarrierConfig,
    timeframe: Timeframe,
    *,
    with_weight: bool = False,
) -> pl.DataFrame:
    """Return one label row per bar as ``config`` describes, with the time it becomes known.

    Parameters
    ----------
    bars
        Bars of one series sorted by ``ts`` (open time, UTC) with ``open``, ``high``, ``low``,
        ``close``.
    config
        :class:`HorizonLabelConfig` or :class:`TripleBarrierConfig`.
    timeframe
        The bars' timeframe.
    with_weight
        Add ``weight``, the average uniqueness of each label (:func:`uniqueness_weights`).

    Returns
    -------
    pl.DataFrame
        ``ts``, ``label`` (Int8, -1/0/1), ``log_return``, ``barrier`` (triple barrier only),
        ``label_end``, and ``weight`` if asked; null label columns where the label is not known
        by the end of the data.
    """
    if isinstance(config, HorizonLabelConfig):
        labels = horizon_labels(bars, config.horizon, config.threshold, timeframe)
    else:
        check_bars(bars, ("open", "high", "low", "close"))
        sigma = bars.select(log_return_volatility(pl.col("close"), config.vol_span)).to_series()
        labels = triple_barrier_labels(
            bars,
            sigma,
            pt=config.pt,
            sl=config.sl,
            max_holding=config.max_holding,
            zero_at_vertical=config.zero_at_vertical,
            timeframe=timeframe,
        )
    if with_weight:
        labels = labels.with_columns(uniqueness_weights(labels, timeframe))
    return labels

"""Features: point-in-time indicators of a bar series, as pure Polars expressions.

Each family module holds functions from column expressions to one feature expression, named
for what they return; their docstrings state the formula and the warm-up, the number of
leading bars whose value is null. The value on the row of bar t uses bars up to and including
t only, so it is known at ``ts[t] + duration``. :mod:`pipelines.features.registry` names the
default feature set and computes any set in one lazy Polars pass.

Stateful steps. Every EMA and Wilder smoothing and every window statistic (sum, mean,
standard deviation, min, max, weighted sum) is a compiled kernel of
:mod:`pipelines.features.kernels`, wrapped as a Polars expression by
:mod:`pipelines.features._common`. Smoothing is the recurrence::

    y_0 = x_0 (the first non-null x),   y_t = y_{t-1} + α·(x_t - y_{t-1})

(EMA α = 2/(n+1), Wilder α = 1/n), null for the first ``n - 1`` outputs from there. Wilder
seeded his averages with an n-bar mean; here the seed is the first value. Window sums slide
with Kahan compensation; see the kernels for the standard deviation.

Bar by bar. :class:`pipelines.features.online.OnlineFeatures` builds the same expressions
with their kernel states carried from one bar to the next, so replaying bars one at a time
gives the batch values bit for bit. Restarting from the last bars only approximates them
(``FeatureSpec.tolerance`` after ``lookback`` bars).
:class:`pipelines.features.perbar.BarFeatures` gives the same values at a fraction of the
cost for the live loop: it replays the batch operations per bar in plain Python floats.

Divisions are true divisions: constants multiply (``x * (1/k)``), and Polars' sortedness
flags, which turn a division by a flagged column that looks constant into a multiplication
by its reciprocal, are cleared before computing (``without_sorted_flags``). Batch
computation runs on Polars' in-memory engine, which hands each step the whole column.

Ratios whose denominator can be zero on flat data take a stated value there (RSI 50,
stochastic 50, close position 0.5, %b 0.5, z-scores 0), so no NaN or infinity appears after
the warm-up on clean bars (positive prices, low <= open, close <= high).
"""

from __future__ import annotations

from pipelines.features.online import OnlineFeatures
from pipelines.features.perbar import BarFeatures
from pipelines.features.registry import (
    BUILDERS,
    Family,
    FeatureSpec,
    applicable_specs,
    compute_features,
    default_feature_set,
    feature_expr,
)

__all__ = [
    "BUILDERS",
    "BarFeatures",
    "Family",
    "FeatureSpec",
    "OnlineFeatures",
    "applicable_specs",
    "compute_features",
    "default_feature_set",
    "feature_expr",
]

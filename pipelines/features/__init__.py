"""Features: point-in-time indicators of a bar series, as pure Polars expressions.

Each family module holds functions from column expressions to one feature expression, named
for what they return; their docstrings state the formula and the warm-up, the number of
leading bars whose value is null. The value on the row of bar t uses bars up to and including
t only, so it is known at ``ts[t] + duration``. :mod:`pipelines.features.registry` names the
default feature set and computes any set in one lazy Polars pass.

Smoothing. Every EMA and every Wilder smoothing is ``ewm_mean(alpha=α, adjust=False)``
(EMA α = 2/(n+1), Wilder α = 1/n), which Polars computes as the recurrence::

    y_0 = x_0 (the first non-null x),   y_t = y_{t-1} + α·(x_t - y_{t-1})

and nulls the first ``n - 1`` outputs from there (``min_samples=n``). A bar-by-bar path that
keeps ``y_{t-1}`` and applies the same recurrence reproduces the batch value; one that
restarts from the last bars only approximates it (``FeatureSpec.recursive``, ``tolerance``,
``lookback``). Wilder seeded his averages with an n-bar mean; here the seed is the first value.

Windows use ``rolling_*`` expressions, never cumulative sums over the whole history.
Rolling means slide by adding and subtracting, so the same window reached from a longer history
may differ in the last bits (a few 1e-16 relative); ``FeatureSpec.tolerance`` allows for it.

Constants multiply, never divide (``x * (1/k)``, not ``x / k``): Polars evaluates ``x / k``
as ``x * (1/k)`` on columns longer than one row but as a true division on a one-row frame, so
the same bar could get values one ulp apart depending on how many bars follow it.

Batch computation runs on Polars' in-memory engine: the streaming engine (the default of
``collect()``) splits a column into morsels, and its rolling windows then differ in the last
bits with the length of the frame, which breaks point-in-time equality.

Ratios whose denominator can be zero on flat data take a stated value there (RSI 50,
stochastic 50, close position 0.5, %b 0.5, z-scores 0), so no NaN or infinity appears after
the warm-up on clean bars (positive prices, low <= open, close <= high).
"""

from __future__ import annotations

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
    "Family",
    "FeatureSpec",
    "applicable_specs",
    "compute_features",
    "default_feature_set",
    "feature_expr",
]

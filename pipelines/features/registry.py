"""The feature registry: specs, the default feature set and the batch computation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import polars as pl

from core.errors import UsageError
from core.types import VolumeKind
from pipelines.features import (
    activity,
    calendar,
    kbar,
    mean_reversion,
    momentum,
    returns,
    trend,
    volatility,
)

# Absolute tolerance of a recomputation from the last ``lookback`` bars, for windowed
# features: rolling means add and subtract values as the window slides, so the same window
# reached from a longer history may differ in the last bits.
WINDOW_TOLERANCE = 1e-9
# Same for recursive features, whose lookback adds SETTLE_FACTOR e-foldings of their memory.
RECURSIVE_TOLERANCE = 1e-6
SETTLE_FACTOR = 23.0  # e^-23 ≈ 1e-10: leaves room for scale (prices, 1/ATR, 100 for RSI)

VOLUME_KINDS_WITH_FEATURES = frozenset({VolumeKind.TICK, VolumeKind.REAL})
OHLC = ("open", "high", "low", "close")


class Family(StrEnum):
    """Feature families; ``spread`` and ``volume`` apply only to series that carry them."""

    RETURNS = "returns"
    VOLATILITY = "volatility"
    MOMENTUM = "momentum"
    TREND = "trend"
    MEAN_REVERSION = "mean_reversion"
    KBAR = "kbar"
    CALENDAR = "calendar"
    SPREAD = "spread"
    VOLUME = "volume"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: which builder with which parameters, and how much history it needs.

    Attributes
    ----------
    name
        Column name in the output.
    family
        The feature's :class:`Family`.
    kind
        Key of the builder in :data:`BUILDERS`.
    params
        The builder's parameters as ``(name, value)`` pairs.
    warmup
        Number of leading bars whose value is null.
    recursive
        Built on EMA / Wilder smoothing: its value depends on all earlier bars, so a
        recomputation from the last ``lookback`` bars only approximates it.
    tolerance
        Largest absolute difference allowed between the value at the last bar computed
        from the last ``lookback`` bars and the value computed from all history.
    lookback
        Bars an incremental path recomputes to reach ``tolerance``: ``warmup + 1`` for
        windowed features; for recursive ones plus the bars for the memory to decay.
    lower, upper
        Documented range of the values after the warm-up (``None``: unbounded on that side).
    """

    name: str
    family: Family
    kind: str
    params: tuple[tuple[str, float], ...]
    warmup: int
    recursive: bool
    tolerance: float
    lookback: int
    lower: float | None = None
    upper: float | None = None

    @property
    def parameters(self) -> dict[str, float]:
        """Return the parameters as a dictionary."""
        return dict(self.params)


def _i(p: Mapping[str, float], key: str) -> int:
    return int(p[key])


_C, _O, _H, _L = pl.col("close"), pl.col("open"), pl.col("high"), pl.col("low")
_TS, _SPREAD, _VOLUME = pl.col("ts"), pl.col("spread"), pl.col("volume")

BUILDERS: dict[str, Callable[[Mapping[str, float]], pl.Expr]] = {
    "log_return": lambda p: returns.log_return(_C, _i(p, "horizon")),
    "realized_vol": lambda p: volatility.realized_vol(_C, _i(p, "window")),
    "parkinson_vol": lambda p: volatility.parkinson_vol(_H, _L, _i(p, "window")),
    "garman_klass_vol": lambda p: volatility.garman_klass_vol(_O, _H, _L, _C, _i(p, "window")),
    "atr_rel": lambda p: volatility.atr(_H, _L, _C, _i(p, "n")) / _C,
    "rsi": lambda p: momentum.rsi(_C, _i(p, "n")),
    "macd_line_rel": lambda p: momentum.macd_line(_C, _i(p, "fast"), _i(p, "slow")) / _C,
    "macd_signal_rel": lambda p: (
        momentum.macd_signal(_C, _i(p, "fast"), _i(p, "slow"), _i(p, "signal")) / _C
    ),
    "macd_histogram_rel": lambda p: (
        momentum.macd_histogram(_C, _i(p, "fast"), _i(p, "slow"), _i(p, "signal")) / _C
    ),
    "rate_of_change": lambda p: momentum.rate_of_change(_C, _i(p, "n")),
    "stochastic_k": lambda p: momentum.stochastic_k(_H, _L, _C, _i(p, "n")),
    "stochastic_d": lambda p: momentum.stochastic_d(_H, _L, _C, _i(p, "n"), _i(p, "d")),
    "close_to_sma": lambda p: trend.close_to_sma(_C, _i(p, "n")),
    "close_to_ema": lambda p: trend.close_to_ema(_C, _i(p, "n")),
    "close_to_sma_atr": lambda p: trend.close_to_sma_atr(_H, _L, _C, _i(p, "n"), _i(p, "atr_n")),
    "close_to_ema_atr": lambda p: trend.close_to_ema_atr(_H, _L, _C, _i(p, "n"), _i(p, "atr_n")),
    "plus_di": lambda p: trend.plus_di(_H, _L, _C, _i(p, "n")),
    "minus_di": lambda p: trend.minus_di(_H, _L, _C, _i(p, "n")),
    "adx": lambda p: trend.adx(_H, _L, _C, _i(p, "n")),
    "log_close_slope": lambda p: trend.log_close_slope(_C, _i(p, "window")),
    "close_zscore": lambda p: mean_reversion.close_zscore(_C, _i(p, "window")),
    "bollinger_pct_b": lambda p: mean_reversion.bollinger_pct_b(_C, _i(p, "window"), p["k"]),
    "kbar_body": lambda p: kbar.kbar_body(_O, _C, _i(p, "lag")),
    "kbar_upper_shadow": lambda p: kbar.kbar_upper_shadow(_O, _H, _C, _i(p, "lag")),
    "kbar_lower_shadow": lambda p: kbar.kbar_lower_shadow(_O, _L, _C, _i(p, "lag")),
    "kbar_close_position": lambda p: kbar.kbar_close_position(_H, _L, _C, _i(p, "lag")),
    "hour_sin": lambda p: calendar.hour_sin(_TS),
    "hour_cos": lambda p: calendar.hour_cos(_TS),
    "weekday_sin": lambda p: calendar.weekday_sin(_TS),
    "weekday_cos": lambda p: calendar.weekday_cos(_TS),
    "session_asia": lambda p: calendar.in_session(_TS, "asia"),
    "session_london": lambda p: calendar.in_session(_TS, "london"),
    "session_new_york": lambda p: calendar.in_session(_TS, "new_york"),
    "relative_spread": lambda p: activity.relative_spread(_SPREAD, _C),
    "relative_spread_mean": lambda p: activity.relative_spread_mean(_SPREAD, _C, _i(p, "window")),
    "volume_zscore": lambda p: activity.volume_zscore(_VOLUME, _i(p, "window")),
    "volume_ratio": lambda p: activity.volume_ratio(_VOLUME, _i(p, "window")),
}


# Documented value ranges by kind, checked on every stored feature set.
_PERCENT = (0.0, 100.0)
_UNIT = (-1.0, 1.0)
_FLAG = (0.0, 1.0)
_NON_NEGATIVE = (0.0, None)
RANGES: dict[str, tuple[float | None, float | None]] = {
    "realized_vol": _NON_NEGATIVE,
    "parkinson_vol": _NON_NEGATIVE,
    "garman_klass_vol": _NON_NEGATIVE,
    "atr_rel": _NON_NEGATIVE,
    "rsi": _PERCENT,
    "stochastic_k": _PERCENT,
    "stochastic_d": _PERCENT,
    "plus_di": _PERCENT,
    "minus_di": _PERCENT,
    "adx": _PERCENT,
    "kbar_upper_shadow": _NON_NEGATIVE,
    "kbar_lower_shadow": _NON_NEGATIVE,
    "kbar_close_position": _FLAG,
    "hour_sin": _UNIT,
    "hour_cos": _UNIT,
    "weekday_sin": _UNIT,
    "weekday_cos": _UNIT,
    "session_asia": _FLAG,
    "session_london": _FLAG,
    "session_new_york": _FLAG,
    "relative_spread": _NON_NEGATIVE,
    "relative_spread_mean": _NON_NEGATIVE,
    "volume_ratio": _NON_NEGATIVE,
}


def windowed_spec(
    name: str, family: Family, kind: str, warmup: int, **params: float
) -> FeatureSpec:
    """Return the spec of a feature that depends only on its last ``warmup + 1`` bars."""
    return _spec(name, family, kind, warmup, params, recursive=False, extra_lookback=0)


def recursive_spec(
    name: str, family: Family, kind: str, warmup: int, memory: float, **params: float
) -> FeatureSpec:
    """Return the spec of an EMA / Wilder feature whose slowest smoothing has ``memory`` bars.

    ``memory`` is ``-1 / ln(1 - α)``, the bars for an error to shrink by e; the lookback adds
    ``SETTLE_FACTOR`` of them to the warm-up.
    """
    extra = math.ceil(SETTLE_FACTOR * memory)
    return _spec(name, family, kind, warmup, params, recursive=True, extra_lookback=extra)


def _spec(
    name: str,
    family: Family,
    kind: str,
    warmup: int,
    params: dict[str, float],
    *,
    recursive: bool,
    extra_lookback: int,
) -> FeatureSpec:
    return FeatureSpec(
        name=name,
        family=family,
        kind=kind,
        params=tuple(params.items()),
        warmup=warmup,
        recursive=recursive,
        tolerance=RECURSIVE_TOLERANCE if recursive else WINDOW_TOLERANCE,
        lookback=warmup + 1 + extra_lookback,
        lower=RANGES.get(kind, (None, None))[0],
        upper=RANGES.get(kind, (None, None))[1],
    )


def memory_bars(alpha: float) -> float:
    """Bars for an EMA with smoothing ``alpha`` to forget a factor e: -1 / ln(1 - α)."""
    return -1.0 / math.log(1.0 - alpha)


def _ema_memory(span: int) -> float:
    return memory_bars(2.0 / (span + 1))


def _wilder_memory(n: int) -> float:
    return memory_bars(1.0 / n)


def default_feature_set() -> list[FeatureSpec]:
    """Return the default feature set: every family, spread and volume features included."""
    f = Family
    specs: list[FeatureSpec] = []
    specs += [
        windowed_spec(f"log_return_{h}", f.RETURNS, "log_return", h, horizon=h)
        for h in (1, 2, 4, 8, 16, 32, 64)
    ]
    specs += [
        windowed_spec(f"realized_vol_{n}", f.VOLATILITY, "realized_vol", n, window=n)
        for n in (10, 20, 60)
    ]
    specs += [
        windowed_spec(f"parkinson_vol_{n}", f.VOLATILITY, "parkinson_vol", n - 1, window=n)
        for n in (10, 20)
    ]
    specs += [
        windowed_spec(f"garman_klass_vol_{n}", f.VOLATILITY, "garman_klass_vol", n - 1, window=n)
        for n in (10, 20)
    ]
    specs += [
        recursive_spec(f"atr_rel_{n}", f.VOLATILITY, "atr_rel", n - 1, _wilder_memory(n), n=n)
        for n in (14, 50)
    ]
    specs += [
        recursive_spec(f"rsi_{n}", f.MOMENTUM, "rsi", n, _wilder_memory(n), n=n)
        for n in (7, 14, 28)
    ]
    fast, slow, sig = 12, 26, 9
    macd_memory = _ema_memory(slow) + _ema_memory(sig)
    macd = {"fast": fast, "slow": slow}
    specs += [
        recursive_spec(
            "macd_line_rel", f.MOMENTUM, "macd_line_rel", slow - 1, _ema_memory(slow), **macd
        ),
        recursive_spec(
            "macd_signal_rel",
            f.MOMENTUM,
            "macd_signal_rel",
            slow + sig - 2,
            macd_memory,
            **macd,
            signal=sig,
        ),
        recursive_spec(
            "macd_histogram_rel",
            f.MOMENTUM,
            "macd_histogram_rel",
            slow + sig - 2,
            macd_memory,
            **macd,
            signal=sig,
        ),
    ]
    specs += [
        windowed_spec(f"rate_of_change_{n}", f.MOMENTUM, "rate_of_change", n, n=n)
        for n in (5, 10, 20)
    ]
    for n, d in ((5, 3), (14, 3)):
        specs.append(windowed_spec(f"stochastic_k_{n}", f.MOMENTUM, "stochastic_k", n - 1, n=n))
        specs.append(
            windowed_spec(f"stochastic_d_{n}_{d}", f.MOMENTUM, "stochastic_d", n + d - 2, n=n, d=d)
        )
    specs += [
        windowed_spec(f"close_to_sma_{n}", f.TREND, "close_to_sma", n - 1, n=n)
        for n in (20, 50, 200)
    ]
    specs += [
        recursive_spec(f"close_to_ema_{n}", f.TREND, "close_to_ema", n - 1, _ema_memory(n), n=n)
        for n in (20, 50)
    ]
    atr_n = 14
    specs += [
        recursive_spec(
            f"close_to_sma_{n}_atr",
            f.TREND,
            "close_to_sma_atr",
            max(n, atr_n) - 1,
            _wilder_memory(atr_n),
            n=n,
            atr_n=atr_n,
        )
        for n in (20, 50)
    ]
    specs.append(
        recursive_spec(
            "close_to_ema_20_atr",
            f.TREND,
            "close_to_ema_atr",
            max(20, atr_n) - 1,
            max(_ema_memory(20), _wilder_memory(atr_n)),
            n=20,
            atr_n=atr_n,
        )
    )
    n = 14
    specs += [
        recursive_spec(f"plus_di_{n}", f.TREND, "plus_di", n, _wilder_memory(n), n=n),
        recursive_spec(f"minus_di_{n}", f.TREND, "minus_di", n, _wilder_memory(n), n=n),
        recursive_spec(f"adx_{n}", f.TREND, "adx", 2 * n - 1, 2 * _wilder_memory(n), n=n),
    ]
    specs += [
        windowed_spec(f"log_close_slope_{n}", f.TREND, "log_close_slope", n - 1, window=n)
        for n in (10, 30)
    ]
    specs += [
        windowed_spec(f"close_zscore_{n}", f.MEAN_REVERSION, "close_zscore", n - 1, window=n)
        for n in (20, 50)
    ]
    specs.append(
        windowed_spec(
            "bollinger_pct_b_20", f.MEAN_REVERSION, "bollinger_pct_b", 19, window=20, k=2.0
        )
    )
    for lag in (0, 1, 2):
        for part in ("body", "upper_shadow", "lower_shadow", "close_position"):
            specs.append(windowed_spec(f"kbar_{part}_{lag}", f.KBAR, f"kbar_{part}", lag, lag=lag))
    for kind in (
        "hour_sin", "hour_cos", "weekday_sin", "weekday_cos",
        "session_asia", "session_london", "session_new_york",
    ):  # fmt: skip
        specs.append(windowed_spec(kind, f.CALENDAR, kind, 0))
    specs.append(windowed_spec("relative_spread", f.SPREAD, "relative_spread", 0))
    specs += [
        windowed_spec(
            f"relative_spread_mean_{n}", f.SPREAD, "relative_spread_mean", n - 1, window=n
        )
        for n in (20, 60)
    ]
    for n in (20, 60):
        specs.append(
            windowed_spec(f"volume_zscore_{n}", f.VOLUME, "volume_zscore", n - 1, window=n)
        )
        specs.append(windowed_spec(f"volume_ratio_{n}", f.VOLUME, "volume_ratio", n - 1, window=n))
    return specs


def feature_expr(spec: FeatureSpec) -> pl.Expr:
    """Return the Polars expression of ``spec``, named ``spec.name``."""
    try:
        builder = BUILDERS[spec.kind]
    except KeyError:
        msg = f"feature {spec.name!r}: unknown kind {spec.kind!r}; use one of {sorted(BUILDERS)}"
        raise UsageError(msg) from None
    return builder(spec.parameters).alias(spec.name)


def applicable_specs(
    specs: Iterable[FeatureSpec], *, has_spread: bool, volume_kind: VolumeKind
) -> list[FeatureSpec]:
    """Return ``specs`` without spread features (no spread) and volume features (no tick / real volume)."""
    keep_volume = volume_kind in VOLUME_KINDS_WITH_FEATURES
    return [
        s
        for s in specs
        if (s.family is not Family.SPREAD or has_spread)
        and (s.family is not Family.VOLUME or keep_volume)
    ]


def checked_specs(
    specs: Iterable[FeatureSpec],
    columns: Iterable[str],
    *,
    has_spread: bool,
    volume_kind: VolumeKind,
) -> list[FeatureSpec]:
    """Return the applicable ``specs`` after checking their names and the columns they need.

    Raises
    ------
    UsageError
        If two specs share a name or ``columns`` lack one the features need.
    """
    chosen = applicable_specs(specs, has_spread=has_spread, volume_kind=volume_kind)
    names = [s.name for s in chosen]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        msg = f"feature set names {duplicates} more than once: give each feature its own name"
        raise UsageError(msg)
    needed = ["ts", *OHLC]
    if any(s.family is Family.SPREAD for s in chosen):
        needed.append("spread")
    if any(s.family is Family.VOLUME for s in chosen):
        needed.append("volume")
    present = set(columns)
    missing = [c for c in needed if c not in present]
    if missing:
        msg = f"bars lack column(s) {', '.join(missing)} needed by the feature set"
        raise UsageError(msg)
    return chosen


def without_sorted_flags(bars: pl.DataFrame) -> pl.DataFrame:
    """Return ``bars`` with the price and volume columns stripped of Polars' sortedness flags.

    Polars divides by a column flagged sorted whose first and last values are equal (a flat
    stretch, a single bar) as by a constant, multiplying by its reciprocal, which may round
    differently from a true division. The flags depend on how a frame was assembled, not on
    its values, so they are cleared to make every division a true one.
    """
    flagged = [
        c
        for c in bars.columns
        if c != "ts" and bars[c].dtype.is_numeric() and any(bars[c].flags.values())
    ]
    if not flagged:
        return bars
    return bars.with_columns(pl.Series(c, bars[c].to_arrow()) for c in flagged)


def compute_features(
    bars: pl.DataFrame,
    specs: Iterable[FeatureSpec],
    *,
    has_spread: bool,
    volume_kind: VolumeKind,
) -> pl.DataFrame:
    """Return ``ts`` and one Float64 column per applicable feature, in one lazy pass.

    Parameters
    ----------
    bars
        Bars of one series sorted by ``ts`` (open time, UTC): ``open``, ``high``, ``low``,
        ``close``, ``volume``, and ``spread`` when ``has_spread``.
    specs
        The features to compute, e.g. :func:`default_feature_set`.
    has_spread
        The series carries a spread; without it, spread features are skipped.
    volume_kind
        The series' volume kind; volume features are computed for ``tick`` and ``real`` only.

    Returns
    -------
    pl.DataFrame
        ``ts`` then the features in the order of ``specs``.

    Raises
    ------
    UsageError
        If a column the features need is missing, two specs share a name, or a kind is unknown.
    """
    chosen = checked_specs(specs, bars.columns, has_spread=has_spread, volume_kind=volume_kind)
    exprs = [feature_expr(s).cast(pl.Float64) for s in chosen]
    # The in-memory engine: the streaming engine cuts columns into morsels, and its rolling
    # windows then differ in the last bits depending on where the frame ends.
    plain = without_sorted_flags(bars)
    return plain.lazy().select(pl.col("ts"), *exprs).collect(engine="in-memory")

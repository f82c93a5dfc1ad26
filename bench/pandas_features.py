"""The default feature set written a second time, in vectorized pandas: the reference.

The feature benchmark (``bench/features.py``) times this against
``pipelines.features.compute_features`` and checks that both give the same values. Every
feature keeps the name, formula, warm-up and applicability of its spec in
``pipelines.features.registry.default_feature_set()``; the formulas are written out again here
from the docstrings of the family modules, with pandas ``rolling``, ``ewm``, ``shift`` and
arithmetic and numpy ufuncs. No function is applied row by row; the only Python loops run
over the offsets of a window (at most its length), each step a whole-column operation.

Missing values are NaN (pandas has no other float null). The semantics followed:

- a rolling sum, mean, std, min or max over ``n`` bars at row t uses rows t-n+1..t and is NaN
  unless all ``n`` values are finite; std is the sample std (ddof 1), exactly 0 on a window
  whose max equals its min;
- EMA (α = 2/(span+1)) and Wilder smoothing (α = 1/n) start at the first non-NaN value,
  y = y + α(x - y) from there, and are NaN until ``n`` (``span``) values have been seen:
  ``ewm(alpha=α, adjust=False, ignore_na=True, min_periods=n)``, NaN where the input is;
- ``ratio(num, den, when_zero)`` is ``num / den``, ``when_zero`` where ``den`` is 0, NaN where
  either is NaN.

The rolling std is computed in two passes over each window (the window mean, then the squared
deviations from it, one offset of the window at a time): pandas' own ``rolling().std()``
slides Welford sums along the whole series and drifts from the true value on a long one (on
the EURUSD M1 history by up to 9e-4 relative, and up to 1.4e-7 instead of 0 on flat windows);
``native_std=True`` uses it all the same, to time it.

Intermediate series used by several features (an ATR, an EMA, a rolling mean) are computed
once per call, as the Polars query plan does for common subexpressions.

Use: ``pandas_features(bars, has_spread=..., volume_kind=...)`` with ``bars`` a pandas frame
of ``ts`` (UTC open time), ``open``, ``high``, ``low``, ``close``, ``volume`` and ``spread``
when the series has one; it returns ``ts`` and one float64 column per applicable feature, in
the registry's order. :func:`operand_scales` gives, for the features that subtract nearly
equal terms, the size of those terms, against which the benchmark judges rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pandas as pd

# Sessions by UTC hour of the bar's open, half-open: as pipelines.features.calendar.
SESSIONS: dict[str, tuple[int, int]] = {"asia": (0, 9), "london": (7, 16), "new_york": (12, 21)}
_GK_CLOSE = 2.0 * math.log(2.0) - 1.0
_PARKINSON = 1.0 / (4.0 * math.log(2.0))
_PER_HOUR = 2.0 * math.pi / 24.0
_PER_DAY = 2.0 * math.pi / 7.0
_HOURS_PER_MINUTE = 1.0 / 60.0
VOLUME_KINDS_WITH_FEATURES = ("tick", "real")

Series = pd.Series
Make = Callable[[], Series]


def ratio(num: Series, den: Series, when_zero: float) -> Series:
    """Return ``num / den``; ``when_zero`` where ``den`` is 0; NaN where either is NaN."""
    a = num.to_numpy(dtype=np.float64)
    b = den.to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    out[(b == 0.0) & ~np.isnan(a)] = when_zero
    return pd.Series(out, index=num.index)


def _slope_weights(window: int) -> list[float]:
    mean_i = (window - 1) / 2.0
    sxx = sum((i - mean_i) ** 2 for i in range(window))
    return [(i - mean_i) / sxx for i in range(window)]


class _Bars:
    """The input columns and a cache of the intermediate series shared by several features."""

    def __init__(self, bars: pd.DataFrame, native_std: bool = False) -> None:
        self.frame = bars
        self.native_std = native_std
        self.cache: dict[Hashable, Series] = {}

    def memo(self, key: Hashable, build: Make) -> Series:
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]

    def col(self, name: str) -> Series:
        return self.memo(("col", name), lambda: self.frame[name].astype("float64"))

    @property
    def o(self) -> Series:
        return self.col("open")

    @property
    def h(self) -> Series:
        return self.col("high")

    @property
    def lo(self) -> Series:
        return self.col("low")

    @property
    def c(self) -> Series:
        return self.col("close")

    # -- windows and smoothing --------------------------------------------------------------

    def finite(self, key: Hashable, x: Make) -> Series:
        """``x`` with infinities turned into NaN: a window holding either has no value."""

        def build() -> Series:
            values = x()
            return values.where(np.isfinite(values))

        return self.memo(("finite", key), build)

    def rolling_mean(self, key: Hashable, x: Make, n: int) -> Series:
        return self.memo(
            ("mean", key, n), lambda: self.finite(key, x).rolling(n, min_periods=n).mean()
        )

    def rolling_min(self, key: Hashable, x: Make, n: int) -> Series:
        return self.memo(
            ("min", key, n), lambda: self.finite(key, x).rolling(n, min_periods=n).min()
        )

    def rolling_max(self, key: Hashable, x: Make, n: int) -> Series:
        return self.memo(
            ("max", key, n), lambda: self.finite(key, x).rolling(n, min_periods=n).max()
        )

    def rolling_std(self, key: Hashable, x: Make, n: int) -> Series:
        """Sample std (ddof 1) of the last ``n`` values, exactly 0 where max = min."""

        def two_pass() -> Series:
            values = self.finite(key, x).to_numpy()
            mean = self.rolling_mean(key, x, n).to_numpy()  # NaN until a full window
            rows = values.shape[0]
            total = np.zeros(rows)
            step = np.empty(rows)
            for j in range(n):  # the window's offsets, newest first; not a loop over rows
                # Row t gets (x[t - j] - mean[t])^2.
                part, into = step[j:], total[j:]
                np.subtract(values[: rows - j], mean[j:], out=part)
                np.multiply(part, part, out=part)
                np.add(into, part, out=into)
            std = np.sqrt(total * (1.0 / (n - 1)))
            flat = (self.rolling_max(key, x, n) == self.rolling_min(key, x, n)).to_numpy()
            std[flat] = 0.0
            return pd.Series(std, index=self.frame.index)

        def native() -> Series:
            return self.finite(key, x).rolling(n, min_periods=n).std(ddof=1)

        return self.memo(("std", key, n), native if self.native_std else two_pass)

    def smooth(self, key: Hashable, x: Make, alpha: float, n: int) -> Series:
        def build() -> Series:
            values = x()
            smoothed = values.ewm(alpha=alpha, adjust=False, ignore_na=True, min_periods=n).mean()
            out = smoothed.to_numpy(dtype=np.float64, copy=True)
            out[np.isnan(values.to_numpy(dtype=np.float64))] = np.nan
            return pd.Series(out, index=values.index)

        return self.memo(("ewm", key, alpha, n), build)

    def ema(self, key: Hashable, x: Make, span: int) -> Series:
        return self.smooth(key, x, 2.0 / (span + 1), span)

    def wilder(self, key: Hashable, x: Make, n: int) -> Series:
        return self.smooth(key, x, 1.0 / n, n)

    # -- shared building blocks -------------------------------------------------------------

    def log_return_1(self) -> Series:
        return self.memo("r1", lambda: np.log(self.c / self.c.shift(1)))

    def prev_close(self) -> Series:
        return self.memo("prev_close", lambda: self.c.shift(1))

    def true_range(self) -> Series:
        def build() -> Series:
            prev = self.prev_close()
            # fmax skips NaN: h - l on the first bar, which has no previous close.
            return np.fmax(np.fmax(self.h - self.lo, (self.h - prev).abs()), (self.lo - prev).abs())

        return self.memo("tr", build)

    def atr(self, n: int) -> Series:
        return self.wilder("tr", self.true_range, n)

    def close_sma(self, n: int) -> Series:
        return self.rolling_mean("close", lambda: self.c, n)

    def close_std(self, n: int) -> Series:
        return self.rolling_std("close", lambda: self.c, n)

    def close_ema(self, n: int) -> Series:
        return self.ema("close", lambda: self.c, n)

    def log_range_squared(self) -> Series:
        return self.memo("log_hl2", lambda: np.log(self.h / self.lo) ** 2)

    def garman_klass_term(self) -> Series:
        return self.memo(
            "gk_term",
            lambda: 0.5 * self.log_range_squared() - _GK_CLOSE * np.log(self.c / self.o) ** 2,
        )

    def macd_line(self, fast: int, slow: int) -> Series:
        return self.memo(("macd", fast, slow), lambda: self.close_ema(fast) - self.close_ema(slow))

    def macd_signal(self, fast: int, slow: int, signal: int) -> Series:
        return self.ema(("macd", fast, slow), lambda: self.macd_line(fast, slow), signal)

    def stochastic_k(self, n: int) -> Series:
        def build() -> Series:
            lowest = self.rolling_min("low", lambda: self.lo, n)
            highest = self.rolling_max("high", lambda: self.h, n)
            return 100.0 * ratio(self.c - lowest, highest - lowest, 0.5)

        return self.memo(("stoch_k", n), build)

    def directional(self, n: int) -> tuple[Series, Series, Series]:
        """Wilder-smoothed +DM, -DM and true range, all starting on the second bar."""

        def movement(plus: bool) -> Series:
            up = self.h - self.h.shift(1)
            down = self.lo.shift(1) - self.lo
            move, other = (up, down) if plus else (down, up)
            dm = move.where((move > other) & (move > 0.0), 0.0)
            return dm.where(self.prev_close().notna())

        def tr_from_second() -> Series:
            return self.true_range().where(self.prev_close().notna())

        return (
            self.wilder("plus_dm", lambda: movement(True), n),
            self.wilder("minus_dm", lambda: movement(False), n),
            self.wilder("tr_from_second", tr_from_second, n),
        )

    def plus_di(self, n: int) -> Series:
        plus, _, tr = self.directional(n)
        return self.memo(("pdi", n), lambda: 100.0 * ratio(plus, tr, 0.0))

    def minus_di(self, n: int) -> Series:
        _, minus, tr = self.directional(n)
        return self.memo(("mdi", n), lambda: 100.0 * ratio(minus, tr, 0.0))

    def adx(self, n: int) -> Series:
        def dx() -> Series:
            pdi, mdi = self.plus_di(n), self.minus_di(n)
            return 100.0 * ratio((pdi - mdi).abs(), pdi + mdi, 0.0)

        return self.wilder(("dx", n), dx, n)

    def rsi(self, n: int) -> Series:
        d = self.memo("close_diff", lambda: self.c.diff())
        gain = self.wilder("gain", lambda: d.clip(lower=0.0), n)
        loss = self.wilder("loss", lambda: (-d).clip(lower=0.0), n)
        return 100.0 * ratio(gain, gain + loss, 0.5)

    def log_close(self) -> Series:
        return self.finite("log_close", lambda: np.log(self.c))

    def log_close_slope(self, window: int) -> Series:
        """Σ w_j·ln c[t-n+1+j], j = 0..n-1 added oldest first, one window offset at a time."""
        values = self.log_close().to_numpy()
        rows = values.shape[0]
        weights = _slope_weights(window)
        total = np.full(rows, np.nan)
        span = rows - window + 1
        if span > 0:
            np.multiply(values[:span], weights[0], out=total[window - 1 :])
            step = np.empty(span)
            for j in range(1, window):  # the window's offsets, not a loop over rows
                np.multiply(values[j : j + span], weights[j], out=step)
                np.add(total[window - 1 :], step, out=total[window - 1 :])
        return pd.Series(total, index=self.frame.index)

    def kbar_part(self, part: str) -> Series:
        def build() -> Series:
            o, h, lo, c = self.o, self.h, self.lo, self.c
            if part == "body":
                return (c - o) / o
            if part == "upper_shadow":
                return (h - np.maximum(o, c)) / o
            if part == "lower_shadow":
                return (np.minimum(o, c) - lo) / o
            return ratio(c - lo, h - lo, 0.5)

        return self.memo(("kbar", part), build)

    def utc_time(self) -> Series:
        def build() -> Series:
            ts = self.frame["ts"]
            if getattr(ts.dt, "tz", None) is None:
                return ts.dt.tz_localize("UTC")
            return ts.dt.tz_convert("UTC")

        return self.memo("utc", build)

    def utc_hour(self) -> Series:
        return self.memo("hour", lambda: self.utc_time().dt.hour)

    def fractional_hour(self) -> Series:
        return self.memo(
            "fractional_hour",
            lambda: (
                self.utc_hour().astype("float64")
                + self.utc_time().dt.minute.astype("float64") * _HOURS_PER_MINUTE
            ),
        )

    def weekday_angle(self) -> Series:
        # Polars numbers days 1 (Monday) .. 7 (Sunday), pandas 0 .. 6: (d - 1) is pandas' day.
        return self.memo(
            "weekday_angle", lambda: self.utc_time().dt.day_of_week.astype("float64") * _PER_DAY
        )

    def in_session(self, session: str) -> Series:
        start, end = SESSIONS[session]
        hour = self.utc_hour()
        return ((hour >= start) & (hour < end)).astype("float64")

    def relative_spread(self) -> Series:
        return self.memo("rel_spread", lambda: self.col("spread") / self.c)

    def volume_mean(self, n: int) -> Series:
        return self.rolling_mean("volume", lambda: self.col("volume"), n)

    def volume_std(self, n: int) -> Series:
        return self.rolling_std("volume", lambda: self.col("volume"), n)


Builder = Callable[[_Bars, dict[str, float]], Series]


def _i(p: dict[str, float], key: str) -> int:
    return int(p[key])


def _macd(p: dict[str, float]) -> tuple[int, int]:
    return _i(p, "fast"), _i(p, "slow")


BUILDERS: dict[str, Builder] = {
    "log_return": lambda b, p: np.log(b.c / b.c.shift(_i(p, "horizon"))),
    "realized_vol": lambda b, p: b.rolling_std("r1", b.log_return_1, _i(p, "window")),
    "parkinson_vol": lambda b, p: np.sqrt(
        b.rolling_mean("log_hl2", b.log_range_squared, _i(p, "window")).clip(lower=0.0) * _PARKINSON
    ),
    "garman_klass_vol": lambda b, p: np.sqrt(
        b.rolling_mean("gk_term", b.garman_klass_term, _i(p, "window")).clip(lower=0.0)
    ),
    "atr_rel": lambda b, p: b.atr(_i(p, "n")) / b.c,
    "rsi": lambda b, p: b.rsi(_i(p, "n")),
    "macd_line_rel": lambda b, p: b.macd_line(*_macd(p)) / b.c,
    "macd_signal_rel": lambda b, p: b.macd_signal(*_macd(p), _i(p, "signal")) / b.c,
    "macd_histogram_rel": lambda b, p: (
        (b.macd_line(*_macd(p)) - b.macd_signal(*_macd(p), _i(p, "signal"))) / b.c
    ),
    "rate_of_change": lambda b, p: b.c / b.c.shift(_i(p, "n")) - 1.0,
    "stochastic_k": lambda b, p: b.stochastic_k(_i(p, "n")),
    "stochastic_d": lambda b, p: b.rolling_mean(
        ("stoch_k", _i(p, "n")), lambda: b.stochastic_k(_i(p, "n")), _i(p, "d")
    ).clip(0.0, 100.0),
    "close_to_sma": lambda b, p: (b.c - b.close_sma(_i(p, "n"))) / b.c,
    "close_to_ema": lambda b, p: (b.c - b.close_ema(_i(p, "n"))) / b.c,
    "close_to_sma_atr": lambda b, p: ratio(
        b.c - b.close_sma(_i(p, "n")), b.atr(_i(p, "atr_n")), 0.0
    ),
    "close_to_ema_atr": lambda b, p: ratio(
        b.c - b.close_ema(_i(p, "n")), b.atr(_i(p, "atr_n")), 0.0
    ),
    "plus_di": lambda b, p: b.plus_di(_i(p, "n")),
    "minus_di": lambda b, p: b.minus_di(_i(p, "n")),
    "adx": lambda b, p: b.adx(_i(p, "n")),
    "log_close_slope": lambda b, p: b.log_close_slope(_i(p, "window")),
    "close_zscore": lambda b, p: ratio(
        b.c - b.close_sma(_i(p, "window")), b.close_std(_i(p, "window")), 0.0
    ),
    "bollinger_pct_b": lambda b, p: ratio(
        b.c - (b.close_sma(_i(p, "window")) - p["k"] * b.close_std(_i(p, "window"))),
        2.0 * p["k"] * b.close_std(_i(p, "window")),
        0.5,
    ),
    "kbar_body": lambda b, p: b.kbar_part("body").shift(_i(p, "lag")),
    "kbar_upper_shadow": lambda b, p: b.kbar_part("upper_shadow").shift(_i(p, "lag")),
    "kbar_lower_shadow": lambda b, p: b.kbar_part("lower_shadow").shift(_i(p, "lag")),
    "kbar_close_position": lambda b, p: b.kbar_part("close_position").shift(_i(p, "lag")),
    "hour_sin": lambda b, p: np.sin(b.fractional_hour() * _PER_HOUR),
    "hour_cos": lambda b, p: np.cos(b.fractional_hour() * _PER_HOUR),
    "weekday_sin": lambda b, p: np.sin(b.weekday_angle()),
    "weekday_cos": lambda b, p: np.cos(b.weekday_angle()),
    "session_asia": lambda b, p: b.in_session("asia"),
    "session_london": lambda b, p: b.in_session("london"),
    "session_new_york": lambda b, p: b.in_session("new_york"),
    "relative_spread": lambda b, p: b.relative_spread(),
    "relative_spread_mean": lambda b, p: b.rolling_mean(
        "rel_spread", b.relative_spread, _i(p, "window")
    ),
    "volume_zscore": lambda b, p: ratio(
        b.col("volume") - b.volume_mean(_i(p, "window")), b.volume_std(_i(p, "window")), 0.0
    ),
    "volume_ratio": lambda b, p: ratio(b.col("volume"), b.volume_mean(_i(p, "window")), 1.0),
}


def _terms_over(terms: Series, divisor: Series) -> Series:
    with np.errstate(divide="ignore", invalid="ignore"):
        return terms / divisor.abs()


# For the features that subtract nearly equal terms: the size of those terms in the units of
# the feature. Rounding of the order of 1e-16 relative in the terms (an EMA or a mean
# computed in another order) moves the feature by up to 1e-16 times this, however small the
# feature itself is. A sliding mean also subtracts: the values leaving its window.
SCALES: dict[str, Builder] = {
    "macd_line_rel": lambda b, p: _terms_over(
        b.close_ema(_i(p, "fast")).abs() + b.close_ema(_i(p, "slow")).abs(), b.c
    ),
    "macd_signal_rel": lambda b, p: _terms_over(
        b.close_ema(_i(p, "fast")).abs() + b.close_ema(_i(p, "slow")).abs(), b.c
    ),
    "macd_histogram_rel": lambda b, p: (
        2.0 * _terms_over(b.close_ema(_i(p, "fast")).abs() + b.close_ema(_i(p, "slow")).abs(), b.c)
    ),
    "rate_of_change": lambda b, p: _terms_over(b.c, b.c.shift(_i(p, "n"))),
    "close_to_sma": lambda b, p: _terms_over(b.c.abs() + b.close_sma(_i(p, "n")).abs(), b.c),
    "close_to_ema": lambda b, p: _terms_over(b.c.abs() + b.close_ema(_i(p, "n")).abs(), b.c),
    "close_to_sma_atr": lambda b, p: _terms_over(
        b.c.abs() + b.close_sma(_i(p, "n")).abs(), b.atr(_i(p, "atr_n"))
    ),
    "close_to_ema_atr": lambda b, p: _terms_over(
        b.c.abs() + b.close_ema(_i(p, "n")).abs(), b.atr(_i(p, "atr_n"))
    ),
    "log_close_slope": lambda b, p: (
        b.log_close().abs() * sum(abs(w) for w in _slope_weights(_i(p, "window")))
    ),
    "close_zscore": lambda b, p: _terms_over(
        b.c.abs() + b.close_sma(_i(p, "window")).abs(), b.close_std(_i(p, "window"))
    ),
    "bollinger_pct_b": lambda b, p: _terms_over(
        b.c.abs() + b.close_sma(_i(p, "window")).abs() + p["k"] * b.close_std(_i(p, "window")),
        2.0 * p["k"] * b.close_std(_i(p, "window")),
    ),
    "volume_zscore": lambda b, p: _terms_over(
        b.col("volume").abs() + b.volume_mean(_i(p, "window")).abs(),
        b.volume_std(_i(p, "window")),
    ),
    # A mean slid along %K, which adds and takes away values up to 100.
    "stochastic_d": lambda b, p: pd.Series(100.0, index=b.frame.index),
}


def applicable(has_spread: bool, volume_kind: str) -> list[tuple[str, str, dict[str, float]]]:
    """Return ``(name, kind, parameters)`` of the default features that apply, in order."""
    from pipelines.features.registry import Family, default_feature_set

    keep_volume = str(volume_kind) in VOLUME_KINDS_WITH_FEATURES
    return [
        (s.name, s.kind, s.parameters)
        for s in default_feature_set()
        if (s.family is not Family.SPREAD or has_spread)
        and (s.family is not Family.VOLUME or keep_volume)
    ]


def pandas_features(
    bars: pd.DataFrame, has_spread: bool, volume_kind: str, *, native_std: bool = False
) -> pd.DataFrame:
    """Return ``ts`` and every applicable default feature of ``bars``, computed with pandas.

    Parameters
    ----------
    bars
        Bars of one series sorted by ``ts``: ``open``, ``high``, ``low``, ``close``,
        ``volume`` and, when ``has_spread``, ``spread``.
    has_spread
        The series carries a spread; without it the spread features are left out.
    volume_kind
        ``none``, ``m1_count``, ``tick`` or ``real``: volume features for tick and real only.
    native_std
        Use pandas' own ``rolling().std()`` (faster, but it drifts on long series).
    """
    frame = bars.reset_index(drop=True)
    b = _Bars(frame, native_std=native_std)
    columns: dict[str, Any] = {"ts": frame["ts"]}
    for name, kind, params in applicable(has_spread, volume_kind):
        columns[name] = np.asarray(BUILDERS[kind](b, params), dtype=np.float64)
    # Not consolidated into one 2-D block: that would copy every column once more.
    return pd.DataFrame(columns, copy=False)


def operand_scales(bars: pd.DataFrame, has_spread: bool, volume_kind: str) -> pd.DataFrame:
    """Return, per row, the size of the terms each cancelling feature subtracts.

    Only the applicable features listed in :data:`SCALES` get a column; a feature computed as
    ``(p - q) / r`` gets ``(|p| + |q|) / |r|``. NaN where the feature is NaN or ``r`` is 0.
    """
    frame = bars.reset_index(drop=True)
    b = _Bars(frame)
    columns: dict[str, Any] = {}
    for name, kind, params in applicable(has_spread, volume_kind):
        if kind in SCALES:
            scale = np.array(SCALES[kind](b, params), dtype=np.float64)
            scale[~np.isfinite(scale)] = np.nan
            columns[name] = scale
    return pd.DataFrame(columns, copy=False)

"""Portfolio risk: covariance of returns, ex-ante volatility, value at risk, expected shortfall.

Every estimate at bar ``i`` uses the returns of bars ``0..i`` only (point in time): it is what a
trader knows at bar ``i``'s close, before deciding what to hold over bar ``i + 1``.

Covariance of the per-bar returns ``r`` (rows are bars, columns are symbols), two estimators:

- **sample** over the last ``L`` bars (the lookback): ``μ = Σ r / L`` and
  ``Σ = (Σ r rᵀ - L μ μᵀ) / (L - 1)``; an entry is NaN until ``L`` bars are seen or while the
  window holds a NaN of either symbol. The window's sums slide bar by bar and are recomputed
  from the window every ``L`` bars, so rounding does not accumulate.
- **ewma** (RiskMetrics, zero mean): ``Σᵢ = λ Σᵢ₋₁ + (1 - λ) rᵢ rᵢᵀ`` with
  ``λ = 2^(-1/h)`` for a half-life of ``h`` bars, started as the plain mean of ``r rᵀ`` over the
  first ``L`` bars; an entry is NaN until both symbols have ``L`` finite returns, and a NaN
  return leaves the entries of its symbol unchanged. Its mean is 0.

Ex-ante volatility of weights ``w``: ``σ = sqrt(wᵀ Σ w)`` per bar, ``σ · sqrt(bars_per_year)``
annualized. Value at risk and expected shortfall are one-bar losses as positive fractions of
equity (a negative figure is a gain) at a confidence ``α``:

- **historical**: over the last ``m`` portfolio returns ``p``, ``Q`` is their empirical
  ``(1 - α)`` quantile (linear interpolation between order statistics, NumPy's default),
  ``VaR = -Q`` and ``ES = -mean(p | p ≤ Q)``;
- **parametric** (Gaussian) from the mean ``μ`` and volatility ``σ`` of one bar:
  ``VaR = z σ - μ`` and ``ES = σ φ(z) / (1 - α) - μ`` with ``z = Φ⁻¹(α)``.

:func:`book_risk` applies these to a book whose weights change bar by bar: the weights held at
bar ``i``'s close against the covariance and the historical returns of the symbols up to ``i``
(historical simulation of today's book on the last ``m`` bars).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from numba import njit

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Cached on disk, releasing the GIL, with NumPy's float semantics (x/0 gives inf or NaN).
_jit = njit(cache=True, nogil=True, error_model="numpy")

# Largest number of covariance matrices :func:`covariance_at` builds in one compiled scan.
_CHUNK = 4096


def ewma_decay(halflife: float) -> float:
    """Return the EWMA decay of a half-life of ``h`` bars: ``λ = 2^(-1/h)``.

    Raises
    ------
    ValueError
        If the half-life is not positive.
    """
    if not halflife > 0:
        raise ValueError(f"EWMA half-life {halflife}: give a positive number of bars")
    return float(2.0 ** (-1.0 / halflife))


@_jit
def _window_add(
    row: Array, sign: float, s1: Array, s2: Array, nans: Array
) -> None:  # pragma: no cover
    """Add (sign 1) or remove (sign -1) one row of returns to the window's sums."""
    n = row.shape[0]
    for a in range(n):
        x = row[a]
        if math.isnan(x):
            nans[a] += sign
            continue
        s1[a] += sign * x
        for b in range(a, n):
            y = row[b]
            if not math.isnan(y):
                s2[a, b] += sign * x * y


@_jit
def _window_step(
    returns: Array, i: int, lookback: int, start: int, s1: Array, s2: Array, nans: Array
) -> None:  # pragma: no cover
    """Slide the sample window to end at row ``i``, recomputing it every ``lookback`` rows."""
    if i == start or i % lookback == 0:
        s1[:] = 0.0
        s2[:, :] = 0.0
        nans[:] = 0.0
        for k in range(max(0, i - lookback + 1), i + 1):
            _window_add(returns[k], 1.0, s1, s2, nans)
        return
    _window_add(returns[i], 1.0, s1, s2, nans)
    if i - lookback >= 0:
        _window_add(returns[i - lookback], -1.0, s1, s2, nans)


@_jit
def _window_moments(
    i: int, lookback: int, s1: Array, s2: Array, nans: Array, mean: Array, cov: Array
) -> None:  # pragma: no cover
    """Write the window's mean and sample covariance (NaN where incomplete)."""
    n = s1.shape[0]
    full = i + 1 >= lookback
    for a in range(n):
        ok = full and nans[a] == 0.0
        mean[a] = s1[a] / lookback if ok else np.nan
        for b in range(a, n):
            c = np.nan
            if ok and nans[b] == 0.0:
                c = (s2[a, b] - s1[a] * s1[b] / lookback) / (lookback - 1)
                if a == b and c < 0.0:
                    c = 0.0
            cov[a, b] = c
            cov[b, a] = c


@_jit
def _ewma_step(
    row: Array, decay: float, lookback: int, m2: Array, counts: Array
) -> None:  # pragma: no cover
    """Fold one row into the EWMA second moments (plain mean over the first ``lookback``)."""
    n = row.shape[0]
    for a in range(n):
        x = row[a]
        if math.isnan(x):
            continue
        for b in range(a, n):
            y = row[b]
            if math.isnan(y):
                continue
            k = counts[a, b] + 1.0
            counts[a, b] = k
            if k <= lookback:
                m2[a, b] += (x * y - m2[a, b]) / k
            else:
                m2[a, b] = decay * m2[a, b] + (1.0 - decay) * x * y


@_jit
def _ewma_moments(
    lookback: int, m2: Array, counts: Array, mean: Array, cov: Array
) -> None:  # pragma: no cover
    """Write the EWMA mean (0) and covariance (NaN until ``lookback`` returns of both)."""
    n = m2.shape[0]
    for a in range(n):
        ok = counts[a, a] >= lookback
        mean[a] = 0.0 if ok else np.nan
        for b in range(a, n):
            c = np.nan
            if ok and counts[b, b] >= lookback and counts[a, b] >= lookback:
                c = m2[a, b]
            cov[a, b] = c
            cov[b, a] = c


@_jit
def _advance(
    returns: Array,
    i: int,
    lookback: int,
    decay: float,
    start: int,
    s1: Array,
    s2: Array,
    nans: Array,
    counts: Array,
) -> None:  # pragma: no cover
    """Take bar ``i``'s returns into the estimator (decay < 0: the sample window)."""
    if decay < 0.0:
        _window_step(returns, i, lookback, start, s1, s2, nans)
    else:
        _ewma_step(returns[i], decay, lookback, s2, counts)


@_jit
def _moments(
    i: int,
    lookback: int,
    decay: float,
    s1: Array,
    s2: Array,
    nans: Array,
    counts: Array,
    mean: Array,
    cov: Array,
) -> None:  # pragma: no cover
    """Write the estimator's mean and covariance at bar ``i``."""
    if decay < 0.0:
        _window_moments(i, lookback, s1, s2, nans, mean, cov)
    else:
        _ewma_moments(lookback, s2, counts, mean, cov)


@_jit
def _covariance_scan(
    returns: Array, rows: IntArray, lookback: int, decay: float, start: int, out: Array
) -> None:  # pragma: no cover
    """Write into ``out[k]`` the covariance at bar ``rows[k]``, scanning from bar ``start``."""
    n = returns.shape[1]
    s1 = np.zeros(n)
    s2 = np.zeros((n, n))
    nans = np.zeros(n)
    counts = np.zeros((n, n))
    mean = np.empty(n)
    k = 0
    for i in range(start, rows[rows.shape[0] - 1] + 1):
        _advance(returns, i, lookback, decay, start, s1, s2, nans, counts)
        if i == rows[k]:
            _moments(i, lookback, decay, s1, s2, nans, counts, mean, out[k])
            k += 1


def _check_returns(returns: Array, lookback: int) -> Array:
    values = np.ascontiguousarray(returns, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"returns of shape {values.shape}: give a 2-D array (bars x symbols)")
    if lookback < 2:
        raise ValueError(f"lookback {lookback}: give at least 2 bars")
    return values


def covariance_at(
    returns: Array,
    rows: npt.ArrayLike,
    lookback: int,
    *,
    ewma_halflife: float | None = None,
) -> Array:
    """Return the covariance of per-bar returns at the given bars, from returns up to each.

    Parameters
    ----------
    returns
        Per-bar returns, shape (bars, symbols); NaN where a symbol has none.
    rows
        Strictly increasing bar indices at which to estimate.
    lookback
        Sample window ``L`` in bars; with ``ewma_halflife`` the warm-up, in bars.
    ewma_halflife
        Half-life ``h`` of the RiskMetrics estimator; None for the sample window.

    Returns
    -------
    numpy.ndarray
        Shape (len(rows), symbols, symbols); ``Σ = (Σ r rᵀ - L μ μᵀ) / (L - 1)`` over bars
        ``i - L + 1 .. i`` for the sample window, ``Σᵢ = λ Σᵢ₋₁ + (1 - λ) rᵢ rᵢᵀ`` for EWMA
        (module docstring); NaN where an estimate is not available yet.

    Raises
    ------
    ValueError
        If the rows are not strictly increasing bar indices, or the lookback is below 2.
    """
    values = _check_returns(returns, lookback)
    at = np.asarray(rows, dtype=np.int64)
    n_bars, n = values.shape
    out = np.full((at.shape[0], n, n), np.nan)
    if at.shape[0] == 0:
        return out
    if at.ndim != 1 or at[0] < 0 or at[-1] >= n_bars or np.any(np.diff(at) <= 0):
        raise ValueError(f"rows must be strictly increasing bar indices in [0, {n_bars})")
    decay = -1.0 if ewma_halflife is None else ewma_decay(ewma_halflife)
    for first in range(0, at.shape[0], _CHUNK):
        chunk = at[first : first + _CHUNK]
        # The sample window needs only its last L bars; EWMA needs the whole history.
        start = max(0, int(chunk[0]) - lookback + 1) if decay < 0.0 else 0
        _covariance_scan(values, chunk, lookback, decay, start, out[first : first + _CHUNK])
    return out


def rolling_covariance(
    returns: Array, lookback: int, *, ewma_halflife: float | None = None
) -> Array:
    """Return the covariance of per-bar returns at every bar, from returns up to that bar.

    Shape (bars, symbols, symbols); see :func:`covariance_at` for the estimators. Meant for
    small inputs: the output holds bars x symbols² floats.
    """
    values = _check_returns(returns, lookback)
    return covariance_at(values, np.arange(values.shape[0]), lookback, ewma_halflife=ewma_halflife)


def portfolio_volatility(
    weights: npt.ArrayLike, covariance: npt.ArrayLike, bars_per_year: float = 1.0
) -> Array:
    """Return the annualized ex-ante volatility ``sqrt(wᵀ Σ w · bars_per_year)``.

    ``weights`` of shape (..., symbols) and ``covariance`` of shape (..., symbols, symbols)
    broadcast against each other; with ``bars_per_year = 1`` the volatility is per bar.
    """
    w = np.asarray(weights, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    variance = np.einsum("...i,...ij,...j->...", w, cov, w)
    return np.asarray(np.sqrt(np.maximum(variance, 0.0) * bars_per_year))


def risk_contributions(weights: npt.ArrayLike, covariance: npt.ArrayLike) -> Array:
    """Return each symbol's contribution to volatility: ``RCⱼ = wⱼ (Σ w)ⱼ / sqrt(wᵀ Σ w)``.

    The contributions sum to the per-bar volatility ``sqrt(wᵀ Σ w)``; risk parity makes them
    equal.
    """
    w = np.asarray(weights, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    marginal = cov @ w
    return np.asarray(w * marginal / math.sqrt(float(w @ marginal)))


@_jit
def _tail(sorted_sample: Array, level: float) -> tuple[float, float]:  # pragma: no cover
    """Return (-Q, -mean of the sample at or below Q), Q its linear ``level`` quantile."""
    n = sorted_sample.shape[0]
    h = (n - 1) * level
    lo = int(h)  # h >= 0, so truncation is the floor
    hi = min(lo + 1, n - 1)
    q = sorted_sample[lo] + (h - lo) * (sorted_sample[hi] - sorted_sample[lo])
    total = 0.0
    count = 0
    for k in range(n):
        if sorted_sample[k] > q:
            break
        total += sorted_sample[k]
        count += 1
    return -q, -total / count


@_jit
def _historical_kernel(
    returns: Array, window: int, level: float, var: Array, es: Array
) -> None:  # pragma: no cover
    """Rolling historical VaR and ES of a return series (NaN while the window is short)."""
    sample = np.empty(window)
    for i in range(window - 1, returns.shape[0]):
        ok = True
        for k in range(window):
            v = returns[i - window + 1 + k]
            if math.isnan(v):
                ok = False
                break
            sample[k] = v
        if ok:
            sample.sort()
            var[i], es[i] = _tail(sample, level)


def _check_confidence(confidence: float) -> None:
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence {confidence}: give a level between 0.5 and 1, e.g. 0.95")


def historical_var_es(
    portfolio_returns: npt.ArrayLike, window: int, confidence: float
) -> tuple[Array, Array]:
    """Return the rolling historical VaR and ES of a series of portfolio returns.

    At bar ``i``, over the returns ``p`` of bars ``i - m + 1 .. i`` (``m = window``): ``Q`` is
    their linear ``(1 - α)`` quantile, ``VaR = -Q`` and ``ES = -mean(p | p ≤ Q)``, positive
    loss fractions. NaN while fewer than ``m`` returns are seen or the window holds a NaN.

    Raises
    ------
    ValueError
        If the window is below 2 or the confidence is not in (0.5, 1).
    """
    _check_confidence(confidence)
    if window < 2:
        raise ValueError(f"VaR window {window}: give at least 2 bars")
    values = np.ascontiguousarray(portfolio_returns, dtype=np.float64)
    var = np.full(values.shape[0], np.nan)
    es = np.full(values.shape[0], np.nan)
    _historical_kernel(values, window, 1.0 - confidence, var, es)
    return var, es


def gaussian_factors(confidence: float) -> tuple[float, float]:
    """Return ``z = Φ⁻¹(α)`` and ``φ(z) / (1 - α)``, the Gaussian VaR and ES multipliers."""
    _check_confidence(confidence)
    normal = NormalDist()
    z = normal.inv_cdf(confidence)
    return z, normal.pdf(z) / (1.0 - confidence)


def parametric_var_es(
    mean: npt.ArrayLike, volatility: npt.ArrayLike, confidence: float
) -> tuple[Array, Array]:
    """Return the Gaussian VaR ``z σ - μ`` and ES ``σ φ(z) / (1 - α) - μ`` of one bar.

    ``mean`` and ``volatility`` are the per-bar mean ``μ`` and standard deviation ``σ`` of the
    portfolio's return; ``z = Φ⁻¹(α)``. Both are positive loss fractions.
    """
    z, es_factor = gaussian_factors(confidence)
    mu = np.asarray(mean, dtype=np.float64)
    sigma = np.asarray(volatility, dtype=np.float64)
    return np.asarray(z * sigma - mu), np.asarray(es_factor * sigma - mu)


@dataclass(frozen=True)
class BookRisk:
    """Risk of the weights held at each bar, estimated from the returns up to that bar.

    Attributes
    ----------
    confidences
        The confidence levels ``α``, one column of each VaR and ES array per level.
    volatility
        Ex-ante volatility ``sqrt(wᵀ Σ w · bars_per_year)``, shape (bars,).
    var_hist, es_hist
        Historical simulation of the held weights on the last ``m`` bars, shape (bars, levels).
    var_param, es_param
        Gaussian VaR and ES from the book's window mean ``wᵀμ`` and volatility, per bar.
    """

    confidences: tuple[float, ...]
    volatility: Array
    var_hist: Array
    es_hist: Array
    var_param: Array
    es_param: Array


@_jit
def _book_risk_kernel(
    returns: Array,
    weights: Array,
    lookback: int,
    decay: float,
    var_window: int,
    annualizer: float,
    levels: Array,
    z: Array,
    es_factor: Array,
    volatility: Array,
    var_hist: Array,
    es_hist: Array,
    var_param: Array,
    es_param: Array,
) -> None:  # pragma: no cover
    """Ex-ante volatility, parametric and historical VaR/ES of the held weights, bar by bar."""
    n_bars, n = returns.shape
    s1 = np.zeros(n)
    s2 = np.zeros((n, n))
    nans = np.zeros(n)
    counts = np.zeros((n, n))
    mean = np.empty(n)
    cov = np.empty((n, n))
    held = np.empty(n, dtype=np.int64)
    sample = np.empty(var_window)
    for i in range(n_bars):
        _advance(returns, i, lookback, decay, 0, s1, s2, nans, counts)
        _moments(i, lookback, decay, s1, s2, nans, counts, mean, cov)
        w = weights[i]
        m = 0
        valid = True
        for a in range(n):
            if math.isnan(w[a]):
                valid = False
            elif w[a] != 0.0:
                held[m] = a
                m += 1
        if not valid:
            continue
        variance = 0.0
        mu = 0.0
        for x in range(m):
            a = held[x]
            mu += w[a] * mean[a]
            for y in range(m):
                b = held[y]
                variance += w[a] * cov[a, b] * w[b]
        if not math.isnan(variance):
            sigma = math.sqrt(max(variance, 0.0))
            volatility[i] = sigma * annualizer
            for k in range(levels.shape[0]):
                var_param[i, k] = z[k] * sigma - mu
                es_param[i, k] = es_factor[k] * sigma - mu
        if i + 1 < var_window:
            continue
        complete = True
        for t in range(var_window):
            row = returns[i - var_window + 1 + t]
            p = 0.0
            for x in range(m):
                p += w[held[x]] * row[held[x]]
            if math.isnan(p):
                complete = False
                break
            sample[t] = p
        if complete:
            sample.sort()
            for k in range(levels.shape[0]):
                var_hist[i, k], es_hist[i, k] = _tail(sample, levels[k])


def book_risk(
    returns: Array,
    weights: Array,
    *,
    lookback: int,
    var_window: int,
    bars_per_year: float,
    confidences: Sequence[float] = (0.95, 0.99),
    ewma_halflife: float | None = None,
) -> BookRisk:
    """Return the ex-ante risk of the weights held at each bar (module docstring formulas).

    Parameters
    ----------
    returns
        Per-bar returns of the symbols, shape (bars, symbols).
    weights
        Weights held at each bar's close (value / equity), same shape; NaN rows give NaN risk.
    lookback, ewma_halflife
        The covariance estimator (:func:`covariance_at`).
    var_window
        Number ``m`` of past bars the historical VaR and ES replay the weights on.
    bars_per_year
        Annualizes the volatility; VaR and ES stay one-bar figures.
    confidences
        The levels ``α``.

    Returns
    -------
    BookRisk
        Volatility, historical and Gaussian VaR and ES; NaN where an estimate of a held symbol
        is not available yet. A flat book has volatility, VaR and ES 0.

    Raises
    ------
    ValueError
        If shapes differ, a window is below 2 or a confidence is not in (0.5, 1).
    """
    values = _check_returns(returns, lookback)
    held = np.ascontiguousarray(weights, dtype=np.float64)
    if held.shape != values.shape:
        raise ValueError(f"weights of shape {held.shape} do not match returns {values.shape}")
    if var_window < 2:
        raise ValueError(f"VaR window {var_window}: give at least 2 bars")
    levels = tuple(float(c) for c in confidences)
    factors = [gaussian_factors(c) for c in levels]
    n_bars, n_levels = values.shape[0], len(levels)
    volatility = np.full(n_bars, np.nan)
    var_hist, es_hist, var_param, es_param = (np.full((n_bars, n_levels), np.nan) for _ in range(4))
    decay = -1.0 if ewma_halflife is None else ewma_decay(ewma_halflife)
    _book_risk_kernel(
        values,
        held,
        lookback,
        decay,
        var_window,
        math.sqrt(bars_per_year),
        np.array([1.0 - c for c in levels]),
        np.array([f[0] for f in factors]),
        np.array([f[1] for f in factors]),
        volatility,
        var_hist,
        es_hist,
        var_param,
        es_param,
    )
    return BookRisk(levels, volatility, var_hist, es_hist, var_param, es_param)

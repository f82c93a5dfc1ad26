"""Drift of a live model: its inputs against its training window, its P&L against the walk-forward.

Two questions, each answered by a pure function of arrays:

- **Have the inputs moved?** Each feature's training window is cut into deciles
  (:func:`decile_bins`); the share of live values in each bin is compared with the training
  share by the population stability index (:func:`population_stability`),
  PSI = Σᵢ (aᵢ − eᵢ) · ln(aᵢ / eᵢ) over the bins, with eᵢ the training share and aᵢ the live
  share, each floored at :data:`PSI_FLOOR` so an empty bin keeps the index finite. Missing
  values (NaN, ±inf) are a bin of their own, after the deciles: a feature that starts to go
  missing drifts like one that moves. Repeated quantiles (a flag, a weekday) collapse into one
  edge, so a discrete feature has fewer bins. A value equal to an edge falls in the bin below
  it: the bins are (−inf, q₁], (q₁, q₂], …, (q₉, +inf).

  A window of a few weeks is not a sample of the whole training window: a slow feature (a
  daily RSI, a 60-bar volatility) sweeps only part of its range in it, so its PSI is large
  with no drift at all (on EURUSD H1, 500-bar windows of the training rows reach 1.5 to 6 on
  the daily context features). Each feature therefore carries a ``baseline``, the largest
  PSI any window of that size of its own training rows showed against the rest of them, in
  the same bins (:func:`psi_baselines`); drift is the live PSI in excess of it.
- **Is the P&L out of line?** The walk-forward's out-of-sample per-bar returns are resampled
  with Politis and Romano's stationary bootstrap into windows of ``window_bars`` bars (the
  ``window_days`` trading days a live check looks back over), and the ``low``-``high``
  quantiles of each window's annualized Sharpe ratio and maximum drawdown make the band
  (:func:`pnl_band`, through the code of :func:`pipelines.evaluate.stats.bootstrap_intervals`).
  A live window is judged by the same figures (:func:`window_figures`: the same formulas in one
  compiled pass, equal to the bootstrap's own estimates).

:class:`DriftReference` holds both for one registered version: what the walk-forward registers
beside the model, and what the live loop's monitor (:mod:`execution.drift`) compares against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import UsageError
from core.times import iso_z_ns
from pipelines.evaluate.stats import block_length, replicate_statistics

DECILES = 10
"""Bins of a feature's training values (its deciles), before the bin of missing values."""
PSI_FLOOR = 1e-4
"""Smallest share a bin counts with in the PSI (an empty bin would make the index infinite)."""
NS_PER_DAY = 86_400_000_000_000
_CHUNK_ROWS = 4096
DRIFT_ARTIFACT = "drift/reference.json"
"""Where a walk-forward run keeps its registered model's drift reference (a run artifact)."""
DRIFT_TAG = "solodesk.drift"
"""The version tag naming the artifact of its run that holds the version's drift reference."""


class FeatureBins(BaseModel):
    """One feature's training deciles: the inner edges and the share of rows in each bin.

    ``shares`` has ``len(edges) + 2`` entries: the bins (−inf, e₁], (e₁, e₂], …, (eₖ, +inf),
    then the share of missing values; they sum to 1. ``baseline`` is the largest PSI a window
    of the reference's ``psi_window`` training rows showed (:func:`psi_baselines`): what the
    feature moves without any drift; ``short_baseline`` the same over windows of
    ``psi_min_window`` rows (a shorter window covers less of a slow feature's range).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    edges: tuple[float, ...]
    shares: tuple[float, ...]
    baseline: float = Field(default=0.0, ge=0)
    short_baseline: float = Field(default=0.0, ge=0)


class PnlBand(BaseModel):
    """The band a live window's P&L is expected in, from the walk-forward's returns.

    ``sharpe`` (annualized, × √``bars_per_year``) and ``max_drawdown`` (a negative fraction)
    are the (``low``, ``high``) quantiles over ``n_boot`` stationary-bootstrap windows of
    ``window_bars`` bars (mean block length ``block``) drawn from ``returns`` out-of-sample
    bars with ``seed``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_bars: int = Field(ge=2)
    bars_per_year: float = Field(gt=0)
    low: float = Field(gt=0, lt=0.5)
    high: float = Field(gt=0.5, lt=1)
    sharpe: tuple[float, float]
    max_drawdown: tuple[float, float]
    block: float = Field(ge=1)
    n_boot: int = Field(ge=2)
    seed: int
    returns: int = Field(ge=2)


class DriftReference(BaseModel):
    """What a live model's drift is measured against (stored as JSON beside the version).

    ``features`` are the model's inputs in the order it reads them, each with its deciles
    over the ``rows`` rows it was fitted on (``first`` to ``last``, ISO-8601 UTC) and its
    baseline PSI over windows of ``psi_window`` rows (and of ``psi_min_window``, the shortest
    window judged); ``band`` is None when the walk-forward had too few out-of-sample bars for
    one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: tuple[FeatureBins, ...]
    rows: int = Field(ge=1)
    psi_window: int = Field(ge=2)
    psi_min_window: int = Field(ge=2)
    first: str
    last: str
    band: PnlBand | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Return the features' names, in the model's order."""
        return tuple(f.name for f in self.features)

    def to_json(self) -> str:
        """Return the reference as JSON text."""
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "drift reference") -> DriftReference:
        """Return the reference stored as ``text``.

        Raises
        ------
        UsageError
            If the text is not a drift reference (``where`` names it in the message).
        """
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
            )
            msg = f"{where} is not a drift reference ({problems}); register the model again"
            raise UsageError(msg) from None


# -- feature drift --------------------------------------------------------------------------


def bin_counts(values: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return how many ``values`` fall in each bin of ``edges``, missing values last.

    Bin k holds the finite values above k edges and at or below the next; the last entry
    counts NaN and ±inf.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    cuts = np.asarray(edges, dtype=np.float64)
    finite = np.isfinite(x)
    index = np.searchsorted(cuts, x[finite], side="left")
    counts = np.bincount(index, minlength=cuts.shape[0] + 1).astype(np.float64)
    return np.append(counts, float(x.shape[0] - int(finite.sum())))


def decile_bins(values: np.ndarray, name: str, bins: int = DECILES) -> FeatureBins:
    """Return a feature's training bins: the ``bins``-quantiles of its finite values.

    Repeated quantiles collapse into one edge; a feature with no finite value has no edge (one
    empty bin and the bin of missing values).
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.shape[0] == 0:
        raise UsageError(f"feature {name!r} has no training rows: its deciles need some")
    finite = x[np.isfinite(x)]
    edges = (
        np.unique(np.quantile(finite, np.arange(1, bins) / bins))
        if finite.shape[0]
        else np.zeros(0)
    )
    counts = bin_counts(x, edges)
    return FeatureBins(
        name=name,
        edges=tuple(float(e) for e in edges),
        shares=tuple(float(c) for c in counts / x.shape[0]),
    )


def population_stability(
    expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR
) -> float:
    """Return the population stability index Σ (aᵢ − eᵢ) ln(aᵢ / eᵢ) of two bin shares.

    Both share vectors are floored at ``floor`` first, so an empty bin on either side counts
    as ``floor`` and the index stays finite. 0 for equal shares; about 0.1 is a moderate
    shift, 0.25 a large one.
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    if e.shape != a.shape:
        raise UsageError(f"PSI of {e.shape[0]} expected bins against {a.shape[0]} actual bins")
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(bins: FeatureBins, values: np.ndarray) -> float:
    """Return the PSI of live ``values`` of one feature against its training ``bins``."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.shape[0] == 0:
        return math.nan
    return population_stability(np.asarray(bins.shares), bin_counts(x, bins.edges) / x.shape[0])


def reference_bins(
    X: np.ndarray, names: Sequence[str], bins: int = DECILES
) -> tuple[FeatureBins, ...]:
    """Return each column's training bins (``X``: rows × features, in the order of ``names``)."""
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        msg = f"{len(names)} feature names for training rows of shape {matrix.shape}"
        raise UsageError(msg)
    return tuple(decile_bins(matrix[:, j], name, bins) for j, name in enumerate(names))


class PsiTable:
    """Every feature's training bins as padded arrays, for the PSI of many features at once.

    Features with fewer edges are padded with +inf edges (which no value passes) and bins of
    share 0 on both sides (which add nothing to the index).
    """

    def __init__(self, features: Sequence[FeatureBins], floor: float = PSI_FLOOR) -> None:
        k = len(features)
        widest = max((len(f.edges) for f in features), default=0)
        self.names = tuple(f.name for f in features)
        self.baselines = np.array([f.baseline for f in features], dtype=np.float64)
        self.short_baselines = np.array([f.short_baseline for f in features], dtype=np.float64)
        self.floor = floor
        # Edges by rank then feature: a value's bin is a sum over the (short) first axis.
        self.edges = np.full((widest, k), np.inf)
        self.expected = np.zeros((k, widest + 2))
        self.missing = widest + 1
        for j, f in enumerate(features):
            m = len(f.edges)
            self.edges[:m, j] = f.edges
            self.expected[j, : m + 1] = f.shares[: m + 1]
            self.expected[j, self.missing] = f.shares[m + 1]
        self._floored = np.maximum(self.expected, floor)
        self._offsets = np.arange(k) * (widest + 2)

    @property
    def size(self) -> int:
        """Return the number of bin counts of all features together (features × bins)."""
        return int(self.expected.size)

    def bin_index(self, X: np.ndarray) -> np.ndarray:
        """Return the bin of each value of rows ``X``, as an index into the flat bin counts."""
        matrix = np.asarray(X, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.names):
            msg = f"rows of shape {matrix.shape} for {len(self.names)} monitored features"
            raise UsageError(msg)
        index = (matrix[:, None, :] > self.edges[None, :, :]).sum(axis=1)
        index = np.where(np.isfinite(matrix), index, self.missing)
        return (index + self._offsets[None, :]).astype(np.intp)

    def counts(self, X: np.ndarray) -> np.ndarray:
        """Return how many values of rows ``X`` fall in each bin (flat: features × bins)."""
        return np.bincount(self.bin_index(X).reshape(-1), minlength=self.size).astype(np.float64)

    def psi_of_counts(self, counts: np.ndarray, rows: int) -> np.ndarray:
        """Return each feature's PSI from the flat bin ``counts`` of ``rows`` live rows."""
        if rows <= 0:
            return np.full(len(self.names), np.nan)
        actual = np.maximum(counts.reshape(self.expected.shape) / rows, self.floor)
        return np.sum((actual - self._floored) * np.log(actual / self._floored), axis=1)

    def psi_between(self, expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
        """Return each feature's PSI of flat bin shares ``actual`` against ``expected``."""
        e = np.maximum(expected.reshape(self.expected.shape), self.floor)
        a = np.maximum(actual.reshape(self.expected.shape), self.floor)
        return np.sum((a - e) * np.log(a / e), axis=1)

    def psi(self, X: np.ndarray) -> np.ndarray:
        """Return each feature's PSI over the rows ``X`` (rows × features, the table's order)."""
        matrix = np.asarray(X, dtype=np.float64)
        return self.psi_of_counts(self.counts(matrix), int(matrix.shape[0]) if matrix.ndim else 0)

    def slide(
        self, X: np.ndarray, window: np.ndarray, counts: np.ndarray, at: int, filled: int
    ) -> tuple[int, int]:
        """Bin rows ``X`` into a sliding window; return the window's next slot and its fill.

        The window is a ring of flat bin indices (``window``: slots × features, the next row
        going to slot ``at``, ``filled`` slots in use) with the running ``counts`` of its bins;
        each row of ``X`` takes the next slot, and the row it replaces leaves the counts. Both
        arrays are updated in place.
        """
        matrix = np.ascontiguousarray(X, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.names):
            msg = f"rows of shape {matrix.shape} for {len(self.names)} monitored features"
            raise UsageError(msg)
        return _slide(matrix, self.edges, self._offsets, self.missing, window, counts, at, filled)


@njit(cache=True, nogil=True)
def _slide(
    X: np.ndarray,
    edges: np.ndarray,
    offsets: np.ndarray,
    missing: int,
    window: np.ndarray,
    counts: np.ndarray,
    at: int,
    filled: int,
) -> tuple[int, int]:  # pragma: no cover - compiled
    slots = window.shape[0]
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            if filled == slots:
                counts[window[at, j]] -= 1.0
            x = X[i, j]
            if np.isfinite(x):
                k = 0
                while k < edges.shape[0] and x > edges[k, j]:
                    k += 1
            else:
                k = missing
            window[at, j] = offsets[j] + k
            counts[offsets[j] + k] += 1.0
        at = (at + 1) % slots
        if filled < slots:
            filled += 1
    return at, filled


def psi_baselines(
    X: np.ndarray, features: Sequence[FeatureBins], window: int, stride: int | None = None
) -> np.ndarray:
    """Return each feature's largest PSI over windows of ``window`` of its own training rows.

    ``features`` are the deciles of all of ``X``'s rows (:func:`reference_bins`). Windows start
    every ``stride`` rows (default ``window // 10``); each window's shares in those bins are
    compared with the shares of the training rows outside it, as a live window is compared
    with rows it was not part of. With fewer than two windows' worth of rows a window is
    compared with all rows (itself included); with fewer rows than one window, the baselines
    are 0.
    """
    matrix = np.asarray(X, dtype=np.float64)
    n = matrix.shape[0]
    baselines = np.zeros(len(features))
    if n <= window:
        return baselines
    table = PsiTable(features)
    # Every value's bin, once; a window's counts are then a count of a slice.
    index = np.concatenate(
        [table.bin_index(matrix[at : at + _CHUNK_ROWS]) for at in range(0, n, _CHUNK_ROWS)]
    )
    total = np.bincount(index.reshape(-1), minlength=table.size).astype(np.float64)
    leave_out = n - window >= window
    step = max(1, stride if stride is not None else window // 10)
    for start in range(0, n - window + 1, step):
        part = np.bincount(index[start : start + window].reshape(-1), minlength=table.size)
        expected = (total - part) / (n - window) if leave_out else total / n
        psi = table.psi_between(expected, part / window)
        baselines = np.maximum(baselines, np.nan_to_num(psi, nan=0.0))
    return baselines


# -- P&L band -------------------------------------------------------------------------------


def bars_per_day(ts: np.ndarray) -> float:
    """Return the median number of bars per UTC calendar day holding any (``ts`` in ns).

    A trading day of the series, counted from its own bars: 24 for FX H1 (a Sunday evening's
    two bars do not move the median), 7 for a US equity's H1, 1 for D1.
    """
    stamps = np.asarray(ts, dtype=np.int64)
    if stamps.shape[0] == 0:
        raise UsageError("no bars to count bars per day from")
    _, counts = np.unique(stamps // NS_PER_DAY, return_counts=True)
    return float(np.median(counts))


def stationary_windows(n: int, length: int, n_boot: int, block: float, seed: int) -> np.ndarray:
    """Return ``n_boot`` stationary-bootstrap index paths of ``length`` bars over ``n`` bars.

    Each path starts at a uniform bar and, at each step, continues to the next bar (wrapping
    around) with probability 1 − 1/``block``, else jumps to a new uniform bar: blocks of
    geometric length with mean ``block`` (Politis and Romano).
    """
    if n < 1 or length < 1 or n_boot < 1 or block < 1.0:
        msg = f"stationary bootstrap of {n_boot} windows of {length} bars from {n} (block {block})"
        raise UsageError(msg)
    rng = np.random.default_rng(seed)
    jumps = rng.random((n_boot, length)) < 1.0 / block
    jumps[:, 0] = True
    starts = rng.integers(0, n, size=(n_boot, length))
    step = np.arange(length)
    # Where each path's current block began, and the bar it began at.
    began = np.maximum.accumulate(np.where(jumps, step[None, :], 0), axis=1)
    first = np.take_along_axis(starts, began, axis=1)
    return ((first + (step[None, :] - began)) % n).astype(np.intp)


def window_figures(
    returns: np.ndarray, bars_per_year: float, start: int = 0
) -> tuple[float, float]:
    """Return the annualized Sharpe ratio and the maximum drawdown of one window of returns.

    Sharpe: mean(r) / std(r, ddof=1) × √bars_per_year (NaN when the returns do not vary);
    maximum drawdown: min(equityᵢ / max(1, equity₀..ᵢ) − 1) of equity = cumprod(1 + r), a
    negative fraction, as :func:`pipelines.evaluate.stats.bootstrap_intervals` measures it
    (through log growth, as it does). ``returns`` may be a ring whose oldest value is at
    ``start``. Compiled: it runs in the trading loop.
    """
    r = np.ascontiguousarray(returns, dtype=np.float64).reshape(-1)
    if r.shape[0] < 2:
        return math.nan, math.nan
    sharpe, worst = _window_pass(r, start % r.shape[0])
    return sharpe * math.sqrt(bars_per_year), worst


@njit(cache=True, nogil=True)
def _window_pass(r: np.ndarray, start: int) -> tuple[float, float]:  # pragma: no cover
    n = r.shape[0]
    total = 0.0
    low = np.inf
    high = -np.inf
    path = 0.0
    peak = 0.0
    deepest = 0.0
    for i in range(n):
        x = r[(start + i) % n]
        total += x
        low = min(low, x)
        high = max(high, x)
        path += np.log1p(max(x, -1.0))
        peak = max(peak, path)
        deepest = min(deepest, path - peak)
    mean = total / n
    spread = 0.0
    for i in range(n):
        spread += (r[(start + i) % n] - mean) ** 2
    sharpe = np.nan if high == low else mean / np.sqrt(spread / (n - 1))
    return sharpe, min(np.expm1(deepest), 0.0)


def pnl_band(
    returns: np.ndarray,
    *,
    window_bars: int,
    bars_per_year: float,
    low: float = 0.05,
    high: float = 0.95,
    n_boot: int = 1000,
    block: float | None = None,
    seed: int = 0,
) -> PnlBand:
    """Return the ``low``-``high`` band of a ``window_bars``-bar window's Sharpe and drawdown.

    ``returns`` are the walk-forward's out-of-sample per-bar returns (after costs). Windows of
    ``window_bars`` bars are drawn by the stationary bootstrap (:func:`stationary_windows`),
    ``block`` by default the optimal mean block length of the returns (Politis and White, as
    :func:`pipelines.evaluate.stats.bootstrap_intervals` picks it); windows whose returns do
    not vary have no Sharpe ratio and are left out of its band.

    Raises
    ------
    UsageError
        If there are fewer than two returns, a return is not finite or below −1, or an
        argument is out of range.
    """
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    if r.shape[0] < 2:
        raise UsageError(f"{r.shape[0]} out-of-sample returns: a P&L band needs at least 2")
    if not bool(np.isfinite(r).all()) or bool(np.any(r < -1.0)):
        raise UsageError("out-of-sample returns must be finite and at least -1 for a P&L band")
    if not 0.0 < low < 0.5 < high < 1.0:
        raise UsageError(f"band quantiles {low}, {high}: give 0 < low < 0.5 < high < 1")
    if window_bars < 2:
        raise UsageError(f"window of {window_bars} bars: a P&L window needs at least 2")
    mean_block = block_length(r[:, None], block, "block")
    index = stationary_windows(r.shape[0], window_bars, n_boot, mean_block, seed)
    growth = np.log1p(r)
    sharpe, _, worst = replicate_statistics(r, growth, index)
    scale = math.sqrt(bars_per_year)
    finite = sharpe[np.isfinite(sharpe)] * scale
    sharpe_band = (
        (float(np.quantile(finite, low)), float(np.quantile(finite, high)))
        if finite.shape[0]
        else (math.nan, math.nan)
    )
    return PnlBand(
        window_bars=window_bars,
        bars_per_year=bars_per_year,
        low=low,
        high=high,
        sharpe=sharpe_band,
        max_drawdown=(float(np.quantile(worst, low)), float(np.quantile(worst, high))),
        block=mean_block,
        n_boot=n_boot,
        seed=seed,
        returns=int(r.shape[0]),
    )


def drift_reference(
    X: np.ndarray,
    names: Sequence[str],
    ts: np.ndarray,
    *,
    psi_window: int,
    psi_min_window: int,
    oos_returns: np.ndarray | None = None,
    oos_ts: np.ndarray | None = None,
    bars_per_year: float,
    window_days: int,
    low: float = 0.05,
    high: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> DriftReference:
    """Return the drift reference of a model fitted on rows ``X`` (times ``ts``, ns UTC).

    The deciles are those of the training rows, each feature's baselines its largest PSI over
    windows of ``psi_window`` and of ``psi_min_window`` of them (:func:`psi_baselines`;
    ``psi_min_window`` is at most ``psi_window``); the band is drawn from
    ``oos_returns`` over windows of ``window_days`` trading days of the series' bars
    (:func:`bars_per_day` of ``oos_ts``, else of ``ts``). No band when there are fewer
    out-of-sample returns than two windows' worth.
    """
    stamps = np.asarray(ts, dtype=np.int64)
    if stamps.shape[0] == 0:
        raise UsageError("no training rows to take a drift reference from")
    band = None
    if oos_returns is not None:
        returns = np.asarray(oos_returns, dtype=np.float64)
        per_day = bars_per_day(stamps if oos_ts is None or len(oos_ts) == 0 else oos_ts)
        window = max(2, round(window_days * per_day))
        if returns.shape[0] >= 2 * window:
            band = pnl_band(
                returns, window_bars=window, bars_per_year=bars_per_year, low=low, high=high,
                n_boot=n_boot, seed=seed,
            )  # fmt: skip
    shortest = min(psi_min_window, psi_window)
    bins = reference_bins(X, names)
    full = psi_baselines(X, bins, psi_window)
    short = full if shortest == psi_window else psi_baselines(X, bins, shortest)
    return DriftReference(
        features=tuple(
            b.model_copy(update={"baseline": float(v), "short_baseline": float(w)})
            for b, v, w in zip(bins, full, short, strict=True)
        ),
        rows=int(stamps.shape[0]),
        psi_window=psi_window,
        psi_min_window=shortest,
        first=iso_z_ns(int(stamps[0])),
        last=iso_z_ns(int(stamps[-1])),
        band=band,
    )

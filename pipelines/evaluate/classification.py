"""How good the predicted probabilities are, fold by fold: AUC, log-loss, accuracy, calibration."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
EPS = 1e-12


def weighted_logloss(y: npt.NDArray[np.int64], p: Floats, weight: Floats | None = None) -> float:
    """Return the weighted binary log-loss: −Σ wᵢ (yᵢ ln pᵢ + (1 − yᵢ) ln(1 − pᵢ)) / Σ wᵢ.

    Probabilities are clipped to [1e-12, 1 − 1e-12]; NaN without rows.
    """
    if y.shape[0] == 0:
        return math.nan
    q = np.clip(p, EPS, 1.0 - EPS)
    w = np.ones(y.shape[0]) if weight is None else weight
    losses = -(y * np.log(q) + (1 - y) * np.log(1.0 - q))
    return float(np.sum(w * losses) / np.sum(w))


def roc_auc(y: npt.NDArray[np.int64], p: Floats) -> float:
    """Return the area under the ROC curve (the Mann–Whitney rank statistic, ties averaged).

    NaN when only one class is present.
    """
    positives = int(np.sum(y == 1))
    negatives = int(y.shape[0] - positives)
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    ranks = np.empty(p.shape[0])
    # Average rank (1-based) over runs of equal probabilities.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_p)) + 1]
    ends = np.r_[starts[1:], p.shape[0]]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    rank_sum = float(np.sum(ranks[y == 1]))
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


@dataclass(frozen=True)
class Calibration:
    """Reliability of probabilities in equal-width bins.

    Attributes
    ----------
    brier
        Mean of (p − y)².
    ece
        Expected calibration error: Σ_b (n_b / n) · |mean p in b − share of y = 1 in b|.
    bins
        One ``(mean predicted, observed share, rows)`` per non-empty bin.
    """

    brier: float
    ece: float
    bins: tuple[tuple[float, float, int], ...]


def calibration(y: npt.NDArray[np.int64], p: Floats, n_bins: int = 10) -> Calibration:
    """Return the Brier score, the expected calibration error and the reliability bins."""
    n = y.shape[0]
    if n == 0:
        return Calibration(math.nan, math.nan, ())
    which = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    bins: list[tuple[float, float, int]] = []
    ece = 0.0
    for b in range(n_bins):
        inside = which == b
        count = int(inside.sum())
        if count == 0:
            continue
        mean_p = float(p[inside].mean())
        share = float(y[inside].mean())
        ece += count / n * abs(mean_p - share)
        bins.append((mean_p, share, count))
    return Calibration(float(np.mean((p - y) ** 2)), ece, tuple(bins))


@dataclass(frozen=True)
class ClassificationReport:
    """Probability quality on one fold's test rows."""

    n: int
    auc: float
    logloss: float
    accuracy: float
    base_rate: float
    calibration: Calibration

    def as_dict(self) -> dict[str, float | int | None]:
        """Return the scalar figures (NaN as None)."""
        values: dict[str, float | int] = {
            "n": self.n,
            "auc": self.auc,
            "logloss": self.logloss,
            "accuracy": self.accuracy,
            "base_rate": self.base_rate,
            "brier": self.calibration.brier,
            "ece": self.calibration.ece,
        }
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in values.items()
        }


def classification_report(
    y: npt.NDArray[np.int64], p: Floats, weight: Floats | None = None
) -> ClassificationReport:
    """Return AUC, weighted log-loss, accuracy at 0.5, the base rate and the calibration."""
    n = int(y.shape[0])
    return ClassificationReport(
        n=n,
        auc=roc_auc(y, p),
        logloss=weighted_logloss(y, p, weight),
        accuracy=float(np.mean((p > 0.5) == (y == 1))) if n else math.nan,
        base_rate=float(np.mean(y)) if n else math.nan,
        calibration=calibration(y, p),
    )

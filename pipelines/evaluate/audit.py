"""Leakage audit: the same pipeline on data where no edge can exist must find none.

Two controls, each run through exactly the pipeline under test with fixed seeds:

(a) **Labels shuffled in blocks.** The targets (and their returns and weights) are moved in
    blocks of consecutive rows, so the features no longer say anything about them while their
    serial structure survives. A pipeline that still trades profitably is learning from
    something other than the features it was given.
(b) **A random walk.** Bars are rebuilt from the symbol's own bar-to-bar moves in a random
    order (:func:`random_walk_bars`): the same distribution of returns, bar shapes, spreads
    and volumes, with no predictability at all. The features are recomputed on it. A feature
    that reads the future keeps working here, and the audit catches it.

Verdict per control, on the out-of-sample returns at the 99% level: gross of costs the Sharpe
interval must contain 0, and after costs its lower bound must be at most 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from pipelines.evaluate import stats
from pipelines.evaluate.dataset import Floats, ResearchData
from pipelines.evaluate.summary import AuditRecord

AUDIT_LEVEL = 0.99


def block_shuffled_labels(data: ResearchData, *, block: int, seed: int) -> ResearchData:
    """Return ``data`` with its targets moved in shuffled blocks of ``block`` rows.

    The targets ``y``, their returns and weights travel together; features, timestamps,
    label windows and bars stay where they are, so purging and the backtest are unchanged.
    """
    n = data.n
    starts = np.arange(0, n, block)
    order = np.random.default_rng(seed).permutation(starts.shape[0])
    index = np.concatenate([np.arange(starts[i], min(starts[i] + block, n)) for i in order])
    return replace(data, y=data.y[index], returns=data.returns[index], weight=data.weight[index])


def random_walk_bars(bars: pl.DataFrame, *, seed: int) -> pl.DataFrame:
    """Return bars rebuilt from the same bars' moves in a random order.

    Bar t of the result takes the move and shape of bar π(t) of the input: with c the closes,
    c'ₜ = c'ₜ₋₁ · c_π/c_π₋₁, o'ₜ = c'ₜ₋₁ · o_π/c_π₋₁, h'ₜ = c'ₜ · h_π/c_π, l'ₜ = c'ₜ · l_π/c_π,
    starting from the first close; spread and volume move with their bar. OHLC consistency is
    kept (h' ≥ max(o', c') because h_π ≥ max(o_π, c_π)). Timestamps are unchanged.
    """
    close = bars["close"].to_numpy().astype(np.float64)
    n = close.shape[0]
    previous = np.r_[bars["open"][0], close[:-1]]
    pick = np.r_[0, 1 + np.random.default_rng(seed).permutation(n - 1)]
    move = close[pick] / previous[pick]
    move[0] = 1.0
    new_close = close[0] * np.cumprod(move)
    new_previous = np.r_[previous[0], new_close[:-1]]
    ratio = new_previous / previous[pick]
    columns: dict[str, Any] = {
        "ts": bars["ts"],
        "open": bars["open"].to_numpy()[pick] * ratio,
        "high": bars["high"].to_numpy()[pick] / close[pick] * new_close,
        "low": bars["low"].to_numpy()[pick] / close[pick] * new_close,
        "close": new_close,
    }
    columns["open"][0] = float(bars["open"][0])
    for name in bars.columns:
        if name not in columns:
            columns[name] = bars[name].gather(pick)
    return pl.DataFrame(columns).select(bars.columns).cast(bars.schema)


@dataclass(frozen=True)
class ControlVerdict:
    """One control's out-of-sample Sharpe intervals at 99% and whether it shows no edge."""

    name: str
    gross_ci: tuple[float, float]
    net_ci: tuple[float, float]
    gross_sharpe: float
    net_sharpe: float
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-ready values."""
        return {
            "control": self.name,
            "passed": self.passed,
            "reason": self.reason,
            "gross_sharpe": _finite(self.gross_sharpe),
            "gross_sharpe_ci_99": [_finite(v) for v in self.gross_ci],
            "net_sharpe": _finite(self.net_sharpe),
            "net_sharpe_ci_99": [_finite(v) for v in self.net_ci],
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def control_verdict(
    name: str, gross: Floats, net: Floats, *, bars_per_year: float, n_boot: int, seed: int
) -> ControlVerdict:
    """Judge one control: no edge if the gross 99% Sharpe interval holds 0 and the net one's low is ≤ 0."""
    g = stats.bootstrap_intervals(
        gross, bars_per_year=bars_per_year, level=AUDIT_LEVEL, n_boot=n_boot, seed=seed
    )["sharpe"]
    c = stats.bootstrap_intervals(
        net, bars_per_year=bars_per_year, level=AUDIT_LEVEL, n_boot=n_boot, seed=seed
    )["sharpe"]
    gross_flat = not np.any(gross)  # never traded: no edge, and no interval to speak of
    gross_ok = gross_flat or (g.low <= 0.0 <= g.high)
    net_ok = gross_flat or c.low <= 0.0
    problems = []
    if not gross_ok:
        problems.append(f"gross Sharpe 99% interval [{g.low:.2f}, {g.high:.2f}] excludes 0")
    if not net_ok:
        problems.append(f"after-cost Sharpe 99% interval starts above 0 at {c.low:.2f}")
    reason = "; ".join(problems) if problems else "no edge: as it should be"
    if gross_flat:
        reason = "the rule never traded: no edge"
    return ControlVerdict(
        name, (g.low, g.high), (c.low, c.high), g.estimate, c.estimate, not problems, reason
    )


@dataclass(frozen=True)
class AuditResult:
    """Both controls' verdicts; the audit passes only if both show no edge."""

    controls: tuple[ControlVerdict, ...]

    @property
    def passed(self) -> bool:
        """Return whether every control showed no edge."""
        return all(c.passed for c in self.controls)

    def as_dict(self) -> dict[str, Any]:
        """Return the audit as JSON-ready values."""
        return {"passed": self.passed, "controls": [c.as_dict() for c in self.controls]}

    def record(self) -> AuditRecord:
        """Return the audit as it leaves the engine."""
        return AuditRecord.model_validate(self.as_dict())


Runner = Callable[[str, ResearchData], tuple[Floats, Floats]]


def leakage_audit(
    shuffled: ResearchData,
    random_walk: ResearchData,
    run: Runner,
    *,
    bars_per_year: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> AuditResult:
    """Run the pipeline on both controls and judge them.

    ``run(name, data)`` runs the pipeline under test on ``data`` and returns its
    out-of-sample (gross, after-cost) per-bar returns.
    """
    verdicts = []
    for name, data in (("shuffled_labels", shuffled), ("random_walk", random_walk)):
        gross, net = run(name, data)
        verdicts.append(
            control_verdict(name, gross, net, bars_per_year=bars_per_year, n_boot=n_boot, seed=seed)
        )
    return AuditResult(tuple(verdicts))

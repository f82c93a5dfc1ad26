"""Drift of a model while it trades: its live inputs and P&L against what it was registered with.

:class:`DriftMonitor` is fed by :class:`~execution.model_signals.ModelSignals` with each batch's
feature rows (the model's inputs, in its order) and reads the session's equity once a batch
through a callable the service installs. It keeps, for the release trading:

- the bin of every value of the last ``psi_window`` rows (the window the reference's baselines
  were measured over), with running bin counts, so a check costs the PSI of counts, not a pass
  over the rows (the binning is compiled, as is the P&L window's pass). A window not yet full is judged against the baselines of the shortest window
  (``psi_min_window``, the ``min_bars`` of registration), and not at all below it;
- the per-bar returns of the session's equity over the band's window. Equity is read when a
  batch arrives, so it covers the bars before it: a one-bar batch (live, a paced replay) gives
  one bar's return; a batch of several bars (a replay's catch-up, a live backlog) leaves a gap,
  and the window starts again after it.

Every ``check_bars`` bars, once ``min_bars`` have been seen, it judges the window
(:meth:`DriftMonitor.check`):

- **warn**: a feature's PSI exceeds its baseline by ``psi_warn`` or more, or the window's
  Sharpe ratio is below the band's low quantile, or its maximum drawdown is deeper than the
  band's low quantile;
- **act**: a feature's PSI exceeds its baseline by ``psi_act`` or more, or both P&L checks fail;
- **ok** otherwise.

A level above the last one reported since the monitor was last ok goes to ``on_drift`` (one
warning, then one action, per episode). A release without a reference (registered before
drift references existed) is not monitored. On a reload the monitor starts again with the new
release's reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from core.settings import DriftSettings
from pipelines.evaluate.drift import DriftReference, PnlBand, PsiTable, window_figures

#: How many drifting features a check names, worst first.
SHOWN_FEATURES = 5


class DriftLevel(StrEnum):
    """How far a live model has drifted: nothing to do, tell the trader, or act."""

    OK = "ok"
    WARN = "warn"
    ACT = "act"

    @property
    def rank(self) -> int:
        """Return 0, 1 or 2 for ok, warn and act."""
        return _RANKS[self]


_RANKS = {DriftLevel.OK: 0, DriftLevel.WARN: 1, DriftLevel.ACT: 2}


@dataclass(frozen=True)
class DriftCheck:
    """One judgement of a live window.

    Attributes
    ----------
    label
        The release judged (``NAME v<version>``).
    level
        ok, warn or act.
    bars
        Bars the monitor has seen of this release.
    rows
        Feature rows in the PSI window.
    features
        The features whose PSI exceeds their baseline by ``psi_warn`` or more, worst first
        (at most :data:`SHOWN_FEATURES`): name, PSI, baseline.
    worst_excess
        The largest PSI in excess of its feature's baseline.
    sharpe, max_drawdown
        The annualized Sharpe ratio and the maximum drawdown of the last window of per-bar
        returns (None before there is a whole window, or without a band).
    band
        The band they are judged against.
    reasons
        Why the level is what it is, one sentence per failed check.
    """

    label: str
    level: DriftLevel
    bars: int
    rows: int
    features: tuple[tuple[str, float, float], ...]
    worst_excess: float
    sharpe: float | None
    max_drawdown: float | None
    band: PnlBand | None
    reasons: tuple[str, ...]

    @property
    def text(self) -> str:
        """Return the reasons as one sentence (``no drift`` when there are none)."""
        return "; ".join(self.reasons) or "no drift"


class DriftMonitor:
    """Watch a trading model's inputs and P&L against its drift reference.

    Parameters
    ----------
    settings
        The thresholds and windows (``[drift]``).
    equity
        Returns the session's equity now; read once a batch (None: no P&L checks).
    on_drift
        Called with a check whose level rose above the last one reported.
    """

    def __init__(
        self,
        settings: DriftSettings,
        *,
        equity: Callable[[], float] | None = None,
        on_drift: Callable[[DriftCheck], None] | None = None,
    ) -> None:
        self.settings = settings
        self.equity = equity
        self.on_drift = on_drift
        self.reference: DriftReference | None = None
        self.label = ""
        #: The last judgement made (None before the first).
        self.last: DriftCheck | None = None
        self._table: PsiTable | None = None
        self._reset()

    def _reset(self) -> None:
        table = self._table
        window = self.reference.psi_window if self.reference is not None else 1
        width = len(table.names) if table is not None else 0
        self._bins = np.zeros((window, width), dtype=np.intp)
        self._counts = np.zeros(table.size if table is not None else 0)
        self._filled = 0
        self._at = 0
        band = self.reference.band if self.reference is not None else None
        self._returns = np.zeros(band.window_bars if band is not None else 0)
        self._returns_filled = 0
        self._returns_at = 0
        self._equity: float | None = None
        self._batch = 0
        self._seen = 0
        self._since = 0
        self._reported = DriftLevel.OK
        self.last = None

    def start(self, reference: DriftReference | None, label: str) -> None:
        """Watch a (new) release from its first bar: ``reference`` None watches nothing."""
        self.reference = reference
        self.label = label
        self._table = None if reference is None else PsiTable(reference.features)
        self._reset()
        if self._table is not None:
            # Load the compiled kernels now rather than at the first bar and the first check.
            self._table.slide(np.zeros((0, self._bins.shape[1])), self._bins, self._counts, 0, 0)
            window_figures(np.zeros(2), 1.0)

    @property
    def active(self) -> bool:
        """Return whether the release trading has a reference to be judged against."""
        return self._table is not None

    def observe(self, X: np.ndarray) -> DriftCheck | None:
        """Take a batch's model inputs (rows in the model's order); return a check when due."""
        table = self._table
        n = int(X.shape[0])
        if table is None or n == 0:
            return None
        self._at, self._filled = table.slide(
            X[-self._bins.shape[0] :], self._bins, self._counts, self._at, self._filled
        )
        self._keep_equity(n)
        self._seen += n
        self._since += n
        if self._seen < self.settings.min_bars or self._since < self.settings.check_bars:
            return None
        self._since = 0
        check = self.check()
        self._report(check)
        return check

    def _keep_equity(self, n: int) -> None:
        if self.equity is None or self._returns.shape[0] == 0:
            return
        now = float(self.equity())
        before, bars = self._equity, self._batch
        self._equity, self._batch = now, n
        if before is None or not (math.isfinite(now) and before > 0.0):
            return
        if bars != 1:  # the equity before covered several bars: no per-bar return for them
            self._returns_filled = self._returns_at = 0
            return
        window = self._returns.shape[0]
        self._returns[self._returns_at] = now / before - 1.0
        self._returns_at = (self._returns_at + 1) % window
        self._returns_filled = min(self._returns_filled + 1, window)

    def check(self) -> DriftCheck:
        """Judge the window now (whatever the cadence), and keep it as :attr:`last`."""
        table, reference = self._table, self.reference
        settings = self.settings
        reasons: list[str] = []
        shown: tuple[tuple[str, float, float], ...] = ()
        worst = math.nan
        act = warn = False
        if table is not None and reference is not None and self._filled >= reference.psi_min_window:
            psi = table.psi_of_counts(self._counts, self._filled)
            whole = self._filled >= reference.psi_window
            excess = psi - (table.baselines if whole else table.short_baselines)
            worst = float(excess.max()) if excess.shape[0] else math.nan
            if worst >= settings.psi_warn:
                over = np.flatnonzero(excess >= settings.psi_warn)
                order = over[np.argsort(-excess[over])]
                shown = tuple(
                    (table.names[j], float(psi[j]), float(psi[j] - excess[j]))
                    for j in order[:SHOWN_FEATURES]
                )
                warn = True
                act = bool(worst >= settings.psi_act)
                named = ", ".join(f"{n} {p:.2f} (baseline {b:.2f})" for n, p, b in shown)
                more = over.shape[0] - len(shown)
                reasons.append(
                    f"PSI of {over.shape[0]} feature(s) over the last {self._filled} bars past "
                    f"their baseline by {settings.psi_warn:g} or more: {named}"
                    + (f" and {more} more" if more > 0 else "")
                )
        band = reference.band if reference is not None else None
        sharpe = drawdown = None
        returns_full = 0 < self._returns.shape[0] == self._returns_filled
        if band is not None and returns_full:
            # The ring's oldest return is at the next slot.
            sharpe, drawdown = window_figures(self._returns, band.bars_per_year, self._returns_at)
            low_sharpe = math.isfinite(sharpe) and sharpe < band.sharpe[0]
            deep = math.isfinite(drawdown) and drawdown < band.max_drawdown[0]
            quantile = f"{round(100 * band.low)}%"
            if low_sharpe:
                reasons.append(
                    f"Sharpe {sharpe:.2f} over the last {band.window_bars} bars below the band's "
                    f"{quantile} quantile {band.sharpe[0]:.2f}"
                )
            if deep:
                reasons.append(
                    f"max drawdown {drawdown:.2%} over the last {band.window_bars} bars deeper "
                    f"than the band's {quantile} quantile {band.max_drawdown[0]:.2%}"
                )
            warn = warn or low_sharpe or deep
            act = act or (low_sharpe and deep)
        level = DriftLevel.ACT if act else DriftLevel.WARN if warn else DriftLevel.OK
        check = DriftCheck(
            label=self.label, level=level, bars=self._seen, rows=self._filled, features=shown,
            worst_excess=worst, sharpe=sharpe, max_drawdown=drawdown, band=band,
            reasons=tuple(reasons),
        )  # fmt: skip
        self.last = check
        return check

    def _report(self, check: DriftCheck) -> None:
        if check.level is DriftLevel.OK:
            self._reported = DriftLevel.OK
            return
        if check.level.rank > self._reported.rank:
            self._reported = check.level
            if self.on_drift is not None:
                self.on_drift(check)

"""The drift monitor: levels from PSI and P&L, one report per episode, and its place in the
model's signals (fed each batch, restarted on a reload)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from core.settings import DriftSettings
from execution.drift import DriftCheck, DriftLevel, DriftMonitor
from execution.feeds import slice_batch
from execution.model_signals import ModelSignals
from pipelines.evaluate.drift import (
    DriftReference,
    PnlBand,
    PsiTable,
    drift_reference,
    reference_bins,
)

from .test_live_features import batch_of, hourly
from .test_model_signals import VERSION, Source, features, release

HOUR_NS = 3_600_000_000_000
NAMES = ("a", "b", "c")


def training(n: int = 2_000, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, len(NAMES)))


@functools.cache
def _reference() -> DriftReference:
    X = training()
    return drift_reference(
        X, NAMES, np.arange(X.shape[0]) * HOUR_NS, psi_window=200, psi_min_window=50,
        bars_per_year=6_240.0, window_days=20,
    )  # fmt: skip


def reference(band: PnlBand | None = None) -> DriftReference:
    return _reference().model_copy(update={"band": band})


def band(window: int = 100) -> PnlBand:
    return PnlBand(
        window_bars=window, bars_per_year=6_240.0, low=0.05, high=0.95, sharpe=(-3.0, 6.0),
        max_drawdown=(-0.02, -0.002), block=2.0, n_boot=1_000, seed=0, returns=2_000,
    )  # fmt: skip


SETTINGS = DriftSettings(min_bars=50, check_bars=10, window_bars=200)


class Equity:
    """An account whose equity moves by the given per-bar returns, one bar a read."""

    def __init__(self, returns: np.ndarray) -> None:
        self.returns = list(returns)
        self.value = 10_000.0

    def __call__(self) -> float:
        if self.returns:
            self.value *= 1.0 + self.returns.pop(0)
        return self.value


def feed(monitor: DriftMonitor, X: np.ndarray) -> list[DriftCheck]:
    """Feed rows one bar at a time; return the checks made."""
    made = [monitor.observe(X[i : i + 1]) for i in range(X.shape[0])]
    return [c for c in made if c is not None]


def test_rows_like_training_stay_ok_and_report_nothing() -> None:
    # Arrange
    told: list[DriftCheck] = []
    monitor = DriftMonitor(SETTINGS, on_drift=told.append)
    monitor.start(reference(), "m v1")

    # Act
    checks = feed(monitor, training(600, seed=2))

    # Assert: a check every 10 bars from the 50th
    assert len(checks) == 56 and checks[0].bars == 50
    assert {c.level for c in checks} == {DriftLevel.OK}
    assert not told
    assert checks[-1].rows == 200 and checks[-1].text == "no drift"


def test_a_shifted_feature_acts_once_and_names_the_feature() -> None:
    # Arrange
    told: list[DriftCheck] = []
    monitor = DriftMonitor(SETTINGS, on_drift=told.append)
    monitor.start(reference(), "m v1")
    live = training(400, seed=3)
    live[:, 1] += 3.0

    # Act
    checks = feed(monitor, live)

    # Assert
    assert checks[0].level is DriftLevel.ACT
    assert [c.level for c in told] == [DriftLevel.ACT]
    check = told[0]
    assert check.label == "m v1" and check.features[0][0] == "b"
    assert check.worst_excess >= SETTINGS.psi_act
    assert "PSI of 1 feature(s) over the last 50 bars" in check.text and "b " in check.text


def test_a_moderate_shift_warns_once_until_the_window_is_ok_again() -> None:
    # Arrange: acting needs an excess of 100, so a shift only warns
    settings = SETTINGS.model_copy(update={"psi_act": 100.0})
    told: list[DriftCheck] = []
    monitor = DriftMonitor(settings, on_drift=told.append)
    monitor.start(reference(), "m v1")
    shifted = training(300, seed=4)
    shifted[:, 0] += 2.0

    # Act: drift, back to normal for a whole window, drift again
    feed(monitor, shifted)
    calm = feed(monitor, training(400, seed=5))
    feed(monitor, shifted)

    # Assert
    assert [c.level for c in told] == [DriftLevel.WARN, DriftLevel.WARN]
    assert calm[-1].level is DriftLevel.OK


def test_running_bin_counts_give_the_psi_of_the_last_window() -> None:
    # Arrange
    ref = reference()
    monitor = DriftMonitor(SETTINGS)
    monitor.start(ref, "m v1")
    live = training(700, seed=6) * np.array([1.0, 1.5, 0.7])
    live[::17, 2] = np.nan

    # Act: one bar at a time, then a batch of several bars
    feed(monitor, live[:650])
    monitor.observe(live[650:])
    check = monitor.check()

    # Assert
    table = PsiTable(ref.features)
    psi = table.psi(live[-200:])
    excess = psi - table.baselines
    assert check.rows == 200
    assert check.worst_excess == pytest.approx(float(excess.max()), rel=1e-12)
    assert [name for name, _, _ in check.features] == [
        NAMES[j] for j in np.argsort(-excess) if excess[j] >= SETTINGS.psi_warn
    ]


def test_pnl_below_the_band_warns_on_one_check_and_acts_on_both() -> None:
    # Arrange: windows of 100 bars; the features never drift
    rows = training(400, seed=7)
    rng = np.random.default_rng(8)
    weak = rng.normal(-2e-5, 1e-4, 400)  # a Sharpe far below -3, a drawdown of a few tenths %
    falling = rng.normal(-3e-4, 2e-5, 400)  # as low a Sharpe, 3% lost in 100 bars

    def run(returns: np.ndarray) -> list[DriftCheck]:
        told: list[DriftCheck] = []
        monitor = DriftMonitor(SETTINGS, equity=Equity(returns), on_drift=told.append)
        monitor.start(reference(band()), "m v1")
        feed(monitor, rows)
        return told

    # Act
    warned, acted = run(weak), run(falling)

    # Assert
    assert [c.level for c in warned] == [DriftLevel.WARN]
    check = warned[0]
    assert check.sharpe is not None and check.sharpe < -3.0
    assert check.max_drawdown is not None and check.max_drawdown >= -0.02
    assert "Sharpe" in check.text and "below the band's 5% quantile -3.00" in check.text
    assert [c.level for c in acted] == [DriftLevel.ACT]
    assert acted[0].max_drawdown is not None and acted[0].max_drawdown < -0.02
    assert "deeper than the band's 5% quantile -2.00%" in acted[0].text


def test_a_batch_of_several_bars_leaves_a_gap_the_pnl_window_starts_again_after() -> None:
    # Arrange
    monitor = DriftMonitor(SETTINGS, equity=Equity(np.full(1_000, -5e-4)))
    monitor.start(reference(band()), "m v1")
    rows = training(400, seed=9)

    # Act: 150 single bars (a whole P&L window), then a batch of 20, then 60 single bars
    feed(monitor, rows[:150])
    before = monitor.check()
    monitor.observe(rows[150:170])
    feed(monitor, rows[170:230])
    after = monitor.check()

    # Assert
    assert before.sharpe is not None
    assert after.sharpe is None and after.max_drawdown is None


def test_a_release_without_a_reference_is_not_monitored() -> None:
    # Arrange
    monitor = DriftMonitor(SETTINGS, on_drift=lambda c: pytest.fail("nothing to report"))
    monitor.start(None, "m v1")

    # Act
    made = feed(monitor, training(300, seed=10) + 5.0)

    # Assert
    assert not monitor.active and made == []


def test_model_signals_feed_the_monitor_the_model_inputs_and_restart_it_on_a_reload() -> None:
    # Arrange: a reference over the live features of the first 400 bars
    bars = batch_of(hourly(900, seed=11))
    names = ("rsi_14", "log_return_1")  # not the order of the live columns
    live = features()
    index = [live.columns.index(n) for n in names]
    X = live.push(slice_batch(bars, 0, 460))[:, index]
    ref = DriftReference(
        features=reference_bins(X[50:400], names), rows=350, psi_window=200, psi_min_window=50,
        first="2020-01-01T00:00:00Z", last="2020-01-20T00:00:00Z",
    )  # fmt: skip
    first = dataclasses.replace(release(1, names), drift=ref)
    second = dataclasses.replace(release(2, names), drift=None)
    source = Source()
    monitor = DriftMonitor(SETTINGS)
    signals = ModelSignals(
        features(), first, feature_set_version=VERSION, source=source, drift=monitor
    )

    # Act
    signals(slice_batch(bars, 0, 400))
    for i in range(400, 460):
        signals(slice_batch(bars, i, i + 1))
    judged = monitor.last
    source.queue.append(second)
    signals(slice_batch(bars, 460, 461))

    # Assert: the last check saw the last 200 rows of the model's inputs, in its order
    assert judged is not None and judged.label == "m v1" and judged.bars == 460
    assert judged.rows == 200
    excess = PsiTable(ref.features).psi(X[260:460])
    assert judged.worst_excess == pytest.approx(float(excess.max()), rel=1e-12)
    assert monitor.label == "m v2" and not monitor.active and monitor.last is None

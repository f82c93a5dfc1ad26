"""Drift math: decile bins, the population stability index, baselines and the P&L band."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import UsageError
from pipelines.evaluate.drift import (
    PSI_FLOOR,
    DriftReference,
    PsiTable,
    bars_per_day,
    bin_counts,
    decile_bins,
    drift_reference,
    feature_psi,
    pnl_band,
    population_stability,
    psi_baselines,
    reference_bins,
    stationary_windows,
    window_figures,
)
from pipelines.evaluate.stats import bootstrap_intervals

HOUR_NS = 3_600_000_000_000


# -- bins -------------------------------------------------------------------------------------


def test_bin_counts_put_a_value_on_an_edge_in_the_bin_below_and_missing_values_last() -> None:
    # Act
    counts = bin_counts(np.array([1.0, 2.0, 2.5, 3.0, np.nan, np.inf]), [2.0, 3.0])

    # Assert: (-inf, 2] holds 1 and 2; (2, 3] holds 2.5 and 3; (3, inf) nothing; 2 missing
    assert counts.tolist() == [2.0, 2.0, 0.0, 2.0]


def test_decile_bins_of_a_uniform_feature_hold_a_tenth_each_and_no_missing_share() -> None:
    # Arrange
    values = np.arange(1.0, 101.0)

    # Act
    bins = decile_bins(values, "x")

    # Assert
    assert len(bins.edges) == 9
    assert bins.shares == pytest.approx([0.1] * 10 + [0.0])
    assert sum(bins.shares) == pytest.approx(1.0)


def test_decile_bins_of_a_flag_collapse_repeated_edges_and_count_nan_apart() -> None:
    # Arrange: 60 zeros, 20 ones, 20 missing
    values = np.r_[np.zeros(60), np.ones(20), np.full(20, np.nan)]

    # Act
    bins = decile_bins(values, "flag")

    # Assert: the finite deciles are 0 (x7) and 1 (x2): edges 0 and 1
    assert bins.edges == (0.0, 1.0)
    assert bins.shares == pytest.approx([0.6, 0.2, 0.0, 0.2])


def test_decile_bins_of_a_feature_never_finite_have_only_the_missing_bin_filled() -> None:
    # Act
    bins = decile_bins(np.full(5, np.nan), "gone")

    # Assert
    assert bins.edges == ()
    assert bins.shares == (0.0, 1.0)
    with pytest.raises(UsageError, match="no training rows"):
        decile_bins(np.zeros(0), "empty")


# -- PSI --------------------------------------------------------------------------------------


def test_psi_of_a_hand_worked_pair_of_shares() -> None:
    # Arrange: (0.25 - 0.5) ln(0.5) + (0.75 - 0.5) ln(1.5) = 0.25 ln 3
    expected, actual = np.array([0.5, 0.5]), np.array([0.25, 0.75])

    # Act
    psi = population_stability(expected, actual)

    # Assert
    assert psi == pytest.approx(0.25 * math.log(3.0), rel=1e-12)


def test_psi_floors_an_empty_bin_so_it_stays_finite() -> None:
    # Arrange: the third bin is empty in training and holds 10% live
    expected, actual = np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.4, 0.1])

    # Act
    psi = population_stability(expected, actual)

    # Assert
    by_hand = -0.1 * math.log(0.8) + (0.1 - PSI_FLOOR) * math.log(0.1 / PSI_FLOOR)
    assert psi == pytest.approx(by_hand, rel=1e-12)
    assert math.isfinite(psi)
    with pytest.raises(UsageError, match="3 expected bins against 2"):
        population_stability(expected, actual[:2])


def test_psi_is_zero_for_the_same_values_and_small_for_the_same_distribution() -> None:
    # Arrange
    rng = np.random.default_rng(7)
    training = rng.normal(0.0, 1.0, 20_000)
    bins = decile_bins(training, "x")

    # Act
    same = feature_psi(bins, training)
    fresh = feature_psi(bins, rng.normal(0.0, 1.0, 5_000))

    # Assert
    assert same == pytest.approx(0.0, abs=1e-12)
    assert 0.0 <= fresh < 0.01


def test_psi_is_large_for_a_shifted_distribution_and_for_values_gone_missing() -> None:
    # Arrange
    rng = np.random.default_rng(8)
    bins = decile_bins(rng.normal(0.0, 1.0, 20_000), "x")
    live = rng.normal(0.0, 1.0, 5_000)

    # Act
    shifted = feature_psi(bins, live + 1.5)
    missing = feature_psi(bins, np.where(np.arange(5_000) % 2 == 0, np.nan, live))

    # Assert
    assert shifted > 1.0
    assert missing > 1.0


def test_psi_table_gives_each_feature_its_own_psi_whatever_its_number_of_bins() -> None:
    # Arrange: a continuous feature, a flag with NaNs, a feature never finite
    rng = np.random.default_rng(9)
    n = 3_000
    training = np.column_stack(
        [
            rng.normal(size=n),
            np.where(rng.random(n) < 0.1, np.nan, (rng.random(n) < 0.3).astype(float)),
            np.full(n, np.nan),
        ]
    )
    live = np.column_stack(
        [rng.normal(0.5, 1.0, 400), (rng.random(400) < 0.6).astype(float), rng.normal(size=400)]
    )
    names = ("x", "flag", "gone")
    bins = reference_bins(training, names)
    table = PsiTable(bins)

    # Act
    together = table.psi(live)

    # Assert
    alone = [feature_psi(b, live[:, j]) for j, b in enumerate(bins)]
    assert together == pytest.approx(alone, rel=1e-12)
    assert table.psi_of_counts(table.counts(live), live.shape[0]) == pytest.approx(alone)
    with pytest.raises(UsageError, match="3 monitored features"):
        table.psi(live[:, :2])


def test_psi_baselines_are_small_for_iid_values_and_large_for_a_slow_feature() -> None:
    # Arrange: white noise beside a slow random walk, 2,000 rows
    rng = np.random.default_rng(10)
    noise = rng.normal(size=2_000)
    walk = np.cumsum(rng.normal(size=2_000))
    X = np.column_stack([noise, walk])

    bins = reference_bins(X, ("noise", "walk"))

    # Act
    baselines = psi_baselines(X, bins, window=400)

    # Assert
    assert baselines[0] < 0.2
    assert baselines[1] > 1.0
    by_hand = 0.0
    for start in range(0, 1_601, 40):  # the walk's windows against the rows outside them
        rest = np.r_[walk[:start], walk[start + 400 :]]
        edges = bins[1].edges
        expected = bin_counts(rest, edges) / rest.shape[0]
        actual = bin_counts(walk[start : start + 400], edges) / 400
        by_hand = max(by_hand, population_stability(expected, actual))
    assert baselines[1] == pytest.approx(by_hand, rel=1e-12)
    few = psi_baselines(X[:300], reference_bins(X[:300], ("noise", "walk")), window=400)
    assert few.tolist() == [0.0, 0.0]


# -- P&L band ---------------------------------------------------------------------------------


def test_bars_per_day_is_the_median_count_per_utc_date() -> None:
    # Arrange: a Sunday evening of 2 bars, then three whole days of 24 H1 bars
    sunday = np.array([22, 23]) * HOUR_NS
    days = 24 * HOUR_NS + np.arange(72) * HOUR_NS

    # Act / Assert
    assert bars_per_day(np.r_[sunday, days]) == 24.0
    assert bars_per_day(np.arange(10) * 24 * HOUR_NS) == 1.0


def test_stationary_windows_are_blocks_of_consecutive_bars_of_the_mean_length() -> None:
    # Act
    index = stationary_windows(1_000, 500, 200, block=10.0, seed=3)
    iid = stationary_windows(1_000, 500, 200, block=1.0, seed=3)

    # Assert
    assert index.shape == (200, 500) and index.min() >= 0 and index.max() < 1_000
    steps = np.diff(index, axis=1)
    continued = np.mean((steps == 1) | (steps == -999))
    assert continued == pytest.approx(0.9, abs=0.01)
    assert np.mean(np.diff(iid, axis=1) == 1) < 0.01
    assert np.array_equal(index, stationary_windows(1_000, 500, 200, block=10.0, seed=3))


def test_window_figures_are_those_bootstrap_intervals_estimates() -> None:
    # Arrange
    returns = np.random.default_rng(11).normal(2e-4, 0.004, 600)

    # Act
    sharpe, drawdown = window_figures(returns, bars_per_year=6_240.0)

    # Assert
    intervals = bootstrap_intervals(returns, bars_per_year=6_240.0, n_boot=20, block=1.0)
    assert sharpe == pytest.approx(intervals["sharpe"].estimate, rel=1e-12)
    assert drawdown == pytest.approx(intervals["max_drawdown"].estimate, rel=1e-12)
    assert all(math.isnan(v) for v in window_figures(returns[:1], 6_240.0))
    ring = np.roll(returns, 137)  # the oldest return now sits at 137
    assert window_figures(ring, 6_240.0, start=137) == (sharpe, drawdown)


def test_pnl_band_holds_the_realised_figures_of_iid_windows_most_of_the_time() -> None:
    # Arrange: the walk-forward's returns and 300 later windows from the same distribution
    rng = np.random.default_rng(12)
    history = rng.normal(1e-4, 0.003, 4_000)
    later = rng.normal(1e-4, 0.003, (300, 480))

    # Act
    band = pnl_band(history, window_bars=480, bars_per_year=6_240.0, n_boot=1_000, seed=5)
    figures = np.array([window_figures(w, 6_240.0) for w in later])

    # Assert: a 5-95% band holds about 90% of windows
    sharpe_in = np.mean((figures[:, 0] >= band.sharpe[0]) & (figures[:, 0] <= band.sharpe[1]))
    drawdown_in = np.mean(
        (figures[:, 1] >= band.max_drawdown[0]) & (figures[:, 1] <= band.max_drawdown[1])
    )
    assert 0.8 <= sharpe_in <= 0.97
    assert 0.8 <= drawdown_in <= 0.97
    assert band.max_drawdown[0] < band.max_drawdown[1] <= 0.0
    assert band.window_bars == 480 and band.returns == 4_000 and band.block >= 1.0


def test_pnl_band_is_deterministic_for_a_seed_and_refuses_bad_input() -> None:
    # Arrange
    history = np.random.default_rng(13).normal(0.0, 0.002, 1_000)

    # Act
    first = pnl_band(history, window_bars=100, bars_per_year=252.0, n_boot=200, seed=1)
    again = pnl_band(history, window_bars=100, bars_per_year=252.0, n_boot=200, seed=1)
    other = pnl_band(history, window_bars=100, bars_per_year=252.0, n_boot=200, seed=2)

    # Assert
    assert first == again
    assert first.sharpe != other.sharpe
    with pytest.raises(UsageError, match="at least 2"):
        pnl_band(history[:1], window_bars=100, bars_per_year=252.0)
    with pytest.raises(UsageError, match="finite and at least -1"):
        pnl_band(np.r_[history, -1.5], window_bars=100, bars_per_year=252.0)


# -- the reference ----------------------------------------------------------------------------


def test_drift_reference_round_trips_through_json_and_skips_a_band_without_enough_returns() -> None:
    # Arrange: 600 hourly training rows of two features; 1,200 out-of-sample hourly returns
    rng = np.random.default_rng(14)
    ts = np.arange(600) * HOUR_NS
    X = np.column_stack([rng.normal(size=600), np.cumsum(rng.normal(size=600))])
    returns = rng.normal(0.0, 0.002, 1_200)
    oos_ts = (600 + np.arange(1_200)) * HOUR_NS

    # Act
    reference = drift_reference(
        X, ("a", "b"), ts, psi_window=200, psi_min_window=50, oos_returns=returns,
        oos_ts=oos_ts, bars_per_year=6_240.0, window_days=20, n_boot=200, seed=3,
    )  # fmt: skip
    short = drift_reference(
        X, ("a", "b"), ts, psi_window=200, psi_min_window=50, oos_returns=returns[:900],
        oos_ts=oos_ts[:900], bars_per_year=6_240.0, window_days=20, n_boot=200,
    )  # fmt: skip

    # Assert
    assert reference.names == ("a", "b") and reference.rows == 600
    assert reference.first == "1970-01-01T00:00:00Z" and reference.last == "1970-01-25T23:00:00Z"
    assert reference.band is not None and reference.band.window_bars == 480
    assert reference.psi_window == 200 and reference.psi_min_window == 50
    walk = reference.features[1]
    assert walk.baseline > 1.0 and walk.short_baseline > 1.0  # a random walk moves in any window
    assert DriftReference.from_json(reference.to_json()) == reference
    assert short.band is None  # 900 returns are fewer than two windows of 480
    with pytest.raises(UsageError, match="run 1's reference is not a drift reference"):
        DriftReference.from_json('{"rows": 3}', "run 1's reference")

"""Out-of-sample statistics against published examples, hand-worked figures and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from core.errors import UsageError
from pipelines.backtest.metrics import drawdown
from pipelines.evaluate.stats import (
    EULER_GAMMA,
    Interval,
    bootstrap_intervals,
    deflated_sharpe_from_stats,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    min_track_record_length,
    newey_west_ttest,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    psr,
    sharpe_interval,
    sharpe_per_bar,
    spa_test,
)

# Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", section "A numerical example":
# 250 observations a year, so per-bar Sharpe = annual / √250 and per-bar variance = annual / 250.
PAPER_SHARPE = 2.5 / math.sqrt(250.0)
PAPER_VARIANCE = 0.5 / 250.0


def _ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 0.01, n)
    out = np.empty(n)
    out[0] = shocks[0]
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return out + 2e-4


# --- Sharpe, PSR, DSR, MinTRL -----------------------------------------------------------------


def test_sharpe_per_bar_hand_computed_series_matches_formula() -> None:
    # Arrange: mean 0.03; squared deviations sum to 0.058, variance 0.0145 (ddof 1).
    returns = np.array([0.1, -0.1, 0.2, 0.0, -0.05])

    # Act
    result = sharpe_per_bar(returns)

    # Assert
    assert result == pytest.approx(0.03 / math.sqrt(0.0145), rel=1e-12)


@pytest.mark.parametrize("returns", [np.array([0.01]), np.array([]), np.full(10, 0.002)])
def test_sharpe_per_bar_short_or_constant_returns_nan(returns: np.ndarray) -> None:
    # Arrange / Act
    result = sharpe_per_bar(returns)

    # Assert
    assert math.isnan(result)


def test_sharpe_per_bar_non_finite_value_raises_usage_error() -> None:
    # Arrange
    returns = np.array([0.01, np.nan, 0.02])

    # Act / Assert
    with pytest.raises(UsageError, match=r"returns\[1\] is nan"):
        sharpe_per_bar(returns)


def test_sharpe_per_bar_matrix_raises_usage_error() -> None:
    # Arrange / Act / Assert
    with pytest.raises(UsageError, match="one-dimensional"):
        sharpe_per_bar(np.zeros((3, 2)))


def test_expected_max_sharpe_paper_example_matches_published_hurdle() -> None:
    """Bailey & López de Prado, "The Deflated Sharpe Ratio" (JPM 2014), "A numerical example".

    N = 100 trials whose annualized Sharpe ratios have variance 1/2, i.e. V = 0.5/250 per day:
    SR₀ = √0.002·((1 − γ)·Φ⁻¹(0.99) + γ·Φ⁻¹(1 − 1/(100e))) = 0.1132 per day (published).
    """
    # Arrange / Act
    hurdle = expected_max_sharpe(100, PAPER_VARIANCE)

    # Assert
    assert hurdle == pytest.approx(0.1132, abs=5e-5)


def test_deflated_sharpe_from_stats_paper_example_matches_published_dsr() -> None:
    """Bailey & López de Prado, "The Deflated Sharpe Ratio" (JPM 2014), "A numerical example".

    Annualized SR 2.5 over 5 years of daily returns (T = 1250, 250 a year), skewness −3,
    kurtosis 10, N = 100 trials with annualized Sharpe variance 1/2: DSR = 0.9004; with N = 46
    trials the paper reports DSR = 0.9505, just above the 95% threshold.
    """
    # Arrange
    n, skew, kurtosis = 1250, -3.0, 10.0

    # Act
    hundred = deflated_sharpe_from_stats(PAPER_SHARPE, n, skew, kurtosis, 100, PAPER_VARIANCE)
    forty_six = deflated_sharpe_from_stats(PAPER_SHARPE, n, skew, kurtosis, 46, PAPER_VARIANCE)

    # Assert
    assert hundred == pytest.approx(0.9004, abs=5e-5)
    assert forty_six == pytest.approx(0.9505, abs=5e-5)


def test_probabilistic_sharpe_ratio_paper_example_against_hurdle_equals_dsr() -> None:
    """The DSR of the paper's example is the PSR against SR₀ = 0.1132 per day (same section)."""
    # Arrange
    hurdle = expected_max_sharpe(100, PAPER_VARIANCE)

    # Act
    against_hurdle = probabilistic_sharpe_ratio(PAPER_SHARPE, 1250, -3.0, 10.0, benchmark=hurdle)
    against_zero = probabilistic_sharpe_ratio(PAPER_SHARPE, 1250, -3.0, 10.0)

    # Assert
    assert against_hurdle == pytest.approx(0.9004, abs=5e-5)
    assert against_zero > against_hurdle


def test_probabilistic_sharpe_ratio_normal_moments_hand_computed() -> None:
    # Arrange: SR 0.05 per bar, n 1001, normal (γ₃ 0, γ₄ 3):
    # z = 0.05·√1000 / √(1 + (3 − 1)/4·0.05²) = 1.5811388 / 1.000625 = 1.5801515, Φ(z) = 0.9429639.

    # Act
    result = probabilistic_sharpe_ratio(0.05, 1001, 0.0, 3.0)

    # Assert
    assert result == pytest.approx(0.9429639, abs=1e-7)


def test_probabilistic_sharpe_ratio_zero_edge_gives_one_half() -> None:
    # Arrange / Act
    result = probabilistic_sharpe_ratio(0.1, 500, -1.0, 6.0, benchmark=0.1)

    # Assert
    assert result == 0.5


def test_probabilistic_sharpe_ratio_excess_kurtosis_below_one_raises_usage_error() -> None:
    # Arrange / Act / Assert
    with pytest.raises(UsageError, match="non-excess kurtosis"):
        probabilistic_sharpe_ratio(0.1, 500, 0.0, 0.0)


def test_probabilistic_sharpe_ratio_one_return_raises_usage_error() -> None:
    # Arrange / Act / Assert
    with pytest.raises(UsageError, match="n is 1"):
        probabilistic_sharpe_ratio(0.1, 1, 0.0, 3.0)


@settings(max_examples=60, deadline=None)
@given(
    sharpe=st.floats(-0.5, 0.5),
    benchmark=st.floats(-0.2, 0.2),
    skew=st.floats(-3.0, 3.0),
    extra=st.floats(0.0, 20.0),
    n=st.integers(2, 5000),
)
def test_probabilistic_sharpe_ratio_more_bars_moves_away_from_one_half(
    sharpe: float, benchmark: float, skew: float, extra: float, n: int
) -> None:
    # Arrange: Pearson's bound γ₄ ≥ γ₃² + 1 holds for every distribution.
    kurtosis = skew**2 + 1.0 + extra

    # Act
    shorter = probabilistic_sharpe_ratio(sharpe, n, skew, kurtosis, benchmark)
    longer = probabilistic_sharpe_ratio(sharpe, n + 50, skew, kurtosis, benchmark)

    # Assert: more evidence for the side the observed Sharpe is on.
    if math.isnan(shorter):
        assert math.isnan(longer)
    elif sharpe > benchmark:
        assert longer >= shorter
    elif sharpe < benchmark:
        assert longer <= shorter
    else:
        assert longer == shorter == 0.5


def test_psr_series_uses_biased_moments() -> None:
    # Arrange: a right-skewed, fat-tailed series; moments by hand, mₖ = mean((r − r̄)ᵏ).
    rng = np.random.default_rng(7)
    returns = rng.lognormal(0.0, 0.5, 400) * 0.01 - 0.0105
    centred = returns - returns.mean()
    m2, m3, m4 = (float(np.mean(centred**k)) for k in (2, 3, 4))
    sharpe = returns.mean() / returns.std(ddof=1)

    # Act
    result = psr(returns, benchmark=0.01)

    # Assert
    expected = probabilistic_sharpe_ratio(sharpe, 400, m3 / m2**1.5, m4 / m2**2, 0.01)
    assert result == pytest.approx(expected, rel=1e-12)


def test_psr_constant_returns_nan() -> None:
    # Arrange / Act
    result = psr(np.full(50, 0.001))

    # Assert
    assert math.isnan(result)


def test_deflated_sharpe_ratio_one_trial_equals_psr_against_zero() -> None:
    # Arrange
    returns = np.random.default_rng(3).normal(4e-4, 0.01, 750)

    # Act
    deflated = deflated_sharpe_ratio(returns, 1, 1e-3)
    probabilistic = psr(returns)

    # Assert
    assert deflated == probabilistic


def test_deflated_sharpe_ratio_many_trials_below_psr() -> None:
    # Arrange
    returns = np.random.default_rng(4).normal(6e-4, 0.01, 750)

    # Act
    deflated = deflated_sharpe_ratio(returns, 50, 4e-4)
    probabilistic = psr(returns)

    # Assert
    assert deflated < probabilistic


@settings(max_examples=60, deadline=None)
@given(
    sharpe=st.floats(-0.3, 0.3),
    n=st.integers(2, 3000),
    skew=st.floats(-2.0, 2.0),
    extra=st.floats(0.0, 10.0),
    n_trials=st.integers(2, 10_000),
    variance=st.floats(1e-6, 1e-2),
)
def test_deflated_sharpe_from_stats_several_trials_never_above_psr(
    sharpe: float, n: int, skew: float, extra: float, n_trials: int, variance: float
) -> None:
    # Arrange
    kurtosis = skew**2 + 1.0 + extra

    # Act
    deflated = deflated_sharpe_from_stats(sharpe, n, skew, kurtosis, n_trials, variance)
    probabilistic = probabilistic_sharpe_ratio(sharpe, n, skew, kurtosis)

    # Assert: strictly lower unless Φ has saturated at 1 in float64.
    assert deflated <= probabilistic
    if probabilistic < 1.0 - 1e-9:
        assert deflated < probabilistic


@settings(max_examples=50, deadline=None)
@given(n_trials=st.integers(1, 10**6), variance=st.floats(1e-8, 1.0))
def test_expected_max_sharpe_more_trials_higher_hurdle(n_trials: int, variance: float) -> None:
    # Arrange / Act
    fewer = expected_max_sharpe(n_trials, variance)
    more = expected_max_sharpe(n_trials + 1, variance)

    # Assert
    assert more > fewer >= 0.0


def test_expected_max_sharpe_one_trial_is_zero() -> None:
    # Arrange / Act / Assert
    assert expected_max_sharpe(1, 0.3) == 0.0


def test_expected_max_sharpe_close_to_simulated_maximum() -> None:
    # Arrange: mean maximum of 100 standard normals, 4,000 draws (the formula is an
    # extreme-value approximation: about 1% above the simulated 2.50).
    rng = np.random.default_rng(0)
    simulated = float(rng.standard_normal((4000, 100)).max(axis=1).mean())

    # Act
    formula = expected_max_sharpe(100, 1.0)

    # Assert
    assert formula == pytest.approx(simulated, rel=0.02)
    assert formula == pytest.approx(
        (1 - EULER_GAMMA) * scipy_stats.norm.ppf(0.99)
        + EULER_GAMMA * scipy_stats.norm.ppf(1 - 1 / (100 * math.e)),
        rel=1e-12,
    )


@pytest.mark.parametrize(("n_trials", "variance"), [(0, 0.1), (5, -0.1), (5, math.nan)])
def test_expected_max_sharpe_bad_input_raises_usage_error(n_trials: int, variance: float) -> None:
    # Arrange / Act / Assert
    with pytest.raises(UsageError, match=r"n_trials is 0|variance is"):
        expected_max_sharpe(n_trials, variance)


def test_min_track_record_length_normal_returns_hand_computed() -> None:
    # Arrange: SR 0.1 per bar, normal, SR* 0, 95%:
    # 1 + (1 + (3 − 1)/4·0.01)·(1.6448536 / 0.1)² = 1 + 1.005·270.5543 = 272.9071 bars.

    # Act
    result = min_track_record_length(0.1, 0.0, 3.0)

    # Assert
    assert result == pytest.approx(272.907117, abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    sharpe=st.floats(0.02, 0.5),
    edge=st.floats(0.01, 0.5),
    skew=st.floats(-2.0, 2.0),
    extra=st.floats(0.0, 10.0),
    confidence=st.floats(0.6, 0.99),
)
def test_min_track_record_length_psr_reaches_confidence_exactly_there(
    sharpe: float, edge: float, skew: float, extra: float, confidence: float
) -> None:
    # Arrange
    kurtosis = skew**2 + 1.0 + extra
    benchmark = sharpe - edge

    # Act
    length = min_track_record_length(sharpe, skew, kurtosis, benchmark, confidence)
    assume(length >= 2.0)
    # PSR's formula holds for a fractional n; its signature asks for whole bars.
    at_length = probabilistic_sharpe_ratio(sharpe, length, skew, kurtosis, benchmark)  # type: ignore[arg-type]
    shorter = probabilistic_sharpe_ratio(
        sharpe, max(2, math.floor(length) - 1), skew, kurtosis, benchmark
    )
    longer = probabilistic_sharpe_ratio(sharpe, math.ceil(length), skew, kurtosis, benchmark)

    # Assert
    assert at_length == pytest.approx(confidence, abs=1e-9)
    assert longer >= confidence - 1e-12
    if length > 3:
        assert shorter < confidence


@pytest.mark.parametrize("sharpe", [0.05, 0.04])
def test_min_track_record_length_no_edge_infinite(sharpe: float) -> None:
    # Arrange / Act
    result = min_track_record_length(sharpe, 0.0, 3.0, benchmark=0.05)

    # Assert
    assert result == math.inf


def test_min_track_record_length_confidence_out_of_range_raises_usage_error() -> None:
    # Arrange / Act / Assert
    with pytest.raises(UsageError, match=r"confidence is 1\.5"):
        min_track_record_length(0.1, 0.0, 3.0, confidence=1.5)


# --- Newey–West -------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "lags"), [(0, 7), (1, 0), (2, None), (3, 25)])
def test_newey_west_ttest_matches_statsmodels_hac(seed: int, lags: int | None) -> None:
    # Arrange: autocorrelated returns; statsmodels OLS on a constant, Bartlett kernel,
    # no small-sample correction, normal p-value.
    returns = _ar1(600, 0.3, seed)
    maxlags = math.floor(4 * (600 / 100) ** (2 / 9)) if lags is None else lags
    fit = sm.OLS(returns, np.ones(600)).fit(cov_type="HAC", cov_kwds={"maxlags": maxlags})

    # Act
    t, p = newey_west_ttest(returns, lags)

    # Assert
    assert t == pytest.approx(float(fit.tvalues[0]), abs=1e-8)
    assert p == pytest.approx(float(fit.pvalues[0]), abs=1e-8)


def test_newey_west_ttest_zero_lags_is_plain_t_with_population_variance() -> None:
    # Arrange
    returns = np.random.default_rng(5).normal(1e-3, 0.01, 200)
    plain = returns.mean() / (returns.std(ddof=0) / math.sqrt(200))

    # Act
    t, p = newey_west_ttest(returns, lags=0)

    # Assert
    assert t == pytest.approx(plain, rel=1e-12)
    assert p == pytest.approx(2 * scipy_stats.norm.sf(abs(plain)), rel=1e-12)


@pytest.mark.parametrize("lags", [-1, 10])
def test_newey_west_ttest_lags_out_of_range_raises_usage_error(lags: int) -> None:
    # Arrange / Act / Assert
    with pytest.raises(UsageError, match=f"lags is {lags}"):
        newey_west_ttest(np.linspace(-0.01, 0.01, 10), lags)


def test_newey_west_ttest_one_return_nan() -> None:
    # Arrange / Act
    t, p = newey_west_ttest(np.array([0.01]))

    # Assert
    assert math.isnan(t) and math.isnan(p)


# --- Stationary bootstrap ---------------------------------------------------------------------


def test_bootstrap_intervals_estimates_match_direct_formulas() -> None:
    # Arrange
    returns = np.random.default_rng(11).normal(3e-4, 0.01, 800)
    equity = np.cumprod(1.0 + returns)

    # Act
    out = bootstrap_intervals(returns, bars_per_year=252.0, n_boot=200, seed=1)

    # Assert
    assert set(out) == {"sharpe", "mean", "max_drawdown"}
    assert out["sharpe"].estimate == pytest.approx(sharpe_per_bar(returns) * math.sqrt(252.0))
    assert out["mean"].estimate == pytest.approx(returns.mean(), rel=1e-12)
    assert out["max_drawdown"].estimate == pytest.approx(
        float(drawdown(equity, initial_cash=1.0).min()), rel=1e-9
    )
    for interval in out.values():
        assert interval.low < interval.high
        assert interval.level == 0.95


def test_bootstrap_intervals_first_bar_loss_counts_against_initial_peak() -> None:
    # Arrange: equity 0.9, 0.99, 0.891: the worst fall is from the starting 1 to 0.891.
    returns = np.array([-0.1, 0.1, -0.1])

    # Act
    out = bootstrap_intervals(returns, bars_per_year=252.0, n_boot=50, block=1.0)

    # Assert
    assert out["max_drawdown"].estimate == pytest.approx(0.891 - 1.0, rel=1e-12)


def test_bootstrap_intervals_same_seed_same_intervals() -> None:
    # Arrange
    returns = np.random.default_rng(12).normal(2e-4, 0.01, 300)

    # Act
    first = bootstrap_intervals(returns, bars_per_year=252.0, n_boot=100, seed=5)
    again = bootstrap_intervals(returns, bars_per_year=252.0, n_boot=100, seed=5)
    other = bootstrap_intervals(returns, bars_per_year=252.0, n_boot=100, seed=6)

    # Assert
    assert first == again
    assert first["mean"] != other["mean"]


def test_bootstrap_intervals_constant_returns_no_sharpe_flat_mean() -> None:
    # Arrange
    returns = np.full(40, 0.001)

    # Act
    out = bootstrap_intervals(returns, bars_per_year=252.0, n_boot=50)

    # Assert
    assert math.isnan(out["sharpe"].estimate) and math.isnan(out["sharpe"].low)
    assert out["mean"].low == pytest.approx(0.001) and out["mean"].high == pytest.approx(0.001)
    assert out["max_drawdown"] == Interval(estimate=0.0, low=0.0, high=0.0, level=0.95)


def test_bootstrap_intervals_wipeout_gives_full_drawdown() -> None:
    # Arrange
    returns = np.array([0.05, -1.0, 0.0, 0.02])

    # Act
    out = bootstrap_intervals(returns, bars_per_year=252.0, n_boot=20, block=1.0)

    # Assert
    assert out["max_drawdown"].estimate == -1.0


def test_sharpe_interval_equals_sharpe_entry() -> None:
    # Arrange
    returns = np.random.default_rng(13).normal(5e-4, 0.01, 250)

    # Act
    alone = sharpe_interval(returns, bars_per_year=52.0, n_boot=120, block=3.0, seed=2)
    together = bootstrap_intervals(returns, bars_per_year=52.0, n_boot=120, block=3.0, seed=2)

    # Assert
    assert alone == together["sharpe"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"level": 1.0}, "level is 1.0"),
        ({"block": 0.5}, "block is 0.5"),
        ({"n_boot": 1}, "n_boot is 1"),
        ({"bars_per_year": 0.0}, "bars_per_year is 0.0"),
    ],
)
def test_bootstrap_intervals_bad_option_raises_usage_error(
    kwargs: dict[str, float], match: str
) -> None:
    # Arrange
    options: dict[str, float] = {"bars_per_year": 252.0, **kwargs}

    # Act / Assert
    with pytest.raises(UsageError, match=match):
        bootstrap_intervals(np.linspace(-0.01, 0.01, 30), **options)  # type: ignore[arg-type]


def test_bootstrap_intervals_return_below_minus_one_raises_usage_error() -> None:
    # Arrange / Act / Assert
    with pytest.raises(UsageError, match=r"returns\[1\] is -1.5"):
        bootstrap_intervals(np.array([0.01, -1.5, 0.02]), bars_per_year=252.0)


def _coverage(block: float | None, repetitions: int) -> tuple[float, float]:
    # Share of repetitions whose 95% intervals hold the true mean and the true Sharpe.
    mean, sigma, per_year = 5e-4, 1e-2, 252.0
    true_sharpe = mean / sigma * math.sqrt(per_year)
    hits_mean = hits_sharpe = 0
    for i in range(repetitions):
        returns = np.random.default_rng(1000 + i).normal(mean, sigma, 500)
        out = bootstrap_intervals(returns, bars_per_year=per_year, n_boot=400, block=block, seed=i)
        hits_mean += out["mean"].low <= mean <= out["mean"].high
        hits_sharpe += out["sharpe"].low <= true_sharpe <= out["sharpe"].high
    return hits_mean / repetitions, hits_sharpe / repetitions


@pytest.mark.slow
def test_bootstrap_intervals_iid_blocks_cover_true_values_about_95_percent() -> None:
    # Arrange: 300 series of 500 iid normal bars, mean 5e-4, sd 1e-2 (annual Sharpe 0.79).

    # Act
    mean_coverage, sharpe_coverage = _coverage(block=1.0, repetitions=300)

    # Assert
    assert 0.90 <= mean_coverage <= 0.99
    assert 0.90 <= sharpe_coverage <= 0.99


@pytest.mark.slow
def test_bootstrap_intervals_automatic_block_covers_true_values_about_95_percent() -> None:
    # Arrange: as above, with the block length estimated from each series.

    # Act
    mean_coverage, sharpe_coverage = _coverage(block=None, repetitions=200)

    # Assert
    assert 0.90 <= mean_coverage <= 0.99
    assert 0.90 <= sharpe_coverage <= 0.99


def test_bootstrap_intervals_autocorrelated_returns_automatic_block_widens_mean_interval() -> None:
    # Arrange: AR(1) with φ 0.6: the mean's standard error is √((1+φ)/(1−φ)) = 2x the iid one.
    returns = _ar1(2000, 0.6, 21)

    # Act
    iid = bootstrap_intervals(returns, bars_per_year=252.0, n_boot=400, block=1.0, seed=3)
    blocks = bootstrap_intervals(returns, bars_per_year=252.0, n_boot=400, seed=3)

    # Assert
    iid_width = iid["mean"].high - iid["mean"].low
    block_width = blocks["mean"].high - blocks["mean"].low
    assert block_width > 1.5 * iid_width


# --- Probability of backtest overfitting ------------------------------------------------------


def test_probability_of_backtest_overfitting_noise_averages_one_half() -> None:
    # Arrange: one PBO swings widely between noise matrices (its splits share data), so average
    # over 200 independent 1000 x 10 matrices.
    matrices = [np.random.default_rng(s).normal(0.0, 0.01, (1000, 10)) for s in range(200)]

    # Act
    values = [probability_of_backtest_overfitting(m, n_splits=10).pbo for m in matrices]

    # Assert
    assert 0.4 <= float(np.mean(values)) <= 0.6
    assert min(values) >= 0.0 and max(values) <= 1.0


def test_probability_of_backtest_overfitting_persistent_edge_near_zero() -> None:
    # Arrange: 20 noise trials, one with a per-bar Sharpe of 0.3 throughout.
    rng = np.random.default_rng(8)
    trials = rng.normal(0.0, 0.01, (2000, 20))
    trials[:, 7] += 0.003

    # Act
    result = probability_of_backtest_overfitting(trials)

    # Assert
    assert result.pbo < 0.05
    assert result.n_combinations == math.comb(16, 8) == result.logits.size


def test_probability_of_backtest_overfitting_in_sample_winner_always_loses_gives_one() -> None:
    # Arrange: trial A earns in the first half and loses in the second; trial B the opposite.
    # With S = 2 each split picks the in-sample winner, which ranks 1 of 2 out of sample:
    # ω = 1/3, λ = ln(1/2).
    up, down = np.array([0.02, 0.01, 0.03]), np.array([-0.02, -0.01, -0.03])
    trials = np.column_stack([np.r_[up, down], np.r_[down, up]])

    # Act
    result = probability_of_backtest_overfitting(trials, n_splits=2)

    # Assert
    assert result.pbo == 1.0
    assert result.logits == pytest.approx([math.log(0.5), math.log(0.5)])


def test_probability_of_backtest_overfitting_default_metric_equals_explicit_sharpe() -> None:
    # Arrange
    rng = np.random.default_rng(9)
    trials = rng.normal(1e-4, 0.01, (803, 6)) + rng.normal(0.0, 0.002, 6)

    def sharpe_columns(part: np.ndarray) -> np.ndarray:
        return part.mean(axis=0) / part.std(axis=0, ddof=1)

    # Act
    fast = probability_of_backtest_overfitting(trials, n_splits=8)
    explicit = probability_of_backtest_overfitting(trials, n_splits=8, metric=sharpe_columns)

    # Assert
    assert fast.logits == pytest.approx(explicit.logits, rel=1e-9)
    assert fast.pbo == explicit.pbo
    assert fast.degradation is not None and explicit.degradation is not None
    assert fast.degradation == pytest.approx(explicit.degradation, rel=1e-6)


def test_probability_of_backtest_overfitting_remainder_rows_dropped() -> None:
    # Arrange: 6 blocks of 50 rows; 5 extra rows at the end must not matter.
    trials = np.random.default_rng(10).normal(0.0, 0.01, (300, 4))
    extended = np.vstack([trials, np.full((5, 4), 0.5)])

    # Act
    base = probability_of_backtest_overfitting(trials, n_splits=6)
    longer = probability_of_backtest_overfitting(extended, n_splits=6)

    # Assert
    assert np.array_equal(base.logits, longer.logits)
    assert not longer.logits.flags.writeable


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_trials=st.integers(2, 8))
def test_probability_of_backtest_overfitting_column_order_irrelevant(
    seed: int, n_trials: int
) -> None:
    # Arrange
    rng = np.random.default_rng(seed)
    trials = rng.normal(0.0, 0.01, (240, n_trials))
    order = rng.permutation(n_trials)

    # Act
    base = probability_of_backtest_overfitting(trials, n_splits=6)
    shuffled = probability_of_backtest_overfitting(trials[:, order], n_splits=6)

    # Assert
    assert base.pbo == shuffled.pbo
    assert base.logits == pytest.approx(shuffled.logits)
    assert np.all(np.abs(base.logits) < math.log(n_trials + 1))


@pytest.mark.parametrize(
    ("shape", "n_splits", "match"),
    [
        ((100, 4), 5, "n_splits is 5"),
        ((100, 4), 0, "n_splits is 0"),
        ((100, 1), 4, "1 column"),
        ((100,), 4, "1 dimensions"),
        ((3, 4), 2, "give at least 4 rows"),
    ],
)
def test_probability_of_backtest_overfitting_bad_input_raises_usage_error(
    shape: tuple[int, ...], n_splits: int, match: str
) -> None:
    # Arrange
    trials = np.random.default_rng(0).normal(0.0, 0.01, shape)

    # Act / Assert
    with pytest.raises(UsageError, match=match):
        probability_of_backtest_overfitting(trials, n_splits=n_splits)


def test_probability_of_backtest_overfitting_metric_wrong_shape_raises_usage_error() -> None:
    # Arrange
    trials = np.random.default_rng(0).normal(0.0, 0.01, (100, 3))

    # Act / Assert
    with pytest.raises(UsageError, match="one value per column"):
        probability_of_backtest_overfitting(trials, n_splits=4, metric=lambda part: part.mean())


# --- Superior predictive ability --------------------------------------------------------------


def test_spa_test_clear_edge_beats_zero_benchmark() -> None:
    # Arrange: per-bar Sharpe 0.2 over 1,000 bars, next to two noise candidates.
    rng = np.random.default_rng(14)
    candidates = rng.normal(0.0, 0.01, (1000, 3))
    candidates[:, 0] += 0.002

    # Act
    result = spa_test(np.zeros(1000), candidates, n_boot=500)

    # Assert
    assert result.pvalue_consistent < 0.05
    assert result.pvalue_lower <= result.pvalue_consistent <= result.pvalue_upper
    assert result.n_models == 3


@pytest.mark.parametrize("seed", [100, 101, 102])
def test_spa_test_noise_candidates_do_not_beat_zero_benchmark(seed: int) -> None:
    # Arrange
    candidates = np.random.default_rng(seed).normal(0.0, 0.01, (1000, 5))

    # Act
    result = spa_test(np.zeros(1000), candidates, n_boot=500, seed=seed)

    # Assert
    assert result.pvalue_consistent > 0.1


def test_spa_test_one_candidate_vector_same_as_column() -> None:
    # Arrange
    rng = np.random.default_rng(15)
    benchmark = rng.normal(1e-4, 0.01, 400)
    candidate = rng.normal(3e-4, 0.01, 400)

    # Act
    vector = spa_test(benchmark, candidate, block=5.0, n_boot=200)
    column = spa_test(benchmark, candidate[:, None], block=5.0, n_boot=200)

    # Assert
    assert vector == column


def test_spa_test_length_mismatch_raises_usage_error() -> None:
    # Arrange / Act / Assert
    with pytest.raises(UsageError, match="399 rows but benchmark_returns has 400"):
        spa_test(np.zeros(400), np.zeros((399, 2)))

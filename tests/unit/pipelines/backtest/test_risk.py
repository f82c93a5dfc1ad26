"""Covariance, ex-ante volatility, VaR and ES against hand computations, NumPy and SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from pipelines.backtest import risk


def _returns(n_bars: int = 80, n: int = 3, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n_bars, n)) * np.array([0.001, 0.002, 0.004])[:n]
    values[0] = np.nan  # no return on the first bar
    return values


def test_rolling_covariance_three_bars_matches_hand_computation() -> None:
    # Arrange
    returns = np.array([[np.nan, np.nan], [0.01, 0.02], [0.03, -0.02]])

    # Act
    cov = risk.rolling_covariance(returns, 2)

    # Assert: means (0.02, 0); deviations (-0.01, 0.02) and (0.01, -0.02); divisor L - 1 = 1
    assert np.isnan(cov[1]).all()
    np.testing.assert_allclose(cov[2], [[2e-4, -4e-4], [-4e-4, 8e-4]], rtol=1e-12)


def test_rolling_covariance_sample_window_matches_numpy_cov() -> None:
    # Arrange
    returns = _returns()
    lookback = 10

    # Act
    cov = risk.rolling_covariance(returns, lookback)

    # Assert: bar i uses bars i - L + 1 .. i; NaN until L finite rows
    assert np.isnan(cov[lookback - 1]).all()
    for i in (lookback, 23, 41, 79):
        expected = np.cov(returns[i - lookback + 1 : i + 1], rowvar=False)
        np.testing.assert_allclose(cov[i], expected, rtol=1e-10)


def test_rolling_covariance_nan_in_window_is_nan_until_it_leaves() -> None:
    # Arrange
    returns = _returns()
    returns[30, 1] = np.nan
    lookback = 5

    # Act
    cov = risk.rolling_covariance(returns, lookback)

    # Assert: symbol 1's row is NaN while bar 30 is in its window, symbol 0 is not affected
    assert np.isnan(cov[30:35, 1, :]).all()
    assert np.isfinite(cov[30:35, 0, 0]).all()
    expected = np.cov(returns[31:36], rowvar=False)
    np.testing.assert_allclose(cov[35], expected, rtol=1e-10)


def test_rolling_covariance_ewma_matches_riskmetrics_recursion() -> None:
    # Arrange
    returns = _returns()
    lookback, halflife = 10, 4.0
    decay = 2.0 ** (-1.0 / halflife)

    # Act
    cov = risk.rolling_covariance(returns, lookback, ewma_halflife=halflife)

    # Assert: seeded by the mean of r rᵀ over the first L returns, then λΣ + (1 - λ) r rᵀ
    expected = np.einsum("ti,tj->ij", returns[1:11], returns[1:11]) / lookback
    np.testing.assert_allclose(cov[10], expected, rtol=1e-10)
    assert np.isnan(cov[9]).all()
    for i in range(11, 40):
        expected = decay * expected + (1 - decay) * np.outer(returns[i], returns[i])
    np.testing.assert_allclose(cov[39], expected, rtol=1e-10)


@pytest.mark.parametrize("halflife", [None, 6.0])
def test_rolling_covariance_later_bars_cut_earlier_estimates_unchanged(
    halflife: float | None,
) -> None:
    # Arrange
    returns = _returns(200)

    # Act
    full = risk.rolling_covariance(returns, 12, ewma_halflife=halflife)
    cut = risk.rolling_covariance(returns[:90], 12, ewma_halflife=halflife)

    # Assert
    np.testing.assert_array_equal(full[:90], cut)


def test_covariance_at_many_chunks_matches_rolling_covariance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange
    returns = _returns(120)
    rows = np.arange(15, 120, 7)
    monkeypatch.setattr(risk, "_CHUNK", 3)

    # Act
    chunked = risk.covariance_at(returns, rows, 9)
    ewma = risk.covariance_at(returns, rows, 9, ewma_halflife=5.0)

    # Assert
    np.testing.assert_allclose(chunked, risk.rolling_covariance(returns, 9)[rows], rtol=1e-10)
    full = risk.rolling_covariance(returns, 9, ewma_halflife=5.0)
    np.testing.assert_allclose(ewma, full[rows], rtol=1e-12)


def test_covariance_at_unsorted_rows_raises() -> None:
    # Arrange
    returns = _returns()

    # Act / Assert
    with pytest.raises(ValueError, match="strictly increasing"):
        risk.covariance_at(returns, [20, 10], 5)


def test_portfolio_volatility_two_assets_matches_hand_formula() -> None:
    # Arrange
    s1, s2, rho, w1, w2, bars_per_year = 0.01, 0.02, 0.3, 0.6, -0.4, 252.0
    cov = np.array([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]])

    # Act
    vol = risk.portfolio_volatility([w1, w2], cov, bars_per_year)

    # Assert: sqrt(w1²σ1² + w2²σ2² + 2 w1 w2 ρ σ1 σ2) · sqrt(bars per year)
    per_bar = math.sqrt(w1**2 * s1**2 + w2**2 * s2**2 + 2 * w1 * w2 * rho * s1 * s2)
    assert vol == pytest.approx(per_bar * math.sqrt(bars_per_year), rel=1e-12)


def test_risk_contributions_sum_to_per_bar_volatility() -> None:
    # Arrange
    cov = np.cov(_returns()[1:], rowvar=False)
    weights = np.array([0.5, 0.3, -0.2])

    # Act
    contributions = risk.risk_contributions(weights, cov)

    # Assert
    assert contributions.sum() == pytest.approx(float(risk.portfolio_volatility(weights, cov)))


def test_historical_var_es_ten_returns_matches_hand_computation() -> None:
    # Arrange: sorted -0.05, -0.03, -0.01, 0.00 ... ; the 10 % quantile sits 0.9 of the way
    returns = np.array([0.02, -0.01, 0.0, -0.05, 0.01, 0.03, -0.03, 0.04, 0.005, 0.015])

    # Act
    var, es = risk.historical_var_es(returns, 10, 0.90)

    # Assert: Q = -0.05 + 0.9 · (-0.03 + 0.05) = -0.032; only -0.05 is at or below Q
    assert np.isnan(var[:9]).all()
    assert var[9] == pytest.approx(0.032, rel=1e-12)
    assert es[9] == pytest.approx(0.05, rel=1e-12)


def test_historical_var_es_rolling_matches_numpy_quantile() -> None:
    # Arrange
    rng = np.random.default_rng(3)
    returns = rng.standard_normal(300) * 0.01
    window = 50

    # Act
    var, es = risk.historical_var_es(returns, window, 0.95)

    # Assert
    for i in (49, 120, 299):
        sample = returns[i - window + 1 : i + 1]
        q = np.quantile(sample, 0.05)
        assert var[i] == pytest.approx(-q, rel=1e-12)
        assert es[i] == pytest.approx(-sample[sample <= q].mean(), rel=1e-12)
        assert es[i] >= var[i]


@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_parametric_var_es_gaussian_matches_scipy_norm(confidence: float) -> None:
    # Arrange
    mean, sigma = 0.0002, 0.004

    # Act
    var, es = risk.parametric_var_es(mean, sigma, confidence)

    # Assert: the loss L = -R of R ~ N(μ, σ²): VaR its α quantile, ES its mean beyond VaR
    loss = norm(loc=-mean, scale=sigma)
    assert float(var) == pytest.approx(loss.ppf(confidence), rel=1e-9)
    tail_mean = loss.expect(lambda x: x, lb=float(var), conditional=True)
    assert float(es) == pytest.approx(tail_mean, rel=1e-6)


def test_parametric_var_es_confidence_out_of_range_raises() -> None:
    # Act / Assert
    with pytest.raises(ValueError, match="confidence"):
        risk.parametric_var_es(0.0, 0.01, 1.5)


def test_book_risk_constant_weights_match_standalone_functions() -> None:
    # Arrange
    returns = _returns(200)
    weights = np.tile([0.5, -0.3, 0.2], (200, 1))
    lookback, window, bars_per_year = 20, 40, 1000.0

    # Act
    measured = risk.book_risk(
        returns, weights, lookback=lookback, var_window=window, bars_per_year=bars_per_year
    )

    # Assert
    cov = risk.rolling_covariance(returns, lookback)
    vol = risk.portfolio_volatility(weights, cov, bars_per_year)
    np.testing.assert_allclose(measured.volatility, vol, rtol=1e-10, equal_nan=True)
    book = returns @ weights[0]
    for k, confidence in enumerate((0.95, 0.99)):
        var, es = risk.historical_var_es(book, window, confidence)
        np.testing.assert_allclose(measured.var_hist[:, k], var, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(measured.es_hist[:, k], es, rtol=1e-12, equal_nan=True)
    i = 150
    mean = returns[i - lookback + 1 : i + 1].mean(axis=0) @ weights[0]
    var_p, es_p = risk.parametric_var_es(mean, vol[i] / math.sqrt(bars_per_year), 0.99)
    assert measured.var_param[i, 1] == pytest.approx(float(var_p), rel=1e-9)
    assert measured.es_param[i, 1] == pytest.approx(float(es_p), rel=1e-9)


def test_book_risk_flat_book_has_zero_risk_and_held_book_nan_before_warm_up() -> None:
    # Arrange
    returns = _returns(100)
    weights = np.zeros((100, 3))
    weights[60:, 0] = 1.0

    # Act
    measured = risk.book_risk(returns, weights, lookback=30, var_window=30, bars_per_year=1.0)

    # Assert
    assert (measured.volatility[:60] == 0).all()
    assert (measured.var_hist[30:60] == 0).all()
    assert np.isfinite(measured.var_param[60:]).all()
    held = risk.book_risk(returns, np.ones((100, 3)), lookback=30, var_window=30, bars_per_year=1.0)
    assert np.isnan(held.volatility[:30]).all()
    assert np.isfinite(held.volatility[30:]).all()

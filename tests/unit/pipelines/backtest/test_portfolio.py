"""Multi-symbol portfolios: shared cash, sizing schemes, caps, schedule, point in time, report."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError

from core.errors import DataError, UsageError
from core.instruments import InstrumentRegistry
from core.types import Instrument
from pipelines.backtest.config import CostConfig
from pipelines.backtest.portfolio import (
    PortfolioConfig,
    PortfolioResult,
    rebalance_schedule,
    run_portfolio,
)
from pipelines.backtest.portfolio_report import portfolio_report_html, thinned_rows

REGISTRY = InstrumentRegistry.default()
START = np.datetime64("2017-01-02T00:00", "us")  # a Monday
BARS_PER_YEAR = 10_000.0


def _stamps(n: int, minutes: int = 5, start: np.datetime64 = START) -> pl.Series:
    values = start + np.arange(n) * np.timedelta64(minutes, "m")
    return pl.Series("ts", values).dt.replace_time_zone("UTC")


def _bars(close: np.ndarray, ts: pl.Series | None = None) -> pl.DataFrame:
    close = np.asarray(close, dtype=np.float64)
    stamps = ts if ts is not None else _stamps(close.shape[0])
    return pl.DataFrame(
        {"ts": stamps, "open": close, "high": close * 1.001, "low": close * 0.999, "close": close}
    )


def _walk(rng: np.random.Generator, n: int, sigma: float, start: float = 1.0) -> np.ndarray:
    steps = rng.normal(0.0, sigma, n)
    steps[0] = 0.0
    return start * np.cumprod(1.0 + steps)


def _instruments(symbols: list[str]) -> dict[str, Instrument]:
    return {s: REGISTRY.get(s) for s in symbols}


def _config(**values: object) -> PortfolioConfig:
    return PortfolioConfig(bars_per_year=BARS_PER_YEAR, **values)  # type: ignore[arg-type]


def _hold_long(n: int) -> np.ndarray:
    signal = np.full(n, np.nan)
    signal[0] = 1.0
    return signal


def _closes_on_timeline(result: PortfolioResult, bars: dict[str, pl.DataFrame]) -> np.ndarray:
    timeline = pl.DataFrame({"ts": result.ts})
    columns = [
        timeline.join(bars[s].select("ts", "close"), on="ts", how="left")["close"]
        .forward_fill()
        .to_numpy()
        for s in result.symbols
    ]
    return np.column_stack(columns)


def _rebalance_rows(result: PortfolioResult) -> np.ndarray:
    return np.isin(result.ts.to_numpy(), result.rebalance_ts.to_numpy())


def _random_signals(rng: np.random.Generator, n: int) -> np.ndarray:
    signal = np.full(n, np.nan)
    changes = rng.random(n) < 0.05
    signal[changes] = rng.choice([-1.0, 0.0, 1.0], size=int(changes.sum()))
    signal[0] = 1.0
    return signal


def test_run_portfolio_one_trade_costs_match_hand_computation() -> None:
    # Arrange: 10,000 cash, buy at 1.0 + 1 pip, fees 0.1 %, sell two bars later at 1.1
    bars = {"EURUSD": _bars(np.array([1.0, 1.1, 1.1]))}
    signals = {"EURUSD": np.array([1.0, np.nan, 0.0])}
    config = _config(
        cash=10_000.0,
        costs=CostConfig(spread_pips=1.0, fees=0.001),
        rebalance="every-n-bars",
        rebalance_bars=100,
    )

    # Act
    result = run_portfolio(bars, signals, _instruments(["EURUSD"]), config)

    # Assert: cost 10,000 × 0.0001 + 0.001 × 10,000 × 1.0001 = 11.001; exit fees 11
    np.testing.assert_allclose(result.units[:, 0], [10_000.0, 10_000.0, 0.0])
    np.testing.assert_allclose(result.costs, [11.001, 0.0, 11.0], rtol=1e-12)
    np.testing.assert_allclose(result.equity, [9_988.999, 10_988.999, 10_977.999], rtol=1e-12)
    assert result.pnl[-1, 0] == pytest.approx(977.999)
    assert result.n_trades.tolist() == [2]
    assert result.turnover[0] == pytest.approx(1.0)


def test_run_portfolio_spread_from_data_buys_at_bid_plus_bar_spread() -> None:
    # Arrange: the bid series carries the spread in price units (ask = bid + spread)
    bars = {"EURUSD": _bars(np.array([1.0, 1.0])).with_columns(spread=pl.Series([0.0003, 0.0009]))}
    config = _config(
        cash=10_000.0,
        costs=CostConfig(spread_from_data=True),
        rebalance="every-n-bars",
        rebalance_bars=100,
    )

    # Act
    result = run_portfolio(bars, {"EURUSD": _hold_long(2)}, _instruments(["EURUSD"]), config)

    # Assert: 10,000 units bought at 1.0003 cost 3 over the bid
    assert result.costs[0] == pytest.approx(3.0, rel=1e-9)
    assert result.equity[-1] == pytest.approx(9_997.0, rel=1e-12)


def test_run_portfolio_spread_from_data_without_column_raises_data_error() -> None:
    # Arrange
    bars = {"EURUSD": _bars(np.ones(3))}
    config = _config(costs=CostConfig(spread_from_data=True))

    # Act / Assert
    with pytest.raises(DataError, match="no 'spread' column"):
        run_portfolio(bars, {"EURUSD": np.ones(3)}, _instruments(["EURUSD"]), config)


def test_run_portfolio_usdjpy_with_conversion_earns_quote_pnl_at_current_rate() -> None:
    # Arrange: USD account, USDJPY 100 → 101; the rate JPY → USD is 1 / close
    close = np.array([100.0, 101.0])
    bars = {"USDJPY": _bars(close)}
    config = _config(cash=10_000.0, rebalance="every-n-bars", rebalance_bars=100)

    # Act
    result = run_portfolio(
        bars,
        {"USDJPY": _hold_long(2)},
        _instruments(["USDJPY"]),
        config,
        to_account={"USDJPY": 1.0 / close},
    )

    # Assert: 10,000 USD long; 10,000 × (101 - 100) JPY at 1/101 is 99.0099 USD
    assert result.units[0, 0] == pytest.approx(10_000.0)
    assert result.equity[1] - result.equity[0] == pytest.approx(10_000.0 / 101.0, rel=1e-12)
    value = result.cash + result.units[:, 0] * close / close
    np.testing.assert_allclose(result.equity, value, rtol=1e-12)


def test_run_portfolio_long_over_rollover_pays_swap_once() -> None:
    # Arrange: H1 bars 18:00 .. 23:00 UTC; the 20:00 bar closes at the 21:00 rollover
    ts = _stamps(6, minutes=60, start=np.datetime64("2017-01-03T18:00", "us"))
    bars = {"EURUSD": _bars(np.ones(6), ts)}
    config = _config(
        cash=10_000.0,
        costs=CostConfig(swap_long_pips=-0.5),
        rebalance="every-n-bars",
        rebalance_bars=100,
    )

    # Act
    result = run_portfolio(bars, {"EURUSD": _hold_long(6)}, _instruments(["EURUSD"]), config)

    # Assert: 10,000 units × -0.5 pip × 0.0001 = -0.5, charged at bar 2 only
    np.testing.assert_allclose(result.equity, [10_000.0] * 2 + [9_999.5] * 4, rtol=1e-12)


def test_run_portfolio_all_costs_equity_is_cash_plus_positions_every_bar() -> None:
    # Arrange: three days of M5 bars, every cost on, USDJPY converted to the account
    rng = np.random.default_rng(11)
    n = 864
    symbols = ["EURUSD", "GBPUSD", "USDJPY"]
    closes = {
        "EURUSD": _walk(rng, n, 0.0008, 1.05),
        "GBPUSD": _walk(rng, n, 0.0009, 1.23),
        "USDJPY": _walk(rng, n, 0.0007, 117.0),
    }
    bars = {s: _bars(closes[s]) for s in symbols}
    signals = {s: _random_signals(rng, n) for s in symbols}
    costs = CostConfig(
        spread_pips=0.8,
        fees=2e-5,
        commission_per_lot=3.5,
        slippage_pips=0.1,
        slippage_vol=0.05,
        swap_long_pips=-0.3,
        swap_short_pips=0.1,
    )
    config = _config(
        sizing="inverse-vol", lookback=20, rebalance="every-n-bars", rebalance_bars=25, costs=costs
    )
    to_account = {"USDJPY": 1.0 / closes["USDJPY"]}

    # Act
    result = run_portfolio(bars, signals, _instruments(symbols), config, to_account=to_account)

    # Assert
    fx = np.column_stack([np.ones(n), np.ones(n), 1.0 / closes["USDJPY"]])
    value = result.cash + (result.units * _closes_on_timeline(result, bars) * fx).sum(axis=1)
    np.testing.assert_allclose(result.equity, value, rtol=1e-12)
    np.testing.assert_allclose(result.pnl.sum(axis=1), result.equity - config.cash, atol=1e-6)
    assert result.costs.sum() > 0
    assert result.costs_by_symbol.sum() == pytest.approx(result.costs.sum())
    assert (result.n_trades > 0).all()


@settings(max_examples=25, deadline=None)
@given(
    signal=arrays(
        np.float64,
        (150, 3),
        elements=st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, math.nan, math.nan, math.nan]),
    ),
    max_weight=st.floats(0.05, 1.0),
    max_gross=st.floats(0.1, 2.0),
    target_vol=st.floats(0.02, 2.0),
)
def test_run_portfolio_random_signals_caps_hold_at_rebalance_bars(
    signal: np.ndarray, max_weight: float, max_gross: float, target_vol: float
) -> None:
    # Arrange
    rng = np.random.default_rng(5)
    symbols = ["EURUSD", "GBPUSD", "AUDUSD"]
    bars = {s: _bars(_walk(rng, 150, 0.001 * (k + 1))) for k, s in enumerate(symbols)}
    signals = {s: signal[:, k] for k, s in enumerate(symbols)}
    config = _config(
        sizing="vol-target",
        target_vol=target_vol,
        max_weight=max_weight,
        max_gross=max_gross,
        lookback=10,
        rebalance="every-n-bars",
        rebalance_bars=7,
        costs=CostConfig(spread_pips=0.5, fees=1e-4),
    )

    # Act
    result = run_portfolio(bars, signals, _instruments(symbols), config)

    # Assert: targets are fractions of the equity before the bar's costs
    rows = _rebalance_rows(result)
    lift = ((result.equity + result.costs) / result.equity)[rows]
    magnitude = np.abs(result.weights[rows])
    assert (magnitude <= max_weight * lift[:, None] + 1e-12).all()
    assert (magnitude.sum(axis=1) <= max_gross * lift + 1e-12).all()


def test_run_portfolio_vol_target_iid_returns_reaches_target() -> None:
    # Arrange: four independent random walks, per-bar volatility 0.05 % .. 0.3 %
    rng = np.random.default_rng(2)
    n, lookback = 6_000, 500
    symbols = ["EURUSD", "GBPUSD", "AUDUSD", "NZDUSD"]
    sigmas = [0.0005, 0.001, 0.002, 0.003]
    bars = {s: _bars(_walk(rng, n, sigma)) for s, sigma in zip(symbols, sigmas, strict=True)}
    signals = {s: _hold_long(n) for s in symbols}
    config = _config(
        sizing="vol-target",
        target_vol=0.10,
        max_weight=10.0,
        max_gross=10.0,
        lookback=lookback,
        rebalance="every-n-bars",
        rebalance_bars=50,
    )

    # Act
    result = run_portfolio(bars, signals, _instruments(symbols), config)

    # Assert: ex-ante volatility right after each rebalance is the target; realized close to it
    rows = _rebalance_rows(result)
    rows[: lookback + 1] = False
    ex_ante = result.risk["portfolio_vol"].to_numpy()[rows]
    np.testing.assert_allclose(ex_ante, 0.10, rtol=1e-9)
    realized = np.diff(result.equity[lookback + 1 :]) / result.equity[lookback + 1 : -1]
    assert realized.std(ddof=1) * math.sqrt(BARS_PER_YEAR) == pytest.approx(0.10, rel=0.1)


def test_run_portfolio_inverse_vol_weights_proportional_to_inverse_sigma() -> None:
    # Arrange
    rng = np.random.default_rng(4)
    n, lookback = 300, 100
    symbols = ["EURUSD", "GBPUSD", "AUDUSD"]
    closes = [_walk(rng, n, sigma) for sigma in (0.001, 0.002, 0.004)]
    bars = {s: _bars(c) for s, c in zip(symbols, closes, strict=True)}
    signals = {s: _hold_long(n) for s in symbols}
    config = _config(
        sizing="inverse-vol", lookback=lookback, rebalance="every-n-bars", rebalance_bars=150
    )

    # Act
    result = run_portfolio(bars, signals, _instruments(symbols), config)

    # Assert: at bar 150, wⱼ σⱼ is the same for every symbol and the weights sum to 1
    returns = np.column_stack([c[1:] / c[:-1] - 1.0 for c in closes])
    sigma = returns[150 - lookback : 150].std(axis=0, ddof=1)  # bars 51 .. 150
    weights = result.weights[150]
    np.testing.assert_allclose(weights * sigma, (weights * sigma)[0], rtol=1e-9)
    assert weights.sum() == pytest.approx(1.0, rel=1e-12)
    assert (result.weights[:150] == 0).all()


def _correlated_bars(
    n: int, seed: int = 9, sigma: tuple[float, ...] = (0.001, 0.002, 0.003)
) -> tuple[dict[str, pl.DataFrame], np.ndarray]:
    rng = np.random.default_rng(seed)
    corr = np.array([[1.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.0]])
    steps = rng.multivariate_normal(np.zeros(3), corr * np.outer(sigma, sigma), size=n)
    steps[0] = 0.0
    closes = np.cumprod(1.0 + steps, axis=0)
    symbols = ["EURUSD", "GBPUSD", "AUDUSD"]
    return {s: _bars(closes[:, k]) for k, s in enumerate(symbols)}, closes


def test_run_portfolio_risk_parity_equalizes_risk_contributions() -> None:
    # Arrange
    bars, closes = _correlated_bars(400)
    signals = {s: _hold_long(400) for s in bars}
    config = _config(
        sizing="risk-parity", lookback=200, rebalance="every-n-bars", rebalance_bars=300
    )

    # Act
    result = run_portfolio(bars, signals, _instruments(list(bars)), config)

    # Assert: wⱼ (Σ w)ⱼ equal across symbols with Σ the sample covariance of bars 101 .. 300
    returns = closes[1:] / closes[:-1] - 1.0
    cov = np.cov(returns[100:300], rowvar=False)
    weights = result.weights[300]
    contributions = weights * (cov @ weights)
    assert result.sizing_fallbacks == 0
    assert weights.sum() == pytest.approx(1.0, rel=1e-9)
    assert contributions.std() / contributions.mean() < 0.01


def test_run_portfolio_min_variance_matches_closed_form_when_long_only() -> None:
    # Arrange
    bars, closes = _correlated_bars(400, sigma=(0.001, 0.0013, 0.0016))
    signals = {s: _hold_long(400) for s in bars}
    config = _config(
        sizing="min-variance", lookback=200, rebalance="every-n-bars", rebalance_bars=300
    )
    returns = closes[1:] / closes[:-1] - 1.0
    inverse = np.linalg.inv(np.cov(returns[100:300], rowvar=False))
    closed_form = inverse.sum(axis=1) / inverse.sum()
    assert (closed_form > 0).all()  # the long-only constraint does not bind

    # Act
    result = run_portfolio(bars, signals, _instruments(list(bars)), config)

    # Assert: Σ⁻¹1 / 1ᵀΣ⁻¹1
    np.testing.assert_allclose(result.weights[300], closed_form, atol=1e-3)


def test_rebalance_schedule_rules_mark_the_right_bars() -> None:
    # Arrange: Fri 23:55, Sat 00:00, Sat 00:05, Sun 23:55, Mon 00:00, Mon 00:05 (UTC)
    stamps = [
        "2017-01-06T23:55",
        "2017-01-07T00:00",
        "2017-01-07T00:05",
        "2017-01-08T23:55",
        "2017-01-09T00:00",
        "2017-01-09T00:05",
    ]
    ts = pl.Series("ts", np.array(stamps, dtype="datetime64[us]")).dt.replace_time_zone("UTC")

    # Act
    daily = rebalance_schedule(ts, "daily")
    weekly = rebalance_schedule(ts, "weekly")
    every_two = rebalance_schedule(ts, "every-n-bars", 2)
    every_bar = rebalance_schedule(ts, "every-bar")

    # Assert
    assert daily.tolist() == [True, True, False, True, True, False]
    assert weekly.tolist() == [True, False, False, False, True, False]
    assert every_two.tolist() == [True, False, True, False, True, False]
    assert every_bar.all()


def test_rebalance_schedule_other_time_zone_uses_utc_days() -> None:
    # Arrange: 23:30 and 00:30 in New York are 04:30 and 05:30 UTC, the same UTC day
    ts = (
        pl.Series("ts", np.array(["2017-01-03T04:30", "2017-01-03T05:30"], dtype="datetime64[us]"))
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone("America/New_York")
    )

    # Act
    daily = rebalance_schedule(ts, "daily")

    # Assert
    assert daily.tolist() == [True, False]


@pytest.mark.parametrize(
    ("sizing", "covariance"), [("vol-target", "sample"), ("hrp", "sample"), ("inverse-vol", "ewma")]
)
def test_run_portfolio_later_bars_cut_results_up_to_cut_unchanged(
    sizing: str, covariance: str
) -> None:
    # Arrange
    rng = np.random.default_rng(8)
    n, cut = 400, 250
    symbols = ["EURUSD", "GBPUSD", "AUDUSD"]
    closes = {s: _walk(rng, n, 0.001 * (k + 1)) for k, s in enumerate(symbols)}
    signals = {s: _random_signals(rng, n) for s in symbols}
    config = _config(
        sizing=sizing,
        covariance=covariance,
        target_vol=0.2,
        max_portfolio_vol=0.25,
        max_weight=0.8,
        lookback=50,
        var_window=50,
        rebalance="every-n-bars",
        rebalance_bars=20,
        costs=CostConfig(spread_pips=0.5, fees=1e-5),
    )
    instruments = _instruments(symbols)

    # Act
    full = run_portfolio({s: _bars(c) for s, c in closes.items()}, signals, instruments, config)
    short = run_portfolio(
        {s: _bars(c[:cut]) for s, c in closes.items()},
        {s: v[:cut] for s, v in signals.items()},
        instruments,
        config,
    )

    # Assert
    np.testing.assert_allclose(full.equity[:cut], short.equity, rtol=1e-12)
    np.testing.assert_allclose(full.weights[:cut], short.weights, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        full.risk.head(cut).drop("ts").to_numpy(), short.risk.drop("ts").to_numpy(), rtol=1e-10
    )
    assert (full.weights[cut - 1] != 0).any()


def test_run_portfolio_symbol_missing_bars_holds_units_and_trades_at_next_bar() -> None:
    # Arrange: GBPUSD has no bars 10..12; bar 10 is a rebalance
    rng = np.random.default_rng(6)
    n = 30
    eur, gbp = _walk(rng, n, 0.002), _walk(rng, n, 0.002)
    keep = np.ones(n, dtype=bool)
    keep[10:13] = False
    bars = {
        "EURUSD": _bars(eur),
        "GBPUSD": _bars(gbp[keep], _stamps(n).filter(pl.Series(keep))),
    }
    signals = {"EURUSD": _hold_long(n), "GBPUSD": _hold_long(int(keep.sum()))}
    config = _config(rebalance="every-n-bars", rebalance_bars=5)

    # Act
    result = run_portfolio(bars, signals, _instruments(["EURUSD", "GBPUSD"]), config)

    # Assert: union timeline; held through the gap; valued at its last close; moved at bar 13
    assert result.equity.shape[0] == n
    assert (result.units[10:13, 1] == result.units[9, 1]).all()
    assert result.units[10, 0] != result.units[9, 0]
    assert result.units[13, 1] != result.units[12, 1]
    assert result.weights[13, 1] == pytest.approx(0.5, rel=1e-12)
    closes = _closes_on_timeline(result, bars)
    np.testing.assert_allclose(closes[10:13, 1], gbp[9])
    value = result.cash + (result.units * closes).sum(axis=1)
    np.testing.assert_allclose(result.equity, value, rtol=1e-12)


def test_run_portfolio_direction_change_between_rebalances_trades_only_that_symbol() -> None:
    # Arrange: rebalances at bars 0 and 50; AUDUSD turns short at bar 20
    n = 60
    rng = np.random.default_rng(12)
    symbols = ["EURUSD", "GBPUSD", "AUDUSD"]
    bars = {s: _bars(_walk(rng, n, 0.001)) for s in symbols}
    signals = {s: _hold_long(n) for s in symbols}
    signals["AUDUSD"][20] = -1.0
    config = _config(max_gross=2.0, rebalance="every-n-bars", rebalance_bars=50)

    # Act
    result = run_portfolio(bars, signals, _instruments(symbols), config)

    # Assert
    changed = np.flatnonzero(np.any(np.diff(result.units, axis=0) != 0, axis=0))
    assert changed.tolist() == [0, 1, 2]
    assert (result.units[20, :2] == result.units[19, :2]).all()
    assert result.units[19, 2] > 0 > result.units[20, 2]
    assert result.weights[20, 2] == pytest.approx(-1.0 / 3.0, rel=1e-12)
    assert result.n_trades.tolist() == [2, 2, 3]


def test_run_portfolio_direction_change_grows_only_within_gross_cap() -> None:
    # Arrange: EURUSD (half the book) gains 10 %, then GBPUSD turns long with its 0.5 sleeve
    n = 20
    eur = np.where(np.arange(n) < 5, 1.0, 1.1)
    bars = {"EURUSD": _bars(eur), "GBPUSD": _bars(np.ones(n))}
    late = np.full(n, np.nan)
    late[0], late[10] = 0.0, 1.0
    signals = {"EURUSD": _hold_long(n), "GBPUSD": late}
    config = _config(cash=10_000.0, max_gross=1.0, rebalance="every-n-bars", rebalance_bars=100)

    # Act
    result = run_portfolio(bars, signals, _instruments(list(bars)), config)

    # Assert: EURUSD holds 5,500 of 10,500; GBPUSD gets the 5,000 left, not its 5,250
    assert result.weights[10, 0] == pytest.approx(5_500 / 10_500, rel=1e-12)
    assert result.weights[10, 1] == pytest.approx(5_000 / 10_500, rel=1e-12)
    assert np.abs(result.weights[10]).sum() == pytest.approx(1.0, rel=1e-12)


def test_run_portfolio_max_portfolio_vol_caps_ex_ante_vol_of_correlated_book() -> None:
    # Arrange: two near-identical symbols, both long: equal weights would run hot
    rng = np.random.default_rng(13)
    n = 400
    base = _walk(rng, n, 0.002)
    bars = {"EURUSD": _bars(base), "GBPUSD": _bars(base * (1 + rng.normal(0, 1e-5, n)))}
    signals = {s: _hold_long(n) for s in bars}
    config = _config(
        max_portfolio_vol=0.05, lookback=100, rebalance="every-n-bars", rebalance_bars=25
    )

    # Act
    result = run_portfolio(bars, signals, _instruments(list(bars)), config)

    # Assert: per-symbol vol is 0.2 a year, so the limit binds at every rebalance
    rows = _rebalance_rows(result)
    rows[:101] = False
    np.testing.assert_allclose(result.risk["portfolio_vol"].to_numpy()[rows], 0.05, rtol=1e-9)
    assert (np.abs(result.weights[rows]).sum(axis=1) < 0.5).all()


def test_run_portfolio_risk_frame_has_columns_and_finite_values_after_warm_up() -> None:
    # Arrange
    bars, _ = _correlated_bars(300)
    signals = {s: _hold_long(300) for s in bars}
    config = _config(sizing="inverse-vol", lookback=50, var_window=60, rebalance="every-bar")

    # Act
    result = run_portfolio(bars, signals, _instruments(list(bars)), config)

    # Assert
    expected = ["ts", "gross_exposure", "net_exposure", "portfolio_vol"] + [
        f"{kind}_{level}"
        for level in ("95", "99")
        for kind in ("var_hist", "es_hist", "var_param", "es_param")
    ]
    assert result.risk.columns == expected
    settled = result.risk.slice(111).drop("ts").to_numpy()
    assert np.isfinite(settled).all()
    assert (result.risk["es_hist_99"].slice(111) >= result.risk["var_hist_99"].slice(111)).all()
    np.testing.assert_allclose(result.risk["gross_exposure"].slice(60).to_numpy(), 1.0, rtol=1e-9)


def test_per_symbol_table_lists_pnl_trades_and_weights() -> None:
    # Arrange
    bars, _ = _correlated_bars(100)
    signals = {s: _hold_long(100) for s in bars}
    result = run_portfolio(bars, signals, _instruments(list(bars)), _config(rebalance="daily"))

    # Act
    table = result.per_symbol_table()

    # Assert
    assert table.columns == [
        "symbol",
        "pnl",
        "trades",
        "costs",
        "mean_abs_weight",
        "max_abs_weight",
    ]
    assert table["symbol"].to_list() == list(bars)
    assert table["pnl"].sum() == pytest.approx(result.equity[-1] - 100_000.0)
    assert table["trades"].to_list() == [1, 1, 1]
    assert (table["max_abs_weight"] >= table["mean_abs_weight"]).all()


def test_run_portfolio_signal_length_mismatch_raises_usage_error() -> None:
    # Arrange
    bars = {"EURUSD": _bars(np.ones(5))}

    # Act / Assert
    with pytest.raises(UsageError, match="4 signals for 5 bars"):
        run_portfolio(bars, {"EURUSD": np.ones(4)}, _instruments(["EURUSD"]), _config())


def test_run_portfolio_signal_above_one_raises_usage_error() -> None:
    # Arrange
    bars = {"EURUSD": _bars(np.ones(3))}

    # Act / Assert
    with pytest.raises(UsageError, match=r"signal 2\.0 at bar 1"):
        run_portfolio(
            bars, {"EURUSD": np.array([1.0, 2.0, 0.0])}, _instruments(["EURUSD"]), _config()
        )


def test_run_portfolio_unsorted_bars_raise_data_error() -> None:
    # Arrange
    bars = {"EURUSD": _bars(np.ones(3), _stamps(3).reverse())}

    # Act / Assert
    with pytest.raises(DataError, match="EURUSD: ts at row 1"):
        run_portfolio(bars, {"EURUSD": np.ones(3)}, _instruments(["EURUSD"]), _config())


def test_portfolio_config_vol_target_without_target_raises() -> None:
    # Act / Assert
    with pytest.raises(ValidationError, match="target_vol"):
        _config(sizing="vol-target")


def test_portfolio_config_unknown_key_raises() -> None:
    # Act / Assert
    with pytest.raises(ValidationError, match="leverage"):
        _config(leverage=2.0)


def test_thinned_rows_long_series_keeps_at_most_max_points_and_last() -> None:
    # Act
    rows = thinned_rows(75_000, 5_000)

    # Assert
    assert rows.shape[0] <= 5_000
    assert rows[0] == 0
    assert rows[-1] == 74_999
    assert (np.diff(rows) > 0).all()


def test_portfolio_report_html_self_contained_with_every_chart() -> None:
    # Arrange
    bars, _ = _correlated_bars(200)
    signals = {s: _hold_long(200) for s in bars}
    config = _config(sizing="inverse-vol", target_vol=0.1, lookback=50, var_window=50)
    result = run_portfolio(bars, signals, _instruments(list(bars)), config)

    # Act
    page = portfolio_report_html(result, title="Majors <M5>", metrics={"sharpe": 1.25})

    # Assert
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("plotly.js v") == 1  # the library's banner, embedded once
    assert '<script src="http' not in page
    assert "<title>Majors &lt;M5&gt;</title>" in page
    for chart in ("equity", "weights", "pnl", "volatility", "var-es", "correlation"):
        assert f'id="{chart}"' in page
    assert "sharpe" in page

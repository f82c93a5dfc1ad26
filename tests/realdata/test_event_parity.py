"""The event-driven backtest (the trading loop on replayed bars) against the vectorized engine.

``solodesk backtest --engine event`` runs the strategy through the loop, the paper broker with
fills at once and the risk engine with no limits; it must give the vectorized engine's trades
(entry and exit times, direction, exit reason and bars held identical; units, prices, P&L,
return and costs within 1e-9 relative) and its equity curve within 1e-9 relative, on real
series:

- EURUSD H1 bid, from the MT4 history (no spread column: fixed spreads);
- EURUSD H1 bid with a spread column, from LEAN's OANDA bid and ask bars (``--spread data``);
- USDJPY M15 from the MT4 history, whose profit converts through its own close (the money
  conversion changes every bar).

The cases cover fills at the close and at the next open, every cost (fees, commission, fixed
and per-bar spread, fixed and range-scaled slippage, long and short swap), stop loss, take
profit and trailing stop, every sizing rule, and the three built-in strategies with shorts on;
each case checks that what it covers did happen (an exit reason seen, Kelly past 20 trades).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from testkit.files import utc

from core.settings import Settings
from core.timeframes import Timeframe
from feature_store.series import SeriesData, load_series
from pipelines.backtest.config import BacktestConfig, Engine
from pipelines.backtest.engine import BacktestResult
from services.backtest import compute_backtest
from services.common import load_user_strategy
from services.ingest import IngestOptions, ingest

RELATIVE = 1e-9
CASH = 100_000.0
EXACT = ("entry_ts", "exit_ts", "direction", "exit_reason", "bars_held")
CLOSE = ("units", "entry_price", "exit_price", "costs")
PARAMS: dict[str, dict[str, object]] = {
    "sma_cross": {"fast": 10, "slow": 40, "allow_short": True},
    "donchian_breakout": {"entry_window": 20, "exit_window": 10, "allow_short": True},
    "rsi_reversion": {"allow_short": True},
}
COSTS = "fees=2e-5 commission=3.5 slippage=0.2 slippage_vol=0.02 swap_long=-0.4 swap_short=0.1"


@dataclass(frozen=True)
class Source:
    """A real file, what it holds, and the ~20k bars of it a case runs on."""

    path: str
    symbol: str
    timeframe: Timeframe
    start: datetime | None = None
    end: datetime | None = None


SOURCES = {
    "mt4": Source("mt4/EURUSD60.csv", "EURUSD", Timeframe.H1, utc(2015, 1, 1), utc(2018, 6, 1)),
    "lean": Source(
        "lean/Data/forex/oanda/hour/eurusd.zip",
        "EURUSD",
        Timeframe.H1,
        utc(2014, 1, 1),
        utc(2017, 6, 1),
    ),
    "usdjpy": Source("mt4/USDJPY15.csv", "USDJPY", Timeframe.M15),
}


@dataclass(frozen=True)
class Case:
    """One comparison: a series, a strategy, the backtest options (``key=value`` words, the
    keyword arguments of :meth:`BacktestConfig.from_options`), and what must be seen."""

    series: str
    strategy: str
    options: str = ""
    reasons: tuple[str, ...] = ()
    min_trades: int = 50
    params: dict[str, object] = field(default_factory=dict)  # over the strategy's PARAMS

    def config(self) -> BacktestConfig:
        """Return the backtest configuration the options describe."""
        words = dict(word.split("=", 1) for word in self.options.split())
        values: dict[str, Any] = {}
        for key, text in words.items():
            try:
                values[key] = float(text)
            except ValueError:
                values[key] = text
        return BacktestConfig.from_options(cash=CASH, **values)


STOPS = ("stop_loss", "take_profit")
TRAILING = ("trailing_stop",)
# fmt: off
CASES = {
    "mt4-sma-close-all-in": Case("mt4", "sma_cross"),
    "mt4-sma-next-open-fees-fraction": Case(
        "mt4", "sma_cross", "fill=next_open fees=2e-5 commission=3.5 sizing=fraction:2"),
    "mt4-donchian-spread-slippage-swap-lots": Case(
        "mt4", "donchian_breakout",
        "spread=0.9 slippage=0.3 slippage_vol=0.05 swap_long=-0.5 swap_short=0.2 sizing=lots:1"),
    "mt4-donchian-stops-next-open-vol-target": Case(
        "mt4", "donchian_breakout",
        "stop_loss=20 take_profit=30 fill=next_open spread=1 sizing=vol-target:0.1", STOPS),
    "mt4-rsi-trailing-all-costs": Case(
        "mt4", "rsi_reversion", f"trailing_stop=25 spread=1 {COSTS}", TRAILING),
    "lean-sma-data-spread-next-open-fraction": Case(
        "lean", "sma_cross", f"spread=data fill=next_open sizing=fraction:1 {COSTS}"),
    "lean-donchian-data-spread-stops-vol-target": Case(
        "lean", "donchian_breakout",
        f"spread=data stop_loss=15 take_profit=25 sizing=vol-target:0.15 {COSTS}", STOPS),
    "lean-rsi-data-spread-trailing-lots": Case(
        "lean", "rsi_reversion", "spread=data trailing_stop=20 sizing=lots:2", TRAILING),
    "lean-donchian-short-only-next-open": Case(
        "lean", "donchian_breakout", "direction=short fill=next_open spread=data"),
    "usdjpy-sma-costs-stops-fraction": Case(
        "usdjpy", "sma_cross",
        f"spread=1 stop_loss=15 take_profit=25 sizing=fraction:3 {COSTS}", STOPS),
    "usdjpy-donchian-trailing-next-open-swap": Case(
        "usdjpy", "donchian_breakout",
        "spread=0.8 trailing_stop=20 fill=next_open swap_long=0.3 swap_short=-0.6", TRAILING),
    "usdjpy-sma-long-only-all-in": Case("usdjpy", "sma_cross", "direction=long"),
    "usdjpy-rsi-kelly": Case(
        "usdjpy", "rsi_reversion", "spread=0.8 sizing=kelly:0.5", min_trades=80),
    "mt4-sma-slow-next-open-fees-kelly": Case(
        "mt4", "sma_cross", "fill=next_open spread=0.5 fees=1e-5 sizing=kelly:1",
        min_trades=100, params={"fast": 20, "slow": 100}),
}
# fmt: on


@pytest.fixture(scope="module")
def series(
    data_file: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Settings, SeriesData]]:
    """Ingest each source into a desk of its own and load the bars the cases run on."""
    loaded = {}
    for name, source in SOURCES.items():
        path = data_file(source.path)
        settings = Settings(home=tmp_path_factory.mktemp(f"parity-{name}"))
        ingest([str(path)], IngestOptions(reports=False), settings)
        data = load_series(settings, source.symbol, source.timeframe, None, source.start,
                           source.end)  # fmt: skip
        loaded[name] = (settings, data)
    return loaded


def test_sources_are_what_the_cases_need(series: dict[str, tuple[Settings, SeriesData]]) -> None:
    # Arrange
    _, mt4 = series["mt4"]
    _, lean = series["lean"]
    _, usdjpy = series["usdjpy"]

    # Act
    rates = np.asarray(usdjpy.to_account)

    # Assert
    assert all(15_000 <= d.bars.height <= 40_000 for d in (mt4, lean, usdjpy))
    assert "spread" not in mt4.bars.columns
    assert lean.bars["spread"].null_count() == 0 and bool((lean.bars["spread"] > 0).all())
    assert rates.shape == (usdjpy.bars.height,)
    np.testing.assert_allclose(rates, 1.0 / usdjpy.bars["close"].to_numpy(), rtol=1e-12)


def _run(settings: Settings, data: SeriesData, case: Case, engine: Engine) -> BacktestResult:
    cls = load_user_strategy(settings, case.strategy)
    config = case.config()
    params = {**PARAMS[case.strategy], **case.params}
    computed = compute_backtest(data, cls, params, config, None, run_id="parity", report=False,
                                engine=engine)  # fmt: skip
    return computed.result


def _same(vector: pl.Series, event: pl.Series) -> bool:
    return bool(vector.equals(event, check_dtypes=False, check_names=False, null_equal=True))


@pytest.mark.parametrize("name", list(CASES))
def test_event_engine_gives_the_vectorized_engines_trades_and_equity(
    series: dict[str, tuple[Settings, SeriesData]], name: str
) -> None:
    # Arrange
    case = CASES[name]
    settings, data = series[case.series]

    # Act
    vector = _run(settings, data, case, Engine.VECTOR)
    event = _run(settings, data, case, Engine.EVENT)

    # Assert: what the case covers happened
    ours, theirs = event.trades, vector.trades
    assert theirs.height >= case.min_trades
    seen = set(theirs["exit_reason"].to_list())
    assert set(case.reasons) <= seen, seen
    # the same trades
    assert ours.height == theirs.height
    for column in EXACT:
        assert _same(theirs[column], ours[column]), column
    for column in CLOSE:
        np.testing.assert_allclose(ours[column].to_numpy(), theirs[column].to_numpy(),
                                   rtol=RELATIVE, atol=0.0, err_msg=column)  # fmt: skip
    np.testing.assert_allclose(ours["pnl"].to_numpy(), theirs["pnl"].to_numpy(),
                               rtol=RELATIVE, atol=RELATIVE * CASH, err_msg="pnl")  # fmt: skip
    np.testing.assert_allclose(ours["return"].to_numpy(), theirs["return"].to_numpy(),
                               rtol=RELATIVE, atol=1e-12, err_msg="return")  # fmt: skip
    # the same account, bar by bar
    assert np.array_equal(event.ts, vector.ts)
    assert event.equity[-1] == pytest.approx(vector.equity[-1], rel=RELATIVE)
    np.testing.assert_allclose(event.equity, vector.equity, rtol=RELATIVE, atol=0.0)
    np.testing.assert_allclose(event.position, vector.position, rtol=RELATIVE, atol=1e-6)


def test_event_engine_gives_the_vectorized_engines_kelly_sizes_after_a_zero_pnl_trade(
    series: dict[str, tuple[Settings, SeriesData]],
) -> None:
    # Arrange: USDJPY M15, sma_cross 5/20, whose trade 62 (from 0) sells at the bid and buys
    # back at an ask equal to it
    case = Case("usdjpy", "sma_cross", "fill=next_open spread=0.5 sizing=kelly:1",
                params={"fast": 5, "slow": 20})  # fmt: skip
    settings, data = series[case.series]

    # Act
    vector = _run(settings, data, case, Engine.VECTOR)
    event = _run(settings, data, case, Engine.EVENT)

    # Assert
    assert vector.trades.height == event.trades.height > 63
    assert vector.trades["pnl"][62] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(event.trades["units"].to_numpy(),
                               vector.trades["units"].to_numpy(), rtol=RELATIVE)  # fmt: skip

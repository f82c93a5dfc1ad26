"""``solodesk strategies | backtest | sweep | portfolio`` and ``solodesk runs ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from app.options import (
    CashOpt,
    CommissionOpt,
    Direction,
    DirectionOpt,
    Engine,
    EngineOpt,
    FeesOpt,
    Fill,
    FillOpt,
    FromOpt,
    JsonOpt,
    ModelAliasOpt,
    ModelVersionOpt,
    NoReportOpt,
    ParamOpt,
    ParamsFileOpt,
    PortfolioSizing,
    PortfolioSizingOpt,
    Rebalance,
    RebalanceOpt,
    RunKindOpt,
    SearchOpt,
    SideOpt,
    SizingOpt,
    SlippageOpt,
    SlippageVolOpt,
    SpreadOpt,
    StopOpt,
    StrategyChoiceOpt,
    StrategyFeatureSetOpt,
    StrategyOpt,
    SwapOpt,
    SweepSearch,
    SymbolOpt,
    SymbolsOpt,
    TimeframeOpt,
    ToOpt,
    TradedModelOpt,
    backtest_config,
    model_choice,
    parse_params,
)
from app.output import Progress, cell, emit, emit_all, err, out, print_table
from core.errors import UsageError

runs_app = typer.Typer(
    help="List and inspect stored backtests, sweeps and portfolios.", no_args_is_help=True
)

METRIC_ROWS = (
    ("final_equity", "final equity"),
    ("total_return", "total return"),
    ("annualized_return", "annualized return"),
    ("volatility", "volatility (ann.)"),
    ("sharpe", "Sharpe (ann.)"),
    ("sortino", "Sortino (ann.)"),
    ("calmar", "Calmar"),
    ("max_drawdown", "max drawdown"),
    ("max_drawdown_duration", "max drawdown bars"),
    ("hit_rate", "hit rate"),
    ("profit_factor", "profit factor"),
    ("expectancy", "expectancy"),
    ("exposure", "exposure"),
    ("turnover", "turnover (per year)"),
    ("n_trades", "trades"),
)
TRADE_ROWS = ("n_trades", "hit_rate", "profit_factor", "expectancy")


def strategies(as_json: JsonOpt = False) -> None:
    """List the strategies (entry points and settings) with their parameters."""
    from core.settings import load_settings
    from services.catalog import strategies as vault

    rows = vault(load_settings())
    if as_json:
        emit_all(rows)
        return

    def described(row: object) -> str:
        return ", ".join(
            f"{p['name']}={p['default']}"
            + (f" [{p['low']:g}..{p['high']:g}]" if p["low"] is not None else "")
            for p in row.params  # type: ignore[attr-defined]
        )

    print_table(
        f"{len(rows)} strategies",
        ("name", "parameters", "origin", "description"),
        ((r.name, described(r), r.origin, r.doc) for r in rows),
    )


def backtest(
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    strategy: StrategyChoiceOpt = None,
    name: TradedModelOpt = None,
    alias: ModelAliasOpt = None,
    version: ModelVersionOpt = None,
    params_file: ParamsFileOpt = Path("params.yaml"),
    param: ParamOpt = None,
    side: SideOpt = None,
    fees: FeesOpt = 0.0,
    commission: CommissionOpt = 0.0,
    slippage: SlippageOpt = 0.0,
    slippage_vol: SlippageVolOpt = 0.0,
    spread: SpreadOpt = "0",
    swap_long: SwapOpt = 0.0,
    swap_short: SwapOpt = 0.0,
    fill: FillOpt = Fill.CLOSE,
    direction: DirectionOpt = Direction.BOTH,
    sizing: SizingOpt = "all-in",
    stop_loss: StopOpt = None,
    take_profit: StopOpt = None,
    trailing_stop: StopOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    cash: CashOpt = 100_000.0,
    feature_set: StrategyFeatureSetOpt = "default",
    engine: EngineOpt = Engine.VECTOR,
    no_report: NoReportOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Backtest a strategy, or a registered model (--name), on a stored series; store trades
    and equity, write a tearsheet.

    --engine event runs the trading loop on the replayed bars (the paper broker with fills at
    once, no latency); it gives the same trades and equity as the compiled vectorized engine.
    A model's features come bar by bar in the loop, and from the research feature table in
    the vectorized engine.
    """
    from core.settings import load_settings
    from services.backtest import load_series, run_stored_backtest

    config = backtest_config(
        cash=cash, fees=fees, commission=commission, slippage=slippage,
        slippage_vol=slippage_vol, spread=spread, swap_long=swap_long, swap_short=swap_short,
        fill=fill, direction=direction, sizing=sizing, stop_loss=stop_loss,
        take_profit=take_profit, trailing_stop=trailing_stop,
    )  # fmt: skip
    model = model_choice(strategy, name, alias, version, params_file, param)
    values = parse_params(param)
    settings = load_settings()
    data = load_series(settings, symbol, timeframe, side, date_from, date_to)
    what = strategy if model is None else model.name
    with err().status(f"backtesting {what} on {data.label} ({data.bars.height:,} bars)"):
        outcome = run_stored_backtest(
            settings, data, strategy or "ml_model", values, config, feature_set=feature_set,
            report=not no_report, engine=engine, model=model,
        )  # fmt: skip
    summary = outcome.summary
    if as_json:
        emit(summary)
        return
    figures = summary.model_dump()
    console = out()
    print_table(
        f"{summary.strategy} on {data.label}: run {summary.run_id}",
        ("metric", "value"),
        ((label, cell(figures.get(key))) for key, label in METRIC_ROWS),
        right=("value",),
        console=console,
    )
    console.print(f"bars {data.bars.height:,} in {summary.seconds:.2f} s; "
                  f"money converted by {data.conversion}")  # fmt: skip
    if summary.tearsheet:
        console.print(f"tearsheet: {summary.tearsheet}", soft_wrap=True)


def sweep(
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    strategy: StrategyOpt,
    param: ParamOpt = None,
    search: SearchOpt = SweepSearch.GRID,
    samples: Annotated[int, typer.Option(help="Random search: combinations.")] = 100,
    points: Annotated[int, typer.Option(help="Grid: values per declared range.")] = 5,
    seed: Annotated[int, typer.Option(help="Random search seed.")] = 0,
    jobs: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Most worker processes (default: cores; none for small sweeps)."),
    ] = None,
    metric: Annotated[str, typer.Option(help="Rank by this metric.")] = "sharpe",
    top: Annotated[int, typer.Option(help="Rows to show.")] = 10,
    side: SideOpt = None,
    fees: FeesOpt = 0.0,
    commission: CommissionOpt = 0.0,
    slippage: SlippageOpt = 0.0,
    slippage_vol: SlippageVolOpt = 0.0,
    spread: SpreadOpt = "0",
    fill: FillOpt = Fill.CLOSE,
    direction: DirectionOpt = Direction.BOTH,
    sizing: SizingOpt = "all-in",
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    cash: CashOpt = 100_000.0,
    feature_set: StrategyFeatureSetOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Backtest a strategy over a grid or random sample of its parameters, in parallel."""
    from core.settings import load_settings
    from services.backtest import default_jobs, load_series, plan_sweep, run_stored_sweep

    config = backtest_config(
        cash=cash, fees=fees, commission=commission, slippage=slippage,
        slippage_vol=slippage_vol, spread=spread, fill=fill, direction=direction, sizing=sizing,
    )  # fmt: skip
    settings = load_settings()
    combos, dropped = plan_sweep(
        settings, strategy, parse_params(param), search=search, points=points,
        samples=samples, seed=seed,
    )  # fmt: skip
    most = jobs if jobs is not None else default_jobs()
    data = load_series(settings, symbol, timeframe, side, date_from, date_to)
    console = err()
    console.print(f"{len(combos)} combinations of {strategy} on {data.label} "
                  f"({data.bars.height:,} bars), up to {most} worker(s)"
                  + (f"; {dropped} invalid combinations left out" if dropped else ""))  # fmt: skip
    with Progress(console) as advance:
        outcome = run_stored_sweep(
            settings, data, strategy, combos, config, jobs=most, search=search, metric=metric,
            dropped=dropped, feature_set=feature_set, progress=advance,
        )  # fmt: skip
    summary = outcome.summary
    if as_json:
        emit(summary)
        return
    shown = outcome.results.head(top)
    console = out()
    print_table(
        f"top {shown.height} of {outcome.results.height} by {metric}: run {summary.run_id}",
        shown.columns,
        shown.iter_rows(),
        right=shown.columns,
        console=console,
    )
    rate = summary.combinations / summary.seconds if summary.seconds else 0.0
    where = "in this process" if summary.jobs == 1 else f"in {summary.jobs} processes"
    console.print(f"{summary.combinations} combinations in {summary.seconds:.1f} s "
                  f"({rate:.1f}/s, {where})")  # fmt: skip
    console.print(f"results: {summary.results}", soft_wrap=True)
    if summary.heatmap:
        console.print(f"heatmap: {summary.heatmap}", soft_wrap=True)


def portfolio(
    symbols: SymbolsOpt,
    timeframe: TimeframeOpt,
    strategy: StrategyOpt,
    param: ParamOpt = None,
    side: SideOpt = None,
    sizing: PortfolioSizingOpt = PortfolioSizing.INVERSE_VOL,
    target_vol: Annotated[
        Optional[float], typer.Option(help="Annualized portfolio volatility to aim at.")  # noqa: UP045
    ] = None,
    max_weight: Annotated[float, typer.Option(help="Cap on each |weight|.")] = 0.5,
    max_gross: Annotated[float, typer.Option(help="Cap on the sum of |weights|.")] = 1.0,
    max_portfolio_vol: Annotated[
        Optional[float], typer.Option(help="Cap on the ex-ante annualized volatility.")  # noqa: UP045
    ] = None,
    rebalance: RebalanceOpt = Rebalance.DAILY,
    rebalance_bars: Annotated[int, typer.Option(help="N for every-n-bars.")] = 1,
    lookback: Annotated[int, typer.Option(help="Bars behind the covariance.")] = 500,
    var_window: Annotated[int, typer.Option(help="Bars behind historical VaR/ES.")] = 500,
    direction: DirectionOpt = Direction.BOTH,
    fees: FeesOpt = 0.0,
    commission: CommissionOpt = 0.0,
    slippage: SlippageOpt = 0.0,
    spread: SpreadOpt = "0",
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    cash: CashOpt = 100_000.0,
    feature_set: StrategyFeatureSetOpt = "default",
    no_report: NoReportOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a strategy on several symbols as one portfolio with shared equity and risk."""
    from core.settings import load_settings
    from services.backtest import load_series, portfolio_config, run_stored_portfolio

    base = backtest_config(
        cash=cash, fees=fees, commission=commission, slippage=slippage, spread=spread,
        direction=direction,
    )  # fmt: skip
    names = [s.strip() for s in symbols.split(",") if s.strip()]
    if len(names) < 2:
        raise UsageError(f"--symbols {symbols!r}: give at least two, comma-separated")
    settings = load_settings()
    series = [load_series(settings, n, timeframe, side, date_from, date_to) for n in names]
    config = portfolio_config(
        series, base, sizing=sizing, target_vol=target_vol, max_weight=max_weight,
        max_gross=max_gross, max_portfolio_vol=max_portfolio_vol, rebalance=rebalance,
        rebalance_bars=rebalance_bars, lookback=lookback, var_window=var_window,
    )  # fmt: skip
    bars = sum(d.bars.height for d in series)
    with err().status(f"portfolio of {len(series)} symbols ({bars:,} bars)"):
        outcome = run_stored_portfolio(
            settings, series, strategy, parse_params(param), config,
            direction=direction, feature_set=feature_set, report=not no_report,
        )  # fmt: skip
    summary = outcome.summary
    if as_json:
        emit(summary)
        return
    figures = summary.model_dump()
    rows = [(label, cell(figures.get(key))) for key, label in METRIC_ROWS if key not in TRADE_ROWS]
    rows.append(("trades (bars with a change)", cell(summary.n_trades)))
    rows += [(f"{key} (last bar)", cell(value)) for key, value in summary.risk_last.items()]
    console = out()
    print_table(
        f"portfolio {summary.run_id}: {summary.strategy}, {config.sizing} sizing, "
        f"{config.rebalance} rebalance",
        ("metric", "value"),
        rows,
        right=("value",),
        console=console,
    )
    print_table(
        "per symbol",
        outcome.per_symbol.columns,
        outcome.per_symbol.iter_rows(),
        right=outcome.per_symbol.columns,
        console=console,
    )
    console.print(f"{len(series)} symbols in {summary.seconds:.2f} s")
    if summary.report:
        console.print(f"report: {summary.report}", soft_wrap=True)


@runs_app.command("list")
def runs_list(kind: RunKindOpt = None, as_json: JsonOpt = False) -> None:
    """List stored runs, oldest first."""
    from core.settings import load_settings
    from services.catalog import backtest_runs

    runs = backtest_runs(load_settings(), kind)
    if as_json:
        emit_all(run.record for run in runs)
        return

    def row(record: dict[str, Any]) -> tuple[str, ...]:
        metrics: dict[str, Any] = record.get("metrics") or {}
        series = f"{record.get('symbol', record.get('symbols', ''))} {record.get('timeframe', '')}"
        return (str(record["id"]), str(record.get("kind", "")), str(record.get("strategy", "")),
                series, cell(metrics.get("sharpe")), cell(metrics.get("total_return")),
                str(record.get("report") or ""))  # fmt: skip

    print_table(
        f"{len(runs)} stored run(s)",
        ("id", "kind", "strategy", "series", "sharpe", "total return", "report"),
        (row(run.record) for run in runs),
    )


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="A run id (a unique prefix is enough).")],
    as_json: JsonOpt = False,
) -> None:
    """Show one stored run's record."""
    import json

    from core.settings import load_settings
    from services.catalog import backtest_run

    run = backtest_run(load_settings(), run_id)
    if as_json:
        emit(run.record)
        return
    out().print_json(json.dumps(run.record, default=str))

"""The research commands of the command line: strategies, backtest, sweep, portfolio, runs.

Registered on the main application by :func:`register`; heavy imports stay inside commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError

    from core.errors import UsageError
    from pipelines.backtest.config import BacktestConfig

SymbolOpt = Annotated[str, typer.Option(help="Stored symbol, e.g. EURUSD.")]
TimeframeOpt = Annotated[str, typer.Option(help="M1..MN1, 60, 1h...")]
SideOpt = Annotated[
    str | None, typer.Option(help="bid, ask or mid (default: the only one stored).")
]
StrategyOpt = Annotated[str, typer.Option(help="A strategy name (solodesk strategies lists them).")]
ParamOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional for lists
    typer.Option("--param", help="k=v, repeatable (sweeps: k=lo:hi:step or k=a,b,c)."),
]
FeesOpt = Annotated[float, typer.Option(help="Fraction of traded notional, both legs.")]
CommissionOpt = Annotated[float, typer.Option(help="Account currency per lot per leg.")]
SlippageOpt = Annotated[float, typer.Option(help="Adverse slippage in pips per fill.")]
SlippageVolOpt = Annotated[
    float, typer.Option("--slippage-vol", help="Extra slippage: this fraction of the bar range.")
]
SpreadOpt = Annotated[str, typer.Option(help="Spread in pips, or 'data' for the series' own.")]
SwapOpt = Annotated[float, typer.Option(help="Pips of price per unit per night (+ credit).")]
FillOpt = Annotated[str, typer.Option(help="close (signal bar) or next_open.")]
DirectionOpt = Annotated[str, typer.Option(help="both, long or short.")]
SizingOpt = Annotated[
    str, typer.Option(help="all-in, lots:N, fraction:F, vol-target:X or kelly:F.")
]
StopOpt = Annotated[float | None, typer.Option(help="Pips from the entry fill.")]
DateOpt = Annotated[str | None, typer.Option(help="ISO date (UTC).")]
CashOpt = Annotated[float, typer.Option(help="Starting equity in account currency.")]
FeatureSetOpt = Annotated[
    str, typer.Option("--feature-set", help="Feature set strategies that read features use.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON line.")]


def parse_params(items: list[str] | None) -> dict[str, str]:
    """Parse repeated ``k=v`` options into a mapping, rejecting malformed or repeated keys."""
    from core.errors import UsageError

    values: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise UsageError(f"--param {item!r}: expected name=value, e.g. --param fast=10")
        if key in values:
            raise UsageError(f"--param {key} given twice")
        values[key] = value.strip()
    return values


def options_error(what: str, exc: ValidationError) -> UsageError:
    """Return a usage error listing each rejected option of a configuration and why."""
    from core.errors import UsageError

    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
    )
    return UsageError(f"bad {what} options: {problems}")


def backtest_config(
    *,
    cash: float,
    fees: float,
    commission: float,
    slippage: float,
    slippage_vol: float,
    spread: str,
    swap_long: float,
    swap_short: float,
    fill: str,
    direction: str,
    sizing: str,
    stop_loss: float | None,
    take_profit: float | None,
    trailing_stop: float | None,
) -> BacktestConfig:
    """Build and check a backtest configuration from command-line values."""
    from pydantic import ValidationError

    from core.errors import UsageError
    from pipelines.backtest.config import BacktestConfig, CostConfig, SizingConfig

    if spread.strip().lower() == "data":
        spread_pips, from_data = 0.0, True
    else:
        try:
            spread_pips, from_data = float(spread), False
        except ValueError:
            raise UsageError(f"--spread {spread!r}: give pips (e.g. 0.8) or 'data'") from None
    if fill not in ("close", "next_open"):
        raise UsageError(f"--fill {fill!r}: use close or next_open")
    if direction not in ("both", "long", "short"):
        raise UsageError(f"--direction {direction!r}: use both, long or short")
    try:
        costs = CostConfig(
            fees=fees, commission_per_lot=commission, spread_pips=spread_pips,
            spread_from_data=from_data, slippage_pips=slippage, slippage_vol=slippage_vol,
            swap_long_pips=swap_long, swap_short_pips=swap_short,
        )  # fmt: skip
        return BacktestConfig(
            cash=cash, costs=costs, fill=fill, direction=direction,  # type: ignore[arg-type]
            sizing=SizingConfig.parse(sizing), stop_loss_pips=stop_loss,
            take_profit_pips=take_profit, trailing_stop_pips=trailing_stop,
        )  # fmt: skip
    except ValidationError as exc:
        raise options_error("backtest", exc) from None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.2f}"
    return str(value)


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


def register(app: typer.Typer) -> None:
    """Add the research commands to the command line."""
    runs_app = typer.Typer(help="List and inspect stored backtests, sweeps and portfolios.",
                           no_args_is_help=True)  # fmt: skip
    app.add_typer(runs_app, name="runs")

    @app.command("strategies")
    def strategies_command(as_json: JsonOpt = False) -> None:
        """List the strategies (entry points and settings) with their parameters."""
        from app.cli import _emit, _out, _settings
        from core.settings import config_file
        from models.strategies.registry import available_strategies, load_strategy

        settings = _settings()
        base = config_file().resolve().parent
        found = available_strategies(dict(settings.strategies), base)
        rows: list[dict[str, Any]] = []
        for name, origin in sorted(found.items()):
            cls = load_strategy(name, user=dict(settings.strategies), base_dir=base)
            specs = [spec.model_dump() for spec in cls.params]
            rows.append({"name": name, "origin": origin, "params": specs,
                         "doc": (cls.__doc__ or "").strip().splitlines()[0]})  # fmt: skip
        if as_json:
            for row in rows:
                _emit(row)
            return
        from rich.table import Table

        table = Table(title=f"{len(rows)} strategies")
        for column in ("name", "parameters", "origin", "description"):
            table.add_column(column)
        for row in rows:
            params = ", ".join(
                f"{p['name']}={p['default']}"
                + (f" [{p['low']:g}..{p['high']:g}]" if p["low"] is not None else "")
                for p in row["params"]
            )
            table.add_row(row["name"], params, row["origin"], row["doc"])
        _out().print(table)

    @app.command("backtest")
    def backtest_command(
        symbol: SymbolOpt,
        timeframe: TimeframeOpt,
        strategy: StrategyOpt,
        param: ParamOpt = None,
        side: SideOpt = None,
        fees: FeesOpt = 0.0,
        commission: CommissionOpt = 0.0,
        slippage: SlippageOpt = 0.0,
        slippage_vol: SlippageVolOpt = 0.0,
        spread: SpreadOpt = "0",
        swap_long: SwapOpt = 0.0,
        swap_short: SwapOpt = 0.0,
        fill: FillOpt = "close",
        direction: DirectionOpt = "both",
        sizing: SizingOpt = "all-in",
        stop_loss: StopOpt = None,
        take_profit: StopOpt = None,
        trailing_stop: StopOpt = None,
        date_from: Annotated[str | None, typer.Option("--from", help="ISO date.")] = None,
        date_to: Annotated[str | None, typer.Option("--to", help="ISO date.")] = None,
        cash: CashOpt = 100_000.0,
        feature_set: FeatureSetOpt = "default",
        no_report: Annotated[bool, typer.Option("--no-report", help="Skip the tearsheet.")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Backtest a strategy on a stored series; store trades and equity, write a tearsheet."""
        from app.cli import _emit, _err, _out, _parse_utc, _settings, _side
        from core.timeframes import parse_timeframe
        from feature_store.backtest_runs import load_series, run_stored_backtest

        config = backtest_config(
            cash=cash, fees=fees, commission=commission, slippage=slippage,
            slippage_vol=slippage_vol, spread=spread, swap_long=swap_long,
            swap_short=swap_short, fill=fill, direction=direction, sizing=sizing,
            stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop,
        )  # fmt: skip
        values = parse_params(param)
        settings = _settings()
        start, end = _parse_utc(date_from, "--from"), _parse_utc(date_to, "--to")
        data = load_series(settings, symbol, parse_timeframe(timeframe), _side(side), start, end)
        with _err().status(f"backtesting {strategy} on {data.label} ({data.bars.height:,} bars)"):
            outcome = run_stored_backtest(
                settings, data, strategy, values, config, feature_set=feature_set,
                report=not no_report,
            )  # fmt: skip
        if as_json:
            _emit(outcome.as_json())
            return
        from rich.table import Table

        summary = outcome.as_json()
        table = Table(title=f"{summary['strategy']} on {data.label}: run {outcome.run.id}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, label in METRIC_ROWS:
            table.add_row(label, _fmt(summary.get(key)))
        out = _out()
        out.print(table)
        out.print(f"bars {data.bars.height:,} in {outcome.seconds:.2f} s; "
                  f"money converted by {data.conversion}")  # fmt: skip
        if outcome.run.record["report"]:
            out.print(f"tearsheet: {outcome.run.record['report']}", soft_wrap=True)

    @app.command("sweep")
    def sweep_command(
        symbol: SymbolOpt,
        timeframe: TimeframeOpt,
        strategy: StrategyOpt,
        param: ParamOpt = None,
        search: Annotated[str, typer.Option(help="grid or random.")] = "grid",
        samples: Annotated[int, typer.Option(help="Random search: combinations.")] = 100,
        points: Annotated[int, typer.Option(help="Grid: values per declared range.")] = 5,
        seed: Annotated[int, typer.Option(help="Random search seed.")] = 0,
        jobs: Annotated[int | None, typer.Option(help="Worker processes (default: cores).")] = None,
        metric: Annotated[str, typer.Option(help="Rank by this metric.")] = "sharpe",
        top: Annotated[int, typer.Option(help="Rows to show.")] = 10,
        side: SideOpt = None,
        fees: FeesOpt = 0.0,
        commission: CommissionOpt = 0.0,
        slippage: SlippageOpt = 0.0,
        slippage_vol: SlippageVolOpt = 0.0,
        spread: SpreadOpt = "0",
        fill: FillOpt = "close",
        direction: DirectionOpt = "both",
        sizing: SizingOpt = "all-in",
        date_from: Annotated[str | None, typer.Option("--from", help="ISO date.")] = None,
        date_to: Annotated[str | None, typer.Option("--to", help="ISO date.")] = None,
        cash: CashOpt = 100_000.0,
        feature_set: FeatureSetOpt = "default",
        as_json: JsonOpt = False,
    ) -> None:
        """Backtest a strategy over a grid or random sample of its parameters, in parallel."""
        from app.cli import _emit, _err, _out, _parse_utc, _Progress, _settings, _side
        from core.errors import UsageError
        from core.timeframes import parse_timeframe
        from feature_store.backtest_runs import load_series, load_user_strategy, run_stored_sweep
        from models.strategies.registry import grid, parse_range, random_samples
        from pipelines.backtest.sweep import default_jobs

        config = backtest_config(
            cash=cash, fees=fees, commission=commission, slippage=slippage,
            slippage_vol=slippage_vol, spread=spread, swap_long=0.0, swap_short=0.0,
            fill=fill, direction=direction, sizing=sizing, stop_loss=None, take_profit=None,
            trailing_stop=None,
        )  # fmt: skip
        if search not in ("grid", "random"):
            raise UsageError(f"--search {search!r}: use grid or random")
        settings = _settings()
        cls = load_user_strategy(settings, strategy)
        specs = {spec.name: spec for spec in cls.params}
        ranges: dict[str, list[Any]] = {}
        for name, text in parse_params(param).items():
            if name not in specs:
                known = ", ".join(specs)
                raise UsageError(f"--param {name}: {cls.name} declares no such parameter ({known})")
            ranges[name] = parse_range(specs[name], text)
        if search == "grid":
            combos, dropped = grid(cls, ranges, points=points)
        else:
            combos, dropped = random_samples(cls, samples, seed, ranges)
        workers = jobs if jobs is not None else default_jobs()
        start, end = _parse_utc(date_from, "--from"), _parse_utc(date_to, "--to")
        data = load_series(settings, symbol, parse_timeframe(timeframe), _side(side), start, end)
        console = _err()
        console.print(f"{len(combos)} combinations of {cls.name} on {data.label} "
                      f"({data.bars.height:,} bars), {workers} worker(s)"
                      + (f"; {dropped} invalid combinations left out" if dropped else ""))  # fmt: skip
        with _Progress(console) as advance:
            outcome = run_stored_sweep(
                settings, data, strategy, combos, config, jobs=workers, search=search,
                metric=metric, dropped=dropped, feature_set=feature_set, progress=advance,
            )  # fmt: skip
        if as_json:
            _emit({"run_id": outcome.run.id, "combinations": outcome.results.height,
                   "dropped": dropped, "seconds": round(outcome.seconds, 3),
                   "best": outcome.run.record["best"], "heatmap": outcome.run.record["report"],
                   "results": str(outcome.run.folder / "results.parquet")})  # fmt: skip
            return
        from rich.table import Table

        shown = outcome.results.head(top)
        table = Table(title=f"top {shown.height} of {outcome.results.height} by {metric}: "
                      f"run {outcome.run.id}")  # fmt: skip
        for column in shown.columns:
            table.add_column(column, justify="right")
        for row in shown.iter_rows():
            table.add_row(*(_fmt(v) for v in row))
        out = _out()
        out.print(table)
        rate = outcome.results.height / outcome.seconds if outcome.seconds else 0.0
        out.print(f"{outcome.results.height} combinations in {outcome.seconds:.1f} s "
                  f"({rate:.1f}/s)")  # fmt: skip
        out.print(f"results: {outcome.run.folder / 'results.parquet'}", soft_wrap=True)
        if outcome.run.record["report"]:
            out.print(f"heatmap: {outcome.run.record['report']}", soft_wrap=True)

    @app.command("portfolio")
    def portfolio_command(
        symbols: Annotated[str, typer.Option(help="Stored symbols, comma-separated.")],
        timeframe: TimeframeOpt,
        strategy: StrategyOpt,
        param: ParamOpt = None,
        side: SideOpt = None,
        sizing: Annotated[
            str,
            typer.Option(help="equal, vol-target, inverse-vol, risk-parity, hrp, min-variance."),
        ] = "inverse-vol",
        target_vol: Annotated[
            float | None, typer.Option(help="Annualized portfolio volatility to aim at.")
        ] = None,
        max_weight: Annotated[float, typer.Option(help="Cap on each |weight|.")] = 0.5,
        max_gross: Annotated[float, typer.Option(help="Cap on the sum of |weights|.")] = 1.0,
        max_portfolio_vol: Annotated[
            float | None, typer.Option(help="Cap on the ex-ante annualized volatility.")
        ] = None,
        rebalance: Annotated[
            str, typer.Option(help="every-bar, every-n-bars, daily or weekly.")
        ] = "daily",
        rebalance_bars: Annotated[int, typer.Option(help="N for every-n-bars.")] = 1,
        lookback: Annotated[int, typer.Option(help="Bars behind the covariance.")] = 500,
        var_window: Annotated[int, typer.Option(help="Bars behind historical VaR/ES.")] = 500,
        direction: DirectionOpt = "both",
        fees: FeesOpt = 0.0,
        commission: CommissionOpt = 0.0,
        slippage: SlippageOpt = 0.0,
        spread: SpreadOpt = "0",
        date_from: Annotated[str | None, typer.Option("--from", help="ISO date.")] = None,
        date_to: Annotated[str | None, typer.Option("--to", help="ISO date.")] = None,
        cash: CashOpt = 100_000.0,
        feature_set: FeatureSetOpt = "default",
        no_report: Annotated[bool, typer.Option("--no-report", help="Skip the report.")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Run a strategy on several symbols as one portfolio with shared equity and risk."""
        from pydantic import ValidationError

        from app.cli import _emit, _err, _out, _parse_utc, _settings, _side
        from core.errors import UsageError
        from core.timeframes import parse_timeframe
        from feature_store.backtest_runs import load_series, run_stored_portfolio
        from pipelines.backtest.portfolio import PortfolioConfig

        base = backtest_config(
            cash=cash, fees=fees, commission=commission, slippage=slippage, slippage_vol=0.0,
            spread=spread, swap_long=0.0, swap_short=0.0, fill="close", direction=direction,
            sizing="all-in", stop_loss=None, take_profit=None, trailing_stop=None,
        )  # fmt: skip
        names = [s.strip() for s in symbols.split(",") if s.strip()]
        if len(names) < 2:
            raise UsageError(f"--symbols {symbols!r}: give at least two, comma-separated")
        settings = _settings()
        tf = parse_timeframe(timeframe)
        start, end = _parse_utc(date_from, "--from"), _parse_utc(date_to, "--to")
        series = [load_series(settings, n, tf, _side(side), start, end) for n in names]
        try:
            config = PortfolioConfig(
                bars_per_year=series[0].bars_per_year, cash=cash, costs=base.costs,
                sizing=sizing, target_vol=target_vol, max_weight=max_weight,  # type: ignore[arg-type]
                max_gross=max_gross, max_portfolio_vol=max_portfolio_vol,
                rebalance=rebalance, rebalance_bars=rebalance_bars,  # type: ignore[arg-type]
                lookback=lookback, var_window=var_window,
            )  # fmt: skip
        except ValidationError as exc:
            raise options_error("portfolio", exc) from None
        bars = sum(d.bars.height for d in series)
        with _err().status(f"portfolio of {len(series)} symbols ({bars:,} bars)"):
            outcome = run_stored_portfolio(
                settings, series, strategy, parse_params(param), config,
                direction=direction, feature_set=feature_set, report=not no_report,
            )  # fmt: skip
        if as_json:
            _emit(outcome.as_json())
            return
        from rich.table import Table

        summary = outcome.as_json()
        out = _out()
        table = Table(title=f"portfolio {outcome.run.id}: {summary['strategy']}, "
                      f"{config.sizing} sizing, {config.rebalance} rebalance")  # fmt: skip
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, label in METRIC_ROWS:
            if key in ("n_trades", "hit_rate", "profit_factor", "expectancy"):
                continue
            table.add_row(label, _fmt(summary.get(key)))
        table.add_row("trades (bars with a change)", _fmt(summary["n_trades"]))
        for key, value in summary["risk_last"].items():
            table.add_row(f"{key} (last bar)", _fmt(value))
        out.print(table)
        symbols_table = Table(title="per symbol")
        for column in outcome.per_symbol.columns:
            symbols_table.add_column(column, justify="right")
        for row in outcome.per_symbol.iter_rows():
            symbols_table.add_row(*(_fmt(v) for v in row))
        out.print(symbols_table)
        out.print(f"{len(series)} symbols in {outcome.seconds:.2f} s")
        if outcome.run.record["report"]:
            out.print(f"report: {outcome.run.record['report']}", soft_wrap=True)

    @runs_app.command("list")
    def runs_list(
        kind: Annotated[str | None, typer.Option(help="backtest, sweep or portfolio.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List stored runs, oldest first."""
        from app.cli import _emit, _out, _settings
        from feature_store.backtest_runs import backtest_store

        runs = backtest_store(_settings()).runs(kind)
        if as_json:
            for run in runs:
                _emit(run.record)
            return
        from rich.table import Table

        table = Table(title=f"{len(runs)} stored run(s)")
        for column in ("id", "kind", "strategy", "series", "sharpe", "total return", "report"):
            table.add_column(column)
        for run in runs:
            r = run.record
            metrics = r.get("metrics") or {}
            series = f"{r.get('symbol', r.get('symbols', ''))} {r.get('timeframe', '')}"
            table.add_row(run.id, run.kind, str(r.get("strategy", "")), series,
                          _fmt(metrics.get("sharpe")), _fmt(metrics.get("total_return")),
                          str(r.get("report") or ""))  # fmt: skip
        _out().print(table)

    @runs_app.command("show")
    def runs_show(
        run_id: Annotated[str, typer.Argument(help="A run id (a unique prefix is enough).")],
        as_json: JsonOpt = False,
    ) -> None:
        """Show one stored run's record."""
        import json

        from app.cli import _emit, _out, _settings
        from feature_store.backtest_runs import backtest_store

        run = backtest_store(_settings()).get(run_id)
        if as_json:
            _emit(run.record)
            return
        _out().print_json(json.dumps(run.record, default=str))

"""``solodesk paper``, the session queries (``fills``, ``trades``, ``positions``, ``sessions``),
the controls (``pause``, ``resume``, ``flatten``, ``stop``) and ``solodesk risk ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from app.options import (
    CancelLatencyOpt,
    CashOpt,
    CommissionOpt,
    Direction,
    DirectionOpt,
    FeedKind,
    FeedOpt,
    FeesOpt,
    FlattenOpt,
    FromOpt,
    ImpactOpt,
    JitterOpt,
    JsonOpt,
    LatencyOpt,
    LeverageOpt,
    ModelAliasOpt,
    ModelVersionOpt,
    ModifyLatencyOpt,
    NoLotRoundingOpt,
    PaperSeedOpt,
    PaperSpreadOpt,
    ParamOpt,
    ParamsFileOpt,
    ParticipationOpt,
    RejectOpt,
    RiskOpt,
    SessionOpt,
    SideOpt,
    SizingOpt,
    SlippageOpt,
    SlippageVolOpt,
    SpeedOpt,
    StopOpt,
    StrategyChoiceOpt,
    StrategyFeatureSetOpt,
    SwapOpt,
    SymbolOpt,
    TimeframeOpt,
    ToOpt,
    TouchOpt,
    TradedModelOpt,
    WhyOpt,
    backtest_config,
    model_choice,
    parse_params,
    speed_value,
)
from app.output import Progress, cell, emit, emit_all, err, out, pct, print_table

risk_app = typer.Typer(
    help="The risk engine: an account's standing, reset, halt.", no_args_is_help=True
)


def paper(
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    strategy: StrategyChoiceOpt = None,
    name: TradedModelOpt = None,
    alias: ModelAliasOpt = None,
    version: ModelVersionOpt = None,
    params_file: ParamsFileOpt = Path("params.yaml"),
    param: ParamOpt = None,
    side: SideOpt = None,
    feed: FeedOpt = FeedKind.REPLAY,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    speed: SpeedOpt = None,
    session: SessionOpt = None,
    seed: PaperSeedOpt = 0,
    risk: RiskOpt = None,
    fees: FeesOpt = 0.0,
    commission: CommissionOpt = 0.0,
    slippage: SlippageOpt = 0.0,
    slippage_vol: SlippageVolOpt = 0.0,
    spread: PaperSpreadOpt = None,
    swap_long: SwapOpt = 0.0,
    swap_short: SwapOpt = 0.0,
    direction: DirectionOpt = Direction.BOTH,
    sizing: SizingOpt = "all-in",
    stop_loss: StopOpt = None,
    take_profit: StopOpt = None,
    trailing_stop: StopOpt = None,
    cash: CashOpt = 100_000.0,
    leverage: LeverageOpt = 30.0,
    latency_ms: LatencyOpt = 50.0,
    modify_latency_ms: ModifyLatencyOpt = 50.0,
    cancel_latency_ms: CancelLatencyOpt = 50.0,
    jitter_ms: JitterOpt = 20.0,
    impact: ImpactOpt = 0.0,
    reject_prob: RejectOpt = 0.0,
    touch_prob: TouchOpt = 0.0,
    participation: ParticipationOpt = None,
    no_lot_rounding: NoLotRoundingOpt = False,
    feature_set: StrategyFeatureSetOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Paper-trade a strategy, or a registered model (--name), on replayed bars through the
    paper broker and the risk engine.

    A decision at a bar's close fills at the first quote after it, plus latency. Rerunning
    with the same --session resumes after the last processed bar. A model trades through
    ml_model by the rule it was trained with, on features computed bar by bar; without
    --version it follows its alias (champion) and reloads between bars when the alias moves.
    """
    from core.settings import load_settings
    from services.runtime import PaperOptions, SimulatorOptions, run_paper

    config = backtest_config(
        cash=cash, fees=fees, commission=commission, slippage=slippage,
        slippage_vol=slippage_vol, spread=spread if spread is not None else 0.0,
        swap_long=swap_long, swap_short=swap_short, direction=direction, sizing=sizing,
        stop_loss=stop_loss, take_profit=take_profit, trailing_stop=trailing_stop,
    )  # fmt: skip
    simulator = SimulatorOptions(
        leverage=leverage, latency_ms=latency_ms, modify_latency_ms=modify_latency_ms,
        cancel_latency_ms=cancel_latency_ms, jitter_ms=jitter_ms, impact_pips=impact,
        reject_probability=reject_prob, touch_probability=touch_prob,
        participation=participation, round_lots=not no_lot_rounding,
    )  # fmt: skip
    model_choice(strategy, name, alias, version, params_file, param)  # the selectors, checked
    options = PaperOptions(
        symbol=symbol, timeframe=timeframe, side=side, strategy=strategy or "ml_model",
        params=parse_params(param), feed=feed, start=date_from, end=date_to, seed=seed,
        risk=tuple(risk or ()), feature_set=feature_set, backtest=config, simulator=simulator,
        model=name, model_alias=alias, model_version=version,
        params_file=str(params_file),
    )  # fmt: skip
    settings = load_settings()
    with Progress() as advance:
        summary = run_paper(
            settings, options, session=session, speed=speed_value(speed),
            spread_given=spread is not None,
            on_batch=lambda done, total: advance("replay", done, total),
            say=lambda text: err().print(text),
        )  # fmt: skip
    if as_json:
        emit(summary)
        return
    figures = summary.model_dump()
    rows = [(k.replace("_", " "), cell(figures[k])) for k in (
        "session", "account", "strategy", "bars", "bars_this_run", "orders", "fills", "trades",
        "final_equity", "risk_state", "resumed", "status", "ledger_hash", "seconds")]  # fmt: skip
    print_table(
        f"paper session {summary.session}: {summary.symbol} {summary.timeframe}",
        ("", "value"), rows, right=("value",), console=out(),
    )  # fmt: skip
    out().print(summary.message)
    if summary.model is not None:
        out().print(f"model {summary.model} v{summary.model_version}; live features rebuilt "
                    f"in {summary.warmup_seconds:.2f} s")  # fmt: skip
    if summary.shortfall is not None:
        _print_shortfall(summary.shortfall)


#: The cash a live session's options record; it trades the account's equity, read from the
#: terminal when it starts.
LIVE_CASH = 100_000.0
#: The limits of which at least one must be set before a live session starts.
LIVE_LIMITS = (
    "max_daily_loss", "max_trailing_drawdown", "max_position_lots", "max_gross_exposure",
    "max_leverage",
)  # fmt: skip


def live(
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    strategy: StrategyChoiceOpt = None,
    name: TradedModelOpt = None,
    alias: ModelAliasOpt = None,
    version: ModelVersionOpt = None,
    params_file: ParamsFileOpt = Path("params.yaml"),
    param: ParamOpt = None,
    side: SideOpt = None,
    broker: Annotated[
        str, typer.Option("--broker", help="The broker: mt4 (the terminal behind the bridge).")
    ] = "mt4",
    confirm_live: Annotated[
        bool, typer.Option("--confirm-live", help="Send real orders to the account.")
    ] = False,
    override: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="A written reason to trade a model the live gate refuses."),
    ] = None,
    date_to: ToOpt = None,
    session: SessionOpt = None,
    risk: RiskOpt = None,
    direction: DirectionOpt = Direction.BOTH,
    sizing: SizingOpt = "all-in",
    stop_loss: StopOpt = None,
    take_profit: StopOpt = None,
    feature_set: StrategyFeatureSetOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Trade a strategy, or a registered model (--name), live through MetaTrader 4.

    Orders go to the terminal behind the bridge (\\[mt4] in solodesk.toml) with their stop loss
    and take profit, behind the risk engine. Refused without --confirm-live, without a risk
    limit set (\\[risk] or --risk: one of max_daily_loss, max_trailing_drawdown,
    max_position_lots, max_gross_exposure, max_leverage), when the terminal's server time
    disagrees with \\[mt4] clock, and for a model the live gate refuses (unless --override gives
    a written reason). Rerunning with the same --session resumes it. --to ends it.
    """
    from core.errors import UsageError
    from core.settings import load_settings
    from services.runtime import PaperOptions, parse_risk_overrides, run_paper

    if broker.lower() != "mt4":
        raise UsageError(f"--broker {broker!r}: the live broker is mt4")
    if not confirm_live:
        msg = "live trading sends real orders to your MT4 account: add --confirm-live to go on"
        raise UsageError(msg)
    settings = load_settings()
    limits = parse_risk_overrides(settings.risk, tuple(risk or ()))
    if all(getattr(limits, key) is None for key in LIVE_LIMITS):
        msg = (
            "no risk limit is set: give at least one of "
            f"{', '.join(LIVE_LIMITS)} in [risk] of solodesk.toml or with --risk KEY=VALUE "
            "(e.g. --risk max_daily_loss=0.02)"
        )
        raise UsageError(msg)
    model_choice(strategy, name, alias, version, params_file, param)
    if name is not None:
        from services.models import live_gate

        decision = live_gate(
            settings, name, version=version, alias=alias or "champion", override=override
        )
        err().print(f"live gate: {decision.reason}")
        if not decision.allowed:
            raise UsageError(
                f"the live gate refuses {name} v{decision.version}: {decision.reason}; "
                "--override with a written reason trades it anyway"
            )
    config = backtest_config(
        cash=LIVE_CASH, fees=0.0, commission=0.0, slippage=0.0, slippage_vol=0.0, spread=0.0,
        swap_long=0.0, swap_short=0.0, direction=direction, sizing=sizing,
        stop_loss=stop_loss, take_profit=take_profit, trailing_stop=None,
    )  # fmt: skip
    options = PaperOptions(
        symbol=symbol, timeframe=timeframe, side=side, strategy=strategy or "ml_model",
        params=parse_params(param), feed=FeedKind.MT4, broker="mt4", end=date_to,
        risk=tuple(risk or ()), feature_set=feature_set, backtest=config, model=name,
        model_alias=alias, model_version=version, params_file=str(params_file),
    )  # fmt: skip
    summary = run_paper(
        settings, options, session=session, spread_given=False,
        say=lambda text: err().print(text),
    )  # fmt: skip
    if as_json:
        emit(summary)
        return
    out().print(f"live session {summary.session} ({summary.account}): {summary.message}")


def _print_shortfall(s: Any) -> None:
    """Print the paper session beside the walk-forward's out-of-sample figures on its bars."""
    console = out()
    if s.walkforward_return is None:
        console.print(
            f"paper shortfall: the walk-forward {s.walkforward_run or '(unknown)'} has no "
            f"out-of-sample bars between {s.first} and {s.last} to compare with"
        )
        return
    print_table(
        f"paper against the walk-forward {s.walkforward_run}, {s.first} to {s.last}",
        ("", "walk-forward (fills at the close)", "paper (after the close + latency)"),
        [("bars", cell(s.walkforward_bars), cell(s.bars)),
         ("return", pct(s.walkforward_return), pct(s.paper_return)),
         ("trades", cell(s.walkforward_trades), cell(s.paper_trades))],
        right=("walk-forward (fills at the close)", "paper (after the close + latency)"),
        console=console,
    )  # fmt: skip
    console.print(f"paper shortfall: {pct(s.shortfall)} (walk-forward return minus paper return;"
                  " see docs/trading.md, Paper shortfall)")  # fmt: skip
    if s.fitted_bars:
        console.print(
            f"[yellow]{s.fitted_bars:,} of the {s.bars:,} paper bars lie in the data the version "
            f"was fitted on (up to {s.fitted_until}): its paper figures there are in sample, the "
            "walk-forward's are not[/]"
        )


def fills(session: SessionOpt = None, as_json: JsonOpt = False) -> None:
    """List a session's fills in execution order (the latest session by default)."""
    from core.settings import load_settings
    from services.runtime import session_fills

    rows = session_fills(load_settings(), session)
    if as_json:
        emit_all(rows)
        return
    columns = ("ts", "client_order_id", "side", "units", "lots", "price", "fees", "reason")
    print_table(f"{len(rows)} fills", columns, ([cell(r[c]) for c in columns] for r in rows),
                right=("units", "lots", "price", "fees"))  # fmt: skip


def trades(session: SessionOpt = None, as_json: JsonOpt = False) -> None:
    """List a session's round trips, as the backtest's trade table."""
    from core.settings import load_settings
    from services.runtime import session_trades

    rows = session_trades(load_settings(), session)
    if as_json:
        emit_all(rows)
        return
    columns = ("entry_ts", "exit_ts", "direction", "units", "entry_price", "exit_price", "pnl",
               "exit_reason")  # fmt: skip
    print_table(f"{len(rows)} trades", columns, ([cell(r[c]) for c in columns] for r in rows),
                right=("units", "entry_price", "exit_price", "pnl"))  # fmt: skip


def positions(session: SessionOpt = None, as_json: JsonOpt = False) -> None:
    """List open positions (of one session, or of all) with their protective levels."""
    from core.settings import load_settings
    from services.runtime import session_positions

    rows = session_positions(load_settings(), session)
    if as_json:
        emit_all(rows)
        return
    columns = ("session", "symbol", "units", "avg_price", "stop_loss", "take_profit")
    print_table(f"{len(rows)} open positions", columns,
                ([cell(r[c]) for c in columns] for r in rows), right=("units", "avg_price"))  # fmt: skip


def sessions(as_json: JsonOpt = False) -> None:
    """List trading sessions, oldest first."""
    from core.settings import load_settings
    from services.runtime import list_sessions

    rows = list_sessions(load_settings())
    if as_json:
        emit_all(rows)
        return
    print_table(
        f"{len(rows)} sessions",
        ("session", "kind", "symbol", "timeframe", "strategy", "status", "paused", "bars"),
        ((r.session, r.kind, r.symbol, r.timeframe, r.strategy, r.status, cell(r.paused),
          cell(r.bars)) for r in rows),
        right=("bars",),
    )  # fmt: skip


def _control(
    action: Any, session: str | None, why: str, as_json: bool, flatten: bool = False
) -> None:
    from core.settings import load_settings
    from services.runtime import request_control

    request = request_control(load_settings(), action, session=session, why=why, flatten=flatten)
    if as_json:
        emit(request)
        return
    done = f": {request.result}" if request.result else ""
    err().print(f"{action} requested for session {request.session} (request {request.id}){done}")


def pause(session: SessionOpt = None, why: WhyOpt = "", as_json: JsonOpt = False) -> None:
    """Pause a session: no new orders; open positions and their stops stay."""
    _control("pause", session, why, as_json)


def resume(session: SessionOpt = None, why: WhyOpt = "", as_json: JsonOpt = False) -> None:
    """Resume a paused session."""
    _control("resume", session, why, as_json)


def flatten(session: SessionOpt = None, why: WhyOpt = "", as_json: JsonOpt = False) -> None:
    """Close a session's position at the next quote."""
    _control("flatten", session, why, as_json)


def stop(session: SessionOpt = None, why: WhyOpt = "", as_json: JsonOpt = False) -> None:
    """Stop a running session after its current bar (it can be resumed later)."""
    _control("stop", session, why, as_json)


@risk_app.command("status")
def risk_status(session: SessionOpt = None, as_json: JsonOpt = False) -> None:
    """Show the risk standing of a session's account: state, daily P&L, drawdown, limits."""
    from core.settings import load_settings
    from services.runtime import risk_status as status_of

    status = status_of(load_settings(), session)
    if as_json:
        emit(status)
        return
    figures = status.model_dump()
    rows = [(k.replace("_", " "), cell(v)) for k, v in figures.items() if k != "limits"]
    rows += [(f"limit {k}", cell(v)) for k, v in status.limits.items()]
    print_table(f"risk of {status.account}", ("", "value"), rows, right=("value",), console=out())


@risk_app.command("reset")
def risk_reset(session: SessionOpt = None, why: WhyOpt = "", as_json: JsonOpt = False) -> None:
    """Clear a HALTED (or REDUCING) account back to active."""
    _control("reset", session, why, as_json)


@risk_app.command("halt")
def risk_halt(
    session: SessionOpt = None, flatten: FlattenOpt = False, why: WhyOpt = "",
    as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Halt a session's account: nothing that increases exposure until a reset."""
    _control("halt", session, why, as_json, flatten=flatten)

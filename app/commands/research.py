"""``solodesk walkforward``, ``solodesk train`` and ``solodesk retrain``: models tuned, fitted,
judged and promoted."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from app.options import (
    CommissionOpt,
    FeatureSetOpt,
    FeesOpt,
    FromOpt,
    JobsOpt,
    JsonOpt,
    ModelOpt,
    ModelParamOpt,
    Objective,
    ObjectiveOpt,
    ParamsFileOpt,
    Scheme,
    SchemeOpt,
    SeedOpt,
    SideOpt,
    SlippageOpt,
    SpreadOpt,
    SymbolOpt,
    ThreadsOpt,
    TimeframeOpt,
    ToOpt,
    TrialsOpt,
    research_config,
)
from app.output import Progress, emit, err, out, pct, print_table, ratio

if TYPE_CHECKING:
    from datetime import datetime

    from core.timeframes import Timeframe
    from core.types import Side
    from services.research import WalkForwardSummary


def _series(
    symbol: str,
    timeframe: Timeframe,
    feature_set: str,
    params: Path,
    side: Side | None,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, Any]:
    """Return what selects a job's research rows, as ``load_research_inputs`` takes it."""
    return {"symbol": symbol, "timeframe": timeframe, "feature_set": feature_set,
            "params_path": params, "side": side, "start": start, "end": end}  # fmt: skip


def print_summary(summary: WalkForwardSummary) -> None:
    """Print the out-of-sample summary and the fold table on stdout."""
    console = out()
    oos = summary.oos
    lo, hi = oos.sharpe_ci
    level = round(100 * oos.ci_level)
    print_table(
        f"{summary.model} on {summary.symbol} {summary.timeframe}: {summary.scheme} folds "
        f"(run {summary.run_id})",
        ("fold", "test from", "test to", "trials", "Sharpe", "return", "AUC", "log-loss", "PBO"),
        ((str(f.fold), f.test_start[:10], f.test_end[:10], str(f.n_trials), ratio(f.sharpe),
          pct(f.total_return), ratio(f.auc), ratio(f.logloss), ratio(f.pbo))
         for f in summary.folds),
        right=("test from", "test to", "trials", "Sharpe", "return", "AUC", "log-loss", "PBO"),
        console=console,
    )  # fmt: skip
    sharpe = "n/a" if oos.sharpe is None else f"{oos.sharpe:.2f}"
    ci = "n/a" if lo is None or hi is None else f"[{lo:.2f}, {hi:.2f}]"
    rows = [
        ("Sharpe (ann.)", f"{sharpe}  {level}% CI {ci}"),
        ("probabilistic Sharpe (vs 0)", ratio(oos.psr)),
        (f"deflated Sharpe ({oos.n_trials} trials)", ratio(oos.dsr)),
        ("total return", pct(oos.total_return)),
        ("max drawdown", pct(oos.max_drawdown)),
        ("hit rate", pct(oos.hit_rate)),
        ("trades", str(oos.n_trades)),
        ("Newey-West t (p)", f"{ratio(oos.newey_west_t)} ({ratio(oos.newey_west_p)})"),
        (
            "SPA p vs flat / buy-and-hold",
            f"{ratio(oos.spa.vs_flat_p)} / {ratio(oos.spa.vs_buy_and_hold_p)}",
        ),
        ("gross Sharpe (ann.)", ratio(oos.gross.sharpe)),
    ]
    if summary.pbo is not None:
        rows.append(("probability of backtest overfitting", ratio(summary.pbo)))
    print_table(
        "out of sample, after costs", ("figure", "value"), rows, right=("value",),
        console=console, header=False,
    )  # fmt: skip
    for control in summary.audit.controls if summary.audit else ():
        mark = "[green]pass[/]" if control.passed else "[bold red]FAIL[/]"
        console.print(f"leakage audit {control.control}: {mark} ({control.reason})")
    if summary.model_version is not None:
        console.print(f"registered as challenger: version {summary.model_version}")
    console.print(f"MLflow run {summary.mlflow_run_id}; report: {summary.report}", soft_wrap=True)


def walkforward(
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    feature_set: FeatureSetOpt = "default",
    params: ParamsFileOpt = Path("params.yaml"),
    model: ModelOpt = "lightgbm",
    model_param: ModelParamOpt = None,
    trials: TrialsOpt = 20,
    objective: ObjectiveOpt = Objective.LOGLOSS,
    scheme: SchemeOpt = Scheme.ROLLING,
    folds: Annotated[int, typer.Option(help="Walk-forward test windows.")] = 5,
    groups: Annotated[int, typer.Option(help="CPCV: groups of rows.")] = 6,
    test_groups: Annotated[int, typer.Option(help="CPCV: groups tested per split.")] = 2,
    train_bars: Annotated[
        Optional[int], typer.Option(help="Rolling: training window in bars.")  # noqa: UP045
    ] = None,
    test_bars: Annotated[Optional[int], typer.Option(help="Test window in bars.")] = None,  # noqa: UP045
    upper: Annotated[float, typer.Option(help="Go long above this P(up).")] = 0.55,
    lower: Annotated[float, typer.Option(help="Go short below this P(up).")] = 0.45,
    long_only: Annotated[
        bool, typer.Option("--long-only", help="Flat instead of short below --lower.")
    ] = False,
    regime: Annotated[
        bool, typer.Option("--regime", help="Add a regime detector's probabilities.")
    ] = False,
    regime_gate: Annotated[
        Optional[str], typer.Option(help="Trade only in these regimes, e.g. 0 (calmest).")  # noqa: UP045
    ] = None,
    spread: SpreadOpt = "1.0",
    fees: FeesOpt = 0.0,
    commission: CommissionOpt = 0.0,
    slippage: SlippageOpt = 0.0,
    side: SideOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    jobs: JobsOpt = 1,
    trial_workers: Annotated[
        int, typer.Option(help="Workers sharing each window's Optuna study (shared storage).")
    ] = 1,
    threads: ThreadsOpt = None,
    seed: SeedOpt = 0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 1000,
    audit: Annotated[
        bool, typer.Option("--audit", help="Also run the leakage audit (two controls).")
    ] = False,
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Do not register the model.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Tune, fit and test a model window by window; judge it out of sample; register it."""
    from core.settings import load_settings
    from services.research import AuditFailedError, load_research_inputs, run_stored_walkforward

    series = _series(symbol, timeframe, feature_set, params, side, date_from, date_to)

    config = research_config(
        model=model, model_params=model_param, trials=trials, objective=objective,
        scheme=scheme, folds=folds, groups=groups, test_groups=test_groups,
        train_bars=train_bars, test_bars=test_bars, upper=upper, lower=lower,
        long_only=long_only, regime=regime, regime_gate=regime_gate, spread=spread,
        fees=fees, commission=commission, slippage=slippage, jobs=jobs, threads=threads,
        seed=seed, n_boot=n_boot, trial_workers=trial_workers,
    )  # fmt: skip
    settings = load_settings()
    console = err()
    with console.status("computing features"):
        inputs = load_research_inputs(settings, **series)
    console.print(
        f"{inputs.label}: {inputs.data.n:,} rows x {len(inputs.data.feature_names)} "
        f"features; {config.split.scheme}, {config.tuning.trials} trials per window"
    )
    try:
        with Progress(console) as advance:
            outcome = run_stored_walkforward(
                settings, inputs, config, audit=audit, register=not no_register,
                progress=advance,
            )  # fmt: skip
    except AuditFailedError as failed:
        # The run is stored: show it, then fail with the audit's reason.
        if as_json:
            emit(failed.outcome.summary)
        else:
            print_summary(failed.outcome.summary)
        raise
    if as_json:
        emit(outcome.summary)
        return
    print_summary(outcome.summary)


def train(
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    feature_set: FeatureSetOpt = "default",
    params: ParamsFileOpt = Path("params.yaml"),
    model: ModelOpt = "lightgbm",
    model_param: ModelParamOpt = None,
    trials: TrialsOpt = 20,
    objective: ObjectiveOpt = Objective.LOGLOSS,
    train_bars: Annotated[
        Optional[int], typer.Option(help="Train on the latest N bars (default: all).")  # noqa: UP045
    ] = None,
    side: SideOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    spread: SpreadOpt = "1.0",
    fees: FeesOpt = 0.0,
    threads: ThreadsOpt = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Tune and fit a model on the latest window and log it to MLflow (no test window)."""
    from core.settings import load_settings
    from services.research import load_research_inputs, run_stored_train

    series = _series(symbol, timeframe, feature_set, params, side, date_from, date_to)

    config = research_config(
        model=model, model_params=model_param, trials=trials, objective=objective,
        folds=1, spread=spread, fees=fees, threads=threads, seed=seed,
    )  # fmt: skip
    settings = load_settings()
    console = err()
    with console.status("computing features"):
        inputs = load_research_inputs(settings, **series)
    with console.status(f"tuning {model} ({trials} trials) on {inputs.data.n:,} rows"):
        result = run_stored_train(settings, inputs, config, train_bars=train_bars)
    if as_json:
        emit(result)
        return
    console = out()
    console.print(f"{model} on {inputs.label}: {result.rows:,} rows, {result.trials} trials, "
                  f"best inner {objective} {ratio(result.best_value)}")  # fmt: skip
    console.print(f"parameters: {result.params}", soft_wrap=True)
    console.print(f"MLflow run {result.mlflow_run_id} (model logged)", soft_wrap=True)


def retrain(
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    feature_set: FeatureSetOpt = "default",
    params: ParamsFileOpt = Path("params.yaml"),
    model: ModelOpt = "lightgbm",
    trials: TrialsOpt = 20,
    folds: Annotated[int, typer.Option(help="Walk-forward test windows.")] = 5,
    upper: Annotated[float, typer.Option(help="Go long above this P(up).")] = 0.55,
    lower: Annotated[float, typer.Option(help="Go short below this P(up).")] = 0.45,
    spread: SpreadOpt = "1.0",
    fees: FeesOpt = 0.0,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    jobs: JobsOpt = 1,
    threads: ThreadsOpt = None,
    seed: SeedOpt = 0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 1000,
    rule: Annotated[
        str,
        typer.Option(
            help="Scores the new version must beat: dsr,sharpe_ci_low (any:... for one of them)."
        ),
    ] = "dsr,sharpe_ci_low",
    as_json: JsonOpt = False,
) -> None:
    """Walk forward, register the challenger, promote it if it earns it, and notify.

    The promotion floors are the promotion settings. A version not promoted is an answer:
    exit status 0. A session following the champion picks a promoted version up between bars.
    """
    from core.settings import load_settings
    from services.retrain import retrain as run_retrain

    config = research_config(
        model=model, trials=trials, folds=folds, upper=upper, lower=lower, spread=spread,
        fees=fees, jobs=jobs, threads=threads, seed=seed, n_boot=n_boot,
    )  # fmt: skip
    settings = load_settings()
    console = err()
    with Progress(console) as advance:
        result = run_retrain(
            settings, symbol=symbol, timeframe=timeframe, feature_set=feature_set,
            params_path=params, config=config, start=date_from, end=date_to, rule=rule,
            progress=advance,
        )  # fmt: skip
    if as_json:
        emit(result)
        return
    verdict = "[green]promoted[/]" if result.promoted else "[yellow]not promoted[/]"
    before = "none" if result.champion_before is None else f"v{result.champion_before}"
    console = out()
    console.print(
        f"{result.name}: v{result.version} {verdict} (champion before {before}, walk-forward "
        f"{result.walkforward_run})",
        soft_wrap=True,
    )
    print_table(
        "out-of-sample scores",
        ("score", f"v{result.version}", f"champion {before}"),
        ((row.key, pct(row.new) if row.key in ("total_return", "max_drawdown") else ratio(row.new),
          pct(row.champion) if row.key in ("total_return", "max_drawdown") else ratio(row.champion))
         for row in result.scores),
        right=(f"v{result.version}", f"champion {before}"),
        console=console,
    )  # fmt: skip
    console.print(result.reason, soft_wrap=True, highlight=False)

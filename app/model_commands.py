"""The modelling commands: ``walkforward``, ``train`` and ``models list | promote``.

Registered on the main application by :func:`register`; heavy imports stay inside commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.backtest_commands import (
    CommissionOpt,
    FeesOpt,
    JsonOpt,
    SideOpt,
    SlippageOpt,
    SpreadOpt,
    SymbolOpt,
    TimeframeOpt,
    backtest_config,
    options_error,
    parse_params,
)

if TYPE_CHECKING:
    from pipelines.train.config import WalkForwardConfig

ParamsFileOpt = Annotated[
    Path, typer.Option("--params", help="The parameters file declaring the feature sets.")
]
FeatureSetOpt = Annotated[str, typer.Option("--feature-set", help="A set declared in params.yaml.")]
ModelOpt = Annotated[
    str, typer.Option(help="lightgbm, lightgbm_regressor, logistic, forest, ensemble or stacking.")
]
TrialsOpt = Annotated[int, typer.Option(help="Optuna trials per training window (0: defaults).")]
ObjectiveOpt = Annotated[
    str, typer.Option(help="logloss, or sharpe (the rule's Sharpe after costs on inner folds).")
]
JobsOpt = Annotated[int, typer.Option(help="Worker processes for windows and trials.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="Threads per learner (default: one per 5,000 training rows, at most the cores per job)."
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of samplers, learners and the bootstrap.")]
ModelParamOpt = Annotated[
    list[str] | None,
    typer.Option("--model-param", help="Fixed learner parameter k=v (not tuned), repeatable."),
]


def _number(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def research_config(
    *,
    model: str,
    model_params: list[str] | None,
    trials: int,
    objective: str,
    scheme: str,
    folds: int,
    groups: int,
    test_groups: int,
    train_bars: int | None,
    test_bars: int | None,
    upper: float,
    lower: float,
    long_only: bool,
    regime: bool,
    regime_gate: str | None,
    spread: str,
    fees: float,
    commission: float,
    slippage: float,
    jobs: int,
    threads: int | None,
    seed: int,
    n_boot: int,
    trial_workers: int = 1,
) -> WalkForwardConfig:
    """Build and check a research configuration from command-line values."""
    from pydantic import ValidationError

    from core.errors import UsageError
    from models.learners.registry import learner_names
    from pipelines.train.config import (
        RegimeConfig,
        RuleConfig,
        SplitConfig,
        StatsConfig,
        TuningConfig,
        WalkForwardConfig,
    )

    if model not in learner_names():
        raise UsageError(f"--model {model!r}: choose one of {', '.join(learner_names())}")
    if scheme not in ("rolling", "anchored", "cpcv"):
        raise UsageError(f"--scheme {scheme!r}: use rolling, anchored or cpcv")
    if objective not in ("logloss", "sharpe"):
        raise UsageError(f"--objective {objective!r}: use logloss or sharpe")
    allowed = None
    if regime_gate is not None:
        try:
            allowed = tuple(int(x) for x in regime_gate.split(",") if x.strip())
        except ValueError:
            raise UsageError(
                f"--regime-gate {regime_gate!r}: list regimes, e.g. 0 or 0,1"
            ) from None
    backtest = backtest_config(
        cash=100_000.0, fees=fees, commission=commission, slippage=slippage, slippage_vol=0.0,
        spread=spread, swap_long=0.0, swap_short=0.0, fill="close", direction="both",
        sizing="fraction:1", stop_loss=None, take_profit=None, trailing_stop=None,
    )  # fmt: skip
    try:
        return WalkForwardConfig(
            model=model,
            params={k: _number(v) for k, v in parse_params(model_params).items()},
            split=SplitConfig(
                scheme=scheme,  # type: ignore[arg-type]
                folds=folds,
                groups=groups,
                test_groups=test_groups,
                train_bars=train_bars,
                test_bars=test_bars,
            ),
            tuning=TuningConfig(
                trials=trials,
                objective=objective,  # type: ignore[arg-type]
                workers_per_study=trial_workers,
            ),
            rule=RuleConfig(upper=upper, lower=lower, allow_short=not long_only),
            regime=RegimeConfig(allowed=allowed) if (regime or allowed is not None) else None,
            backtest=backtest,
            stats=StatsConfig(n_boot=n_boot),
            seed=seed,
            threads=threads,
            jobs=jobs,
        )
    except ValidationError as exc:
        raise options_error("walk-forward", exc) from None


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _ratio(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_summary(summary: dict[str, Any]) -> None:
    """Print the out-of-sample summary and the fold table on stdout."""
    from rich.table import Table

    from app.cli import _out

    out = _out()
    oos = summary["oos"]
    lo, hi = oos["sharpe_ci"]
    level = round(100 * oos.get("ci_level", 0.95))
    folds = Table(title=f"{summary['model']} on {summary['symbol']} {summary['timeframe']}: "
                        f"{summary['scheme']} folds (run {summary['run_id']})")  # fmt: skip
    for column in ("fold", "test from", "test to", "trials", "Sharpe", "return", "AUC",
                   "log-loss", "PBO"):  # fmt: skip
        folds.add_column(column, justify="right" if column != "fold" else "left")
    for f in summary["folds"]:
        folds.add_row(
            str(f["fold"]), f["test_start"][:10], f["test_end"][:10], str(f["n_trials"]),
            _ratio(f["sharpe"]), _pct(f["total_return"]), _ratio(f["auc"]),
            _ratio(f["logloss"]), _ratio(f["pbo"]),
        )  # fmt: skip
    out.print(folds)
    head = Table(title="out of sample, after costs", show_header=False)
    head.add_column("figure")
    head.add_column("value", justify="right")
    sharpe = "n/a" if oos["sharpe"] is None else f"{oos['sharpe']:.2f}"
    ci = "n/a" if lo is None or hi is None else f"[{lo:.2f}, {hi:.2f}]"
    rows = [
        ("Sharpe (ann.)", f"{sharpe}  {level}% CI {ci}"),
        ("probabilistic Sharpe (vs 0)", _ratio(oos["psr"])),
        (f"deflated Sharpe ({oos['n_trials']} trials)", _ratio(oos["dsr"])),
        ("total return", _pct(oos["total_return"])),
        ("max drawdown", _pct(oos["max_drawdown"])),
        ("hit rate", _pct(oos["hit_rate"])),
        ("trades", str(oos["n_trades"])),
        ("Newey-West t (p)", f"{_ratio(oos['newey_west_t'])} ({_ratio(oos['newey_west_p'])})"),
        (
            "SPA p vs flat / buy-and-hold",
            f"{_ratio(oos['spa']['vs_flat_p'])} / {_ratio(oos['spa']['vs_buy_and_hold_p'])}",
        ),
        ("gross Sharpe (ann.)", _ratio(oos["gross"]["sharpe"])),
    ]
    if summary.get("pbo") is not None:
        rows.append(("probability of backtest overfitting", _ratio(summary["pbo"])))
    for label, value in rows:
        head.add_row(label, value)
    out.print(head)
    if "audit" in summary:
        for control in summary["audit"]["controls"]:
            mark = "[green]pass[/]" if control["passed"] else "[bold red]FAIL[/]"
            out.print(f"leakage audit {control['control']}: {mark} ({control['reason']})")
    if summary.get("model_version") is not None:
        out.print(f"registered as challenger: version {summary['model_version']}")
    out.print(f"MLflow run {summary['mlflow_run_id']}; report: {summary.get('report')}",
              soft_wrap=True)  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add the modelling commands to the command line."""
    models_app = typer.Typer(
        help="The model registry: list versions, promote the challenger.", no_args_is_help=True
    )
    app.add_typer(models_app, name="models")

    @app.command("walkforward")
    def walkforward_command(
        symbol: SymbolOpt,
        timeframe: TimeframeOpt,
        feature_set: FeatureSetOpt = "default",
        params: ParamsFileOpt = Path("params.yaml"),
        model: ModelOpt = "lightgbm",
        model_param: ModelParamOpt = None,
        trials: TrialsOpt = 20,
        objective: ObjectiveOpt = "logloss",
        scheme: Annotated[str, typer.Option(help="rolling, anchored or cpcv.")] = "rolling",
        folds: Annotated[int, typer.Option(help="Walk-forward test windows.")] = 5,
        groups: Annotated[int, typer.Option(help="CPCV: groups of rows.")] = 6,
        test_groups: Annotated[int, typer.Option(help="CPCV: groups tested per split.")] = 2,
        train_bars: Annotated[
            int | None, typer.Option(help="Rolling: training window in bars.")
        ] = None,
        test_bars: Annotated[int | None, typer.Option(help="Test window in bars.")] = None,
        upper: Annotated[float, typer.Option(help="Go long above this P(up).")] = 0.55,
        lower: Annotated[float, typer.Option(help="Go short below this P(up).")] = 0.45,
        long_only: Annotated[
            bool, typer.Option("--long-only", help="Flat instead of short below --lower.")
        ] = False,
        regime: Annotated[
            bool, typer.Option("--regime", help="Add a regime detector's probabilities.")
        ] = False,
        regime_gate: Annotated[
            str | None, typer.Option(help="Trade only in these regimes, e.g. 0 (calmest).")
        ] = None,
        spread: SpreadOpt = "1.0",
        fees: FeesOpt = 0.0,
        commission: CommissionOpt = 0.0,
        slippage: SlippageOpt = 0.0,
        side: SideOpt = None,
        date_from: Annotated[str | None, typer.Option("--from", help="ISO date.")] = None,
        date_to: Annotated[str | None, typer.Option("--to", help="ISO date.")] = None,
        jobs: JobsOpt = 1,
        trial_workers: Annotated[
            int,
            typer.Option(help="Workers sharing each window's Optuna study (shared storage)."),
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
        from app.cli import _emit, _err, _parse_utc, _Progress, _settings, _side
        from core.timeframes import parse_timeframe
        from feature_store.research import research_inputs, run_stored_walkforward

        config = research_config(
            model=model, model_params=model_param, trials=trials, objective=objective,
            scheme=scheme, folds=folds, groups=groups, test_groups=test_groups,
            train_bars=train_bars, test_bars=test_bars, upper=upper, lower=lower,
            long_only=long_only, regime=regime, regime_gate=regime_gate, spread=spread,
            fees=fees, commission=commission, slippage=slippage, jobs=jobs, threads=threads,
            seed=seed, n_boot=n_boot, trial_workers=trial_workers,
        )  # fmt: skip
        settings = _settings()
        start, end = _parse_utc(date_from, "--from"), _parse_utc(date_to, "--to")
        console = _err()
        with console.status("computing features"):
            inputs = research_inputs(
                settings, symbol=symbol, timeframe=parse_timeframe(timeframe),
                feature_set=feature_set, params_path=params, side=_side(side),
                start=start, end=end,
            )  # fmt: skip
        console.print(
            f"{inputs.label}: {inputs.data.n:,} rows x {len(inputs.data.feature_names)} "
            f"features; {config.split.scheme}, {config.tuning.trials} trials per window"
        )
        from feature_store.research import AuditFailedError

        try:
            with _Progress(console) as advance:
                outcome = run_stored_walkforward(
                    settings, inputs, config, audit=audit, register=not no_register,
                    progress=advance,
                )  # fmt: skip
        except AuditFailedError as failed:
            # The run is stored: show it, then fail with the audit's reason.
            if as_json:
                _emit(failed.outcome.summary)
            else:
                print_summary(failed.outcome.summary)
            raise
        if as_json:
            _emit(outcome.summary)
            return
        print_summary(outcome.summary)

    @app.command("train")
    def train_command(
        symbol: SymbolOpt,
        timeframe: TimeframeOpt,
        feature_set: FeatureSetOpt = "default",
        params: ParamsFileOpt = Path("params.yaml"),
        model: ModelOpt = "lightgbm",
        model_param: ModelParamOpt = None,
        trials: TrialsOpt = 20,
        objective: ObjectiveOpt = "logloss",
        train_bars: Annotated[
            int | None, typer.Option(help="Train on the latest N bars (default: all).")
        ] = None,
        side: SideOpt = None,
        date_from: Annotated[str | None, typer.Option("--from", help="ISO date.")] = None,
        date_to: Annotated[str | None, typer.Option("--to", help="ISO date.")] = None,
        spread: SpreadOpt = "1.0",
        fees: FeesOpt = 0.0,
        threads: ThreadsOpt = None,
        seed: SeedOpt = 0,
        as_json: JsonOpt = False,
    ) -> None:
        """Tune and fit a model on the latest window and log it to MLflow (no test window)."""
        from app.cli import _emit, _err, _out, _parse_utc, _settings, _side
        from core.timeframes import parse_timeframe
        from feature_store.research import research_inputs, run_stored_train

        config = research_config(
            model=model, model_params=model_param, trials=trials, objective=objective,
            scheme="rolling", folds=1, groups=6, test_groups=2, train_bars=None,
            test_bars=None, upper=0.55, lower=0.45, long_only=False, regime=False,
            regime_gate=None, spread=spread, fees=fees, commission=0.0, slippage=0.0,
            jobs=1, threads=threads, seed=seed, n_boot=1000,
        )  # fmt: skip
        settings = _settings()
        start, end = _parse_utc(date_from, "--from"), _parse_utc(date_to, "--to")
        console = _err()
        with console.status("computing features"):
            inputs = research_inputs(
                settings, symbol=symbol, timeframe=parse_timeframe(timeframe),
                feature_set=feature_set, params_path=params, side=_side(side),
                start=start, end=end,
            )  # fmt: skip
        with console.status(f"tuning {model} ({trials} trials) on {inputs.data.n:,} rows"):
            outcome = run_stored_train(settings, inputs, config, train_bars=train_bars)
        if as_json:
            _emit(outcome)
            return
        out = _out()
        out.print(f"{model} on {inputs.label}: {outcome['rows']:,} rows, "
                  f"{outcome['trials']} trials, best inner {objective} "
                  f"{_ratio(outcome['best_value'])}")  # fmt: skip
        out.print(f"parameters: {outcome['params']}", soft_wrap=True)
        out.print(f"MLflow run {outcome['mlflow_run_id']} (model logged)", soft_wrap=True)

    @models_app.command("list")
    def models_list(
        name: Annotated[str | None, typer.Option(help="One registered model.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List registered model versions with their aliases and out-of-sample scores."""
        from app.cli import _emit, _out, _settings
        from feature_store.model_registry import ModelRegistry
        from feature_store.tracking import tracking_uri

        versions = ModelRegistry(tracking_uri(_settings())).list_versions(name)
        if as_json:
            for v in versions:
                _emit(_version_json(v))
            return
        from rich.table import Table

        table = Table(title="registered models")
        for column in ("name", "version", "aliases", "DSR", "Sharpe", "Sharpe CI low",
                       "PSR", "return", "max DD", "created"):  # fmt: skip
            table.add_column(column)
        for v in versions:
            s = v.scores
            table.add_row(
                v.name, str(v.version), ",".join(v.aliases) or "-", _ratio(s.get("dsr")),
                _ratio(s.get("sharpe")), _ratio(s.get("sharpe_ci_low")), _ratio(s.get("psr")),
                _pct(s.get("total_return")), _pct(s.get("max_drawdown")),
                v.created.strftime("%Y-%m-%d %H:%M"),
            )  # fmt: skip
        _out().print(table)
        if not versions:
            _out().print("no registered models yet: run solodesk walkforward")

    @models_app.command("promote")
    def models_promote(
        name: Annotated[str, typer.Option(help="Registered model, e.g. EURUSD-H1-default.")],
        rule: Annotated[
            str,
            typer.Option(
                help="Scores the challenger must beat: dsr,sharpe_ci_low (any:... for one of them)."
            ),
        ] = "dsr,sharpe_ci_low",
        min_dsr: Annotated[float | None, typer.Option(help="Minimum DSR, even alone.")] = None,
        min_ci_low: Annotated[
            float | None, typer.Option(help="Minimum lower bound of the Sharpe CI.")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Make the challenger champion if it beats the champion by the rule; record why."""
        from app.cli import _emit, _out, _settings
        from feature_store.model_registry import ModelRegistry, PromotionRule
        from feature_store.tracking import tracking_uri

        parsed = PromotionRule.parse(rule)
        parsed = parsed.model_copy(update={"min_dsr": min_dsr, "min_sharpe_ci_low": min_ci_low})
        decision = ModelRegistry(tracking_uri(_settings())).promote(name, parsed)
        record = {
            "name": name,
            "promoted": decision.promoted,
            "reason": decision.reason,
            "challenger": decision.challenger.version if decision.challenger else None,
            "champion_before": decision.champion_before.version
            if decision.champion_before
            else None,
        }
        if as_json:
            _emit(record)
            return
        verdict = "[green]promoted[/]" if decision.promoted else "[yellow]not promoted[/]"
        _out().print(f"{name}: challenger {record['challenger']} {verdict}: {decision.reason}",
                     soft_wrap=True)  # fmt: skip


def _version_json(v: Any) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "aliases": list(v.aliases),
        "run_id": v.run_id,
        "scores": v.scores,
        "created": v.created.isoformat().replace("+00:00", "Z"),
    }

"""``solodesk models ...``: the model registry."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from app.options import JsonOpt, ModelNameOpt
from app.output import emit, emit_all, out, pct, print_table, ratio

app = typer.Typer(
    help="The model registry: list versions, promote the challenger.", no_args_is_help=True
)


@app.command("list")
def models_list(
    name: Annotated[Optional[str], typer.Option(help="One registered model.")] = None,  # noqa: UP045
    as_json: JsonOpt = False,
) -> None:
    """List registered model versions with their aliases and out-of-sample scores."""
    from core.settings import load_settings
    from services.models import list_versions

    versions = list_versions(load_settings(), name)
    if as_json:
        emit_all(versions)
        return
    print_table(
        "registered models",
        ("name", "version", "aliases", "DSR", "Sharpe", "Sharpe CI low", "PSR", "return",
         "max DD", "created"),
        ((v.name, str(v.version), ",".join(v.aliases) or "-", ratio(v.scores.get("dsr")),
          ratio(v.scores.get("sharpe")), ratio(v.scores.get("sharpe_ci_low")),
          ratio(v.scores.get("psr")), pct(v.scores.get("total_return")),
          pct(v.scores.get("max_drawdown")), v.created[:16].replace("T", " "))
         for v in versions),
    )  # fmt: skip
    if not versions:
        out().print("no registered models yet: run solodesk walkforward")


@app.command("promote")
def models_promote(
    name: ModelNameOpt,
    rule: Annotated[
        str,
        typer.Option(
            help="Scores the challenger must beat: dsr,sharpe_ci_low (any:... for one of them)."
        ),
    ] = "dsr,sharpe_ci_low",
    min_dsr: Annotated[Optional[float], typer.Option(help="Minimum DSR, even alone.")] = None,  # noqa: UP045
    min_ci_low: Annotated[
        Optional[float], typer.Option(help="Minimum lower bound of the Sharpe CI.")  # noqa: UP045
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make the challenger champion if it beats the champion by the rule; record why."""
    from core.settings import load_settings
    from services.models import promote

    decision = promote(load_settings(), name, rule, min_dsr=min_dsr, min_ci_low=min_ci_low)
    if as_json:
        emit(decision)
        return
    verdict = "[green]promoted[/]" if decision.promoted else "[yellow]not promoted[/]"
    out().print(f"{name}: challenger {decision.challenger} {verdict}: {decision.why}",
                soft_wrap=True)  # fmt: skip

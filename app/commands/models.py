"""``solodesk models ...``: the model registry."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from app.options import JsonOpt, ModelNameOpt
from app.output import emit, emit_all, out, pct, print_table, ratio
from core.errors import UsageError

app = typer.Typer(
    help="The model registry: list versions, promote, roll back, gate live trading.",
    no_args_is_help=True,
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
    min_psr: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            help="Minimum PSR, higher or lower than the setting promotion.min_psr (0.95)."
        ),
    ] = None,
    min_ci_low: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            help="Minimum lower bound of the Sharpe CI, higher or lower than the setting "
            "promotion.min_sharpe_ci_low (0)."
        ),
    ] = None,
    min_dsr: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Minimum DSR, instead of the setting promotion.min_dsr (none)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make the challenger champion if it clears the floors and beats the champion; record why.

    The floors (PSR, Sharpe CI low, DSR) are the promotion settings unless an option replaces
    one; with no champion yet they alone decide. A refusal is an answer: exit status 0.
    """
    from core.settings import load_settings
    from services.models import promote

    decision = promote(
        load_settings(), name, rule, min_dsr=min_dsr, min_ci_low=min_ci_low, min_psr=min_psr
    )
    if as_json:
        emit(decision)
        return
    verdict = "[green]promoted[/]" if decision.promoted else "[yellow]not promoted[/]"
    out().print(f"{name}: challenger {decision.challenger} {verdict}: {decision.why}",
                soft_wrap=True)  # fmt: skip


@app.command("rollback")
def models_rollback(
    name: ModelNameOpt,
    why: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Why the champion goes back (recorded on both versions)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move the champion back to the version it replaced; record who, when and why.

    A paper or live session following the champion reloads the restored version between bars.
    Exit status 2 when there is no champion or no previous champion to go back to.
    """
    from core.settings import load_settings
    from services.models import rollback

    result = rollback(load_settings(), name, why=why or "")
    if as_json:
        emit(result)
        return
    out().print(
        f"{name}: champion rolled back from version {result.rolled_back} to {result.restored} "
        f"(by {result.who}: {result.why})",
        soft_wrap=True,
        highlight=False,
    )


@app.command("gate")
def models_gate(
    name: ModelNameOpt,
    version: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="The version to check (default: the one --alias points at)."),
    ] = None,
    alias: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="The alias whose version to check (default: champion)."),
    ] = None,
    override: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Allow a version below the floors anyway: write why (at least 10 characters); "
            "it is recorded."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a version against the promotion floors before it trades live; record the decision.

    Exit status 0 when it may trade live (floors met, or overridden with a written reason),
    1 when refused. Paper trading needs no gate.
    """
    from core.settings import load_settings
    from services.models import live_gate

    if version is not None and alias is not None:
        raise UsageError("models gate: give --version or --alias, not both")
    settings = load_settings()
    decision = (
        live_gate(settings, name, version=version, override=override)
        if alias is None
        else live_gate(settings, name, alias=alias, override=override)
    )
    if as_json:
        emit(decision)
    else:
        colour = {"allowed": "green", "overridden": "yellow", "refused": "red"}[decision.verdict]
        verdict, _, why = decision.reason.partition(": ")
        line = f"{name}: version {decision.version} [{colour}]{verdict}[/] live: {why}"
        if not decision.allowed:
            line += '; to trade it anyway, --override "why"'
        out().print(line, soft_wrap=True, highlight=False)
    if not decision.allowed:
        raise typer.Exit(1)

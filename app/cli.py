"""The ``solodesk`` command line: the root that owns the application and ``main()``.

The root imports the command modules (:mod:`app.commands`) and puts their commands on the
application; nothing imports the root. Heavy libraries are imported inside the commands that
need them, so ``solodesk --help`` stays fast. ``--json`` prints JSON Lines on stdout and
nothing else there; progress and messages go to stderr. Exit status: 0 success, 1 unexpected
failure, 2 bad input or usage.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from app.commands import (
    backtest,
    dashboard,
    data,
    features,
    flows,
    ingest,
    models,
    mt4,
    notify,
    research,
    serve,
    supervise,
    trading,
)
from app.output import report_error
from core.errors import SolodeskError


class _Root(TyperGroup):
    """The root group: an error solodesk raises on purpose becomes a message and its status.

    Mapping errors here, rather than only in :func:`main`, gives the same exit statuses to a
    command run in process (typer's test runner) as to one run from a shell.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SolodeskError as exc:
            report_error(str(exc))
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="solodesk",
    cls=_Root,
    help="solodesk: a one-person trading desk. Data, research, execution, risk and monitoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("ingest")(ingest.ingest)
app.command("resample")(ingest.resample)
app.command("instruments")(data.instruments)
app.command("strategies")(backtest.strategies)
app.command("backtest")(backtest.backtest)
app.command("sweep")(backtest.sweep)
app.command("portfolio")(backtest.portfolio)
app.command("walkforward")(research.walkforward)
app.command("train")(research.train)
app.command("retrain")(research.retrain)
app.command("paper")(trading.paper)
app.command("live")(trading.live)
app.command("fills")(trading.fills)
app.command("trades")(trading.trades)
app.command("positions")(trading.positions)
app.command("sessions")(trading.sessions)
app.command("pause")(trading.pause)
app.command("resume")(trading.resume)
app.command("flatten")(trading.flatten)
app.command("stop")(trading.stop)
app.command("supervise")(supervise.supervise)
app.command("serve")(serve.serve)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(backtest.runs_app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(notify.app, name="notify")
app.add_typer(flows.app, name="flows")
app.add_typer(dashboard.app, name="dashboard")
app.add_typer(trading.risk_app, name="risk")
app.add_typer(mt4.app, name="mt4")


def main(args: list[str] | None = None) -> None:
    """Run the command line, mapping errors to exit statuses (1 unexpected, 2 bad input)."""
    try:
        # Without standalone mode, an exit requested inside a command comes back as its status.
        status = app(args=args, standalone_mode=False)
    except SolodeskError as exc:  # raised before a command runs (e.g. in a parser)
        report_error(str(exc))
        raise SystemExit(exc.exit_code) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except SystemExit:
        raise
    except Exception as exc:
        # Usage errors of typer's own click (bad option, missing argument): shown, status 2.
        if callable(getattr(exc, "show", None)) and isinstance(
            getattr(exc, "exit_code", None), int
        ):
            exc.show()  # type: ignore[attr-defined]
            raise SystemExit(exc.exit_code) from None  # type: ignore[attr-defined]
        import traceback

        traceback.print_exc()
        report_error(f"unexpected error: {exc}")
        raise SystemExit(1) from None
    if isinstance(status, int) and status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()

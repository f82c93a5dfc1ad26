"""``solodesk notify ...``: notifications to the trader's phone."""

from __future__ import annotations

import typer

from app.options import JsonOpt
from app.output import emit, out, report_error

app = typer.Typer(help="Notifications: check that they reach you.", no_args_is_help=True)


@app.command("test")
def notify_test(as_json: JsonOpt = False) -> None:
    """Send a test notice to every configured URL and wait for it; exit 1 if it failed."""
    from core.settings import load_settings
    from services.notify import send_test

    result = send_test(load_settings())
    if as_json:
        emit(result)
    elif result.sent:
        out().print(result.message, soft_wrap=True, highlight=False)
    else:
        report_error(result.message)
    if not result.sent:
        raise typer.Exit(1)

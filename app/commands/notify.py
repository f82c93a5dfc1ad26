"""``solodesk notify ...``: notifications to the trader's phone."""

from __future__ import annotations

from typing import Annotated, Optional

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


@app.command("listen")
def notify_listen(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8787,
    seconds: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Stop after this long (default: until Ctrl-C)."),
    ] = None,
) -> None:
    """Print the notices posted to json://127.0.0.1:PORT/... (see them before a phone gets them)."""
    from services.notify import listen

    console = out()
    console.print(f"listening on json://127.0.0.1:{port}/desk", highlight=False)

    def show(title: str, body: str) -> None:
        console.print(f"[bold]{title}[/] {body}", soft_wrap=True, highlight=False)

    count = listen(port, show, seconds)
    console.print(f"{count} notices received", highlight=False)

"""``solodesk dashboard``: the Streamlit desk on loopback, and the password that unlocks its
controls."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.output import err, out

app = typer.Typer(
    help="The dashboard: the desk, trades, research, backtests, data, operations and controls.",
    invoke_without_command=True,
)

#: The Streamlit script of the dashboard (a sibling package of the command line).
SCRIPT = Path(__file__).resolve().parents[1] / "dashboard" / "main.py"


@app.callback()
def dashboard(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on the host.")] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to bind; loopback unless the desk sits behind a proxy.")
    ] = "127.0.0.1",
) -> None:
    """Serve the dashboard on http://HOST:PORT (Ctrl-C stops). Read-only until a password hash
    is set as dashboard.password_hash (solodesk dashboard password makes one)."""
    if ctx.invoked_subcommand is not None:
        return
    from core.settings import load_settings

    settings = load_settings()  # bad settings are reported here, before the server starts
    home = settings.home.resolve()
    out().print(f"solodesk dashboard: http://{host}:{port}  (desk: {home}; Ctrl-C stops)")
    if settings.dashboard.password_hash is None:
        err().print(
            "read-only: set password_hash in the [dashboard] table of solodesk.toml to enable the controls",
            markup=False,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    env = {**os.environ, "SOLODESK_HOME": str(home)}
    # -P: the working folder stays off the module path, so a folder there named like one of
    # solodesk's packages (another checkout, say) is never imported in their place.
    args = [
        sys.executable, "-P", "-m", "app.dashboard.server", "run", str(SCRIPT),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal", "--theme.base", "light",
    ]  # fmt: skip
    # The server replaces this process: signals (Ctrl-C, a supervisor's SIGTERM) reach it.
    os.execve(sys.executable, args, env)


@app.command("password")
def password(
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Print the Argon2 hash of a password, for dashboard.password_hash in solodesk.toml."""
    from services.access import hash_password

    if stdin:
        secret = sys.stdin.readline().rstrip("\n")
    else:
        secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    hashed = hash_password(secret)
    typer.echo(hashed)
    err().print(f'put it in solodesk.toml:\n[dashboard]\npassword_hash = "{hashed}"', markup=False)

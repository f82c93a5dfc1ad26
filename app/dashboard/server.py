"""The dashboard's server process: the pages' reading modules are loaded and the desk's model
registry opened first, then Streamlit serves ``main.py``.

``solodesk dashboard`` runs ``python -P -m app.dashboard.server run <main.py> <options>``. Loading
the views (and MLflow, Plotly, Polars and the report figures behind them) and opening the
registry client the views share before the server listens costs the start a few seconds once,
instead of costing the first visit of each page.

What is loaded then stays for the life of the server, so it is moved out of the garbage
collector's sight (:func:`gc.freeze`): Streamlit runs a full collection after every run of a
page, and walking the few million objects of MLflow, Plotly and Polars each time held the
server (every file and message it serves) for a few hundred milliseconds per page load. And
its listening socket replies at once (:func:`reply_at_once`).
"""

from __future__ import annotations

import gc
import inspect
import socket
import sys
from typing import Any


def settle() -> None:
    """Load what the server and the pages' shared module load on a page's first run, fill the
    module index :mod:`inspect` builds on its first stack walk (Streamlit walks the stack once,
    at the first element it sends), then freeze what is loaded out of the collector's sight."""
    import streamlit.web.bootstrap
    import streamlit.web.server  # noqa: F401

    import app.dashboard.common  # noqa: F401  (every page's shared module)

    inspect.stack()
    gc.collect()
    gc.freeze()


def reply_at_once() -> bool:
    """Make the server's listening socket send small replies at once (``TCP_NODELAY``, which
    the connections it accepts inherit); return whether it could.

    Streamlit makes its listening socket without naming TCP, so asyncio leaves Nagle's
    algorithm on for the connections it accepts. A browser keeps each connection open for its
    next request: a reply's body then waited for the acknowledgement of its headers, which the
    browser delays by 40 ms, and each of the 50-odd scripts a first visit loads cost 40 ms more.
    """
    try:
        from streamlit.web.server.starlette import starlette_server
    except ImportError:  # a Streamlit serving with another server
        return False
    bind = getattr(starlette_server, "_bind_socket", None)
    if bind is None:
        return False

    def bind_replying_at_once(*args: Any, **kwargs: Any) -> socket.socket:
        listener: socket.socket = bind(*args, **kwargs)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return listener

    starlette_server._bind_socket = bind_replying_at_once
    return True


def main() -> None:
    """Warm the views up, then run Streamlit's command line with this process's arguments."""
    from core.settings import load_settings
    from services.views import warm_up

    warm_up(load_settings())
    reply_at_once()
    settle()
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()

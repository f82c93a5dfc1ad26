"""The dashboard's server process: the pages' reading modules are loaded and the desk's model
registry opened first, then Streamlit serves ``main.py``.

``solodesk dashboard`` runs ``python -P -m app.dashboard.server run <main.py> <options>``. Loading
the views (and MLflow, Plotly, Polars and the report figures behind them) and opening the
registry client the views share before the server listens costs the start a few seconds once,
instead of costing the first visit of each page.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Warm the views up, then run Streamlit's command line with this process's arguments."""
    from core.settings import load_settings
    from services.views import warm_up

    warm_up(load_settings())
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()

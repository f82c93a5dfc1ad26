"""The dashboard's server process: the pages' reading modules are loaded first, then Streamlit
serves ``main.py``.

``solodesk dashboard`` runs ``python -P -m app.dashboard.server run <main.py> <options>``. Loading
the views (and MLflow, Plotly, Polars behind them) before the server listens costs the start a
few seconds once, instead of costing the first visit of each page.
"""

from __future__ import annotations

import sys
from importlib import import_module

#: The modules every page reads through, loaded before the server starts.
PRELOAD = (
    "services.views.desk",
    "services.views.trades",
    "services.views.research",
    "services.views.backtests",
    "services.views.data",
    "services.views.ops",
    "services.views.controls",
    "mlflow.tracking",
)


def main() -> None:
    """Load :data:`PRELOAD`, then run Streamlit's command line with this process's arguments."""
    for name in PRELOAD:
        import_module(name)
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()

"""What the dashboard shows, read through the stores and the services: one module per page.

Each function takes the desk's :class:`~core.settings.Settings` first and returns frozen typed
models, frames or Plotly figures (all of which pickle, so the dashboard can cache them). None
of them holds the DuckDB catalog open or writes anything; the state database is opened
read-only. Where something is missing (no session yet, no MLflow store, no Prefect server),
they say so in what they return, with the command that provides it, rather than raising.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

#: The view modules, and the modules they load only when first called.
_MODULES = (
    "services.views.desk",
    "services.views.trades",
    "services.views.research",
    "services.views.backtests",
    "services.views.data",
    "services.views.ops",
    "services.views.controls",
    "services.features",
    "services.runtime",
    "pipelines.evaluate.report",
    "pipelines.backtest.tearsheet",
    "pipelines.backtest.sweep",
    "feature_store.model_registry",
)


def warm_up(settings: Settings) -> None:
    """Load every view and what the views load on their first call, and open the desk's model
    registry (when it has one), so that a long-running reader's first reads are not slower
    than the others."""
    for name in _MODULES:
        import_module(name)
    from services.models import read_registry

    read_registry(settings)

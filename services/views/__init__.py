"""What the dashboard shows, read through the stores and the services: one module per page.

Each function takes the desk's :class:`~core.settings.Settings` first and returns frozen typed
models, frames or Plotly figures (all of which pickle, so the dashboard can cache them). None
of them holds the DuckDB catalog open or writes anything; the state database is opened
read-only. Where something is missing (no session yet, no MLflow store, no Prefect server),
they say so in what they return, with the command that provides it, rather than raising.
"""

"""Persistence: the Parquet bar store, its DuckDB catalog, sources and reports."""

"""Validation of bar series: row-level flags in Polars and the Great Expectations suite."""

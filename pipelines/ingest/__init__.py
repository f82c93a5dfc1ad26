"""Ingestion steps: detect a source's format, parse it, and normalise it into checked bars."""

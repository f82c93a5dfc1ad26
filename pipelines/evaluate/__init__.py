"""Evaluation: purged splits, walk-forward, out-of-sample statistics and the leakage audit."""

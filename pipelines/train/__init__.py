"""Training: hyper-parameter tuning on inner purged folds and the final fit of a window."""

"""Learners: LightGBM, scikit-learn baselines, ensembles and a regime detector."""

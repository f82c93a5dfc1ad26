"""Learners: LightGBM, scikit-learn baselines, ensembles and a regime detector.

Importing this package asks OpenMP (LightGBM, scikit-learn) to put idle worker threads to sleep
instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, unless the environment says otherwise).
Spinning threads fight any other busy process for the cores: on two cores shared with a second
job, a walk-forward ran about seven times slower with the default policy. The setting is read
when the OpenMP runtime loads, so it is made before LightGBM or scikit-learn is imported, and
worker processes inherit it.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

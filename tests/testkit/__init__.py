"""Helpers shared by the unit, property and integration suites.

``files`` writes small inputs in every supported format (text fixtures, ``.hst`` records packed
with :mod:`struct`, Parquet, archives); ``store`` checks a store the way a reader would; ``cli``
runs the ``solodesk`` command line in a subprocess.
"""

"""Helpers shared by the unit, property and integration suites.

``files`` writes small inputs in every supported format (text fixtures, ``.hst`` records packed
with :mod:`struct`, Parquet, archives); ``store`` checks a store the way a reader would; ``cli``
runs the ``solodesk`` command line in this process or in a subprocess; ``desk`` builds the
sample desk once per test session; ``services`` skips (or fails) tests whose outside service
is absent; ``postgres`` gives a test a scratch database.
"""

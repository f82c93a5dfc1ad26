"""The command modules: each defines its commands at module level and imports only the shared
options (:mod:`app.options`), the shared output (:mod:`app.output`), :mod:`services` and the
domain vocabulary of :mod:`core`; the root (:mod:`app.cli`) puts them on the command line."""

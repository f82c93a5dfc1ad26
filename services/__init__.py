"""The use cases: every job a desk runs, each a chain of load -> compute -> record steps.

A job's ``load_*`` steps read through :mod:`feature_store` and return typed inputs; its compute
steps are pure calls into :mod:`pipelines` (adapters such as trackers and executors arrive as
arguments); its ``record_*`` / ``register_*`` steps each do one kind of I/O (the store, the
tracker, the registry, report files). The job function chains the steps for the command line,
DVC and the benchmarks; a Prefect flow chains the same steps as tasks and retries only the I/O
ones. Results that leave a job are frozen, typed models.
"""

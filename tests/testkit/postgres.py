"""A throw-away PostgreSQL database for the scale-out tests, or a clean skip.

The server is the one in ``SOLODESK_TEST_POSTGRES`` (a libpq URL of a database the test user
may create databases from), by default ``postgresql://postgres@127.0.0.1:5432/postgres``.
Each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from testkit.services import service_missing

POSTGRES_ENV = "SOLODESK_TEST_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """Return the URL of the maintenance database of the test server."""
    return os.environ.get(POSTGRES_ENV, DEFAULT_URL)


def _connect(url: str) -> object:
    import psycopg2

    connection = psycopg2.connect(url, connect_timeout=3)
    connection.autocommit = True
    return connection


def require_postgres() -> str:
    """Return the server URL, or skip the test with the reason when it cannot be reached (fail
    it when ``SOLODESK_REQUIRE_SERVICES`` names ``postgres``)."""
    url = server_url()
    try:
        connection = _connect(url)
    except Exception as exc:  # any connection failure means: no server for this run
        service_missing(
            "postgres",
            f"PostgreSQL not reachable at {url} ({type(exc).__name__}); set {POSTGRES_ENV}",
        )
    connection.close()  # type: ignore[attr-defined]
    return url


@contextmanager
def scratch_database(prefix: str = "solodesk_test") -> Iterator[str]:
    """Create a fresh database, yield its SQLAlchemy URL, then drop it (skip when unreachable)."""
    url = require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = _connect(url)
    try:
        admin.cursor().execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
        base, _, _ = url.rpartition("/")
        yield f"{base.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{name}"
    finally:
        cursor = admin.cursor()  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()  # type: ignore[attr-defined]

"""Skip a test whose outside service is absent, or fail it where the run says it is provided.

``SOLODESK_REQUIRE_SERVICES`` names the services a run guarantees, comma-separated (``.ci/run``
sets ``postgres``). A test that needs one of them fails instead of skipping when it cannot
reach it, so a broken path cannot pass as a skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ENV = "SOLODESK_REQUIRE_SERVICES"


def required_services() -> set[str]:
    """Return the services this run must have (``SOLODESK_REQUIRE_SERVICES``)."""
    return {s.strip().lower() for s in os.environ.get(REQUIRE_ENV, "").split(",") if s.strip()}


def service_missing(service: str, reason: str) -> NoReturn:
    """Skip the running test because ``service`` is absent; fail it if the run requires it."""
    if service.lower() in required_services():
        pytest.fail(f"{service} is required by {REQUIRE_ENV} but unavailable: {reason}")
    pytest.skip(reason)

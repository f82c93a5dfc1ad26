"""The dashboard server's settling before it listens: what the pages load is loaded, and it is
out of the garbage collector's sight (in a process of its own: freezing is process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

from testkit.cli import REPO

PROBE = """
import gc, json, sys
from app.dashboard.server import settle
before = gc.get_freeze_count()
settle()
print(json.dumps({"before": before, "after": gc.get_freeze_count(),
                  "loaded": "app.dashboard.common" in sys.modules and "streamlit.web.server" in sys.modules}))
"""


def test_settle_loads_the_pages_module_and_freezes_what_is_loaded() -> None:
    # Act
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip

    # Assert: tens of thousands of objects frozen (Streamlit and Polars alone), none before
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before"] == 0
    assert seen["after"] > 50_000
    assert seen["loaded"] is True

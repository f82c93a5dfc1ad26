"""The dashboard's fixture desk (built once per test session for every worker) and Streamlit's
``AppTest`` on a page of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SampleDesk
from testkit.dashboard import build_dashboard_desk
from testkit.desk import shared_desk, shared_folder

from app.commands.dashboard import SCRIPT


@dataclass(frozen=True)
class DashboardDesk:
    """The fixture desk (shared: read only; copy it to change it) and the facts of its making."""

    home: Path
    facts: dict[str, Any]


@pytest.fixture(scope="session")
def dashboard_desk(
    sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> DashboardDesk:
    home, facts = shared_desk(
        shared_folder(tmp_path_factory, worker_id), "dashboard",
        lambda target: build_dashboard_desk(target, sample_desk.home),
    )  # fmt: skip
    return DashboardDesk(home, facts)


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Return ``open(home, name, **state)``: the AppTest of page ``name`` run on the desk at
    ``home`` (session state set from ``state`` first), with no self-refresh."""
    from streamlit.testing.v1 import AppTest

    def open_page(home: Path, name: str, **state: Any) -> AppTest:
        for key in [k for k in __import__("os").environ if k.startswith("SOLODESK_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("SOLODESK_HOME", str(home))
        monkeypatch.setenv("SOLODESK_DASHBOARD__REFRESH_SECONDS", "0")
        monkeypatch.setenv("SOLODESK_CONFIG", str(home.parent / "solodesk.toml"))
        monkeypatch.chdir(home.parent)
        app = AppTest.from_file(str(SCRIPT), default_timeout=60)
        for key, value in state.items():
            app.session_state[key] = value
        app.run()
        app.switch_page(f"screens/{name}.py").run()
        return app

    return open_page

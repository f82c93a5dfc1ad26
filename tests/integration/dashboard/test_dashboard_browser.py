"""The dashboard served by ``solodesk dashboard`` and opened in headless Chromium: every page at
its own URL with its sections and no exception box, screenshots kept, load times measured; and a
login and a pause through the browser, recorded in the state database."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from testkit.browser import (
    ARTIFACTS,
    SECTIONS,
    browser,
    chromium,
    click_button,
    dashboard,
    open_page,
    type_into,
    wait_idle,
    whole_page_screenshot,
)
from testkit.services import service_missing

from core.settings import Settings
from feature_store.state import StateDB
from services.access import hash_password

from .conftest import DashboardDesk

PASSWORD = "correct horse battery"


@pytest.mark.slow  # a Streamlit server and a browser: about 20 s
def test_every_page_renders_in_chromium_with_its_sections_and_controls_work_after_login(
    dashboard_desk: DashboardDesk, tmp_path: Path
) -> None:
    # Arrange: a copy of the fixture desk with a dashboard password
    if chromium() is None:
        service_missing("chromium", "Debian's chromium and chromium-driver are not installed")
    home = tmp_path / "home"
    shutil.copytree(dashboard_desk.home, home)
    config = tmp_path / "solodesk.toml"
    config.write_text(f'[dashboard]\npassword_hash = "{hash_password(PASSWORD)}"\n')
    shots = ARTIFACTS / "dashboard"
    shutil.rmtree(shots, ignore_errors=True)

    # Act: every page at its own URL (the first before any visit of the root), the root, then
    # log in on Controls and pause
    with dashboard(home, tmp_path / "dashboard.log", config=config) as served, browser() as driver:
        first = {
            name: open_page(driver, served.url, name, want, shots)
            for name, want in SECTIONS.items()
        }
        root = open_page(driver, served.url, "", SECTIONS["desk"], shots)
        open_page(driver, served.url, "controls", SECTIONS["controls"], shots)
        type_into(driver, "User", "trader")
        type_into(driver, "Password", PASSWORD)
        click_button(driver, "Log in")
        wait_idle(driver)
        type_into(driver, "Why (recorded with the action)", "from the browser", enter=True)
        click_button(driver, "Pause")
        wait_idle(driver)
        whole_page_screenshot(driver, shots / "controls-after-pause.png")
        time.sleep(0.5)

    # Assert: the root opens the desk; every page shows the app's navigation (never pages
    # Streamlit would make of a folder), its sections and no exception
    assert root.path == "/desk"
    titles = tuple(want[0] for want in SECTIONS.values())
    for name, load in first.items():
        assert load.navigation == titles, (name, load.navigation)
        assert load.path == f"/{name}", (name, load.path)
        assert not load.exceptions, (name, load.exceptions)
        assert load.complete, (name, "an element was never drawn")
        missing = [h for h in SECTIONS[name] if h not in load.headings]
        assert not missing, (name, missing, load.headings)
        assert load.screenshot.stat().st_size > 10_000
    # Assert: the pause was recorded with who and why, and applied to the session at rest
    reader = StateDB.reader(Settings(home=home))
    assert reader is not None
    with reader:
        last = reader.controls()[-1]
    assert (last.action, last.who, last.why) == ("pause", "trader", "from the browser")
    assert last.applied is not None
    # The load times (seconds, a fresh server's first visit of each page) go with the
    # screenshots; bench/dashboard.py measures them on a desk after make demo
    figures = {name: round(first[name].seconds, 3) for name in SECTIONS}
    (shots / "page-loads.json").write_text(json.dumps(figures, indent=2))
    print("page loads (s):", figures)

"""The dashboard in a real browser: ``solodesk dashboard`` started on loopback, and Debian's
headless Chromium driven through its chromedriver (never a downloaded browser).

``make test`` installs the ``chromium`` and ``chromium-driver`` packages first (``make browser``).
Where they are absent a browser test skips, or fails when the run requires ``chromium``
(``SOLODESK_REQUIRE_SERVICES``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.cli import REPO, solodesk_command, solodesk_env

#: Where the browser tests keep their screenshots and page-load figures.
ARTIFACTS = Path(os.environ.get("SOLODESK_TEST_ARTIFACTS", REPO / ".artifacts"))
#: The browser window's size in CSS pixels.
WINDOW = (1440, 1100)
#: Chromium's flags: headless, and no connection anywhere but the page (the network is closed).
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size={},{}".format(*WINDOW),
)  # fmt: skip


def chromium() -> tuple[str, str] | None:
    """Return the paths of Debian's chromium and chromedriver, or None when either is absent."""
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Dashboard:
    """A running ``solodesk dashboard`` process and its address."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def dashboard(home: Path, log: Path, *, config: Path | None = None) -> Iterator[Dashboard]:
    """Run ``solodesk dashboard`` on a free loopback port for the desk at ``home`` until the
    block ends; wait for its health check first (60 s at most)."""
    port = free_port()
    extra = {"SOLODESK_CONFIG": str(config)} if config is not None else {}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*solodesk_command(), "dashboard", "--port", str(port)],
            cwd=home.parent, env=solodesk_env(home, **extra), stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{url}/_stcore/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield Dashboard(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def browser() -> Iterator[Any]:
    """Return a Selenium driver of headless Debian Chromium, closed when the block ends."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are not installed (make browser)")
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium sends nothing anywhere
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    profile = tempfile.mkdtemp(prefix="solodesk-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass(frozen=True)
class PageLoad:
    """One page as the browser showed it: how long until its script finished with every
    expected heading on screen and every table, chart and picture drawn (``complete``; else
    until it gave up), the headings it showed, the sidebar's navigation, and the exceptions
    shown."""

    path: str
    url: str
    seconds: float
    complete: bool
    headings: tuple[str, ...]
    navigation: tuple[str, ...]
    exceptions: tuple[str, ...]
    screenshot: Path


def _state(driver: Any) -> dict[str, Any]:
    return dict(
        driver.execute_script(
            "const app = document.querySelector('[data-testid=\"stApp\"]');"
            "const heads = [...document.querySelectorAll('h1, h2, h3')]"
            "  .map(h => h.innerText.trim()).filter(t => t.length > 0);"
            "const errors = [...document.querySelectorAll('[data-testid=\"stException\"]')]"
            "  .map(e => e.innerText.slice(0, 500));"
            "const nav = [...document.querySelectorAll('[data-testid=\"stSidebarNav\"] a')]"
            "  .map(a => a.innerText.trim().split('\\n').pop().trim());"
            "const undrawn = (kind, drawn) => [...document.querySelectorAll(kind)]"
            "  .filter(e => e.checkVisibility() && !drawn(e)).length;"
            "const waiting = document.querySelectorAll('[data-testid=\"stSkeleton\"]').length"
            "  + undrawn('[data-testid=\"stPlotlyChart\"]', e => e.querySelector('.main-svg'))"
            "  + undrawn('[data-testid=\"stDataFrame\"]', e => e.querySelector('canvas'))"
            "  + undrawn('[data-testid=\"stImage\"] img', e => e.complete && e.naturalWidth > 0)"
            "  + undrawn('[data-testid=\"stVegaLiteChart\"]',"
            "            e => e.querySelector('canvas, svg.marks'))"
            "  + undrawn('[data-testid=\"stElementContainer\"]', e => e.childElementCount > 0);"
            "return {state: app ? app.getAttribute('data-test-script-state') : null,"
            " heads: heads, errors: errors, nav: nav, waiting: waiting,"
            " path: window.location.pathname};"
        )
    )


def open_page(
    driver: Any, base: str, path: str, expected: tuple[str, ...], shots: Path, timeout: float = 30
) -> PageLoad:
    """Open ``base/path`` and wait until the page's script has finished, every heading in
    ``expected`` is shown and every element is drawn (or ``timeout``); screenshot it into
    ``shots``; return what loaded.

    Drawn means: no placeholder or empty element box, a Plotly chart's SVG, a table's canvas,
    a picture decoded and a Vega-Lite chart's marks, for every such element shown (an element
    in a closed expander is not). Streamlit loads the code of each kind of element when the
    page first shows one, so a page whose script has finished may still be drawing.
    """
    url = f"{base}/{path}"
    started = time.perf_counter()
    driver.get(url)
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    while True:
        seen = _state(driver)
        heads = tuple(seen["heads"])
        idle = seen["state"] == "notRunning" and seen["waiting"] == 0
        idle_since = (idle_since or time.monotonic()) if idle else None
        done = idle and all(e in heads for e in expected)
        # a finished page missing a heading has had 2 s to show it: the caller says what is missing
        settled = idle_since is not None and time.monotonic() - idle_since > 2.0
        if done or settled or seen["errors"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / f"{path or 'root'}.png"
    whole_page_screenshot(driver, shot)
    return PageLoad(
        path=str(seen["path"]), url=url, seconds=seconds, complete=done, headings=heads,
        navigation=tuple(seen["nav"]),
        exceptions=tuple(seen["errors"]), screenshot=shot,
    )  # fmt: skip


def whole_page_screenshot(driver: Any, shot: Path) -> None:
    """Save a screenshot of the whole page into ``shot``: the window is made as tall as the
    page's content (Streamlit scrolls its main block, not the document) for the picture, then
    given back its size."""
    width, height = WINDOW
    tall = driver.execute_script(
        "const main = document.querySelector('[data-testid=\"stMain\"]');"
        "return main ? main.scrollHeight : document.body.scrollHeight;"
    )
    driver.set_window_size(width, max(height, min(int(tall) + 120, 12_000)))
    time.sleep(0.3)  # charts follow the new size
    driver.save_screenshot(str(shot))
    driver.set_window_size(width, height)


#: Each page's URL path and the section headings it must show.
SECTIONS: dict[str, tuple[str, ...]] = {
    "desk": ("Desk", "Equity", "Today", "Exposure", "Open positions and orders", "Risk limits",
             "Feeds and heartbeats"),
    "trades": ("Trades", "Trade log", "Trade chart", "P&L distribution"),
    "research": ("Research", "Walk-forward reports", "Registered models", "Feature importance",
                 "MLflow"),
    "backtests": ("Backtests", "Stored runs", "Tearsheet", "Sweep heatmap"),
    "data": ("Data", "Coverage", "Gaps", "Quarantine", "Validation", "Feature builds"),
    "ops": ("Ops", "Flow runs", "Schedules", "Retrain and promotion", "Drift", "Alert log",
            "Supervisor"),
    "controls": ("Controls", "Login", "Session controls", "Flows", "Control log"),
}  # fmt: skip


def click_button(driver: Any, label: str, timeout: float = 15) -> None:
    """Click the first button whose text is ``label`` once it is shown and enabled (found again
    when a rerun of the page replaced it in between)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    path = f"//button[normalize-space(.)='{label}']"
    wait = WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))
    for attempt in range(3):
        try:
            wait.until(ready.element_to_be_clickable((By.XPATH, path))).click()
            return
        except StaleElementReferenceException:
            if attempt == 2:
                raise
            time.sleep(0.2)


def type_into(driver: Any, label: str, text: str, timeout: float = 15, enter: bool = False) -> None:
    """Type ``text`` into the input labelled ``label``; with ``enter``, press Enter so the page
    takes the value (a widget outside a form) and wait for the rerun it starts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    path = f"//input[@aria-label='{label}']"
    field = WebDriverWait(driver, timeout).until(ready.element_to_be_clickable((By.XPATH, path)))
    field.clear()
    field.send_keys(text + (Keys.ENTER if enter else ""))
    if enter:
        wait_idle(driver)


def wait_idle(driver: Any, timeout: float = 30) -> None:
    """Wait until the page's script has finished running."""
    deadline = time.monotonic() + timeout
    time.sleep(0.2)  # let a click reach the server first
    while _state(driver)["state"] != "notRunning" and time.monotonic() < deadline:
        time.sleep(0.05)

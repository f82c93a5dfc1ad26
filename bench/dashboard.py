"""Dashboard page loads in a real browser, beside a bare Streamlit page in the same run.

``solodesk dashboard`` serves the desk at ``SOLODESK_HOME`` (``make demo`` leaves one in
``./data``) and headless Debian Chromium opens each page at its own URL: ``/desk``, ``/trades``,
``/research``, ``/backtests``, ``/data``, ``/ops`` and ``/controls``. A page has loaded when its
script has finished, every section heading it must show is on screen and every table, chart and
picture shown is drawn (``testkit.browser.open_page``). Each page is opened ``--rounds`` times
in one browser, the desk first as a visitor of the dashboard's address would: the first round
is a fresh browser's and a fresh server's first visit of each page, and each round reads the
desk again (the cache's time to live passes between rounds). Then each page is opened once
more as the very first page of a fresh browser (a link straight to it): a browser's first
Plotly chart loads Streamlit's Plotly bundle, which costs that visit about a second here.
The reference is a bare Streamlit page (a title, a heading and one small Plotly chart) served by
the same Streamlit and opened ``--rounds`` times in a browser of its own. Screenshots of every
page go beside the JSON result.

Run: ``SOLODESK_HOME=data .venv/bin/python bench/dashboard.py [--rounds N]``.
Target: every page under 2 s. The result is written as JSON to ``<bench_dir>/dashboard-<UTC>Z.json``
and printed as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchkit import ROOT, run_context, write_result
from testkit.browser import SECTIONS, browser, chromium, dashboard, free_port, open_page

TARGET_S = 2.0
BARE = (
    "import plotly.graph_objects as go\nimport streamlit as st\n"
    'st.title("Bare")\nst.subheader("Section")\n'
    "st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2])))\n"
)


def _bare_page(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    script = folder / "bare.py"
    script.write_text(BARE)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


def main() -> None:
    """Open every page of the desk's dashboard and a bare page; print the load times."""
    from core.settings import load_settings
    from core.times import COMPACT, utc_now

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    if chromium() is None:
        print("skipped: Debian's chromium and chromium-driver are not installed (make browser)")
        return
    settings = load_settings()
    home = settings.home if settings.home.is_absolute() else ROOT / settings.home
    if not settings.state_db_path.exists():
        print(f"note: {home} has no trading session yet (make demo makes one)")
    result: dict[str, Any] = {**run_context(), "home": str(home), "target_s": TARGET_S}
    bench = settings.bench_dir if settings.bench_dir.is_absolute() else ROOT / settings.bench_dir
    shots = bench / f"dashboard-shots-{utc_now().strftime(COMPACT)}Z"
    loads: dict[str, list[float]] = {name: [] for name in SECTIONS}
    missing: dict[str, list[str]] = {}
    fresh: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        bare, bare_url = _bare_page(Path(scratch))
        try:
            reference = []
            with browser() as driver:  # a browser of its own: the desk's first visit is fresh
                time.sleep(1.0)
                for _ in range(rounds):
                    load = open_page(driver, bare_url, "", ("Bare", "Section"), Path(scratch))
                    reference.append(load.seconds)
            with dashboard(home, Path(scratch) / "dashboard.log") as served, browser() as driver:
                time.sleep(1.0)
                for k in range(rounds):
                    if k:
                        time.sleep(settings.dashboard.cache_seconds)  # the cache expires
                    for name, want in SECTIONS.items():
                        load = open_page(driver, served.url, name, want, shots)
                        loads[name].append(load.seconds)
                        if load.exceptions:
                            missing[name] = [f"exception: {e}" for e in load.exceptions]
                        lacking = [h for h in want if h not in load.headings]
                        if lacking or not load.complete:
                            missing.setdefault(name, []).extend(lacking or ["not drawn"])
            with dashboard(home, Path(scratch) / "fresh.log") as served:
                time.sleep(1.0)
                for name, want in SECTIONS.items():
                    with browser() as driver:
                        fresh[name] = open_page(driver, served.url, name, want, shots).seconds
        finally:
            bare.terminate()
            bare.wait()
    ref = statistics.median(reference)
    print(f"desk {home}; {rounds} rounds; reference: a bare Streamlit page {ref:.3f} s (median)")
    print(
        f"{'page':<11} {'median s':>9} {'max s':>7} {'x bare':>7}  target < {TARGET_S:.0f} s"
        f"  {'first page of a browser, s':>27}"
    )
    pages = {}
    for name, seconds in loads.items():
        median, worst = statistics.median(seconds), max(seconds)
        verdict = "met" if worst < TARGET_S else "MISSED"
        alone = fresh[name]
        note = "met" if alone < TARGET_S else "MISSED"
        print(
            f"/{name:<10} {median:9.3f} {worst:7.3f} {median / ref:7.1f}  {verdict:<6}"
            f"         {alone:27.3f} {note}"
        )
        pages[name] = {
            "seconds": seconds, "median": median, "max": worst, "x_bare": median / ref,
            "first_page_of_a_browser": alone,
        }  # fmt: skip
    for name, what in missing.items():
        print(f"/{name}: MISSING {what}")
    result.update(reference_seconds=reference, pages=pages, missing=missing, screenshots=str(shots))
    print(f"screenshots: {shots}")
    path = write_result("dashboard", result)
    print(f"result: {path}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

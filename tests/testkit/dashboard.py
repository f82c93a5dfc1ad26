"""The dashboard's fixture desk: the sample desk's real EURUSD H1 bars, and then what a desk
accumulates, each made by the command a person would run (in process).

- a quarantine: a GBPUSD H1 file in MT4's CSV format with three bad rows;
- a walk-forward registering version 1 of ``EURUSD-H1-default`` (LightGBM, no tuning), then a
  refused promotion (the floors) recorded in the registry's tags;
- a stored backtest and a sweep of ``sma_cross``;
- a paper session ``desk`` of ``sma_cross`` over the sample's last weeks, with trades,
  equity and risk state, and a pause recorded in its controls.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from testkit.cli import REPO, invoke, json_lines

MODEL = "EURUSD-H1-default"
SESSION = "desk"
PAPER_FROM = "2017-11-27"
BAD_ROWS = 3


def _gbpusd_file(path: Path, bars: int = 120) -> Path:
    """Write GBPUSD H1 bars in MT4's CSV export format, three of them broken."""
    start = datetime(2017, 3, 6, tzinfo=UTC)
    lines = []
    price = 1.2300
    for k in range(bars):
        ts = start + timedelta(hours=k)
        step = ((k * 7919) % 23 - 11) * 1e-4
        o, c = price, price + step
        high, low = max(o, c) + 3e-4, min(o, c) - 3e-4
        if k in (17, 18):
            high, low = low - 1e-4, high  # high below low
        if k == 60:
            o = -o  # a negative price
        lines.append(f"{ts:%Y.%m.%d},{ts:%H:%M},{o:.5f},{high:.5f},{low:.5f},{c:.5f},{100 + k}")
        price = c
    path.write_text("\n".join(lines) + "\n")
    return path


def _ok(args: list[str], home: Path) -> list[dict[str, Any]]:
    run = invoke(args, home)
    assert run.returncode == 0, (args, run.stderr, run.exception)
    return json_lines(run.stdout) if "--json" in args else []


def build_dashboard_desk(home: Path, sample_home: Path) -> dict[str, Any]:
    """Make the fixture desk in ``home`` from a copy of the sample desk; return its facts."""
    shutil.copytree(sample_home, home)
    shutil.copy(REPO / "params.yaml", home.parent / "params.yaml")
    bad = _gbpusd_file(home.parent / "GBPUSD60.csv")
    (ingested,) = _ok(
        ["ingest", str(bad), "--symbol", "GBPUSD", "--timeframe", "H1", "--json"], home
    )
    research = _ok(
        ["walkforward", "--symbol", "EURUSD", "--timeframe", "H1", "--from", "2017-06-01",
         "--trials", "0", "--folds", "2", "--n-boot", "200", "--threads", "1", "--json"],
        home,
    )  # fmt: skip
    promote = invoke(["models", "promote", "--name", MODEL, "--json"], home)
    backtest = _ok(
        ["backtest", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
         "--param", "fast=20", "--param", "slow=100", "--spread", "1.0", "--json"],
        home,
    )  # fmt: skip
    sweep = _ok(
        ["sweep", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
         "--param", "fast=5:25:10", "--param", "slow=40:120:40", "--spread", "1.0", "--json"],
        home,
    )  # fmt: skip
    paper = _ok(
        ["paper", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
         "--param", "fast=10", "--param", "slow=30", "--from", PAPER_FROM, "--spread", "1.0",
         "--risk", "max_daily_loss=0.03", "--risk", "max_trailing_drawdown=0.10",
         "--session", SESSION, "--json"],
        home,
    )  # fmt: skip
    _ok(["pause", "--session", SESSION, "--why", "fixture", "--json"], home)
    return {
        "quarantined": ingested.get("rows_quarantined"),
        "research": research,
        "promote_exit": promote.returncode,
        "backtest": backtest,
        "sweep": sweep[:1],
        "paper": paper,
    }

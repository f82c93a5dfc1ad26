"""``solodesk mt4 match``: a paper session on the sample desk matched against the MT4
simulator's HIST answers (loopback), as it is and with one bar of the simulator's store
changed."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import SampleDesk
from testkit.cli import invoke, json_lines
from testkit.mt4 import simulator

from core.settings import Settings
from feature_store.store import BarStore, SeriesInfo
from services.mt4_match import match_report_path

PAPER = ["paper", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross",
         "--param", "fast=5", "--param", "slow=20", "--param", "allow_short=true",
         "--spread", "1", "--from", "2017-03-01", "--to", "2017-04-01", "--session", "m1",
         "--json"]  # fmt: skip
CHANGED = datetime(2017, 3, 15, 14, tzinfo=UTC)
JUNE: dict[str, Any] = {
    "start": datetime(2017, 6, 1, tzinfo=UTC),
    "end": datetime(2017, 6, 1, 3, tzinfo=UTC),
}


@pytest.fixture(scope="module")
def desk(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample desk with the paper session ``m1`` run on March 2017."""
    home = tmp_path_factory.mktemp("mt4-match") / "home"
    shutil.copytree(sample_desk.home, home)
    done = invoke(PAPER, home)
    assert done.returncode == 0, done.stderr
    return home


def _env(ports: tuple[int, int, int]) -> dict[str, str]:
    return {"SOLODESK_MT4__PORTS": json.dumps(list(ports)), "SOLODESK_MT4__TIMEOUT_SECONDS": "1"}


def _match(desk: Path, sim_home: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    with simulator(sim_home, raw=False, **JUNE) as run:
        done = invoke(["mt4", "match", "--session", "m1", "--json", *extra], desk,
                      env=_env(run.ports))  # fmt: skip
    lines = json_lines(done.stdout) if done.returncode == 0 else [{}]
    return done.returncode, lines[0], done.stderr


def test_match_paper_session_against_simulator_matches(desk: Path) -> None:
    # Act: the simulator serves the desk's own bars
    status, report, stderr = _match(desk, desk)
    # Assert
    assert status == 0, stderr
    assert report["matched"] is True, report["message"]
    assert report["differing_bars"] == [] and report["price_differences"] == []
    assert report["session_bars"] == report["mt4_bars"] > 400
    assert report["session_orders"] == report["backtest_orders"] > 5
    assert report["first"] == "2017-03-01T00:00:00Z"
    path = Path(str(report["report"]))
    assert path == match_report_path(Settings(home=desk), "m1") and path.exists()
    assert "matched:" in path.read_text()


def test_match_with_one_bar_changed_names_that_bar(desk: Path, tmp_path: Path) -> None:
    # Arrange: the simulator's store has the 2017-03-15 14:00 bar's high and close moved up
    sim_home = tmp_path / "sim"
    shutil.copytree(desk, sim_home)
    store = BarStore(Settings(home=sim_home).store_dir)
    with store.transaction() as tx:
        (slug,) = (s for s in tx.manifest["series"] if s.startswith("EURUSD.H1."))
        info = SeriesInfo.from_dict(tx.manifest["series"][slug])
        key = info.key
        year = store.read(key, years={2017}, info=info)
        moved = year.with_columns(
            *(pl.when(pl.col("ts") == CHANGED).then(pl.col(c) + 0.005).otherwise(pl.col(c))
              .alias(c) for c in ("high", "close"))
        )  # fmt: skip
        tx.put_series(info, {2017: moved})
        tx.commit()
    html = tmp_path / "out" / "match.html"
    # Act
    status, report, stderr = _match(desk, sim_home, "--report", str(html))
    # Assert: exit 0, not matched, the changed bar named with both prices
    assert status == 0, stderr
    assert report["matched"] is False
    prices = report["price_differences"]
    assert isinstance(prices, list) and len(prices) == 1
    assert prices[0]["ts"] == "2017-03-15T14:00:00Z"
    assert prices[0]["fields"] == ["high", "close"]
    assert report["report"] == str(html) and "2017-03-15T14:00:00Z" in html.read_text()


def test_match_unknown_session_exit_2(desk: Path) -> None:
    done = invoke(["mt4", "match", "--session", "nope", "--json"], desk)
    assert done.returncode == 2 and "no session 'nope'" in done.stderr and done.stdout == ""

"""``solodesk mt4 history``: bars pulled from the MT4 simulator (HIST over loopback) into a
fresh desk through the ingest path, and refused ranges and symbols."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SampleDesk
from testkit.cli import invoke, json_lines
from testkit.mt4 import simulator

from core.settings import Settings
from core.timeframes import Timeframe
from feature_store.series import load_series
from services.mt4_history import history_inbox

MARCH = datetime(2017, 3, 1, tzinfo=UTC)
APRIL = datetime(2017, 4, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def home(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample desk the simulator reads."""
    target = tmp_path_factory.mktemp("mt4-history") / "home"
    shutil.copytree(sample_desk.home, target)
    return target


def _env(ports: tuple[int, int, int]) -> dict[str, str]:
    return {"SOLODESK_MT4__PORTS": json.dumps(list(ports)), "SOLODESK_MT4__TIMEOUT_SECONDS": "1"}


def test_history_from_simulator_equals_stored_bars(home: Path, tmp_path: Path) -> None:
    # Arrange: a simulator replaying June (HIST answers what came before), an empty desk
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with simulator(home, raw=False, start=datetime(2017, 6, 1, tzinfo=UTC),
                   end=datetime(2017, 6, 2, tzinfo=UTC)) as run:  # fmt: skip
        # Act: March in chunks of 200 bars
        done = invoke(
            ["mt4", "history", "--symbol", "EURUSD", "--timeframe", "H1", "--from",
             "2017-03-01", "--to", "2017-04-01", "--chunk", "200", "--json"],
            fresh, env=_env(run.ports),
        )  # fmt: skip
    # Assert: the ingest's line, and the stored bars equal the sample's (prices to 5 digits)
    assert done.returncode == 0, done.stderr
    (line,) = json_lines(done.stdout)
    stored = load_series(Settings(home=home), "EURUSD", Timeframe.H1, None, MARCH, APRIL).bars
    assert line["bars_pulled"] == stored.height == line["rows_added"]
    assert line["chunks"] == 4 and line["rows_quarantined"] == 0
    assert (line["symbol"], line["timeframe"], line["side"]) == ("EURUSD", "H1", "bid")
    pulled = load_series(Settings(home=fresh), "EURUSD", Timeframe.H1).bars
    assert pulled["ts"].to_list() == stored["ts"].to_list()
    for column in ("open", "high", "low", "close"):
        off: float = (pulled[column] - stored[column].round(5)).abs().max()  # type: ignore[assignment]
        assert off < 1e-9, column
    # the sample has no spread: the terminal says 0 points
    assert "spread" not in stored.columns and pulled["spread"].to_list() == [0.0] * stored.height
    assert pulled["volume"].to_list() == stored["volume"].round(0).to_list()
    assert Path(line["file"]).parent == history_inbox(Settings(home=fresh)) / "done"
    assert not list(history_inbox(Settings(home=fresh)).glob("*.parquet"))


def test_history_bad_range_and_unknown_symbol_exit_2(home: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    args = ["mt4", "history", "--timeframe", "H1", "--json"]
    with simulator(home, raw=False, start=datetime(2017, 6, 1, tzinfo=UTC),
                   end=datetime(2017, 6, 1, 2, tzinfo=UTC)) as run:  # fmt: skip
        env = _env(run.ports)
        reversed_range = invoke(
            [*args, "--symbol", "EURUSD", "--from", "2017-04-01", "--to", "2017-03-01"], fresh,
            env=env,
        )  # fmt: skip
        unknown = invoke(
            [*args, "--symbol", "EURXYZ", "--from", "2017-03-01", "--to", "2017-04-01"], fresh,
            env=env,
        )  # fmt: skip
        not_held = invoke(
            [*args, "--symbol", "GBPUSD", "--from", "2017-03-01", "--to", "2017-04-01"], fresh,
            env=env,
        )  # fmt: skip
    assert reversed_range.returncode == 2 and "is not before --to" in reversed_range.stderr
    assert unknown.returncode == 2 and "unknown instrument 'EURXYZ'" in unknown.stderr
    assert not_held.returncode == 2 and "has no GBPUSD H1 bars" in not_held.stderr
    assert reversed_range.stdout == unknown.stdout == not_held.stdout == ""
    assert not list((fresh / "store").rglob("*.parquet")) if (fresh / "store").exists() else True

"""The MT4 simulator restarted on a named account (``--account``), and run with CURVE.

Each run is ``run_simulator`` in a thread of this process over the sample desk's EURUSD H1
2017 bars, on free loopback ports; trades go through the run's raw client sockets in the legacy
dialect (the EA's literal replies).
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import SampleDesk
from testkit.mt4 import Client, bridge_settings, simulator

from core.errors import UsageError
from core.settings import Settings
from core.timeframes import Timeframe
from execution.brokers.mt4.client import BridgeClient
from execution.brokers.mt4.protocol import Dialect, parse_reply
from execution.brokers.mt4.replay import TICKS_PER_BAR
from execution.brokers.mt4.sockets import curve_key_pair
from feature_store.series import load_series
from services.mt4_sim import ACCOUNT_FILE, SimAccount, sim_curve

MARCH: dict[str, Any] = {
    "start": datetime(2017, 3, 1, tzinfo=UTC),
    "end": datetime(2017, 3, 8, tzinfo=UTC),
}
JUNE: dict[str, Any] = {
    "start": datetime(2017, 6, 1, tzinfo=UTC),
    "end": datetime(2017, 6, 3, tzinfo=UTC),
}
OPEN_TRADES = "TRADE;GET_OPEN_TRADES;0;;0;0;0;;0;0;0"
ACCOUNT_INFO = "TRADE;GET_ACCOUNT_INFO;0;;0;0;0;;0;0;0"
OFF_QUOTES = "136"


@pytest.fixture(scope="module")
def home(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample desk the simulators of this module read and keep accounts in."""
    target = tmp_path_factory.mktemp("mt4-sim-restart") / "home"
    shutil.copytree(sample_desk.home, target)
    return target


def _connected(client: Client) -> Client:
    """Return the client once a reply reaches it: until its reply socket has connected, the
    simulator finds no peer for a reply and drops it (as the EA does)."""
    deadline = time.monotonic() + 5.0
    client.send("HEARTBEAT;")
    while client.reply(0.2) is None:
        assert time.monotonic() < deadline, "the simulator answered no HEARTBEAT within 5 s"
        client.send("HEARTBEAT;")
    while client.reply(0.1) is not None:  # a late answer to an earlier HEARTBEAT
        pass
    return client


def _ask(client: Client, text: str) -> dict[str, Any]:
    return parse_reply(client.ask(text), Dialect.LEGACY)


def _open(client: Client, text: str) -> dict[str, Any]:
    """Send an OPEN, again while the replay has not yet given the terminal a quote."""
    deadline = time.monotonic() + 5.0
    while True:
        reply = _ask(client, text)
        if reply.get("_response") != OFF_QUOTES or time.monotonic() > deadline:
            return reply
        time.sleep(0.02)


def _window_ticks(home: Path, window: dict[str, Any]) -> int:
    data = load_series(Settings(home=home), "EURUSD", Timeframe.H1, None, *window.values())
    return data.bars.height * TICKS_PER_BAR


def _account(home: Path, name: str) -> SimAccount:
    path = home / "mt4-sim" / "accounts" / name / ACCOUNT_FILE
    return SimAccount.model_validate_json(path.read_text(encoding="utf-8"))


def _without_pnl(trades: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {t: {k: v for k, v in e.items() if k != "_pnl"} for t, e in trades.items()}


def test_mt4_sim_restart_on_account_keeps_trades_balance_tickets_and_time(home: Path) -> None:
    # Arrange: a first run opens a trade, a pending order, and a trade it closes.
    with simulator(home, account="desk", **MARCH) as run:
        client = _connected(run.client)
        kept = _open(client, "TRADE;OPEN;0;EURUSD;0;0;0;kept;0.1;7;0")
        pending = _ask(client, "TRADE;OPEN;2;EURUSD;1.0;0;0;limit;0.01;7;0")
        gone = _ask(client, "TRADE;OPEN;1;EURUSD;0;0;0;gone;0.2;7;0")
        closed_first = _ask(client, f"TRADE;CLOSE;1;EURUSD;0;0;0;;0;7;{gone['_ticket']}")
        before = _ask(client, OPEN_TRADES)["_trades"]
        balance = _ask(client, ACCOUNT_INFO)["_data"][0]["account_balance"]
        first = run.finish()
    saved = _account(home, "desk")

    # Act: the same account again, over the same days.
    with simulator(home, account="desk", **MARCH) as run:
        client = _connected(run.client)
        after = _ask(client, OPEN_TRADES)["_trades"]
        restored_balance = _ask(client, ACCOUNT_INFO)["_data"][0]["account_balance"]
        new = _ask(client, "TRADE;OPEN;0;EURUSD;0;0;0;new;0.01;7;0")
        closed = _ask(client, f"TRADE;CLOSE;0;EURUSD;0;0;0;;0;7;{kept['_ticket']}")
        second = run.finish()
    resaved = _account(home, "desk")

    # Assert
    tickets = [kept["_ticket"], pending["_ticket"], gone["_ticket"]]
    assert tickets == list(range(tickets[0], tickets[0] + 3))
    assert closed_first["_response"] == "CLOSE_MARKET" and balance != 10_000.0
    assert sorted(before) == tickets[:2]
    assert _without_pnl(after) == _without_pnl(before)
    assert restored_balance == balance
    # the next ticket goes on, and the restored quote lets a trade open before any new tick
    assert new["_ticket"] == tickets[2] + 1
    # the replay did not go back: the second run replayed only the ticks after the first's
    assert saved.time is not None and second.resumed_at == saved.time
    assert first.ticks + second.ticks == _window_ticks(home, MARCH)
    assert resaved.time is not None and resaved.time >= saved.time
    # closing a restored trade works and lands in the account's history, next to the first run's
    assert closed["_response"] == "CLOSE_MARKET" and closed["_ticket"] == kept["_ticket"]
    history = pl.read_parquet(second.history)
    assert Path(second.history).parent == home / "mt4-sim" / "accounts" / "desk"
    assert history["ticket"].to_list() == [gone["_ticket"], kept["_ticket"]]
    assert second.trades_closed == 1 and second.account == "desk"
    assert resaved.terminal.balance == round(
        balance + history["pnl"][1] + history["swap"][1] + history["commission"][1], 2
    )
    assert sorted(o.ticket for o in resaved.terminal.orders) == [tickets[1], new["_ticket"]]
    assert not (home / "mt4-sim" / first.run).exists()


def test_mt4_sim_account_time_outside_window_replays_from_start(home: Path) -> None:
    with simulator(home, account="moved", **MARCH) as run:
        opened = _open(_connected(run.client), "TRADE;OPEN;0;EURUSD;0;0;0;x;0.01;7;0")
        run.finish()

    with simulator(home, account="moved", **JUNE) as run:
        trades = _ask(_connected(run.client), OPEN_TRADES)["_trades"]
        summary = run.finish()

    assert list(trades) == [opened["_ticket"]]
    assert summary.resumed_at is None
    assert summary.ticks == _window_ticks(home, JUNE)


def test_mt4_sim_account_in_use_is_refused(home: Path) -> None:
    with simulator(home, account="busy", **JUNE) as run:
        refused = pytest.raises(UsageError, match="another simulator is running on it")
        with refused, simulator(home, account="busy", **JUNE):
            pass
        run.finish()


def test_mt4_sim_damaged_account_file_is_refused_naming_it(home: Path) -> None:
    folder = home / "mt4-sim" / "accounts" / "broken"
    folder.mkdir(parents=True)
    (folder / ACCOUNT_FILE).write_text('{"name": "broken"', encoding="utf-8")

    refused = pytest.raises(UsageError, match=r"broken/account\.json: not a simulator account")
    with refused, simulator(home, account="broken", **JUNE):
        pass


def test_mt4_sim_with_curve_admits_an_allowed_client(home: Path) -> None:
    server, desk = curve_key_pair(), curve_key_pair()
    curve = sim_curve(server.secret, [desk.public])

    with simulator(home, raw=False, curve=curve, **JUNE) as run:
        config = bridge_settings(
            run.ports, curve_server_key=server.public, curve_public_key=desk.public,
            curve_secret_key=desk.secret,
        )  # fmt: skip
        with BridgeClient(config).connect() as client:
            account = client.account()
        run.finish()

    assert account["account_balance"] == 10_000.0


def test_sim_curve_refuses_a_key_that_is_not_one() -> None:
    server = curve_key_pair()

    with pytest.raises(UsageError, match="allowed client key 0: not a CURVE key"):
        sim_curve(server.secret, ["not-a-key"])
    with pytest.raises(UsageError, match="at least one client public key"):
        sim_curve(server.secret, [])

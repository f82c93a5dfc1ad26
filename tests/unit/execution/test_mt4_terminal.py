"""The simulated MT4 account's rules, on synthetic quotes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import UsageError
from core.instruments import InstrumentRegistry
from execution.brokers.mt4.protocol import (
    MAX_LOT_SIZE_EXCEEDED,
    MAX_ORDERS_REACHED,
    TRADE_CONTEXT_BUSY,
    parse_command,
)
from execution.brokers.mt4.replay import FaultKind, FaultPlan
from execution.brokers.mt4.terminal import SimTerminal, TerminalConfig, TerminalState

T0 = datetime(2017, 3, 14, 9, 0, 7, tzinfo=UTC)  # 12:00:07 on the broker clock


def _terminal(**config: object) -> SimTerminal:
    term = _bare(config=config)
    term.on_quote("EURUSD", 1.06379, 1.06387, T0)
    term.on_quote("USDJPY", 115.151, 115.160, T0)
    return term


def _bare(
    symbols: tuple[str, ...] = ("EURUSD", "USDJPY"), config: dict[str, object] | None = None
) -> SimTerminal:
    registry = InstrumentRegistry.default()
    config = dict(config or {})
    faults = config.pop("faults", None)
    return SimTerminal(
        TerminalConfig(**config),  # type: ignore[arg-type]
        {s: registry.get(s) for s in symbols},
        faults=faults,  # type: ignore[arg-type]
    )


def _send(term: SimTerminal, text: str, at: datetime = T0) -> dict:
    return term.handle(parse_command(text), at)


def test_open_market_buy_tickets_and_points_match_transcript() -> None:
    term = _terminal()
    first = _send(term, "TRADE;OPEN;0;EURUSD;0;50;100;DWX_Python_to_MT;0.01;123456;0")
    second = _send(term, "TRADE;OPEN;1;USDJPY;0;300;600;x;0.1;123456;0")
    assert first == {
        "_action": "EXECUTION", "_magic": 123456, "_ticket": 51234567,
        "_open_time": "2017.03.14 12:00:07", "_open_price": 1.06387, "_sl": 1.06337, "_tp": 1.06487,
    }  # fmt: skip
    assert second["_ticket"] == 51234568
    assert (second["_open_price"], second["_sl"], second["_tp"]) == (115.151, 115.451, 114.551)


def test_close_partial_keeps_rest_under_new_ticket() -> None:
    term = _terminal()
    ticket = _send(term, "TRADE;OPEN;0;EURUSD;0;0;0;c;0.03;1;0")["_ticket"]
    reply = _send(term, f"TRADE;CLOSE_PARTIAL;0;EURUSD;0;0;0;c;0.01;1;{ticket}")
    assert reply["_response"] == "CLOSE_PARTIAL" and reply["_close_lots"] == 0.01
    assert reply["_close_price"] == 1.06379
    trades = _send(term, "TRADE;GET_OPEN_TRADES;0;;0;0;0;;0;0;0")["_trades"]
    assert list(trades) == [ticket + 1] and trades[ticket + 1]["_lots"] == 0.02
    assert term.history[0][1].pnl == -0.08


def test_close_all_closes_market_and_pending() -> None:
    term = _terminal()
    _send(term, "TRADE;OPEN;0;EURUSD;0;0;0;c;0.01;1;0")
    _send(term, "TRADE;OPEN;3;USDJPY;115.4;0;0;c;0.1;2;0")
    reply = _send(term, "TRADE;CLOSE_ALL;0;;0;0;0;;0;0;0")
    kinds = [e["_response"] for e in reply["_responses"].values()]
    assert kinds == ["CLOSE_MARKET", "CLOSE_PENDING"]
    assert _send(term, "TRADE;GET_OPEN_TRADES;0;;0;0;0;;0;0;0")["_trades"] == {}


def test_take_profit_and_pending_trigger_on_ticks() -> None:
    term = _terminal()
    _send(term, "TRADE;OPEN;0;EURUSD;0;0;100;c;0.01;1;0")  # TP 1.06487
    _send(term, "TRADE;OPEN;2;USDJPY;115.0;0;0;c;0.1;1;0")  # buy limit
    later = T0 + timedelta(minutes=5)
    closed = term.on_quote("EURUSD", 1.06490, 1.06498, later)
    term.on_quote("USDJPY", 114.990, 114.999, later)
    assert [c.close_price for c in closed] == [1.0649]
    assert closed[0].order.comment.endswith("[tp]")
    open_trades = _send(term, "TRADE;GET_OPEN_TRADES;0;;0;0;0;;0;0;0")["_trades"]
    assert [t["_type"] for t in open_trades.values()] == [0]


def test_account_margin_and_not_enough_money() -> None:
    term = _terminal()
    _send(term, "TRADE;OPEN;0;EURUSD;0;0;0;c;0.01;1;0")
    info = _send(term, "TRADE;GET_ACCOUNT_INFO;0;;0;0;0;;0;0;0")["_data"][0]
    assert info["account_balance"] == 10000.0 and info["account_profit"] == -0.08
    assert info["account_free_margin"] == pytest.approx(9999.92 - 10.6387 / 0.3, abs=0.01)
    refused = _send(term, "TRADE;OPEN;0;EURUSD;0;50;100;c;50;1;0")
    assert refused["_response"] == "134"


def test_ea_limits_refuse_with_the_ea_codes() -> None:
    term = _terminal(max_orders=1, max_lot_size=1.0)
    assert _send(term, "TRADE;OPEN;0;EURUSD;0;0;0;c;5;1;0")["_response"] == MAX_LOT_SIZE_EXCEEDED
    _send(term, "TRADE;OPEN;0;EURUSD;0;0;0;c;0.01;1;0")
    assert _send(term, "TRADE;OPEN;0;EURUSD;0;0;0;c;0.01;1;0")["_response"] == MAX_ORDERS_REACHED


def test_invalid_stops_and_unknown_ticket() -> None:
    term = _terminal()
    ticket = _send(term, "TRADE;OPEN;0;EURUSD;0;80;150;c;0.01;1;0")["_ticket"]
    assert _send(term, f"TRADE;MODIFY;0;EURUSD;0;1;150;c;0.01;1;{ticket}")["_response"] == "130"
    assert _send(term, "TRADE;CLOSE;0;EURUSD;0;0;0;c;0.01;1;51230000")["_response"] == "4108"


def test_faults_answer_with_the_ea_errors() -> None:
    busy = _terminal(faults=FaultPlan({FaultKind.CONTEXT_BUSY: 1.0}))
    reply = _send(busy, "TRADE;OPEN;0;EURUSD;0;0;0;c;0.01;1;0")
    assert reply == {
        "_action": "EXECUTION",
        "_response": TRADE_CONTEXT_BUSY,
        "_response_value": "ERROR",
    }
    rejected = _terminal(faults=FaultPlan({FaultKind.REJECT_TRADE: 1.0}))
    assert _send(rejected, "TRADE;OPEN;0;EURUSD;0;0;0;c;0.01;1;0")["_response"] == "138"
    offline = _terminal()
    offline.broker_connected = False
    reply = _send(offline, "TRADE;OPEN;0;EURUSD;0;0;0;c;0.01;1;0")
    assert reply["_response"] == "NO_BROKER_CONNECTION__ABORTED_COMMAND"


def test_state_restored_from_json_gives_same_account_and_next_ticket() -> None:
    # Arrange: a trade open, a pending order, a trade partly closed, the balance moved.
    term = _terminal()
    _send(term, "TRADE;OPEN;0;EURUSD;0;50;100;a;0.02;1;0")
    _send(term, "TRADE;OPEN;2;USDJPY;115.0;0;0;b;0.1;2;0")
    ticket = _send(term, "TRADE;OPEN;1;EURUSD;0;0;0;c;0.03;3;0")["_ticket"]
    _send(term, f"TRADE;CLOSE_PARTIAL;0;EURUSD;0;0;0;c;0.01;3;{ticket}")
    text = term.state().model_dump_json()

    # Act
    again = _bare(config={"cash": 500.0})
    again.restore(TerminalState.model_validate_json(text))
    again.set_quote("EURUSD", 1.06379, 1.06387)
    again.set_quote("USDJPY", 115.151, 115.160)

    # Assert
    assert again.balance == term.balance != 10_000.0 and again.config.cash == 10_000.0
    assert again.orders == term.orders and again.history == term.history
    listed = "TRADE;GET_OPEN_TRADES;0;;0;0;0;;0;0;0"
    assert _send(again, listed) == _send(term, listed)
    opened = _send(again, "TRADE;OPEN;0;EURUSD;0;0;0;d;0.01;1;0")
    assert opened["_ticket"] == term.next_ticket == ticket + 2


def test_revision_moves_on_every_change_of_the_account_only() -> None:
    term = _terminal()
    start = term.revision
    _send(term, "TRADE;GET_OPEN_TRADES;0;;0;0;0;;0;0;0")
    _send(term, "TRADE;GET_ACCOUNT_INFO;0;;0;0;0;;0;0;0")
    term.on_quote("EURUSD", 1.06380, 1.06388, T0)
    unchanged = term.revision
    ticket = _send(term, "TRADE;OPEN;0;EURUSD;0;0;0;a;0.01;1;0")["_ticket"]
    opened = term.revision
    _send(term, f"TRADE;MODIFY;0;EURUSD;0;0;200;a;0;1;{ticket}")
    modified = term.revision
    _send(term, "TRADE;OPEN;2;USDJPY;115.0;0;0;b;0.1;2;0")
    term.on_quote("USDJPY", 114.990, 114.999, T0)  # the buy limit triggers
    triggered = term.revision
    _send(term, f"TRADE;CLOSE;0;EURUSD;0;0;0;a;0;1;{ticket}")

    assert unchanged == start
    assert start < opened < modified < triggered - 1 < term.revision


def test_restore_refuses_foreign_symbols_and_currency() -> None:
    term = _terminal()
    _send(term, "TRADE;OPEN;0;USDJPY;0;0;0;a;0.1;1;0")
    state = term.state()

    with pytest.raises(UsageError, match="USDJPY, which this terminal does not trade"):
        _bare(("EURUSD",)).restore(state)
    with pytest.raises(UsageError, match="the saved account is in USD"):
        _bare(config={"currency": "EUR"}).restore(state)


def test_restored_trade_before_any_quote_is_off_quotes_not_a_crash() -> None:
    term = _terminal()
    ticket = _send(term, "TRADE;OPEN;0;EURUSD;0;0;0;a;0.01;1;0")["_ticket"]
    again = _bare()
    again.restore(term.state())

    closed = _send(again, f"TRADE;CLOSE;0;EURUSD;0;0;0;a;0;1;{ticket}")
    modified = _send(again, f"TRADE;MODIFY;0;EURUSD;0;0;200;a;0;1;{ticket}")

    assert closed["_response"] == modified["_response"] == "136"
    assert list(again.orders) == [ticket]

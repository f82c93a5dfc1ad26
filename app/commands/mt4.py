"""``solodesk mt4 ...``: the MetaTrader 4 bridge's commands (``sim``, the MT4 simulator)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from app.options import FromOpt, SpeedOpt, TimeframeOpt, ToOpt, speed_value
from core.errors import UsageError

app = typer.Typer(help="The MetaTrader 4 bridge: the simulator.", no_args_is_help=True)

SimSymbolsOpt = Annotated[
    str, typer.Option("--symbols", help="Stored symbols, comma-separated: EURUSD,USDJPY.")
]
SimSpreadOpt = Annotated[
    str, typer.Option("--spread", help="Spread in pips, or 'data' for the series' own.")
]
HostOpt = Annotated[str, typer.Option("--host", help="Address to bind (127.0.0.1: loopback).")]
PortsOpt = Annotated[
    str, typer.Option("--ports", help="Commands, replies, market data; 0 takes a free port.")
]
SimCashOpt = Annotated[float, typer.Option("--cash", help="Starting balance, account currency.")]
SimLeverageOpt = Annotated[int, typer.Option("--leverage", min=1, help="Margin = notional / N.")]
FaultOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional for lists
    typer.Option("--fault", help="KIND=RATE[:SECONDS], repeatable (drop_reply=0.05 ...)."),
]
MaxOrdersOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--max-orders", min=0, help="EA input MaximumOrders (default: no limit)."),
]
MaxLotOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--max-lot-size", help="EA input MaximumLotSize (default: no limit)."),
]
SimSeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the fault draws.")]


def _ports(text: str) -> tuple[int, int, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--ports {text!r}: give three ports, e.g. 32768,32769,32770")
    return int(parts[0]), int(parts[1]), int(parts[2])


@app.command("sim")
def sim(
    symbols: SimSymbolsOpt,
    timeframe: TimeframeOpt,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    speed: SpeedOpt = None,
    spread: SimSpreadOpt = "data",
    host: HostOpt = "127.0.0.1",
    ports: PortsOpt = "32768,32769,32770",
    cash: SimCashOpt = 10_000.0,
    leverage: SimLeverageOpt = 30,
    fault: FaultOpt = None,
    max_orders: MaxOrdersOpt = None,
    max_lot_size: MaxLotOpt = None,
    seed: SimSeedOpt = 0,
) -> None:
    """Run the MT4 simulator: bind the expert advisor's three sockets and answer as the EA
    does, in both dialects, over stored bars, until interrupted.

    Prints one JSON line {"ready": true, "ports": [...]} on stdout once bound.
    """
    import signal
    import threading

    from core.settings import load_settings
    from services.mt4_sim import SimOptions, run_simulator

    names = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
    options = SimOptions(
        symbols=names, timeframe=timeframe, start=date_from, end=date_to,
        speed=speed_value(speed) if speed is not None else 1.0, spread=spread, host=host,
        ports=_ports(ports), cash=cash, leverage=leverage, faults=tuple(fault or ()),
        seed=seed, max_orders=max_orders, max_lot_size=max_lot_size,
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def ready(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    summary = run_simulator(load_settings(), options, on_ready=ready, stop=stop)
    sys.stderr.write(summary.model_dump_json() + "\n")

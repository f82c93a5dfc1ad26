"""``solodesk mt4 ...``: the MetaTrader 4 bridge's commands: ``sim`` (the MT4 simulator),
``history`` (bars from MT4 into the store) and ``match`` (a session against MT4's bars)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from app.options import FromOpt, JsonOpt, SpeedOpt, SymbolOpt, TimeframeOpt, ToOpt, speed_value
from core.errors import UsageError

app = typer.Typer(
    help="The MetaTrader 4 bridge: the simulator, history, matching sessions.",
    no_args_is_help=True,
)

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
ChunkOpt = Annotated[int, typer.Option("--chunk", min=1, help="Bars asked for per HIST request.")]
SimAccountOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--account",
        help="Keep the account (trades, balance, time) in mt4-sim/accounts/NAME across runs.",
    ),
]
CurveSecretFileOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--curve-secret-file", exists=True, dir_okay=False,
        envvar="SOLODESK_MT4_SIM_CURVE_SECRET_FILE",
        help="File holding the simulator's CURVE secret key (Z85); clients set its public key.",
    ),
]  # fmt: skip
CurveAllowOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--curve-allow", help="A client's CURVE public key to admit, repeatable."),
]
MatchSessionOpt = Annotated[str, typer.Option("--session", help="The session to match.")]
MatchReportOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--report", help="Write the HTML report here (default: reports/mt4-match/)."),
]


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
    account: SimAccountOpt = None,
    curve_secret_file: CurveSecretFileOpt = None,
    curve_allow: CurveAllowOpt = None,
    wait_for_client: Annotated[
        bool,
        typer.Option(
            "--wait-for-client",
            help="Start the replay when a client first tracks prices or bars, not at once.",
        ),
    ] = False,
) -> None:
    """Run the MT4 simulator: bind the expert advisor's three sockets and answer as the EA
    does, in both dialects, over stored bars, until interrupted.

    Prints one JSON line {"ready": true, "ports": [...]} on stdout once bound.
    """
    import signal
    import threading

    from core.settings import load_settings
    from services.mt4_sim import SimOptions, account_name_problem, run_simulator, sim_curve

    if account is not None and (problem := account_name_problem(account)):
        raise UsageError(problem)
    if (curve_secret_file is None) != (not curve_allow):
        raise UsageError("--curve-secret-file and --curve-allow go together: give both, or neither")
    curve = (
        sim_curve(curve_secret_file.read_text(encoding="ascii"), curve_allow or [])
        if curve_secret_file is not None
        else None
    )
    names = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
    options = SimOptions(
        symbols=names, timeframe=timeframe, start=date_from, end=date_to,
        speed=speed_value(speed) if speed is not None else 1.0, spread=spread, host=host,
        ports=_ports(ports), cash=cash, leverage=leverage, faults=tuple(fault or ()),
        seed=seed, max_orders=max_orders, max_lot_size=max_lot_size, account=account,
        curve=curve, wait_for_client=wait_for_client,
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def ready(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    summary = run_simulator(load_settings(), options, on_ready=ready, stop=stop)
    sys.stderr.write(summary.model_dump_json() + "\n")


@app.command("history")
def history(
    symbol: SymbolOpt,
    timeframe: TimeframeOpt,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    chunk: ChunkOpt = 2_000,
    as_json: JsonOpt = False,
) -> None:
    """Pull bars from MT4 (HIST, on the [mt4] settings) and ingest them: validated, bad rows
    quarantined, stored as the bid series with tick volume and MT4's spread.

    Times are UTC bar opens, --from inclusive, --to exclusive.
    """
    from app.output import Progress, emit, err, print_table, warn
    from core.settings import load_settings
    from services.mt4_history import pull_history

    if date_from is None or date_to is None:
        raise UsageError("mt4 history: give --from and --to (UTC dates, --to exclusive)")
    console = err()
    with Progress(console) as advance:
        result = pull_history(
            load_settings(), symbol, timeframe, date_from, date_to, chunk_bars=chunk,
            progress=advance,
        )  # fmt: skip
    warn(result.ingest.warnings)
    series = result.series
    if as_json:
        emit({"bars_pulled": result.bars_pulled, "chunks": result.chunks,
              "file": str(result.file), "run": result.ingest.run, **series.as_json()})  # fmt: skip
        return
    print_table(
        f"mt4 history {result.ingest.run}",
        ("series", "pulled", "added", "duplicate", "conflicting", "quarantined", "first", "last"),
        [(str(series.key), result.bars_pulled, series.rows_added, series.rows_duplicate,
          series.rows_conflicting, series.rows_quarantined, str(series.first),
          str(series.last))],
        right=("pulled", "added", "duplicate", "conflicting", "quarantined"),
        console=console,
    )  # fmt: skip
    if result.ingest.report:
        console.print(f"validation report: {result.ingest.report}")
    if series.rows_quarantined:
        console.print("quarantined rows: solodesk data quarantine")


@app.command("match")
def match(
    session: MatchSessionOpt,
    report: MatchReportOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a session's strategy over MT4's bars (HIST) as the session ran it, and compare
    with what the session did, bar by bar; prices that differ are listed too.

    Exit 0 whether or not it matched ("matched" says); 2 when there is no such session.
    """
    from app.output import Progress, emit, err, print_table
    from core.settings import load_settings
    from core.times import iso_z
    from services.mt4_match import match_session

    console = err()
    with Progress(console) as advance:
        result = match_session(load_settings(), session, report_path=report, progress=advance)
    if as_json:
        emit(result)
        return
    if result.differing_bars:
        print_table(
            "bars where the replay and the session differ", ("bar", "replay on MT4", "session"),
            [(iso_z(d.ts), d.backtest, d.session) for d in result.differing_bars[:50]],
            fold=("replay on MT4", "session"),
        )  # fmt: skip
    if result.price_differences:
        print_table(
            "bars whose prices differ", ("bar", "fields", "MT4", "session"),
            [(iso_z(p.ts), ", ".join(p.fields), p.mt4, p.session)
             for p in result.price_differences[:50]],
        )  # fmt: skip
    console.print(result.message)
    console.print(f"report: {result.report}")

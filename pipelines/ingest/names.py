"""Symbol and timeframe from file names that follow a known convention."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath

from core.timeframes import Timeframe, parse_timeframe

_MT4_MINUTES = ("43200", "10080", "1440", "240", "60", "30", "15", "5", "1")
_LEAN_FOLDERS = {"minute": Timeframe.M1, "hour": Timeframe.H1, "daily": Timeframe.D1}


def stem(name: str) -> str:
    """Return a file name without folders and without its ``.csv``/``.zip``/``.gz`` endings."""
    base = PurePosixPath(name.replace("\\", "/").split("!")[-1]).name
    while True:
        lowered = base.lower()
        for ending in (".gz", ".zip", ".csv", ".txt", ".hst", ".parquet", ".tsv"):
            if lowered.endswith(ending):
                base = base[: -len(ending)]
                break
        else:
            return base


def symbol_timeframe_from_name(
    name: str, is_known: Callable[[str], bool] = lambda _: False
) -> tuple[str | None, Timeframe | None]:
    """Read symbol and timeframe from conventional names.

    Understands MetaTrader's ``EURUSD60.csv`` (period in minutes), ``EURUSD_H4.csv``,
    HistData's ``HISTDATA_COM_ASCII_EURUSD_M1_2017.zip`` / ``DAT_ASCII_EURUSD_M1_2017.csv`` and
    LEAN's ``forex/oanda/hour/eurusd.zip``. ``is_known`` tells registered symbols, which decide
    splits such as ``US50060`` (US500, H1).
    """
    path = name.replace("\\", "/")
    base = stem(path)
    histdata = re.search(r"ASCII_([A-Za-z0-9]+)_(M1|T)_", base, flags=re.IGNORECASE)
    if histdata:
        timeframe = Timeframe.M1 if histdata.group(2).upper() == "M1" else None
        return histdata.group(1).upper(), timeframe
    named = re.fullmatch(r"([A-Za-z][A-Za-z0-9.]*?)[_\- ](M1|M5|M15|M30|H1|H4|D1|W1|MN1?)", base,
                         flags=re.IGNORECASE)  # fmt: skip
    if named:
        return named.group(1).upper(), parse_timeframe(named.group(2))
    parts = [p.lower() for p in PurePosixPath(path.split("!")[0]).parts]
    if len(parts) >= 2 and parts[-2] in _LEAN_FOLDERS and re.fullmatch(r"[A-Za-z0-9]+", base):
        return base.upper(), _LEAN_FOLDERS[parts[-2]]
    candidates: list[tuple[str, str]] = []
    for minutes in _MT4_MINUTES:
        if base.endswith(minutes) and len(base) > len(minutes):
            symbol = base[: -len(minutes)]
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9.]*", symbol):
                candidates.append((symbol.upper(), minutes))
    for symbol, minutes in candidates:
        if is_known(symbol):
            return symbol, parse_timeframe(minutes)
    for symbol, minutes in candidates:
        if symbol[-1].isalpha():
            return symbol, parse_timeframe(minutes)
    return None, None

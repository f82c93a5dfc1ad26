"""Stored series: finding one, the clock its bars were cut on, and loading it for a job.

Every command, service and the runtime find a series with :func:`find_series` and load one with
:func:`load_series`, so "which series does EURUSD H1 mean" has one answer and one message when
there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from core.clocks import Clock, bar_clock
from core.errors import UsageError
from core.instruments import InstrumentRegistry
from core.settings import Settings
from core.timeframes import Timeframe
from core.types import Instrument, SeriesKey, Side
from feature_store.store import BarStore, SeriesInfo
from pipelines.backtest.engine import conversion_pair, quote_to_account
from pipelines.backtest.metrics import bars_per_year
from pipelines.features.sets import SeriesFrame

#: Which side stands in for a series when any side will do (cross assets, money conversion).
SIDE_PREFERENCE = (Side.BID, Side.MID, Side.ASK)


def stored_list(store: BarStore) -> str:
    """Return the stored series as ``EURUSD H1 bid, ...`` (or ``none``), for messages."""
    return ", ".join(str(s.key) for s in store.series()) or "none"


def find_series(
    store: BarStore,
    registry: InstrumentRegistry,
    symbol: str,
    timeframe: Timeframe,
    side: Side | None = None,
    *,
    prefer: Sequence[Side] | None = None,
) -> SeriesInfo:
    """Return the stored series of a symbol (any alias) and timeframe, and side if given.

    When several sides are stored and ``side`` is not given, the first side of ``prefer``
    that is stored is taken; without ``prefer`` that is an error.

    Raises
    ------
    UsageError
        If no such series is stored (the message lists what is and how to create it), or
        several sides are, ``side`` is not given and no preference decides.
    """
    canonical = registry.canonical(symbol)
    matches = {
        s.key.side: s
        for s in store.series()
        if s.key.symbol == canonical
        and s.key.timeframe is timeframe
        and (side is None or s.key.side is side)
    }
    if not matches:
        which = f"{canonical} {timeframe.value}" + (f" {side.value}" if side else "")
        msg = (
            f"no stored series {which} (stored: {stored_list(store)}): ingest it first "
            f"(solodesk ingest FILE), or resample it (solodesk resample --symbol {canonical} "
            f"--source M1 --timeframe {timeframe.value})"
        )
        raise UsageError(msg)
    if len(matches) == 1:
        return next(iter(matches.values()))
    for wanted in prefer or ():
        if wanted in matches:
            return matches[wanted]
    sides = ", ".join(s.value for s in matches)
    raise UsageError(f"{canonical} {timeframe.value} is stored on sides {sides}: give --side")


def series_clock(info: SeriesInfo, registry: InstrumentRegistry) -> Clock:
    """Return the clock a stored series' bars were cut on (:func:`core.clocks.bar_clock`).

    The anchor a resampled series records wins; otherwise the instrument's calendar decides.
    """
    calendar = registry.get(info.key.symbol).calendar
    return bar_clock(info.key.timeframe, calendar, info.anchor)


def context_clock(
    store: BarStore, registry: InstrumentRegistry, base: SeriesKey, timeframe: Timeframe
) -> Clock:
    """Return the clock ``timeframe`` bars of ``base``'s symbol are cut on.

    That is the clock of the stored series of that timeframe (same symbol and side) when
    there is one, so features computed from resampled bars equal those read from the store;
    else the instrument's default (:func:`core.clocks.bar_clock`).
    """
    stored = store.info(SeriesKey(symbol=base.symbol, timeframe=timeframe, side=base.side))
    if stored is not None:
        return series_clock(stored, registry)
    return bar_clock(timeframe, registry.get(base.symbol).calendar)


def series_frame(
    store: BarStore,
    registry: InstrumentRegistry,
    info: SeriesInfo,
    bars: pl.DataFrame | None = None,
) -> SeriesFrame:
    """Return a series' bars (read from the store unless given) with its clock and kind."""
    return SeriesFrame(
        bars=store.read(info.key, info=info) if bars is None else bars,
        timeframe=info.key.timeframe,
        clock=series_clock(info, registry),
        has_spread=info.has_spread,
        volume_kind=info.volume_kind,
    )


@dataclass(frozen=True)
class SeriesData:
    """A stored series ready for a job: its bars, instrument and money conversion.

    ``to_account`` converts the quote currency to the account currency per bar (a constant
    when the quote is the account currency); ``conversion`` says how it was found.
    """

    info: SeriesInfo
    bars: pl.DataFrame
    instrument: Instrument
    to_account: np.ndarray | float
    bars_per_year: float
    conversion: str

    @property
    def key(self) -> SeriesKey:
        """Return the series' key."""
        return self.info.key

    @property
    def label(self) -> str:
        """Return ``SYMBOL TF side``."""
        return f"{self.info.key.symbol} {self.info.key.timeframe.value} {self.info.key.side.value}"


def _conversion(
    store: BarStore, settings: Settings, instrument: Instrument, timeframe: Timeframe,
    bars: pl.DataFrame,
) -> tuple[np.ndarray | float, str]:  # fmt: skip
    """Return the quote-to-account rate per bar (:func:`quote_to_account`) and how it was found.

    For a pair quoted in neither the account currency nor its own base, the rate comes from
    the stored series of the conventional pair joining the two currencies, same timeframe,
    taken as of each bar (the first bars before it starts take its first value).
    """
    account = settings.account_currency.upper()
    if instrument.quote == account:
        return 1.0, f"{instrument.quote} is the account currency"
    if instrument.base == account:
        return quote_to_account(instrument, account, bars), f"1 / {instrument.symbol} close"
    pair = conversion_pair(instrument.quote, account)
    try:
        found = find_series(store, settings.registry, pair, timeframe, prefer=SIDE_PREFERENCE)
    except UsageError:
        msg = (
            f"{instrument.symbol} is quoted in {instrument.quote}, not the account currency "
            f"{account}: ingest {pair} {timeframe.value} too, so profits can be converted"
        )
        raise UsageError(msg) from None
    other = store.read(found.key, info=found).select("ts", pl.col("close").alias("rate"))
    joined = bars.select("ts").join_asof(other, on="ts", strategy="backward")
    rate = joined["rate"].fill_null(strategy="backward").to_numpy()
    how = f"{pair} close" if pair.startswith(instrument.quote) else f"1 / {pair} close"
    return quote_to_account(instrument, account, bars, rate), how


def load_series(
    settings: Settings,
    symbol: str,
    timeframe: Timeframe,
    side: Side | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> SeriesData:
    """Return a stored series' bars in ``[start, end)`` with what a job needs to trade them.

    Raises
    ------
    UsageError
        If the series is not stored, has fewer than two bars in the range, or its profits
        cannot be converted to the account currency.
    """
    store = BarStore(settings.store_dir)
    info = find_series(store, settings.registry, symbol, timeframe, side)
    bars = store.read(info.key, start, end, info=info)
    if bars.height < 2:
        span = f" from {start or 'the start'} to {end or 'the end'}"
        raise UsageError(f"{info.key} has {bars.height} bar(s){span}: nothing to work on")
    if not info.has_spread and "spread" in bars.columns:
        bars = bars.drop("spread")  # no spread recorded: --spread data must say so
    instrument = settings.registry.get(info.key.symbol)
    to_account, how = _conversion(store, settings, instrument, timeframe, bars)
    per_year = bars_per_year(timeframe, instrument.asset_class)
    return SeriesData(info, bars, instrument, to_account, per_year, how)

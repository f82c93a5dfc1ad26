"""The instrument registry: canonical symbols, broker aliases and contract conventions.

Defaults cover the FX majors and their crosses, gold and silver, the main index CFDs, Brent and a
few US equities. Unknown six-letter codes made of two known currencies are FX pairs; other unknown
tickers of one to five letters are US equities. Users add their own in ``solodesk.toml``::

    [[instruments]]
    symbol = "BTCUSD"
    asset_class = "crypto"
    base = "BTC"
    quote = "USD"
    digits = 2
    pip_size = 1.0
    contract_size = 1
    calendar = "crypto"
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import combinations

from core.errors import UsageError
from core.types import AssetClass, Instrument

# Conventional order of precedence when forming a pair's name (EUR before USD, USD before JPY).
CURRENCIES = ("EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY")
OTHER_CURRENCIES = (
    "SEK",
    "NOK",
    "DKK",
    "PLN",
    "HUF",
    "CZK",
    "TRY",
    "ZAR",
    "MXN",
    "SGD",
    "HKD",
    "CNH",
)
_ALL_CURRENCIES = frozenset(CURRENCIES + OTHER_CURRENCIES)


def fx_pair(base: str, quote: str, aliases: Iterable[str] = ()) -> Instrument:
    """Return the conventions of a currency pair: 5 digits, or 3 when JPY or HUF is quoted."""
    three = quote in {"JPY", "HUF"}
    return Instrument(
        symbol=f"{base}{quote}",
        asset_class=AssetClass.FX,
        base=base,
        quote=quote,
        digits=3 if three else 5,
        pip_size=0.01 if three else 0.0001,
        contract_size=100_000,
        calendar="fx",
        aliases=tuple(aliases),
    )


def _default_instruments() -> Iterator[Instrument]:
    for base, quote in combinations(CURRENCIES, 2):
        yield fx_pair(base, quote)
    yield Instrument(
        symbol="XAUUSD", asset_class=AssetClass.METAL, base="XAU", quote="USD", digits=2,
        pip_size=0.1, contract_size=100, calendar="fx", aliases=("GOLD",), description="Gold",
    )  # fmt: skip
    yield Instrument(
        symbol="XAGUSD", asset_class=AssetClass.METAL, base="XAG", quote="USD", digits=3,
        pip_size=0.01, contract_size=5000, calendar="fx", aliases=("SILVER",),
        description="Silver",
    )  # fmt: skip
    indices = [
        ("US500", "USD", ("SPX500", "SPXUSD", "USA500IDXUSD", "SP500"), "S&P 500"),
        ("US30", "USD", ("USA30IDXUSD", "DJ30", "WS30"), "Dow Jones 30"),
        ("NAS100", "USD", ("USATECHIDXUSD", "USTEC", "NDX100"), "Nasdaq 100"),
        ("GER40", "EUR", ("DEUIDXEUR", "DE30", "GER30", "DAX"), "DAX"),
        ("UK100", "GBP", ("GBRIDXGBP", "FTSE100"), "FTSE 100"),
    ]
    for symbol, quote, aliases, description in indices:
        yield Instrument(
            symbol=symbol, asset_class=AssetClass.INDEX, base=symbol, quote=quote, digits=2,
            pip_size=1.0, contract_size=1, lot_step=0.1, calendar="fx", aliases=aliases,
            description=description,
        )  # fmt: skip
    yield Instrument(
        symbol="BRENT", asset_class=AssetClass.COMMODITY, base="BRENT", quote="USD", digits=2,
        pip_size=0.01, contract_size=1000, calendar="fx", aliases=("BRENTCMDUSD", "UKOIL"),
        description="Brent crude oil",
    )  # fmt: skip
    for ticker in ("AAPL", "MSFT", "AMZN", "GOOGL", "META", "NFLX", "TSLA", "NVDA", "SPY", "QQQ"):
        yield us_equity(ticker, aliases=(f"{ticker}USUSD", f"{ticker}.US"))


def us_equity(ticker: str, aliases: Iterable[str] = ()) -> Instrument:
    """Return the conventions of a US-listed stock: cents, one share per lot, NYSE hours."""
    return Instrument(
        symbol=ticker.upper(),
        asset_class=AssetClass.EQUITY,
        base=ticker.upper(),
        quote="USD",
        digits=2,
        pip_size=0.01,
        contract_size=1,
        lot_step=1,
        calendar="nyse",
        aliases=tuple(aliases),
    )


def _clean(symbol: str) -> str:
    # Broker suffixes such as EURUSD.m, EURUSDpro or EUR/USD are common; keep letters and digits.
    return re.sub(r"[^A-Z0-9]", "", symbol.upper())


class InstrumentRegistry:
    """Look instruments up by canonical symbol or broker alias."""

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._by_symbol: dict[str, Instrument] = {}
        self._by_alias: dict[str, str] = {}
        for instrument in instruments:
            self.add(instrument)

    @classmethod
    def default(cls, extra: Iterable[Instrument] = ()) -> InstrumentRegistry:
        """Return the built-in registry, with ``extra`` instruments added or overriding."""
        registry = cls(_default_instruments())
        for instrument in extra:
            registry.add(instrument)
        return registry

    def add(self, instrument: Instrument) -> None:
        """Add or replace an instrument and its aliases."""
        self._by_symbol[instrument.symbol] = instrument
        self._by_alias[_clean(instrument.symbol)] = instrument.symbol
        for alias in instrument.aliases:
            self._by_alias[_clean(alias)] = instrument.symbol

    def __iter__(self) -> Iterator[Instrument]:
        return iter(sorted(self._by_symbol.values(), key=lambda i: (i.asset_class, i.symbol)))

    def __len__(self) -> int:
        return len(self._by_symbol)

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and _clean(symbol) in self._by_alias

    def get(self, symbol: str) -> Instrument:
        """Return the instrument a symbol or alias names, inferring FX pairs and US tickers.

        Raises
        ------
        UsageError
            If the symbol is neither registered nor recognisable.
        """
        key = _clean(symbol)
        if key in self._by_alias:
            return self._by_symbol[self._by_alias[key]]
        # Broker suffixes: EURUSDm, EURUSDpro, EURUSD.ecn -> EURUSD.
        if len(key) > 6 and key[:6] in self._by_alias and key[:6].isalpha():
            return self._by_symbol[self._by_alias[key[:6]]]
        if len(key) == 6 and key[:3] in _ALL_CURRENCIES and key[3:] in _ALL_CURRENCIES:
            return fx_pair(key[:3], key[3:])
        if re.fullmatch(r"[A-Z][A-Z0-9]{0,4}", key):
            return us_equity(key)
        msg = (
            f"unknown instrument {symbol!r}: add it under [[instruments]] in solodesk.toml "
            "(symbol, asset_class, base, quote, digits, pip_size, contract_size, calendar)"
        )
        raise UsageError(msg)

    def canonical(self, symbol: str) -> str:
        """Return the canonical symbol for a symbol or alias."""
        return self.get(symbol).symbol

"""The instrument registry: canonical symbols, broker aliases and inferred instruments."""

from __future__ import annotations

import pytest

from core.errors import UsageError
from core.instruments import InstrumentRegistry, fx_pair
from core.types import AssetClass, Instrument


@pytest.fixture(scope="module")
def registry() -> InstrumentRegistry:
    return InstrumentRegistry.default()


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("USA500IDXUSD", "US500"),
        ("SPX500", "US500"),
        ("usa30idxusd", "US30"),
        ("DEUIDXEUR", "GER40"),
        ("EURUSD.m", "EURUSD"),
        ("EURUSDpro", "EURUSD"),
        ("EUR/USD", "EURUSD"),
        ("eurusd", "EURUSD"),
        ("GOLD", "XAUUSD"),
        ("XAUUSD.ecn", "XAUUSD"),
        ("BRENTCMDUSD", "BRENT"),
        ("AAPL.US", "AAPL"),
    ],
)
def test_registry_alias_resolves_to_canonical_symbol(
    registry: InstrumentRegistry, alias: str, canonical: str
) -> None:
    # Act
    symbol = registry.canonical(alias)

    # Assert
    assert symbol == canonical


def test_registry_known_pair_has_fx_conventions(registry: InstrumentRegistry) -> None:
    # Act
    eurusd, usdjpy = registry.get("EURUSD"), registry.get("USDJPY")

    # Assert
    assert (eurusd.asset_class, eurusd.digits, eurusd.pip_size) == (AssetClass.FX, 5, 0.0001)
    assert eurusd.contract_size == 100_000
    assert (usdjpy.digits, usdjpy.pip_size) == (3, 0.01)
    assert eurusd.calendar == "fx"


def test_registry_gold_contract_is_100_ounces(registry: InstrumentRegistry) -> None:
    # Act
    gold = registry.get("XAUUSD")

    # Assert
    assert gold.asset_class is AssetClass.METAL
    assert gold.contract_size == 100


def test_registry_unregistered_currency_pair_inferred_as_fx(registry: InstrumentRegistry) -> None:
    # Act
    pair = registry.get("EURSEK")

    # Assert
    assert pair.asset_class is AssetClass.FX
    assert (pair.base, pair.quote) == ("EUR", "SEK")
    assert "EURSEK" not in registry


def test_registry_short_unknown_ticker_inferred_as_us_equity(registry: InstrumentRegistry) -> None:
    # Act
    stock = registry.get("IBM")

    # Assert
    assert stock.asset_class is AssetClass.EQUITY
    assert stock.calendar == "nyse"
    assert stock.contract_size == 1


@pytest.mark.parametrize("symbol", ["NOTASYMBOL", "XYZ123456", "", "---", "1ABC"])
def test_registry_unknown_symbol_raises_usage_error_naming_toml(
    registry: InstrumentRegistry, symbol: str
) -> None:
    # Act
    with pytest.raises(UsageError) as caught:
        registry.get(symbol)

    # Assert
    assert "unknown instrument" in str(caught.value)
    assert "solodesk.toml" in str(caught.value)


def test_registry_user_instrument_overrides_and_adds_aliases() -> None:
    # Arrange
    btc = Instrument(symbol="btcusd", asset_class=AssetClass.CRYPTO, base="BTC", quote="USD",
                     digits=2, pip_size=1.0, contract_size=1, calendar="crypto",
                     aliases=("XBTUSD",))  # fmt: skip

    # Act
    registry = InstrumentRegistry.default([btc])

    # Assert
    assert registry.canonical("XBT/USD") == "BTCUSD"
    assert registry.get("BTCUSD").calendar == "crypto"
    assert len(registry) == len(InstrumentRegistry.default()) + 1


def test_registry_iteration_sorted_by_class_then_symbol(registry: InstrumentRegistry) -> None:
    # Act
    listed = [(i.asset_class, i.symbol) for i in registry]

    # Assert
    assert listed == sorted(listed)
    assert len(listed) == len(registry)


def test_fx_pair_jpy_quote_has_three_digits() -> None:
    # Act
    pair = fx_pair("GBP", "JPY", aliases=("GJ",))

    # Assert
    assert (pair.symbol, pair.digits, pair.pip_size, pair.aliases) == ("GBPJPY", 3, 0.01, ("GJ",))

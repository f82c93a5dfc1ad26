"""Settings: SOLODESK_HOME, solodesk.toml instruments, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import UsageError
from core.settings import Settings, load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("SOLODESK_HOME", "SOLODESK_CONFIG", "SOLODESK_ACCOUNT_CURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_settings_home_derives_store_catalog_and_reports(clean_env: Path) -> None:
    # Act
    settings = Settings(home=clean_env / "desk")

    # Assert
    assert settings.store_dir == clean_env / "desk" / "store"
    assert settings.catalog_path == clean_env / "desk" / "catalog.duckdb"
    assert settings.reports_dir == clean_env / "desk" / "reports"


def test_settings_home_read_from_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    monkeypatch.setenv("SOLODESK_HOME", str(clean_env / "elsewhere"))

    # Act
    settings = load_settings()

    # Assert
    assert settings.home == clean_env / "elsewhere"


def test_settings_toml_instrument_joins_registry(clean_env: Path) -> None:
    # Arrange
    (clean_env / "solodesk.toml").write_text(
        '[[instruments]]\nsymbol = "BTCUSD"\nasset_class = "crypto"\nbase = "BTC"\n'
        'quote = "USD"\ndigits = 2\npip_size = 1.0\ncontract_size = 1\ncalendar = "crypto"\n'
        'aliases = ["XBTUSD"]\n'
    )

    # Act
    settings = load_settings()

    # Assert
    assert settings.registry.get("XBTUSD").symbol == "BTCUSD"
    assert settings.registry.get("BTCUSD").calendar == "crypto"


def test_settings_toml_unknown_key_raises_usage_error_naming_file(clean_env: Path) -> None:
    # Arrange
    (clean_env / "solodesk.toml").write_text('acount_currency = "EUR"\n')

    # Act
    with pytest.raises(UsageError) as caught:
        load_settings()

    # Assert
    assert "solodesk.toml" in str(caught.value)
    assert "acount_currency" in str(caught.value)


def test_settings_toml_invalid_syntax_raises_usage_error(clean_env: Path) -> None:
    # Arrange
    (clean_env / "solodesk.toml").write_text("home = \n")

    # Act / Assert
    with pytest.raises(UsageError, match="not valid TOML"):
        load_settings()


def test_settings_every_folder_of_the_desk_under_home_and_distinct(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path / "desk")

    # Act
    places = [
        settings.store_dir, settings.catalog_path, settings.features_dir, settings.backtests_dir,
        settings.research_dir, settings.research_latest_dir, settings.reports_dir,
        settings.backtest_reports_dir, settings.research_reports_dir,
        settings.ingest_report_dir("in-20260101T000000-abcdef"),
        settings.feature_check_report_dir("features-default-x"), settings.mlflow_dir,
        settings.optuna_path, settings.bench_dir,
    ]  # fmt: skip

    # Assert
    assert len(set(places)) == len(places)
    assert all(p.is_relative_to(settings.home) for p in places)
    assert settings.ingest_report_dir("r1").name == "ingest-r1"
    assert settings.research_latest_dir.parent == settings.research_dir

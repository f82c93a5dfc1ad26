"""Settings: environment (``SOLODESK_*``), then ``solodesk.toml``, then defaults.

``SOLODESK_HOME`` (default ``./data``) holds everything a run writes. ``solodesk.toml`` is read
from the working directory, or from the path in ``SOLODESK_CONFIG``.
"""

from __future__ import annotations

import os
import tomllib
from functools import cached_property
from pathlib import Path

from pydantic import ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.errors import UsageError, validation_problems
from core.instruments import InstrumentRegistry
from core.types import Instrument


def config_file() -> Path:
    """Return the path of the optional settings file."""
    return Path(os.environ.get("SOLODESK_CONFIG", "solodesk.toml"))


class ValidationSettings(BaseSettings):
    """Thresholds of the bar validation suite."""

    model_config = ConfigDict(frozen=True, extra="forbid")  # type: ignore[assignment]

    jump_sigmas: float = Field(default=10.0, gt=0)
    jump_window: int = Field(default=200, ge=10)
    max_gaps_listed: int = Field(default=20, ge=0)


class Settings(BaseSettings):
    """Everything configurable about a desk."""

    model_config = SettingsConfigDict(
        env_prefix="SOLODESK_", extra="forbid", frozen=True, env_nested_delimiter="__"
    )

    home: Path = Path("data")
    account_currency: str = "USD"
    instruments: tuple[Instrument, ...] = ()
    # User strategies by name, each "path/to/file.py:ClassName" (paths relative to the
    # settings file's folder); built-in and installed ones come from entry points.
    strategies: dict[str, str] = {}
    validation: ValidationSettings = ValidationSettings()
    # Research infrastructure. Left unset, MLflow keeps its runs and registry in SQLite with
    # artifacts under SOLODESK_HOME/mlflow, Optuna its studies in SOLODESK_HOME/optuna.db, and
    # work runs in local processes. Set them to share one database (e.g.
    # postgresql://user@host:5432/db) or a Dask scheduler (tcp://host:8786) between machines.
    mlflow_tracking_uri: str | None = None
    optuna_storage: str | None = None
    dask_scheduler: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)

    # Every folder and file a desk writes under SOLODESK_HOME is named here and only here.

    @property
    def store_dir(self) -> Path:
        """Return the root of the Parquet bar store, ``SOLODESK_HOME/store``."""
        return self.home / "store"

    @property
    def catalog_path(self) -> Path:
        """Return the DuckDB catalog file, ``SOLODESK_HOME/catalog.duckdb``."""
        return self.home / "catalog.duckdb"

    @property
    def features_dir(self) -> Path:
        """Return the root of the feature store, ``SOLODESK_HOME/features``."""
        return self.home / "features"

    @property
    def backtests_dir(self) -> Path:
        """Return where backtest, sweep and portfolio runs are stored, ``SOLODESK_HOME/backtests``."""
        return self.home / "backtests"

    @property
    def research_dir(self) -> Path:
        """Return where walk-forward runs are stored, ``SOLODESK_HOME/research``."""
        return self.home / "research"

    @property
    def research_latest_dir(self) -> Path:
        """Return the latest research figures DVC reads, ``SOLODESK_HOME/research/latest``."""
        return self.research_dir / "latest"

    @property
    def reports_dir(self) -> Path:
        """Return where validation reports and tearsheets go, ``SOLODESK_HOME/reports``."""
        return self.home / "reports"

    @property
    def backtest_reports_dir(self) -> Path:
        """Return where backtest tearsheets go, ``SOLODESK_HOME/reports/backtests``."""
        return self.reports_dir / "backtests"

    @property
    def research_reports_dir(self) -> Path:
        """Return where walk-forward reports go, ``SOLODESK_HOME/reports/research``."""
        return self.reports_dir / "research"

    def ingest_report_dir(self, run: str) -> Path:
        """Return the folder of one ingest run's validation report, ``reports/ingest-<run>``."""
        return self.reports_dir / f"ingest-{run}"

    def feature_check_report_dir(self, name: str) -> Path:
        """Return the folder of a failed feature check's data docs, ``reports/<name>``."""
        return self.reports_dir / name

    @property
    def mlflow_dir(self) -> Path:
        """Return where the embedded MLflow store keeps its database and artifacts."""
        return self.home / "mlflow"

    @property
    def optuna_path(self) -> Path:
        """Return the embedded Optuna study database, ``SOLODESK_HOME/optuna.db``."""
        return self.home / "optuna.db"

    @property
    def bench_dir(self) -> Path:
        """Return where benchmarks write their results, ``SOLODESK_HOME/bench``."""
        return self.home / "bench"

    @cached_property
    def registry(self) -> InstrumentRegistry:
        """Return the instrument registry with the user's instruments added."""
        return InstrumentRegistry.default(self.instruments)


def load_settings(**overrides: object) -> Settings:
    """Return settings from the environment and ``solodesk.toml``, with ``overrides`` on top.

    Raises
    ------
    UsageError
        If a setting is malformed, naming the setting and the file.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = validation_problems(exc)
        msg = f"bad settings (environment SOLODESK_* or {config_file()}): {problems}"
        raise UsageError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{config_file()}: not valid TOML ({exc})") from None

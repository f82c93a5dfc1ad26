"""Settings: environment (``SOLODESK_*``), then ``solodesk.toml``, then defaults.

``SOLODESK_HOME`` (default ``./data``) holds everything a run writes. ``solodesk.toml`` is read
from the working directory, or from the path in ``SOLODESK_CONFIG``.
"""

from __future__ import annotations

import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
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


class RiskSettings(BaseModel):
    """The risk engine's limits for an account (``[risk]`` in ``solodesk.toml``).

    A limit left unset is off. Fractions are positive: ``max_daily_loss = 0.03`` halts at a
    loss of 3% of the broker day's starting equity, ``max_trailing_drawdown = 0.10`` at 10%
    below the equity high-water mark; the account is REDUCING from ``reduce_at`` of either.
    Sizes are lots, exposure is account currency, ``trading_hours`` is ``HH:MM-HH:MM`` UTC
    (wrapping past midnight when the end is earlier). ``day_start`` is when the risk day rolls,
    ``HH:MM`` in ``day_zone`` (the broker day: 17:00 New York).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_daily_loss: float | None = Field(default=None, gt=0, lt=1)
    max_trailing_drawdown: float | None = Field(default=None, gt=0, lt=1)
    reduce_at: float = Field(default=0.8, gt=0, le=1)
    max_position_lots: float | None = Field(default=None, gt=0)
    max_gross_exposure: float | None = Field(default=None, gt=0)
    max_open_orders: int | None = Field(default=None, ge=1)
    max_orders_per_minute: int | None = Field(default=None, ge=1)
    max_leverage: float | None = Field(default=None, gt=0)
    allowed_symbols: tuple[str, ...] | None = None
    trading_hours: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    cooldown_after_losses: int | None = Field(default=None, ge=1)
    cooldown_bars: int = Field(default=10, ge=1)
    flatten_on_halt: bool = False
    flatten_before_weekend: bool = False
    day_start: str = Field(default="17:00", pattern=r"^\d{2}:\d{2}$")
    day_zone: str = "America/New_York"


class NotifySettings(BaseModel):
    """Where notifications go (``[notify]`` in ``solodesk.toml``, env ``SOLODESK_NOTIFY__URLS``).

    ``urls`` are Apprise URLs (``tgram://TOKEN/CHAT_ID`` for Telegram), kept as secrets: they
    never appear in logs, errors or the state database. ``events`` sets a kind of notice
    (:class:`core.ports.NoticeKind`) to ``on``, ``off`` or ``silent`` (sent without sound where
    the service supports it); kinds not named are on. At most ``per_minute`` messages are sent a
    minute; the same notice (kind and key) is sent once per ``dedupe_seconds``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    urls: tuple[SecretStr, ...] = ()
    events: dict[str, str] = {}
    per_minute: int = Field(default=20, ge=1)
    dedupe_seconds: float = Field(default=300.0, ge=0)
    retries: int = Field(default=5, ge=0)
    timeout: float = Field(default=10.0, gt=0)


#: The words that switch off a setting that may be unset (``min_dsr = "off"``).
NONE_WORDS = frozenset({"none", "off", "null"})


class PromotionSettings(BaseModel):
    """The floors a model's out-of-sample scores must clear (``[promotion]`` in ``solodesk.toml``).

    ``models promote`` moves ``champion`` only onto a challenger that clears them, the first
    time as every later one, and ``models gate`` refuses to trade live a version that does not
    (unless overridden with a written reason). ``min_psr`` is the probabilistic Sharpe ratio's
    floor (score ``psr``), ``min_sharpe_ci_low`` the floor of the Sharpe confidence interval's
    lower bound (``sharpe_ci_low``), ``min_dsr`` the deflated Sharpe ratio's (``dsr``). A floor
    set to ``"off"`` or ``"none"`` (env ``SOLODESK_PROMOTION__MIN_PSR=off``) is not checked.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_psr: float | None = Field(default=0.95, allow_inf_nan=False)
    min_sharpe_ci_low: float | None = Field(default=0.0, allow_inf_nan=False)
    min_dsr: float | None = Field(default=None, allow_inf_nan=False)

    @field_validator("min_psr", "min_sharpe_ci_low", "min_dsr", mode="before")
    @classmethod
    def _off_is_none(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in NONE_WORDS:
            return None
        return value


class DriftSettings(BaseModel):
    """When a live model counts as drifting (``[drift]`` in ``solodesk.toml``).

    The population stability index of each live feature against its training deciles warns
    at ``psi_warn`` and acts at ``psi_act`` (roll back to the previous champion, or pause
    trading when there is none); it is measured over the last ``window_bars`` bars once
    ``min_bars`` have been seen. Live P&L is compared with the registered 5-95% bootstrap band
    of the rolling Sharpe ratio and maximum drawdown over ``window_days`` trading days.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    psi_warn: float = Field(default=0.1, gt=0)
    psi_act: float = Field(default=0.25, gt=0)
    window_days: int = Field(default=20, ge=1)
    window_bars: int = Field(default=500, ge=50)
    min_bars: int = Field(default=200, ge=20)
    check_bars: int = Field(default=24, ge=1)
    band_low: float = Field(default=0.05, gt=0, lt=0.5)
    band_high: float = Field(default=0.95, gt=0.5, lt=1)
    n_boot: int = Field(default=1000, ge=100)


class SupervisorSettings(BaseModel):
    """How ``solodesk supervise`` keeps a trading loop alive (``[supervisor]``).

    The loop beats every ``heartbeat_seconds``; a child silent for ``hang_seconds`` is killed
    and restarted (a child just started has ``start_seconds`` for its first beat: loading a
    model takes a while), as is one that exits with an error, after a backoff from
    ``backoff_seconds`` doubling up to ``backoff_max_seconds``; more than ``max_restarts`` in
    ``restart_window_seconds`` halts the account and gives up. Below ``min_free_mb`` of free
    disk under the desk's home, or with a state database failing its integrity check, trading
    halts (checked every ``guard_seconds``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    heartbeat_seconds: float = Field(default=1.0, gt=0)
    hang_seconds: float = Field(default=30.0, gt=0)
    start_seconds: float = Field(default=120.0, gt=0)
    backoff_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=60.0, ge=0)
    max_restarts: int = Field(default=5, ge=0)
    restart_window_seconds: float = Field(default=3600.0, gt=0)
    min_free_mb: float = Field(default=500.0, ge=0)
    guard_seconds: float = Field(default=5.0, gt=0)


class SchedulesSettings(BaseModel):
    """When the scheduled deployments run (``[schedules]``): cron strings in ``timezone``.

    New York time by default, so the daily report runs after the broker day closes at 17:00.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "America/New_York"
    ingest_drop_folder: str = "0 * * * *"
    retrain_weekly: str = "0 18 * * 6"
    report_daily: str = "5 17 * * 1-5"


class DashboardSettings(BaseModel):
    """The dashboard (``[dashboard]``): who may use its controls and how fresh its pages are.

    Without ``password_hash`` the dashboard is read-only. The hash is an Argon2 hash that
    ``solodesk dashboard password`` prints; the password itself is never stored. Reads are cached
    for ``cache_seconds``; a page refreshes itself every ``refresh_seconds`` (0: never).
    ``mlflow_ui_url`` is where the research page links to (``make mlflow`` serves it there).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(default="trader", min_length=1)
    password_hash: SecretStr | None = None
    cache_seconds: float = Field(default=5.0, gt=0)
    refresh_seconds: float = Field(default=30.0, ge=0)
    mlflow_ui_url: str = "http://127.0.0.1:5000"


class MT4Settings(BaseModel):
    """The MetaTrader 4 bridge (``[mt4]``): where the expert advisor listens and how the client
    talks to it.

    ``clock`` is the broker's server clock (anything :func:`core.clocks.parse_clock` reads; MT4
    servers on New York close by default); at connect the client compares the terminal's server
    time with it and refuses to trade when they differ by more than ``clock_tolerance_seconds``.
    Orders carry ``magic`` so the desk's trades are told from a person's. A request unanswered
    for ``timeout_seconds`` is tried again up to ``retries`` times (an order only after looking
    it up first); a bridge that stays down is reconnected with a backoff from
    ``backoff_seconds`` doubling to ``backoff_max_seconds``. A quiet bridge is sent a heartbeat
    every ``heartbeat_seconds``; a tracked symbol whose price has not moved for
    ``stale_seconds`` while its market is open is reported stale. For a terminal on another
    host, ``curve_server_key`` (the EA's public key) with ``curve_public_key`` and
    ``curve_secret_key`` (this desk's pair, the public half on the EA's allow-list) encrypt the
    link with CURVE.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    ports: tuple[int, int, int] = (32768, 32769, 32770)
    clock: str = "broker:ny-close"
    clock_tolerance_seconds: float = Field(default=60.0, gt=0)
    magic: int = Field(default=7_770_001, ge=0, le=2**31 - 1)
    client_id: str = Field(default="solodesk", pattern=r"^[A-Za-z0-9_.\-]{1,24}$")
    # The desk's symbol -> the broker's name for it, where they differ (EURUSD = "EURUSD.ecn").
    symbols: dict[str, str] = {}
    dialect: Literal["auto", "legacy", "extended"] = "auto"
    timeout_seconds: float = Field(default=2.0, gt=0)
    retries: int = Field(default=3, ge=0)
    backoff_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    stale_seconds: float = Field(default=60.0, gt=0)
    curve_server_key: str | None = None
    curve_public_key: str | None = None
    curve_secret_key: SecretStr | None = None

    def broker_symbol(self, symbol: str) -> str:
        """Return a symbol's name at the broker: ``symbols`` maps it, else the same name."""
        return self.symbols.get(symbol, symbol)

    @field_validator("clock")
    @classmethod
    def _clock(cls, value: str) -> str:
        from core.clocks import parse_clock

        try:
            parse_clock(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return value


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
    # postgresql+psycopg2://user@host:5432/db) or a Dask scheduler (tcp://host:8786) between machines.
    mlflow_tracking_uri: str | None = None
    optuna_storage: str | None = None
    dask_scheduler: str | None = None
    # Orchestration. Left unset, `solodesk serve` starts a Prefect server on loopback with its
    # SQLite database under SOLODESK_HOME/prefect; a URL here (or PREFECT_API_URL) uses that
    # server instead, and a database URL (postgresql+asyncpg://...) puts a started server's
    # database in PostgreSQL.
    prefect_api_url: str | None = None
    prefect_database_url: str | None = None
    # The trading runtime: the risk engine's limits and where notifications go.
    risk: RiskSettings = RiskSettings()
    notify: NotifySettings = NotifySettings()
    # The floors out-of-sample scores must clear to be promoted or traded live.
    promotion: PromotionSettings = PromotionSettings()
    drift: DriftSettings = DriftSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    schedules: SchedulesSettings = SchedulesSettings()
    dashboard: DashboardSettings = DashboardSettings()
    mt4: MT4Settings = MT4Settings()

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
    def prefect_dir(self) -> Path:
        """Return ``PREFECT_HOME`` of a server ``solodesk serve`` starts (its SQLite database)."""
        return self.home / "prefect"

    @property
    def inbox_dir(self) -> Path:
        """Return the drop folder the scheduled ingest reads (files done move to ``done/``)."""
        return self.home / "inbox"

    @property
    def mt4_inbox_dir(self) -> Path:
        """Return where bars pulled from MT4 wait for the ingest, ``inbox/mt4``."""
        return self.inbox_dir / "mt4"

    @property
    def mt4_match_reports_dir(self) -> Path:
        """Return where MT4 match reports go, ``reports/mt4-match``."""
        return self.reports_dir / "mt4-match"

    @property
    def live_inbox_dir(self) -> Path:
        """Return where live sessions' kept bars wait for the store, ``inbox/live/<session>``."""
        return self.inbox_dir / "live"

    def trader_log_path(self, session: str) -> Path:
        """Return the log of a session's supervisor started by the trader flow."""
        return self.state_dir / f"trader-{session}.log"

    @property
    def state_dir(self) -> Path:
        """Return the trading runtime's state folder, ``SOLODESK_HOME/state``."""
        return self.home / "state"

    @property
    def state_db_path(self) -> Path:
        """Return the runtime's SQLite state database, ``SOLODESK_HOME/state/runtime.db``."""
        return self.state_dir / "runtime.db"

    @property
    def state_snapshots_dir(self) -> Path:
        """Return the Parquet snapshots of the state tables the catalog reads."""
        return self.state_dir / "snapshots"

    @property
    def notify_spool_path(self) -> Path:
        """Return where notices that could not be delivered wait for the next start."""
        return self.state_dir / "notify-spool.jsonl"

    @property
    def notice_log_path(self) -> Path:
        """Return the alert log: every notice the desk raised, one JSON line each."""
        return self.state_dir / "notices.jsonl"

    def mt4_account_dir(self, name: str) -> Path:
        """Return the folder of a named MT4 simulator account, ``mt4-sim/accounts/<name>``."""
        return self.home / "mt4-sim" / "accounts" / name

    def mt4_sim_dir(self, run: str) -> Path:
        """Return the folder of one MT4 simulator run (its trade history), ``mt4-sim/<run>``."""
        return self.home / "mt4-sim" / run

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

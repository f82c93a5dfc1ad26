"""The model registry's use cases and their commands: list versions, promote the challenger,
gate live trading.

A desk where nothing was ever registered has no tracking store, and asking it about models must
not create one. Promotions and gates run on a desk whose MLflow store holds one challenger per
model name, registered directly (a walk-forward is not the subject here). The default floors
(``[promotion]``: PSR 0.95, Sharpe CI low 0) apply unless a test says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from testkit.cli import invoke, json_lines

from core.errors import UsageError
from core.settings import PromotionSettings, Settings, load_settings
from services.models import (
    MIN_OVERRIDE_CHARS,
    gate_record,
    list_versions,
    live_gate,
    promote,
    promotion_rule,
    resolve_version,
)

FEATURES = ("ret_1", "rsi_14")
# One registered model per test that promotes, so no test depends on another's decision.
HUMAN, MACHINE, FLOOR = "EURUSD-H1-human", "EURUSD-H1-machine", "EURUSD-H1-floor"
ENV, CLEARS = "EURUSD-H1-env", "EURUSD-H1-clears"
# Models the live gate checks (its decisions are tags; promotions leave these alone).
GATE_LOW, GATE_OK = "GBPUSD-H1-gate-low", "GBPUSD-H1-gate-ok"
# PSR below the default floor of 0.95; the Sharpe CI's lower bound above 0.
SCORES = {"dsr": 0.7, "psr": 0.9, "sharpe": 1.2, "sharpe_ci_low": 0.1}
GOOD_SCORES = {"psr": 0.99, "sharpe": 1.5, "sharpe_ci_low": 0.2}
WHY = "minimum size for a week, to watch live fills"


@dataclass(frozen=True)
class ConstantPredictor:
    """P(up) = 0.6 for every row."""

    feature_names: tuple[str, ...] = FEATURES

    def predict_proba(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.full(X.shape[0], 0.6)


def _settings(home: Path) -> Settings:
    return Settings(home=home, mlflow_tracking_uri=None, optuna_storage=None, dask_scheduler=None)


@pytest.fixture
def empty_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A desk holding version 1 of each model name, aliased challenger, with no champion."""
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import MlflowTracker

    home = tmp_path_factory.mktemp("models") / "home"
    settings = _settings(home)
    tracker = MlflowTracker.for_settings(settings, "walkforward")
    registry = ModelRegistry(tracker.uri)
    example = pl.DataFrame({"ret_1": [1e-4, -2e-4, 3e-4], "rsi_14": [40.0, 55.0, 61.0]})
    for name in (HUMAN, MACHINE, FLOOR, ENV, CLEARS, GATE_LOW, GATE_OK):
        run = tracker.start_run(f"{name} walk-forward")
        tracker.end_run(run)
        registry.register_challenger(
            run_id=run, name=name, predictor=ConstantPredictor(), input_example=example,
            scores=GOOD_SCORES if name in (CLEARS, GATE_OK) else SCORES,
        )  # fmt: skip
    yield home


def _tags(home: Path, name: str, version: int = 1) -> dict[str, str]:
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    return ModelRegistry(tracking_uri(_settings(home))).version_info(name, version).tags


def test_promote_nothing_registered_raises_without_creating_the_store(empty_home: Path) -> None:
    # Arrange
    settings = _settings(empty_home)

    # Act
    with pytest.raises(UsageError, match="no registered model 'EURUSD-H1-default'"):
        promote(settings, "EURUSD-H1-default")

    # Assert
    assert not (empty_home / "mlflow" / "mlflow.db").exists()
    assert not (empty_home / "mlflow").exists()


def test_promote_malformed_rule_raises_usage_error(empty_home: Path) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="promotion rule 'most:dsr'"):
        promote(_settings(empty_home), "EURUSD-H1-default", "most:dsr")


def test_list_versions_nothing_registered_is_empty_without_creating_the_store(
    empty_home: Path,
) -> None:
    # Act
    versions = list_versions(_settings(empty_home))

    # Assert
    assert versions == []
    assert not (empty_home / "mlflow").exists()


def test_models_promote_cli_nothing_registered_exits_2_and_creates_nothing(
    empty_home: Path,
) -> None:
    # Act
    done = invoke(["models", "promote", "--name", "GBPUSD-H1-default", "--json"], empty_home)

    # Assert
    assert done.returncode == 2, done.stderr
    assert "no registered model 'GBPUSD-H1-default'" in done.stderr
    assert done.stdout == ""
    assert not (empty_home / "mlflow" / "mlflow.db").exists()


def test_models_list_cli_nothing_registered_says_so_and_creates_nothing(empty_home: Path) -> None:
    # Act
    table = invoke(["models", "list"], empty_home)
    lines = invoke(["models", "list", "--json"], empty_home)

    # Assert
    assert table.returncode == 0, table.stderr
    assert "no registered models yet" in table.stdout
    assert (lines.returncode, lines.stdout) == (0, "")
    assert not (empty_home / "mlflow").exists()


@pytest.mark.slow
def test_models_promote_cli_lower_psr_floor_promotes_and_prints_the_verdict_once(
    registered: Path,
) -> None:
    # Act: PSR 0.9 misses the default floor of 0.95, and clears the 0.8 of the option.
    done = invoke(["models", "promote", "--name", HUMAN, "--min-psr", "0.8"], registered)

    # Assert
    assert done.returncode == 0, done.stderr
    expected = (
        f"{HUMAN}: challenger 1 promoted: psr 0.9 >= minimum 0.8; "
        "sharpe_ci_low 0.1 >= minimum 0; no champion yet"
    )
    assert expected in done.stdout
    assert done.stdout.count("promoted") == 1


@pytest.mark.slow
def test_models_promote_cli_first_challenger_below_floor_exits_0_with_json_refusal(
    registered: Path,
) -> None:
    # Arrange
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    # Act
    done = invoke(["models", "promote", "--name", MACHINE, "--json"], registered)

    # Assert
    assert done.returncode == 0, done.stderr
    (decision,) = json_lines(done.stdout)
    assert decision == {
        "name": MACHINE,
        "promoted": False,
        "reason": "rejected: psr 0.9 below minimum 0.95; sharpe_ci_low 0.1 >= minimum 0; "
        "no champion yet",
        "challenger": 1,
        "champion_before": None,
    }
    (version,) = ModelRegistry(tracking_uri(_settings(registered))).list_versions(MACHINE)
    assert version.tags["promotion.reason"] == decision["reason"]
    assert version.aliases == ("challenger",)


@pytest.mark.slow
def test_promote_below_floors_rejects_naming_each_floor_missed(registered: Path) -> None:
    # Act
    decision = promote(_settings(registered), FLOOR, min_dsr=0.95)

    # Assert
    assert (decision.promoted, decision.challenger, decision.champion_before) == (False, 1, None)
    assert decision.reason == (
        "rejected: psr 0.9 below minimum 0.95; sharpe_ci_low 0.1 >= minimum 0; "
        "dsr 0.7 below minimum 0.95; no champion yet"
    )
    assert decision.why == decision.reason.removeprefix("rejected: ")
    assert "why" not in decision.model_dump()


@pytest.mark.slow
def test_promote_floors_from_the_environment_decide_the_first_promotion(
    registered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    monkeypatch.setenv("SOLODESK_HOME", str(registered))
    monkeypatch.setenv("SOLODESK_PROMOTION__MIN_PSR", "0.85")
    monkeypatch.setenv("SOLODESK_PROMOTION__MIN_SHARPE_CI_LOW", "off")

    # Act
    decision = promote(load_settings(), ENV)

    # Assert
    assert decision.promoted
    assert decision.reason == "promoted: psr 0.9 >= minimum 0.85; no champion yet"


@pytest.mark.slow
def test_promote_clearing_the_default_floors_promotes(registered: Path) -> None:
    # Act
    decision = promote(_settings(registered), CLEARS)

    # Assert
    assert decision.promoted
    assert decision.reason == (
        "promoted: psr 0.99 >= minimum 0.95; sharpe_ci_low 0.2 >= minimum 0; no champion yet"
    )


def test_promotion_rule_options_replace_settings_higher_or_lower(empty_home: Path) -> None:
    # Arrange
    settings = _settings(empty_home).model_copy(
        update={"promotion": PromotionSettings(min_psr=0.95, min_sharpe_ci_low=0.0, min_dsr=0.5)}
    )

    # Act
    defaults = promotion_rule(settings)
    replaced = promotion_rule(settings, "any:dsr", min_psr=0.5, min_ci_low=-1.0, min_dsr=0.9)

    # Assert
    assert defaults.minimums() == {"psr": 0.95, "sharpe_ci_low": 0.0, "dsr": 0.5}
    assert replaced.minimums() == {"psr": 0.5, "sharpe_ci_low": -1.0, "dsr": 0.9}
    assert (replaced.criteria, replaced.require) == (("dsr",), "any")


def test_promotion_settings_defaults_env_and_toml(
    empty_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    toml = empty_home / "solodesk.toml"
    toml.write_text('[promotion]\nmin_psr = 0.9\nmin_dsr = 0.2\nmin_sharpe_ci_low = "off"\n')
    for key in ("SOLODESK_CONFIG", "SOLODESK_PROMOTION__MIN_PSR", "SOLODESK_PROMOTION__MIN_DSR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(empty_home)

    # Act
    defaults = PromotionSettings()
    from_toml = load_settings().promotion
    monkeypatch.setenv("SOLODESK_PROMOTION__MIN_PSR", "0.99")
    from_env = load_settings().promotion

    # Assert
    assert (defaults.min_psr, defaults.min_sharpe_ci_low, defaults.min_dsr) == (0.95, 0.0, None)
    assert (from_toml.min_psr, from_toml.min_sharpe_ci_low, from_toml.min_dsr) == (0.9, None, 0.2)
    assert (from_env.min_psr, from_env.min_dsr) == (0.99, 0.2)


def test_promotion_settings_bad_floor_raises_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange
    monkeypatch.setenv("SOLODESK_PROMOTION__MIN_PSR", "nan")

    # Act / Assert
    with pytest.raises(UsageError, match=r"promotion\.min_psr"):
        load_settings()


def test_models_promote_cli_help_names_the_settings_and_their_defaults(empty_home: Path) -> None:
    # Act
    done = invoke(["models", "promote", "--help"], empty_home)
    text = " ".join(done.stdout.split())

    # Assert
    floors = PromotionSettings()
    assert done.returncode == 0, done.stderr
    assert f"promotion.min_psr ({floors.min_psr:g})" in text
    assert f"promotion.min_sharpe_ci_low ({floors.min_sharpe_ci_low:g})" in text
    assert floors.min_dsr is None
    assert "promotion.min_dsr (none)" in text


@pytest.mark.slow
def test_list_versions_registered_models_show_scores_and_utc_times(registered: Path) -> None:
    # Act
    versions = list_versions(_settings(registered), HUMAN)

    # Assert
    (row,) = versions
    assert (row.name, row.version) == (HUMAN, 1)
    assert row.scores == SCORES
    assert row.created.endswith("Z")
    assert "challenger" in row.aliases


def test_live_gate_nothing_registered_raises_without_creating_the_store(empty_home: Path) -> None:
    # Act
    with pytest.raises(UsageError, match="no registered model 'EURUSD-H1-default'"):
        live_gate(_settings(empty_home), "EURUSD-H1-default")
    with pytest.raises(UsageError, match="no registered model 'EURUSD-H1-default'"):
        resolve_version(_settings(empty_home), "EURUSD-H1-default", version=1)

    # Assert
    assert not (empty_home / "mlflow").exists()


@pytest.mark.parametrize("override", ["", "   ", "because", " x" * 4])
def test_live_gate_override_without_written_reason_raises_before_reading(
    empty_home: Path, override: str
) -> None:
    # Act / Assert: no store here, so only the override can be what is refused.
    with pytest.raises(UsageError, match=f"write why .* at least {MIN_OVERRIDE_CHARS} characters"):
        live_gate(_settings(empty_home), GATE_LOW, version=1, override=override)


@pytest.mark.slow
def test_live_gate_below_floor_refused_and_recorded(registered: Path) -> None:
    # Arrange
    records: list[dict[str, Any]] = []

    # Act
    decision = live_gate(_settings(registered), GATE_LOW, version=1, record=records.append)

    # Assert
    assert (decision.allowed, decision.overridden, decision.override_reason) == (False, False, None)
    assert decision.missed == ("psr 0.9 below minimum 0.95",)
    assert decision.reason == "refused: psr 0.9 below minimum 0.95; sharpe_ci_low 0.1 >= minimum 0"
    assert decision.at.endswith("Z")
    tags = _tags(registered, GATE_LOW)
    assert tags["live_gate.decision"] == "refused"
    assert tags["live_gate.reason"] == decision.reason
    assert tags["live_gate.at"] == decision.at
    assert tags["live_gate.override"] == ""
    assert records == [gate_record(decision)]
    assert records[0]["decision"] == "refused"
    assert records[0]["missed"] == "psr 0.9 below minimum 0.95"


def test_live_gate_records_every_decision_in_the_state_database_by_default(
    registered: Path, tmp_path: Path
) -> None:
    # Arrange: the registry of the shared desk, the state database of a desk of this test's own
    import shutil

    from feature_store.state import StateDB

    home = tmp_path / "home"
    shutil.copytree(registered, home)
    settings = _settings(home)

    # Act
    refused = live_gate(settings, GATE_LOW, version=1, who="ops")
    overridden = live_gate(
        settings, GATE_LOW, version=1, override="reviewed the paper shortfall by hand"
    )

    # Assert
    with StateDB.open(settings) as db:
        rows = db.live_gates(GATE_LOW)
    assert [r["decision"] for r in rows] == ["refused", "overridden"]
    assert rows[0] == {**gate_record(refused), "override_reason": None}
    assert rows[0]["who"] == "ops" and rows[1]["who"]  # the login name when none is given
    assert rows[1]["override_reason"] == "reviewed the paper shortfall by hand"
    assert rows[1]["allowed"] is True and rows[1]["at"] == overridden.at


@pytest.mark.slow
def test_live_gate_override_with_reason_allowed_overridden_and_recorded(registered: Path) -> None:
    # Arrange
    records: list[dict[str, Any]] = []

    # Act
    decision = live_gate(
        _settings(registered), GATE_LOW, alias="challenger", override=f"  {WHY} ", who="ana",
        record=records.append,
    )  # fmt: skip

    # Assert
    assert (decision.allowed, decision.overridden) == (True, True)
    assert decision.override_reason == WHY
    assert decision.missed == ("psr 0.9 below minimum 0.95",)
    assert decision.reason.startswith("overridden: psr 0.9 below minimum 0.95; ")
    assert decision.reason.endswith(f"; override: {WHY}")
    tags = _tags(registered, GATE_LOW)
    assert (tags["live_gate.decision"], tags["live_gate.override"]) == ("overridden", WHY)
    assert tags["live_gate.reason"] == decision.reason
    (row,) = records
    assert (row["decision"], row["allowed"], row["who"]) == ("overridden", True, "ana")
    assert row["override_reason"] == WHY


@pytest.mark.slow
def test_live_gate_floors_met_allowed_and_missing_score_refused(registered: Path) -> None:
    # Arrange
    settings = _settings(registered)
    with_dsr = settings.model_copy(update={"promotion": PromotionSettings(min_dsr=0.5)})

    # Act
    met = live_gate(settings, GATE_OK, version=1, override=WHY)
    missing = live_gate(with_dsr, GATE_OK, version=1)

    # Assert
    assert (met.allowed, met.overridden, met.missed, met.override_reason) == (
        True, False, (), None,
    )  # fmt: skip
    assert met.reason == "allowed: psr 0.99 >= minimum 0.95; sharpe_ci_low 0.2 >= minimum 0"
    assert (missing.allowed, missing.missed) == (False, ("dsr missing (minimum 0.5)",))
    assert _tags(registered, GATE_OK)["live_gate.decision"] == "refused"


@pytest.mark.slow
def test_live_gate_unset_alias_or_absent_version_raises_usage_error(registered: Path) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=f"{GATE_OK}' has no alias 'champion': promote"):
        live_gate(_settings(registered), GATE_OK)
    with pytest.raises(UsageError, match=r"has no version 9 \(has: 1\)"):
        live_gate(_settings(registered), GATE_OK, version=9)


@pytest.mark.slow
def test_models_gate_cli_refused_exits_1_allowed_exits_0(registered: Path) -> None:
    # Act
    refused = invoke(["models", "gate", "--name", GATE_LOW, "--alias", "challenger"], registered)
    as_json = invoke(["models", "gate", "--name", GATE_LOW, "--version", "1", "--json"], registered)
    allowed = invoke(["models", "gate", "--name", GATE_OK, "--version", "1", "--json"], registered)
    overridden = invoke(
        ["models", "gate", "--name", GATE_LOW, "--version", "1", "--override", WHY], registered
    )

    # Assert
    assert refused.returncode == 1, refused.stderr
    assert f"{GATE_LOW}: version 1 refused live: psr 0.9 below minimum 0.95" in refused.stdout
    assert "--override" in refused.stdout
    assert as_json.returncode == 1
    (line,) = json_lines(as_json.stdout)
    assert set(line) == {
        "name", "version", "allowed", "reason", "missed", "overridden", "override_reason", "who",
        "at",
    }  # fmt: skip
    assert (line["allowed"], line["missed"]) == (False, ["psr 0.9 below minimum 0.95"])
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["allowed"] is True
    assert overridden.returncode == 0, overridden.stderr
    assert "version 1 overridden live: psr 0.9 below minimum 0.95" in overridden.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--version", "1", "--alias", "challenger"], "give --version or --alias, not both"),
        (["--version", "1", "--override", "why not"], "write why"),
    ],
)
def test_models_gate_cli_bad_usage_exits_2(
    empty_home: Path, extra: list[str], message: str
) -> None:
    # Act
    done = invoke(["models", "gate", "--name", GATE_LOW, *extra], empty_home)

    # Assert
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


@pytest.mark.slow
def test_resolve_version_by_alias_or_number_is_the_same_version(registered: Path) -> None:
    # Arrange
    settings = _settings(registered)

    # Act
    by_alias = resolve_version(settings, GATE_OK, alias="challenger")
    by_number = resolve_version(settings, GATE_OK, version=1)

    # Assert
    assert (by_alias.name, by_alias.version, by_alias.scores) == (GATE_OK, 1, GOOD_SCORES)
    assert by_number == by_alias

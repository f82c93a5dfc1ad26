"""The model registry's use cases and their commands: list versions, promote the challenger.

A desk where nothing was ever registered has no tracking store, and asking it about models must
not create one. Promotions run on a desk whose MLflow store holds one challenger per model name,
registered directly (a walk-forward is not the subject here).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from testkit.cli import invoke, json_lines

from core.errors import UsageError
from core.settings import Settings
from services.models import list_versions, promote

FEATURES = ("ret_1", "rsi_14")
# One registered model per test that promotes, so no test depends on another's decision.
HUMAN, MACHINE, FLOOR = "EURUSD-H1-human", "EURUSD-H1-machine", "EURUSD-H1-floor"
SCORES = {"dsr": 0.7, "psr": 0.9, "sharpe": 1.2, "sharpe_ci_low": 0.1}


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
    for name in (HUMAN, MACHINE, FLOOR):
        run = tracker.start_run(f"{name} walk-forward")
        tracker.end_run(run)
        registry.register_challenger(
            run_id=run, name=name, predictor=ConstantPredictor(), input_example=example,
            scores=SCORES,
        )  # fmt: skip
    yield home


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
def test_models_promote_cli_first_challenger_prints_the_verdict_once(registered: Path) -> None:
    # Act
    done = invoke(["models", "promote", "--name", HUMAN], registered)

    # Assert
    assert done.returncode == 0, done.stderr
    assert f"{HUMAN}: challenger 1 promoted: no champion yet" in done.stdout
    assert done.stdout.count("promoted") == 1


@pytest.mark.slow
def test_models_promote_cli_json_keeps_the_decision_keys(registered: Path) -> None:
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
        "promoted": True,
        "reason": "promoted: no champion yet",
        "challenger": 1,
        "champion_before": None,
    }
    (version,) = ModelRegistry(tracking_uri(_settings(registered))).list_versions(MACHINE)
    assert version.tags["promotion.reason"] == decision["reason"]
    assert version.aliases == ("challenger", "champion")


@pytest.mark.slow
def test_promote_below_the_dsr_floor_rejects_and_says_why(registered: Path) -> None:
    # Act
    decision = promote(_settings(registered), FLOOR, min_dsr=0.95)

    # Assert
    assert (decision.promoted, decision.challenger, decision.champion_before) == (False, 1, None)
    assert decision.reason.startswith("rejected: dsr 0.7 below minimum 0.95")
    assert decision.why == decision.reason.removeprefix("rejected: ")
    assert "why" not in decision.model_dump()


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

"""The Research page's views: walk-forward runs and their figures, the registered versions side
by side with their decisions, the live-gate history, feature importance and the MLflow link.

Walk-forward runs are written straight into a temporary desk's research store with a summary of
the job's shape. The registry is a stand-in with the methods the views call (the real MLflow
store is read by the page's test on the fixture desk); a desk without a tracking store must not
get one by being looked at.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from core.settings import Settings
from feature_store.backtests import BacktestStore
from feature_store.model_registry import ModelVersionInfo
from feature_store.state import StateDB
from services.models import LiveGateDecision, gate_record
from services.views import research as views

MODEL = "EURUSD-H1-default"
MLFLOW_RUN = "0123abcd"
BARS = 40


def _settings(home: Path, **options: Any) -> Settings:
    defaults: dict[str, Any] = {
        "mlflow_tracking_uri": None, "optuna_storage": None, "dask_scheduler": None
    }  # fmt: skip
    return Settings(home=home, **{**defaults, **options})


def _summary(run_id: str, sharpe: float) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "symbol": "EURUSD",
        "timeframe": "H1",
        "side": "ask",
        "feature_set": "default",
        "scheme": "rolling",
        "model": "lightgbm",
        "oos": {
            "sharpe": sharpe,
            "sharpe_ci": [sharpe - 1.0, sharpe + 1.0],
            "ci_level": 0.95,
            "mean_return_ci": [-1e-5, 2e-5],
            "max_drawdown": -0.02,
            "max_drawdown_ci": [-0.05, -0.01],
            "psr": 0.7,
            "dsr": 0.6,
            "total_return": 0.012,
            "n_trades": 31,
            "spa": {"vs_flat_p": 0.2, "vs_buy_and_hold_p": 0.3, "models_vs_flat_p": 0.4},
            "gross": {"sharpe": sharpe + 0.5, "sharpe_ci": [sharpe - 0.5, sharpe + 1.5]},
        },
        "folds": [
            {
                "fold": 0,
                "test_start": "2017-03-06T00:00:00Z",
                "test_end": "2017-03-07T15:00:00Z",
                "test_rows": BARS,
                "sharpe": sharpe,
                "auc": 0.55,
            }
        ],
        "trials": {"total": 12},
        "pbo": 0.25,
        "mlflow_run_id": MLFLOW_RUN,
        "model_version": 3,
    }


def _oos() -> pl.DataFrame:
    start = datetime(2017, 3, 6, tzinfo=UTC)
    returns = np.full(BARS, 0.0005)
    return pl.DataFrame(
        {
            "ts": pl.Series([start + timedelta(hours=k) for k in range(BARS)]).dt.cast_time_unit(
                "ns"
            ),
            "equity": 100_000.0 * np.cumprod(1.0 + returns),
            "return": returns,
            "gross_return": returns,
            "position": np.ones(BARS),
        }
    )


def _walkforward(settings: Settings, run_id: str, created: str, sharpe: float = 1.2) -> None:
    record = {
        "kind": "walkforward",
        "created": created,
        "config": {"backtest": {"cash": 100_000.0}},
        "summary": _summary(run_id, sharpe),
    }
    BacktestStore.research(settings).write(run_id, record, {"oos": _oos()}, "<html></html>")


def _version(version: int, aliases: tuple[str, ...], **tags: str) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=MODEL,
        version=version,
        run_id=f"run-{version}",
        aliases=aliases,
        scores={"sharpe": 0.1 * version, "psr": 0.9, "sharpe_ci_low": -0.1},
        tags={"solodesk.run": f"wf-{version}", **tags},
        created=datetime(2026, 1, version, tzinfo=UTC),
    )


@dataclass
class FakeRegistry:
    """The registry calls the views make, answered from memory (or failing as a server would)."""

    versions: list[ModelVersionInfo] = field(default_factory=list)
    texts: dict[tuple[str, str], str] = field(default_factory=dict)
    failure: Exception | None = None

    def list_versions(self, name: str | None = None) -> list[ModelVersionInfo]:
        if self.failure is not None:
            raise self.failure
        return self.versions

    def run_text(self, run_id: str, path: str) -> str | None:
        if self.failure is not None:
            raise self.failure
        return self.texts.get((run_id, path))

    def run_experiment(self, run_id: str) -> str:
        if self.failure is not None:
            raise self.failure
        return "7"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(views, "_registry", lambda settings: fake)
    return fake


def test_walkforward_runs_empty_desk_returns_nothing_and_creates_nothing(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    settings = _settings(home)

    # Act
    runs = views.walkforward_runs(settings)
    models = views.registered_models(settings)
    link = views.mlflow_link(settings)

    # Assert
    assert runs == []
    assert (models.store, models.versions, models.gates, models.problem) == (False, (), (), None)
    assert (link.store, link.url) == (False, "http://127.0.0.1:5000/")
    assert not home.exists()


def test_walkforward_runs_two_runs_newest_first_with_key_figures(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _walkforward(settings, "wf-old", "2026-01-01T00:00:00Z", sharpe=0.4)
    _walkforward(settings, "wf-new", "2026-01-02T00:00:00Z", sharpe=1.2)

    # Act
    runs = views.walkforward_runs(settings)

    # Assert
    assert [run.run_id for run in runs] == ["wf-new", "wf-old"]
    newest = runs[0]
    assert (newest.sharpe, newest.sharpe_ci_low, newest.sharpe_ci_high) == pytest.approx(
        (1.2, 0.2, 2.2)
    )
    assert (newest.psr, newest.dsr, newest.pbo) == (0.7, 0.6, 0.25)
    assert (newest.spa_vs_flat_p, newest.spa_models_vs_flat_p) == (0.2, 0.4)
    assert (newest.n_trades, newest.total_return, newest.model_version) == (31, 0.012, 3)


def test_walkforward_detail_stored_run_gives_intervals_charts_and_report(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _walkforward(settings, "wf-1", "2026-01-01T00:00:00Z")

    # Act
    detail = views.walkforward_detail(settings, "wf-1")

    # Assert
    figures = {row.figure: row for row in detail.figures}
    sharpe = figures["Sharpe (annualized, after costs)"]
    assert (sharpe.value, sharpe.low, sharpe.high) == pytest.approx((1.2, 0.2, 2.2))
    assert figures["Mean return per bar"].value == pytest.approx(0.0005)
    assert figures["PBO"].value == 0.25
    assert figures["Trials (total)"].value == 12
    assert tuple(detail.charts) == ("equity", "sharpe_interval", "drawdown", "fold_sharpe")
    assert detail.title == "lightgbm on EURUSD H1 ask · feature set default · rolling"
    assert detail.report == str(BacktestStore.research(settings).report_path("wf-1"))
    assert (detail.mlflow_run_id, detail.model_version, detail.ci_level) == (MLFLOW_RUN, 3, 0.95)
    assert detail.folds[0].test_rows == BARS


def test_walkforward_detail_partial_record_shows_na_without_raising(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    record = {"kind": "walkforward", "created": "2026-01-01T00:00:00Z", "summary": {"oos": None}}
    BacktestStore.research(settings).write("wf-1", record, {})

    # Act
    detail = views.walkforward_detail(settings, "wf-1")

    # Assert
    assert all(row.value is None for row in detail.figures)
    assert (detail.charts, detail.folds, detail.report) == ({}, (), None)


def test_registered_models_champion_first_with_promotion_and_rollback(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    # Arrange
    rollback = {
        "rollback.at": "2026-01-05T00:00:00Z",
        "rollback.who": "drift",
        "rollback.why": "psi on atr_rel_50",
        "rollback.from": "2",
        "rollback.to": "1",
    }
    registry.versions = [
        _version(3, ("challenger",), **{"promotion.decision": "rejected",
                                        "promotion.reason": "rejected: psr 0.9 below minimum 0.95",
                                        "promotion.at": "2026-01-04T00:00:00Z"}),
        _version(2, (), **{"promotion.decision": "promoted", "promotion.at": "2026-01-03T00:00:00Z"},
                 **rollback),
        _version(1, ("champion",), **{"promotion.decision": "promoted",
                                      "promotion.at": "2026-01-02T00:00:00Z",
                                      "promotion.previous_champion": "none"}, **rollback),
    ]  # fmt: skip

    # Act
    models = views.registered_models(_settings(tmp_path / "home"))

    # Assert
    assert [(row.version, row.role) for row in models.versions] == [
        (1, "champion"),
        (3, "challenger"),
        (2, ""),
    ]
    champion, challenger, rolled_back = models.versions
    assert (
        champion.rollback == "restored from v2 by drift at 2026-01-05T00:00:00Z: psi on atr_rel_50"
    )
    assert rolled_back.rollback is not None and rolled_back.rollback.startswith("rolled back to v1")
    assert challenger.promotion == "rejected"
    assert challenger.promotion_reason == "rejected: psr 0.9 below minimum 0.95"
    assert challenger.sharpe == pytest.approx(0.3)
    assert challenger.walkforward_run == "wf-3"
    assert champion.previous_champion == "none"
    assert models.problem is None


def test_registered_models_unreadable_store_is_a_problem_not_an_error(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    # Arrange
    registry.failure = OSError("database is locked\nretries exhausted")
    settings = _settings(tmp_path / "home")

    # Act
    models = views.registered_models(settings)

    # Assert
    assert models.versions == ()
    assert (
        models.problem == f"cannot read the MLflow store {settings.mlflow_dir}: database is locked"
    )


def test_registered_models_tracking_server_down_is_a_problem_at_once(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    # Arrange: nothing listens on port 9 (discard), so the health check is refused at once
    registry.versions = [_version(1, ("champion",))]
    settings = _settings(tmp_path / "home", mlflow_tracking_uri="http://127.0.0.1:9")
    _walkforward(settings, "wf-1", "2026-01-01T00:00:00Z")
    down = (
        "the MLflow tracking server http://127.0.0.1:9 does not answer its health check: "
        "is it running?"
    )

    # Act
    started = time.perf_counter()
    models = views.registered_models(settings)
    importance = views.feature_importance(settings, "wf-1")
    link = views.mlflow_link(settings, "wf-1")
    seconds = time.perf_counter() - started

    # Assert
    assert (models.versions, models.problem) == ((), down)
    assert (importance.values, importance.problem) == ((), down)
    assert (link.url, link.problem) == ("http://127.0.0.1:5000/", down)
    assert seconds < 3 * views.CHECK_SECONDS


def test_registered_models_live_gates_newest_first(tmp_path: Path, registry: FakeRegistry) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    decisions = [
        LiveGateDecision(
            name=MODEL, version=1, allowed=False, reason="refused: psr 0.9 below minimum 0.95",
            missed=("psr 0.9 below minimum 0.95",), overridden=False, override_reason=None,
            who="ann", at="2026-01-03T00:00:00Z",
        ),
        LiveGateDecision(
            name=MODEL, version=1, allowed=True, reason="overridden: ...; override: small size",
            missed=("psr 0.9 below minimum 0.95",), overridden=True,
            override_reason="small size for a week", who="ann", at="2026-01-04T00:00:00Z",
        ),
    ]  # fmt: skip
    with StateDB.open(settings) as db:
        for decision in decisions:
            db.record_live_gate(gate_record(decision))
        db.commit()

    # Act
    models = views.registered_models(settings)

    # Assert
    assert [(gate.decision, gate.at) for gate in models.gates] == [
        ("overridden", "2026-01-04T00:00:00Z"),
        ("refused", "2026-01-03T00:00:00Z"),
    ]
    assert models.gates[0].override_reason == "small size for a week"


def test_feature_importance_recorded_artifact_sorted_with_chart(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _walkforward(settings, "wf-1", "2026-01-01T00:00:00Z")
    registry.texts[(MLFLOW_RUN, views.IMPORTANCE_ARTIFACT)] = json.dumps(
        {"rsi_14": 0.2, "adx_14": 0.5, "broken": None, "ret_1": 0.3}
    )

    # Act
    found = views.feature_importance(settings, "wf-1")

    # Assert
    assert found.values == (("adx_14", 0.5), ("ret_1", 0.3), ("rsi_14", 0.2))
    assert found.problem is None
    assert list(found.chart.data[0].y) == ["adx_14", "ret_1", "rsi_14"]


def test_feature_importance_no_tracking_store_says_why_and_creates_none(tmp_path: Path) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _walkforward(settings, "wf-1", "2026-01-01T00:00:00Z")

    # Act
    found = views.feature_importance(settings, "wf-1")

    # Assert
    assert (found.values, found.chart) == ((), None)
    assert found.problem == f"no MLflow store in {settings.mlflow_dir}"
    assert not settings.mlflow_dir.exists()


def test_mlflow_link_known_run_links_its_page_in_the_ui(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    # Arrange
    settings = _settings(tmp_path / "home", dashboard={"mlflow_ui_url": "http://desk.local:5001/"})
    _walkforward(settings, "wf-1", "2026-01-01T00:00:00Z")

    # Act
    link = views.mlflow_link(settings, "wf-1")

    # Assert
    assert link.url == f"http://desk.local:5001/#/experiments/7/runs/{MLFLOW_RUN}"
    assert (link.experiment_id, link.command, link.problem) == ("7", "make mlflow", None)


def test_mlflow_link_unreadable_store_links_the_ui_root_and_says_why(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    # Arrange
    settings = _settings(tmp_path / "home")
    _walkforward(settings, "wf-1", "2026-01-01T00:00:00Z")
    registry.failure = OSError("database is locked")

    # Act
    link = views.mlflow_link(settings, "wf-1")

    # Assert
    assert link.url == "http://127.0.0.1:5000/"
    assert link.problem is not None and link.problem.endswith("database is locked")

"""The model registry: challengers from runs, promotion by rule and floors, decisions kept as
tags, the versions the live loop reads, and the process-wide lock its calls hold."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from core.errors import UsageError
from core.settings import Settings
from feature_store.model_registry import (
    REGISTRY_LOCK,
    ModelRegistry,
    ModelVersionInfo,
    ProbaModel,
    PromotionRule,
    check_floors,
)
from feature_store.tracking import MlflowTracker

FEATURES = ("ret_1", "rsi_14")


@dataclass(frozen=True)
class LogisticPredictor:
    """P(up) = 1 / (1 + exp(-(X · weights)))."""

    feature_names: tuple[str, ...]
    weights: tuple[float, ...]

    def predict_proba(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-(X @ np.asarray(self.weights))))
        return result


@dataclass(frozen=True)
class Desk:
    tracker: MlflowTracker
    registry: ModelRegistry
    home: Path


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    # Creating the SQLite store runs MLflow's migrations (seconds): once per module. The
    # working directory is a scratch folder, so a stray ./mlflow.db or ./mlruns shows there.
    home = tmp_path_factory.mktemp("desk")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        tracker = MlflowTracker.for_settings(Settings(home=home, mlflow_tracking_uri=None), "wf")
        yield Desk(tracker, ModelRegistry(tracker.uri), home)


def _client(desk: Desk) -> MlflowClient:
    return MlflowClient(tracking_uri=desk.registry.uri, registry_uri=desk.registry.uri)


def _features(rows: int = 8) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    return pl.DataFrame(
        {
            "ts": [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(rows)],
            "rsi_14": rng.uniform(20, 80, rows),
            "ret_1": rng.normal(0, 1e-3, rows),
        }
    )


def _register(
    desk: Desk,
    name: str,
    scores: Mapping[str, float],
    *,
    weights: tuple[float, float] = (50.0, 0.01),
    finish: bool = True,
) -> ModelVersionInfo:
    run_id = desk.tracker.start_run(f"{name}-wf")
    if finish:
        desk.tracker.end_run(run_id)
    return desk.registry.register_challenger(
        run_id=run_id,
        name=name,
        predictor=LogisticPredictor(FEATURES, weights),
        input_example=_features(),
        scores=scores,
        tags={"symbol": "EURUSD"},
    )


def _version_tags(desk: Desk, name: str, version: int) -> dict[str, str]:
    return dict(_client(desk).get_model_version(name, str(version)).tags)


def test_register_twice_versions_one_and_two_alias_moves(desk: Desk) -> None:
    first = _register(desk, "twice", {"dsr": 0.5})

    second = _register(desk, "twice", {"dsr": 0.6, "sharpe_ci_low": 0.1})

    assert (first.version, second.version) == (1, 2)
    assert second.aliases == ("challenger",)
    assert second.scores == {"dsr": 0.6, "sharpe_ci_low": 0.1}
    assert second.tags == {"symbol": "EURUSD"}
    assert second.created.tzinfo == UTC
    assert [v.aliases for v in desk.registry.list_versions("twice")] == [("challenger",), ()]


def test_register_finished_run_keeps_status_and_end_time(desk: Desk) -> None:
    run_id = desk.tracker.start_run("finished")
    desk.tracker.end_run(run_id, "FAILED")
    before = desk.tracker.client.get_run(run_id).info

    desk.registry.register_challenger(
        run_id=run_id,
        name="status-kept",
        predictor=LogisticPredictor(FEATURES, (1.0, 0.0)),
        input_example=_features(),
        scores={"dsr": 0.1},
    )

    after = desk.tracker.client.get_run(run_id).info
    assert (after.status, after.end_time) == ("FAILED", before.end_time)


def test_register_running_run_stays_running_and_model_is_in_run(desk: Desk) -> None:
    info = _register(desk, "still-running", {"dsr": 0.1}, finish=False)

    run = desk.tracker.client.get_run(info.run_id)

    assert run.info.status == "RUNNING"
    logged = desk.tracker.client.search_logged_models(
        experiment_ids=[desk.tracker.experiment_id],
        filter_string=f"source_run_id = '{info.run_id}'",
    )
    assert [m.name for m in logged] == ["model"]


def test_register_in_other_cwd_stores_model_under_home_and_nothing_in_cwd(
    desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    info = _register(desk, "where-stored", {"dsr": 0.1})
    desk.registry.promote("where-stored", PromotionRule())
    desk.registry.list_versions()
    desk.registry.load_alias("where-stored", "champion")

    (logged,) = _client(desk).search_logged_models(
        experiment_ids=[desk.tracker.experiment_id],
        filter_string=f"source_run_id = '{info.run_id}'",
    )
    folder = Path(logged.artifact_location.removeprefix("file://"))
    assert folder.is_relative_to(desk.home.resolve() / "mlflow" / "artifacts")
    assert (folder / "MLmodel").is_file()
    assert "uv.lock" not in {p.name for p in folder.iterdir()}
    assert list(tmp_path.iterdir()) == []


@dataclass(frozen=True)
class SklearnPredictor:
    feature_names: tuple[str, ...]
    model: LogisticRegression

    def predict_proba(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        result: npt.NDArray[np.float64] = self.model.predict_proba(X)[:, 1]
        return result


def test_register_pins_requirements_of_what_predictor_holds(desk: Desk) -> None:
    frame = _features(20)
    X = frame.select(FEATURES).to_numpy()
    fitted = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    run_id = desk.tracker.start_run("sklearn")

    info = desk.registry.register_challenger(
        run_id=run_id,
        name="sklearn",
        predictor=SklearnPredictor(FEATURES, fitted),
        input_example=frame,
        scores={"dsr": 0.3},
    )

    (logged,) = _client(desk).search_logged_models(
        experiment_ids=[desk.tracker.experiment_id],
        filter_string=f"source_run_id = '{info.run_id}'",
    )
    folder = Path(logged.artifact_location.removeprefix("file://"))
    requirements = (folder / "requirements.txt").read_text().split()
    pinned = {line.partition("==")[0] for line in requirements}
    assert {"mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn"} <= pinned
    model = desk.registry.load_alias("sklearn", "challenger")
    got = model.predict(frame.to_pandas())["proba"].to_numpy()  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, fitted.predict_proba(X)[:, 1])


def test_log_model_logs_into_run_without_registering(desk: Desk) -> None:
    run_id = desk.tracker.start_run("train-only")

    uri = desk.registry.log_model(
        run_id=run_id,
        predictor=LogisticPredictor(FEATURES, (1.0, 0.0)),
        input_example=_features(),
    )

    (logged,) = _client(desk).search_logged_models(
        experiment_ids=[desk.tracker.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
    )
    assert uri == f"models:/{logged.model_id}"
    assert desk.tracker.client.get_run(run_id).info.status == "RUNNING"
    assert _client(desk).search_model_versions(f"run_id = '{run_id}'") == []


def test_promote_no_champion_makes_challenger_champion(desk: Desk) -> None:
    _register(desk, "first-champ", {"dsr": 0.2, "sharpe_ci_low": -0.1})

    decision = desk.registry.promote("first-champ", PromotionRule())

    assert decision.promoted
    assert decision.champion_before is None
    assert decision.challenger is not None
    assert decision.challenger.aliases == ("challenger", "champion")
    assert "no champion yet" in decision.reason
    tags = _version_tags(desk, "first-champ", 1)
    assert tags["promotion.decision"] == "promoted"
    assert tags["promotion.reason"] == decision.reason
    assert datetime.fromisoformat(tags["promotion.at"]).tzinfo is not None


def test_promote_worse_challenger_rejected_with_reason_tag(desk: Desk) -> None:
    _register(desk, "worse", {"dsr": 0.8, "sharpe_ci_low": 0.3})
    desk.registry.promote("worse", PromotionRule())
    _register(desk, "worse", {"dsr": 0.7, "sharpe_ci_low": 0.4})

    decision = desk.registry.promote("worse", PromotionRule())

    assert not decision.promoted
    assert decision.champion_before is not None
    assert decision.champion_before.version == 1
    tags = _version_tags(desk, "worse", 2)
    assert tags["promotion.decision"] == "rejected"
    assert "dsr 0.7 not > 0.8 (champion v1)" in tags["promotion.reason"]
    assert "sharpe_ci_low 0.4 > 0.3 (champion v1)" in tags["promotion.reason"]
    assert {v.version: v.aliases for v in desk.registry.list_versions("worse")} == {
        2: ("challenger",),
        1: ("champion",),
    }


def test_promote_better_challenger_promoted_and_champion_moves(desk: Desk) -> None:
    _register(desk, "better", {"dsr": 0.5, "sharpe_ci_low": 0.1})
    desk.registry.promote("better", PromotionRule())
    _register(desk, "better", {"dsr": 0.6, "sharpe_ci_low": 0.2})

    decision = desk.registry.promote("better", PromotionRule())

    assert decision.promoted
    assert decision.challenger is not None
    assert decision.challenger.version == 2
    assert decision.challenger.tags["promotion.decision"] == "promoted"
    assert {v.version: v.aliases for v in desk.registry.list_versions("better")} == {
        2: ("challenger", "champion"),
        1: (),
    }


def test_promote_any_passes_where_all_fails(desk: Desk) -> None:
    _register(desk, "any-all", {"dsr": 0.5, "sharpe_ci_low": 0.1})
    desk.registry.promote("any-all", PromotionRule())
    _register(desk, "any-all", {"dsr": 0.6, "sharpe_ci_low": 0.05})

    with_all = desk.registry.promote("any-all", PromotionRule.parse("dsr,sharpe_ci_low"))
    with_any = desk.registry.promote("any-all", PromotionRule.parse("any:dsr,sharpe_ci_low"))

    assert (with_all.promoted, with_any.promoted) == (False, True)
    assert "needs any of dsr, sharpe_ci_low" in with_any.reason


def test_promote_no_champion_below_minimum_rejected(desk: Desk) -> None:
    _register(desk, "minimum", {"dsr": 0.4, "sharpe_ci_low": 0.2})

    decision = desk.registry.promote("minimum", PromotionRule(min_dsr=0.95, min_sharpe_ci_low=0.0))

    assert not decision.promoted
    assert "dsr 0.4 below minimum 0.95" in decision.reason
    assert "sharpe_ci_low 0.2 >= minimum 0" in decision.reason
    assert desk.registry.load_alias("minimum", "challenger") is not None
    with pytest.raises(UsageError, match="no alias 'champion'"):
        desk.registry.load_alias("minimum", "champion")


def test_promote_better_challenger_below_minimum_rejected(desk: Desk) -> None:
    _register(desk, "min-champ", {"dsr": 0.5, "sharpe_ci_low": 0.1})
    desk.registry.promote("min-champ", PromotionRule())
    _register(desk, "min-champ", {"dsr": 0.6, "sharpe_ci_low": 0.2})

    decision = desk.registry.promote("min-champ", PromotionRule(min_dsr=0.9))

    assert not decision.promoted
    assert decision.reason.startswith("rejected: dsr 0.6 below minimum 0.9")


def test_promote_score_missing_on_champion_does_not_beat(desk: Desk) -> None:
    _register(desk, "missing", {"dsr": 0.5})
    desk.registry.promote("missing", PromotionRule())
    _register(desk, "missing", {"dsr": 0.9, "sharpe_ci_low": 0.3})

    decision = desk.registry.promote("missing", PromotionRule())

    assert not decision.promoted
    assert "sharpe_ci_low 0.3 not > missing (champion v1)" in decision.reason


def test_promote_challenger_already_champion_not_promoted(desk: Desk) -> None:
    _register(desk, "already", {"dsr": 0.5, "sharpe_ci_low": 0.1})
    desk.registry.promote("already", PromotionRule())

    again = desk.registry.promote("already", PromotionRule())

    assert not again.promoted
    assert again.reason == "version 1 is already the champion"
    assert _version_tags(desk, "already", 1)["promotion.decision"] == "promoted"


def test_promote_unknown_model_raises_usage_error_to_run_walk_forward(desk: Desk) -> None:
    with pytest.raises(UsageError, match=r"no registered model 'nobody'.*walk-forward"):
        desk.registry.promote("nobody", PromotionRule())


def test_promote_model_without_challenger_raises_usage_error(desk: Desk) -> None:
    _client(desk).create_registered_model("bare")

    with pytest.raises(UsageError, match=r"no challenger.*walk-forward"):
        desk.registry.promote("bare", PromotionRule())


def test_load_alias_round_trip_equals_predictor_output(desk: Desk) -> None:
    predictor = LogisticPredictor(FEATURES, (300.0, -0.02))
    run_id = desk.tracker.start_run("round-trip")
    desk.registry.register_challenger(
        run_id=run_id,
        name="round-trip",
        predictor=predictor,
        input_example=_features(),
        scores={"dsr": 0.5},
    )
    frame = _features(40)

    model = desk.registry.load_alias("round-trip", "challenger")
    got = model.predict(frame.to_pandas())  # type: ignore[attr-defined]

    expected = predictor.predict_proba(frame.select(FEATURES).to_numpy())
    assert list(got.columns) == ["proba"]
    np.testing.assert_allclose(got["proba"].to_numpy(), expected, rtol=0, atol=0)


def test_list_versions_all_models_newest_first(desk: Desk) -> None:
    _register(desk, "listed-a", {"dsr": 0.1})
    _register(desk, "listed-b", {"dsr": 0.2})

    everything = desk.registry.list_versions()

    assert {"listed-a", "listed-b"} <= {v.name for v in everything}
    created = [v.created for v in everything]
    assert created == sorted(created, reverse=True)
    assert everything[0].name == "listed-b"


def test_list_versions_unknown_model_is_empty(desk: Desk) -> None:
    assert desk.registry.list_versions("never-registered") == []


def test_register_unknown_run_raises_usage_error(desk: Desk) -> None:
    with pytest.raises(UsageError, match=r"no MLflow run 0{32} in sqlite:"):
        desk.registry.register_challenger(
            run_id="0" * 32,
            name="ghost",
            predictor=LogisticPredictor(FEATURES, (1.0, 1.0)),
            input_example=_features(),
            scores={},
        )


def test_register_example_without_feature_column_raises_usage_error(desk: Desk) -> None:
    run_id = desk.tracker.start_run("no-column")

    with pytest.raises(UsageError, match=r"feature columns \['macd'\]"):
        desk.registry.register_challenger(
            run_id=run_id,
            name="no-column",
            predictor=LogisticPredictor(("ret_1", "macd"), (1.0, 1.0)),
            input_example=_features(),
            scores={},
        )


def test_register_object_without_feature_names_raises_usage_error(desk: Desk) -> None:
    run_id = desk.tracker.start_run("not-a-predictor")

    with pytest.raises(UsageError, match="needs feature_names"):
        desk.registry.register_challenger(
            run_id=run_id,
            name="not-a-predictor",
            predictor=object(),
            input_example=_features(),
            scores={},
        )


def test_register_bad_model_name_raises_usage_error(desk: Desk) -> None:
    with pytest.raises(UsageError, match="model name 'eur usd'"):
        desk.registry.register_challenger(
            run_id="x",
            name="eur usd",
            predictor=LogisticPredictor(FEATURES, (1.0, 1.0)),
            input_example=_features(),
            scores={},
        )


def test_register_writes_nothing_to_stdout(desk: Desk, capfd: pytest.CaptureFixture[str]) -> None:
    _register(desk, "quiet", {"dsr": 0.1})

    out, _ = capfd.readouterr()

    assert out == ""


def test_proba_model_reorders_columns_and_ignores_extra() -> None:
    predictor = LogisticPredictor(FEATURES, (100.0, 0.01))
    frame = pd.DataFrame({"rsi_14": [30.0, 70.0], "other": ["a", "b"], "ret_1": [0.01, -0.01]})

    got = ProbaModel(predictor).predict(None, frame)

    expected = predictor.predict_proba(np.array([[0.01, 30.0], [-0.01, 70.0]]))
    np.testing.assert_allclose(got["proba"].to_numpy(), expected)


def test_proba_model_missing_column_raises_usage_error_naming_it() -> None:
    frame = pd.DataFrame({"rsi_14": [30.0]})

    with pytest.raises(UsageError, match=r"lacks the feature columns \['ret_1'\]"):
        ProbaModel(LogisticPredictor(FEATURES, (1.0, 1.0))).predict(None, frame)


@pytest.mark.parametrize(
    ("text", "criteria", "require"),
    [
        ("dsr,sharpe_ci_low", ("dsr", "sharpe_ci_low"), "all"),
        ("any:dsr,sharpe", ("dsr", "sharpe"), "any"),
        (" all: dsr ", ("dsr",), "all"),
    ],
)
def test_promotion_rule_parse_short_forms(
    text: str, criteria: tuple[str, ...], require: str
) -> None:
    rule = PromotionRule.parse(text)

    assert (rule.criteria, rule.require) == (criteria, require)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("best:dsr", "optionally after 'all:' or 'any:'"),
        ("", "at least one score key"),
        ("any:", "at least one score key"),
        ("dsr,dsr", "repeat"),
        ("dsr,sharpe ci", "not names"),
    ],
)
def test_promotion_rule_parse_bad_text_raises_usage_error(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        PromotionRule.parse(text)


def test_promotion_rule_unknown_field_rejected() -> None:
    with pytest.raises(ValueError, match="min_sharpe"):
        PromotionRule(min_sharpe=1.0)  # type: ignore[call-arg]


# The demo's first challenger: an out-of-sample Sharpe interval wholly below zero.
DEMO_SCORES = {"dsr": 0.02, "psr": 0.41, "sharpe": -2.1, "sharpe_ci_low": -4.28}
FLOORS = PromotionRule(min_psr=0.95, min_sharpe_ci_low=0.0)


def test_promote_first_challenger_below_floors_rejected_naming_each_floor(desk: Desk) -> None:
    _register(desk, "demo", DEMO_SCORES)

    decision = desk.registry.promote("demo", FLOORS.model_copy(update={"min_dsr": 0.5}))

    assert not decision.promoted
    assert decision.champion_before is None
    assert decision.reason == (
        "rejected: psr 0.41 below minimum 0.95; sharpe_ci_low -4.28 below minimum 0; "
        "dsr 0.02 below minimum 0.5; no champion yet"
    )
    assert desk.registry.alias_version("demo", "champion") is None
    assert _version_tags(desk, "demo", 1)["promotion.decision"] == "rejected"


def test_promote_better_challenger_below_psr_floor_rejected(desk: Desk) -> None:
    _register(desk, "later", {"dsr": 0.5, "psr": 0.97, "sharpe_ci_low": 0.1})
    assert desk.registry.promote("later", FLOORS).promoted
    _register(desk, "later", {"dsr": 0.9, "psr": 0.94, "sharpe_ci_low": 0.3})

    decision = desk.registry.promote("later", FLOORS)

    assert not decision.promoted
    assert decision.reason.startswith("rejected: psr 0.94 below minimum 0.95; ")
    assert "dsr 0.9 > 0.5 (champion v1)" in decision.reason
    assert desk.registry.alias_version("later", "champion") == 1


def test_promote_score_missing_misses_its_floor(desk: Desk) -> None:
    _register(desk, "no-psr", {"dsr": 0.9, "sharpe_ci_low": 0.3})

    decision = desk.registry.promote("no-psr", FLOORS)

    assert not decision.promoted
    assert "psr missing (minimum 0.95)" in decision.reason
    assert "sharpe_ci_low 0.3 >= minimum 0" in decision.reason


def test_check_floors_equal_meets_missing_misses_in_order_of_minimums() -> None:
    checks = check_floors(
        {"psr": 0.95, "dsr": 0.1}, {"psr": 0.95, "sharpe_ci_low": 0.0, "dsr": 0.2}
    )

    assert [(c.key, c.value, c.met) for c in checks] == [
        ("psr", 0.95, True),
        ("sharpe_ci_low", None, False),
        ("dsr", 0.1, False),
    ]
    assert [c.text for c in checks] == [
        "psr 0.95 >= minimum 0.95",
        "sharpe_ci_low missing (minimum 0)",
        "dsr 0.1 below minimum 0.2",
    ]


def test_promotion_rule_minimums_psr_first_and_unset_left_out() -> None:
    rule = PromotionRule(min_dsr=0.3, min_psr=0.9)

    assert rule.minimums() == {"psr": 0.9, "dsr": 0.3}
    assert list(PromotionRule(min_dsr=0.3, min_sharpe_ci_low=0.0, min_psr=0.9).minimums()) == [
        "psr",
        "sharpe_ci_low",
        "dsr",
    ]


def test_promotion_rule_nan_floor_rejected() -> None:
    with pytest.raises(ValueError, match="min_psr"):
        PromotionRule(min_psr=float("nan"))


def test_alias_version_set_unset_and_unknown_model(desk: Desk) -> None:
    _register(desk, "aliased", {"dsr": 0.1})
    _register(desk, "aliased", {"dsr": 0.2})

    assert desk.registry.alias_version("aliased", "challenger") == 2
    assert desk.registry.alias_version("aliased", "champion") is None
    with pytest.raises(UsageError, match="no registered model 'unheard-of'"):
        desk.registry.alias_version("unheard-of", "champion")


def test_version_info_returns_version_and_absent_one_names_those_there_are(desk: Desk) -> None:
    _register(desk, "infos", {"dsr": 0.1, "psr": 0.6})
    _register(desk, "infos", {"dsr": 0.2})

    info = desk.registry.version_info("infos", 1)

    assert (info.name, info.version, info.aliases) == ("infos", 1, ())
    assert info.scores == {"dsr": 0.1, "psr": 0.6}
    with pytest.raises(UsageError, match=r"'infos' has no version 7 \(has: 1, 2\)"):
        desk.registry.version_info("infos", 7)
    with pytest.raises(UsageError, match="no registered model 'no-infos'"):
        desk.registry.version_info("no-infos", 1)


def test_load_version_loads_that_version_not_the_alias(desk: Desk) -> None:
    weights = (300.0, -0.02)
    _register(desk, "by-version", {"dsr": 0.1}, weights=weights)
    _register(desk, "by-version", {"dsr": 0.2}, weights=(-300.0, 0.02))
    frame = _features(10)

    model = desk.registry.load_version("by-version", 1)
    got = model.predict(frame.to_pandas())["proba"].to_numpy()  # type: ignore[attr-defined]

    expected = LogisticPredictor(FEATURES, weights).predict_proba(frame.select(FEATURES).to_numpy())
    np.testing.assert_allclose(got, expected)
    with pytest.raises(UsageError, match="has no version 3"):
        desk.registry.load_version("by-version", 3)


def test_run_params_returns_the_run_params_and_unknown_run_raises(desk: Desk) -> None:
    info = _register(desk, "with-params", {"dsr": 0.1})
    desk.tracker.log_params(info.run_id, {"feature_set": "default", "horizon": 4})

    params = desk.registry.run_params(info.run_id)

    assert params == {"feature_set": "default", "horizon": "4"}
    with pytest.raises(UsageError, match=r"no MLflow run f{32}"):
        desk.registry.run_params("f" * 32)


def test_run_experiment_names_the_runs_experiment_and_unknown_run_raises(desk: Desk) -> None:
    info = _register(desk, "with-experiment", {"dsr": 0.1})
    expected = desk.registry.client.get_run(info.run_id).info.experiment_id

    experiment = desk.registry.run_experiment(info.run_id)

    assert experiment == str(expected) and experiment != ""
    with pytest.raises(UsageError, match=r"no MLflow run f{32}"):
        desk.registry.run_experiment("f" * 32)


def test_promotion_and_rollback_read_back_from_the_versions_tags(desk: Desk) -> None:
    _register(desk, "cycle", {"dsr": 0.5, "sharpe_ci_low": 0.1})
    desk.registry.promote("cycle", PromotionRule())
    _register(desk, "cycle", {"dsr": 0.9, "sharpe_ci_low": 0.3})
    desk.registry.promote("cycle", PromotionRule())

    desk.registry.rollback("cycle", who="ann", why="drift on atr")

    first, second = sorted(desk.registry.list_versions("cycle"), key=lambda v: v.version)
    promoted = second.promotion
    assert promoted is not None and promoted.decision == "promoted"
    assert promoted.previous_champion == "1" and promoted.at.endswith("Z")
    for version in (first, second):
        done = version.rollback
        assert done is not None
        assert (done.moved, done.restored, done.who, done.why) == ("2", "1", "ann", "drift on atr")
    assert "champion" in first.aliases


def test_set_version_tags_replaces_and_adds(desk: Desk) -> None:
    _register(desk, "tagged", {"dsr": 0.1})

    desk.registry.set_version_tags("tagged", 1, {"symbol": "GBPUSD", "live_gate.override": ""})

    tags = _version_tags(desk, "tagged", 1)
    assert (tags["symbol"], tags["live_gate.override"]) == ("GBPUSD", "")
    with pytest.raises(UsageError, match="has no version 2"):
        desk.registry.set_version_tags("tagged", 2, {"a": "b"})


def test_registry_call_waits_while_another_thread_holds_the_lock(desk: Desk) -> None:
    _register(desk, "locked", {"dsr": 0.1})
    answers: list[int | None] = []
    caller = threading.Thread(
        target=lambda: answers.append(desk.registry.alias_version("locked", "challenger"))
    )

    with REGISTRY_LOCK:
        caller.start()
        caller.join(timeout=0.3)
        waited = caller.is_alive()
    caller.join(timeout=10)

    assert waited
    assert answers == [1]


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.alias_version("probed", "challenger"),
        lambda r: r.version_info("probed", 1),
        lambda r: r.list_versions("probed"),
        lambda r: r.promote("probed", PromotionRule()),
    ],
    ids=["alias_version", "version_info", "list_versions", "promote"],
)
def test_registry_call_holds_the_lock_while_it_reads_the_store(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, call: Callable[[ModelRegistry], object]
) -> None:
    if desk.registry.list_versions("probed") == []:
        _register(desk, "probed", {"dsr": 0.1})
    read = desk.registry.client.get_registered_model
    free_from_other_thread: list[bool] = []

    def probing(name: str) -> object:
        def probe() -> None:
            got = REGISTRY_LOCK.acquire(blocking=False)
            if got:
                REGISTRY_LOCK.release()
            free_from_other_thread.append(got)

        other = threading.Thread(target=probe)
        other.start()
        other.join()
        return read(name)

    monkeypatch.setattr(desk.registry.client, "get_registered_model", probing)

    call(desk.registry)

    assert free_from_other_thread
    assert not any(free_from_other_thread)


def test_every_public_registry_method_is_wrapped_in_the_lock() -> None:
    public = {
        name: member
        for name, member in vars(ModelRegistry).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }

    unlocked = [name for name, member in public.items() if not hasattr(member, "__wrapped__")]

    assert {"alias_version", "version_info", "load_version", "run_params"} <= set(public)
    assert unlocked == []

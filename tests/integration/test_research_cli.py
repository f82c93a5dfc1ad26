"""End to end, in process: walk-forward, CPCV, promotion, training, bad input and the audit.

Every command runs in this process on a copy of the sample desk, one after another. The
promotion chain (a walk-forward, a first promotion, a second walk-forward, a second promotion,
the listing) runs in order on a desk of its own; training and the audited walk-forward each on
another. Each group runs once per module and the tests read what it left.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import SampleDesk
from testkit.cli import REPO, Invocation, invoke, json_lines

# Four copies of the desk, four walk-forwards (two of them audited) and a training: tens of
# seconds in all.
pytestmark = pytest.mark.slow

PARAMS = REPO / "params.yaml"
MODEL = "EURUSD-H1-default"
FOLDS = 2
# The second half of the 2017 sample (about 3,000 bars) keeps each job to a few seconds.
SINCE = ["--from", "2017-07-01"]
WALKFORWARD = ["walkforward", "--symbol", "EURUSD", "--timeframe", "H1", "--params", str(PARAMS),
               *SINCE, "--model", "logistic", "--trials", "2", "--n-boot", "200", "--json"]  # fmt: skip
ROLLING = [*WALKFORWARD, "--folds", str(FOLDS), "--seed", "0"]
CPCV = [*WALKFORWARD, "--scheme", "cpcv", "--groups", "4", "--test-groups", "2", "--seed", "1"]
TRAIN = ["train", "--symbol", "EURUSD", "--timeframe", "H1", "--params", str(PARAMS), *SINCE,
         "--model", "logistic", "--trials", "2", "--json"]  # fmt: skip
AUDIT = [*ROLLING, "--audit"]
# The leak is glaring: the last quarter of the sample is plenty to expose it (the second
# --from is the one that counts).
LEAKY_AUDIT = [*AUDIT, "--from", "2017-10-01"]
# case -> (arguments, text the message on stderr must hold)
BAD_INPUTS: dict[str, tuple[list[str], str]] = {
    "unknown model": ([*ROLLING, "--model", "perceptron"], "--model 'perceptron': choose one of"),
    "unknown scheme": ([*ROLLING, "--scheme", "monthly"], "Invalid value for '--scheme'"),
    "missing params file": ([*ROLLING, "--params", "no-such-params.yaml"],
                            "no-such-params.yaml: not found"),
    "unknown feature set": ([*ROLLING, "--feature-set", "nonexistent"],
                            "no feature set 'nonexistent'"),
    "test groups not below groups": ([*CPCV, "--groups", "4", "--test-groups", "4"],
                                     "test_groups (4) must be below groups (4)"),
    "promote unknown model": (["models", "promote", "--name", "GBPUSD-H1-default", "--json"],
                              "no registered model 'GBPUSD-H1-default'"),
}  # fmt: skip


# Floors low enough for the sample's weak model (its PSR and Sharpe CI are far below the defaults).
LOW_FLOORS = ["--min-psr", "0", "--min-ci-low", "-1000"]


@dataclass(frozen=True)
class PromotionChain:
    """Two walk-forwards on one desk, a promotion after each, then the registry's listing.

    ``aliases_after_rolling`` is the registered model's aliases right after the first
    walk-forward, before anything else touched the registry. The sample's model misses the
    default floors (``refused_promotion``); the first promotion lowers them.
    """

    home: Path
    rolling: Invocation
    aliases_after_rolling: dict[str, int]
    refused_promotion: Invocation
    first_promotion: Invocation
    cpcv: Invocation
    second_promotion: Invocation
    listing: Invocation


@dataclass(frozen=True)
class DeskRun:
    """One command run on a desk of its own."""

    home: Path
    done: Invocation


def _mlflow_client(home: Path) -> Any:
    # Through the desk's own adapter, which keeps MLflow offline and quiet before it loads.
    from feature_store.model_registry import ModelRegistry

    return ModelRegistry(f"sqlite:///{(home / 'mlflow' / 'mlflow.db').resolve()}").client


def _copy(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    home = tmp_path_factory.mktemp(name) / "home"
    shutil.copytree(sample_desk.home, home)
    return home


@pytest.fixture(scope="module")
def chain(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> PromotionChain:
    home = _copy(sample_desk, tmp_path_factory, "chain")
    rolling = invoke(ROLLING, home)
    aliases: dict[str, int] = {}
    if rolling.returncode == 0:
        model = _mlflow_client(home).get_registered_model(MODEL)
        aliases = {alias: int(version) for alias, version in model.aliases.items()}
    refused = invoke(["models", "promote", "--name", MODEL, "--json"], home)
    first = invoke(["models", "promote", "--name", MODEL, *LOW_FLOORS, "--json"], home)
    cpcv = invoke(CPCV, home)
    second = invoke(["models", "promote", "--name", MODEL, "--min-dsr", "1.01", "--json"], home)
    listing = invoke(["models", "list", "--json"], home)
    return PromotionChain(home, rolling, aliases, refused, first, cpcv, second, listing)


@pytest.fixture(scope="module")
def train(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> DeskRun:
    home = _copy(sample_desk, tmp_path_factory, "train")
    return DeskRun(home, invoke(TRAIN, home))


@pytest.fixture(scope="module")
def audit(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> DeskRun:
    home = _copy(sample_desk, tmp_path_factory, "audit")
    return DeskRun(home, invoke(AUDIT, home))


@dataclass(frozen=True)
class LeakyAudit:
    """An audited walk-forward with a feature that reads the next bar, on the audit's desk."""

    done: Invocation
    latest_before: str | None
    latest_after: str | None
    versions_before: int
    versions_after: int


def _next_bar_return(bars: pl.DataFrame) -> pl.DataFrame:
    """Return the next bar's log return as a feature: unknown at the end of bar t."""
    leak = (pl.col("close").shift(-1) / pl.col("close")).log()
    return bars.select(pl.col("ts"), leak.alias("next_log_return"))


def _text(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _version_count(home: Path) -> int:
    return len(_mlflow_client(home).search_model_versions(f"name = '{MODEL}'"))


@pytest.fixture(scope="module")
def leaky_audit(audit: DeskRun) -> LeakyAudit:
    # The command reads its inputs through services.research: the leak is added there, as a
    # careless extra feature would be.
    import services.research

    latest = audit.home / "research" / "latest" / "walkforward.json"
    latest_before, versions_before = _text(latest), _version_count(audit.home)
    leaky_inputs = partial(services.research.load_research_inputs, extra=_next_bar_return)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services.research, "load_research_inputs", leaky_inputs)
        done = invoke(LEAKY_AUDIT, audit.home)
    return LeakyAudit(
        done, latest_before, _text(latest), versions_before, _version_count(audit.home)
    )


@pytest.fixture(scope="module")
def bad_home(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy(sample_desk, tmp_path_factory, "bad")


def _one_line(done: Invocation) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    (line,) = json_lines(done.stdout)
    return line


@pytest.fixture(scope="module")
def rolling(chain: PromotionChain) -> dict[str, Any]:
    return _one_line(chain.rolling)


def test_walkforward_json_prints_one_line_with_oos_statistics(chain: PromotionChain) -> None:
    # Act
    lines = json_lines(chain.rolling.stdout)

    # Assert
    assert chain.rolling.returncode == 0, chain.rolling.stderr
    assert len(lines) == 1
    oos = lines[0]["oos"]
    for key in ("sharpe", "psr", "dsr", "total_return", "max_drawdown", "hit_rate"):
        assert isinstance(oos[key], float) and math.isfinite(oos[key]), key
    lo, hi = oos["sharpe_ci"]
    assert lo <= oos["sharpe"] <= hi
    assert 0.0 <= oos["psr"] <= 1.0 and 0.0 <= oos["dsr"] <= 1.0
    assert oos["max_drawdown"] <= 0.0
    assert 0.0 <= oos["hit_rate"] <= 1.0
    assert isinstance(oos["n_trades"], int) and oos["n_trades"] > 0


def test_walkforward_json_has_one_fold_per_requested_fold(rolling: dict[str, Any]) -> None:
    # Act
    folds = rolling["folds"]

    # Assert
    assert [f["fold"] for f in folds] == list(range(FOLDS))
    assert all(f["n_trials"] == 2 and f["test_rows"] > 0 for f in folds)
    assert folds[0]["test_end"] < folds[1]["test_start"]


def test_walkforward_mlflow_parent_run_has_one_child_run_per_fold(
    chain: PromotionChain, rolling: dict[str, Any]
) -> None:
    # Arrange
    client = _mlflow_client(chain.home)
    parent = client.get_run(rolling["mlflow_run_id"])

    # Act
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )

    # Assert
    assert parent.info.status == "FINISHED"
    assert len(children) == FOLDS
    assert sorted(c.info.run_name for c in children) == [f"fold {i}" for i in range(FOLDS)]
    assert all("sharpe" in c.data.metrics for c in children)


def test_walkforward_mlflow_parent_run_records_metrics_and_versions(
    chain: PromotionChain, rolling: dict[str, Any], sample_desk: SampleDesk
) -> None:
    # Arrange
    client = _mlflow_client(chain.home)

    # Act
    run = client.get_run(rolling["mlflow_run_id"])

    # Assert
    assert client.get_experiment(run.info.experiment_id).name == "walkforward"
    assert run.data.metrics["oos_sharpe"] == pytest.approx(rolling["oos"]["sharpe"])
    assert run.data.metrics["oos_dsr"] == pytest.approx(rolling["oos"]["dsr"])
    tags = run.data.tags
    assert tags["solodesk.data_version"] == sample_desk.first[0]["version"]
    assert len(tags["solodesk.feature_set_version"]) >= 16
    commit = tags["solodesk.git_commit"]
    kind = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-t", commit],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert kind.stdout.strip() == "commit"


def test_walkforward_mlflow_parent_run_stores_summary_and_report(
    chain: PromotionChain, rolling: dict[str, Any], tmp_path: Path
) -> None:
    # Arrange
    client = _mlflow_client(chain.home)
    run_id = rolling["mlflow_run_id"]

    # Act
    listed = {a.path for a in client.list_artifacts(run_id, "report")}
    summary = Path(client.download_artifacts(run_id, "report/summary.json", str(tmp_path)))

    # Assert
    assert listed == {"report/summary.json", "report/report.html"}
    stored = json.loads(summary.read_text())
    assert stored["run_id"] == rolling["run_id"]
    assert stored["oos"]["sharpe"] == pytest.approx(rolling["oos"]["sharpe"])


def test_walkforward_registers_its_model_as_challenger(
    chain: PromotionChain, rolling: dict[str, Any]
) -> None:
    # Arrange
    client = _mlflow_client(chain.home)

    # Act
    version = client.get_model_version(MODEL, str(rolling["model_version"]))

    # Assert
    assert rolling["model_version"] == 1
    assert chain.aliases_after_rolling == {"challenger": 1}
    assert version.run_id == rolling["mlflow_run_id"]
    assert float(version.tags["score.dsr"]) == pytest.approx(rolling["oos"]["dsr"])


def test_walkforward_writes_report_html_under_the_desk(
    chain: PromotionChain, rolling: dict[str, Any]
) -> None:
    # Act
    report = Path(rolling["report"])

    # Assert
    assert report.is_file()
    assert report.parent == (chain.home / "reports" / "research").resolve()
    assert rolling["run_id"] in report.read_text()


def test_walkforward_cpcv_prints_pbo_and_one_sharpe_per_path(chain: PromotionChain) -> None:
    # Act
    summary = _one_line(chain.cpcv)

    # Assert
    assert summary["scheme"] == "cpcv"
    assert 0.0 <= summary["pbo"] <= 1.0
    # 4 groups, 2 tested: C(4, 2) = 6 splits; each group is tested 6 * 2 / 4 = 3 times.
    assert len(summary["folds"]) == 6
    assert len(summary["paths"]) == 3
    assert all(isinstance(s, float) and math.isfinite(s) for s in summary["paths"])
    assert summary["model_version"] == 2


def test_models_promote_first_challenger_below_default_floors_refused(
    chain: PromotionChain,
) -> None:
    # Act
    decision = _one_line(chain.refused_promotion)

    # Assert
    assert (decision["promoted"], decision["challenger"], decision["champion_before"]) == (
        False, 1, None,
    )  # fmt: skip
    assert decision["reason"].startswith("rejected: psr ")
    assert "below minimum 0.95" in decision["reason"]
    assert decision["reason"].endswith("; no champion yet")


def test_models_promote_lower_floors_promote_the_challenger(chain: PromotionChain) -> None:
    # Arrange
    client = _mlflow_client(chain.home)

    # Act
    decision = _one_line(chain.first_promotion)

    # Assert
    assert {k: v for k, v in decision.items() if k != "reason"} == {
        "name": MODEL,
        "promoted": True,
        "challenger": 1,
        "champion_before": None,
    }
    assert decision["reason"].startswith("promoted: psr ")
    assert ">= minimum 0; sharpe_ci_low " in decision["reason"]
    assert decision["reason"].endswith(">= minimum -1000; no champion yet")
    assert client.get_model_version(MODEL, "1").tags["promotion.decision"] == "promoted"


def test_models_promote_failing_rule_rejects_and_records_the_reason(
    chain: PromotionChain,
) -> None:
    # Arrange
    client = _mlflow_client(chain.home)

    # Act
    decision = _one_line(chain.second_promotion)

    # Assert
    assert (decision["promoted"], decision["challenger"], decision["champion_before"]) == (
        False, 2, 1,
    )  # fmt: skip
    assert "below minimum 1.01" in decision["reason"]
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.reason"] == decision["reason"]
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == 1


def test_models_list_json_lists_both_versions_with_aliases(chain: PromotionChain) -> None:
    # Act
    versions = json_lines(chain.listing.stdout)

    # Assert
    assert chain.listing.returncode == 0, chain.listing.stderr
    assert {(v["name"], v["version"], tuple(v["aliases"])) for v in versions} == {
        (MODEL, 1, ("champion",)),
        (MODEL, 2, ("challenger",)),
    }
    assert all("dsr" in v["scores"] and v["created"].endswith("Z") for v in versions)


def test_train_json_logs_a_model_in_the_train_experiment(train: DeskRun) -> None:
    # Arrange
    client = _mlflow_client(train.home)

    # Act
    outcome = _one_line(train.done)
    run = client.get_run(outcome["mlflow_run_id"])
    models = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )

    # Assert
    assert client.get_experiment(run.info.experiment_id).name == "train"
    assert run.info.status == "FINISHED"
    assert (outcome["model"], outcome["trials"]) == ("logistic", 2)
    assert set(outcome["params"]) == {"C"}
    assert run.data.params["best.C"] == str(outcome["params"]["C"])
    assert [m.name for m in models] == ["model"]


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_research_commands_bad_input_exit_2_with_a_message(bad_home: Path, case: str) -> None:
    # Arrange
    args, message = BAD_INPUTS[case]

    # Act
    done = invoke(args, bad_home)

    # Assert
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert done.stdout == ""
    assert not (bad_home / "research").exists()
    assert not (bad_home / "mlflow").exists()


def test_walkforward_audit_json_reports_both_controls_consistently(audit: DeskRun) -> None:
    # Act
    done = audit.done

    # Assert
    assert done.returncode in (0, 1), done.stderr
    (summary,) = json_lines(done.stdout)
    report = summary["audit"]
    controls = {c["control"]: c for c in report["controls"]}
    assert set(controls) == {"shuffled_labels", "random_walk"}
    for control in controls.values():
        lo, hi = control["gross_sharpe_ci_99"]
        assert lo <= hi
        assert isinstance(control["passed"], bool) and control["reason"]
    assert report["passed"] == all(c["passed"] for c in controls.values())
    if report["passed"]:
        assert done.returncode == 0
        assert summary["model_version"] == 1
    else:
        assert done.returncode == 1
        assert "leakage audit FAILED" in done.stderr
        assert summary.get("model_version") is None


def test_walkforward_audit_leaky_feature_exits_1_and_registers_nothing(
    leaky_audit: LeakyAudit,
) -> None:
    # Act
    done = leaky_audit.done

    # Assert
    assert done.returncode == 1, done.stderr
    assert done.exception is None
    assert "leakage audit FAILED" in done.stderr and "random_walk:" in done.stderr
    (summary,) = json_lines(done.stdout)
    assert summary["audit"]["passed"] is False
    walk = {c["control"]: c for c in summary["audit"]["controls"]}["random_walk"]
    assert walk["passed"] is False
    assert summary["model_version"] is None
    assert Path(summary["report"]).is_file()
    assert leaky_audit.versions_after == leaky_audit.versions_before
    assert leaky_audit.latest_after == leaky_audit.latest_before

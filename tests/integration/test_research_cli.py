"""End to end on the sample: walk-forward, CPCV, promotion, training, bad input and the audit.

Every invocation is independent of the others except the promotion chain (a walk-forward, a
first promotion, a second walk-forward, a second promotion, the listing), which runs in order
on a desk of its own. The groups run side by side once per module, each on its own copy of
the sample desk, and the tests read their results.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testkit.cli import REPO, json_lines, run_solodesk

from .conftest import SampleDesk

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
HEAVY_TIMEOUT = 300.0
# case -> (arguments, text the message on stderr must hold)
BAD_INPUTS: dict[str, tuple[list[str], str]] = {
    "unknown model": ([*ROLLING, "--model", "perceptron"], "--model 'perceptron': choose one of"),
    "unknown scheme": ([*ROLLING, "--scheme", "monthly"],
                       "--scheme 'monthly': use rolling, anchored or cpcv"),
    "missing params file": ([*ROLLING, "--params", "no-such-params.yaml"],
                            "no-such-params.yaml: not found"),
    "unknown feature set": ([*ROLLING, "--feature-set", "nonexistent"],
                            "no feature set 'nonexistent'"),
    "test groups not below groups": ([*CPCV, "--groups", "4", "--test-groups", "4"],
                                     "test_groups (4) must be below groups (4)"),
    "promote unknown model": (["models", "promote", "--name", "GBPUSD-H1-default", "--json"],
                              "no registered model 'GBPUSD-H1-default'"),
}  # fmt: skip

Finished = subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class PromotionChain:
    """Two walk-forwards on one desk, a promotion after each, then the registry's listing.

    ``aliases_after_rolling`` is the registered model's aliases right after the first
    walk-forward, before anything else touched the registry.
    """

    home: Path
    rolling: Finished
    aliases_after_rolling: dict[str, int]
    first_promotion: Finished
    cpcv: Finished
    second_promotion: Finished
    listing: Finished


@dataclass(frozen=True)
class Invocation:
    """One command run on a desk of its own."""

    home: Path
    done: Finished


@dataclass(frozen=True)
class ResearchRuns:
    """The module's command runs, started together; ``result()`` waits for one group."""

    chain: Future[PromotionChain]
    train: Future[Invocation]
    audit: Future[Invocation]
    bad_inputs: dict[str, Future[Invocation]]


def _mlflow_client_class() -> Any:
    # Offline, as the desk's own MLflow adapter is: no usage reports from the test machine.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient


def _mlflow_client(home: Path) -> Any:
    uri = f"sqlite:///{(home / 'mlflow' / 'mlflow.db').resolve()}"
    return _mlflow_client_class()(tracking_uri=uri, registry_uri=uri)


def _promotion_chain(home: Path) -> PromotionChain:
    rolling = run_solodesk(ROLLING, home, timeout=HEAVY_TIMEOUT)
    aliases: dict[str, int] = {}
    if rolling.returncode == 0:
        model = _mlflow_client(home).get_registered_model(MODEL)
        aliases = {alias: int(version) for alias, version in model.aliases.items()}
    first = run_solodesk(["models", "promote", "--name", MODEL, "--json"], home)
    cpcv = run_solodesk(CPCV, home, timeout=HEAVY_TIMEOUT)
    second = run_solodesk(
        ["models", "promote", "--name", MODEL, "--min-dsr", "1.01", "--json"], home
    )
    listing = run_solodesk(["models", "list", "--json"], home)
    return PromotionChain(home, rolling, aliases, first, cpcv, second, listing)


def _invocation(args: list[str], home: Path, timeout: float = 120.0) -> Invocation:
    return Invocation(home, run_solodesk(args, home, timeout=timeout))


@pytest.fixture(scope="module")
def bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Let the module's command runs share compiled bytecode in a folder of this session.

    With ``PYTHONDONTWRITEBYTECODE`` set, every ``solodesk`` process would compile its whole
    import tree again (seconds each); the cache changes nothing the commands do.
    """
    folder = tmp_path_factory.getbasetemp() / "bytecode"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        patch.setenv("PYTHONPYCACHEPREFIX", str(folder))
        yield folder


@pytest.fixture(scope="module")
def runs(
    sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory, bytecode_cache: Path
) -> Iterator[ResearchRuns]:
    def desk(name: str) -> Path:
        home = tmp_path_factory.mktemp(name) / "home"
        shutil.copytree(sample_desk.home, home)
        return home

    chain_home, audit_home, train_home, bad_home = (
        desk(n) for n in ("chain", "audit", "train", "bad")
    )
    # Two at a time on two cores: the chain runs in order on one, the others queue on the other.
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = ResearchRuns(
            chain=pool.submit(_promotion_chain, chain_home),
            audit=pool.submit(_invocation, AUDIT, audit_home, HEAVY_TIMEOUT),
            train=pool.submit(_invocation, TRAIN, train_home, HEAVY_TIMEOUT),
            bad_inputs={
                case: pool.submit(_invocation, args, bad_home)
                for case, (args, _) in BAD_INPUTS.items()
            },
        )
        # Import MLflow here while the commands run, not on the chain's way.
        _mlflow_client_class()
        yield started


def _one_line(done: Finished) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    (line,) = json_lines(done.stdout)
    return line


@pytest.fixture(scope="module")
def chain(runs: ResearchRuns) -> PromotionChain:
    return runs.chain.result()


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


def test_models_promote_without_champion_promotes_the_challenger(chain: PromotionChain) -> None:
    # Arrange
    client = _mlflow_client(chain.home)

    # Act
    decision = _one_line(chain.first_promotion)

    # Assert
    assert decision == {
        "name": MODEL,
        "promoted": True,
        "reason": "promoted: no champion yet",
        "challenger": 1,
        "champion_before": None,
    }
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


def test_train_json_logs_a_model_in_the_train_experiment(runs: ResearchRuns) -> None:
    # Arrange
    train = runs.train.result()
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
def test_research_commands_bad_input_exit_2_with_a_message(runs: ResearchRuns, case: str) -> None:
    # Arrange
    _, message = BAD_INPUTS[case]

    # Act
    invocation = runs.bad_inputs[case].result()

    # Assert
    assert invocation.done.returncode == 2, invocation.done.stderr
    assert message in invocation.done.stderr
    assert invocation.done.stdout == ""
    assert not (invocation.home / "research").exists()


def test_walkforward_audit_json_reports_both_controls_consistently(runs: ResearchRuns) -> None:
    # Act
    audit = runs.audit.result()
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

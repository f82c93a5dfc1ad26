"""The DVC pipeline (``ingest``, ``features``, ``train``, ``walkforward``) reproduces in a fresh
repository, and DVC reads the research stages' metrics and equity plot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testkit.cli import REPO
from testkit.services import service_missing
from testkit.store import assert_store_consistent

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLODESK_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", SOLODESK_HOME="data",
               DVC_NO_ANALYTICS="1", GIT_CONFIG_NOSYSTEM="1")  # fmt: skip
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


DVC = str(Path(sys.executable).parent / "dvc")
# Fewer trials and folds than the project's params.yaml, to keep the research stages quick;
# the stages read them through ${research.*}, so the lock file must record these values.
RESEARCH_OVERRIDES = {"trials": 2, "folds": 2}
LATEST = Path("data") / "research" / "latest"


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh git + DVC repository holding the project's dvc.yaml and params.yaml, reproduced.

    The copied params.yaml has RESEARCH_OVERRIDES in its ``research`` section.
    """
    if shutil.which("git") is None:
        service_missing("git", "git is not installed")
    repo = tmp_path_factory.mktemp("dvc")
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["research"].update(RESEARCH_OVERRIDES)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _run(["git", "init", "-q"], repo).returncode == 0
    init = _run([DVC, "init", "-q"], repo)
    assert init.returncode == 0, init.stderr
    run = _run([DVC, "repro"], repo)
    assert run.returncode == 0, run.stdout + run.stderr
    return repo


def test_dvc_repro_ingest_creates_store_catalog_and_lock(dvc_repo: Path) -> None:
    # Assert
    manifest = assert_store_consistent(dvc_repo / "data" / "store")
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())["ingest"]
    timeframes = {s["timeframe"] for s in manifest["series"].values()}
    assert timeframes == {"H1", *params["resample"]}
    assert (dvc_repo / "data" / "catalog.duckdb").is_file()
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
    outs = {out["path"] for out in lock["stages"]["ingest"]["outs"]}
    assert outs == {"data/store"}
    assert lock["stages"]["ingest"]["params"]["params.yaml"]["ingest"] == params


def test_dvc_repro_features_builds_every_declared_set_on_every_series(dvc_repo: Path) -> None:
    # Assert
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    index = json.loads((dvc_repo / "data" / "features" / "index.json").read_text())
    built = {(b["feature_set"], b["timeframe"]) for b in index["builds"] if b["latest"]}
    timeframes = ["H1", *params["ingest"]["resample"]]
    assert built == {(name, tf) for name in params["features"]["sets"] for tf in timeframes}
    params = params["features"]
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())["stages"]["features"]
    assert [out["path"] for out in lock["outs"]] == ["data/features"]
    assert [dep["path"] for dep in lock["deps"]] == ["data/store"]
    assert lock["params"]["params.yaml"]["features"] == params


def test_dvc_repro_research_stages_lock_research_params_and_their_outputs(
    dvc_repo: Path,
) -> None:
    # Arrange
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())

    # Act
    stages = yaml.safe_load((dvc_repo / "dvc.lock").read_text())["stages"]

    # Assert
    assert list(stages) == ["ingest", "features", "train", "walkforward"]
    outs = {
        "train": {f"{LATEST}/train.json"},
        "walkforward": {f"{LATEST}/walkforward.json", f"{LATEST}/equity.csv"},
    }
    for name, paths in outs.items():
        stage = stages[name]
        assert stage["params"]["params.yaml"]["research"] == params["research"]
        assert stage["params"]["params.yaml"]["features"] == params["features"]
        # They compute features from the bars: a feature build is not what they read.
        assert {dep["path"] for dep in stage["deps"]} == {"data/store"}
        assert {out["path"] for out in stage["outs"]} == paths
        assert f"--trials {RESEARCH_OVERRIDES['trials']} " in stage["cmd"]
        assert "${" not in stage["cmd"]
    assert f"--folds {RESEARCH_OVERRIDES['folds']} " in stages["walkforward"]["cmd"]


def test_dvc_repro_research_stages_write_latest_train_and_walkforward_json(
    dvc_repo: Path,
) -> None:
    # Arrange
    research = yaml.safe_load((dvc_repo / "params.yaml").read_text())["research"]

    # Act
    train = json.loads((dvc_repo / LATEST / "train.json").read_text())
    walkforward = json.loads((dvc_repo / LATEST / "walkforward.json").read_text())

    # Assert
    assert train["trials"] == research["trials"]
    assert train["rows"] > 0
    assert walkforward["trials"] == research["trials"] * research["folds"]
    assert walkforward["sharpe_ci_low"] <= walkforward["sharpe"] <= walkforward["sharpe_ci_high"]
    assert 0.0 <= walkforward["dsr"] <= 1.0
    assert walkforward["max_drawdown"] <= 0.0


def test_dvc_metrics_show_lists_walkforward_and_train_metrics(dvc_repo: Path) -> None:
    # Act
    shown = _run([DVC, "metrics", "show", "--json"], dvc_repo)

    # Assert
    assert shown.returncode == 0, shown.stderr
    files = json.loads(shown.stdout)[""]["data"]
    walkforward = files[f"{LATEST}/walkforward.json"]["data"]
    train = files[f"{LATEST}/train.json"]["data"]
    wanted = {"sharpe", "sharpe_ci_low", "sharpe_ci_high", "psr", "dsr", "total_return",
              "max_drawdown", "hit_rate", "n_trades", "trials"}  # fmt: skip
    assert wanted <= set(walkforward)
    assert walkforward == json.loads((dvc_repo / LATEST / "walkforward.json").read_text())
    assert {"rows", "trials", "best_value"} <= set(train)
    assert train == json.loads((dvc_repo / LATEST / "train.json").read_text())


def test_dvc_plots_show_finds_equity_curve_of_walkforward(dvc_repo: Path) -> None:
    # Arrange
    rows = (dvc_repo / LATEST / "equity.csv").read_text().splitlines()
    header, first = rows[0].split(","), rows[1].split(",")

    # Act
    shown = _run([DVC, "plots", "show", "--json"], dvc_repo)

    # Assert
    assert shown.returncode == 0, shown.stderr
    (plot,) = json.loads(shown.stdout)["data"][f"{LATEST}/equity.csv"]
    assert plot["type"] == "vega"
    content = plot["content"]
    assert content["encoding"]["x"]["field"] == "year"
    assert content["encoding"]["x"]["type"] == "quantitative"
    assert content["layer"][0]["encoding"]["y"]["field"] == "equity"
    values = content["data"]["values"]
    assert header == ["ts", "year", "equity"]
    assert len(values) == len(rows) - 1 > 100
    assert values[0]["ts"] == first[0]
    assert float(values[0]["year"]) == float(first[1])
    assert float(values[0]["equity"]) == float(first[2])
    assert 2017.0 <= float(first[1]) < 2018.0  # the sample's year, as a number DVC can plot


def test_dvc_repro_again_skips_unchanged_stages(dvc_repo: Path) -> None:
    # Arrange
    manifest = dvc_repo / "data" / "store" / "manifest.json"
    index = dvc_repo / "data" / "features" / "index.json"
    research = [dvc_repo / LATEST / name for name in ("train.json", "walkforward.json",
                                                      "equity.csv")]  # fmt: skip
    before = (
        json.loads(manifest.read_text())["generation"],
        index.read_bytes(),
        [path.read_bytes() for path in research],
    )

    # Act
    run = _run([DVC, "repro"], dvc_repo)

    # Assert
    assert run.returncode == 0, run.stdout + run.stderr
    for stage in ("ingest", "features", "train", "walkforward"):
        assert f"Stage '{stage}' didn't change, skipping" in run.stdout
    after = (
        json.loads(manifest.read_text())["generation"],
        index.read_bytes(),
        [path.read_bytes() for path in research],
    )
    assert after == before

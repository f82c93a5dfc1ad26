"""The DVC pipeline (``ingest``, then ``features``) reproduces in a fresh repository."""

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
from testkit.store import assert_store_consistent


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLODESK_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", SOLODESK_HOME="data",
               DVC_NO_ANALYTICS="1", GIT_CONFIG_NOSYSTEM="1")  # fmt: skip
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )


DVC = str(Path(sys.executable).parent / "dvc")


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh git + DVC repository holding the project's dvc.yaml and params.yaml, reproduced."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path_factory.mktemp("dvc")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, repo / name)
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


def test_dvc_repro_again_skips_unchanged_stages(dvc_repo: Path) -> None:
    # Arrange
    manifest = dvc_repo / "data" / "store" / "manifest.json"
    index = dvc_repo / "data" / "features" / "index.json"
    before = json.loads(manifest.read_text())["generation"], index.read_bytes()

    # Act
    run = _run([DVC, "repro"], dvc_repo)

    # Assert
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Stage 'ingest' didn't change, skipping" in run.stdout
    assert "Stage 'features' didn't change, skipping" in run.stdout
    assert (json.loads(manifest.read_text())["generation"], index.read_bytes()) == before

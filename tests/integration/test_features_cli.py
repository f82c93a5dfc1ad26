"""End to end on the sample, in process: features build (twice: a cache hit), list, show, data
sql, --all, and the bad inputs that store nothing."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SampleDesk
from testkit.cli import REPO, Invocation, invoke, json_lines

BUILD = ["features", "build", "--feature-set", "default", "--symbol", "EURUSD",
         "--timeframe", "H1"]  # fmt: skip
SAMPLE_ROWS = 6225


@dataclass(frozen=True)
class FeatureDesk:
    """The sample desk with H4 and D1 resampled, the default set built twice."""

    home: Path
    first: dict[str, Any]
    second: dict[str, Any]
    index_after_first: bytes
    index_after_second: bytes


@pytest.fixture(scope="module")
def feature_desk(sample_desk: SampleDesk, tmp_path_factory: pytest.TempPathFactory) -> FeatureDesk:
    home = tmp_path_factory.mktemp("features") / "home"
    shutil.copytree(sample_desk.home, home)
    shutil.copy(REPO / "params.yaml", home.parent / "params.yaml")
    resample = invoke(
        ["resample", "--symbol", "EURUSD", "--source", "H1", "--side", "ask",
         "--timeframe", "H4", "--timeframe", "D1"], home,
    )  # fmt: skip
    assert resample.returncode == 0, (resample.stderr, resample.exception)
    index = home / "features" / "index.json"
    first = invoke([*BUILD, "--json"], home)
    assert first.returncode == 0, (first.stderr, first.exception)
    after_first = index.read_bytes()
    second = invoke([*BUILD, "--json"], home)
    assert second.returncode == 0, (second.stderr, second.exception)
    (one,), (two,) = json_lines(first.stdout), json_lines(second.stdout)
    return FeatureDesk(home, one, two, after_first, index.read_bytes())


def test_cli_features_build_json_describes_the_checked_build(feature_desk: FeatureDesk) -> None:
    # Arrange
    build = feature_desk.first

    # Assert
    assert (build["feature_set"], build["symbol"], build["timeframe"], build["side"]) == (
        "default", "EURUSD", "H1", "ask",
    )  # fmt: skip
    assert build["cache_hit"] is False
    assert build["rows"] == SAMPLE_ROWS
    # 71 default features less the 3 spread ones (the sample has no spread), 6 context ones.
    assert build["features"] == 71 - 3 + 6
    assert build["labels"] == ["label", "label_log_return", "label_barrier", "label_end",
                               "label_weight"]  # fmt: skip
    assert build["expectations"] == "4/4 passed"
    assert set(build["sources"]) == {"EURUSD.H1.ask", "EURUSD.H4.ask", "EURUSD.D1.ask"}
    assert (feature_desk.home / "features" / build["file"]).is_file()


def test_cli_features_build_again_is_a_cache_hit(feature_desk: FeatureDesk) -> None:
    # Assert
    assert feature_desk.second["cache_hit"] is True
    assert feature_desk.second["version"] == feature_desk.first["version"]
    assert feature_desk.index_after_second == feature_desk.index_after_first
    assert feature_desk.second["seconds"] < feature_desk.first["seconds"]


def test_cli_features_list_and_show_json(feature_desk: FeatureDesk) -> None:
    # Act
    listed = invoke(["features", "list", "--json"], feature_desk.home)
    shown = invoke(["features", "show", "--feature-set", "default", "--symbol", "eurusd",
                    "--timeframe", "60", "--columns", "rsi_14,h4_rsi_14,label", "--rows", "2",
                    "--json"], feature_desk.home)  # fmt: skip

    # Assert
    assert listed.returncode == 0, listed.stderr
    (build,) = json_lines(listed.stdout)
    assert build["version"] == feature_desk.first["version"]
    assert (build["latest"], build["cache"], build["rows"]) == (True, "fresh", SAMPLE_ROWS)
    assert shown.returncode == 0, shown.stderr
    records = json_lines(shown.stdout)
    columns = {r["column"]: r for r in records if r["record"] == "column"}
    rows = [r for r in records if r["record"] == "row"]
    assert list(columns) == ["rsi_14", "h4_rsi_14", "label"]
    assert columns["rsi_14"]["nulls"] == columns["rsi_14"]["warmup"] == 14
    assert columns["h4_rsi_14"]["nulls"] == columns["h4_rsi_14"]["required_from"] > 14 * 4
    assert 0 <= columns["rsi_14"]["min"] <= columns["rsi_14"]["max"] <= 100
    assert [r["ts"] for r in rows] == ["2017-12-29T20:00:00Z", "2017-12-29T21:00:00Z"]
    assert all(r["label"] is None for r in rows)  # not settled by the end of the data


def test_cli_data_sql_joins_bars_features_and_labels(feature_desk: FeatureDesk) -> None:
    # Act
    run = invoke(
        ["data", "sql", "select count(*) as n, count(label) as labelled, min(rsi_14) as lo, "
         "max(rsi_14) as hi, bool_and(close > 0) as prices, max(version) as version "
         "from features_default where symbol = 'EURUSD' and timeframe = 'H1'", "--json"],
        feature_desk.home,
    )  # fmt: skip

    # Assert
    assert run.returncode == 0, run.stderr
    (row,) = json_lines(run.stdout)
    assert row["n"] == SAMPLE_ROWS
    assert 0 < row["labelled"] < SAMPLE_ROWS
    assert 0 <= row["lo"] < row["hi"] <= 100
    assert row["prices"] is True
    assert row["version"] == feature_desk.first["version"]


def test_cli_features_build_all_builds_every_stored_series_with_the_context_that_fits(
    feature_desk: FeatureDesk,
) -> None:
    # Act
    run = invoke(["features", "build", "--all", "--json"], feature_desk.home)

    # Assert
    assert run.returncode == 0, run.stderr
    builds = {b["timeframe"]: b for b in json_lines(run.stdout)}
    assert sorted(builds) == ["D1", "H1", "H4"]
    assert builds["H1"]["cache_hit"] is True
    assert "skipped" not in run.stderr
    shown = invoke(
        ["features", "show", "--feature-set", "default", "--symbol", "EURUSD", "--timeframe", "H4",
         "--json"],
        feature_desk.home,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "d1_rsi_14" in shown.stdout and "h4_rsi_14" not in shown.stdout


def _bad_runs(home: Path) -> dict[str, Invocation]:
    cases = {
        "no feature set 'nope' (declared: default)": [*BUILD[:2], "--feature-set", "nope", *BUILD[4:]],
        "unknown timeframe 'H3'": [*BUILD[:6], "--timeframe", "H3"],
        "no stored series EURUSD M5": [*BUILD[:6], "--timeframe", "M5"],
        "give --feature-set, --symbol and --timeframe": ["features", "build", "--symbol", "X"],
        "missing.yaml: not found": [*BUILD, "--params", "missing.yaml"],
        "no build of default on EURUSD M1": ["features", "show", "--feature-set", "default",
                                             "--symbol", "EURUSD", "--timeframe", "M1"],
        "not in the build": ["features", "show", "--feature-set", "default", "--symbol",
                             "EURUSD", "--timeframe", "H1", "--columns", "nope"],
    }  # fmt: skip
    return {message: invoke(args, home) for message, args in cases.items()}


def test_cli_features_bad_input_exits_2_with_a_message(feature_desk: FeatureDesk) -> None:
    # Arrange
    index = feature_desk.home / "features" / "index.json"
    before = json.loads(index.read_text())

    # Act
    runs = _bad_runs(feature_desk.home)

    # Assert
    for message, run in runs.items():
        assert run.returncode == 2, (message, run.stdout, run.stderr)
        assert message in run.stderr.replace("\n", " "), (message, run.stderr)
        assert "Traceback" not in run.stderr
    assert json.loads(index.read_text()) == before


def test_cli_features_tables_without_json_show_builds_and_columns(
    feature_desk: FeatureDesk,
) -> None:
    # Act
    built = invoke(BUILD, feature_desk.home)
    listed = invoke(["features", "list", "--latest"], feature_desk.home)
    shown = invoke(["features", "show", "--feature-set", "default", "--symbol", "EURUSD",
                    "--timeframe", "H1", "--columns", "rsi_14", "--rows", "1"],
                   feature_desk.home)  # fmt: skip

    # Assert
    assert built.returncode == listed.returncode == shown.returncode == 0
    assert "1 feature build(s)" in built.stderr and " hit " in built.stderr
    assert feature_desk.first["version"][:12] in listed.stdout
    assert f"version {feature_desk.first['version']}" in shown.stdout
    assert "last 1 rows" in shown.stdout and "rsi_14" in shown.stdout


def test_cli_features_specs_json_lists_the_default_set(feature_desk: FeatureDesk) -> None:
    # Act
    done = invoke(["features", "specs", "--json"], feature_desk.home)

    # Assert
    assert done.returncode == 0, done.stderr
    specs = {s["name"]: s for s in json_lines(done.stdout)}
    assert len(specs) == 71
    assert (specs["rsi_14"]["lower"], specs["rsi_14"]["upper"]) == (0.0, 100.0)
    assert specs["rsi_14"]["warmup"] == 14

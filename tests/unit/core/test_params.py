"""params.yaml: one reader, typed sections, unknown keys refused with the file and key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.clocks import Anchor
from core.errors import UsageError
from core.params import read_params
from core.timeframes import Timeframe
from core.types import Side

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_read_params_repository_file_every_section_typed() -> None:
    # Act
    params = read_params(REPO_PARAMS)

    # Assert
    ingest, research = params.require_ingest(), params.require_research()
    assert ingest.sources == ("sample:eurusd-h1",)
    assert ingest.resample == (Timeframe.H4, Timeframe.D1)
    assert "default" in params.require_features().sets
    assert research.timeframe is Timeframe.H1 and research.trials >= 0


def test_read_params_ingest_options_parsed_as_what_they_mean(tmp_path: Path) -> None:
    # Arrange
    path = _write(
        tmp_path,
        "ingest:\n  sources: [a.csv, 7]\n  resample: [60, 1d]\n  timeframe: 15\n"
        "  side: BID\n  anchor: utc\n",
    )

    # Act
    ingest = read_params(path).require_ingest()

    # Assert
    assert ingest.sources == ("a.csv", "7")
    assert ingest.resample == (Timeframe.H1, Timeframe.D1)
    assert ingest.timeframe is Timeframe.M15
    assert ingest.side is Side.BID and ingest.anchor is Anchor.UTC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ingest:\n  sources: [a.csv]\n  sorce: x\n", r"params.yaml: ingest.sorce: Extra inputs"),
        ("featurs:\n  sets: {}\n", r"params.yaml: featurs: Extra inputs"),
        ("features:\n  sets: {default: {}}\n  extra: 1\n", r"features.extra: Extra inputs"),
        ("research:\n  symbol: EURUSD\n  timeframe: H1\n  trails: 3\n", r"research.trails"),
        ("ingest:\n  sources: []\n", r"ingest.sources: Tuple should have at least 1 item"),
        ("ingest:\n  sources: [a]\n  side: sideways\n", r"ingest.side: Input should be"),
        ("- a\n- b\n", r"expected sections \(ingest, features, research\), not a list"),
        ("ingest: [unclosed\n", r"not valid YAML"),
        ("path: x\n", r"unknown section 'path'"),
    ],
)
def test_read_params_malformed_file_names_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    # Arrange
    path = _write(tmp_path, text)

    # Act / Assert
    with pytest.raises(UsageError, match=message):
        read_params(path)


def test_read_params_missing_file_says_how_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"not found: give the parameters file with --params"):
        read_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("ingest", r"needs an 'ingest' section with a 'sources' list"),
        ("features", r"needs a 'features' section with 'sets'"),
        ("research", r"needs a 'research' section"),
    ],
)
def test_read_params_missing_section_asked_for_names_it(
    tmp_path: Path, section: str, message: str
) -> None:
    # Arrange
    params = read_params(_write(tmp_path, "{}\n"))

    # Act / Assert
    with pytest.raises(UsageError, match=message):
        getattr(params, f"require_{section}")()


def test_every_reader_of_params_gives_the_same_message(tmp_path: Path) -> None:
    # Arrange: a typo in a section name, seen by the feature builds and research readers
    from services.features import load_feature_set, load_feature_sets

    path = _write(tmp_path, "features:\n  sets: {default: {}}\nresearch_typo: {}\n")
    messages = []

    # Act
    for read in (read_params, load_feature_sets, lambda p: load_feature_set(p, "default")):
        with pytest.raises(UsageError) as caught:
            read(path)
        messages.append(str(caught.value))

    # Assert
    assert len(set(messages)) == 1
    assert "research_typo: Extra inputs are not permitted" in messages[0]

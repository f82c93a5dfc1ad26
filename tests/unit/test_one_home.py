"""Each convention is written once, in the lowest room that owns it, and nowhere else.

A rule written twice diverges: these tests find a second copy of a convention in the packages'
sources (the clock that cuts long bars, the folders under SOLODESK_HOME, the params.yaml reader,
the ISO-8601 time format, the run id, the series lookup, the HTML report kit). The behaviour of
each home is tested beside it (tests/unit/core, tests/unit/feature_store, tests/unit/services).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "pipelines", "models", "feature_store", "execution", "services", "flows", "app")

# (what, the pattern of a copy, the one file allowed to hold it)
RULES = [
    ("the bar clock: which calendar cuts long bars on the broker day", r'calendar == "fx"',
     "core/clocks.py"),
    ("a folder or file under SOLODESK_HOME", r"\.home\s*/", "core/settings.py"),
    ("reading params.yaml", r"yaml\.safe_load|yaml\.load\(", "core/params.py"),
    ("the ISO-8601 time format", r"%Y-%m-%dT|isoformat\([^)]*\)\.replace", "core/times.py"),
    ("MetaTrader's local time format", r"%Y\.%m\.%d %H", "core/times.py"),
    ("the random part of a run id", r"token_hex|uuid4\(\)\.hex", "core/ids.py"),
    ("finding a stored series by symbol and timeframe", r"\.key\.symbol ==", "feature_store/series.py"),
    ("the reports' page style", r"<style>", "pipelines/report_kit.py"),
    ("loading plotly.js into a page", r"get_plotlyjs|include_plotlyjs=True", "pipelines/report_kit.py"),
]  # fmt: skip


def _sources() -> dict[str, str]:
    return {
        path.relative_to(REPO).as_posix(): path.read_text()
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


@pytest.mark.parametrize(("what", "pattern", "home"), RULES, ids=[r[0] for r in RULES])
def test_convention_written_once_in_its_home(what: str, pattern: str, home: str) -> None:
    # Arrange
    sources = _sources()

    # Act
    found = sorted(path for path, text in sources.items() if re.search(pattern, text))

    # Assert
    assert found == [home], f"{what} belongs in {home} only; also in {found}"


def test_one_home_check_finds_a_second_copy() -> None:
    # Arrange
    sources = {"core/clocks.py": 'x = calendar == "fx"', "services/x.py": 'y = calendar == "fx"'}

    # Act
    found = sorted(p for p, t in sources.items() if re.search(RULES[0][1], t))

    # Assert
    assert found == ["core/clocks.py", "services/x.py"]

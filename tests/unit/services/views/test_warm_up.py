"""Warming the views up: every view loads, and the registry is opened only where one exists."""

from __future__ import annotations

import sys
from pathlib import Path

from core.settings import Settings
from services.views import warm_up


def test_warm_up_on_an_empty_desk_loads_the_views_and_creates_nothing(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"

    # Act
    warm_up(Settings(home=home))

    # Assert
    assert {
        "services.views.desk", "services.views.ops", "pipelines.evaluate.report",
        "matplotlib.backends.backend_svg",
    } <= set(sys.modules)  # fmt: skip
    assert not home.exists()

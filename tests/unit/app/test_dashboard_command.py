"""``solodesk dashboard password`` and the login it makes possible."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from testkit.cli import invoke

from core.errors import UsageError
from core.settings import DashboardSettings, Settings
from services.access import check_login, controls_enabled, hash_password


def test_dashboard_password_from_stdin_prints_a_hash_that_checks(tmp_path: Path) -> None:
    # Act
    from typer.testing import CliRunner

    from app.cli import app

    run = CliRunner().invoke(app, ["dashboard", "password", "--stdin"], input="s3cret-words\n")

    # Assert: one line on stdout, an Argon2id hash the login accepts for that password only
    assert run.exit_code == 0, run.output
    hashed = run.stdout.strip()
    assert hashed.startswith("$argon2id$") and "\n" not in hashed
    settings = Settings(home=tmp_path, dashboard=DashboardSettings(password_hash=SecretStr(hashed)))
    assert check_login(settings, "trader", "s3cret-words")
    assert not check_login(settings, "trader", "s3cret-word")
    assert not check_login(settings, "someone", "s3cret-words")
    assert "password_hash" in run.stderr


def test_dashboard_password_too_short_is_refused_with_exit_2(tmp_path: Path) -> None:
    # Act
    from typer.testing import CliRunner

    from app.cli import app

    run = CliRunner().invoke(app, ["dashboard", "password", "--stdin"], input="short\n")

    # Assert
    assert run.exit_code == 2
    assert "at least 8 characters" in run.stderr


def test_login_without_a_hash_is_off_and_never_accepted(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(home=tmp_path)

    # Act / Assert
    assert not controls_enabled(settings)
    assert not check_login(settings, "trader", "anything at all")


def test_login_with_a_malformed_hash_says_how_to_make_one(tmp_path: Path) -> None:
    # Arrange
    settings = Settings(
        home=tmp_path, dashboard=DashboardSettings(password_hash=SecretStr("plain-text"))
    )

    # Act / Assert
    with pytest.raises(UsageError, match="solodesk dashboard password"):
        check_login(settings, "trader", "plain-text")


def test_each_hash_of_one_password_is_salted_apart() -> None:
    # Act
    first, second = hash_password("same password"), hash_password("same password")

    # Assert
    assert first != second


def test_dashboard_with_bad_settings_reports_them_before_serving(tmp_path: Path) -> None:
    # Arrange
    home = tmp_path / "home"
    (tmp_path / "solodesk.toml").write_text("[dashboard]\ncache_seconds = -1\n")

    # Act
    run = invoke(["dashboard", "--port", "8599"], home)

    # Assert
    assert run.returncode == 2
    assert "cache_seconds" in run.stderr

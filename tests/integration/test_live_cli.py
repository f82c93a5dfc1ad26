"""``solodesk live`` refuses before it connects anything: without --confirm-live, without a risk
limit, or with a broker other than MT4 (exit 2, the reason named, nothing stored)."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit.cli import invoke

BASE = ["live", "--symbol", "EURUSD", "--timeframe", "H1", "--strategy", "sma_cross"]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([], "add --confirm-live"),
        (["--confirm-live"], "no risk limit is set: give at least one of max_daily_loss"),
        (["--confirm-live", "--risk", "max_open_orders=3"], "no risk limit is set"),
        (["--broker", "paper", "--confirm-live"], "the live broker is mt4"),
    ],
)
def test_live_refuses_before_connecting(tmp_path: Path, extra: list[str], reason: str) -> None:
    # Act
    result = invoke([*BASE, *extra], tmp_path / "home")

    # Assert
    assert result.returncode == 2
    assert reason in result.stderr
    assert not (tmp_path / "home" / "state").exists()

"""The Great Expectations suite passes clean bars and fails the rules quarantine enforces."""

from __future__ import annotations

import pytest
from testkit.files import bar_frame, utc

from pipelines.validate.suite import validate_bars


def test_validate_bars_clean_bars_pass_every_expectation() -> None:
    # Arrange
    bars = bar_frame([(utc(2017, 1, 3, 9), 1.1, 1.2, 1.0, 1.15, 3, 0.0001),
                      (utc(2017, 1, 3, 10), 1.15, 1.2, 1.1, 1.12, 4, 0.0002)])  # fmt: skip

    # Act
    result = validate_bars(bars, "clean")

    # Assert
    assert result.success
    assert result.statistics["unsuccessful_expectations"] == 0
    assert result.statistics["evaluated_expectations"] > 10


@pytest.mark.parametrize(
    ("rows", "failing"),
    [
        ([(utc(2017, 1, 3, 9), 1.1, 1.0, 1.2, 1.1, 3, None)],
         ("expect_column_pair_values_a_to_be_greater_than_b", None)),
        ([(utc(2017, 1, 3, 10), 1.1, 1.2, 1.0, 1.1, 3, None),
          (utc(2017, 1, 3, 9), 1.1, 1.2, 1.0, 1.1, 3, None)],
         ("expect_column_values_to_be_between", "ts_step")),
        ([(utc(2017, 1, 3, 9), 1.1, 1.2, 1.0, 1.1, 3, None),
          (utc(2017, 1, 3, 9), 1.1, 1.2, 1.0, 1.1, 3, None)],
         ("expect_column_values_to_be_between", "ts_step")),
        ([(utc(2017, 1, 3, 9), 1.1, 1.2, 1.0, 1.1, -3, None)],
         ("expect_column_values_to_be_between", "volume")),
    ],
)  # fmt: skip
def test_validate_bars_broken_rule_fails_named_expectation(
    rows: list,  # type: ignore[type-arg]
    failing: tuple[str, str | None],
) -> None:
    # Act
    result = validate_bars(bar_frame(rows), "broken")

    # Assert
    assert not result.success
    failed = {
        (str(r.expectation_config.type), r.expectation_config.kwargs.get("column"))  # type: ignore[union-attr]
        for r in result.results
        if not r.success
    }
    kind, column = failing
    assert any(k == kind and (column is None or c == column) for k, c in failed), failed

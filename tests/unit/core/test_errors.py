"""Errors name the input and line, and carry the exit status the command line returns."""

from __future__ import annotations

from core.errors import DataError, SolodeskError, UsageError


def test_data_error_with_source_and_line_prefixes_both() -> None:
    # Act
    error = DataError("high 1.0 below low 2.0", source="EURUSD60.csv", line=7)

    # Assert
    assert str(error) == "EURUSD60.csv:7: high 1.0 below low 2.0"
    assert (error.source, error.line) == ("EURUSD60.csv", 7)


def test_data_error_with_source_only_prefixes_source() -> None:
    # Act / Assert
    assert str(DataError("no data lines", source="empty.csv")) == "empty.csv: no data lines"


def test_data_error_without_source_is_the_message() -> None:
    # Act / Assert
    assert str(DataError("nothing")) == "nothing"


def test_error_classes_map_to_exit_statuses() -> None:
    # Assert: bad input is 2, anything else deliberate is 1.
    assert SolodeskError("x").exit_code == 1
    assert UsageError("x").exit_code == 2
    assert DataError("x").exit_code == 2
    assert issubclass(DataError, UsageError)

"""Values read out of stored records: nested lookups and finite numbers."""

from __future__ import annotations

import math

import numpy as np

from core.records import dig, finite_number, whole_number


def test_dig_nested_mapping_returns_the_value_or_none_where_a_level_is_missing() -> None:
    record = {"oos": {"sharpe_ci": [-1.0, 2.0], "spa": None}, "n": 3}

    assert dig(record, "oos", "sharpe_ci") == [-1.0, 2.0]
    assert dig(record, "oos", "spa", "vs_flat_p") is None
    assert dig(record, "n", "deeper") is None
    assert dig(None, "oos") is None
    assert dig(record) is record


def test_finite_number_takes_reals_and_refuses_bools_text_and_non_finite() -> None:
    assert finite_number(2) == 2.0 and isinstance(finite_number(2), float)
    assert finite_number(np.float32(0.5)) == 0.5
    assert finite_number(np.int64(7)) == 7.0
    assert [finite_number(v) for v in (True, "1.5", None, math.nan, math.inf)] == [None] * 5


def test_whole_number_rounds_a_finite_number_and_passes_none() -> None:
    assert whole_number(157.6) == 158
    assert whole_number("157") is None
    assert whole_number(math.nan) is None

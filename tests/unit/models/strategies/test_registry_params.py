"""Parameters: parsing command-line values, building strategies, grids and random samples."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UsageError
from models.strategies.base import ParamSpec
from models.strategies.registry import (
    grid,
    make_strategy,
    parse_range,
    parse_ranges,
    parse_value,
    random_samples,
)
from models.strategies.rsi_reversion import RsiReversion
from models.strategies.sma_cross import SmaCross

WINDOW = ParamSpec(name="window", kind="int", default=10, low=2, high=100)
STEPPED = ParamSpec(name="window", kind="int", default=10, low=5, high=30, step=5)
LEVEL = ParamSpec(name="level", kind="float", default=0.5, low=0.0, high=1.0)
FLAG = ParamSpec(name="flag", kind="bool", default=False)
MODE = ParamSpec(name="mode", kind="choice", default="fast", choices=("fast", "slow", 3))


@pytest.mark.parametrize(
    ("spec", "raw", "expected"),
    [
        (WINDOW, "20", 20),
        (WINDOW, " 7 ", 7),
        (WINDOW, 20.0, 20),
        (WINDOW, np.int64(9), 9),
        (LEVEL, "0.25", 0.25),
        (LEVEL, 1, 1.0),
        (FLAG, "true", True),
        (FLAG, "No", False),
        (FLAG, "1", True),
        (FLAG, 0, False),
        (MODE, "slow", "slow"),
        (MODE, "3", 3),
    ],
)
def test_parse_value_valid_input_typed_by_kind(
    spec: ParamSpec, raw: object, expected: object
) -> None:
    # Act
    value = parse_value(spec, raw)

    # Assert
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("spec", "raw", "allowed"),
    [
        (WINDOW, "20.5", "an integer from 2 to 100"),
        (WINDOW, "1", "an integer from 2 to 100"),
        (WINDOW, True, "an integer from 2 to 100"),
        (LEVEL, "1.5", "a number from 0 to 1"),
        (LEVEL, "nan", "a number from 0 to 1"),
        (LEVEL, "abc", "a number from 0 to 1"),
        (FLAG, "maybe", "true or false"),
        (MODE, "medium", "one of fast, slow, 3"),
    ],
)
def test_parse_value_invalid_input_raises_saying_what_is_allowed(
    spec: ParamSpec, raw: object, allowed: str
) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=f"parameter {spec.name}=.*expected {allowed}"):
        parse_value(spec, raw)


def test_make_strategy_cli_strings_parsed_and_defaults_applied() -> None:
    # Act
    strategy = make_strategy(SmaCross, {"fast": "5", "allow_short": "true"})

    # Assert
    assert isinstance(strategy, SmaCross)
    assert (strategy.fast, strategy.slow, strategy.allow_short) == (5, 50, True)


def test_make_strategy_unknown_name_lists_declared() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"unknown parameter.*fats; declared: fast, slow"):
        make_strategy(SmaCross, {"fats": "5"})


def test_make_strategy_out_of_range_raises_naming_strategy_and_parameter() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"sma_cross: parameter slow='900'.*3 to 500"):
        make_strategy(SmaCross, {"slow": "900"})


def test_make_strategy_cross_parameter_check_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="sma_cross: fast=60 must be below slow=50"):
        make_strategy(SmaCross, {"fast": "60"})


@pytest.mark.parametrize(
    ("text", "spec", "expected"),
    [
        ("5:50:5", WINDOW, [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]),
        ("5:12:5", WINDOW, [5, 10]),
        ("3:6", WINDOW, [3, 4, 5, 6]),
        ("5,10,20", WINDOW, [5, 10, 20]),
        ("20", WINDOW, [20]),
        ("5,5,10", WINDOW, [5, 10]),
        ("0.1:0.3:0.1", LEVEL, [0.1, 0.2, 0.3]),
        ("0.25, 0.75", LEVEL, [0.25, 0.75]),
        ("true,false", FLAG, [True, False]),
        ("slow,fast", MODE, ["slow", "fast"]),
    ],
)
def test_parse_range_text_gives_typed_values(
    text: str, spec: ParamSpec, expected: list[object]
) -> None:
    # Act
    values = parse_range(spec, text)

    # Assert
    assert values == expected
    assert [type(v) for v in values] == [type(v) for v in expected]


@pytest.mark.parametrize(
    ("text", "spec", "message"),
    [
        ("5:50:0", WINDOW, "step must be positive"),
        ("50:5:5", WINDOW, "stop is below start"),
        ("1:50:5", WINDOW, "an integer from 2 to 100"),
        ("0.1:0.3", LEVEL, "a float range needs its step"),
        ("a:b:c", WINDOW, "expected start:stop:step"),
        ("5,,10", WINDOW, "empty value"),
        ("true:false", FLAG, "ranges are for numbers"),
        ("0:1:0.000001", LEVEL, "more than 100000"),
    ],
)
def test_parse_range_bad_text_raises(text: str, spec: ParamSpec, message: str) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=message):
        parse_range(spec, text)


def test_parse_ranges_unknown_name_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"unknown parameter.*slowest; declared: fast, slow"):
        parse_ranges(SmaCross.params, {"slowest": "5:10"})


def test_grid_declared_ranges_span_each_kind() -> None:
    # Act
    combinations, dropped = grid([STEPPED, LEVEL, FLAG, MODE], points=3)

    # Assert: 6 windows x 3 levels x 2 flags x 3 modes, first parameter slowest
    assert len(combinations) == 6 * 3 * 2 * 3
    assert dropped == 0
    assert sorted({c["window"] for c in combinations}) == [5, 10, 15, 20, 25, 30]
    assert sorted({c["level"] for c in combinations}) == [0.0, 0.5, 1.0]
    assert combinations[0] == {"window": 5, "level": 0.0, "flag": False, "mode": "fast"}
    assert combinations[-1] == {"window": 30, "level": 1.0, "flag": True, "mode": 3}


def test_grid_int_without_step_takes_points_rounded_half_up() -> None:
    # Act
    combinations, _ = grid([WINDOW], points=4)

    # Assert: linspace(2, 100, 4) = 2, 34.67, 67.33, 100
    assert [c["window"] for c in combinations] == [2, 35, 67, 100]


def test_grid_explicit_ranges_override_declared_ones() -> None:
    # Act
    combinations, _ = grid([WINDOW, FLAG], {"window": ["5", 8], "flag": [True]})

    # Assert
    assert combinations == [{"window": 5, "flag": True}, {"window": 8, "flag": True}]


def test_grid_strategy_check_drops_and_counts_rejected() -> None:
    # Act
    ranges: dict[str, list[object]] = {
        "fast": [5, 20, 50],
        "slow": [20, 50],
        "allow_short": [False],
    }
    combinations, dropped = grid(SmaCross, ranges)

    # Assert: fast >= slow rejected for (20, 20), (50, 20), (50, 50)
    assert [(c["fast"], c["slow"]) for c in combinations] == [(5, 20), (5, 50), (20, 50)]
    assert dropped == 3


def test_grid_range_for_unknown_parameter_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"range for unknown parameter.*period"):
        grid(SmaCross, {"period": [5]})


def test_grid_range_value_out_of_bounds_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="parameter fast=1"):
        grid(SmaCross, {"fast": [1, 5]})


def test_grid_default_rsi_space_keeps_only_ordered_levels() -> None:
    # Act
    combinations, dropped = grid(RsiReversion, points=3)

    # Assert
    assert dropped > 0
    assert len(combinations) + dropped == 3**4 * 2
    assert all(float(c["lower"]) < float(c["exit_level"]) < float(c["upper"]) for c in combinations)


def test_random_samples_same_seed_same_draws() -> None:
    # Act
    first = random_samples(SmaCross, 50, seed=11)
    second = random_samples(SmaCross, 50, seed=11)
    other = random_samples(SmaCross, 50, seed=12)

    # Assert
    assert first == second
    assert first[0] != other[0]


def test_random_samples_count_and_bounds() -> None:
    # Act
    samples, dropped = random_samples(SmaCross, 200, seed=3)

    # Assert: every draw is either kept or counted as dropped, and kept ones are valid
    assert len(samples) + dropped == 200
    assert dropped > 0
    assert all(2 <= int(s["fast"]) < int(s["slow"]) <= 500 for s in samples)
    assert all(type(s["fast"]) is int and type(s["allow_short"]) is bool for s in samples)


def test_random_samples_explicit_ranges_and_steps_respected() -> None:
    # Act
    samples, dropped = random_samples(
        [STEPPED, LEVEL, MODE], 100, seed=5, ranges={"mode": ["slow"]}
    )

    # Assert
    assert (len(samples), dropped) == (100, 0)
    assert {s["window"] for s in samples} <= {5, 10, 15, 20, 25, 30}
    assert all(0.0 <= float(s["level"]) <= 1.0 for s in samples)
    assert {s["mode"] for s in samples} == {"slow"}


def test_random_samples_negative_count_raises() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="must be 0 or more"):
        random_samples(SmaCross, -1, seed=0)

"""The strategy vault: the strategy interface, the registry that finds plug-ins, the built-ins.

Built-in strategies are imported on demand through the registry (entry points), not here, so
importing the vault stays cheap.
"""

from __future__ import annotations

from models.strategies.base import ParamKind, ParamSpec, Signals, Strategy
from models.strategies.registry import (
    ENTRY_POINT_GROUP,
    available_strategies,
    check_strategy_class,
    grid,
    load_strategy,
    make_strategy,
    parse_params,
    parse_range,
    parse_ranges,
    parse_value,
    random_samples,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ParamKind",
    "ParamSpec",
    "Signals",
    "Strategy",
    "available_strategies",
    "check_strategy_class",
    "grid",
    "load_strategy",
    "make_strategy",
    "parse_params",
    "parse_range",
    "parse_ranges",
    "parse_value",
    "random_samples",
]

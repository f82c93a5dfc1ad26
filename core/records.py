"""Reading values out of stored records (run summaries, JSON records): nested lookups that give
None for what is missing, and numbers that are finite or None."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any


def dig(mapping: object, *keys: str) -> Any:
    """Return ``mapping[k1][k2]...``, or None where a level is missing or not a mapping."""
    value: Any = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def finite_number(value: object) -> float | None:
    """Return a real number (not a bool) as a float when it is finite, else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def whole_number(value: object) -> int | None:
    """Return :func:`finite_number` of ``value`` rounded to an int, or None."""
    number = finite_number(value)
    return None if number is None else round(number)

"""The strategy registry: find strategies by name, build them from parameter values, span sweeps.

Strategies come from two places, never from scanning folders:

- **entry points** of the group ``solodesk.strategies`` (the built-ins, and any installed
  package that declares ``name = "module:Class"`` there);
- **the user's files**, named in the settings (``Settings.strategies``): ``name`` →
  ``"path/to/file.py:ClassName"``, a relative path taken from the settings file's folder.

A user entry with the name of an entry point is an error naming both origins, not a silent
override: a stored backtest says ``sma_cross`` and must mean one thing. Two installed packages
declaring the same name are the same error. The class's own ``name`` must equal the name it is
registered under.

Besides the :class:`~models.strategies.base.Strategy` protocol, a strategy may define a
classmethod ``check_params(values)`` that receives every parameter value (defaults applied)
and raises :class:`~core.errors.UsageError` when they do not fit together (``fast < slow``).
:func:`make_strategy` calls it, and :func:`grid` and :func:`random_samples` drop the
combinations it rejects and return how many they dropped beside the combinations kept.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from importlib import metadata
from itertools import product
from pathlib import Path
from types import MappingProxyType
from typing import cast

import numpy as np

from core.errors import UsageError
from core.settings import config_file
from models.strategies.base import ParamSpec, Strategy

ENTRY_POINT_GROUP = "solodesk.strategies"
MAX_RANGE_VALUES = 100_000
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})

ParamValue = int | float | bool | str
NO_USER_STRATEGIES: Mapping[str, str] = MappingProxyType({})


# ---------------------------------------------------------------------------------------------
# Finding and loading
# ---------------------------------------------------------------------------------------------


def available_strategies(
    user: Mapping[str, str] = NO_USER_STRATEGIES, base_dir: Path | None = None
) -> dict[str, str]:
    """Return every strategy name with where it comes from, sorted by name.

    The origin is ``"entry point <distribution>"`` for installed strategies and
    ``"<absolute path>:<Class>"`` for the user's files. Nothing is imported.

    Parameters
    ----------
    user
        The user's strategies, name → ``"path/file.py:Class"`` (``Settings.strategies``).
    base_dir
        Folder that relative paths in ``user`` start from; default the settings file's folder.

    Raises
    ------
    UsageError
        If a user entry is malformed, or a name is defined twice (naming both origins).
    """
    points = _entry_points()
    files = {name: _parse_user_entry(name, entry, base_dir) for name, entry in user.items()}
    for name in sorted(set(points) | set(files)):
        _refuse_clash(name, points.get(name, []), files.get(name))
    origins = {name: _entry_point_origin(found[0]) for name, found in points.items()}
    origins.update({name: f"{path}:{attr}" for name, (path, attr) in files.items()})
    return dict(sorted(origins.items()))


def load_strategy(
    name: str, user: Mapping[str, str] = NO_USER_STRATEGIES, base_dir: Path | None = None
) -> type[Strategy]:
    """Return the strategy class registered as ``name``.

    A user entry ``"path/file.py:Class"`` is imported from its file (relative paths from
    ``base_dir``, default the settings file's folder); an entry point through
    ``importlib.metadata``. The class is checked against the strategy interface.

    Raises
    ------
    UsageError
        If the name is unknown (listing the available ones), defined twice (naming both
        origins), cannot be imported, or does not satisfy the interface (naming the file or
        entry point and what is missing).
    """
    points = _entry_points().get(name, [])
    file = _parse_user_entry(name, user[name], base_dir) if name in user else None
    _refuse_clash(name, points, file)
    if file is not None:
        path, attr = file
        origin = f"{path}:{attr}"
        found = _load_from_file(name, path, attr)
    elif points:
        point = points[0]
        origin = f"{_entry_point_origin(point)} ({point.value})"
        try:
            found = point.load()
        except Exception as exc:
            msg = f"strategy {name}: {origin} cannot be loaded: {type(exc).__name__}: {exc}"
            raise UsageError(msg) from exc
    else:
        known = _describe_available(user)
        raise UsageError(f"unknown strategy {name!r}; available: {known}")
    return check_strategy_class(found, name, origin)


def check_strategy_class(found: object, name: str, origin: str) -> type[Strategy]:
    """Return ``found`` as a strategy class after checking it has the strategy interface.

    Checked: it is a class; ``name`` is the registered name; ``params`` is a tuple of
    ``ParamSpec`` with distinct names whose defaults are valid values; ``signals`` is a
    method; ``needs_features``, when present, is a tuple of strings.

    Raises
    ------
    UsageError
        Naming ``origin`` and every problem found.
    """
    if not isinstance(found, type):
        raise UsageError(f"strategy {name}: {origin} is not a class ({type(found).__name__})")
    problems: list[str] = []
    declared = getattr(found, "name", None)
    if not isinstance(declared, str) or not declared:
        problems.append("no `name` (a class attribute holding the strategy's name)")
    elif declared != name:
        problems.append(f"its `name` is {declared!r}, but it is registered as {name!r}")
    params = getattr(found, "params", None)
    if not isinstance(params, tuple) or not all(isinstance(p, ParamSpec) for p in params):
        problems.append("no `params` (a tuple of ParamSpec)")
    else:
        names = [spec.name for spec in params]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            problems.append(f"parameters declared twice: {', '.join(twice)}")
        for spec in params:
            try:
                parse_value(spec, spec.default)
            except UsageError as exc:
                problems.append(f"bad default: {exc}")
    if not callable(getattr(found, "signals", None)):
        problems.append("no `signals(bars, features)` method")
    needs = getattr(found, "needs_features", ())
    if not isinstance(needs, tuple) or not all(isinstance(n, str) for n in needs):
        problems.append("`needs_features` is not a tuple of column names")
    if problems:
        msg = f"strategy {name}: {origin}: {found.__qualname__} is not a strategy: "
        raise UsageError(msg + "; ".join(problems))
    return cast("type[Strategy]", found)


def _entry_points() -> dict[str, list[metadata.EntryPoint]]:
    found: dict[str, list[metadata.EntryPoint]] = {}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        same = found.setdefault(point.name, [])
        if all(other.value != point.value for other in same):
            same.append(point)
    return found


def _entry_point_origin(point: metadata.EntryPoint) -> str:
    dist = point.dist.name if point.dist is not None else "unknown distribution"
    return f"entry point {dist}"


def _parse_user_entry(name: str, entry: str, base_dir: Path | None) -> tuple[Path, str]:
    where, colon, attr = entry.rpartition(":")
    if not colon or not where or not attr.isidentifier():
        msg = (
            f"settings strategies.{name} = {entry!r}: expected 'path/to/file.py:ClassName' "
            f"(relative paths start at {_base(base_dir)})"
        )
        raise UsageError(msg)
    path = Path(where).expanduser()
    if not path.is_absolute():
        path = _base(base_dir) / path
    return path.resolve(), attr


def _base(base_dir: Path | None) -> Path:
    return (base_dir if base_dir is not None else config_file().resolve().parent).resolve()


def _refuse_clash(
    name: str, points: Sequence[metadata.EntryPoint], file: tuple[Path, str] | None
) -> None:
    origins = [f"{_entry_point_origin(p)} ({p.value})" for p in points]
    if file is not None:
        origins.append(f"settings strategies.{name} ({file[0]}:{file[1]})")
    if len(origins) > 1:
        msg = (
            f"strategy {name!r} is defined more than once: {' and '.join(origins)}; "
            "give the user's strategy another name in the settings"
        )
        raise UsageError(msg)


def _describe_available(user: Mapping[str, str]) -> str:
    names = sorted(set(_entry_points()) | set(user))
    return ", ".join(names) if names else "none (no entry points and no user strategies)"


def _load_from_file(name: str, path: Path, attr: str) -> object:
    if not path.is_file():
        raise UsageError(f"strategy {name}: file {path} not found (settings strategies.{name})")
    digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:12]
    module_name = f"solodesk_user_strategy_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"strategy {name}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # A flat name registered before running the file, so that dataclasses in it and pickle
    # (which imports a class's module by name) find the module.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        msg = f"strategy {name}: importing {path} failed: {type(exc).__name__}: {exc}"
        raise UsageError(msg) from exc
    if not hasattr(module, attr):
        defined = sorted(k for k, v in vars(module).items() if isinstance(v, type))
        msg = (
            f"strategy {name}: {path} defines no {attr!r} "
            f"(classes there: {', '.join(defined) or 'none'})"
        )
        raise UsageError(msg)
    return getattr(module, attr)


# ---------------------------------------------------------------------------------------------
# Parameter values
# ---------------------------------------------------------------------------------------------


def parse_value(spec: ParamSpec, raw: object) -> ParamValue:
    """Return ``raw`` as a valid value of the parameter ``spec``.

    Strings are parsed by the declared kind (``"20"``, ``"1.5"``, ``"true"``/``"false"``,
    ``"yes"``/``"no"``, ``"1"``/``"0"``); numbers must lie within ``[low, high]``; a choice
    must be one of ``choices`` (a string matches a choice whose text it equals).

    Raises
    ------
    UsageError
        Naming the parameter, the value and what is allowed.
    """
    if isinstance(raw, np.generic):
        raw = raw.item()
    if spec.kind == "int":
        return _parse_int(spec, raw)
    if spec.kind == "float":
        return _parse_float(spec, raw)
    if spec.kind == "bool":
        return _parse_bool(spec, raw)
    return _parse_choice(spec, raw)


def _allowed(spec: ParamSpec) -> str:
    if spec.kind == "int":
        return f"an integer from {_number(spec.low)} to {_number(spec.high)}"
    if spec.kind == "float":
        return f"a number from {_number(spec.low)} to {_number(spec.high)}"
    if spec.kind == "bool":
        return "true or false"
    return "one of " + ", ".join(str(c) for c in spec.choices)


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _bad(spec: ParamSpec, raw: object) -> UsageError:
    return UsageError(f"parameter {spec.name}={raw!r}: expected {_allowed(spec)}")


def _parse_int(spec: ParamSpec, raw: object) -> int:
    value: int
    if isinstance(raw, bool):
        raise _bad(spec, raw)
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str):
        try:
            value = int(raw.strip())
        except ValueError:
            raise _bad(spec, raw) from None
    else:
        raise _bad(spec, raw)
    if not _in_range(spec, value):
        raise _bad(spec, raw)
    return value


def _parse_float(spec: ParamSpec, raw: object) -> float:
    value: float
    if isinstance(raw, bool):
        raise _bad(spec, raw)
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise _bad(spec, raw) from None
    else:
        raise _bad(spec, raw)
    if not math.isfinite(value) or not _in_range(spec, value):
        raise _bad(spec, raw)
    return value


def _parse_bool(spec: ParamSpec, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise _bad(spec, raw)


def _parse_choice(spec: ParamSpec, raw: object) -> ParamValue:
    for choice in spec.choices:
        if type(raw) is type(choice) and raw == choice:
            return choice
    if isinstance(raw, str):
        for choice in spec.choices:
            if str(choice) == raw.strip():
                return choice
    raise _bad(spec, raw)


def _in_range(spec: ParamSpec, value: float) -> bool:
    low = -math.inf if spec.low is None else spec.low
    high = math.inf if spec.high is None else spec.high
    return low <= value <= high


def parse_params(
    specs: Sequence[ParamSpec], values: Mapping[str, object], strategy: str = "strategy"
) -> dict[str, ParamValue]:
    """Return every declared parameter's value: ``values`` parsed, defaults for the rest.

    A value of ``None`` counts as not given.

    Raises
    ------
    UsageError
        If a name is not declared (listing the declared ones) or a value is invalid.
    """
    declared = {spec.name: spec for spec in specs}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        listed = ", ".join(declared) or "none"
        msg = f"{strategy}: unknown parameter(s) {', '.join(unknown)}; declared: {listed}"
        raise UsageError(msg)
    parsed: dict[str, ParamValue] = {}
    for name, spec in declared.items():
        raw = values.get(name)
        try:
            parsed[name] = parse_value(spec, spec.default if raw is None else raw)
        except UsageError as exc:
            raise UsageError(f"{strategy}: {exc}") from None
    return parsed


def make_strategy(cls: type[Strategy], values: Mapping[str, object]) -> Strategy:
    """Return an instance of ``cls`` built from parameter values (CLI strings or typed values).

    Values are parsed by each parameter's kind, defaults fill the parameters not given (or
    given as ``None``), ranges and choices are checked, and then the strategy's own
    ``check_params`` (when it has one) checks how the values fit together.

    Raises
    ------
    UsageError
        If a name is not declared, a value is invalid, or the combination is rejected.
    """
    parsed = parse_params(cls.params, values, cls.name)
    _check_combination(cls, parsed)
    try:
        return cls(**parsed)
    except TypeError as exc:
        msg = f"{cls.name}: {cls.__qualname__}(...) does not take its declared parameters: {exc}"
        raise UsageError(msg) from exc


def _check_combination(cls: type[Strategy], values: Mapping[str, ParamValue]) -> None:
    check = _combination_check(cls)
    if check is None:
        return
    try:
        check(values)
    except UsageError as exc:
        text = str(exc)
        raise UsageError(text if text.startswith(cls.name) else f"{cls.name}: {text}") from None


def _combination_check(
    cls: type[Strategy] | None,
) -> Callable[[Mapping[str, ParamValue]], None] | None:
    check = getattr(cls, "check_params", None) if cls is not None else None
    return check if callable(check) else None


# ---------------------------------------------------------------------------------------------
# Parameter spaces for sweeps
# ---------------------------------------------------------------------------------------------


def parse_range(spec: ParamSpec, text: str) -> list[ParamValue]:
    """Return the values a command-line range names, typed and checked by ``spec``.

    ``"start:stop:step"`` is start, start + step, ... up to stop inclusive (ints and floats;
    ``"start:stop"`` steps ints by 1); ``"a,b,c"`` is those values; ``"a"`` is one value.
    Float steps are decimal: ``"0.1:0.3:0.1"`` gives 0.1, 0.2, 0.3. Repeated values are kept
    once, in order.

    Raises
    ------
    UsageError
        If the text is malformed, a step is not positive, a value is out of range, or the
        range holds more than ``MAX_RANGE_VALUES`` values.
    """
    stripped = text.strip()
    if not stripped:
        raise UsageError(f"parameter {spec.name}: empty range")
    if ":" in stripped:
        if spec.kind not in ("int", "float"):
            msg = f"parameter {spec.name}={text!r}: start:stop:step ranges are for numbers"
            raise UsageError(msg)
        raw: list[object] = list(_stepped(text, spec))
    else:
        parts = stripped.split(",")
        if any(not part.strip() for part in parts):
            raise UsageError(f"parameter {spec.name}={text!r}: empty value in the list")
        raw = list(parts)
    return _distinct(parse_value(spec, value) for value in raw)


def _stepped(text: str, spec: ParamSpec) -> list[str]:
    parts = [part.strip() for part in text.split(":")]
    usage = f"parameter {spec.name}={text!r}: expected start:stop:step"
    if len(parts) not in (2, 3):
        raise UsageError(usage)
    if len(parts) == 2:
        if spec.kind != "int":
            raise UsageError(f"{usage} (a float range needs its step)")
        parts.append("1")
    try:
        start, stop, step = (Decimal(part) for part in parts)
    except InvalidOperation:
        raise UsageError(usage) from None
    if not all(d.is_finite() for d in (start, stop, step)):
        raise UsageError(usage)
    if step <= 0:
        raise UsageError(f"parameter {spec.name}={text!r}: the step must be positive")
    if stop < start:
        raise UsageError(f"parameter {spec.name}={text!r}: stop is below start")
    count = int((stop - start) / step) + 1
    if count > MAX_RANGE_VALUES:
        msg = f"parameter {spec.name}={text!r}: {count} values, more than {MAX_RANGE_VALUES}"
        raise UsageError(msg)
    return [str(start + k * step) for k in range(count)]


def parse_ranges(specs: Sequence[ParamSpec], texts: Mapping[str, str]) -> dict[str, list[object]]:
    """Return :func:`parse_range` of each ``name → text``, for :func:`grid` or sampling.

    Raises
    ------
    UsageError
        If a name is not declared (listing the declared ones) or a range is invalid.
    """
    declared = {spec.name: spec for spec in specs}
    unknown = sorted(set(texts) - set(declared))
    if unknown:
        msg = f"unknown parameter(s) {', '.join(unknown)}; declared: {', '.join(declared)}"
        raise UsageError(msg)
    return {name: list(parse_range(declared[name], text)) for name, text in texts.items()}


def grid(
    specs: type[Strategy] | Sequence[ParamSpec],
    ranges: Mapping[str, Sequence[object]] | None = None,
    *,
    points: int = 5,
) -> tuple[list[dict[str, ParamValue]], int]:
    """Return every combination of parameter values and how many the strategy's check dropped.

    The combinations are dicts (name → value), the first parameter varying slowest.

    Without an explicit range a parameter spans its declared range: an int with a ``step``
    takes low, low + step, ... up to high; an int without one and a float take ``points``
    evenly spaced values from low to high (ints rounded half up, repeats kept once); a bool
    takes False and True; a choice takes every choice. An explicit range (values or
    command-line strings, see :func:`parse_range`) replaces the declared one. When ``specs``
    is a strategy class, combinations its ``check_params`` rejects are left out; the second
    item of the result counts them.

    Raises
    ------
    UsageError
        If a range names an undeclared parameter, holds an invalid value or is empty, or if
        ``points`` is below 1.
    """
    params, check = _space(specs)
    _refuse_unknown({spec.name for spec in params}, ranges)
    axes = [_axis(spec, ranges, points) for spec in params]
    names = [spec.name for spec in params]
    kept: list[dict[str, ParamValue]] = []
    dropped = 0
    for values in product(*axes):
        combination = dict(zip(names, values, strict=True))
        if _passes(check, combination):
            kept.append(combination)
        else:
            dropped += 1
    return kept, dropped


def random_samples(
    specs: type[Strategy] | Sequence[ParamSpec],
    n: int,
    seed: int,
    ranges: Mapping[str, Sequence[object]] | None = None,
) -> tuple[list[dict[str, ParamValue]], int]:
    """Return ``n`` random combinations drawn with ``seed``, and how many were dropped.

    The same seed gives the same draws.

    Each parameter is drawn uniformly: from its explicit range when given; else an int from
    its step grid (with a ``step``) or from every integer in [low, high]; a float from
    [low, high); a bool or a choice among its values. When ``specs`` is a strategy class, the
    draws its ``check_params`` rejects are left out and counted in the second item, so fewer
    than ``n`` may come back; repeated draws are kept (rare unless the space is small).

    Raises
    ------
    UsageError
        If ``n`` is negative or a range is invalid.
    """
    if n < 0:
        raise UsageError(f"number of random samples {n}: must be 0 or more")
    params, check = _space(specs)
    declared = {spec.name for spec in params}
    _refuse_unknown(declared, ranges)
    rng = np.random.default_rng(seed)
    explicit = {
        spec.name: _explicit_axis(spec, ranges[spec.name])
        for spec in params
        if ranges is not None and spec.name in ranges
    }
    kept: list[dict[str, ParamValue]] = []
    dropped = 0
    for _ in range(n):
        combination: dict[str, ParamValue] = {}
        for spec in params:
            if spec.name in explicit:
                pool = explicit[spec.name]
                combination[spec.name] = pool[int(rng.integers(len(pool)))]
            else:
                combination[spec.name] = _draw(spec, rng)
        if _passes(check, combination):
            kept.append(combination)
        else:
            dropped += 1
    return kept, dropped


def _space(
    specs: type[Strategy] | Sequence[ParamSpec],
) -> tuple[tuple[ParamSpec, ...], Callable[[Mapping[str, ParamValue]], None] | None]:
    if isinstance(specs, type):
        return tuple(specs.params), _combination_check(specs)
    return tuple(specs), None


def _passes(
    check: Callable[[Mapping[str, ParamValue]], None] | None, values: Mapping[str, ParamValue]
) -> bool:
    if check is None:
        return True
    try:
        check(values)
    except UsageError:
        return False
    return True


def _refuse_unknown(declared: set[str], ranges: Mapping[str, Sequence[object]] | None) -> None:
    unknown = sorted(set(ranges or {}) - declared)
    if unknown:
        listed = ", ".join(sorted(declared)) or "none"
        msg = f"range for unknown parameter(s) {', '.join(unknown)}; declared: {listed}"
        raise UsageError(msg)


def _axis(
    spec: ParamSpec, ranges: Mapping[str, Sequence[object]] | None, points: int
) -> list[ParamValue]:
    if ranges is not None and spec.name in ranges:
        return _explicit_axis(spec, ranges[spec.name])
    if points < 1:
        raise UsageError(f"grid points {points}: must be at least 1")
    return _declared_axis(spec, points)


def _explicit_axis(spec: ParamSpec, values: Sequence[object]) -> list[ParamValue]:
    if isinstance(values, str):
        return parse_range(spec, values)
    if len(values) == 0:
        raise UsageError(f"parameter {spec.name}: empty range")
    return _distinct(parse_value(spec, value) for value in values)


def _declared_axis(spec: ParamSpec, points: int) -> list[ParamValue]:
    if spec.kind == "bool":
        return [False, True]
    if spec.kind == "choice":
        return list(spec.choices)
    low, high = cast(float, spec.low), cast(float, spec.high)
    if spec.kind == "float":
        return _distinct(float(v) for v in np.linspace(low, high, points))
    first, last = math.ceil(low), math.floor(high)
    if spec.step is not None:
        step = max(1, round(spec.step))
        return list(range(first, last + 1, step))
    if last - first + 1 <= points:
        return list(range(first, last + 1))
    return _distinct(math.floor(v + 0.5) for v in np.linspace(first, last, points))


def _draw(spec: ParamSpec, rng: np.random.Generator) -> ParamValue:
    if spec.kind == "bool":
        return bool(rng.integers(2))
    if spec.kind == "choice":
        return spec.choices[int(rng.integers(len(spec.choices)))]
    low, high = cast(float, spec.low), cast(float, spec.high)
    if spec.kind == "float":
        return float(rng.uniform(low, high))
    first, last = math.ceil(low), math.floor(high)
    if spec.step is not None:
        steps = list(range(first, last + 1, max(1, round(spec.step))))
        return steps[int(rng.integers(len(steps)))]
    return int(rng.integers(first, last + 1))


def _distinct(values: Iterable[ParamValue]) -> list[ParamValue]:
    seen: set[tuple[type, ParamValue]] = set()
    kept: list[ParamValue] = []
    for value in values:
        key = (type(value), value)
        if key not in seen:
            seen.add(key)
            kept.append(value)
    return kept

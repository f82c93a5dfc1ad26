"""Feature sets: named selections of features, context, cross assets and a label.

A feature set is declared in the ``features`` section of ``params.yaml``::

    features:
      sets:
        default:
          features: default                 # the whole default set, or a list of
                                            # default-set names and {kind, name, params}
          context:                          # features of completed higher-timeframe bars
            - {timeframe: H4, features: [rsi_14, atr_rel_14]}
          cross_assets: [GBPUSD]            # other symbols' log returns, point in time
          label: {kind: triple_barrier, pt: 2.0, sl: 2.0, max_holding: 24, vol_span: 50}
          weights: true                     # add the labels' average-uniqueness weights

:func:`parse_feature_sets` turns that section into frozen :class:`FeatureSetConfig` objects;
:meth:`FeatureSetConfig.resolve` turns one into the :class:`FeatureSpec` objects it names, and
:func:`feature_table` computes it on bars. Nothing here reads or writes files.

A set's definition hash (:meth:`ResolvedFeatureSet.definition_hash`) is the SHA-256 of the
canonical JSON of the resolved set (every spec with its parameters, warm-up and range, the
context, the cross assets, the label and the weights flag) and of
:data:`FEATURE_LIBRARY_VERSION`. Stored builds are keyed on it, so any change to a definition,
or a bump of the library version, makes the next build compute afresh.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC as UTC_TZ
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.clocks import UTC, Clock
from core.errors import UsageError
from core.timeframes import Timeframe, parse_timeframe
from core.types import VolumeKind
from pipelines.features.registry import (
    BUILDERS,
    Family,
    FeatureSpec,
    applicable_specs,
    compute_features,
    default_feature_set,
    recursive_spec,
    windowed_spec,
)
from pipelines.labels import HorizonLabelConfig, LabelConfig, TripleBarrierConfig, make_labels
from pipelines.pit import join_known

# Bump whenever the values a spec or a label config produces change (a formula, a warm-up, a
# fix): the definition hash includes it, so every stored build is then recomputed.
FEATURE_LIBRARY_VERSION = 2

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
COLUMN_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
LABEL_COLUMNS = ("label", "label_log_return", "label_barrier", "label_end", "label_weight")
# Bars of the synthetic series on which the warm-up of a feature outside the default set is
# measured, beyond four times its largest parameter.
_PROBE_BARS = 256

FeatureRole = Literal["feature", "context", "cross_asset", "label"]


class FeatureEntry(BaseModel):
    """One feature given by its builder: ``{kind: rsi, name: rsi_21, params: {n: 21}}``.

    Attributes
    ----------
    kind
        A key of :data:`~pipelines.features.registry.BUILDERS`.
    name
        Column name; default ``<kind>_<param values>``, e.g. ``rsi_21``.
    params
        The builder's parameters (the same names the default set uses for that kind).
    family
        Needed only for a kind the default set does not use.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    name: str | None = None
    params: dict[str, float] = Field(default_factory=dict)
    family: Family | None = None

    @field_validator("params")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not np.isfinite(v)}
        if bad:
            msg = f"parameters must be finite numbers, got {bad}"
            raise ValueError(msg)
        return value


FeatureList = tuple[str | FeatureEntry, ...] | Literal["default"]


def _feature_list(value: object) -> object:
    """Normalise a ``features`` value: ``default`` or a list of names and mappings."""
    if value == "default":
        return value
    if isinstance(value, str) or not isinstance(value, list | tuple):
        msg = "expected 'default' or a list of feature names and {kind, name, params} mappings"
        raise ValueError(msg)
    items: list[str | FeatureEntry] = []
    for n, item in enumerate(value):
        if isinstance(item, str):
            items.append(item)
        elif isinstance(item, Mapping | FeatureEntry):
            try:
                items.append(FeatureEntry.model_validate(item))
            except ValidationError as exc:
                raise ValueError(f"item {n}: {_pydantic_problems(exc)}") from None
        else:
            msg = f"item {n}: {item!r} is neither a feature name nor a {{kind, params}} mapping"
            raise ValueError(msg)
    return tuple(items)


def _timeframe_value(value: object) -> Timeframe:
    try:
        return parse_timeframe(value)  # type: ignore[arg-type]
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def _column_prefix(value: str | None) -> str | None:
    if value is not None and not COLUMN_PATTERN.match(value.rstrip("_") or "_"):
        msg = f"prefix {value!r}: use letters, digits and underscores"
        raise ValueError(msg)
    return value


class ContextConfig(BaseModel):
    """Features of a higher timeframe of the same symbol, as known at each bar's end.

    Attributes
    ----------
    timeframe
        The higher timeframe (H4, D1, ...); its stored series must exist.
    features
        ``default`` or a list of feature names and entries, computed on that timeframe.
    prefix
        Prepended to its column names; default the timeframe in lower case and ``_``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeframe: Timeframe
    features: FeatureList
    prefix: str | None = None

    @field_validator("timeframe", mode="before")
    @classmethod
    def _timeframe(cls, value: object) -> Timeframe:
        return _timeframe_value(value)

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: object) -> object:
        return _feature_list(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return _column_prefix(value)

    @property
    def column_prefix(self) -> str:
        """Return the prefix of its columns (``h4_``)."""
        return self.prefix if self.prefix is not None else f"{self.timeframe.value.lower()}_"


class CrossAssetConfig(BaseModel):
    """Features of another symbol on the same timeframe, as known at each bar's end.

    A plain symbol (``GBPUSD``) stands for ``{symbol: GBPUSD, features: [log_return_1]}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    features: FeatureList = ("log_return_1",)
    prefix: str | None = None

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: object) -> object:
        return _feature_list(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return _column_prefix(value)

    @model_validator(mode="before")
    @classmethod
    def _plain_symbol(cls, value: object) -> object:
        return {"symbol": value} if isinstance(value, str) else value

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("symbol is empty")
        return value.strip().upper()

    @property
    def column_prefix(self) -> str:
        """Return the prefix of its columns (``gbpusd_``)."""
        if self.prefix is not None:
            return self.prefix
        return re.sub(r"[^a-z0-9_]", "_", self.symbol.lower()) + "_"


class FeatureSetConfig(BaseModel):
    """One feature set of ``params.yaml``.

    Attributes
    ----------
    features
        ``default`` (the whole default set) or a list of names from it and
        ``{kind, name, params}`` entries.
    context
        Higher-timeframe features joined point in time (:class:`ContextConfig`).
    cross_assets
        Other symbols' features joined point in time (:class:`CrossAssetConfig`).
    label
        The label to attach (:class:`~pipelines.labels.HorizonLabelConfig` or
        :class:`~pipelines.labels.TripleBarrierConfig`), or none.
    weights
        Attach the labels' average-uniqueness weights (needs a label).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: FeatureList = "default"
    context: tuple[ContextConfig, ...] = ()
    cross_assets: tuple[CrossAssetConfig, ...] = ()
    label: LabelConfig | None = None
    weights: bool = False

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: object) -> object:
        return _feature_list(value)

    @field_validator("context", "cross_assets", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return () if value is None else value

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSetConfig:
        if self.weights and self.label is None:
            raise ValueError("weights: true needs a label")
        timeframes = [c.timeframe for c in self.context]
        if len(set(timeframes)) < len(timeframes):
            raise ValueError(f"context names a timeframe twice: {[t.value for t in timeframes]}")
        symbols = [c.symbol for c in self.cross_assets]
        if len(set(symbols)) < len(symbols):
            raise ValueError(f"cross_assets names a symbol twice: {symbols}")
        prefixes = [c.column_prefix for c in self.context]
        prefixes += [c.column_prefix for c in self.cross_assets]
        if len(set(prefixes)) < len(prefixes):
            raise ValueError(f"context and cross_assets share a column prefix: {prefixes}")
        return self

    def resolve(self) -> ResolvedFeatureSet:
        """Return the specs this set names; see :func:`resolve_feature_set`."""
        return resolve_feature_set(self)

    def definition_hash(self) -> str:
        """Return the hash of the resolved definition (see :meth:`ResolvedFeatureSet.definition_hash`)."""
        return self.resolve().definition_hash()


class FeatureSetsConfig(BaseModel):
    """The ``features`` section of ``params.yaml``: named feature sets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sets: dict[str, FeatureSetConfig]

    @field_validator("sets")
    @classmethod
    def _names(cls, value: dict[str, FeatureSetConfig]) -> dict[str, FeatureSetConfig]:
        bad = [name for name in value if not NAME_PATTERN.match(name)]
        if bad:
            msg = (
                f"set names {bad}: use lower-case letters, digits and underscores, starting with "
                "a letter (a set's name is part of its catalog view, features_<name>)"
            )
            raise ValueError(msg)
        if not value:
            raise ValueError("declare at least one feature set")
        return value


def _pydantic_problems(exc: ValidationError, where: str = "") -> str:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        path = ".".join(p for p in (where, loc) if p)
        problems.append(f"{path}: {message}" if path else message)
    return "; ".join(problems)


def parse_feature_sets(section: object, source: str = "params.yaml") -> dict[str, FeatureSetConfig]:
    """Return the feature sets of a ``features`` section, each checked by resolving it.

    Raises
    ------
    UsageError
        Naming ``source``, the key and what is wrong: a malformed section, an unknown feature
        name or kind, bad parameters, clashing column names.
    """
    if not isinstance(section, Mapping):
        msg = f"{source}: needs a 'features' section with 'sets' (see docs/features.md)"
        raise UsageError(msg)
    try:
        parsed = FeatureSetsConfig.model_validate(section)
    except ValidationError as exc:
        raise UsageError(f"{source}: {_pydantic_problems(exc, 'features')}") from None
    for name, config in parsed.sets.items():
        try:
            config.resolve()
        except UsageError as exc:
            raise UsageError(f"{source}: features.sets.{name}: {exc}") from None
    return dict(parsed.sets)


# -- resolution ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextFeatures:
    """Resolved context: a timeframe, its column prefix and its specs."""

    timeframe: Timeframe
    prefix: str
    specs: tuple[FeatureSpec, ...]


@dataclass(frozen=True)
class CrossAssetFeatures:
    """Resolved cross asset: a symbol, its column prefix and its specs."""

    symbol: str
    prefix: str
    specs: tuple[FeatureSpec, ...]


@dataclass(frozen=True)
class ResolvedFeatureSet:
    """A feature set with every feature resolved to a :class:`FeatureSpec`."""

    specs: tuple[FeatureSpec, ...]
    context: tuple[ContextFeatures, ...] = ()
    cross_assets: tuple[CrossAssetFeatures, ...] = ()
    label: HorizonLabelConfig | TripleBarrierConfig | None = None
    weights: bool = False

    def for_timeframe(self, timeframe: Timeframe) -> ResolvedFeatureSet:
        """Return the set as it applies to a series of ``timeframe``.

        Context comes from completed bars of longer timeframes only: a context timeframe not
        longer than the series' own is left out, so the set builds on every stored series
        (a D1 series gets the set's own features and no H4 context).
        """
        kept = tuple(c for c in self.context if c.timeframe.minutes > timeframe.minutes)
        return replace(self, context=kept)

    def canonical(self) -> dict[str, Any]:
        """Return the canonical form of the definition (what the hash covers)."""
        return {
            "library": FEATURE_LIBRARY_VERSION,
            "features": [_spec_json(s) for s in self.specs],
            "context": [
                {
                    "timeframe": c.timeframe.value,
                    "prefix": c.prefix,
                    "features": [_spec_json(s) for s in c.specs],
                }
                for c in self.context
            ],
            "cross_assets": [
                {
                    "symbol": c.symbol,
                    "prefix": c.prefix,
                    "features": [_spec_json(s) for s in c.specs],
                }
                for c in self.cross_assets
            ],
            "label": self.label.model_dump(mode="json") if self.label is not None else None,
            "weights": self.weights,
        }

    def definition_hash(self) -> str:
        """Return the SHA-256 (hex) of the canonical definition as sorted, compact JSON."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _number(value: float) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def _spec_json(spec: FeatureSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "family": spec.family.value,
        "kind": spec.kind,
        "params": {k: _number(v) for k, v in sorted(spec.params)},
        "warmup": spec.warmup,
        "lower": spec.lower,
        "upper": spec.upper,
    }


def resolve_feature_set(config: FeatureSetConfig) -> ResolvedFeatureSet:
    """Return ``config`` with every feature name and entry turned into a :class:`FeatureSpec`.

    Raises
    ------
    UsageError
        On an unknown feature name or kind, missing, unknown or out-of-range parameters, a
        feature name used twice, or columns that clash after prefixing.
    """
    library = default_feature_set()
    specs = _resolve_list(config.features, library, "features")
    context = tuple(
        ContextFeatures(
            c.timeframe, c.column_prefix, _resolve_list(c.features, library, f"context.{n}")
        )
        for n, c in enumerate(config.context)
    )
    cross = tuple(
        CrossAssetFeatures(
            c.symbol, c.column_prefix, _resolve_list(c.features, library, f"cross_assets.{n}")
        )
        for n, c in enumerate(config.cross_assets)
    )
    joined: list[ContextFeatures | CrossAssetFeatures] = [*context, *cross]
    columns = [s.name for s in specs]
    columns += [c.prefix + s.name for c in joined for s in c.specs]
    if config.label is not None:
        columns += list(LABEL_COLUMNS)
    clashes = sorted({c for c in columns if columns.count(c) > 1} | ({"ts"} & set(columns)))
    if clashes:
        msg = f"column name(s) {clashes} used twice: rename a feature or change a prefix"
        raise UsageError(msg)
    if not any((specs, *(c.specs for c in joined))):
        raise UsageError("the set has no features: list some, or use features: default")
    return ResolvedFeatureSet(specs, context, cross, config.label, config.weights)


def _resolve_list(
    features: FeatureList, library: list[FeatureSpec], where: str
) -> tuple[FeatureSpec, ...]:
    if features == "default":
        return tuple(library)
    by_name = {s.name: s for s in library}
    specs: list[FeatureSpec] = []
    for n, item in enumerate(features):
        if isinstance(item, str):
            if item not in by_name:
                close = difflib.get_close_matches(item, by_name, n=4, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                msg = (
                    f"{where}: unknown feature {item!r}: {hint}name one of the default set "
                    "(solodesk features specs) or give {kind, name, params}"
                )
                raise UsageError(msg)
            specs.append(by_name[item])
        else:
            try:
                specs.append(_entry_spec(item, library))
            except UsageError as exc:
                raise UsageError(f"{where}.{n}: {exc}") from None
    names = [s.name for s in specs]
    twice = sorted({x for x in names if names.count(x) > 1})
    if twice:
        msg = f"{where}: feature name(s) {twice} listed twice: give each feature its own name"
        raise UsageError(msg)
    return tuple(specs)


def _entry_spec(entry: FeatureEntry, library: list[FeatureSpec]) -> FeatureSpec:
    """Build the spec of a ``{kind, name, params}`` entry, checking its parameters."""
    kind = entry.kind
    if kind not in BUILDERS:
        msg = f"unknown kind {kind!r}: use one of {', '.join(sorted(BUILDERS))}"
        raise UsageError(msg)
    same_kind = [s for s in library if s.kind == kind]
    params = {k: _number(v) for k, v in entry.params.items()}
    if same_kind:
        expected = set(same_kind[0].parameters)
        if set(params) != expected:
            msg = (
                f"kind {kind} takes parameters {sorted(expected) or 'none'}, "
                f"got {sorted(params) or 'none'}"
            )
            raise UsageError(msg)
        for key, value in params.items():
            # Integer parameters (windows, lags) must be whole; 0 only where the library uses it.
            defaults = [s.parameters[key] for s in same_kind]
            if all(float(d).is_integer() for d in defaults):
                least = 0 if min(defaults) == 0 else 1
                if not isinstance(value, int) or value < least:
                    msg = (
                        f"kind {kind}: parameter {key} = {value} must be a whole number >= {least}"
                    )
                    raise UsageError(msg)
            elif value <= 0:
                msg = f"kind {kind}: parameter {key} = {value} must be positive"
                raise UsageError(msg)
    name = entry.name or "_".join([kind, *(_param_text(v) for v in params.values())])
    if not COLUMN_PATTERN.match(name):
        msg = f"feature name {name!r}: use letters, digits and underscores"
        raise UsageError(msg)
    for spec in same_kind:
        if {k: _number(v) for k, v in spec.params} == params:
            return replace(spec, name=name)
    family = entry.family or (same_kind[0].family if same_kind else None)
    if family is None:
        msg = f"kind {kind} is not in the default set: give its family ({', '.join(Family)})"
        raise UsageError(msg)
    warmup = measured_warmup(kind, params)
    recursive = any(s.recursive for s in same_kind)
    if recursive:
        # Twice the longest window bounds the memory of every EMA / Wilder chain in the library.
        memory = 2.0 * max([float(v) for v in params.values()] or [1.0])
        return recursive_spec(name, family, kind, warmup, memory, **params)
    return windowed_spec(name, family, kind, warmup, **params)


def _param_text(value: int | float) -> str:
    return str(value).replace(".", "p").replace("-", "m")


def probe_bars(n: int) -> pl.DataFrame:
    """Return ``n`` hourly bars of a seeded random walk with spread and tick volume."""
    rng = np.random.default_rng(7)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate(([1.1], close[:-1]))
    start = datetime(2024, 1, 1, tzinfo=UTC_TZ)
    return pl.DataFrame(
        {
            "ts": pl.datetime_range(
                start, start + timedelta(hours=n - 1), "1h", time_unit="us", eager=True
            ),
            "open": open_,
            "high": np.maximum(open_, close) * (1.0 + rng.uniform(1e-5, 1e-3, n)),
            "low": np.minimum(open_, close) * (1.0 - rng.uniform(1e-5, 1e-3, n)),
            "close": close,
            "volume": rng.integers(1, 500, n).astype(np.float64),
            "spread": rng.uniform(1e-5, 4e-5, n),
        }
    )


def measured_warmup(kind: str, params: Mapping[str, int | float]) -> int:
    """Return the number of leading nulls of a feature on a clean synthetic series.

    For a kind the default set uses with other parameters, the warm-up is what the formula
    gives on clean bars: counted, not guessed.

    Raises
    ------
    UsageError
        If the builder rejects the parameters or never produces a value on the probe series.
    """
    largest = max([abs(float(v)) for v in params.values()] or [0.0])
    n = _PROBE_BARS + 4 * int(largest)
    spec = windowed_spec("_probe", Family.TREND, kind, 0, **params)
    try:
        values = compute_features(
            probe_bars(n), [spec], has_spread=True, volume_kind=VolumeKind.TICK
        )["_probe"]
    except (KeyError, ValueError, TypeError, ZeroDivisionError, pl.exceptions.PolarsError) as exc:
        msg = f"kind {kind} cannot be computed with parameters {dict(params)}: {exc}"
        raise UsageError(msg) from None
    present = values.fill_nan(None).is_not_null()
    if not present.any():
        msg = f"kind {kind} with parameters {dict(params)} gives no value on {n} bars"
        raise UsageError(msg)
    return int(present.arg_true()[0])


# -- computation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesFrame:
    """Bars of one series with what the features need to know about it."""

    bars: pl.DataFrame
    timeframe: Timeframe
    clock: Clock = UTC
    has_spread: bool = False
    volume_kind: VolumeKind = VolumeKind.NONE


@dataclass(frozen=True)
class FeatureColumn:
    """What one stored column is and which nulls it may have.

    ``required_from`` is the first row from which the column must hold a value: the warm-up
    of a feature of the series itself, the first row whose joined context or cross-asset bar
    is past its own warm-up, and the row count for label columns (labels are null where the
    outcome is not settled yet).
    """

    name: str
    role: FeatureRole
    source: str
    kind: str
    warmup: int
    required_from: int
    lower: float | None = None
    upper: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the column as a JSON-ready mapping."""
        return {
            "name": self.name,
            "role": self.role,
            "source": self.source,
            "kind": self.kind,
            "warmup": self.warmup,
            "required_from": self.required_from,
            "lower": self.lower,
            "upper": self.upper,
        }


@dataclass(frozen=True)
class FeatureTable:
    """A computed feature set: ``ts``, feature columns, then label columns."""

    frame: pl.DataFrame
    columns: tuple[FeatureColumn, ...]


def _with_row(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    return frame.with_row_index(name).with_columns(pl.col(name).cast(pl.Int64))


def _first_row(frame: pl.DataFrame, condition: pl.Expr) -> int:
    hits = frame.select(condition.fill_null(False).arg_true())
    return int(hits.item(0, 0)) if hits.height else frame.height


def _joined(
    table: pl.DataFrame,
    series: SeriesFrame,
    other: SeriesFrame,
    specs: tuple[FeatureSpec, ...],
    prefix: str,
    role: FeatureRole,
    source: str,
) -> tuple[pl.DataFrame, list[FeatureColumn]]:
    chosen = applicable_specs(specs, has_spread=other.has_spread, volume_kind=other.volume_kind)
    values = compute_features(
        other.bars, chosen, has_spread=other.has_spread, volume_kind=other.volume_kind
    )
    row = f"{prefix}_row"
    joined = join_known(
        table,
        series.timeframe,
        _with_row(values, "_row"),
        other.timeframe,
        prefix=prefix,
        rows_clock=series.clock,
        other_clock=other.clock,
    )
    columns = [
        FeatureColumn(
            prefix + s.name, role, source, s.kind, s.warmup,
            _first_row(joined, pl.col(row) >= s.warmup), s.lower, s.upper,
        )
        for s in chosen
    ]  # fmt: skip
    return joined.drop(row), columns


def check_context_timeframe(context: Timeframe, series: Timeframe) -> None:
    """Refuse a context timeframe that is not longer than the series'.

    Raises
    ------
    UsageError
        Naming both timeframes.
    """
    if context.minutes <= series.minutes:
        msg = (
            f"context timeframe {context.value} is not longer than the series' "
            f"{series.value}: context gives features of longer bars"
        )
        raise UsageError(msg)


def check_cross_timeframe(symbol: str, other: Timeframe | None, series: Timeframe) -> None:
    """Refuse a cross asset whose bars are missing (``other`` None) or on another timeframe.

    Raises
    ------
    UsageError
        Naming the symbol and the timeframes.
    """
    if other is None:
        raise UsageError(f"bars of the cross asset {symbol} are missing")
    if other is not series:
        msg = (
            f"cross asset {symbol} is on {other.value}, the series on {series.value}: use the "
            "same timeframe"
        )
        raise UsageError(msg)


def feature_table(
    resolved: ResolvedFeatureSet,
    series: SeriesFrame,
    context: Mapping[Timeframe, SeriesFrame] | None = None,
    cross_assets: Mapping[str, SeriesFrame] | None = None,
) -> FeatureTable:
    """Return the feature set computed on ``series``, one row per bar.

    Features of ``series`` come from :func:`compute_features`; context and cross-asset
    features are computed on their own bars and joined with :func:`~pipelines.pit.join_known`,
    so each row sees only bars that had ended by the end of its own bar; labels come from
    :func:`~pipelines.labels.make_labels`, renamed ``label``, ``label_log_return``,
    ``label_barrier``, ``label_end`` and ``label_weight``.

    Parameters
    ----------
    resolved
        The set, from :meth:`FeatureSetConfig.resolve`.
    series
        Bars of the series the rows belong to.
    context
        Bars of each context timeframe of the set.
    cross_assets
        Bars of each cross-asset symbol of the set, on ``series.timeframe``.

    Raises
    ------
    UsageError
        If a context timeframe is not longer than the series', a cross-asset series is not on
        its timeframe, or bars the set needs are missing.
    """
    context = context or {}
    cross_assets = cross_assets or {}
    chosen = applicable_specs(
        resolved.specs, has_spread=series.has_spread, volume_kind=series.volume_kind
    )
    table = compute_features(
        series.bars, chosen, has_spread=series.has_spread, volume_kind=series.volume_kind
    )
    columns = [
        FeatureColumn(s.name, "feature", "", s.kind, s.warmup, min(s.warmup, table.height),
                      s.lower, s.upper)
        for s in chosen
    ]  # fmt: skip
    for ctx in resolved.context:
        check_context_timeframe(ctx.timeframe, series.timeframe)
        if ctx.timeframe not in context:
            raise UsageError(f"bars of the context timeframe {ctx.timeframe.value} are missing")
        table, added = _joined(
            table, series, context[ctx.timeframe], ctx.specs, ctx.prefix, "context",
            ctx.timeframe.value,
        )  # fmt: skip
        columns += added
    for cross in resolved.cross_assets:
        other = cross_assets.get(cross.symbol)
        check_cross_timeframe(cross.symbol, None if other is None else other.timeframe,
                              series.timeframe)  # fmt: skip
        assert other is not None
        table, added = _joined(
            table, series, other, cross.specs, cross.prefix, "cross_asset", cross.symbol
        )
        columns += added
    if resolved.label is not None:
        labels = make_labels(
            series.bars, resolved.label, series.timeframe, with_weight=resolved.weights
        ).rename(
            {
                "log_return": "label_log_return",
                "barrier": "label_barrier",
                "weight": "label_weight",
            },
            strict=False,
        )
        if not labels["ts"].equals(table["ts"]):
            raise AssertionError("labels and features are not on the same bars")
        table = table.hstack(labels.drop("ts"))
        n = table.height
        for name in labels.columns[1:]:
            lower, upper = {"label": (-1.0, 1.0), "label_weight": (0.0, 1.0)}.get(
                name, (None, None)
            )
            kind = resolved.label.kind if name == "label" else name
            columns.append(FeatureColumn(name, "label", "", kind, 0, n, lower, upper))
    return FeatureTable(table, tuple(columns))

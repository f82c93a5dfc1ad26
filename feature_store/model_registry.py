"""The model registry: challengers logged from walk-forward runs, champions by promotion.

A walk-forward run registers what it trained as a new version of a registered model with the
alias ``challenger`` and its out-of-sample scores as version tags ``score.<key>``.
:meth:`ModelRegistry.promote` moves the alias ``champion`` onto the challenger when a
:class:`PromotionRule` holds, and writes the decision and its reasons onto the challenger
version (tags ``promotion.decision``, ``promotion.reason``, ``promotion.at``, and on a
promotion ``promotion.previous_champion``: the version it replaced, or ``none``); the floors of
:meth:`PromotionRule.minimums` (:func:`check_floors`) apply to the first promotion as to every
later one. :meth:`ModelRegistry.rollback` moves ``champion`` back to the previous champion and
records who, when and why on both versions (tags ``rollback.*``). What trades is whatever
``champion`` points at (or a version named), read through :meth:`ModelRegistry.alias_version`,
:meth:`~ModelRegistry.version_info`, :meth:`~ModelRegistry.load_version`,
:meth:`~ModelRegistry.run_params` and :meth:`~ModelRegistry.run_text`.

A model is stored as an MLflow pyfunc model (:class:`ProbaModel`) wrapping a *predictor*: any
picklable object with ``feature_names: tuple[str, ...]`` and ``predict_proba(X) -> P(up)``.

Logging and loading a model go through MLflow's process-wide tracking URI (set for the duration
of the call and then restored). So every public :class:`ModelRegistry` method holds one
process-wide lock, :data:`REGISTRY_LOCK`, for its whole duration: registry calls from several
threads of one process (a watcher beside a reload) run one after the other, never interleaved.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Imported first: it sets MLflow's environment (no telemetry, no links on stdout) and quiets
# its logging before MLflow is imported.
import feature_store.tracking  # noqa: F401  # isort: split
from core.errors import UsageError
from core.times import iso_z, utc_now

# A model's requirements are pinned from the predictor (see _requirements), not taken from
# whichever uv project happens to be the working directory.
os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
# A run's text artifact read back (a drift reference) draws no progress bar on stderr.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel, load_model
from mlflow.pyfunc import log_model as log_pyfunc_model
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from mlflow.tracking.fluent import start_run

CHALLENGER = "challenger"
CHAMPION = "champion"
SCORE_TAG_PREFIX = "score."
#: The tag a promoted version keeps of the champion it replaced (a version number, or ``none``).
PREVIOUS_CHAMPION_TAG = "promotion.previous_champion"
MODEL_NAME_IN_RUN = "model"
EXAMPLE_ROWS = 5
PROBA_COLUMN = "proba"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_SCORE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_TERMINAL = ("FINISHED", "FAILED", "KILLED")
# Packages a stored model always needs to be loaded again.
_BASE_REQUIREMENTS = ("cloudpickle", "numpy", "pandas")

#: Held by every public :class:`ModelRegistry` method for its whole duration (re-entrant).
REGISTRY_LOCK = threading.RLock()

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[_P, _R]) -> Callable[_P, _R]:
    @functools.wraps(method)
    def holding_lock(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with REGISTRY_LOCK:
            return method(*args, **kwargs)

    return holding_lock


def _check_predictor(predictor: object) -> tuple[str, ...]:
    names = getattr(predictor, "feature_names", None)
    kind = type(predictor).__name__
    if (
        not isinstance(names, tuple | list)
        or not names
        or not all(isinstance(n, str) for n in names)
    ):
        msg = f"predictor {kind} needs feature_names: a non-empty tuple of column names"
        raise UsageError(msg)
    if not callable(getattr(predictor, "predict_proba", None)):
        raise UsageError(f"predictor {kind} has no predict_proba(X) method")
    return tuple(names)


class ProbaModel(PythonModel):
    """An MLflow pyfunc model answering P(up) per row from a predictor's ``predict_proba``.

    Parameters
    ----------
    predictor
        A picklable object with ``feature_names`` (a tuple of column names) and
        ``predict_proba(X: np.ndarray) -> np.ndarray``.
    """

    def __init__(self, predictor: object) -> None:
        self.feature_names = _check_predictor(predictor)
        self.predictor = predictor

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Return a frame with one column ``proba``: P(up) for each row of ``model_input``.

        Columns are taken by name in the order of ``feature_names``; others are ignored.

        Raises
        ------
        UsageError
            If a feature column the model was trained on is missing.
        """
        missing = [name for name in self.feature_names if name not in model_input.columns]
        if missing:
            msg = (
                f"model input lacks the feature columns {missing} the model was trained on "
                f"(it needs {list(self.feature_names)}); build the input with the same feature set"
            )
            raise UsageError(msg)
        X = model_input.loc[:, list(self.feature_names)].to_numpy(dtype=np.float64)
        proba = np.asarray(self.predictor.predict_proba(X), dtype=np.float64).reshape(-1)  # type: ignore[attr-defined]
        if len(proba) != len(X):
            kind = type(self.predictor).__name__
            msg = f"predictor {kind} returned {len(proba)} probabilities for {len(X)} rows"
            raise ValueError(msg)
        return pd.DataFrame({PROBA_COLUMN: proba}, index=model_input.index)


@dataclass(frozen=True)
class ModelVersionInfo:
    """One version of a registered model.

    ``scores`` holds the version's ``score.<key>`` tags as numbers, ``tags`` every other tag
    (including the ``promotion.*`` and ``live_gate.*`` ones), ``aliases`` the aliases pointing at
    it, sorted, and ``created`` its registration time in UTC.
    """

    name: str
    version: int
    run_id: str
    aliases: tuple[str, ...]
    scores: dict[str, float]
    tags: dict[str, str]
    created: datetime

    @property
    def promotion(self) -> PromotionRecord | None:
        """Return the last promotion decision about this version, from its tags, or None."""
        tags = self.tags
        if "promotion.at" not in tags:
            return None
        return PromotionRecord(
            decision=tags.get("promotion.decision", "?"), reason=tags.get("promotion.reason", ""),
            at=tags["promotion.at"], previous_champion=tags.get(PREVIOUS_CHAMPION_TAG),
        )  # fmt: skip

    @property
    def rollback(self) -> RollbackRecord | None:
        """Return the last rollback this version took part in, from its tags, or None."""
        tags = self.tags
        if "rollback.at" not in tags:
            return None
        return RollbackRecord(
            at=tags["rollback.at"], who=tags.get("rollback.who", "?"),
            why=tags.get("rollback.why", ""), moved=tags.get("rollback.from", "?"),
            restored=tags.get("rollback.to", "?"),
        )  # fmt: skip


@dataclass(frozen=True)
class PromotionRecord:
    """A promotion decision as the challenger's tags keep it: ``promoted`` or ``rejected``, why,
    when (ISO UTC) and the champion it replaced, if any."""

    decision: str
    reason: str
    at: str
    previous_champion: str | None


@dataclass(frozen=True)
class RollbackRecord:
    """A rollback as both versions' tags keep it: ``champion`` moved off version ``moved`` back
    to version ``restored``, when (ISO UTC), by whom and why."""

    at: str
    who: str
    why: str
    moved: str
    restored: str


@dataclass(frozen=True)
class RollbackDecision:
    """What :meth:`ModelRegistry.rollback` did: ``champion`` moved from one version to another.

    ``rolled_back`` and ``restored`` are the two versions as they are after the rollback;
    ``at`` is when (UTC), ``who`` and ``why`` as given.
    """

    name: str
    rolled_back: ModelVersionInfo
    restored: ModelVersionInfo
    at: datetime
    who: str
    why: str


@dataclass(frozen=True)
class PromotionDecision:
    """What :meth:`ModelRegistry.promote` decided, and why."""

    promoted: bool
    reason: str
    challenger: ModelVersionInfo | None
    champion_before: ModelVersionInfo | None

    @property
    def why(self) -> str:
        """Return the reason without its leading verdict (``promoted: `` or ``rejected: ``)."""
        head, sep, rest = self.reason.partition(": ")
        return rest if sep and head in ("promoted", "rejected") else self.reason


class PromotionRule(BaseModel):
    """When a challenger replaces the champion.

    The challenger must score strictly higher than the champion on ``require`` (``all`` or
    ``any``) of the score keys in ``criteria``; a score missing on either side does not beat.
    The minimums (``min_psr`` on score ``psr``, ``min_sharpe_ci_low`` on ``sharpe_ci_low``,
    ``min_dsr`` on ``dsr``; None is no minimum) must also be met, and alone decide while there
    is no champion. A score missing misses its minimum.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    criteria: tuple[str, ...] = ("dsr", "sharpe_ci_low")
    require: Literal["all", "any"] = "all"
    min_psr: float | None = Field(default=None, allow_inf_nan=False)
    min_sharpe_ci_low: float | None = Field(default=None, allow_inf_nan=False)
    min_dsr: float | None = Field(default=None, allow_inf_nan=False)

    @field_validator("criteria")
    @classmethod
    def _check_criteria(cls, criteria: tuple[str, ...]) -> tuple[str, ...]:
        if not criteria:
            raise ValueError("name at least one score key to compare")
        bad = [key for key in criteria if not _SCORE_KEY.fullmatch(key)]
        if bad:
            raise ValueError(f"score keys {bad} are not names like dsr or sharpe_ci_low")
        if len(set(criteria)) != len(criteria):
            raise ValueError(f"score keys repeat in {list(criteria)}")
        return criteria

    @classmethod
    def parse(cls, text: str) -> PromotionRule:
        """Return the rule written as ``dsr,sharpe_ci_low``, ``all:dsr,...`` or ``any:dsr,...``.

        Raises
        ------
        UsageError
            If ``text`` has another form or names no valid score key.
        """
        head, sep, tail = text.strip().partition(":")
        require, keys = (head.strip(), tail) if sep else ("all", head)
        criteria = tuple(key.strip() for key in keys.split(",") if key.strip())
        if require not in ("all", "any"):
            msg = (
                f"promotion rule {text!r}: expected score keys such as 'dsr,sharpe_ci_low', "
                f"optionally after 'all:' or 'any:'"
            )
            raise UsageError(msg)
        try:
            return cls(criteria=criteria, require=require)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = "; ".join(str(error["msg"]) for error in exc.errors())
            raise UsageError(f"promotion rule {text!r}: {problems}") from None

    def minimums(self) -> dict[str, float]:
        """Return the score keys with a minimum, and the minimum (psr, sharpe_ci_low, dsr)."""
        found = {"psr": self.min_psr, "sharpe_ci_low": self.min_sharpe_ci_low, "dsr": self.min_dsr}
        return {key: value for key, value in found.items() if value is not None}


def _format(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4g}"


@dataclass(frozen=True)
class FloorCheck:
    """One score checked against its minimum; ``text`` says so (``psr 0.41 below minimum 0.95``)."""

    key: str
    value: float | None
    minimum: float
    met: bool
    text: str


def check_floors(scores: Mapping[str, float], minimums: Mapping[str, float]) -> list[FloorCheck]:
    """Return each minimum checked against ``scores``, in the order of ``minimums``.

    A score meets its minimum when it is at least the minimum; a score missing misses it.
    """
    checks = []
    for key, minimum in minimums.items():
        value = scores.get(key)
        met = value is not None and value >= minimum
        if value is None:
            text = f"{key} missing (minimum {minimum:.4g})"
        else:
            text = f"{key} {_format(value)} {'>=' if met else 'below'} minimum {minimum:.4g}"
        checks.append(FloorCheck(key, value, minimum, met, text))
    return checks


def _judge(
    rule: PromotionRule, challenger: ModelVersionInfo, champion: ModelVersionInfo | None
) -> tuple[bool, str]:
    floors = check_floors(challenger.scores, rule.minimums())
    notes = [check.text for check in floors]
    minimums_met = all(check.met for check in floors)
    if champion is None:
        beaten = True
        notes.append("no champion yet")
    else:
        wins = []
        for key in rule.criteria:
            mine, theirs = challenger.scores.get(key), champion.scores.get(key)
            beats = mine is not None and theirs is not None and mine > theirs
            wins.append(beats)
            relation = ">" if beats else "not >"
            notes.append(
                f"{key} {_format(mine)} {relation} {_format(theirs)} (champion v{champion.version})"
            )
        beaten = all(wins) if rule.require == "all" else any(wins)
        notes.append(f"needs {rule.require} of {', '.join(rule.criteria)}")
    promoted = minimums_met and beaten
    verdict = "promoted" if promoted else "rejected"
    return promoted, f"{verdict}: " + "; ".join(notes)


def _requirements(predictor: object) -> list[str]:
    # Pinning what the predictor is made of spares MLflow from inferring requirements, which
    # loads the model in a subprocess and takes seconds. The packages are those of the
    # predictor's class and its attributes' classes, base classes included (a scikit-learn
    # style wrapper needs scikit-learn too).
    kinds = [type(predictor), *(type(v) for v in getattr(predictor, "__dict__", {}).values())]
    modules = {base.__module__ for kind in kinds for base in kind.__mro__}
    roots = {module.partition(".")[0] for module in modules} - set(sys.stdlib_module_names)
    distributions = importlib.metadata.packages_distributions()
    found = set(_BASE_REQUIREMENTS)
    for root in roots:
        found.update(distributions.get(root, ()))
    pinned = []
    for dist in sorted(found, key=str.lower):
        try:
            pinned.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pinned


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST"


class ModelRegistry:
    """Register challengers, promote champions and load models from an MLflow registry.

    Every public method holds :data:`REGISTRY_LOCK` while it runs.

    Parameters
    ----------
    uri
        Tracking URI of the store holding the runs and the registry
        (:func:`feature_store.tracking.tracking_uri`).
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    @_locked
    def log_model(self, *, run_id: str, predictor: object, input_example: pl.DataFrame) -> str:
        """Log ``predictor`` as the model ``model`` of run ``run_id``; return its model URI.

        The signature is inferred from ``input_example``, whose first rows are kept as the
        example. The run keeps the status it had. Nothing is registered.

        Raises
        ------
        UsageError
            If the run does not exist, the predictor lacks ``feature_names`` or
            ``predict_proba``, or ``input_example`` lacks one of its feature columns.
        """
        with _use_tracking_uri(self.uri):
            return str(self._log_into_run(run_id, predictor, input_example).model_uri)

    @_locked
    def register_challenger(
        self,
        *,
        run_id: str,
        name: str,
        predictor: object,
        input_example: pl.DataFrame,
        scores: Mapping[str, float],
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersionInfo:
        """Log ``predictor`` into run ``run_id`` and register it as the challenger of ``name``.

        The model is logged as in :meth:`log_model`. The new version carries each finite
        score as the tag ``score.<key>`` (NaN and infinite scores are left out, so they count
        as missing when promoting) plus ``tags``, and the alias ``challenger`` moves onto it.

        Raises
        ------
        UsageError
            If the name is not a valid model name, the run does not exist, the predictor
            lacks ``feature_names`` or ``predict_proba``, or ``input_example`` lacks one of
            its feature columns.
        """
        _check_name(name)
        version_tags = {
            f"{SCORE_TAG_PREFIX}{key}": repr(float(value))
            for key, value in scores.items()
            if math.isfinite(float(value))
        }
        version_tags.update(tags or {})
        # MLflow resolves a ``models:/`` source through the process-wide tracking URI.
        with _use_tracking_uri(self.uri):
            logged = self._log_into_run(run_id, predictor, input_example)
            self._ensure_registered_model(name)
            version = self.client.create_model_version(
                name,
                source=logged.model_uri,
                run_id=run_id,
                tags=version_tags,
                model_id=logged.model_id,
            )
        self.client.set_registered_model_alias(name, CHALLENGER, str(version.version))
        return self._info(self.client.get_model_version(name, str(version.version)))

    def _log_into_run(self, run_id: str, predictor: object, input_example: pl.DataFrame) -> Any:
        feature_names = _check_predictor(predictor)
        missing = [column for column in feature_names if column not in input_example.columns]
        if missing:
            msg = f"input example lacks the predictor's feature columns {missing}"
            raise UsageError(msg)
        model = ProbaModel(predictor)
        example = input_example.select(feature_names).head(EXAMPLE_ROWS).to_pandas()
        signature = infer_signature(example, model.predict(None, example))
        try:
            before = self.client.get_run(run_id).info
        except MlflowException as exc:
            if _not_found(exc):
                raise UsageError(f"no MLflow run {run_id} in {self.uri}") from None
            raise
        try:
            with start_run(run_id=run_id):
                return log_pyfunc_model(
                    name=MODEL_NAME_IN_RUN,
                    python_model=model,
                    signature=signature,
                    input_example=example,
                    pip_requirements=_requirements(predictor),
                )
        finally:
            # Reopening the run marked it RUNNING and closing it FINISHED: put back what it was.
            if before.status in _TERMINAL:
                self.client.set_terminated(run_id, status=before.status, end_time=before.end_time)
            else:
                self.client.update_run(run_id, status=before.status)

    def _ensure_registered_model(self, name: str) -> None:
        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if not _not_found(exc):
                raise
            try:
                self.client.create_registered_model(name)
            except MlflowException as again:
                # Another process may have registered it in the meantime.
                if again.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

    def _aliases(self, name: str) -> dict[str, int]:
        try:
            model = self.client.get_registered_model(name)
        except MlflowException as exc:
            if _not_found(exc):
                msg = (
                    f"no registered model {name!r} in {self.uri}; run a walk-forward first "
                    "to register a challenger"
                )
                raise UsageError(msg) from None
            raise
        return {alias: int(version) for alias, version in model.aliases.items()}

    def _info(
        self, version: ModelVersion, aliases: Mapping[str, int] | None = None
    ) -> ModelVersionInfo:
        number = int(version.version)
        known = self._aliases(version.name) if aliases is None else aliases
        scores: dict[str, float] = {}
        tags: dict[str, str] = {}
        for key, value in version.tags.items():
            if key.startswith(SCORE_TAG_PREFIX):
                try:
                    scores[key.removeprefix(SCORE_TAG_PREFIX)] = float(value)
                except ValueError:
                    tags[key] = value
            else:
                tags[key] = value
        return ModelVersionInfo(
            name=version.name,
            version=number,
            run_id=str(version.run_id or ""),
            aliases=tuple(sorted(alias for alias, v in known.items() if v == number)),
            scores=scores,
            tags=tags,
            created=datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC),
        )

    def _by_alias(self, name: str, alias: str) -> ModelVersionInfo | None:
        aliases = self._aliases(name)
        if alias not in aliases:
            return None
        return self._info(self.client.get_model_version(name, str(aliases[alias])), aliases)

    @_locked
    def promote(self, name: str, rule: PromotionRule) -> PromotionDecision:
        """Make the challenger of ``name`` its champion if ``rule`` holds; record why.

        The decision (``promoted`` or ``rejected``), the scores compared and the time go onto
        the challenger version as tags ``promotion.decision``, ``promotion.reason`` and
        ``promotion.at``; a promoted one also keeps the champion it replaced
        (``promotion.previous_champion``: its version, or ``none``), which :meth:`rollback`
        goes back to. A challenger that is already the champion is left as it is.

        Raises
        ------
        UsageError
            If there is no registered model ``name`` or it has no challenger.
        """
        _check_name(name)
        challenger = self._by_alias(name, CHALLENGER)
        if challenger is None:
            msg = (
                f"registered model {name!r} has no {CHALLENGER}; run a walk-forward first "
                "to register one"
            )
            raise UsageError(msg)
        champion = self._by_alias(name, CHAMPION)
        if champion is not None and champion.version == challenger.version:
            reason = f"version {challenger.version} is already the {CHAMPION}"
            return PromotionDecision(False, reason, challenger, champion)

        promoted, reason = _judge(rule, challenger, champion)
        if promoted:
            self.client.set_registered_model_alias(name, CHAMPION, str(challenger.version))
        at = iso_z(utc_now())
        decision_tags = {
            "promotion.decision": "promoted" if promoted else "rejected",
            "promotion.reason": reason,
            "promotion.at": at,
        }
        if promoted:
            decision_tags[PREVIOUS_CHAMPION_TAG] = (
                "none" if champion is None else str(champion.version)
            )
        for key, value in decision_tags.items():
            self.client.set_model_version_tag(name, str(challenger.version), key, value)
        after = self._info(self.client.get_model_version(name, str(challenger.version)))
        return PromotionDecision(promoted, reason, after, champion)

    @_locked
    def rollback(
        self, name: str, *, who: str, why: str, version: int | None = None
    ) -> RollbackDecision:
        """Move ``champion`` of ``name`` back to the champion it replaced; record who and why.

        The champion's ``promotion.previous_champion`` tag names the version to go back to.
        Both versions get the tags ``rollback.at``, ``rollback.who``, ``rollback.why``,
        ``rollback.from`` and ``rollback.to``. The alias ``challenger``, if it points at the
        version rolled back, is removed, so a later promotion does not bring it back.
        ``version``, when given, is the version the caller means to roll back: the call is
        refused if ``champion`` has moved since.

        Raises
        ------
        UsageError
            If there is no registered model ``name``, it has no champion, the champion is not
            ``version``, or it records no previous champion (it was the first, or was promoted
            before previous champions were recorded).
        """
        _check_name(name)
        aliases = self._aliases(name)
        current = aliases.get(CHAMPION)
        if current is None:
            raise UsageError(f"registered model {name!r} has no {CHAMPION} to roll back")
        if version is not None and current != version:
            msg = (
                f"{name}: {CHAMPION} is version {current}, not {version}: it moved since; "
                "nothing rolled back"
            )
            raise UsageError(msg)
        info = self._info(self.client.get_model_version(name, str(current)), aliases)
        previous = info.tags.get(PREVIOUS_CHAMPION_TAG, "none")
        if not previous.isdigit():
            msg = (
                f"{name} v{current} records no previous {CHAMPION} to roll back to "
                f"({PREVIOUS_CHAMPION_TAG} is {previous!r}): promote another version instead"
            )
            raise UsageError(msg)
        target = self.version_info(name, int(previous))
        at = utc_now()
        tags = {
            "rollback.at": iso_z(at),
            "rollback.who": who,
            "rollback.why": why,
            "rollback.from": str(current),
            "rollback.to": str(target.version),
        }
        self.client.set_registered_model_alias(name, CHAMPION, str(target.version))
        if aliases.get(CHALLENGER) == current:
            self.client.delete_registered_model_alias(name, CHALLENGER)
        for number in (current, target.version):
            for key, value in tags.items():
                self.client.set_model_version_tag(name, str(number), key, value)
        return RollbackDecision(
            name=name,
            rolled_back=self.version_info(name, current),
            restored=self.version_info(name, target.version),
            at=at,
            who=who,
            why=why,
        )

    @_locked
    def run_text(self, run_id: str, path: str) -> str | None:
        """Return the text artifact ``path`` of run ``run_id``, or None if it has none there.

        Raises
        ------
        UsageError
            If there is no such run.
        """
        import tempfile

        try:
            self.client.get_run(run_id)
        except MlflowException as exc:
            if _not_found(exc):
                raise UsageError(f"no MLflow run {run_id} in {self.uri}") from None
            raise
        with tempfile.TemporaryDirectory(prefix="solodesk-artifact-") as folder:
            try:
                local = self.client.download_artifacts(run_id, path, folder)
            except (MlflowException, OSError):
                return None
            with open(local, encoding="utf-8") as handle:
                return handle.read()

    @_locked
    def list_versions(self, name: str | None = None) -> list[ModelVersionInfo]:
        """Return the versions of model ``name`` (of every model when None), newest first."""
        if name is not None:
            _check_name(name)
        found = self._search(None if name is None else f"name = '{name}'")
        aliases = {model_name: self._aliases(model_name) for model_name in {v.name for v in found}}
        infos = [self._info(version, aliases[version.name]) for version in found]
        return sorted(infos, key=lambda i: (i.created, i.name, i.version), reverse=True)

    def _search(self, query: str | None) -> list[ModelVersion]:
        found: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = self.client.search_model_versions(query, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    @_locked
    def load_alias(self, name: str, alias: str) -> object:
        """Return the pyfunc model that ``alias`` of ``name`` points at.

        Raises
        ------
        UsageError
            If the model or the alias does not exist, naming the aliases there are.
        """
        _check_name(name)
        aliases = self._aliases(name)
        if alias not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise UsageError(f"registered model {name!r} has no alias {alias!r} (has: {known})")
        return self._load(name, aliases[alias])

    @_locked
    def alias_version(self, name: str, alias: str) -> int | None:
        """Return the version ``alias`` of ``name`` points at, or None if the alias is unset.

        Raises
        ------
        UsageError
            If there is no registered model ``name``.
        """
        _check_name(name)
        return self._aliases(name).get(alias)

    @_locked
    def version_info(self, name: str, version: int) -> ModelVersionInfo:
        """Return version ``version`` of ``name``: its run, aliases, scores and tags.

        Raises
        ------
        UsageError
            If there is no registered model ``name``, or it has no such version (naming the
            versions it has).
        """
        _check_name(name)
        aliases = self._aliases(name)
        try:
            found = self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if not _not_found(exc):
                raise
            numbers = sorted(int(v.version) for v in self._search(f"name = '{name}'"))
            known = ", ".join(str(number) for number in numbers) or "none"
            msg = f"registered model {name!r} has no version {version} (has: {known})"
            raise UsageError(msg) from None
        return self._info(found, aliases)

    @_locked
    def load_version(self, name: str, version: int) -> object:
        """Return the pyfunc model of version ``version`` of ``name`` (as :meth:`load_alias`).

        Raises
        ------
        UsageError
            If there is no registered model ``name``, or it has no such version.
        """
        info = self.version_info(name, version)
        return self._load(name, info.version)

    def _load(self, name: str, version: int) -> object:
        # The download URI of a ``models:/`` source resolves through the process-wide URI.
        with _use_tracking_uri(self.uri):
            uri = self.client.get_model_version_download_uri(name, str(version))
            return load_model(uri)

    @_locked
    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set ``tags`` on version ``version`` of ``name`` (a tag already there is replaced).

        Raises
        ------
        UsageError
            If there is no registered model ``name``, or it has no such version.
        """
        info = self.version_info(name, version)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(info.version), key, value)

    @_locked
    def run_params(self, run_id: str) -> dict[str, str]:
        """Return the parameters logged to the MLflow run ``run_id``.

        Raises
        ------
        UsageError
            If there is no such run.
        """
        return dict(self._run(run_id).data.params)

    @_locked
    def run_experiment(self, run_id: str) -> str:
        """Return the id of the experiment the MLflow run ``run_id`` belongs to.

        Raises
        ------
        UsageError
            If there is no such run.
        """
        return str(self._run(run_id).info.experiment_id)

    def _run(self, run_id: str) -> Any:
        """Return the MLflow run ``run_id`` (the caller holds the lock)."""
        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if _not_found(exc):
                raise UsageError(f"no MLflow run {run_id} in {self.uri}") from None
            raise


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        msg = (
            f"model name {name!r}: use letters, digits, '_', '.' and '-', starting with a "
            "letter or digit (e.g. EURUSD-H1-lgbm)"
        )
        raise UsageError(msg)

"""The model registry's use cases: list versions, promote a challenger, gate live trading.

- :func:`promote` moves ``champion`` onto the challenger when it clears the floors of
  ``[promotion]`` (``min_psr``, ``min_sharpe_ci_low``, ``min_dsr``; options raise or lower them
  for one call) and beats the champion by a rule; the floors alone decide the first promotion.
- :func:`live_gate` is what live trading asks before it trades a version: its out-of-sample
  scores against the same floors. A version missing one is refused unless the caller overrides
  with a written reason; every decision is recorded on the version (tags ``live_gate.*``) and
  handed to an optional recorder. Paper trading trades any model and never asks.
- :func:`resolve_version` finds the version a gate or a job means: a number, or an alias.
- :func:`rollback` moves ``champion`` back to the version it replaced (a model that drifted,
  or a promotion regretted), recording who, when and why on both versions.

They read the desk's tracking store and never create it: on a desk where no walk-forward has
run yet there is nothing to list, and the others say so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import UsageError, options_error
from core.ids import actor
from core.settings import Settings
from core.times import iso_z, utc_now

if TYPE_CHECKING:
    from feature_store.model_registry import ModelRegistry, ModelVersionInfo, PromotionRule

#: The fewest characters a written reason to override the live gate may have (once stripped).
MIN_OVERRIDE_CHARS = 10


class ModelVersionRow(BaseModel):
    """One registered version as ``models list`` shows it; the ``--json`` line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    aliases: tuple[str, ...]
    run_id: str
    scores: dict[str, float]
    created: str


class PromotionResult(BaseModel):
    """What ``models promote`` decided and why; the ``--json`` line.

    ``reason`` is the full reason recorded on the challenger (it starts with the verdict);
    ``why`` is the same without the verdict, for sentences that state it already (it is left
    out of the dump, which keeps the keys the command always printed).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    promoted: bool
    reason: str
    challenger: int | None
    champion_before: int | None
    why: str = Field(exclude=True)


class LiveGateDecision(BaseModel):
    """Whether a registered version may trade live, and why; the ``models gate --json`` line.

    ``missed`` holds each floor the version's scores missed (``psr 0.41 below minimum 0.95``);
    ``reason`` starts with the verdict (``allowed``, ``refused`` or ``overridden``) and lists
    every floor checked. An overridden decision is allowed, with the written
    ``override_reason``, and ``who`` gave it when the caller said. ``at`` is when it was
    decided (ISO-8601 UTC with Z).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    allowed: bool
    reason: str
    missed: tuple[str, ...]
    overridden: bool
    override_reason: str | None
    who: str | None
    at: str

    @property
    def verdict(self) -> str:
        """Return ``allowed``, ``refused`` or ``overridden``."""
        if self.overridden:
            return "overridden"
        return "allowed" if self.allowed else "refused"


def _registry(settings: Settings) -> ModelRegistry:
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    return ModelRegistry(tracking_uri(settings))


@functools.lru_cache(maxsize=8)
def _reader(uri: str) -> ModelRegistry:
    from feature_store.model_registry import ModelRegistry

    return ModelRegistry(uri)


def read_registry(settings: Settings) -> ModelRegistry | None:
    """Return the desk's registry for reading, or None when the desk has no tracking store (none
    is created). One client per tracking store is kept for the life of the process, so a
    long-running reader (the dashboard) does not open the store again on every read."""
    from feature_store.tracking import has_tracking_store, tracking_uri

    if not has_tracking_store(settings):
        return None
    return _reader(tracking_uri(settings))


def _existing_registry(settings: Settings, name: str) -> ModelRegistry:
    """Return the desk's registry; raise, without creating the store, if nothing was ever run."""
    from feature_store.tracking import has_tracking_store

    if not has_tracking_store(settings):
        msg = (
            f"no registered model {name!r}: nothing is registered on this desk yet "
            f"({settings.mlflow_dir}); run solodesk walkforward first to register a challenger"
        )
        raise UsageError(msg)
    return _registry(settings)


def promotion_rule(
    settings: Settings,
    rule: str = "dsr,sharpe_ci_low",
    *,
    min_dsr: float | None = None,
    min_ci_low: float | None = None,
    min_psr: float | None = None,
) -> PromotionRule:
    """Return ``rule`` with its floors: each one given, else its setting in ``[promotion]``.

    Raises
    ------
    UsageError
        If the rule is malformed or a floor is not a finite number.
    """
    from feature_store.model_registry import PromotionRule

    parsed = PromotionRule.parse(rule)
    floors = settings.promotion
    try:
        return PromotionRule(
            criteria=parsed.criteria,
            require=parsed.require,
            min_psr=floors.min_psr if min_psr is None else min_psr,
            min_sharpe_ci_low=floors.min_sharpe_ci_low if min_ci_low is None else min_ci_low,
            min_dsr=floors.min_dsr if min_dsr is None else min_dsr,
        )
    except ValidationError as exc:
        raise options_error("promotion", exc) from None


def list_versions(settings: Settings, name: str | None = None) -> list[ModelVersionRow]:
    """Return the registered versions (of model ``name``, or of all), newest first."""
    from feature_store.tracking import has_tracking_store

    if not has_tracking_store(settings):
        return []
    return [
        ModelVersionRow(
            name=v.name,
            version=v.version,
            aliases=v.aliases,
            run_id=v.run_id,
            scores=v.scores,
            created=iso_z(v.created),
        )
        for v in _registry(settings).list_versions(name)
    ]


def promote(
    settings: Settings,
    name: str,
    rule: str = "dsr,sharpe_ci_low",
    *,
    min_dsr: float | None = None,
    min_ci_low: float | None = None,
    min_psr: float | None = None,
) -> PromotionResult:
    """Make the challenger of ``name`` champion if it clears the floors and beats the champion.

    ``rule`` names the scores the challenger must beat (``dsr,sharpe_ci_low``; ``any:...``
    for one of them). The floors are ``min_psr`` (score ``psr``), ``min_ci_low``
    (``sharpe_ci_low``) and ``min_dsr`` (``dsr``): each one given replaces its setting in
    ``[promotion]``, higher or lower; each one left None is the setting. They apply to every
    promotion and alone decide the first (no champion yet); a score missing misses its floor.
    A refusal is a decision, not an error: ``promoted`` is False and ``reason`` names each floor
    missed with the value and the minimum. The decision and its reasons are recorded on the
    challenger.

    Raises
    ------
    UsageError
        If the rule is malformed, a floor is not a finite number, there is no such registered
        model (the tracking store is not created to find that out), or it has no challenger.
    """
    parsed = promotion_rule(settings, rule, min_dsr=min_dsr, min_ci_low=min_ci_low, min_psr=min_psr)
    decision = _existing_registry(settings, name).promote(name, parsed)
    return PromotionResult(
        name=name,
        promoted=decision.promoted,
        reason=decision.reason,
        challenger=decision.challenger.version if decision.challenger else None,
        champion_before=decision.champion_before.version if decision.champion_before else None,
        why=decision.why,
    )


class RollbackResult(BaseModel):
    """What ``models rollback`` did; the ``--json`` line.

    ``champion`` moved from version ``rolled_back`` to ``restored`` at ``at`` (ISO-8601 UTC
    with Z), by ``who``, because ``why``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    rolled_back: int
    restored: int
    who: str
    why: str
    at: str


def rollback(
    settings: Settings,
    name: str,
    *,
    who: str | None = None,
    why: str = "",
    version: int | None = None,
) -> RollbackResult:
    """Move ``champion`` of ``name`` back to the champion it replaced, and record why.

    The version to go back to is the one the champion's promotion recorded
    (``promotion.previous_champion``). Both versions get the tags ``rollback.at``,
    ``rollback.who``, ``rollback.why``, ``rollback.from`` and ``rollback.to``; the
    ``challenger`` alias leaves the version rolled back. A session following ``champion``
    reloads the restored version between bars. ``who`` defaults to the login name
    (:func:`core.ids.actor`); ``version``, when given, must still be the champion.

    Raises
    ------
    UsageError
        If there is no such registered model, it has no champion, the champion is not
        ``version``, or no previous champion was recorded.
    """
    decision = _existing_registry(settings, name).rollback(
        name, who=actor(who), why=why.strip() or "rolled back by hand", version=version
    )
    return RollbackResult(
        name=name,
        rolled_back=decision.rolled_back.version,
        restored=decision.restored.version,
        who=decision.who,
        why=decision.why,
        at=iso_z(decision.at),
    )


def resolve_version(
    settings: Settings, name: str, *, version: int | None = None, alias: str = "champion"
) -> ModelVersionInfo:
    """Return version ``version`` of ``name``, or (when None) the version ``alias`` points at.

    Raises
    ------
    UsageError
        If there is no such registered model or version (naming the versions there are), or
        the alias is unset.
    """
    registry = _existing_registry(settings, name)
    if version is None:
        found = registry.alias_version(name, alias)
        if found is None:
            msg = (
                f"registered model {name!r} has no alias {alias!r}: promote a challenger "
                f"(solodesk models promote --name {name}) or name a version"
            )
            raise UsageError(msg)
        version = found
    return registry.version_info(name, version)


def gate_record(decision: LiveGateDecision) -> dict[str, Any]:
    """Return one live-gate decision as a flat record: a row of the decisions' history.

    Keys: ``name``, ``version``, ``decision`` (``allowed``, ``refused`` or ``overridden``),
    ``allowed``, ``reason``, ``missed`` (the floors missed joined by ``; ``, empty when none),
    ``overridden``, ``override_reason``, ``who`` and ``at`` (ISO-8601 UTC with Z).
    """
    return {
        "name": decision.name,
        "version": decision.version,
        "decision": decision.verdict,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "missed": "; ".join(decision.missed),
        "overridden": decision.overridden,
        "override_reason": decision.override_reason,
        "who": decision.who,
        "at": decision.at,
    }


def _written_reason(override: str | None) -> str | None:
    if override is None:
        return None
    text = override.strip()
    if len(text) < MIN_OVERRIDE_CHARS:
        msg = (
            f"override {override!r}: write why this version may trade live below the floors, "
            f"in at least {MIN_OVERRIDE_CHARS} characters "
            '(e.g. --override "minimum size, to watch live fills for a week")'
        )
        raise UsageError(msg)
    return text


def live_gate(
    settings: Settings,
    name: str,
    *,
    version: int | None = None,
    alias: str = "champion",
    override: str | None = None,
    who: str | None = None,
    record: Callable[[dict[str, Any]], None] | None = None,
) -> LiveGateDecision:
    """Decide whether a registered version may trade live, and record the decision.

    The version (``version``, or the one ``alias`` points at) has its out-of-sample scores
    checked against the floors of ``[promotion]`` that are set (``min_psr``,
    ``min_sharpe_ci_low``, ``min_dsr``); a score missing misses its floor. All met: allowed.
    One missed: refused, unless ``override`` is a written reason (at least
    :data:`MIN_OVERRIDE_CHARS` characters once stripped), which allows it, overridden; ``who``
    names who overrode. Every decision goes onto the version as the tags
    ``live_gate.decision``, ``live_gate.reason``, ``live_gate.at`` and ``live_gate.override``
    (the written reason, empty when not overridden), then to ``record`` as :func:`gate_record`'s
    dict: by default a row of the state database's ``live_gates`` table. ``who`` defaults to
    the login name (:func:`core.ids.actor`). Paper trading does not ask.

    Raises
    ------
    UsageError
        If ``override`` is given without a written reason (nothing is recorded then), there is
        no such registered model or version, or the alias is unset.
    """
    from feature_store.model_registry import check_floors

    written = _written_reason(override)
    info = resolve_version(settings, name, version=version, alias=alias)
    checks = check_floors(info.scores, promotion_rule(settings).minimums())
    missed = tuple(check.text for check in checks if not check.met)
    notes = "; ".join(check.text for check in checks) or "no floors set"
    overridden = bool(missed) and written is not None
    if not missed:
        reason = f"allowed: {notes}"
    elif overridden:
        reason = f"overridden: {notes}; override: {written}"
    else:
        reason = f"refused: {notes}"
    decision = LiveGateDecision(
        name=name,
        version=info.version,
        allowed=not missed or overridden,
        reason=reason,
        missed=missed,
        overridden=overridden,
        override_reason=written if overridden else None,
        who=actor(who),
        at=iso_z(utc_now()),
    )
    tags = {
        "live_gate.decision": decision.verdict,
        "live_gate.reason": decision.reason,
        "live_gate.at": decision.at,
        "live_gate.override": decision.override_reason or "",
    }
    _registry(settings).set_version_tags(name, info.version, tags)
    (record or _state_recorder(settings))(gate_record(decision))
    return decision


def _state_recorder(settings: Settings) -> Callable[[dict[str, Any]], None]:
    """Return a writer of live-gate decisions into the desk's state database (``live_gates``)."""

    def write(row: dict[str, Any]) -> None:
        from feature_store.state import StateDB

        with StateDB.open(settings) as db:
            db.record_live_gate(row)
            db.commit()

    return write

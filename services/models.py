"""The model registry's use cases: list the registered versions, promote a challenger.

Both read the desk's tracking store; neither creates it: on a desk where no walk-forward has
run yet there is nothing to list, and promoting says so.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.errors import UsageError
from core.settings import Settings
from core.times import iso_z


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


def _registry(settings: Settings) -> Any:
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import tracking_uri

    return ModelRegistry(tracking_uri(settings))


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
) -> PromotionResult:
    """Make the challenger of ``name`` champion if it beats the champion by ``rule``.

    ``rule`` names the scores the challenger must beat (``dsr,sharpe_ci_low``; ``any:...``
    for one of them); ``min_dsr`` and ``min_ci_low`` are floors it must clear. The decision
    and its reasons are recorded on the challenger.

    Raises
    ------
    UsageError
        If the rule is malformed, there is no such registered model (the tracking store is not
        created to find that out), or it has no challenger.
    """
    from feature_store.model_registry import PromotionRule
    from feature_store.tracking import has_tracking_store

    parsed = PromotionRule.parse(rule)
    parsed = parsed.model_copy(update={"min_dsr": min_dsr, "min_sharpe_ci_low": min_ci_low})
    if not has_tracking_store(settings):
        msg = (
            f"no registered model {name!r}: nothing is registered on this desk yet "
            f"({settings.mlflow_dir}); run solodesk walkforward first to register a challenger"
        )
        raise UsageError(msg)
    decision = _registry(settings).promote(name, parsed)
    return PromotionResult(
        name=name,
        promoted=decision.promoted,
        reason=decision.reason,
        challenger=decision.challenger.version if decision.challenger else None,
        champion_before=decision.champion_before.version if decision.champion_before else None,
        why=decision.why,
    )

"""Retraining: a fresh walk-forward, the promotion rule, and a notice saying what changed.

:func:`retrain` chains three steps, each one kind of work a scheduler can run and retry on its
own:

- :func:`retrain_walkforward`: the walk-forward job on the stored series
  (:func:`services.research.run_stored_walkforward`), which registers the deployable model as
  the new ``challenger`` with its scores and drift reference;
- :func:`retrain_promote`: the promotion rule with the floors of ``[promotion]``
  (:func:`services.models.promote`), the champion before and after it and both versions'
  scores side by side;
- :func:`retrain_notify`: one ``retrain`` notice (:func:`retrain_notice`) through the desk's
  notifier.

A session following ``champion`` picks the new version up between bars when it is promoted.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from core.errors import UsageError
from core.ids import registered_model_name
from core.ports import Notice, NoticeKind, Notifier
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import utc_now
from core.types import Side
from pipelines.train.config import WalkForwardConfig
from services.common import Progress

if TYPE_CHECKING:
    from services.research import WalkForwardOutcome, WalkForwardSummary

#: The scores a retrain's notice and result set side by side, in this order.
COMPARED_SCORES = ("dsr", "psr", "sharpe", "sharpe_ci_low", "total_return", "max_drawdown")


class ScoreRow(BaseModel):
    """One score of the new version beside the champion's before the retrain (None: missing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    new: float | None
    champion: float | None


class RetrainResult(BaseModel):
    """What a retrain did; the ``solodesk retrain --json`` line.

    ``walkforward_run`` is the walk-forward job's run (``mlflow_run_id`` its MLflow run),
    ``version`` the version it registered as challenger, ``promoted`` and ``reason`` what the
    promotion rule decided (``reason`` starts with the verdict), ``champion_before`` and
    ``champion_after`` the champion's version around the promotion (None: no champion), and
    ``scores`` the new version's out-of-sample scores beside the champion's before.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    walkforward_run: str
    mlflow_run_id: str | None
    version: int
    promoted: bool
    reason: str
    champion_before: int | None
    champion_after: int | None
    scores: tuple[ScoreRow, ...]
    seconds: float


def retrain_walkforward(
    settings: Settings,
    *,
    symbol: str,
    timeframe: Timeframe,
    feature_set: str,
    params_path: Path,
    config: WalkForwardConfig,
    start: datetime | None = None,
    end: datetime | None = None,
    side: Side | None = None,
    progress: Progress | None = None,
) -> WalkForwardOutcome:
    """Run the walk-forward on the stored series and register its model as challenger.

    Raises
    ------
    UsageError
        If the series or the feature set cannot be loaded, or no model was registered (the
        walk-forward fitted none).
    """
    from services.research import load_research_inputs, run_stored_walkforward

    inputs = load_research_inputs(
        settings, symbol=symbol, timeframe=timeframe, feature_set=feature_set,
        params_path=params_path, side=side, start=start, end=end,
    )  # fmt: skip
    outcome = run_stored_walkforward(settings, inputs, config, progress=progress)
    if outcome.model_version is None:
        msg = (
            f"the walk-forward {outcome.summary.run_id} registered no model for "
            f"{inputs.label}: nothing to promote"
        )
        raise UsageError(msg)
    return outcome


def _champion(settings: Settings, name: str) -> tuple[int | None, dict[str, float]]:
    from services.models import resolve_version

    try:
        info = resolve_version(settings, name, alias="champion")
    except UsageError:  # no champion yet
        return None, {}
    return info.version, dict(info.scores)


def retrain_promote(
    settings: Settings,
    summary: WalkForwardSummary,
    *,
    rule: str = "dsr,sharpe_ci_low",
    min_dsr: float | None = None,
    min_ci_low: float | None = None,
    min_psr: float | None = None,
) -> RetrainResult:
    """Apply the promotion rule to the version a walk-forward registered; return what happened.

    ``summary`` is the walk-forward's (:attr:`WalkForwardOutcome.summary`, or what a flow's
    walk-forward steps return). The floors are those of ``[promotion]`` unless one is given.
    The champion's scores are read before the promotion, so the result sets the new version
    beside the version it had to beat; ``seconds`` is the walk-forward's.

    Raises
    ------
    UsageError
        If the rule or a floor is malformed, or the registered version is no longer the
        challenger (another walk-forward registered one since).
    """
    from services.models import promote, resolve_version

    name = registered_model_name(summary.symbol, Timeframe(summary.timeframe), summary.feature_set)
    version = summary.model_version
    if version is None:
        raise UsageError(f"the walk-forward {summary.run_id} registered no model to promote")
    challenger = resolve_version(settings, name, alias="challenger")
    if challenger.version != version:
        msg = (
            f"{name}: the challenger is now version {challenger.version}, not {version} "
            "(another walk-forward registered one since): promote it with solodesk models promote"
        )
        raise UsageError(msg)
    before, champion_scores = _champion(settings, name)
    decision = promote(
        settings, name, rule, min_dsr=min_dsr, min_ci_low=min_ci_low, min_psr=min_psr
    )
    after, _ = _champion(settings, name)
    scores = tuple(
        ScoreRow(key=key, new=challenger.scores.get(key), champion=champion_scores.get(key))
        for key in COMPARED_SCORES
    )
    return RetrainResult(
        name=name,
        walkforward_run=summary.run_id,
        mlflow_run_id=summary.mlflow_run_id,
        version=version,
        promoted=decision.promoted,
        reason=decision.reason,
        champion_before=before,
        champion_after=after,
        scores=scores,
        seconds=summary.seconds,
    )


def _number(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key in ("total_return", "max_drawdown"):
        return f"{value:.2%}"
    return f"{value:.3f}"


def retrain_notice(result: RetrainResult) -> Notice:
    """Return the ``retrain`` notice of a result: the verdict, then each score side by side."""
    verdict = "promoted" if result.promoted else "not promoted"
    before = "no champion" if result.champion_before is None else f"v{result.champion_before}"
    lines = [
        f"{result.name} v{result.version} {verdict} (champion was {before}, now "
        f"{'none' if result.champion_after is None else f'v{result.champion_after}'}).",
        f"score: new vs {before}",
        *(
            f"{row.key}: {_number(row.key, row.new)} vs {_number(row.key, row.champion)}"
            for row in result.scores
        ),
        result.reason,
    ]
    return Notice(
        kind=NoticeKind.RETRAIN,
        title=f"retrain: {result.name} v{result.version} {verdict}",
        body="\n".join(lines),
        ts=utc_now(),
        key=f"retrain:{result.name}:{result.version}",
        fields={"version": result.version, "promoted": result.promoted},
    )


def retrain_notify(
    settings: Settings, result: RetrainResult, notifier: Notifier | None = None
) -> Notice:
    """Send the result's notice through ``notifier`` (default: the desk's); return it.

    A notifier opened here is closed (its queue delivered) before returning.
    """
    notice = retrain_notice(result)
    if notifier is not None:
        notifier.notify(notice)
        return notice
    from services.notify import open_notifier

    owned = open_notifier(settings)
    try:
        owned.notify(notice)
    finally:
        owned.close()
    return notice


def retrain(
    settings: Settings,
    *,
    symbol: str,
    timeframe: Timeframe,
    feature_set: str,
    params_path: Path,
    config: WalkForwardConfig,
    start: datetime | None = None,
    end: datetime | None = None,
    side: Side | None = None,
    rule: str = "dsr,sharpe_ci_low",
    min_dsr: float | None = None,
    min_ci_low: float | None = None,
    min_psr: float | None = None,
    notifier: Notifier | None = None,
    progress: Progress | None = None,
) -> RetrainResult:
    """Walk forward, register the challenger, promote it if it earns it, and say so.

    The steps are :func:`retrain_walkforward`, :func:`retrain_promote` and
    :func:`retrain_notify`; ``seconds`` in the result is the whole job's time.

    Raises
    ------
    UsageError
        As the steps do: the series, the feature set, the rule or a floor is bad, or no model
        was registered.
    """
    started = time.perf_counter()
    outcome = retrain_walkforward(
        settings, symbol=symbol, timeframe=timeframe, feature_set=feature_set,
        params_path=params_path, config=config, start=start, end=end, side=side,
        progress=progress,
    )  # fmt: skip
    result = retrain_promote(
        settings,
        outcome.summary,
        rule=rule,
        min_dsr=min_dsr,
        min_ci_low=min_ci_low,
        min_psr=min_psr,
    )
    result = result.model_copy(update={"seconds": round(time.perf_counter() - started, 3)})
    retrain_notify(settings, result, notifier)
    return result

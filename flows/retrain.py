"""The ``retrain`` flow: walk-forward -> promotion with its floors -> a notice.

The walk-forward's steps run as in the ``walkforward`` flow; the promotion
(:func:`services.retrain.retrain_promote`) and the notice
(:func:`services.retrain.retrain_notify`) are I/O steps of their own. A session trading the
champion reloads a promoted version between bars. The run's artifact sets the new version's
out-of-sample scores beside the champion's, with the decision and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from core.settings import Settings
from core.timeframes import Timeframe
from core.types import Scheme, Side
from flows.common import desk, io_task, markdown, md_table
from flows.notices import on_flow_failure
from flows.research import inputs_step, walkforward_steps
from pipelines.train.config import WalkForwardConfig
from services.research import WalkForwardSummary
from services.retrain import RetrainResult, retrain_notify, retrain_promote


@io_task
def promote_step(
    settings: Settings, summary: WalkForwardSummary, seconds: float, rule: str
) -> RetrainResult:
    """Promote the registered version if it clears the floors and beats the champion."""
    return retrain_promote(settings, summary, rule=rule)


@io_task
def notify_step(settings: Settings, result: RetrainResult) -> None:
    """Send the retrain notice (the new version beside the champion)."""
    retrain_notify(settings, result)


@flow(name="retrain", on_failure=[on_flow_failure], log_prints=True)
def retrain_flow(
    symbol: str,
    timeframe: Timeframe,
    feature_set: str = "default",
    params: str = "params.yaml",
    model: str = "lightgbm",
    trials: int = 20,
    scheme: Scheme = Scheme.ROLLING,
    folds: int = 5,
    spread: float = 1.0,
    side: Side | None = None,
    start: datetime | None = None,
    rule: str = "dsr,sharpe_ci_low",
    seed: int = 0,
    home: str | None = None,
) -> dict[str, Any]:
    """Walk forward on the stored series, promote the new version if it earns it, say so."""
    settings = desk(home)
    config = WalkForwardConfig.from_options(
        model=model, trials=trials, scheme=scheme, folds=folds, spread=spread, seed=seed
    )
    inputs = inputs_step(settings, symbol, timeframe, feature_set, params, side, start, None)
    summary = walkforward_steps(settings, inputs, config)
    result = promote_step(settings, summary, rule)
    notify_step(settings, result)
    rows = [{"score": r.key, "new": r.new, "champion before": r.champion} for r in result.scores]
    verdict = "promoted" if result.promoted else "not promoted"
    markdown(
        f"retrain-{result.name}-{result.version}",
        f"# {result.name} v{result.version} {verdict}\n\n{result.reason}\n\n{md_table(rows)}",
        "the retrained version beside the champion",
    )
    return result.model_dump(mode="json")

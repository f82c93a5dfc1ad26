"""Every deployment ``solodesk serve`` runs, named ``<flow>/<purpose>``.

Scheduled ones take their cron strings from ``[schedules]`` in ``solodesk.toml``, in its time
zone (New York by default, so the daily report runs after the broker day closes):

| deployment | schedule | what it runs |
|---|---|---|
| ``ingest/manual`` | none | ``solodesk ingest``'s sources and options, from the UI or the API |
| ``ingest/drop-folder`` | ``ingest_drop_folder`` (hourly) | every file in ``SOLODESK_HOME/inbox`` |
| ``resample/manual`` | none | ``solodesk resample`` |
| ``features/manual`` | none | ``solodesk features build`` |
| ``walkforward/manual`` | none | ``solodesk walkforward`` |
| ``promote/manual`` | none | ``solodesk models promote`` |
| ``retrain/weekly`` | ``retrain_weekly`` | walk-forward -> promote -> notify, on ``params.yaml``'s research section |
| ``backtest/manual``, ``sweep/manual`` | none | ``solodesk backtest``, ``solodesk sweep`` |
| ``store-live-bars/daily`` | ``report_daily`` | the state database's live bars into the store |
| ``report/daily`` | ``report_daily`` | the day's desk summary |
| ``trader/manual`` | none | start, stop or read the supervised paper loop |

Every deployment passes the desk's home as ``home``, so its runs use the desk that serves them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.settings import Settings
from services.orchestration import SCHEDULED

TAGS = ["solodesk"]


def _research_defaults(params: Path) -> dict[str, Any]:
    from core.params import read_params

    if not params.exists():
        return {}
    section = read_params(params).research
    if section is None:
        return {}
    return {
        "symbol": section.symbol, "timeframe": section.timeframe, "feature_set": section.feature_set,
        "model": section.model, "trials": section.trials, "folds": section.folds,
        "spread": section.spread, "params": str(params.resolve()),
    }  # fmt: skip


def deployments(settings: Settings, params: Path = Path("params.yaml")) -> list[Any]:
    """Return the desk's deployments (Prefect ``RunnerDeployment`` objects), schedules set."""
    from prefect.schedules import Cron

    from flows.backtest import backtest_flow, sweep_flow
    from flows.features import features_flow
    from flows.ingest import ingest_flow, resample_flow
    from flows.live import store_live_bars_flow, trader_flow
    from flows.report import report_flow
    from flows.research import promote_flow, walkforward_flow
    from flows.retrain import retrain_flow

    home = {"home": str(settings.home.resolve())}
    zone = settings.schedules.timezone

    def scheduled(name: str) -> list[Any]:
        return [Cron(getattr(settings.schedules, SCHEDULED[name]), timezone=zone)]

    def manual(flow: Any, description: str, **parameters: Any) -> Any:
        return flow.to_deployment(
            "manual", parameters={**home, **parameters}, description=description, tags=TAGS
        )

    found = [
        manual(ingest_flow, "Ingest files, folders, archives and sample: specs."),
        ingest_flow.to_deployment(
            "drop-folder",
            schedules=scheduled("ingest/drop-folder"),
            parameters={**home, "folder": str(settings.inbox_dir.resolve())},
            description="Ingest what is dropped in the inbox; stored files move to done/.",
            tags=TAGS,
        ),
        manual(resample_flow, "Resample a stored series into longer timeframes."),
        manual(features_flow, "Build a feature set on a stored series."),
        manual(walkforward_flow, "Tune, fit and judge a model out of sample; register it."),
        manual(promote_flow, "Promote the challenger if it clears the floors and the rule."),
        manual(backtest_flow, "Backtest a strategy or a registered model."),
        manual(sweep_flow, "Sweep a strategy over its parameters."),
        manual(trader_flow, "Start, stop or read the supervised paper loop."),
        store_live_bars_flow.to_deployment(
            "daily",
            schedules=scheduled("store-live-bars/daily"),
            parameters=home,
            description="Store the bars live sessions kept, so retraining sees them.",
            tags=TAGS,
        ),
        report_flow.to_deployment(
            "daily",
            schedules=scheduled("report/daily"),
            parameters=home,
            description="The day's desk summary, after the broker day closes.",
            tags=TAGS,
        ),
    ]
    research = _research_defaults(params)
    if research:
        found.append(
            retrain_flow.to_deployment(
                "weekly",
                schedules=scheduled("retrain/weekly"),
                parameters={**home, **research},
                description="Walk-forward, promote with the floors, notify.",
                tags=TAGS,
            )
        )
    return found

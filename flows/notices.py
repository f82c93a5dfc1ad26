"""Notices from flows, through the runtime's notifier (the same URLs and per-event levels)."""

from __future__ import annotations

from typing import Any

from core.ports import Notice, NoticeKind
from core.settings import Settings, load_settings


def send(settings: Settings, notice: Notice) -> None:
    """Send one notice through the desk's notifier and wait until it is delivered or spooled."""
    from services.notify import open_notifier

    notifier = open_notifier(settings)
    try:
        notifier.notify(notice)
    finally:
        notifier.close()


def on_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Tell the trader a flow run failed (a Prefect ``on_failure`` hook)."""
    home = (flow_run.parameters or {}).get("home")
    settings = load_settings(home=home) if home else load_settings()
    message = getattr(state, "message", None) or str(state.type)
    send(
        settings,
        Notice(
            NoticeKind.FLOW_FAILED,
            f"flow {flow.name} failed",
            f"run {flow_run.name}: {message}",
            key=f"flow-{flow_run.id}",
        ),
    )


def notify_data_quality(settings: Settings, result: Any, share: float) -> None:
    """Tell the trader an ingest quarantined a share of its rows at or above the threshold."""
    quarantined = sum(s.rows_quarantined for s in result.series)
    series = ", ".join(str(s.key) for s in result.series if s.rows_quarantined)
    send(
        settings,
        Notice(
            NoticeKind.DATA_QUALITY,
            "rows quarantined",
            f"ingest {result.run}: {quarantined:,} rows quarantined ({share:.1%}) in {series}; "
            "solodesk data quarantine lists them",
            key=f"quarantine-{result.run}",
        ),
    )

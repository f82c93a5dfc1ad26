"""The Ops page: what ran, what is scheduled, the models' promotions and drift, the alert log and
the supervisor.

- :func:`flow_runs`: the Prefect server's latest flow runs with their states; with no server
  answering, what the desk's own stores recorded instead (:func:`desk_activity`: ingest runs,
  feature builds, backtest, sweep, portfolio and walk-forward runs, registered versions,
  promotions and rollbacks, trading sessions, supervisor events and flow requests), newest
  first;
- :func:`schedules`: the deployments' schedules, from the server, else from ``[schedules]``;
- :func:`retrain_and_promotion`: the latest walk-forward (what a retrain runs and registers),
  the latest ``retrain`` notice, each model's champion now, the latest promotion decision and
  rollback (registry tags);
- :func:`drift`: the thresholds, the sessions watched, and every trace drift leaves (the
  ``model_drift`` and ``model_rollback`` notices, rollbacks and pauses by ``drift``);
- :func:`alerts`: the latest notices of the alert log, of some kinds;
- :func:`supervisor`: what ``solodesk supervise`` recorded, per session and event by event.

The Prefect reads wait at most :data:`PREFECT_CHECK_SECONDS` for a health check; the MLflow
registry is read only where its store exists; the state database is opened read-only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from core.ports import NoticeKind
from core.settings import Settings
from core.times import iso_z
from feature_store.backtests import BacktestStore, StoredRun
from feature_store.feature_index import FeatureStore
from feature_store.state import ControlRequest, StateDB, SupervisorEvent
from feature_store.store import BarStore
from services import orchestration
from services.notify import NoticeLogEntry, alert_log
from services.orchestration import FlowRunRow, ScheduleRow

if TYPE_CHECKING:
    from feature_store.model_registry import ModelVersionInfo

#: Seconds each Prefect read of the page waits for the server's health check.
PREFECT_CHECK_SECONDS = 1.0
#: How many flow runs, activity rows and alert-log entries the page lists.
LISTED = 200
#: The notices drift raises.
DRIFT_KINDS = (NoticeKind.MODEL_DRIFT.value, NoticeKind.MODEL_ROLLBACK.value)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _percent(value: object) -> str:
    return f"{value:+.2%}" if isinstance(value, int | float) else "-"


def _number(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


# -- what the stores recorded ------------------------------------------------------------------


class ActivityRow(_View):
    """One thing the desk did, as its stores recorded it: when (ISO-8601 UTC with Z), what
    kind of job, its name or run id, and how it went."""

    at: str
    kind: str
    name: str
    outcome: str


def _ingest_activity(settings: Settings) -> Iterator[ActivityRow]:
    for record in BarStore(settings.store_dir).runs():
        series = record.get("series", [])
        added = sum(int(s.get("rows_added", 0)) for s in series)
        quarantined = sum(int(s.get("rows_quarantined", 0)) for s in series)
        verdicts = sorted({str(s.get("expectations") or "not validated") for s in series})
        yield ActivityRow(
            at=str(record.get("at", "")),
            kind="ingest",
            name=str(record.get("run", "")),
            outcome=(
                f"{len(series)} series: {added:,} bars added, {quarantined:,} quarantined; "
                f"expectations {', '.join(verdicts) or '-'}"
            ),
        )


def _feature_activity(settings: Settings) -> Iterator[ActivityRow]:
    for build in FeatureStore(settings.features_dir).builds():
        yield ActivityRow(
            at=build.created,
            kind="feature build",
            name=f"{build.feature_set} on {build.key.slug} ({build.version})",
            outcome=f"{build.rows:,} rows, {build.features} features",
        )


def _run_outcome(run: StoredRun) -> str:
    record = run.record
    metrics = record.get("metrics") or {}
    what = record.get("model") or record.get("strategy") or "?"
    where = record.get("symbol") or ", ".join(record.get("symbols") or ()) or "?"
    on = f"{what} on {where} {record.get('timeframe', '')}".rstrip()
    if run.kind == "sweep":
        best = record.get("best") or {}
        metric = str(record.get("metric", "sharpe"))
        combos = record.get("combinations", "?")
        return f"{on}: {combos} combinations, best {metric} {_number(best.get(metric))}"
    if run.kind == "walkforward":
        summary = record.get("summary") or {}
        oos = summary.get("oos") or {}
        version = summary.get("model_version")
        registered = f", registered v{version}" if version is not None else ""
        model = f"{summary.get('model', '?')} on {summary.get('symbol', '?')} "
        return (
            f"{model}{summary.get('timeframe', '')}: out-of-sample Sharpe "
            f"{_number(oos.get('sharpe'))}, {oos.get('n_trades', '?')} trades{registered}"
        )
    trades = metrics.get("n_trades", record.get("n_trades", "?"))
    return f"{on}: {trades} trades, return {_percent(metrics.get('total_return'))}"


def _run_activity(settings: Settings) -> Iterator[ActivityRow]:
    for store in (BacktestStore.backtests(settings), BacktestStore.research(settings)):
        for run in store.runs():
            yield ActivityRow(
                at=str(run.record.get("created", "")),
                kind=run.kind or "run",
                name=run.id,
                outcome=_run_outcome(run),
            )


def _registered(settings: Settings) -> tuple[list[ModelVersionInfo], str]:
    """Return every registered version (newest first) and, when the registry could not be
    read, why; nothing (and no store created) on a desk that never registered a model."""
    from services.models import read_registry

    registry = read_registry(settings)
    if registry is None:
        return [], ""
    from mlflow.exceptions import MlflowException

    try:
        return registry.list_versions(), ""
    except MlflowException as exc:
        return [], f"the model registry could not be read: {exc.message}"


def _registry_activity(versions: list[ModelVersionInfo]) -> Iterator[ActivityRow]:
    for v in versions:
        label = f"{v.name} v{v.version}"
        scores = ", ".join(f"{k} {_number(v.scores.get(k))}" for k in ("dsr", "psr", "sharpe"))
        yield ActivityRow(at=iso_z(v.created), kind="model registered", name=label, outcome=scores)
        promotion, rollback = v.promotion, v.rollback
        if promotion is not None:
            yield ActivityRow(
                at=promotion.at,
                kind="promotion",
                name=label,
                outcome=promotion.reason or promotion.decision,
            )
        if rollback is not None and rollback.moved == str(v.version):
            yield ActivityRow(
                at=rollback.at,
                kind="rollback",
                name=label,
                outcome=f"champion back to v{rollback.restored} by {rollback.who}: {rollback.why}",
            )


def _state_activity(db: StateDB) -> Iterator[ActivityRow]:
    for s in db.sessions():
        paused = ", paused" if s.paused else ""
        yield ActivityRow(
            at=iso_z(s.created),
            kind=f"{s.kind} session",
            name=s.session,
            outcome=f"{s.strategy} on {s.symbol} {s.timeframe}: {s.status}{paused}, {s.bars:,} bars",
        )
    for e in db.supervisor_events():
        yield ActivityRow(
            at=iso_z(e.at),
            kind=f"supervisor {e.kind}",
            name=e.session,
            outcome=e.reason or (f"exit {e.exit_code}" if e.exit_code is not None else ""),
        )
    for r in db.flow_requests():
        yield ActivityRow(
            at=iso_z(r.requested),
            kind="flow request",
            name=r.deployment,
            outcome=": ".join(part for part in (r.flow_run or "not run", r.outcome) if part),
        )


def desk_activity(settings: Settings, limit: int = LISTED) -> tuple[tuple[ActivityRow, ...], str]:
    """Return the latest ``limit`` things the desk's stores recorded, newest first, and a note
    on what could not be read (the registry), empty when all was read."""
    versions, note = _registered(settings)
    rows = [
        *_ingest_activity(settings),
        *_feature_activity(settings),
        *_run_activity(settings),
        *_registry_activity(versions),
    ]
    reader = StateDB.reader(settings)
    if reader is not None:
        with reader:
            rows += list(_state_activity(reader))
    rows.sort(key=lambda r: r.at, reverse=True)
    return tuple(rows[:limit]), note


class FlowRunsView(_View):
    """The flow runs: the Prefect server's (``answered``), else what the desk recorded itself.

    ``message`` says why the server's runs are missing; ``note`` what of the desk's own record
    could not be read.
    """

    api: str
    answered: bool
    message: str
    runs: tuple[FlowRunRow, ...]
    activity: tuple[ActivityRow, ...]
    note: str = ""


def flow_runs(settings: Settings) -> FlowRunsView:
    """Return the server's latest flow runs, or (no server answering) the desk's own record."""
    found = orchestration.flow_runs(settings, LISTED, timeout=PREFECT_CHECK_SECONDS)
    activity: tuple[ActivityRow, ...] = ()
    note = ""
    if not found.answered:
        activity, note = desk_activity(settings)
    return FlowRunsView(
        api=found.api,
        answered=found.answered,
        message=found.message,
        runs=found.runs,
        activity=activity,
        note=note,
    )


# -- schedules -------------------------------------------------------------------------------


class SchedulesView(_View):
    """The deployments' schedules: the server's (``answered``), else what ``solodesk serve``
    would register from ``[schedules]``; ``deployments`` lists every deployment the server
    holds (empty without one)."""

    api: str
    answered: bool
    message: str
    schedules: tuple[ScheduleRow, ...]
    deployments: tuple[str, ...]


def schedules(settings: Settings) -> SchedulesView:
    """Return the schedules from the Prefect server, else from the settings."""
    found = orchestration.deployment_schedules(settings, timeout=PREFECT_CHECK_SECONDS)
    rows = found.schedules if found.answered else orchestration.configured_schedules(settings)
    return SchedulesView(
        api=found.api,
        answered=found.answered,
        message=found.message,
        schedules=rows,
        deployments=found.deployments,
    )


# -- retrain and promotion -------------------------------------------------------------------


class WalkForwardRow(_View):
    """A walk-forward run (what a retrain runs): its figures out of sample and the version it
    registered."""

    run: str
    created: str
    symbol: str
    timeframe: str
    feature_set: str
    model: str
    sharpe: float | None
    psr: float | None
    dsr: float | None
    trades: int | None
    version: int | None
    report: str | None


class ChampionRow(_View):
    """A registered model now: its champion and challenger versions (None: no such alias)."""

    name: str
    champion: int | None
    challenger: int | None
    latest: int
    versions: int


class DecisionRow(_View):
    """A promotion decision or a rollback recorded on a version: when, what, why, by whom."""

    name: str
    version: int
    at: str
    decision: str
    reason: str
    who: str = ""


class RetrainView(_View):
    """The latest retrain and promotion: the latest walk-forward, the latest ``retrain``
    notice, each model's champion, the latest promotion decision and rollback.

    ``registry`` is False on a desk with no tracking store; ``note`` says why the registry
    could not be read, if so.
    """

    walkforward: WalkForwardRow | None
    retrain: NoticeLogEntry | None
    champions: tuple[ChampionRow, ...]
    promotion: DecisionRow | None
    rollback: DecisionRow | None
    registry: bool
    note: str = ""


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _walkforward(settings: Settings) -> WalkForwardRow | None:
    runs = BacktestStore.research(settings).runs("walkforward")
    if not runs:
        return None
    run = runs[-1]
    summary = run.record.get("summary") or {}
    oos = summary.get("oos") or {}
    trades = oos.get("n_trades")
    version = summary.get("model_version")
    return WalkForwardRow(
        run=run.id,
        created=str(run.record.get("created", "")),
        symbol=str(summary.get("symbol", "")),
        timeframe=str(summary.get("timeframe", "")),
        feature_set=str(summary.get("feature_set", "")),
        model=str(summary.get("model", "")),
        sharpe=_float(oos.get("sharpe")),
        psr=_float(oos.get("psr")),
        dsr=_float(oos.get("dsr")),
        trades=int(trades) if isinstance(trades, int) else None,
        version=int(version) if isinstance(version, int) else None,
        report=run.record.get("report"),
    )


def _champions(versions: list[ModelVersionInfo]) -> tuple[ChampionRow, ...]:
    rows = []
    for name in sorted({v.name for v in versions}):
        mine = [v for v in versions if v.name == name]
        with_alias = {a: v.version for v in mine for a in v.aliases}
        rows.append(
            ChampionRow(
                name=name,
                champion=with_alias.get("champion"),
                challenger=with_alias.get("challenger"),
                latest=max(v.version for v in mine),
                versions=len(mine),
            )
        )
    return tuple(rows)


def _promotions(versions: list[ModelVersionInfo]) -> list[DecisionRow]:
    rows = [
        DecisionRow(name=v.name, version=v.version, at=p.at, decision=p.decision, reason=p.reason)
        for v in versions
        if (p := v.promotion) is not None
    ]
    return sorted(rows, key=lambda d: d.at, reverse=True)


def _rollbacks(versions: list[ModelVersionInfo]) -> list[DecisionRow]:
    rows = [
        DecisionRow(
            name=v.name,
            version=v.version,
            at=r.at,
            decision=f"champion v{r.moved} -> v{r.restored}",
            reason=r.why,
            who=r.who,
        )
        for v in versions
        if (r := v.rollback) is not None and r.moved == str(v.version)
    ]
    return sorted(rows, key=lambda d: d.at, reverse=True)


def retrain_and_promotion(settings: Settings) -> RetrainView:
    """Return the latest retrain, the champions and the latest promotion and rollback."""
    from feature_store.tracking import has_tracking_store

    versions, note = _registered(settings)
    promotions, rollbacks = _promotions(versions), _rollbacks(versions)
    notices = alert_log(settings, 1, (NoticeKind.RETRAIN.value,))
    return RetrainView(
        walkforward=_walkforward(settings),
        retrain=notices[0] if notices else None,
        champions=_champions(versions),
        promotion=promotions[0] if promotions else None,
        rollback=rollbacks[0] if rollbacks else None,
        registry=has_tracking_store(settings),
        note=note,
    )


# -- drift -----------------------------------------------------------------------------------


class DriftView(_View):
    """Drift: the thresholds of ``[drift]``, the model sessions watched (session: model and
    status), the notices drift raised (newest first), and what it did: rollbacks of
    ``champion`` and pauses of sessions by ``drift``."""

    thresholds: dict[str, float]
    watched: tuple[str, ...]
    notices: tuple[NoticeLogEntry, ...]
    rollbacks: tuple[DecisionRow, ...]
    pauses: tuple[ControlRequest, ...]
    note: str = ""


def drift(settings: Settings) -> DriftView:
    """Return what the desk recorded of its models' drift."""
    from services.live_model import DRIFT_ACTOR

    section = settings.drift
    thresholds = {
        "psi_warn": section.psi_warn, "psi_act": section.psi_act,
        "window_bars": float(section.window_bars), "check_bars": float(section.check_bars),
        "window_days": float(section.window_days),
    }  # fmt: skip
    watched: list[str] = []
    pauses: list[ControlRequest] = []
    reader = StateDB.reader(settings)
    if reader is not None:
        with reader:
            for s in reader.sessions():
                model = s.options.get("model")
                if model:
                    follows = s.options.get("model_version") or s.options.get("model_alias")
                    watched.append(f"{s.session}: {model} ({follows or 'champion'}), {s.status}")
            pauses = [c for c in reader.controls() if c.who == DRIFT_ACTOR]
    versions, note = _registered(settings)
    return DriftView(
        thresholds=thresholds,
        watched=tuple(watched),
        notices=tuple(alert_log(settings, LISTED, DRIFT_KINDS)),
        rollbacks=tuple(r for r in _rollbacks(versions) if r.who == DRIFT_ACTOR),
        pauses=tuple(reversed(pauses)),
        note=note,
    )


# -- the alert log ---------------------------------------------------------------------------


class AlertsView(_View):
    """The latest notices of the alert log (newest first), the log's file and whether it
    exists yet."""

    path: str
    exists: bool
    entries: tuple[NoticeLogEntry, ...]


def alerts(
    settings: Settings, kinds: tuple[str, ...] | None = None, limit: int = LISTED
) -> AlertsView:
    """Return the latest ``limit`` notices of the alert log, of ``kinds`` when given."""
    path = settings.notice_log_path
    return AlertsView(
        path=str(path),
        exists=path.exists(),
        entries=tuple(alert_log(settings, limit, kinds or None)),
    )


# -- the supervisor --------------------------------------------------------------------------


class SupervisedSession(_View):
    """One supervised session: its starts and restarts, and its latest event."""

    session: str
    starts: int
    restarts: int
    last: str
    at: str
    reason: str


class SupervisorView(_View):
    """What ``solodesk supervise`` recorded: per session (latest first) and every event,
    newest first. ``state`` is False when the desk has no state database yet."""

    state: bool
    sessions: tuple[SupervisedSession, ...]
    events: tuple[SupervisorEvent, ...]


def supervisor(settings: Settings) -> SupervisorView:
    """Return the supervisor's events and restart counts per session."""
    reader = StateDB.reader(settings)
    if reader is None:
        return SupervisorView(state=False, sessions=(), events=())
    with reader:
        events = reader.supervisor_events()
    latest: dict[str, SupervisorEvent] = {}
    counts: dict[str, dict[str, int]] = {}
    for e in events:
        latest[e.session] = e
        tally = counts.setdefault(e.session, {"start": 0, "restart": 0})
        if e.kind in tally:
            tally[e.kind] += 1
    sessions = sorted(
        (
            SupervisedSession(
                session=name,
                starts=counts[name]["start"],
                restarts=counts[name]["restart"],
                last=e.kind,
                at=iso_z(e.at),
                reason=e.reason,
            )
            for name, e in latest.items()
        ),
        key=lambda s: s.at,
        reverse=True,
    )
    return SupervisorView(state=True, sessions=tuple(sessions), events=tuple(reversed(events)))

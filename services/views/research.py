"""The Research page: walk-forward reports, registered models, feature importance, MLflow.

Walk-forward runs are read from their store under ``SOLODESK_HOME/research``
(:meth:`feature_store.backtests.BacktestStore.research`): the record holds the job's summary
(out-of-sample statistics with their intervals, PSR, DSR, PBO, SPA, folds), ``oos.parquet`` the
out-of-sample equity. The charts are the report's own
(:func:`pipelines.evaluate.report.walkforward_figures`,
:func:`~pipelines.evaluate.report.importance_figure`). The registered models, their aliases and
the tags their promotions, rollbacks and live gates left come from the MLflow registry
(:class:`feature_store.model_registry.ModelRegistry`), the live-gate history from the state
database; the feature importances are the walk-forward's MLflow artifact. Nothing here creates
a tracking store: on a desk where no walk-forward ran, the registry is not opened at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from core.records import dig, finite_number, whole_number
from core.settings import Settings
from core.times import iso_z
from core.types import Frozen
from feature_store.backtests import BacktestStore, StoredRun
from feature_store.state import StateDB
from feature_store.tracking import run_page
from services.research import IMPORTANCE_ARTIFACT

if TYPE_CHECKING:
    from feature_store.model_registry import ModelRegistry, ModelVersionInfo

#: The command that makes a walk-forward run, registers its model and fills the MLflow store.
WALKFORWARD_COMMAND = "solodesk walkforward --symbol EURUSD --timeframe H1"
#: The command that serves the MLflow UI.
MLFLOW_UI_COMMAND = "make mlflow"
#: Seconds a configured MLflow tracking server may take to answer its health check.
CHECK_SECONDS = 2.0
#: How a figure is read (see :class:`FigureRow`).
Unit = Literal["ratio", "fraction", "probability", "count"]
#: The columns of a walk-forward's out-of-sample table the page draws.
OOS_COLUMNS = ("ts", "equity", "return", "gross_return")
#: The report's charts of a run the page shows, in order.
RUN_CHARTS = ("equity", "sharpe_interval", "drawdown", "fold_sharpe", "paths")


class WalkForwardRow(Frozen):
    """One stored walk-forward run and its key out-of-sample figures (fractions; p-values)."""

    run_id: str
    created: str | None
    symbol: str | None
    timeframe: str | None
    feature_set: str | None
    model: str | None
    scheme: str | None
    sharpe: float | None
    sharpe_ci_low: float | None
    sharpe_ci_high: float | None
    psr: float | None
    dsr: float | None
    pbo: float | None
    spa_vs_flat_p: float | None
    spa_vs_buy_and_hold_p: float | None
    spa_models_vs_flat_p: float | None
    n_trades: int | None
    total_return: float | None
    model_version: int | None


class FigureRow(Frozen):
    """One out-of-sample figure, with its bootstrap interval when it has one.

    ``unit`` says how to read it: a ``ratio`` (Sharpe, t), a ``fraction`` (returns, drawdowns,
    hit rate), a ``probability`` (PSR, DSR, PBO, p-values) or a ``count``.
    """

    figure: str
    unit: Unit
    value: float | None
    low: float | None = None
    high: float | None = None


class FoldRow(Frozen):
    """One fold (or CPCV split) of a walk-forward: its windows and out-of-sample figures."""

    fold: int | None
    train_start: str | None
    train_end: str | None
    test_start: str | None
    test_end: str | None
    test_rows: int | None
    sharpe: float | None
    total_return: float | None
    auc: float | None
    logloss: float | None


class WalkForwardDetail(Frozen):
    """One walk-forward run as the page shows it.

    ``figures`` are the out-of-sample figures with their intervals (at ``ci_level``);
    ``charts`` the report's Plotly figures by name (see :data:`RUN_CHARTS`); ``report`` the
    path of its HTML report when the file exists, ``report_bytes`` its size.
    """

    run_id: str
    title: str
    created: str | None
    mlflow_run_id: str | None
    model_version: int | None
    ci_level: float | None
    figures: tuple[FigureRow, ...]
    folds: tuple[FoldRow, ...]
    charts: dict[str, Any]
    report: str | None
    report_bytes: int | None


class VersionRow(Frozen):
    """One registered version side by side with the others: its role, scores and decisions.

    ``role`` is ``champion``, ``challenger``, both, or empty; ``promotion`` the decision
    recorded on it (``promoted`` or ``rejected``) and ``promotion_reason`` why;
    ``rollback`` what a rollback recorded on it (``v2 -> v1 by who at time: why``);
    ``live_gate`` the latest live-gate decision on it and ``live_gate_reason`` why.
    """

    name: str
    version: int
    role: str
    created: str
    walkforward_run: str | None
    mlflow_run_id: str
    sharpe: float | None
    sharpe_ci_low: float | None
    sharpe_ci_high: float | None
    psr: float | None
    dsr: float | None
    total_return: float | None
    max_drawdown: float | None
    promotion: str | None
    promotion_reason: str | None
    promotion_at: str | None
    previous_champion: str | None
    rollback: str | None
    live_gate: str | None
    live_gate_reason: str | None


class GateRow(Frozen):
    """One live-gate decision from the state database's history."""

    name: str
    version: int
    decision: str
    reason: str
    override_reason: str | None
    who: str | None
    at: str


class RegisteredModels(Frozen):
    """Every registered version (by model, champion first, then newest), the live-gate history
    (newest first), and what went wrong reading the registry (None when nothing did).

    ``store`` is False when the desk has no tracking store yet (nothing was registered).
    """

    store: bool
    versions: tuple[VersionRow, ...]
    gates: tuple[GateRow, ...]
    problem: str | None


class FeatureImportance(Frozen):
    """A walk-forward's feature importances (normalized, largest first), as MLflow holds them,
    and the report's chart of them (a Plotly figure; None without importances).

    ``problem`` says why there are none, when there are none.
    """

    run_id: str
    mlflow_run_id: str | None
    values: tuple[tuple[str, float], ...]
    chart: Any = None
    problem: str | None


class MlflowLink(Frozen):
    """Where the MLflow UI is and the page of a run in it.

    ``url`` is the run's page when its experiment is known, else the UI's root; ``command``
    serves the UI of the desk's embedded store.
    """

    ui_url: str
    url: str
    run_id: str | None
    experiment_id: str | None
    store: bool
    command: str
    problem: str | None


# -- reading a summary -----------------------------------------------------------------------


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _bounds(value: object) -> tuple[float | None, float | None]:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        return finite_number(value[0]), finite_number(value[1])
    return None, None


def _summary(run: StoredRun) -> Mapping[str, Any]:
    summary = run.record.get("summary")
    return summary if isinstance(summary, Mapping) else {}


# -- walk-forward runs -----------------------------------------------------------------------


def _runs(settings: Settings) -> list[StoredRun]:
    runs = BacktestStore.research(settings).runs("walkforward")
    return sorted(runs, key=lambda r: (str(r.record.get("created", "")), r.id), reverse=True)


def walkforward_runs(settings: Settings) -> list[WalkForwardRow]:
    """Return the stored walk-forward runs, newest first, with their key figures."""
    rows = []
    for run in _runs(settings):
        summary = _summary(run)
        oos = dig(summary, "oos")
        low, high = _bounds(dig(oos, "sharpe_ci"))
        rows.append(
            WalkForwardRow(
                run_id=run.id,
                created=_text(run.record.get("created")),
                symbol=_text(summary.get("symbol")),
                timeframe=_text(summary.get("timeframe")),
                feature_set=_text(summary.get("feature_set")),
                model=_text(summary.get("model")),
                scheme=_text(summary.get("scheme")),
                sharpe=finite_number(dig(oos, "sharpe")),
                sharpe_ci_low=low,
                sharpe_ci_high=high,
                psr=finite_number(dig(oos, "psr")),
                dsr=finite_number(dig(oos, "dsr")),
                pbo=finite_number(summary.get("pbo")),
                spa_vs_flat_p=finite_number(dig(oos, "spa", "vs_flat_p")),
                spa_vs_buy_and_hold_p=finite_number(dig(oos, "spa", "vs_buy_and_hold_p")),
                spa_models_vs_flat_p=finite_number(dig(oos, "spa", "models_vs_flat_p")),
                n_trades=whole_number(dig(oos, "n_trades")),
                total_return=finite_number(dig(oos, "total_return")),
                model_version=whole_number(summary.get("model_version")),
            )
        )
    return rows


def _figures(summary: Mapping[str, Any], mean_return: float | None) -> tuple[FigureRow, ...]:
    oos = dig(summary, "oos")

    def row(
        figure: str, unit: Unit, *keys: str, interval: tuple[str, ...] = (), value: object = None
    ) -> FigureRow:
        low, high = _bounds(dig(oos, *interval)) if interval else (None, None)
        found = finite_number(dig(oos, *keys)) if keys else finite_number(value)
        return FigureRow(figure=figure, unit=unit, value=found, low=low, high=high)

    return (
        row("Sharpe (annualized, after costs)", "ratio", "sharpe", interval=("sharpe_ci",)),
        row("Sharpe gross of costs", "ratio", "gross", "sharpe", interval=("gross", "sharpe_ci")),
        row("Mean return per bar", "fraction", interval=("mean_return_ci",), value=mean_return),
        row("Max drawdown", "fraction", "max_drawdown", interval=("max_drawdown_ci",)),
        row("Total return", "fraction", "total_return"),
        row("Total return gross of costs", "fraction", "gross", "total_return"),
        row("Hit rate", "fraction", "hit_rate"),
        row("PSR", "probability", "psr"),
        row("DSR", "probability", "dsr"),
        row("PBO", "probability", value=summary.get("pbo")),
        row("SPA p vs flat", "probability", "spa", "vs_flat_p"),
        row("SPA p vs buy and hold", "probability", "spa", "vs_buy_and_hold_p"),
        row("SPA p, models vs flat", "probability", "spa", "models_vs_flat_p"),
        row("Newey-West t", "ratio", "newey_west_t"),
        row("Newey-West p", "probability", "newey_west_p"),
        row("Trades", "count", "n_trades"),
        row("Trials (total)", "count", value=dig(summary, "trials", "total")),
        row("Min track record (bars)", "count", "min_track_record_bars"),
    )


def _folds(summary: Mapping[str, Any]) -> tuple[FoldRow, ...]:
    folds = summary.get("folds")
    if not isinstance(folds, Sequence) or isinstance(folds, str):
        return ()
    return tuple(
        FoldRow(
            fold=whole_number(fold.get("fold")),
            train_start=_text(fold.get("train_start")),
            train_end=_text(fold.get("train_end")),
            test_start=_text(fold.get("test_start")),
            test_end=_text(fold.get("test_end")),
            test_rows=whole_number(fold.get("test_rows")),
            sharpe=finite_number(fold.get("sharpe")),
            total_return=finite_number(fold.get("total_return")),
            auc=finite_number(fold.get("auc")),
            logloss=finite_number(fold.get("logloss")),
        )
        for fold in folds
        if isinstance(fold, Mapping)
    )


def _oos(store: BacktestStore, run: StoredRun) -> pl.DataFrame | None:
    if "oos" not in run.record.get("files", {}):
        return None
    table = store.table(run, "oos")
    return table if all(name in table.columns for name in OOS_COLUMNS) else None


def _charts(run: StoredRun, summary: Mapping[str, Any], table: pl.DataFrame) -> dict[str, Any]:
    from pipelines.evaluate.report import walkforward_figures

    cash = finite_number(dig(run.record, "config", "backtest", "cash"))
    if cash is None:
        cash = finite_number(dig(summary, "oos", "initial_cash")) or 0.0
    figures = walkforward_figures(
        summary,
        ts=table["ts"].dt.epoch("ns").to_numpy(),
        equity=table["equity"].to_numpy(),
        gross_returns=table["gross_return"].fill_null(0.0).to_numpy(),
        initial_cash=cash,
        importance={},
    )
    return {name: figures[name] for name in RUN_CHARTS if name in figures}


def _report_file(store: BacktestStore, run: StoredRun) -> Path | None:
    # This desk's own report first: a copied desk's record still names the original's file.
    candidates = [store.report_path(run.id)]
    recorded = run.record.get("report")
    if isinstance(recorded, str):
        candidates.append(Path(recorded))
    return next((path for path in candidates if path.is_file()), None)


def walkforward_detail(settings: Settings, run_id: str) -> WalkForwardDetail:
    """Return one walk-forward run: its figures and intervals, folds, charts and report file.

    Raises
    ------
    UsageError
        If no stored walk-forward run (or several) matches ``run_id``.
    """
    store = BacktestStore.research(settings)
    run = store.get(run_id)
    summary = _summary(run)
    label = " ".join(
        str(summary[key]) for key in ("symbol", "timeframe", "side") if summary.get(key)
    )
    parts = [
        f"{summary.get('model', 'model')} on {label or 'an unknown series'}",
        f"feature set {summary.get('feature_set', 'n/a')}",
        str(summary.get("scheme", "n/a")),
    ]
    path = _report_file(store, run)
    table = _oos(store, run)
    mean = None if table is None or table.height == 0 else finite_number(table["return"].mean())
    return WalkForwardDetail(
        run_id=run.id,
        title=" · ".join(parts),
        created=_text(run.record.get("created")),
        mlflow_run_id=_text(summary.get("mlflow_run_id")),
        model_version=whole_number(summary.get("model_version")),
        ci_level=finite_number(dig(summary, "oos", "ci_level")),
        figures=_figures(summary, mean),
        folds=_folds(summary),
        charts={} if table is None else _charts(run, summary, table),
        report=None if path is None else str(path),
        report_bytes=None if path is None else path.stat().st_size,
    )


# -- the registry ----------------------------------------------------------------------------


def _registry(settings: Settings) -> ModelRegistry | None:
    """Return the desk's registry, or None when it has no tracking store (none is created)."""
    from services.models import read_registry

    return read_registry(settings)


def _unreachable(settings: Settings) -> str | None:
    """Return why a configured tracking server cannot be read (it does not answer its health
    check within :data:`CHECK_SECONDS`), or None. MLflow's own client retries a server that is
    down for minutes; the page asks first."""
    from feature_store.tracking import is_server_uri
    from services.orchestration import healthy

    uri = settings.mlflow_tracking_uri
    if uri and is_server_uri(uri) and not healthy(uri, CHECK_SECONDS):
        return f"the MLflow tracking server {uri} does not answer its health check: is it running?"
    return None


def _store_problem(settings: Settings, exc: BaseException) -> str:
    where = settings.mlflow_tracking_uri or str(settings.mlflow_dir)
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"cannot read the MLflow store {where}: {detail}"


def _rollback(info: ModelVersionInfo) -> str | None:
    done = info.rollback
    if done is None:
        return None
    moved = done.moved == str(info.version)
    what = f"rolled back to v{done.restored}" if moved else f"restored from v{done.moved}"
    return f"{what} by {done.who} at {done.at}" + (f": {done.why}" if done.why else "")


def _version_row(info: ModelVersionInfo) -> VersionRow:
    tags, scores, promotion = info.tags, info.scores, info.promotion
    return VersionRow(
        name=info.name,
        version=info.version,
        role=", ".join(info.aliases),
        created=iso_z(info.created),
        walkforward_run=tags.get("solodesk.run"),
        mlflow_run_id=info.run_id,
        sharpe=scores.get("sharpe"),
        sharpe_ci_low=scores.get("sharpe_ci_low"),
        sharpe_ci_high=scores.get("sharpe_ci_high"),
        psr=scores.get("psr"),
        dsr=scores.get("dsr"),
        total_return=scores.get("total_return"),
        max_drawdown=scores.get("max_drawdown"),
        promotion=None if promotion is None else promotion.decision,
        promotion_reason=None if promotion is None else promotion.reason,
        promotion_at=None if promotion is None else promotion.at,
        previous_champion=None if promotion is None else promotion.previous_champion,
        rollback=_rollback(info),
        live_gate=tags.get("live_gate.decision"),
        live_gate_reason=tags.get("live_gate.reason"),
    )


def _gates(settings: Settings) -> tuple[tuple[GateRow, ...], str | None]:
    import sqlite3

    reader = StateDB.reader(settings)
    if reader is None:
        return (), None
    try:
        with reader:
            found = reader.live_gates()
    except sqlite3.Error as exc:
        return (), f"cannot read the live-gate decisions from {settings.state_db_path}: {exc}"
    rows = [
        GateRow(
            name=str(gate["name"]),
            version=int(str(gate["version"])),
            decision=str(gate["decision"]),
            reason=str(gate["reason"]),
            override_reason=_text(gate.get("override_reason")) or None,
            who=_text(gate.get("who")),
            at=str(gate["at"]),
        )
        for gate in found
    ]
    return tuple(reversed(rows)), None


def registered_models(settings: Settings) -> RegisteredModels:
    """Return every registered version side by side, and the live-gate decisions.

    Versions are grouped by model, the champion first, then newest first; each carries its
    out-of-sample scores and the decisions its tags recorded (promotion, rollback, live gate).
    A desk without a tracking store has none (the store is not created to find that out); a
    store that cannot be read (a tracking server down) is a ``problem``, not an error.
    """
    gates, gate_problem = _gates(settings)
    registry = _registry(settings)
    if registry is None:
        return RegisteredModels(store=False, versions=(), gates=gates, problem=gate_problem)
    down = _unreachable(settings)
    if down is not None:
        return RegisteredModels(store=True, versions=(), gates=gates, problem=down)
    try:
        found = registry.list_versions()
    except Exception as exc:  # the store is outside the desk: a server down, a locked file
        problem = _store_problem(settings, exc)
        return RegisteredModels(store=True, versions=(), gates=gates, problem=problem)
    ordered = sorted(found, key=lambda v: (v.name, "champion" not in v.aliases, -v.version))
    return RegisteredModels(
        store=True,
        versions=tuple(_version_row(info) for info in ordered),
        gates=gates,
        problem=gate_problem,
    )


# -- feature importance and the MLflow UI ----------------------------------------------------


def _mlflow_run(settings: Settings, run_id: str) -> str | None:
    run = BacktestStore.research(settings).get(run_id)
    return _text(_summary(run).get("mlflow_run_id")) or None


def feature_importance(settings: Settings, run_id: str) -> FeatureImportance:
    """Return the feature importances a walk-forward run recorded in MLflow, with the report's
    chart of them (:func:`pipelines.evaluate.report.importance_figure`).

    Raises
    ------
    UsageError
        If no stored walk-forward run (or several) matches ``run_id``.
    """
    import json

    mlflow_run = _mlflow_run(settings, run_id)

    def none(problem: str) -> FeatureImportance:
        return FeatureImportance(
            run_id=run_id, mlflow_run_id=mlflow_run, values=(), problem=problem
        )

    if mlflow_run is None:
        return none(f"walk-forward run {run_id} recorded no MLflow run")
    registry = _registry(settings)
    if registry is None:
        return none(f"no MLflow store in {settings.mlflow_dir}")
    down = _unreachable(settings)
    if down is not None:
        return none(down)
    try:
        text = registry.run_text(mlflow_run, IMPORTANCE_ARTIFACT)
    except Exception as exc:  # the store is outside the desk: a server down, a run deleted
        return none(_store_problem(settings, exc))
    if text is None:
        return none(f"MLflow run {mlflow_run} has no artifact {IMPORTANCE_ARTIFACT}")
    try:
        raw = json.loads(text)
    except ValueError:
        return none(f"MLflow run {mlflow_run}: {IMPORTANCE_ARTIFACT} is not JSON")
    pairs = [(str(k), v) for k, v in (raw.items() if isinstance(raw, dict) else ())]
    values = tuple(
        sorted(
            (
                (name, number)
                for name, value in pairs
                if (number := finite_number(value)) is not None
            ),
            key=lambda item: -item[1],
        )
    )
    if not values:
        return none(f"MLflow run {mlflow_run} recorded no feature importance")
    from pipelines.evaluate.report import importance_figure

    return FeatureImportance(
        run_id=run_id,
        mlflow_run_id=mlflow_run,
        values=values,
        chart=importance_figure(dict(values)),
        problem=None,
    )


def mlflow_link(settings: Settings, run_id: str | None = None) -> MlflowLink:
    """Return the MLflow UI's address (``[dashboard] mlflow_ui_url``) and, when a walk-forward
    run is given and its MLflow run is found, the address of that run's page in it.

    Raises
    ------
    UsageError
        If ``run_id`` is given and no stored walk-forward run (or several) matches it.
    """
    ui = settings.dashboard.mlflow_ui_url.rstrip("/")
    mlflow_run = None if run_id is None else _mlflow_run(settings, run_id)
    registry = _registry(settings)

    def link(url: str, experiment: str | None = None, problem: str | None = None) -> MlflowLink:
        return MlflowLink(
            ui_url=ui, url=url, run_id=mlflow_run, experiment_id=experiment,
            store=registry is not None, command=MLFLOW_UI_COMMAND, problem=problem,
        )  # fmt: skip

    if registry is None or mlflow_run is None:
        return link(f"{ui}/")
    down = _unreachable(settings)
    if down is not None:
        return link(f"{ui}/", problem=down)
    try:
        experiment = registry.run_experiment(mlflow_run)
    except Exception as exc:  # the store is outside the desk: a server down, a run deleted
        return link(f"{ui}/", problem=_store_problem(settings, exc))
    return link(f"{ui}/{run_page(experiment, mlflow_run)}", experiment)

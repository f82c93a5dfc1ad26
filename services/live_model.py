"""A registered model in the trading loop: load a release, build its live features, follow its alias.

- :func:`load_release` loads one version of a registered model (by alias or number) with the
  trading rule it was trained with and the feature-set definition recorded with it.
- :func:`model_inputs` builds the live features of the model's feature set on a loaded series
  (context clocks and cross assets as training had them), checked against the model.
- :class:`RegistryWatcher` follows an alias from a background thread and prepares the new
  release when it moves; the loop swaps it in between bars
  (:class:`~execution.model_signals.ModelSignals`).
- :func:`model_probabilities` is the batch path: the research feature table, the model's
  probabilities on it, for ``backtest --engine vector --name``.
- :class:`DriftResponder` is what a session does when its model drifts
  (:class:`~execution.drift.DriftMonitor`): a warning is told; an action rolls ``champion``
  back to the previous champion (the session then reloads it), or pauses the session when
  there is none or the session trades a fixed version.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import UsageError
from core.ports import Notice, NoticeKind, Notifier
from core.settings import Settings
from core.timeframes import Timeframe
from core.times import iso_z
from execution.drift import DriftCheck, DriftLevel, DriftMonitor
from execution.feeds import slice_batch
from execution.live_features import FeedSpec, LiveFeatures
from execution.model_signals import ModelRelease, ModelSignals, check_inputs
from feature_store.series import SeriesData, context_clock, load_series, series_frame
from feature_store.store import BarStore
from models.strategies.ml_model import DEFAULT_COLUMN, MlModel
from pipelines.evaluate.dataset import FeatureRecipe
from pipelines.evaluate.drift import DRIFT_TAG, DriftReference
from pipelines.features.sets import ResolvedFeatureSet, SeriesFrame
from services.features import load_feature_set

if TYPE_CHECKING:
    from collections.abc import Callable

    from execution.loop import Runtime, RunTotals
    from pipelines.backtest.config import BacktestConfig
    from services.runtime import PaperOptions, PaperShortfall, SessionInputs

_log = logging.getLogger(__name__)
CHAMPION = "champion"
#: Who the registry and the session's controls record for what drift did.
DRIFT_ACTOR = "drift"
#: Seconds between two looks at the registry for a moved alias.
WATCH_SECONDS = 5.0


class ModelChoice(BaseModel):
    """Which registered model a job trades: ``--name`` with ``--alias`` or ``--version``.

    ``params_file`` holds the feature sets (the model's must still be defined as it was).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    alias: str | None = None
    version: int | None = Field(default=None, ge=1)
    params_file: Path = Path("params.yaml")

    @model_validator(mode="after")
    def _one_selector(self) -> ModelChoice:
        if self.alias is not None and self.version is not None:
            raise ValueError("give --alias or --version, not both")
        return self


def model_choice(
    strategy: str | None,
    name: str | None,
    alias: str | None,
    version: int | None,
    params: Path | str = Path("params.yaml"),
    *,
    strategy_params: bool = False,
) -> ModelChoice | None:
    """Return the registered model ``name`` chooses, or None when a ``strategy`` is traded.

    ``strategy_params`` says whether strategy parameters were given, which a model refuses.

    Raises
    ------
    UsageError
        Unless exactly one of ``strategy`` and ``name`` is given, when ``alias`` or ``version``
        come without ``name``, or together, or when a model is given strategy parameters.
    """
    if (strategy is None) == (name is None):
        raise UsageError("give --strategy NAME or --name MODEL (a registered model), not both")
    if name is None:
        if alias is not None or version is not None:
            raise UsageError("--alias and --version choose a version of --name MODEL")
        return None
    if alias is not None and version is not None:
        raise UsageError("give --alias or --version, not both")
    if strategy_params:
        raise UsageError("--param sets strategy parameters: a model trades by its own rule")
    try:
        return ModelChoice(name=name, alias=alias, version=version, params_file=Path(params))
    except ValueError as exc:
        raise UsageError(f"model {name!r}: {exc}") from None


def _registry(settings: Settings) -> Any:
    from feature_store.model_registry import ModelRegistry
    from feature_store.tracking import has_tracking_store, tracking_uri

    if not has_tracking_store(settings):
        msg = (
            f"no registered models on this desk yet ({settings.mlflow_dir}): run solodesk "
            "walkforward first to register one"
        )
        raise UsageError(msg)
    return ModelRegistry(tracking_uri(settings))


def _rule(predictor: Any, params: dict[str, str]) -> tuple[float, float, bool]:
    rule = getattr(predictor, "rule", None)
    if rule is not None:
        return float(rule.upper), float(rule.lower), bool(rule.allow_short)
    try:
        return (
            float(params["rule.upper"]),
            float(params["rule.lower"]),
            params["rule.allow_short"].lower() == "true",
        )
    except KeyError:
        msg = "the model records no trading rule (rule.upper, rule.lower, rule.allow_short)"
        raise UsageError(msg) from None


def load_release(
    settings: Settings, name: str, *, alias: str | None = None, version: int | None = None
) -> ModelRelease:
    """Load a registered model version (``version``, else the one ``alias`` points at).

    The rule it trades with is the one it was trained and judged with (its thresholds, shorts
    or not); the feature set and its definition hash come from the version's tags.

    Raises
    ------
    UsageError
        If nothing is registered, the model, version or alias does not exist, or the version
        records no feature set.
    """
    from services.models import resolve_version

    info = resolve_version(settings, name, version=version, alias=alias or CHAMPION)
    number = info.version
    registry = _registry(settings)
    model = registry.load_version(name, number)
    predictor = model.unwrap_python_model().predictor
    feature_set = info.tags.get("solodesk.feature_set")
    if not feature_set:
        raise UsageError(f"{name} v{number} records no feature set (tag solodesk.feature_set)")
    params: dict[str, str] = {}
    if getattr(predictor, "rule", None) is None:
        params = registry.run_params(info.run_id)
    upper, lower, allow_short = _rule(predictor, params)
    drift = _drift_reference(registry, info, tuple(predictor.feature_names))
    return ModelRelease(
        name=name,
        version=number,
        predictor=predictor,
        feature_set=feature_set,
        feature_set_version=info.tags.get("solodesk.feature_set_version", ""),
        upper=upper,
        lower=lower,
        allow_short=allow_short,
        scores=dict(info.scores),
        research_run=info.tags.get("solodesk.run", ""),
        timeframe=info.tags.get("solodesk.timeframe", ""),
        drift=drift,
    )


def _drift_reference(registry: Any, info: Any, inputs: tuple[str, ...]) -> DriftReference | None:
    path = info.tags.get(DRIFT_TAG)
    if not path:
        return None
    where = f"{info.name} v{info.version}'s drift reference ({path} of run {info.run_id})"
    try:
        text = registry.run_text(info.run_id, path)
        if text is None:
            raise UsageError(f"{where} is missing")
        reference = DriftReference.from_json(text, where)
    except UsageError as exc:
        _log.warning("%s: not monitored for drift", exc)
        return None
    if reference.names != inputs:
        _log.warning("%s does not list the model's inputs: not monitored for drift", where)
        return None
    return reference


def release_strategy(release: ModelRelease) -> MlModel:
    """Return the ``ml_model`` strategy trading ``release`` by the rule it was trained with."""
    return MlModel(upper=release.upper, lower=release.lower, allow_short=release.allow_short)


def release_params(release: ModelRelease) -> dict[str, object]:
    """Return the ``ml_model`` parameters of ``release``'s rule."""
    strategy = release_strategy(release)
    return {p.name: getattr(strategy, p.name) for p in MlModel.params}


# -- live features ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInputs:
    """What a model needs to trade on a series: its feature set and the live features' parts."""

    resolved: ResolvedFeatureSet
    feature_set_version: str
    frame: SeriesFrame
    clocks: dict[Timeframe, Any]
    cross: dict[str, SeriesData]
    cross_frames: dict[str, SeriesFrame]

    def empty_features(self) -> LiveFeatures:
        """Return fresh live features with no bar seen, cross assets' bars not added."""

        def spec(f: SeriesFrame) -> FeedSpec:
            return FeedSpec(f.timeframe, f.clock, f.has_spread, f.volume_kind)

        cross = {symbol: spec(f) for symbol, f in self.cross_frames.items()}
        return LiveFeatures(self.resolved, spec(self.frame), self.clocks, cross)

    def live_features(self) -> LiveFeatures:
        """Return fresh live features, cross assets' bars added."""
        from services.runtime import series_batch

        live = self.empty_features()
        for symbol, data in self.cross.items():
            live.add_cross(symbol, series_batch(data))
        return live

    def warmup_bars(self) -> int:
        """Return how many bars before a session's first the features start from.

        The longest lookback of the set (recursive features: their warm-up plus the bars for
        their memory to fade to their tolerance), context lookbacks counted in the series'
        bars.
        """
        base = max((s.lookback for s in self.resolved.specs), default=0)
        minutes = self.frame.timeframe.minutes
        context = [
            max((s.lookback for s in ctx.specs), default=0)
            * math.ceil(ctx.timeframe.minutes / minutes)
            for ctx in self.resolved.context
        ]
        return max([base, *context]) + 1


def model_inputs(
    settings: Settings,
    data: SeriesData,
    release: ModelRelease,
    params_path: Path,
    *,
    cross_end: datetime | None = None,
) -> ModelInputs:
    """Return the model's feature set on ``data``, checked against the model.

    Raises
    ------
    UsageError
        If the feature set is not defined in ``params_path``, a cross asset is not stored, or
        the live columns do not cover the model's inputs or its recorded feature-set definition
        differs from the current one (naming what differs).
    """
    if release.timeframe and release.timeframe != data.key.timeframe.value:
        msg = (
            f"{release.label} was trained on {release.timeframe} bars, not "
            f"{data.key.timeframe.value}: trade it on {release.timeframe}"
        )
        raise UsageError(msg)
    config = load_feature_set(params_path, release.feature_set)
    resolved = config.resolve().for_timeframe(data.key.timeframe)
    store = BarStore(settings.store_dir)
    frame = series_frame(store, settings.registry, data.info, data.bars)
    clocks = {
        ctx.timeframe: context_clock(store, settings.registry, data.key, ctx.timeframe)
        for ctx in resolved.context
    }
    cross = {
        asset.symbol: load_series(settings, asset.symbol, data.key.timeframe, None, None, cross_end)
        for asset in resolved.cross_assets
    }
    cross_frames = {
        symbol: series_frame(store, settings.registry, other.info, other.bars)
        for symbol, other in cross.items()
    }
    inputs = ModelInputs(resolved, resolved.definition_hash(), frame, clocks, cross, cross_frames)
    check_inputs(release, inputs.empty_features().columns, inputs.feature_set_version)
    return inputs


def model_signals(
    inputs: ModelInputs,
    release: ModelRelease,
    *,
    history: SeriesData | None = None,
    source: RegistryWatcher | None = None,
    on_reload: Any = None,
    drift: DriftMonitor | None = None,
) -> ModelSignals:
    """Return the loop's feature source for ``release``, warmed up on ``history``'s last bars.

    ``drift`` watches the release trading from the first bar after the warm-up.
    """
    from services.runtime import series_batch

    live = inputs.live_features()
    if history is not None and history.bars.height:
        bars = series_batch(history)
        keep = inputs.warmup_bars()
        live.push(slice_batch(bars, max(0, len(bars) - keep), len(bars)))
    return ModelSignals(
        live,
        release,
        feature_set_version=inputs.feature_set_version,
        source=source,
        on_reload=on_reload,
        drift=drift,
    )


# -- following an alias -----------------------------------------------------------------------


class RegistryWatcher:
    """Follow an alias of a registered model from a background thread.

    Every ``interval`` seconds it asks the registry which version the alias points at; when
    that moves, it loads the new version and holds it until :meth:`take`. Polls and loads run
    one after the other on the one thread, and every registry call holds the registry's
    process-wide lock, so no registry call runs while a release is being loaded.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        alias: str,
        current: int,
        interval: float = WATCH_SECONDS,
    ) -> None:
        self.settings = settings
        self.name = name
        self.alias = alias
        self.interval = interval
        self._seen = current
        self._registry = _registry(settings)  # one client for every look
        self._ready: ModelRelease | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # a registry hiccup must not stop trading
                self.error = f"{type(exc).__name__}: {exc}"
                _log.warning("watching %s@%s: %s", self.name, self.alias, self.error)

    def check(self) -> None:
        """Look once: load the version the alias points at if it moved.

        The look and the load hold the registry's lock together, so no other registry call in
        the process runs between them or during the load.
        """
        from feature_store.model_registry import REGISTRY_LOCK

        with REGISTRY_LOCK:
            found = self._registry.alias_version(self.name, self.alias)
            if found is None or int(found) == self._seen:
                return
            release = load_release(self.settings, self.name, version=int(found))
        with self._lock:
            self._ready = release
            self._seen = int(found)

    def take(self) -> ModelRelease | None:
        """Return the release prepared since the last call, or None."""
        with self._lock:
            ready, self._ready = self._ready, None
        return ready

    def close(self) -> None:
        """Stop watching."""
        self._stop.set()
        self._thread.join(timeout=30)


# -- the batch path ----------------------------------------------------------------------------


def model_probabilities(
    inputs: ModelInputs, release: ModelRelease, data: SeriesData
) -> pl.DataFrame:
    """Return ``ts`` and the model's P(up) per bar of ``data`` from the research feature table.

    The batch reference of the live path: the table :meth:`FeatureRecipe.table` computes on
    the series (context resampled from its bars on the clocks training used, cross assets
    joined point in time), the model's columns in order, non-finite values as NaN.
    """
    frame = inputs.frame
    recipe = FeatureRecipe(inputs.resolved, inputs.clocks, inputs.cross_frames)
    table = recipe.table(
        SeriesFrame(data.bars, frame.timeframe, frame.clock, frame.has_spread, frame.volume_kind)
    ).frame
    X = table.select(pl.col(n).cast(pl.Float64) for n in release.feature_names).to_numpy()
    X = np.ascontiguousarray(np.where(np.isfinite(X), X, np.nan), dtype=np.float64)
    proba = np.asarray(release.predictor.predict_proba(X), dtype=np.float64).reshape(-1)
    return pl.DataFrame({"ts": table["ts"], DEFAULT_COLUMN: proba})


# -- paper sessions ---------------------------------------------------------------------------


def load_model_session(
    settings: Settings, options: PaperOptions
) -> tuple[SessionInputs, RegistryWatcher | None]:
    """Return what a paper session of a registered model trades on, and the alias watcher.

    The series is loaded over the session's window; the live features start from the bars
    before it (as many as the set's longest lookback), so a session that starts inside the
    history trades on warmed-up features. A session given ``--version`` trades that version
    and watches no alias. Every release trading is watched for drift (``[drift]``) by the
    signals' :class:`~execution.drift.DriftMonitor`, which the session hooks to its loop
    (:func:`watch_drift`).

    Raises
    ------
    UsageError
        If the model cannot be loaded, was trained on another timeframe, or its inputs do not
        match the current feature set.
    """
    from services.runtime import SessionInputs, series_batch

    assert options.model is not None
    release = load_release(
        settings, options.model, alias=options.model_alias, version=options.model_version
    )
    data = load_series(
        settings, options.symbol, options.timeframe, options.side, options.start, options.end
    )
    inputs = model_inputs(settings, data, release, Path(options.params_file), cross_end=options.end)
    history = None
    if options.start is not None:
        try:
            history = load_series(
                settings, options.symbol, options.timeframe, data.key.side, None, options.start
            )
        except UsageError:
            history = None  # nothing stored before the window
    watcher = None
    if options.model_version is None:
        watcher = RegistryWatcher(
            settings, options.model, options.model_alias or CHAMPION, release.version,
            interval=WATCH_SECONDS,
        )  # fmt: skip
    built = time.perf_counter()
    signals = model_signals(
        inputs, release, history=history, source=watcher, drift=DriftMonitor(settings.drift)
    )
    signals.warmup_seconds = time.perf_counter() - built
    strategy = release_strategy(release)
    return (
        SessionInputs(data, series_batch(data), strategy, MlModel, None, signals),
        watcher,
    )


def _entries(position: np.ndarray) -> int:
    before = np.concatenate(([0.0], position[:-1]))
    return int(np.count_nonzero((position != 0) & (np.sign(position) != np.sign(before))))


def paper_shortfall(
    settings: Settings, inputs: SessionInputs, config: BacktestConfig, totals: RunTotals
) -> PaperShortfall:
    """Return the paper session beside the walk-forward's out-of-sample figures on its bars."""
    from feature_store.backtests import BacktestStore
    from services.runtime import PaperShortfall

    assert inputs.signals is not None
    ts = inputs.data.bars["ts"]
    first, last = ts[0], ts[-1]
    paper_return = totals.final_equity / config.cash - 1.0
    run_id = inputs.signals.release.research_run or None
    wf_bars, wf_return, wf_trades, fitted_until = 0, None, None, None
    if run_id is not None:
        store = BacktestStore.research(settings)
        try:
            run = store.get(run_id)
            oos = store.table(run, "oos")
        except UsageError:
            oos = None
        if oos is not None:
            # The deployable version is fitted on the walk-forward's latest rows, up to its
            # last out-of-sample bar.
            fitted_until = cast("datetime", oos["ts"].max())
            window = oos.filter(pl.col("ts").is_between(first, last))
            wf_bars = window.height
            if wf_bars:
                wf_return = float(np.prod(1.0 + window["return"].to_numpy()) - 1.0)
                wf_trades = _entries(window["position"].to_numpy())
    return PaperShortfall(
        first=iso_z(first),
        last=iso_z(last),
        bars=ts.len(),
        paper_return=paper_return,
        paper_trades=totals.trades,
        walkforward_run=run_id,
        walkforward_bars=wf_bars,
        walkforward_return=wf_return,
        walkforward_trades=wf_trades,
        shortfall=None if wf_return is None else wf_return - paper_return,
        fitted_bars=0 if fitted_until is None else int((ts <= fitted_until).sum()),
        fitted_until=None if fitted_until is None else iso_z(fitted_until),
    )


# -- drift ------------------------------------------------------------------------------------


class DriftResponder:
    """What a model's session does when its model drifts (the monitor's ``on_drift``).

    - **warn**: one ``model_drift`` notice with the reasons, sent with the loop's next commit.
    - **act**: a ``model_drift`` notice as well, then, on a background thread (registry and
      state-database calls stay off the loop): a session following ``champion`` rolls it back
      to the previous champion (:func:`services.models.rollback`, by ``drift``, the reasons as
      why); the session's watcher then sees the alias move and the loop reloads the restored
      version. With no previous champion, in a session trading a fixed ``--version``, or one
      following another alias, the session is paused instead (a ``pause`` control by
      ``drift``: no new orders, positions kept). If the alias has already moved off the
      drifting version, nothing is done: the session reloads what it points at. Either way one
      ``model_rollback`` notice says what was done. A version is acted on once per session.

    Parameters
    ----------
    settings
        The desk (its registry and state database).
    runtime
        The session's loop (its notices go out with its commits).
    signals
        The session's model signals (the release drifting is the one trading).
    notifier
        Where the action's notice goes (from the background thread).
    alias
        The alias the session follows, or None for a fixed version.
    say
        Optional: told each notice's title and body.
    """

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        signals: ModelSignals,
        notifier: Notifier,
        *,
        alias: str | None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.signals = signals
        self.notifier = notifier
        self.alias = alias
        self.say = say
        self.session = runtime.config.session
        self._acted: set[int] = set()
        self._threads: list[threading.Thread] = []

    def __call__(self, check: DriftCheck) -> None:
        """Answer a check whose level rose: tell a warning, act on an action."""
        release = self.signals.release
        acting = check.level is DriftLevel.ACT
        title = "model drift: acting" if acting else "model drifting"
        body = f"{check.label}: {check.text}"
        key = f"drift:{check.label}:{check.level.value}"
        self.runtime.tell(NoticeKind.MODEL_DRIFT, title, body, key=key)
        if self.say is not None:
            self.say(f"{title}: {body}")
        if not acting or release.version in self._acted:
            return
        self._acted.add(release.version)
        thread = threading.Thread(
            target=self._act, args=(release.name, release.version, check),
            name=f"drift-{release.name}", daemon=True,
        )  # fmt: skip
        self._threads.append(thread)
        thread.start()

    def _act(self, name: str, version: int, check: DriftCheck) -> None:
        why = f"drift: {check.text}"
        try:
            title, body = self._respond(name, version, why)
        except Exception as exc:  # the session goes on; the trader must hear of it
            _log.exception("answering the drift of %s v%d", name, version)
            title = "model drift: nothing done"
            body = f"{check.label} drifted ({check.text}) but {type(exc).__name__}: {exc}"
        self.notifier.notify(
            Notice(
                NoticeKind.MODEL_ROLLBACK, title, body, session=self.session,
                key=f"rollback:{check.label}",
            )
        )  # fmt: skip
        if self.say is not None:
            self.say(f"{title}: {body}")

    def _respond(self, name: str, version: int, why: str) -> tuple[str, str]:
        from services.models import resolve_version, rollback

        label = f"{name} v{version}"
        if self.alias is None:
            self._pause(why)
            return (
                "model drift: session paused",
                f"{label} drifted and the session trades that version, not an alias: paused "
                f"(solodesk resume --session {self.session} to trade again); {why}",
            )
        current = resolve_version(self.settings, name, alias=self.alias).version
        if current != version:
            return (
                "model drift: alias already moved",
                f"{label} drifted; {self.alias} already points at v{current}, which the session "
                f"reloads; {why}",
            )
        if self.alias != CHAMPION:
            self._pause(why)
            return (
                "model drift: session paused",
                f"{label} drifted; the session follows {self.alias}, which is not rolled back: "
                f"paused; {why}",
            )
        try:
            done = rollback(self.settings, name, who=DRIFT_ACTOR, why=why, version=version)
        except UsageError as exc:
            self._pause(why)
            return (
                "model drift: session paused",
                f"{label} drifted and cannot be rolled back ({exc}): paused; {why}",
            )
        return (
            "model rolled back",
            f"{label} drifted: {CHAMPION} back from v{done.rolled_back} to v{done.restored}, "
            f"which the session reloads; {why}",
        )

    def _pause(self, why: str) -> None:
        from services.runtime import request_control

        request_control(self.settings, "pause", session=self.session, who=DRIFT_ACTOR, why=why)

    def close(self) -> None:
        """Wait for actions under way to finish."""
        for thread in self._threads:
            thread.join(timeout=60)


def watch_drift(
    settings: Settings,
    runtime: Runtime,
    signals: ModelSignals,
    notifier: Notifier,
    *,
    alias: str | None,
    say: Callable[[str], None] | None = None,
) -> DriftResponder | None:
    """Hook a session's drift monitor to its loop: equity from the broker, drift answered.

    Returns the responder (to :meth:`~DriftResponder.close` when the session ends), or None
    when the session's signals have no monitor.
    """
    monitor = signals.drift
    if monitor is None:
        return None
    broker = runtime.broker
    responder = DriftResponder(settings, runtime, signals, notifier, alias=alias, say=say)
    monitor.equity = lambda: broker.account().equity
    monitor.on_drift = responder
    return responder

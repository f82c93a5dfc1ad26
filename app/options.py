"""Every command-line option, declared once and typed as what it means.

Closed sets (side, fill, direction, scheme, ...) are enumerations, so the parser refuses a bad
value itself (exit 2) and ``--help`` lists the choices. Timeframes and dates go through parser
callbacks that reuse :func:`core.timeframes.parse_timeframe` and
:func:`core.times.parse_utc`, so ``60``, ``1h`` and ``2017-01-02T09:00Z`` are all accepted.
The same name means the same thing in every command (``--symbol``, ``--timeframe``,
``--feature-set``, ``--from`` inclusive, ``--to`` exclusive, dates in UTC).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from core.clocks import Anchor
from core.errors import SolodeskError, UsageError
from core.ids import BacktestKind
from core.timeframes import Timeframe, parse_timeframe
from core.times import parse_utc
from core.types import DateOrder, FeedKind, Scheme, Side, SourceFormat, VolumeKind
from pipelines.backtest.config import (
    BacktestConfig,
    Direction,
    Engine,
    Fill,
    PortfolioSizing,
    Rebalance,
    SweepSearch,
)
from pipelines.train.config import Objective, WalkForwardConfig

if TYPE_CHECKING:
    from services.live_model import ModelChoice

__all__ = [
    "Anchor",
    "BacktestKind",
    "DateOrder",
    "Direction",
    "Engine",
    "FeedKind",
    "Fill",
    "Objective",
    "PortfolioSizing",
    "Rebalance",
    "Scheme",
    "Side",
    "SourceFormat",
    "SweepSearch",
    "VolumeKind",
]


def _timeframe(text: str | Timeframe) -> Timeframe:
    if isinstance(text, Timeframe):
        return text
    try:
        return parse_timeframe(text)
    except SolodeskError as exc:
        raise typer.BadParameter(str(exc)) from None


def _instant(text: str | datetime) -> datetime:
    if isinstance(text, datetime):
        return text
    try:
        return parse_utc(text, "date")
    except SolodeskError as exc:
        raise typer.BadParameter(str(exc)) from None


def parse_params(items: list[str] | None) -> dict[str, str]:
    """Parse repeated ``k=v`` options into a mapping, rejecting malformed or repeated keys.

    Raises
    ------
    UsageError
        Naming the malformed or repeated item.
    """
    values: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise UsageError(f"--param {item!r}: expected name=value, e.g. --param fast=10")
        if key in values:
            raise UsageError(f"--param {key} given twice")
        values[key] = value.strip()
    return values


# -- the series ------------------------------------------------------------------------------

SymbolOpt = Annotated[str, typer.Option(help="Stored symbol, e.g. EURUSD.")]
SymbolFilterOpt = Annotated[Optional[str], typer.Option("--symbol", help="Only this symbol.")]  # noqa: UP045
SymbolHintOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional
    typer.Option("--symbol", help="Symbol, when the name does not say."),
]
SymbolsOpt = Annotated[str, typer.Option(help="Stored symbols, comma-separated.")]
TimeframeOpt = Annotated[
    Timeframe, typer.Option(parser=_timeframe, metavar="TF", help="M1..MN1, 60, 1h...")
]
TimeframeHintOpt = Annotated[
    Optional[Timeframe],  # noqa: UP045
    typer.Option("--timeframe", parser=_timeframe, metavar="TF", help="M1..MN1, 60, 1h..."),
]
TargetTimeframesOpt = Annotated[
    list[Timeframe],
    typer.Option(
        "--timeframe", parser=_timeframe, metavar="TF",
        help="Target timeframe(s), e.g. H1 (repeatable).",
    ),
]  # fmt: skip
SourceTimeframeOpt = Annotated[
    Timeframe,
    typer.Option("--source", parser=_timeframe, metavar="TF", help="Timeframe to resample from."),
]
ResampleOpt = Annotated[
    Optional[list[Timeframe]],  # noqa: UP045
    typer.Option(
        "--resample", parser=_timeframe, metavar="TF",
        help="Also resample to this timeframe (repeatable).",
    ),
]  # fmt: skip
SideOpt = Annotated[
    Optional[Side],  # noqa: UP045
    typer.Option(case_sensitive=False, help="Price side (default: the only one stored)."),
]
SideHintOpt = Annotated[
    Optional[Side],  # noqa: UP045
    typer.Option("--side", case_sensitive=False, help="Price side the source quotes."),
]
ResampleSideOpt = Annotated[
    Side, typer.Option("--side", case_sensitive=False, help="Price side of the stored series.")
]
AnchorOpt = Annotated[
    Optional[Anchor],  # noqa: UP045
    typer.Option(
        case_sensitive=False,
        help="Where H4/D1 buckets start (default: broker day for FX, else UTC).",
    ),
]
FromOpt = Annotated[
    Optional[datetime],  # noqa: UP045
    typer.Option("--from", parser=_instant, metavar="DATE", help="From this UTC date (inclusive)."),
]
ToOpt = Annotated[
    Optional[datetime],  # noqa: UP045
    typer.Option("--to", parser=_instant, metavar="DATE", help="To this UTC date (exclusive)."),
]
AsOfOpt = Annotated[
    Optional[datetime],  # noqa: UP045
    typer.Option(
        "--as-of", parser=_instant, metavar="DATE",
        help="When the export was taken (UTC); decides the last bar.",
    ),
]  # fmt: skip
FormatOpt = Annotated[
    Optional[SourceFormat],  # noqa: UP045
    typer.Option("--format", case_sensitive=False, help="Force the source format."),
]
TzOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Source clock: UTC, an IANA zone, UTC+2, or broker:ny-close."),
]
DateOrderOpt = Annotated[
    Optional[DateOrder],  # noqa: UP045
    typer.Option("--date-order", case_sensitive=False, help="For ambiguous dates."),
]
VolumeKindOpt = Annotated[
    Optional[VolumeKind],  # noqa: UP045
    typer.Option("--volume-kind", case_sensitive=False, help="What the volume column counts."),
]

# -- files and output ------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON Lines on stdout.")]
ParamsFileOpt = Annotated[
    Path, typer.Option("--params", help="The parameters file declaring the feature sets.")
]
FeatureSetOpt = Annotated[str, typer.Option("--feature-set", help="A set declared in params.yaml.")]
StrategyFeatureSetOpt = Annotated[
    str, typer.Option("--feature-set", help="Feature set strategies that read features use.")
]

# -- strategies and costs --------------------------------------------------------------------

StrategyOpt = Annotated[str, typer.Option(help="A strategy name (solodesk strategies lists them).")]
StrategyChoiceOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--strategy", help="A strategy name (solodesk strategies lists them); or give --name."
    ),
]
TradedModelOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--name",
        help="A registered model to trade instead of a strategy (e.g. EURUSD-H1-default), "
        "through ml_model with the rule it was trained with.",
    ),
]
ModelAliasOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--alias", help="With --name: the alias to trade (default champion)."),
]
ModelVersionOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--version", min=1, help="With --name: trade this version (no alias)."),
]
ParamOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional for lists
    typer.Option("--param", help="k=v, repeatable (sweeps: k=lo:hi:step or k=a,b,c)."),
]
FeesOpt = Annotated[float, typer.Option(help="Fraction of traded notional, both legs.")]
CommissionOpt = Annotated[float, typer.Option(help="Account currency per lot per leg.")]
SlippageOpt = Annotated[float, typer.Option(help="Adverse slippage in pips per fill.")]
SlippageVolOpt = Annotated[
    float, typer.Option("--slippage-vol", help="Extra slippage: this fraction of the bar range.")
]
SpreadOpt = Annotated[str, typer.Option(help="Spread in pips, or 'data' for the series' own.")]
SwapOpt = Annotated[float, typer.Option(help="Pips of price per unit per night (+ credit).")]
FillOpt = Annotated[
    Fill, typer.Option(case_sensitive=False, help="close (signal bar) or next_open.")
]
DirectionOpt = Annotated[Direction, typer.Option(case_sensitive=False, help="Sides traded.")]
SizingOpt = Annotated[
    str, typer.Option(help="all-in, lots:N, fraction:F, vol-target:X or kelly:F.")
]
StopOpt = Annotated[Optional[float], typer.Option(help="Pips from the entry fill.")]  # noqa: UP045
CashOpt = Annotated[float, typer.Option(help="Starting equity in account currency.")]
NoReportOpt = Annotated[bool, typer.Option("--no-report", help="Skip the report page.")]
SearchOpt = Annotated[SweepSearch, typer.Option(case_sensitive=False, help="Grid or random.")]
PortfolioSizingOpt = Annotated[
    PortfolioSizing, typer.Option("--sizing", case_sensitive=False, help="How symbols are weighed.")
]
RebalanceOpt = Annotated[
    Rebalance, typer.Option(case_sensitive=False, help="When the portfolio rebalances.")
]
RunKindOpt = Annotated[
    Optional[BacktestKind],  # noqa: UP045
    typer.Option("--kind", case_sensitive=False, help="Only runs of this kind."),
]

EngineOpt = Annotated[
    Engine,
    typer.Option(case_sensitive=False, help="vector (compiled) or event (the trading loop)."),
]

# -- trading sessions ------------------------------------------------------------------------


def _speed(text: str | float | None) -> float | None:
    if text is None or isinstance(text, float):
        return text
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give a number of times real time, or max") from None
    if not value > 0:
        raise typer.BadParameter(f"{text!r}: the speed must be positive")
    return value


SessionOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--session", help="Session name (default: a new one; the latest for queries)."),
]
FeedOpt = Annotated[FeedKind, typer.Option(case_sensitive=False, help="Where bars come from.")]
SpeedOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Replay at N times real time (an H1 bar lasts 3600/N s), or max."),
]
PaperSpreadOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Spread in pips, or 'data' (default: the series' own spread column)."),
]
RiskOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--risk", help="Risk limit KEY=VALUE for this session, repeatable."),
]
PaperSeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the simulator's draws.")]
LeverageOpt = Annotated[float, typer.Option(help="Margin = notional / leverage.")]
LatencyOpt = Annotated[float, typer.Option("--latency-ms", help="Fixed latency of a submit.")]
ModifyLatencyOpt = Annotated[float, typer.Option("--modify-latency-ms", help="Of a modify.")]
CancelLatencyOpt = Annotated[float, typer.Option("--cancel-latency-ms", help="Of a cancel.")]
JitterOpt = Annotated[float, typer.Option("--jitter-ms", help="Seeded extra latency, up to.")]
ImpactOpt = Annotated[
    float, typer.Option("--impact", help="Size slippage: pips x sqrt(lots) per fill.")
]
RejectOpt = Annotated[float, typer.Option("--reject-prob", help="Chance an order is rejected.")]
TouchOpt = Annotated[
    float, typer.Option("--touch-prob", help="Chance a limit touched (not crossed) fills.")
]
ParticipationOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(help="Largest share of a bar's real volume one fill takes (partial fills)."),
]
NoLotRoundingOpt = Annotated[
    bool, typer.Option("--no-lot-rounding", help="Trade exact units, no lot step or minimum.")
]
WhyOpt = Annotated[str, typer.Option("--why", help="Why (kept with the request).")]
FlattenOpt = Annotated[bool, typer.Option("--flatten", help="Also close the positions.")]

# -- research --------------------------------------------------------------------------------

ModelOpt = Annotated[
    str, typer.Option(help="lightgbm, lightgbm_regressor, logistic, forest, ensemble or stacking.")
]
ModelParamOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--model-param", help="Fixed learner parameter k=v (not tuned), repeatable."),
]
TrialsOpt = Annotated[int, typer.Option(help="Optuna trials per training window (0: defaults).")]
ObjectiveOpt = Annotated[
    Objective,
    typer.Option(
        case_sensitive=False,
        help="logloss, or sharpe (the rule's Sharpe after costs on inner folds).",
    ),
]
SchemeOpt = Annotated[Scheme, typer.Option(case_sensitive=False, help="How windows are cut.")]
JobsOpt = Annotated[int, typer.Option(help="Worker processes for windows and trials.")]
ThreadsOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        help="Threads per learner (default: one per 5,000 training rows, at most the cores per job)."
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of samplers, learners and the bootstrap.")]
ModelNameOpt = Annotated[
    str, typer.Option("--name", help="Registered model, e.g. EURUSD-H1-default.")
]


def model_choice(
    strategy: str | None,
    name: str | None,
    alias: str | None,
    version: int | None,
    params: Path,
    param: list[str] | None = None,
) -> ModelChoice | None:
    """Return the registered model ``--name`` chose, or None for ``--strategy``
    (:func:`services.live_model.model_choice`; ``param``: the ``--param`` values given)."""
    from services.live_model import model_choice as choose

    return choose(strategy, name, alias, version, params, strategy_params=bool(param))


def speed_value(text: str | None) -> float | None:
    """Return a ``--speed`` as times real time, None for ``max`` (as fast as the loop runs)."""
    return _speed(text)


def backtest_config(**options: Any) -> BacktestConfig:
    """Return the backtest configuration the options give (:meth:`BacktestConfig.from_options`:
    ``spread`` as pips or ``data``, ``sizing`` as ``fraction:1`` and the like)."""
    return BacktestConfig.from_options(**options)


def research_config(*, model_params: list[str] | None = None, **options: Any) -> WalkForwardConfig:
    """Return the research configuration the options give (:meth:`WalkForwardConfig.from_options`);
    ``model_params`` are the raw ``k=v`` items of ``--model-param``."""
    return WalkForwardConfig.from_options(model_params=parse_params(model_params), **options)

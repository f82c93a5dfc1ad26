"""``params.yaml``: the research pipeline's parameters, read by one reader.

The file has three sections, each optional, each refusing keys it does not know:

- ``ingest``: what ``solodesk ingest --params`` and the DVC stage ``ingest`` read
  (:class:`IngestParams`);
- ``features``: the feature sets, ``sets: {name: definition}`` (:class:`FeaturesParams`; each
  definition is checked by :func:`pipelines.features.sets.parse_feature_sets`);
- ``research``: what the DVC stages ``train`` and ``walkforward`` pass to the commands
  (:class:`ResearchParams`).

:func:`read_params` is the only function that opens the file; every command, service and DVC
stage asks it, so a mistake gets the same message whichever reads it first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from core.clocks import Anchor
from core.errors import UsageError, validation_problems
from core.timeframes import Timeframe, parse_timeframe
from core.types import Scheme, Side, SourceFormat

_HINTS: dict[str, str] = {
    "ingest": "with a 'sources' list (see docs/data.md)",
    "features": "with 'sets' (see docs/features.md)",
    "research": "with symbol, timeframe, feature_set, model, ... (see docs/research.md)",
}


def _timeframe(value: object) -> object:
    return parse_timeframe(str(value)) if isinstance(value, str | int) else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# Timeframes as people write them (60, 1h, H1), sides and anchors in any case.
TimeframeText = Annotated[Timeframe, BeforeValidator(_timeframe)]
SideText = Annotated[Side, BeforeValidator(_lower)]
AnchorText = Annotated[Anchor, BeforeValidator(_lower)]


class IngestParams(BaseModel):
    """The ``ingest`` section: sources and the options of ``solodesk ingest``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: tuple[Annotated[str, BeforeValidator(str)], ...] = Field(min_length=1)
    resample: tuple[TimeframeText, ...] = ()
    symbol: str | None = None
    timeframe: TimeframeText | None = None
    format: SourceFormat | None = None
    tz: str | None = None
    side: SideText | None = None
    anchor: AnchorText | None = None


class FeaturesParams(BaseModel):
    """The ``features`` section: feature-set definitions by name, checked where they are used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sets: dict[str, Any] = Field(min_length=1)


class ResearchParams(BaseModel):
    """The ``research`` section: the DVC research stages' command-line values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    timeframe: TimeframeText
    feature_set: str = "default"
    model: str = "lightgbm"
    trials: int = Field(default=20, ge=0)
    scheme: Scheme = Scheme.ROLLING
    folds: int = Field(default=5, ge=1)
    spread: float = Field(default=1.0, ge=0)


class Params(BaseModel):
    """A whole ``params.yaml``; ``path`` is where it was read from (for messages)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path = Path("params.yaml")
    ingest: IngestParams | None = None
    features: FeaturesParams | None = None
    research: ResearchParams | None = None

    def require_ingest(self) -> IngestParams:
        """Return the ``ingest`` section, or raise a usage error naming the file."""
        if self.ingest is None:
            raise _missing(self.path, "ingest")
        return self.ingest

    def require_features(self) -> FeaturesParams:
        """Return the ``features`` section, or raise a usage error naming the file."""
        if self.features is None:
            raise _missing(self.path, "features")
        return self.features

    def require_research(self) -> ResearchParams:
        """Return the ``research`` section, or raise a usage error naming the file."""
        if self.research is None:
            raise _missing(self.path, "research")
        return self.research


def _missing(path: Path, section: str) -> UsageError:
    article = "an" if section[0] in "aeiou" else "a"
    return UsageError(f"{path}: needs {article} '{section}' section {_HINTS[section]}")


def read_params(path: Path) -> Params:
    """Read and check ``params.yaml`` at ``path``.

    Raises
    ------
    UsageError
        If the file is missing, is not YAML, is not a mapping, has a section or key this
        version does not know, or a value of the wrong kind; the message names the file and
        the key.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{path}: not found: give the parameters file with --params") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read parameters ({exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected sections (ingest, features, research), not a list")
    if "path" in raw:
        raise UsageError(f"{path}: unknown section 'path' (known: ingest, features, research)")
    try:
        return Params.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise UsageError(f"{path}: {validation_problems(exc, 'the file')}") from None

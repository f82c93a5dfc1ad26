"""Label configurations: frozen, reject unknown keys, parsed from ``params.yaml`` at the edge."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class HorizonLabelConfig(BaseModel):
    """Fixed-horizon forward return label.

    Attributes
    ----------
    horizon
        Number of bars ahead whose close is compared with the close of the row's bar.
    threshold
        Log returns with ``|r| <= threshold`` get label 0.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["horizon"] = "horizon"
    horizon: int = Field(ge=1)
    threshold: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)


class TripleBarrierConfig(BaseModel):
    """Triple-barrier label (profit-take, stop-loss and vertical barrier).

    Attributes
    ----------
    pt
        Profit-take distance in units of sigma: upper barrier ``close_t * (1 + pt * sigma_t)``.
    sl
        Stop-loss distance in units of sigma: lower barrier ``close_t * (1 - sl * sigma_t)``.
    max_holding
        Vertical barrier: the number of bars after entry at which the trade is closed.
    vol_span
        Span of the exponentially weighted standard deviation of log returns giving sigma_t
        (see :func:`pipelines.labels.triple_barrier.log_return_volatility`).
    zero_at_vertical
        If true, a trade closed by the vertical barrier is labelled 0; otherwise it gets the sign
        of its log return (0 only when that return is exactly 0).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["triple_barrier"] = "triple_barrier"
    pt: float = Field(gt=0.0, allow_inf_nan=False)
    sl: float = Field(gt=0.0, allow_inf_nan=False)
    max_holding: int = Field(ge=1)
    vol_span: int = Field(ge=2)
    zero_at_vertical: bool = True


LabelConfig = Annotated[HorizonLabelConfig | TripleBarrierConfig, Field(discriminator="kind")]
"""Either label configuration; ``kind`` tells them apart when parsed from a mapping."""

"""Invariants of every label type: point in time, known after the row's bar, weights in (0, 1]."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.files import bar_frame

from core.timeframes import Timeframe
from pipelines.labels import HorizonLabelConfig, TripleBarrierConfig, make_labels

from ._bars import HOUR, START, close_bars

TF = Timeframe.H1
LABEL_COLUMNS = ("label", "log_return", "barrier", "label_end")


@st.composite
def random_bars(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 40))
    moves = draw(st.lists(st.floats(-0.05, 0.05), min_size=n, max_size=n))
    wicks = draw(
        st.lists(st.tuples(st.floats(0, 0.04), st.floats(0, 0.04)), min_size=n, max_size=n)
    )
    gaps = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    close = 100.0 * np.exp(np.cumsum(moves))
    open_ = np.concatenate(([100.0], close[:-1]))
    ts = [START + int(k) * HOUR for k in np.cumsum(gaps)]
    rows = []
    for i in range(n):
        top, bottom = max(open_[i], close[i]), min(open_[i], close[i])
        up, down = wicks[i]
        rows.append((ts[i], open_[i], top * (1 + up), bottom * (1 - down), close[i], 1.0, None))
    return bar_frame(rows)


configs = st.one_of(
    st.builds(
        HorizonLabelConfig, horizon=st.integers(1, 6), threshold=st.sampled_from([0.0, 0.01])
    ),
    st.builds(
        TripleBarrierConfig,
        pt=st.floats(0.2, 3.0),
        sl=st.floats(0.2, 3.0),
        max_holding=st.integers(1, 6),
        vol_span=st.integers(2, 5),
        zero_at_vertical=st.booleans(),
    ),
)


def point_in_time_violations(
    full: pl.DataFrame, part: pl.DataFrame, known_until: datetime
) -> list[str]:
    """List the rows where labels on a prefix of the bars disagree with labels on all bars."""
    columns = [c for c in LABEL_COLUMNS if c in full.columns]
    problems = []
    for i, (whole, cut) in enumerate(
        zip(
            full.head(part.height).select(columns).rows(named=True),
            part.select(columns).rows(named=True),
            strict=True,
        )
    ):
        if cut["label"] is not None and cut != whole:
            problems.append(f"row {i}: {cut} on the prefix, {whole} on all bars")
        end = whole["label_end"]
        if end is not None and end <= known_until and cut["label"] is None:
            problems.append(f"row {i}: known at {end} but null on the prefix")
    return problems


@settings(max_examples=150, deadline=None)
@given(bars=random_bars(), config=configs, data=st.data())
def test_labels_on_prefix_agree_with_full_labels(
    bars: pl.DataFrame, config: HorizonLabelConfig | TripleBarrierConfig, data: st.DataObject
) -> None:
    # Arrange
    cut = data.draw(st.integers(1, bars.height), label="cut")
    prefix = bars.head(cut)
    known_until = prefix["ts"][-1] + TF.duration

    # Act
    full = make_labels(bars, config, TF)
    part = make_labels(prefix, config, TF)

    # Assert
    assert point_in_time_violations(full, part, known_until) == []


@settings(max_examples=150, deadline=None)
@given(bars=random_bars(), config=configs)
def test_labels_known_after_own_bar_and_weights_in_unit_interval(
    bars: pl.DataFrame, config: HorizonLabelConfig | TripleBarrierConfig
) -> None:
    # Act
    out = make_labels(bars, config, TF, with_weight=True)

    # Assert
    known = out.filter(pl.col("label").is_not_null())
    unknown = out.filter(pl.col("label").is_null())
    assert (known["label_end"] > known["ts"] + TF.duration).all()
    assert known["label"].is_in([-1, 0, 1]).all()
    assert known["weight"].is_not_null().all()
    assert ((known["weight"] > 0) & (known["weight"] <= 1)).all()
    label_columns = [c for c in out.columns if c != "ts"]
    assert unknown.select(pl.all_horizontal(pl.col(label_columns).is_null())).to_series().all()


def test_point_in_time_check_catches_labels_from_partial_windows() -> None:
    # Arrange: a leaky labeller that fills the last rows from whatever bars remain.
    def leaky(bars: pl.DataFrame) -> pl.DataFrame:
        labels = make_labels(bars, HorizonLabelConfig(horizon=2), TF)
        return labels.with_columns(pl.col("label").fill_null(pl.lit(1, pl.Int8)))

    bars = close_bars([100.0, 101.0, 99.0, 98.0, 97.0])
    prefix = bars.head(3)

    # Act
    problems = point_in_time_violations(leaky(bars), leaky(prefix), prefix["ts"][-1] + TF.duration)

    # Assert: row 1 is 1 on the prefix but -1 on all bars.
    assert problems
    assert problems[0].startswith("row 1:")

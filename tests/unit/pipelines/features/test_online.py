"""The bar-by-bar path reproduces the batch computation bit for bit."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from core.errors import UsageError
from core.types import VolumeKind
from pipelines.features import compute_features, default_feature_set
from pipelines.features.online import OnlineFeatures

from ._bars import random_bars

SPECS = default_feature_set()


def replay(bars: pl.DataFrame, online: OnlineFeatures, chunk: int = 1) -> pl.DataFrame:
    """Feed ``bars`` to ``online`` ``chunk`` bars at a time; return the values after each bar."""
    rows = []
    for start in range(0, bars.height, chunk):
        part = bars.slice(start, chunk)
        if chunk == 1:
            rows.append(online.update(part.row(0, named=True)))
        else:
            online.update(part)
            assert online.last is not None
            rows.append(online.last)
    return pl.DataFrame(rows, infer_schema_length=None)


def batch(bars: pl.DataFrame, **kinds: object) -> pl.DataFrame:
    return compute_features(bars, SPECS, **kinds)  # type: ignore[arg-type]


KINDS = {"has_spread": True, "volume_kind": VolumeKind.TICK}


@pytest.mark.slow
def test_replay_from_the_first_bar_equals_batch_at_every_bar() -> None:
    bars = random_bars(520, seed=5, flat_share=0.05, spread_null_share=0.02)
    online = OnlineFeatures(SPECS, **KINDS)  # type: ignore[arg-type]
    got = replay(bars, online)
    want = batch(bars, **KINDS)
    assert got.columns == want.columns
    assert len(want.columns) > 60
    assert_frame_equal(got, want, check_exact=True, check_dtypes=False)
    # Deep warm-ups end inside the replay: the comparison covers real values, not just nulls.
    assert all(got[c].null_count() < got.height - 200 for c in got.columns)


@pytest.mark.slow
def test_history_then_bar_by_bar_equals_batch() -> None:
    bars = random_bars(700, seed=8, flat_share=0.02)
    online = OnlineFeatures(SPECS, **KINDS, history=bars.head(450))  # type: ignore[arg-type]
    got = replay(bars.slice(450), online)
    want = batch(bars, **KINDS).slice(450)
    assert_frame_equal(got, want, check_exact=True, check_dtypes=False)


@pytest.mark.slow
def test_several_bars_per_update_equals_batch() -> None:
    bars = random_bars(420, seed=9)
    online = OnlineFeatures(SPECS, **KINDS)  # type: ignore[arg-type]
    got = replay(bars, online, chunk=7)
    want = batch(bars, **KINDS)[6::7]
    assert_frame_equal(got, want, check_exact=True, check_dtypes=False)


def test_recursive_features_from_a_short_history_approach_within_tolerance() -> None:
    bars = random_bars(900, seed=12)
    want = batch(bars, **KINDS).row(-1, named=True)
    for spec in SPECS:
        online = OnlineFeatures([spec], **KINDS, history=bars.tail(spec.lookback))  # type: ignore[arg-type]
        assert online.last is not None
        got = online.last[spec.name]
        assert got is not None, spec.name
        assert abs(got - want[spec.name]) <= spec.tolerance, spec.name


def test_series_without_spread_or_tick_volume_skip_those_features() -> None:
    bars = random_bars(60, seed=2).drop("spread")
    online = OnlineFeatures(SPECS, has_spread=False, volume_kind=VolumeKind.NONE)
    values = online.update(bars)
    assert not any(n.startswith(("relative_spread", "volume_")) for n in values)
    assert online.names == batch(bars, has_spread=False, volume_kind=VolumeKind.NONE).columns[1:]


def test_bars_out_of_order_or_repeated_are_refused_and_change_nothing() -> None:
    bars = random_bars(40, seed=3)
    online = OnlineFeatures(SPECS, **KINDS, history=bars.head(30))  # type: ignore[arg-type]
    last = online.last
    repeated = bars.row(29, named=True)
    with pytest.raises(UsageError, match="strictly increasing"):
        online.update(repeated)
    earlier = dict(bars.row(30, named=True), ts=bars["ts"][29] - timedelta(minutes=1))
    with pytest.raises(UsageError, match="strictly increasing"):
        online.update(earlier)
    assert online.last == last
    got = replay(bars.slice(30), online)
    assert_frame_equal(got, batch(bars, **KINDS).slice(30), check_exact=True, check_dtypes=False)


def test_a_bar_lacking_a_column_is_refused() -> None:
    bars = random_bars(10, seed=4)
    online = OnlineFeatures(SPECS, **KINDS, history=bars.head(5))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="lacks column"):
        online.update(bars.drop("volume").row(5, named=True))
    with pytest.raises(UsageError, match="no bars"):
        online.update(bars.head(0))

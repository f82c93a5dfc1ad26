"""The Data page: what the bar store covers, its gaps against the trading calendar, the rows
ingest quarantined and why, the latest validation, and whether each feature build is current."""

from __future__ import annotations

import polars as pl
import streamlit as st

from app.dashboard import common as ui
from services.views import data as views

INGEST = "solodesk ingest <file> --symbol <symbol> --timeframe <timeframe>"


def _coverage() -> None:
    st.subheader("Coverage")
    rows = ui.read(views.coverage)
    if not rows:
        ui.missing("No bars stored yet", INGEST)
        return
    bars = sum(r.rows for r in rows)
    st.caption(f"{len(rows)} series, {bars:,} bars in the store")
    ui.table(
        [
            {
                "symbol": r.symbol, "timeframe": r.timeframe.value, "side": r.side.value,
                "bars": r.rows, "first": r.first, "last": r.last,
                "volume": r.volume_kind.value, "spread": r.spread, "version": r.version,
                "sources": ", ".join(r.sources),
            }
            for r in rows
        ]
    )  # fmt: skip
    figure = ui.read(views.coverage_chart)
    if figure is not None:
        ui.chart(figure, key="data_coverage_chart")


def _gaps() -> None:
    st.subheader("Gaps")
    found = ui.read(views.gaps)
    if not found:
        ui.missing("No bars stored yet, so no gaps to look for", INGEST)
        return
    st.caption(
        "Bars the instrument's trading calendar expected and the store lacks (an FX weekend is "
        "no gap), the rule ingest's validation flags them with."
    )
    ui.table(
        [
            {
                "series": g.series, "bars": g.rows, "gaps": g.gaps,
                "missing bars": g.missing_bars, "checked": g.checked, "note": g.note,
            }
            for g in found
        ]
    )  # fmt: skip
    largest = [
        {
            "series": g.series,
            "after": row.after,
            "before": row.before,
            "missing bars": row.missing_bars,
        }
        for g in found
        for row in g.largest
    ]
    if largest:
        st.caption(f"The largest gaps of each series (up to {views.GAPS_LISTED})")
        ui.table(largest)
    else:
        st.success("No gap in any stored series.")


def _quarantine() -> None:
    st.subheader("Quarantine")
    reasons = ui.read(views.quarantine_reasons)
    if reasons.height == 0 and ui.read(views.validation) is None:
        ui.missing("No ingest run recorded yet, so nothing quarantined", INGEST)
        return
    if reasons.height == 0:
        st.success("No row quarantined: every row ingested passed the row rules.")
        return
    total = int(reasons["rows"].sum())
    st.caption(f"{total:,} rows set aside by ingest, by reason (numbers in reasons masked)")
    ui.table(reasons)
    rows = ui.read(views.quarantine_rows)
    symbols = sorted(set(rows["symbol"].to_list()))
    chosen = st.selectbox("Symbol", ["all", *symbols], key="data_quarantine_symbol")
    if chosen != "all":
        rows = rows.filter(pl.col("symbol") == chosen)
    st.caption(f"The rows, latest run first (up to {views.QUARANTINE_LISTED})")
    ui.table(rows)


def _validation() -> None:
    st.subheader("Validation")
    latest = ui.read(views.validation)
    if latest is None:
        ui.missing("No ingest run recorded yet", INGEST)
        return
    failed = [s.series for s in latest.series if s.passed is False]
    verdict = f"failed for {', '.join(failed)}" if failed else "every expectation passed"
    st.markdown(
        f"Latest ingest run **{latest.run}** at {latest.at} ({latest.runs} runs recorded): "
        f"{verdict}."
    )
    st.caption(f"Sources: {', '.join(latest.sources) or '-'}")
    ui.table([s.model_dump(mode="json") for s in latest.series])
    if latest.report:
        st.caption(f"Great Expectations data docs: {latest.report}")
    else:
        st.caption("This run wrote no validation report.")


def _feature_builds() -> None:
    st.subheader("Feature builds")
    builds = ui.read(views.feature_builds)
    if not builds:
        ui.missing("No feature set built yet", "solodesk features build --all")
        return
    stale = sum(b.state == "stale" for b in builds)
    st.caption(
        f"The latest build of each set on each series: {len(builds) - stale} fresh, {stale} "
        "stale (fresh: building it again would find it, from the same series and definition)."
    )
    ui.table([b.model_dump(mode="json", exclude={"note"}) for b in builds])
    if builds[0].note:
        st.caption(builds[0].note)


def render() -> None:
    """Show the page's sections, each on its own (one failing shows its message only)."""
    for section in (_coverage, _gaps, _quarantine, _validation, _feature_builds):
        with ui.explained():
            section()


ui.page("Data", render)

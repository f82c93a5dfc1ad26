"""The Ops page."""

from __future__ import annotations

import streamlit as st

from app.dashboard import common as ui


def render() -> None:
    st.write("Ops")


ui.page("Ops", render)

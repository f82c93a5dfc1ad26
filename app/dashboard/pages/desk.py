"""The Desk page."""

from __future__ import annotations

import streamlit as st

from app.dashboard import common as ui


def render() -> None:
    st.write("Desk")


ui.page("Desk", render)

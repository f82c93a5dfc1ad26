"""The solodesk dashboard: ``solodesk dashboard`` serves this script with Streamlit.

Each page is a script in ``screens/`` with its own URL (``/desk``, ``/trades``, ``/research``,
``/backtests``, ``/data``, ``/ops``, ``/controls``); the app's root opens the desk. The folder is
not called ``pages/``: Streamlit would take such a folder for pages of its own, served without
this script (its navigation and sidebar) when a page's URL is the first one opened.
"""

from __future__ import annotations

import streamlit as st

from app.dashboard.common import who

#: The pages, in the order of the navigation: (script, title, icon).
PAGES = (
    ("desk", "Desk", ":material/monitoring:"),
    ("trades", "Trades", ":material/receipt_long:"),
    ("research", "Research", ":material/science:"),
    ("backtests", "Backtests", ":material/history:"),
    ("data", "Data", ":material/database:"),
    ("ops", "Ops", ":material/settings_suggest:"),
    ("controls", "Controls", ":material/tune:"),
)


def _root() -> None:
    st.switch_page(f"screens/{PAGES[0][0]}.py")


st.set_page_config(page_title="solodesk", page_icon=":material/monitoring:", layout="wide")
navigation = st.navigation(
    [st.Page(_root, title="solodesk", url_path="home", default=True, visibility="hidden")]
    + [
        st.Page(f"screens/{name}.py", title=title, icon=icon, url_path=name)
        for name, title, icon in PAGES
    ]
)
with st.sidebar:
    name = who()
    st.caption(f"logged in as {name}" if name else "read-only: log in on Controls to act")
navigation.run()

"""LedgerLens workbench: the router and frame.

`streamlit run app.py`. Settings are read once here (engine.settings; LEDGERLENS_DB
points at the DuckDB file); the sidebar carries the store path and the pair / time
window filters (kept in st.query_params so a view can be shared as a link);
st.navigation runs one thin script from pages/. Errors meant for the user are shown
with what to do; anything else is logged with a traceback and an incident id.
"""

from __future__ import annotations

import logging

import streamlit as st

from engine.settings import load_settings
from pages import _ui

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="LedgerLens", page_icon=":material/policy:", layout="wide")

_ui.set_settings(load_settings())
_ui.mark_routed()

PAGES = [
    st.Page(_ui.PAGES["overview"], title="Overview", icon=":material/dashboard:", url_path="overview", default=True),
    st.Page(_ui.PAGES["ingest"], title="Ingest", icon=":material/download:", url_path="ingest"),
    st.Page(_ui.PAGES["rings"], title="Rings", icon=":material/hub:", url_path="rings"),
    st.Page(_ui.PAGES["wallet"], title="Wallet", icon=":material/account_balance_wallet:", url_path="wallet"),
    st.Page(_ui.PAGES["annotate"], title="Annotate", icon=":material/label:", url_path="annotate"),
    st.Page(_ui.PAGES["models"], title="Models", icon=":material/model_training:", url_path="models"),
    st.Page(_ui.PAGES["reports"], title="Reports", icon=":material/description:", url_path="reports"),
    st.Page(_ui.PAGES["graph_lab"], title="Graph Lab", icon=":material/science:", url_path="graph_lab"),
]

page = st.navigation(PAGES)
with _ui.guard():
    page.run()  # each page draws the sidebar first (_ui.frame), so it also works under pages/ routing

"""LedgerLens workbench: the router and frame.

`streamlit run app.py`. Settings are read once here (engine.settings; LEDGERLENS_DB
points at the DuckDB file); the sidebar carries the store path and the pair / time
window filters (kept in st.query_params so a view can be shared as a link);
st.navigation runs one thin script from pages/. Errors meant for the user are shown
with what to do; anything else is logged with a traceback and an incident id.
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from engine.settings import load_settings
from pages import _routing, _show, _ui

ICON = Path(__file__).parent / "pages" / "assets" / "ledgerlens.png"
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="LedgerLens", page_icon=str(ICON), layout="wide")  # a local file: nothing fetched

_ui.set_settings(load_settings())
_routing.mark_routed()

PAGES = [
    st.Page(_show.PAGES["overview"], title="Overview", icon=":material/dashboard:", url_path="overview", default=True),
    st.Page(_show.PAGES["ingest"], title="Ingest", icon=":material/download:", url_path="ingest"),
    st.Page(_show.PAGES["rings"], title="Rings", icon=":material/hub:", url_path="rings"),
    st.Page(_show.PAGES["wallet"], title="Wallet", icon=":material/account_balance_wallet:", url_path="wallet"),
    st.Page(_show.PAGES["annotate"], title="Annotate", icon=":material/label:", url_path="annotate"),
    st.Page(_show.PAGES["models"], title="Models", icon=":material/model_training:", url_path="models"),
    st.Page(_show.PAGES["reports"], title="Reports", icon=":material/description:", url_path="reports"),
    st.Page(_show.PAGES["graph_lab"], title="Graph Lab", icon=":material/science:", url_path="graph_lab"),
    st.Page(_show.PAGES["live"], title="Live", icon=":material/sensors:", url_path="live"),
]

page = st.navigation(PAGES)
with _show.guard():
    page.run()  # each page draws the sidebar first (_ui.frame), so it also works under pages/ routing

"""Streamlit routing: every page runs through app.py's st.navigation, even after a deep link.

A deep link (e.g. /rings) served by Streamlit's legacy `pages/` routing before app.py ran
in this process is switched over to st.navigation routing and run again through app.py.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx


def leave_pages_directory_routing() -> None:
    """A page ran without app.py: Streamlit's legacy `pages/` routing served a deep link (e.g. /rings) before
    app.py ever ran in this process. Switch the process to st.navigation routing and run again through app.py."""
    ctx = get_script_run_ctx()
    if ctx is None or getattr(ctx, "fragment_ids_this_run", None):
        return  # a fragment rerun never runs app.py; it is not a routing problem
    if type(Runtime._instance) is not Runtime:
        return  # AppTest re-enables pages/ routing on every run; pages draw their own frame (see frame())
    if PagesManager.uses_pages_directory and not getattr(ctx, "_ledgerlens_routed", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def mark_routed() -> None:
    """Called by app.py: this session's runs go through the router (fragment reruns skip app.py)."""
    ctx = get_script_run_ctx()
    if ctx is not None:
        ctx._ledgerlens_routed = True

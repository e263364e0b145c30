"""Who is labelling: chosen once per browser session (a name already on record, or a new one), then kept.

The name is a UI selection of this session (st.session_state), shown with a "Change" button; the Annotate
queue and the Wallet page's label form both use it, so an analyst never types it again per label.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from pages import _show, _ui
from storage.store import Store

NEW = "someone new…"
MAX_NAME = 64


def _known() -> list[str]:
    names = _ui.read(Store.annotations).get_column("annotator_id")
    return sorted(names.drop_nulls().unique().to_list()) if isinstance(names, pl.Series) else []


def annotator(*, key: str) -> str | None:
    """This session's annotator, asking once (None until chosen: the caller stops or disables labelling)."""
    name = st.session_state.get("annotator")
    if name:
        c = st.columns([3, 1], vertical_alignment="center")
        c[0].caption(f"Labelling as **{_show.esc(name)}** (this browser session)")
        if c[1].button("Change", key=f"{key}_change"):
            del st.session_state["annotator"]
            st.rerun()
        return name
    pick = st.selectbox("Who is labelling?", [*_known(), NEW], index=None, key=f"{key}_pick",
                        placeholder="choose your name once for this session")  # fmt: skip
    typed = st.text_input("New name", key=f"{key}_new", max_chars=MAX_NAME) if pick == NEW else ""
    if st.button("Start labelling", key=f"{key}_start", type="primary", disabled=pick is None):
        chosen = (typed if pick == NEW else pick or "").strip()
        if not chosen:
            st.error("Type the new annotator's name, then press **Start labelling**.")
            return None
        st.session_state["annotator"] = chosen
        st.rerun()
    return None

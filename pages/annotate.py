"""Annotate: the active-learning queue; wash / legit / unsure + a note, one wallet at a time."""

from __future__ import annotations

import streamlit as st

from engine.workbench import LABELS
from pages import _ui

_ui.frame()
st.title("Annotate")
threshold = _ui.settings().risk_score_flag_threshold
progress = _ui.q("label_progress")
if progress["n_scored"] == 0:
    _ui.not_computed("Risk scores (the queue is built from them)", "python -m engine score")
    st.stop()
done = progress["n_labelled"]
st.progress(min(1.0, done / progress["n_scored"]),
            text=f"{done:,} of {progress['n_scored']:,} scored (wallet, pair) labelled — "
                 f"wash {progress['n_wash']}, legit {progress['n_legit']}, unsure {progress['n_unsure']}")

strategies = _ui.optional("engine.active", "build_queue")
if strategies is None:
    st.caption("Queue order: closest to the flag threshold first (engine.active strategies not installed yet).")


@st.fragment
def queue() -> None:
    with _ui.guard():
        rows = _ui.q("annotation_queue", threshold=threshold, limit=50)
        if rows.height == 0:
            st.success("The queue is empty: every scored (wallet, pair) has a label.")
            return
        item = rows.row(0, named=True)
        st.subheader(_ui.esc(item["wallet"]))
        c = st.columns(4)
        c[0].metric("Score", item["score"])
        c[1].metric("Confidence", item["confidence"])
        c[2].metric("Ring", item["ring_id"] or "–")
        c[3].page_link(_ui.PAGES["wallet"], label="Open wallet page", query_params={"wallet": item["wallet"]})
        st.caption(f"pair {_ui.esc(item['pair_id'])}")
        with st.form("queue_form", clear_on_submit=True, enter_to_submit=True):
            label = st.radio("Label (Tab to move, arrows to choose, Enter to save)", LABELS, horizontal=True,
                             key="queue_label")
            note = st.text_input("Note", key="queue_note")
            if st.form_submit_button("Save and next", type="primary"):
                _ui.label_wallet(wallet=item["wallet"], pair_id=item["pair_id"], label=label, note=note,
                                 annotator="analyst")
                st.rerun(scope="app")
        st.markdown(f"**Next in queue** ({rows.height - 1} more shown)")
        st.dataframe(rows.slice(1), hide_index=True, key="queue_table")


queue()

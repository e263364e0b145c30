"""Graph Lab: temporal snapshots and graph-ML runs (filled by the graph-ML issue)."""

from __future__ import annotations

import streamlit as st

from pages import _ui

_ui.frame()
st.title("Graph Lab")
st.info("Temporal graph snapshots and GNN experiments land here (another issue fills this page). "
        "From a terminal: `python -m engine snapshot --window 30d`, `python -m engine train-gnn --config F`.")
snapshots = _ui.sq("load_derived", name="snapshots")
embeddings = _ui.sq("load_derived", name="embeddings")
st.metric("Snapshot rows", "not computed yet" if snapshots is None else f"{snapshots.height:,}")
st.metric("Embedding rows", "not computed yet" if embeddings is None else f"{embeddings.height:,}")
if snapshots is not None and snapshots.height:
    st.dataframe(snapshots.head(200), hide_index=True, key="snapshots_table")

"""Models: the registry (versions, metrics), feature importance, drift (PSI), retrain."""

from __future__ import annotations

import polars as pl
import streamlit as st

from pages import _ui

_ui.frame()
st.title("Models")
registry = _ui.optional("models.registry", "list_versions", "current_version")
if registry is None:
    st.warning("The model registry is not installed yet.")
    st.stop()
list_versions, current_version = registry
models_dir = _ui.settings().models_dir
versions = list_versions(models_dir)
if not versions:
    _ui.not_computed("No model trained;", "python -m engine train")
    st.stop()
st.metric("Current model", current_version(models_dir) or "none promoted")
st.dataframe(pl.DataFrame(versions), hide_index=True, key="model_versions")

drift = _ui.optional("engine.drift", "drift_table")
if drift is None:
    st.caption("Drift (PSI) table: not available yet (engine.drift is not installed).")
else:
    st.subheader("Drift (PSI) against the training data")
    st.dataframe(drift[0](_ui.store(), models_dir=models_dir), hide_index=True, key="drift_table")
st.caption("Retrain from a terminal: `python -m engine retrain-if-drifted` (or `python -m engine train`).")

"""Models: the registry (versions, held-out metrics, PR curves), feature importance, drift (PSI), retrain."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from pages import _model_views, _show, _ui
from storage.store import Store

_ui.frame()
st.title("Models")
settings = _ui.settings()
versions = _model_views.model_versions()
n_trades = _ui.read(Store.counts)["trades"]
if not versions:
    st.warning("No model trained yet: press **Train a model** below.")
if n_trades == 0:
    _show.empty_store_hint()
    st.stop()


def retrain_panel() -> None:
    st.subheader("Retrain" if versions else "Train a model")
    meta = _model_views.model().metadata if versions and _model_views.model_version() else {}
    c1, c2 = st.columns(2)
    n_estimators = c1.number_input("Trees per member", 10, 500, int(meta.get("params", {}).get("n_estimators", 150)),
                                   step=10, key="retrain_trees")  # fmt: skip
    rescore = c2.checkbox("Re-score the store with the promoted model", value=True, key="retrain_rescore")
    st.caption("Labels: the current model's simulator labels file and analysts' labels in the store (a simulated "
               "market when there are none). The new version is promoted only if its ROC-AUC on the held-out rows "
               "is not more than 0.01 below the current model's; otherwise it is archived.")  # fmt: skip
    if st.button("Retrain now" if versions else "Train a model", key="retrain", type="primary"):
        bar = st.progress(0.0, text="training: starting")
        outcome = _model_views.retrain(n_estimators=int(n_estimators), rescore=rescore, bar=bar)
        (st.success if outcome.code == 2 else st.warning)(outcome.message)


if not versions:
    with _show.guard():
        retrain_panel()
    st.stop()

current = _model_views.model_version()
st.metric("Current model", current or "none promoted")
st.dataframe(pl.DataFrame(versions), hide_index=True, key="model_versions")
ids = [v["version"] for v in versions]
pick = st.selectbox("Version", ids, index=ids.index(current) if current in ids else 0, key="model_pick")
loaded = _model_views.model(pick)
meta = loaded.metadata
st.caption(f"trained on {_show.esc(meta.get('trained_on', '?'))}; labels {meta.get('label_distribution')} "
           f"from {_show.esc(meta.get('label_source'))}; {meta['split']['kind']} split "
           f"({meta['split']['n_train']:,} train / {meta['split']['n_test']:,} held-out rows); "
           f"{meta['params']['n_estimators']} trees per member, imbalance {meta['imbalance']['chosen']}")  # fmt: skip

st.subheader("Held-out metrics")
st.dataframe(_model_views.metrics_frame(meta["metrics"]), hide_index=True, key="model_metrics")
st.caption(_show.esc(meta.get("evaluation_note", "")))
left, right = st.columns(2)
with left:
    curves = meta.get("pr_curves") or {}
    if not curves:
        st.caption("PR curves were not recorded for this version (trained before they were).")
    else:
        fig = go.Figure([go.Scatter(x=c["recall"], y=c["precision"], mode="lines", name=name)
                         for name, c in curves.items()])  # fmt: skip
        prevalence = meta["metrics"]["ensemble"]["prevalence"]
        fig.add_hline(y=prevalence, line_dash="dot", annotation_text=f"prevalence {prevalence:.3f}")
        fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="recall",
                          yaxis_title="precision", title="Precision-recall (held-out)")  # fmt: skip
        st.plotly_chart(fig, key="pr_curves")
with right:
    importance = _model_views.importance_frame(meta.get("feature_importance"), top=20)
    if importance.height == 0:
        st.caption("Feature importance was not recorded for this version.")
    else:
        fig = go.Figure(go.Bar(x=importance["mean_abs_shap"].to_list(), y=importance["feature"].to_list(),
                               orientation="h"))  # fmt: skip
        fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(autorange="reversed"),
                          xaxis_title="mean |SHAP| (score points)", title="Feature importance")  # fmt: skip
        st.plotly_chart(fig, key="feature_importance")

st.subheader("Drift (PSI) of the stored features against this version's training data")
table = _model_views.drift(pick)
if table is None:
    _show.not_computed("Features")
else:
    threshold = settings.psi_drift_threshold
    n_drifted = table.filter((pl.col("psi") > threshold) | (pl.col("status") == "absent")).height
    st.caption(f"{n_drifted} of {table.height} features drifted (PSI > {threshold}); "
               "< 0.1 stable, 0.1–0.25 moderate; retrain below when features drifted.")
    st.dataframe(table, hide_index=True, key="drift_table")

with _show.guard():
    retrain_panel()

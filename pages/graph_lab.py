"""Graph Lab: temporal snapshots and GNN link-prediction runs against EdgeBank / Adamic-Adar."""

from __future__ import annotations

import plotly.express as px
import polars as pl
import streamlit as st

from engine.graph.temporal import degree_distribution, load_edges, snapshot, spec_of, validation_report
from engine.services.graph_lab import evaluate_config, lab_config
from pages import _show, _ui
from storage.store import Store

_ui.frame()
st.title("Graph Lab")
st.caption("Temporal graph ML on the trade + funding graph. Snapshots, GNN training and embeddings are built by the "
           "command line (`snapshot`, `train-gnn`, `embed`) with the app stopped: while it runs, the app holds the store.")

with _show.guard():
    snapshots = _show.frame_or_none(_ui.read(Store.load_derived, name="snapshots"))
    embeddings = _show.frame_or_none(_ui.read(Store.load_derived, name="embeddings"))
    st.metric("Embedded wallets", "not computed yet" if embeddings is None else f"{embeddings.height:,}")
    st.subheader("Snapshots")
    if snapshots is None:
        st.warning("Snapshots not computed yet: stop the app and run the `snapshot --window 30d` command.")
    else:
        report = validation_report(snapshots, spec_of(snapshots))
        st.dataframe(report.drop("degree_hist"), hide_index=True, key="snapshot_report")
        k = st.selectbox("Snapshot", report.get_column("snapshot").to_list(), key="gl_snapshot")
        dist = degree_distribution(snapshot(snapshots, k))
        st.plotly_chart(px.bar(dist.to_pandas(), x="degree", y="n_nodes", log_x=True,
                               title=f"Degree distribution, snapshot {k}"), key="degree_chart")  # fmt: skip

st.subheader("Link prediction")
c1, c2, c3 = st.columns(3)
window = c1.selectbox("Window", ["7d", "30d", "90d", "365d"], index=1, key="gl_window")
encoder = c2.selectbox("Model", ["sage", "gcn", "gat"], key="gl_model",
                       format_func={"sage": "GraphSAGE", "gcn": "GCN", "gat": "GAT"}.get)
epochs = c3.number_input("Epochs (max, early stopping)", 1, 300, 30, key="gl_epochs")
if st.button("Run", key="gl_run", type="primary"):
    with _show.guard():
        bar = st.progress(0.0, text="training…")

        def on_epoch(*, epoch, epochs, train_loss, val_loss):
            bar.progress(epoch / epochs, text=f"epoch {epoch}/{epochs}: train {train_loss:.4f}, val {val_loss:.4f}")

        config = lab_config(window=window, encoder=encoder, epochs=int(epochs), seed=_ui.settings().seed)
        result = evaluate_config(config, load_edges(_ui.store()), on_epoch=on_epoch)
        bar.progress(1.0, text=f"done: best epoch {result['best_epoch']}, {result['train_seconds']:.1f}s")
        history = pl.DataFrame(result["history"]).unpivot(index="epoch", variable_name="split", value_name="loss")
        st.plotly_chart(px.line(history.to_pandas(), x="epoch", y="loss", color="split", title="Loss"),
                        key="loss_chart")  # fmt: skip
        st.dataframe(pl.DataFrame(result["metrics"]), hide_index=True, key="metrics_table")
        (st.success if "NOT" not in result["verdict"] else st.warning)(result["verdict"])
        split = result["split"]["test"]
        st.caption(f"Test: {split['n_positives']:,} future pairs ({split['share_repeated_positives']:.0%} seen before), "
                   f"{split['n_historical_negatives']:,} historical negatives; leakage check "
                   f"{'passed' if result['leakage_ok'] else 'FAILED'}.")

"""Wallet: score, flags, history, SHAP, Benford, trades, counterparties, funding lineage, rings, label, report."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from engine.active import LABEL_KEYS
from engine.ring_order import plural
from engine.services.report import generate_report
from pages import _annotator, _evidence, _model_views, _show, _ui
from storage.store import Store

f = _ui.frame()
st.title("Wallet")
wallet = st.query_params.get("wallet", "")
typed = st.text_input("Wallet (G…)", value=wallet, key="wallet_input").strip()
if typed != wallet:
    st.query_params["wallet"] = typed
    wallet = typed
if not wallet:
    st.info("Enter a wallet address, or open one from Overview (top flagged) or Rings.")
    st.stop()

scores = _ui.read(Store.wallet_scores, wallet=wallet)
n_trades = _ui.read(Store.trade_timeline, wallet=wallet)
if scores.height == 0 and n_trades.height == 0:
    st.warning(f"No trades or scores for {_show.esc(wallet)}. Check the address, or ingest the ledgers it traded in.")
    st.stop()

st.subheader(_show.esc(wallet))
if scores.height == 0:
    _show.not_computed("Risk scores for this wallet")
    pair_id = None
else:
    pairs = scores.get_column("pair_id").to_list()
    pair_id = st.selectbox("Pair", pairs, key="wallet_pair")
    top = scores.filter(pl.col("pair_id") == pair_id).row(0, named=True)
    m = st.columns(5)
    m[0].metric("Risk score", top["score"])
    m[1].metric("Confidence", top["confidence"])
    m[2].metric("Benford flag", "yes" if top["benford_flag"] else "no")
    m[3].metric("ML flag", "yes" if top["ml_flag"] else "no")
    m[4].metric("Ring", top["ring_id"] or "–")
    st.caption(f"model {top['model_version']}; BFT divergence: {'yes' if top['bft_divergence'] else 'no'}")
    st.dataframe(scores.drop("wallet"), hide_index=True, key="wallet_scores")  # the wallet is the heading

tabs = st.tabs(["Score history", "Explanation", "Benford", "Trades", "Counterparties", "Funding lineage", "Rings"],
               default="Trades")
with tabs[0]:
    history = _ui.read(Store.score_history, wallet=wallet)
    if history.height:
        st.line_chart(history.select("scored_at", "score", "pair_id"), x="scored_at", y="score", color="pair_id")
    else:
        st.caption("no score history")
with tabs[1]:
    version = _model_views.explainable_version(top["model_version"]) if pair_id is not None else None
    if pair_id is None or version is None:
        _show.not_computed("SHAP explanation (needs a model and scores)")
    else:
        expl = _model_views.explanation(wallet=wallet, pair_id=pair_id, version=version)
        if expl is None:
            _show.not_computed("Features (the explanation reads them)")
        else:
            rows = _model_views.waterfall_rows(expl, top=12)
            total = expl.base_value + float(rows["shap"].sum())
            fig = go.Figure(go.Waterfall(
                orientation="h", base=expl.base_value, y=rows["feature"].to_list() + ["members' mean score"],
                x=rows["shap"].to_list() + [0.0], measure=["relative"] * rows.height + ["total"],
            ))  # fmt: skip
            fig.update_layout(height=420, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="risk score points",
                              yaxis=dict(autorange="reversed"))  # fmt: skip
            st.plotly_chart(fig, key="shap_waterfall")
            st.caption(f"model {version}: base {expl.base_value:.1f} + contributions {total - expl.base_value:+.1f} "
                       f"= {total:.1f}, the mean of the member scores "
                       f"({', '.join(f'{p:.1f}' for p in expl.member_scores)}); the model's probability is their "
                       f"median (outlier trimmed). The risk score adds the mechanism evidence below.")  # fmt: skip
            breakdown = _model_views.score_breakdown(wallet=wallet, pair_id=pair_id, model_score=expl.score)
            if breakdown is not None:
                st.markdown("**How the risk score is made**")
                st.dataframe(breakdown, hide_index=True, key="score_breakdown",
                             column_config={"points": st.column_config.NumberColumn(format="%.1f")})
            st.dataframe(pl.DataFrame([c._asdict() for c in expl.contributions[:15]]), hide_index=True,
                         key="shap_table")  # fmt: skip
with tabs[2]:
    _evidence.benford_tab(wallet, pair_id)
with tabs[3]:
    _evidence.trades_tab(wallet, f, n_trades)
with tabs[4]:
    st.dataframe(_ui.read(Store.counterparties, wallet=wallet, limit=100), hide_index=True, key="wallet_counterparties")
with tabs[5]:
    ancestors, siblings = _ui.read(Store.funding_lineage, wallet=wallet)
    st.markdown("**Ancestors** (who created whom)")
    st.dataframe(ancestors, hide_index=True, key="wallet_ancestors")
    st.markdown(f"**Siblings** (same funder): {siblings.height}")
    st.dataframe(siblings, hide_index=True, key="wallet_siblings")
with tabs[6]:
    member_of = _ui.read(Store.wallet_rings, wallet=wallet)
    st.dataframe(member_of, hide_index=True, key="wallet_rings")
    for ring in member_of.get_column("ring_id").to_list():
        st.page_link(_show.PAGES["rings"], label=f"Open {ring}", query_params={"ring": ring})



def _label(label: str, annotator: str) -> None:
    """Button callback (before the rerun): sign and store the label, clear the note."""
    _model_views.label_wallet(wallet=wallet, pair_id=pair_id, label=label, annotator=annotator,
                              note=st.session_state.get("label_note") or "")  # fmt: skip
    st.session_state.wallet_labelled = f"labelled {label}"
    st.session_state.label_note = ""


st.divider()
left, right = st.columns(2)
with left:
    st.markdown("**Label this wallet**")
    st.caption(f"on {_show.esc(pair_id)}" if pair_id else "on every pair")
    annotator = _annotator.annotator(key="wallet_annotator")
    st.text_input("Note (optional)", key="label_note")
    keys = st.columns(len(LABEL_KEYS))
    for col, (label, shortcut) in zip(keys, LABEL_KEYS.items(), strict=True):
        col.button(label.capitalize(), key=f"label_{label}", shortcut=shortcut, disabled=annotator is None,
                   on_click=_label, args=(label, annotator), width="stretch")  # fmt: skip
    st.caption("Keys: **W** wash · **L** legit · **U** unsure" + (f" · {_show.esc(st.session_state['wallet_labelled'])}"
               if st.session_state.get("wallet_labelled") else ""))  # fmt: skip
    history = _ui.read(Store.annotations, wallet=wallet)
    st.caption(f"{plural(history.height, 'label')} on record")
    if history.height:
        st.dataframe(history.select("label", "annotator_id", "annotated_at", "note", "pair_id"), hide_index=True,
                     key="wallet_labels")
with right:
    st.markdown("**Forensic report**")
    if pair_id is None:
        st.caption("Score the wallet first: a report covers one scored (wallet, pair).")
    elif st.button("Generate report", key="generate_report"):
        made = generate_report(_ui.store(), wallet=wallet, pair_id=pair_id, fmt="pdf", settings=_ui.settings())
        _ui.clear_caches()
        st.session_state.report_path = str(made.path)
        st.success(f"Report {made.fingerprint[:16]}… written to {made.path}")
    if st.session_state.get("report_path"):
        path = Path(st.session_state.report_path)
        if path.exists():
            st.download_button("Download PDF", path.read_bytes(), file_name=path.name, mime="application/pdf",
                               key="download_report")

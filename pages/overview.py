"""Overview: headline counts, risk distribution, top flagged (paged in the store), volume vs rings, Benford."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from engine.drawing import benford_expected
from pages import _analysis, _show, _ui
from storage.store import Store

st.title("Overview")
f = _ui.frame()
threshold = _ui.settings().risk_score_flag_threshold
counts = _ui.read(Store.overview_counts, threshold=threshold, pair_id=f.pair_id, window_days=f.window_days)

c = st.columns(4)
c[0].metric("Trades", f"{counts['n_trades']:,}")
c[1].metric("Wallets", f"{counts['n_wallets']:,}")
c[2].metric("Pairs", f"{counts['n_pairs']:,}")
c[3].metric("Flagged wallets", f"{counts['n_flagged']:,}", help=f"latest score >= {threshold}")
if counts["n_trades"] == 0:
    _show.empty_store_hint()
    st.stop()
_analysis.run_analysis_button(key="overview_analyse")

left, right = st.columns(2)
with left:
    st.subheader("Risk distribution")
    if counts["n_scored"] == 0:
        st.warning("Risk scores not computed yet: press **Run analysis** above.")
    else:
        dist = _ui.read(Store.risk_distribution, pair_id=f.pair_id, window_days=f.window_days)
        st.bar_chart(dist.with_columns(pl.format("{}-{}", "bucket", pl.col("bucket") + 9).alias("score")),
                     x="score", y="n", height=260)
with right:
    st.subheader("Reported volume vs volume without ring trades")
    vol = _ui.read(Store.pair_volumes, window_days=f.window_days, limit=15)
    if f.pair_id:  # the filtered pair only (the store ranks the 15 most traded; a pair outside them shows none)
        vol = vol.filter(pl.col("pair_id") == f.pair_id)
    if vol.get_column("ring_volume").null_count() == vol.height:
        st.warning("Rings not computed yet: press **Run analysis** above.")
    shown = _show.in_units(vol, "reported_xlm", "without_rings_xlm")  # one unit across pairs, never base units
    st.dataframe(shown.select("pair_id", "n_trades", "reported_xlm", "without_rings_xlm", "ring_share"),
                 hide_index=True, key="pair_volumes",
                 column_config={"pair_id": st.column_config.TextColumn("pair", width="medium"),
                                "reported_xlm": _show.xlm_column("reported"),
                                "without_rings_xlm": _show.xlm_column("without rings"),
                                "ring_share": st.column_config.ProgressColumn("ring share", min_value=0, max_value=1)})
    st.caption("Volumes in XLM: each trade's XLM leg (the pair's own price), so pairs compare; empty for a pair "
               "without XLM.")

st.subheader("Top flagged (wallet, pair)")
t1, t2, t3, t4 = st.columns([3, 2, 1, 1])
prefix = t1.text_input("Wallet starts with", key="ov_prefix")
sort_by = t2.selectbox("Sort by", ["score", "confidence", "wallet", "pair_id", "timestamp"], key="ov_sort")
descending = t3.toggle("Descending", value=True, key="ov_desc")
page_size = t4.selectbox("Rows", [25, 50, 100], key="ov_rows")
st.session_state.setdefault("ov_page", 1)
page_no = int(st.session_state.ov_page)
rows, total = _ui.read(Store.top_flagged, threshold=threshold, pair_id=f.pair_id, window_days=f.window_days,
                       wallet_prefix=prefix or None, sort_by=sort_by, descending=descending,
                       offset=(page_no - 1) * page_size, limit=page_size)
n_pages = max(1, -(-total // page_size))
if page_no > n_pages:
    st.session_state.ov_page = n_pages
st.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, step=1, key="ov_page")
st.caption(f"{total:,} flagged rows")
if total:
    event = st.dataframe(rows, hide_index=True, key="top_flagged", on_select="rerun", selection_mode="single-row")
    if event.selection.rows:
        st.switch_page(_show.PAGES["wallet"], query_params={"wallet": rows.row(event.selection.rows[0], named=True)["wallet"]})

st.subheader("Benford first digit — " + (_show.esc(f.pair_id) if f.pair_id else "all pairs"))
pair_for_benford = f.pair_id or st.selectbox("Pair", [_ui.ALL_PAIRS] + _ui.read(Store.pair_list), key="ov_benford_pair")
digits = benford_expected(_ui.read(Store.first_digit_counts, pair_id=None if pair_for_benford == _ui.ALL_PAIRS else
                                pair_for_benford, window_days=f.window_days))
n = int(digits.get_column("n").sum())
fig = go.Figure([go.Bar(x=digits["digit"].to_list(), y=digits["observed"].to_list(), name=f"observed (n={n:,})"),
                 go.Scatter(x=digits["digit"].to_list(), y=digits["expected"].to_list(), name="Benford expected",
                            mode="lines+markers")])
fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="first digit", yaxis_title="share")
st.plotly_chart(fig, key="benford_pair")
st.caption(f"n = {n:,} trades (base-asset amounts in stroops)")

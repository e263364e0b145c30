"""Rings: detected rings, ordered by evidence, an interactive ring graph (vis-network, self-contained) and the whole-market view (pydeck)."""

from __future__ import annotations

import streamlit as st

from engine.drawing import market_deck
from engine.ring_order import SORTS, order_rings, plural
from pages import _graphs, _show, _ui
from storage.store import Store

st.title("Rings")
f = _ui.frame()
rings = _ui.read(Store.rings, pair_id=f.pair_id, window_days=f.window_days)
if _ui.read(Store.counts)["trades"] == 0:
    _show.empty_store_hint()
    st.stop()
if rings is None:
    _show.not_computed("Rings")
    st.stop()
within = " with ring trades " + " ".join(x for x in (f.pair_id and f"on {_show.esc(f.pair_id)}",
                                                      f.window_days and f"in the last {f.window}") if x)
st.caption(plural(rings.height, "ring") + " detected" + (within if f.pair_id or f.window_days else ""))
if rings.height == 0:
    st.info("No ring passed the evidence rules on this data" + (" within these filters." if f.pair_id or
                                                               f.window_days else "."))
    st.stop()

order = st.selectbox("Sort rings by", list(SORTS), key="ring_sort",
                     help="evidence: the mean of the ring's percentile ranks in internal volume (XLM), closed-loop "
                          "share and its members' mean score")  # fmt: skip
rings = order_rings(rings, order)
st.dataframe(_show.in_units(rings.drop("volume"), "volume_xlm"), hide_index=True, key="ring_table",
             column_order=("ring_id", "evidence", "volume_xlm", "closed_loop_share", "mean_score", "max_score", "size",
                           "n_trades", "n_pairs", "internal_density", "reciprocity", "funding_share"),
             column_config={"volume_xlm": _show.xlm_column("internal volume"),
                            "evidence": st.column_config.ProgressColumn("evidence", min_value=0, max_value=100,
                                                                        format="%.0f"),
                            "mean_score": st.column_config.NumberColumn("members' mean score", format="%.1f"),
                            "closed_loop_share": st.column_config.NumberColumn("closed-loop share", format="%.2f"),
                            "max_score": st.column_config.NumberColumn("highest member score")})  # fmt: skip
ids = rings.get_column("ring_id").to_list()
wanted = st.query_params.get("ring")
if "ring_pick" not in st.session_state or (wanted in ids and wanted != st.session_state.ring_pick):
    st.session_state.ring_pick = wanted if wanted in ids else ids[0]
ring_id = st.selectbox("Ring", ids, key="ring_pick")
st.query_params["ring"] = ring_id

tab_graph, tab_market = st.tabs(["Ring graph", "Whole market"])


@st.fragment
def ring_view(ring_id: str) -> None:
    with _show.guard():
        members = _ui.read(Store.ring_members, ring_id=ring_id)
        c1, c2 = st.columns([3, 1])
        expand = c1.multiselect("Expand neighbours of", members.get_column("account_id").to_list(),
                                key=f"expand_{ring_id}", format_func=_show.short)
        max_nodes = c2.slider("Max nodes", 20, 400, 150, step=10, key="ring_max_nodes")
        nodes, edges, page = _graphs.ring_graph(ring_id, expand=tuple(expand), window_days=f.window_days,
                                            max_nodes=max_nodes)
        n_trade, n_funding = (edges.filter(edges["kind"] == k).height for k in ("trade", "funding"))
        st.caption(f"{plural(nodes.height, 'wallet')}, {plural(n_trade, 'trade edge')}, "
                   f"{plural(n_funding, 'funding edge')}. Click a wallet to see its details; drag to pan, scroll to "
                   "zoom.")  # fmt: skip
        st.iframe(page, height=575)  # our own page, self-contained: ledger strings in it are JSON shown as text


with tab_graph:
    ring_view(ring_id)
    # outside the fragment: switching page is a whole-app rerun
    members = _ui.read(Store.ring_members, ring_id=ring_id)
    st.markdown("**Members**")
    event = st.dataframe(_show.in_units(members, "volume_xlm"), hide_index=True, key=f"members_{ring_id}",
                         on_select="rerun", selection_mode="single-row",
                         column_config={"volume_xlm": _show.xlm_column("volume with members")})
    pick = st.selectbox("Open wallet", members.get_column("account_id").to_list(), key="ring_open_pick")
    if st.button("Open wallet page", key="ring_open"):
        st.switch_page(_show.PAGES["wallet"], query_params={"wallet": pick})
    if event.selection.rows:
        st.switch_page(_show.PAGES["wallet"],
                       query_params={"wallet": members.row(event.selection.rows[0], named=True)["account_id"]})

with tab_market:
    if not st.toggle("Show the whole-market view", key="market_on", help="lays out up to 50,000 edges server-side"):
        st.stop()
    max_edges = st.select_slider("Edges shown", [1_000, 5_000, 20_000, 50_000], value=5_000, key="market_edges")
    nodes, edges, pos = _graphs.market(window_days=f.window_days, max_edges=max_edges)
    st.caption(f"{nodes.height:,} wallets, {edges.height:,} co-trade edges (flagged and ring wallets first). "
               "Scroll to zoom; click a ring wallet to open its ring.")
    state = st.pydeck_chart(market_deck(nodes, edges, pos), on_select="rerun", selection_mode="single-object",
                            key="market_deck", height=600)
    picked = (state.selection.objects or {}).get("wallets", []) if state is not None else []
    if picked and picked[0].get("ring") not in (None, "–") and picked[0]["ring"] != ring_id:
        st.query_params["ring"] = picked[0]["ring"]
        st.rerun()

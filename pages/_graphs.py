"""The ring and market graphs the pages draw, laid out server-side and cached per data version."""

from __future__ import annotations

import polars as pl
import streamlit as st

from engine.drawing import graph_layout
from engine.ring_graph import ring_graph_html
from pages import _ui


@st.cache_data(ttl=600, show_spinner="Laying out the graph…", max_entries=64)
def _ring_graph(db: str, data_version: str, ring_id: str, expand: tuple, window_days, max_nodes: int, seed: int):
    nodes, edges = _ui.open_store(db).neighbourhood(ring_id=ring_id, expand=expand, window_days=window_days,
                                                    max_nodes=max_nodes)  # fmt: skip
    weights = edges.group_by("source", "target").agg(pl.col("n").sum())
    pos = graph_layout(nodes.get_column("account_id").to_list(), weights, seed=seed, weight="n")
    return nodes, edges, ring_graph_html(nodes, edges, pos)


def ring_graph(ring_id: str, *, expand: tuple[str, ...], window_days: int | None, max_nodes: int):
    """(nodes, edges, pyvis html) of a ring neighbourhood, laid out server-side (cached)."""
    return _ring_graph(_ui.db_key(), _ui.version(), ring_id, tuple(expand), window_days, max_nodes, _ui.settings().seed)


@st.cache_data(ttl=900, show_spinner="Laying out the market…", max_entries=8)
def _market(db: str, data_version: str, threshold: int, window_days, max_edges: int, seed: int):
    edges, nodes = _ui.open_store(db).market_graph(threshold=threshold, window_days=window_days, max_edges=max_edges)
    pos = graph_layout(nodes.get_column("account_id").to_list(), edges, seed=seed, source="account_a",
                       target="account_b", weight="n_trades", iterations=150)  # fmt: skip
    return nodes, edges, pos


def market(*, window_days: int | None, max_edges: int):
    """(nodes, edges, positions) of the whole-market view (cached; deck built per run)."""
    s = _ui.settings()
    return _market(_ui.db_key(), _ui.version(), s.risk_score_flag_threshold, window_days, max_edges, s.seed)

"""Snapshot edges -> PyTorch Geometric `Data` / `TemporalData` (pure conversions).

torch_geometric takes seconds to import, so it is imported inside the functions
that build its objects; the numpy helpers need only numpy.

Input frames carry `src_id`, `dst_id` (the stable node index of engine.graph.temporal),
`timestamp`, `amount` (stroops) and `kind` ("trade" | "funding").
"""

from __future__ import annotations

import numpy as np
import polars as pl

# Columns of `structural_features`, in order.
STRUCTURAL_FEATURES = (
    "log_out_edges", "log_in_edges", "log_out_volume", "log_in_volume", "log_out_partners", "log_in_partners",
    "trade_share", "self_loop_share",
)  # fmt: skip


def edge_arrays(edges: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(src_id, dst_id) as int64 arrays."""
    return edges.get_column("src_id").to_numpy().astype(np.int64), edges.get_column("dst_id").to_numpy().astype(np.int64)


def message_edge_index(edges: pl.DataFrame, *, undirected: bool = True) -> np.ndarray:
    """Distinct (src, dst) pairs without self-loops, both orientations when `undirected`: int64 (2, E), sorted."""
    src, dst = edge_arrays(edges)
    keep = src != dst
    pairs = np.stack([src[keep], dst[keep]])
    if undirected:
        pairs = np.concatenate([pairs, pairs[::-1]], axis=1)
    return np.unique(pairs, axis=1) if pairs.shape[1] else pairs.reshape(2, 0)


def structural_features(edges: pl.DataFrame, *, num_nodes: int) -> np.ndarray:
    """Node features from the edges alone (columns STRUCTURAL_FEATURES), float32 (num_nodes, 8).

    Built from the message-passing graph only, so a split that hides future edges
    from messages also hides them from the features."""
    src, dst = edge_arrays(edges)
    units = edges.get_column("amount").fill_null(0).to_numpy().astype(np.float64) / 1e7
    trade = (edges.get_column("kind") == "trade").to_numpy().astype(np.float64)
    count = lambda idx, w=None: np.bincount(idx, weights=w, minlength=num_nodes)[:num_nodes]  # noqa: E731
    pairs = np.unique(np.stack([src, dst]), axis=1) if src.size else np.zeros((2, 0), np.int64)
    out_e, in_e = count(src), count(dst)
    total = np.maximum(out_e + in_e, 1)
    cols = [
        np.log1p(out_e), np.log1p(in_e), np.log1p(count(src, units)), np.log1p(count(dst, units)),
        np.log1p(count(pairs[0])), np.log1p(count(pairs[1])),
        (count(src, trade) + count(dst, trade)) / total, 2 * count(src[src == dst]) / total,
    ]  # fmt: skip
    return np.stack(cols, axis=1).astype(np.float32)


def to_data(edges: pl.DataFrame, *, num_nodes: int, x: np.ndarray | None = None):
    """A `torch_geometric.data.Data` of one snapshot (every edge kept, directed, multi-edges included).

    Shapes: x (num_nodes, F) float (default: structural_features), edge_index (2, E) long,
    edge_attr (E, 2) float [log1p(amount in units), is_trade], edge_time (E,) long unix seconds."""
    import torch
    from torch_geometric.data import Data

    src, dst = edge_arrays(edges)
    x = structural_features(edges, num_nodes=num_nodes) if x is None else x
    amount = np.log1p(edges.get_column("amount").fill_null(0).to_numpy().astype(np.float64) / 1e7)
    is_trade = (edges.get_column("kind") == "trade").to_numpy().astype(np.float64)
    return Data(
        x=torch.as_tensor(np.asarray(x, dtype=np.float32)),
        edge_index=torch.as_tensor(np.stack([src, dst])),
        edge_attr=torch.as_tensor(np.stack([amount, is_trade], axis=1).astype(np.float32)),
        edge_time=torch.as_tensor(_unix_seconds(edges)),
        num_nodes=num_nodes,
    )


def to_temporal_data(edges: pl.DataFrame):
    """A `torch_geometric.data.TemporalData` event stream ordered by time (stable for ties).

    Shapes: src, dst (E,) long, t (E,) long unix seconds, msg (E, 2) float [log1p(amount units), is_trade]."""
    import torch
    from torch_geometric.data import TemporalData

    ordered = edges.with_row_index("_row").sort("timestamp", "_row")
    src, dst = edge_arrays(ordered)
    amount = np.log1p(ordered.get_column("amount").fill_null(0).to_numpy().astype(np.float64) / 1e7)
    is_trade = (ordered.get_column("kind") == "trade").to_numpy().astype(np.float64)
    return TemporalData(
        src=torch.as_tensor(src), dst=torch.as_tensor(dst), t=torch.as_tensor(_unix_seconds(ordered)),
        msg=torch.as_tensor(np.stack([amount, is_trade], axis=1).astype(np.float32)),
    )  # fmt: skip


def _unix_seconds(edges: pl.DataFrame) -> np.ndarray:
    return edges.get_column("timestamp").dt.epoch("s").to_numpy().astype(np.int64)

"""Cross-pair and graph features that need more than SQL: the spread of a wallet's Benford
MAD across its pairs, and its place in the co-trade graph (one sparse power iteration,
PageRank, over all wallets at once). Synchrony, counterparty overlap and volume
correlation across pairs are SQL (storage.shape_features).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from engine.features.sides import FeatureConfig

KEY = ["wallet", "pair_id"]


def mad_spread(benford_features: pl.DataFrame, *, column: str) -> pl.DataFrame:
    """cross_pair_mad_spread (wallet level): max - min over the wallet's pairs of
    the Benford excess MAD `column`; null unless two pairs have enough data."""
    v = pl.col(column)
    return benford_features.group_by("wallet").agg(
        cross_pair_mad_spread=pl.when(v.count() >= 2).then(v.max() - v.min())
    )


def co_trade_edges(sides: pl.DataFrame) -> pl.DataFrame:
    """Edges of the co-trade graph from the wallets' side: trades per (wallet,
    counterparty account), pools excluded. Complete for a wallet when its sides are.

    Shapes: wallet, counterparty, w (UInt32).
    """
    return sides.filter(~pl.col("cp_is_pool")).group_by("wallet", "counterparty").agg(w=pl.len())


def pagerank(
    wallets: pl.Series, edges: pl.DataFrame, *, cfg: FeatureConfig, tol: float = 1e-10, max_iter: int = 200
) -> pl.DataFrame:
    """pagerank (wallet level) on the co-trade graph: wallets are nodes (`wallets`,
    every wallet with a trade), `co_trade_edges` weigh the trades between two of them,
    scaled so that the mean is 1. Sparse power iteration; dangling mass is spread
    uniformly. Nodes are numbered in sorted order, so any split of the edges gives
    the same sums.

    Shapes: wallet, pagerank.
    """
    nodes = wallets.unique().sort().to_frame("wallet").with_row_index("i")
    keyed = nodes.with_columns(pl.col("wallet").cast(edges.schema["wallet"]))  # the edges' id type
    edges = edges.join(keyed, on="wallet").join(keyed.rename({"wallet": "counterparty", "i": "j"}), on="counterparty")
    n = nodes.height
    if n == 0:
        return nodes.select("wallet", pagerank=pl.lit(None, dtype=pl.Float64))
    edges = edges.sort("i", "j")  # one summation order, however the edges were split
    w = edges["w"].to_numpy().astype(np.float64)
    a = sp.csr_matrix((w, (edges["i"].to_numpy(), edges["j"].to_numpy())), shape=(n, n))
    out = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, out, out=np.zeros_like(out), where=out > 0)
    p = sp.diags(inv) @ a  # row-stochastic where the node has edges
    r = np.full(n, 1.0 / n)
    d = cfg.pagerank_damping
    for _ in range(max_iter):
        nxt = d * (p.T @ r) + (d * r[out == 0].sum() + 1.0 - d) / n
        if np.abs(nxt - r).sum() < tol:
            r = nxt
            break
        r = nxt
    return nodes.select("wallet", pagerank=pl.Series(r * n))

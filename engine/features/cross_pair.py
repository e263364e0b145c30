"""Cross-pair and graph features: how a wallet's trading in one pair relates to
its trading elsewhere, and its place in the co-trade graph. Vectorised polars,
plus one sparse power iteration (PageRank) over all wallets at once.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from engine.features.sides import FeatureConfig, ranked

KEY = ["wallet", "pair_id"]


def synchrony(sides: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """cross_pair_synchrony: share of the wallet's trades in the pair within
    `sync_seconds` of one of its trades in another pair; null for single-pair wallets.

    The nearest other-pair trade before each trade is a forward fill of "time of
    the previous row when the pair changed" (rows sorted per wallet by time);
    the nearest after, a backward fill of the mirror.
    """
    s = ranked(sides.select(*KEY, "ts", "op_id"), ["wallet"], ["ts", "op_id"])
    changed_before = pl.col("_same") & (pl.col("pair_id").shift(1) != pl.col("pair_id"))
    changed_after = pl.col("_same").shift(-1) & (pl.col("pair_id").shift(-1) != pl.col("pair_id"))
    # A group's first row resets the fill with a null that is not carried on.
    s = s.with_columns(
        prev_other=pl.when(changed_before).then(pl.col("ts").shift(1)).when(~pl.col("_same")).then(pl.lit(-1)),
        next_other=pl.when(changed_after).then(pl.col("ts").shift(-1))
        .when(~pl.col("_same").shift(-1).fill_null(False)).then(pl.lit(-1)),
    ).with_columns(
        prev_other=pl.col("prev_other").forward_fill(),
        next_other=pl.col("next_other").backward_fill(),
    ).with_columns(
        prev_other=pl.when(pl.col("prev_other") >= 0).then("prev_other"),
        next_other=pl.when(pl.col("next_other") >= 0).then("next_other"),
    )
    n_pairs = sides.group_by("wallet").agg(n_pairs=pl.col("pair_id").n_unique())
    s = s.join(n_pairs, on="wallet")
    near = pl.min_horizontal(pl.col("ts") - pl.col("prev_other"), pl.col("next_other") - pl.col("ts"))
    # Plain aggregations, the conditions after: conditional expressions inside an
    # aggregation take polars' slow per-group path.
    agg = s.with_columns(_near=(near <= cfg.sync_seconds).fill_null(False)).group_by(KEY).agg(
        n_pairs=pl.first("n_pairs"), share=pl.col("_near").mean()
    )
    return agg.select(*KEY, cross_pair_synchrony=pl.when(pl.col("n_pairs") > 1).then("share"))


def counterparty_overlap(sides: pl.DataFrame) -> pl.DataFrame:
    """cross_pair_cp_overlap: |C_p ∩ C_other| / |C_all|, the Jaccard of the
    pair's counterparties and those of the wallet's other pairs (their union is
    all its counterparties); null for single-pair wallets."""
    wc = sides.select(*KEY, "counterparty").unique()
    per_cp = wc.group_by("wallet", "counterparty").agg(n_pairs_cp=pl.len())
    per_w = wc.group_by("wallet").agg(n_cp=pl.col("counterparty").n_unique(), n_pairs=pl.col("pair_id").n_unique())
    wc = wc.join(per_cp, on=["wallet", "counterparty"]).join(per_w, on="wallet")
    agg = wc.group_by(KEY).agg(
        shared=(pl.col("n_pairs_cp") > 1).sum(), n_pairs=pl.first("n_pairs"), n_cp=pl.first("n_cp")
    )
    return agg.select(*KEY, cross_pair_cp_overlap=pl.when(pl.col("n_pairs") > 1).then(pl.col("shared") / pl.col("n_cp")))


def volume_correlation(sides: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """cross_pair_volume_corr: Pearson correlation, over the hours of the lookback,
    of the wallet's hourly trade count in the pair and in its other pairs.

    Sparse: only non-empty (wallet, pair, hour) cells are stored; the sums over
    the H hours follow from them (empty hours add zeros). Null for single-pair
    wallets or a constant series.
    """
    n_hours = float(cfg.lookback.total_seconds() // 3600)
    x = sides.group_by(*KEY, h=pl.col("ts") // 3600).agg(x=pl.len().cast(pl.Float64))
    tot = x.group_by("wallet", "h").agg(t=pl.col("x").sum())
    per_w = tot.with_columns(t2=pl.col("t") ** 2).group_by("wallet").agg(sum_t=pl.col("t").sum(), sum_t2=pl.col("t2").sum())
    per_wp = (
        x.join(tot, on=["wallet", "h"]).with_columns(x2=pl.col("x") ** 2, tx=pl.col("t") * pl.col("x"))
        .group_by(KEY).agg(sx=pl.col("x").sum(), sx2=pl.col("x2").sum(), stx=pl.col("tx").sum())
    )  # fmt: skip
    n_pairs = sides.group_by("wallet").agg(n_pairs=pl.col("pair_id").n_unique())
    f = per_wp.join(per_w, on="wallet").join(n_pairs, on="wallet").with_columns(
        sy=pl.col("sum_t") - pl.col("sx"),
        sy2=pl.col("sum_t2") - 2 * pl.col("stx") + pl.col("sx2"),
        sxy=pl.col("stx") - pl.col("sx2"),
    )
    cov = n_hours * pl.col("sxy") - pl.col("sx") * pl.col("sy")
    vx = n_hours * pl.col("sx2") - pl.col("sx") ** 2
    vy = n_hours * pl.col("sy2") - pl.col("sy") ** 2
    ok = (pl.col("n_pairs") > 1) & (vx > 0) & (vy > 0)
    return f.select(*KEY, cross_pair_volume_corr=pl.when(ok).then(cov / (vx * vy).sqrt()))


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

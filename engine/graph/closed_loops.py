"""Closed-loop (self-financed round trip) detection after Victor & Weintraud (WWW 2021).

"Detecting and Quantifying Wash Trading on Decentralized Cryptocurrency Exchanges":

1. Per pair, a directed trader graph (seller -> buyer, multiplicity = trade count).
   All pairs are solved at once: a node is a (pair_id, account), so components never
   span pairs.
2. Strongly connected components, peeled by multiplicity: for each level k (the
   distinct edge multiplicities, ascending), edges with fewer than k trades are
   dropped and the SCCs recomputed. Each SCC of two or more wallets at each level is
   a candidate set; its trades are those on its kept edges.
3. A candidate's trades are cut into 1h buckets, then 1d, then 1w. A bucket is a
   closed loop when every member's net position (from who sold what) stays within
   `tolerance` (1%) of the bucket's mean trade volume in that asset. With
   `balance="either"` (default) one asset suffices: a washer keeps one side flat -
   the token, or the money when lots are sized in money - and the other side
   carries the price drift between the legs (the washer's cost). "base" and "both"
   are the stricter readings.
   Trades found at a level/window are taken out before the next ones, so each
   trade belongs to at most one loop (the smallest window, then the lowest level).

More than `max_levels` distinct multiplicities are thinned to a geometric ladder
(1, 2, 3, 4, 6, 8, 11, ...) so the cost stays bounded on heavy pairs. Trades with a
pool side or an account trading with itself are not considered (see cotrade).
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from engine.graph.cotrade import trader_trades

WINDOWS: tuple[str, ...] = ("1h", "1d", "1w")
DEFAULT_TOLERANCE = 0.01
DEFAULT_MAX_LEVELS = 16

CLOSED_LOOPS_SCHEMA = {
    "pair_id": pl.String,
    "loop_id": pl.String,
    "window": pl.String,
    "window_start": pl.Datetime("us", "UTC"),
    "members": pl.List(pl.String),
    "n_members": pl.UInt32,
    "n_trades": pl.UInt32,
    "volume": pl.Int64,
    "trade_ids": pl.List(pl.String),
}


def closed_loops(
    trades: pl.DataFrame,
    *,
    windows: tuple[str, ...] = WINDOWS,
    tolerance: float = DEFAULT_TOLERANCE,
    max_levels: int = DEFAULT_MAX_LEVELS,
    balance: str = "either",
) -> pl.DataFrame:
    """Closed-loop trade sets (candidate wash trades) with their volume.

    Input: canonical trades (engine.schemas.TRADES_SCHEMA).
    Shapes: -> [pair_id, loop_id ("loop_" + 12 hex), window ("1h"|"1d"|"1w"),
    window_start, members: list[str] (sorted), n_members, n_trades,
    volume: i64 (stroops of the pair's base asset), trade_ids: list[str] (sorted)],
    sorted by pair_id, window_start, loop_id.
    """
    if balance not in ("either", "base", "both"):
        raise ValueError(f"balance must be 'either', 'base' or 'both', not {balance!r}")
    pool, n_nodes, edges = _indexed(trader_trades(trades))
    found: list[pl.DataFrame] = []
    taken = pl.DataFrame(schema={"id": pl.String})
    n_before = -1
    for level in _levels(edges.get_column("mult").to_numpy(), max_levels):
        # SCCs only shrink as the level rises: each level searches the previous level's candidates.
        pool = _candidates(pool, edges, n_nodes, level)
        if pool.height == 0:
            break
        if pool.height == n_before:
            continue  # nothing peeled off: same components, same verdicts
        n_before = pool.height
        cand = pool.join(taken, on="id", how="anti")
        for window in windows:
            if cand.height == 0:
                break
            hit = _qualifying(cand, window, tolerance, balance).with_columns(pl.lit(window).alias("window"))
            found.append(hit)
            taken = pl.concat([taken, hit.select("id")])
            cand = cand.join(hit.select("id"), on="id", how="anti")
    return _loops_frame(found)


def loop_trades(loops: pl.DataFrame) -> pl.DataFrame:
    """Trade id -> loop mapping. Shapes: -> [id: str, loop_id: str, pair_id: str]"""
    return loops.select("trade_ids", "loop_id", "pair_id").explode("trade_ids").rename({"trade_ids": "id"})


def _indexed(tt: pl.DataFrame) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """Trades with integer node ids per (pair, account), and the directed edge list."""
    nodes = (
        pl.concat([tt.select("pair_id", pl.col("seller").alias("acc")), tt.select("pair_id", pl.col("buyer").alias("acc"))])
        .unique()
        .sort("pair_id", "acc")
        .with_row_index("node")
        .with_columns(pl.col("node").cast(pl.Int64))
    )
    tt = (
        tt.join(nodes.rename({"acc": "seller", "node": "src"}), on=["pair_id", "seller"])
        .join(nodes.rename({"acc": "buyer", "node": "dst"}), on=["pair_id", "buyer"])
    )
    edges = tt.group_by("src", "dst").agg(pl.len().alias("mult")).sort("src", "dst")
    return tt.join(edges, on=["src", "dst"]), nodes.height, edges


def _levels(mult: np.ndarray, max_levels: int) -> list[int]:
    """Distinct multiplicities ascending, thinned to a geometric ladder when too many."""
    distinct = np.unique(mult)
    if distinct.size <= max_levels:
        return [int(v) for v in distinct]
    ladder = np.unique(np.floor(np.geomspace(1, distinct.max(), max_levels)).astype(np.int64))
    return [int(v) for v in ladder]


def _candidates(tt: pl.DataFrame, edges: pl.DataFrame, n_nodes: int, level: int) -> pl.DataFrame:
    """Trades on kept edges (multiplicity >= level) inside an SCC at that level; sets `comp`, `level`."""
    kept = edges.filter(pl.col("mult") >= level)
    src = kept.get_column("src").to_numpy()
    dst = kept.get_column("dst").to_numpy()
    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n_nodes, n_nodes)).tocsr()
    _, labels = connected_components(graph, directed=True, connection="strong")
    comp_src = labels[tt.get_column("src").to_numpy()].astype(np.int64)
    comp_dst = labels[tt.get_column("dst").to_numpy()].astype(np.int64)
    inside = (tt.get_column("mult").to_numpy() >= level) & (comp_src == comp_dst)
    return tt.with_columns(pl.Series("comp", comp_src), pl.lit(level).alias("level")).filter(pl.Series(inside))


def _qualifying(cand: pl.DataFrame, window: str, tolerance: float, balance: str) -> pl.DataFrame:
    """Candidate trades in (comp, bucket) groups where every member's net position ~ 0."""
    c = cand.with_columns(pl.col("closed_at").dt.truncate(window).alias("window_start"))
    sign = pl.when(pl.col("seller_sold_base")).then(-1).otherwise(1)
    key = ["comp", "window_start"]
    legs = pl.concat([
        c.select(*key, pl.col("seller").alias("acc"), (sign * pl.col("base_amount")).alias("d_base"),
                 (-sign * pl.col("counter_amount")).alias("d_counter")),
        c.select(*key, pl.col("buyer").alias("acc"), (-sign * pl.col("base_amount")).alias("d_base"),
                 (sign * pl.col("counter_amount")).alias("d_counter")),
    ])
    worst = (
        legs.group_by(*key, "acc")
        .agg(pl.col("d_base").sum().abs(), pl.col("d_counter").sum().abs())
        .group_by(key)
        .agg(pl.col("d_base").max().alias("net_base"), pl.col("d_counter").max().alias("net_counter"))
    )
    stats = c.group_by(key).agg(
        pl.len().alias("n"), pl.col("base_amount").mean().alias("mb"), pl.col("counter_amount").mean().alias("mc")
    )
    flat_base = pl.col("net_base") <= tolerance * pl.col("mb")
    flat_counter = pl.col("net_counter") <= tolerance * pl.col("mc")
    flat = {"either": flat_base | flat_counter, "base": flat_base, "both": flat_base & flat_counter}[balance]
    ok = worst.join(stats, on=key).filter((pl.col("n") >= 2) & flat)
    return c.join(ok.select(key), on=key, how="semi")


def _loops_frame(found: list[pl.DataFrame]) -> pl.DataFrame:
    """Group qualified trades into loops with stable ids."""
    if not found or sum(f.height for f in found) == 0:
        return pl.DataFrame(schema=CLOSED_LOOPS_SCHEMA)
    hits = pl.concat(found)
    loops = hits.group_by("pair_id", "level", "comp", "window", "window_start").agg(
        pl.col("seller").append(pl.col("buyer")).unique().sort().alias("members"),
        pl.len().cast(pl.UInt32).alias("n_trades"),
        pl.col("base_amount").sum().alias("volume"),
        pl.col("id").sort().alias("trade_ids"),
    )
    loops = loops.with_columns(
        pl.col("members").list.len().cast(pl.UInt32).alias("n_members"),
        pl.struct("pair_id", "window", "window_start", "trade_ids")
        .map_elements(_loop_id, return_dtype=pl.String)
        .alias("loop_id"),
    )
    return loops.select(list(CLOSED_LOOPS_SCHEMA)).cast(CLOSED_LOOPS_SCHEMA).sort("pair_id", "window_start", "loop_id")


def _loop_id(row: dict) -> str:
    """`loop_` + 12 hex of sha256 over pair, window, start and the sorted trade ids."""
    text = "|".join([row["pair_id"], row["window"], row["window_start"].isoformat(), ",".join(row["trade_ids"])])
    return "loop_" + hashlib.sha256(text.encode()).hexdigest()[:12]

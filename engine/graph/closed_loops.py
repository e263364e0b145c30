"""Closed-loop (self-financed round trip) detection after Victor & Weintraud (WWW 2021).

"Detecting and Quantifying Wash Trading on Decentralized Cryptocurrency Exchanges":

1. Per pair, a directed trader graph in the pair's base asset (giver -> receiver,
   multiplicity = trade count), whichever side a trade was stored from. Legs routed
   through a liquidity pool of the pair count as trades between the two accounts
   (engine.graph.cotrade.pool_routed_trades). A node is a (pair_id, account), so
   components never span pairs. Reciprocal pairs are never required: a directed cycle
   A -> B -> C -> A is one component.
2. Strongly connected components, peeled by multiplicity: for each level k (the
   distinct edge multiplicities, ascending), edges with fewer than k trades are
   dropped and the SCCs recomputed. Each SCC of two or more wallets at each level is
   a candidate set; its trades are those on its kept edges.
3. A candidate's trades are cut into 1h buckets, then 1d, then 1w, and peeled by
   balance: members whose net position is not flat leave with their trades, the SCCs
   are recomputed inside the bucket, until nothing moves (`_balanced`, `_flat`). Flat
   is within `tolerance` (1%) of the bucket's mean trade; with 2-3 round trips of legs
   a member may leave out its first and last leg (the rounds a bucket edge cuts) and
   gets `jitter` x sqrt(legs) more margin (per-leg amount noise). With
   `balance="either"` (default) one asset suffices: a washer keeps one side flat - the
   token, or the money when lots are sized in money - and the other side carries the
   price drift between the legs (the washer's cost). "base" and "both" are stricter.
   What survives, unless one member is in > 90% of its trades (a star: a market maker
   whose clients each round-trip with it) or a member does under 10% of its trades in
   the pair and bucket inside it (a passer-by: a market maker's regular client trading
   both ways with it is flat with the maker, a pair of two, but the maker serves
   thousands of others; a washer's trades are mostly its loop's), is a closed loop. Trades found at a
   level/window are taken out before the next ones, so each trade belongs to at most
   one loop (the smallest window, then the lowest level).

More than `max_levels` distinct multiplicities are thinned to a geometric ladder
(1, 2, 3, 4, 6, 8, 11, ...) so the cost stays bounded on heavy pairs. Trades of an
account with itself are not considered (see cotrade).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from engine.graph.cotrade import trader_trades

WINDOWS: tuple[str, ...] = ("1h", "1d", "1w")
DEFAULT_TOLERANCE = 0.01
DEFAULT_MAX_LEVELS = 6
DEFAULT_JITTER = 0.05  # per-leg amount noise allowed: the margin grows as jitter x sqrt(legs)
MAX_PEEL_ROUNDS = 12
MAX_HUB_SHARE = 0.9  # a loop of 3+ members where one is in more of its trades is a star
MEMBER_IDS = 2**63 - 1  # a group's members are numbered group x accounts + account (`_node`) within int64
MIN_MEMBER_SHARE = 0.1  # a loop member with fewer of its trades (pair, bucket) in the loop passes by

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
    via_pools: bool = True,
    jitter: float = DEFAULT_JITTER,
    levels: list[int] | None = None,
) -> pl.DataFrame:
    """Closed-loop trade sets (candidate wash trades) with their volume.

    Input: canonical trades (engine.schemas.TRADES_SCHEMA).
    Shapes: -> [pair_id, loop_id ("loop_" + 12 hex), window ("1h"|"1d"|"1w"),
    window_start, members: list[str] (sorted), n_members, n_trades,
    volume: i64 (stroops of the pair's base asset), trade_ids: list[str] (sorted; both stored
    trades of a leg routed through a pool)],
    sorted by pair_id, window_start, loop_id.
    `levels`: the multiplicity levels to search (`loop_levels`), when `trades` is one batch of
    pairs out of a market whose levels were planned over all its pairs; default: its own.
    """
    return trader_loops(trader_trades(trades, via_pools=via_pools), windows=windows, tolerance=tolerance,
                        max_levels=max_levels, balance=balance, jitter=jitter, levels=levels)  # fmt: skip


def trader_loops(tt: pl.DataFrame, *, windows: tuple[str, ...] = WINDOWS, tolerance: float = DEFAULT_TOLERANCE,
                 max_levels: int = DEFAULT_MAX_LEVELS, balance: str = "either", jitter: float = DEFAULT_JITTER,
                 levels: list[int] | None = None,
                 decode: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> pl.DataFrame:  # fmt: skip
    """`closed_loops` of trader trades already built (engine.graph.cotrade.trader_trades), for a
    caller that needs them too (the rings step's pair evidence).

    decode: for trades whose ids, out_ids and pair_id are integer codes that sort as their
    strings do (engine.graph.asset_loops), gives the found trades their strings back before
    the loops and their ids are built."""
    if balance not in ("either", "base", "both"):
        raise ValueError(f"balance must be 'either', 'base' or 'both', not {balance!r}")
    if "out_id" not in tt.columns:
        tt = tt.with_columns(pl.lit(None, dtype=pl.String).alias("out_id"))
    trades, n_nodes, edges = _indexed(tt)
    every = trades.select("src", "dst", "closed_at")  # every trade of the pairs: members' trades per bucket
    # the search reads numbers only; ids, pair and accounts join the loops' trades at the end (by `seq`)
    pool = trades.select("seq", "_tid", "src", "dst", "mult", "closed_at", "base_amount", "counter_amount",
                         "seller_sold_base")  # fmt: skip
    found: list[pl.DataFrame] = []
    taken = np.zeros(int(trades.get_column("_tid").max() or 0) + 1, dtype=bool)  # by `_tid`: in a loop already
    for level in loop_levels(edges, max_levels=max_levels) if levels is None else levels:
        # SCCs only shrink as the level rises: each level searches the previous level's candidates.
        pool = _candidates(pool, edges, n_nodes, level)
        if pool.height == 0:
            break
        cand = _untaken(pool, taken)
        for window in windows:
            if cand.height == 0:
                break
            hit = _qualifying(cand, every, window, tolerance, jitter, balance).with_columns(pl.lit(window).alias("window"))
            found.append(hit)
            taken[hit.get_column("_tid").to_numpy()] = True
            cand = _untaken(cand, taken)
    return _loops_frame(found, trades, decode)


def _untaken(pool: pl.DataFrame, taken: np.ndarray) -> pl.DataFrame:
    """The rows of `pool` whose trade (`_tid`) is in no loop yet (`taken`: a flag per trade)."""
    return pool.filter(pl.Series(~taken[pool.get_column("_tid").to_numpy()]))


def loop_edges(trades: pl.DataFrame, *, via_pools: bool = True) -> pl.DataFrame:
    """The directed trader graph `closed_loops` peels, for planning levels over pair batches.

    Shapes: -> [src: i64, dst: i64, mult: u32] (node ids local to `trades`)."""
    return trader_loop_edges(trader_trades(trades, via_pools=via_pools))


def trader_loop_edges(tt: pl.DataFrame) -> pl.DataFrame:
    """`loop_edges` of trader trades already built (engine.graph.cotrade.trader_trades)."""
    return _graph(tt)[2].select("src", "dst", "mult").sort("src", "dst")


def loop_levels(edges: pl.DataFrame, *, max_levels: int = DEFAULT_MAX_LEVELS) -> list[int]:
    """The multiplicity levels worth searching over the trader graphs `edges` (`loop_edges`;
    with a `part` column, one graph per part, e.g. per batch of pairs: node ids are local to it).

    The ladder comes from every edge's multiplicity; a level whose candidate trades (edges of
    that multiplicity or more inside a strongly connected component) are as many as at the
    level before is skipped (nothing peeled off: same components, same verdicts), and the
    search stops at the first level with none. Planned over the whole market, batches of pairs
    searched at these levels find exactly the loops of one search over all pairs.
    """
    if edges.height == 0:
        return []
    if "part" in edges.columns:  # node ids made disjoint across parts
        ends = pl.concat([edges.select("part", pl.col("src").alias("n")), edges.select("part", pl.col("dst").alias("n"))])
        ids = ends.unique().with_row_index("_id").with_columns(pl.col("_id").cast(pl.Int64))
        edges = edges.join(ids.rename({"n": "src", "_id": "_s"}), on=["part", "src"]).join(
            ids.rename({"n": "dst", "_id": "_d"}), on=["part", "dst"]).select(
            pl.col("_s").alias("src"), pl.col("_d").alias("dst"), "mult")
    src, dst = edges.get_column("src").to_numpy(), edges.get_column("dst").to_numpy()
    mult = edges.get_column("mult").to_numpy().astype(np.int64)
    n_nodes = int(max(src.max(), dst.max())) + 1
    run, n_before = [], -1
    for level in _levels(mult, max_levels):
        kept = mult >= level
        graph = coo_matrix((np.ones(int(kept.sum()), dtype=np.int8), (src[kept], dst[kept])),
                           shape=(n_nodes, n_nodes)).tocsr()
        _, labels = connected_components(graph, directed=True, connection="strong")
        n_pool = int(mult[kept & (labels[src] == labels[dst])].sum())
        if n_pool == 0:
            break
        if n_pool != n_before:
            run.append(level)
            n_before = n_pool
    return run


def loop_trades(loops: pl.DataFrame) -> pl.DataFrame:
    """Trade id -> loop mapping. Shapes: -> [id: str, loop_id: str, pair_id: str]"""
    return loops.select("trade_ids", "loop_id", "pair_id").explode("trade_ids").rename({"trade_ids": "id"})


def _indexed(tt: pl.DataFrame) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """Trades with integer node ids per (pair, account), and the directed edge list.

    `_tid` numbers the trade ids: a trade taken by a loop leaves every later search, and the
    rows of one trade (engine.graph.asset_loops reads each twice) share its id.
    Shapes: -> (trades + [src, dst, mult, seq, _tid: u32], number of nodes, `_graph` edges)."""
    tt, n_nodes, pairs = _graph(tt)
    # `seq`: the trades' order in time (ties by id), so each member's first and last leg in a
    # bucket is found without sorting again in every peeling round; the rows of one trade are
    # neighbours in that order (one time), so `_tid` counts the changes of id (no sort, no hash)
    tt = tt.join(pairs, on=["_pair", "seller", "buyer"]).sort("closed_at", "id").with_row_index("seq")
    tt = tt.with_columns((pl.col("id") != pl.col("id").shift()).fill_null(True).cum_sum().cast(pl.UInt32).alias("_tid"))
    return tt.drop("_pair"), n_nodes, pairs.select("src", "dst", "mult").sort("src", "dst")


def _graph(tt: pl.DataFrame) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """The directed trader graph of `tt`: a node per (pair, account), numbered in that order.

    Edges follow the pair's base asset (giver -> receiver): a stored trade names as seller
    whoever sold the asset it was recorded from, base or counter, and a directed cycle
    only shows as one when every leg is read the same way round. Built from the edges'
    counts, not from every trade.
    The pair is grouped and joined by `_pair`, its rank among the pairs (their ~120-character
    ids hashed once, not in every group-by and join: a third of the graph's time).
    Shapes: -> (trades read base-wise + [_pair], number of nodes, [_pair, seller, buyer, mult: u32, src: i64, dst: i64])
    """
    sold_base, pair = pl.col("seller_sold_base"), tt.get_column("pair_id")
    if not pair.dtype.is_integer():  # (integer pair codes already sort as their pairs do)
        names = pair.unique().sort()
        pair = pair.replace_strict(names, pl.int_range(len(names), dtype=pl.UInt32, eager=True), return_dtype=pl.UInt32)
    tt = tt.with_columns(
        pl.when(sold_base).then(pl.col("seller")).otherwise(pl.col("buyer")).alias("seller"),
        pl.when(sold_base).then(pl.col("buyer")).otherwise(pl.col("seller")).alias("buyer"),
        pl.lit(True).alias("seller_sold_base"), pair.alias("_pair"),
    )
    pairs = tt.group_by("_pair", "seller", "buyer").agg(pl.len().alias("mult"))
    nodes = (
        pl.concat([pairs.select("_pair", pl.col("seller").alias("acc")),
                   pairs.select("_pair", pl.col("buyer").alias("acc"))])
        .unique()
        .sort("_pair", "acc")
        .with_row_index("node")
        .with_columns(pl.col("node").cast(pl.Int64))
    )
    pairs = pairs.join(nodes.rename({"acc": "seller", "node": "src"}), on=["_pair", "seller"]).join(
        nodes.rename({"acc": "buyer", "node": "dst"}), on=["_pair", "buyer"])
    return tt, nodes.height, pairs


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


def _qualifying(cand: pl.DataFrame, every: pl.DataFrame, window: str, tolerance: float, jitter: float,
                balance: str) -> pl.DataFrame:  # fmt: skip
    """Candidate trades in (comp, bucket) groups, peeled until every member's net position ~ 0.

    Members that are not balanced (see `_balanced`) leave with their trades, the strongly
    connected components are recomputed within the bucket, and so on until nothing moves:
    a wash cycle hidden among camouflage and outsiders is what remains. `comp` of the
    result numbers the surviving components (one per loop); `window_start` is added.

    Groups are integers for the rounds (`_g`), and a member of a group is one integer too
    (`_node`), so a round groups and filters on one column. `_balanced` needs the trades in
    `seq` order, as `trader_loops` keeps them (sorted here should a caller not).
    """
    c = cand.with_columns(pl.col("closed_at").dt.truncate(window).alias("window_start"))
    if not c.get_column("seq").is_sorted():
        c = c.sort("seq")
    n_acc = int(c.select(pl.max_horizontal(pl.col("src").max(), pl.col("dst").max())).item() or 0) + 1
    c = c.with_columns(_bucket_groups(c, n_acc))
    for _ in range(MAX_PEEL_ROUNDS):
        n_before = c.height
        ok = _balanced(c, n_acc, tolerance, jitter, balance).implode()
        c = _strong_within(c.filter(_node("src", n_acc).is_in(ok) & _node("dst", n_acc).is_in(ok)), n_acc)
        if c.height == n_before or c.height == 0:
            break
    c = c.with_columns(pl.col("_g").alias("comp")).drop("_g")
    return _loop_shaped(c.filter(pl.len().over("comp") >= 2), every, window)


def _bucket_groups(c: pl.DataFrame, n_acc: int) -> pl.Series:
    """Integer ids of the (comp, window_start) groups of `c`'s trades. Which trades share a group
    is all that counts: an id need not be dense, only small enough that a member's id
    (`_node`: group x n_acc + node, node < n_acc) stays within int64.

    A group's id is comp x buckets + its bucket's number. `c` is in time order, so its buckets
    come in runs and a run's number is the bucket's (`rle_id`: no hash, no join). Where the ids
    could overflow (millions of wallets over years), they are the groups' dense ranks instead.
    Shapes: -> Series _g: i64, one per row of `c`."""
    start = c.get_column("window_start")
    bucket = (start.rle_id() if start.is_sorted() else start.rank("dense") - 1).cast(pl.Int64)
    comp = c.get_column("comp").cast(pl.Int64)
    n_buckets, n_comp = int(bucket.max() or 0) + 1, int(comp.max() or 0) + 1
    key = (comp * n_buckets + bucket).alias("_g")
    return key if n_comp * n_buckets * n_acc <= MEMBER_IDS else (key.rank("dense") - 1).cast(pl.Int64)


def _node(side: str, n_acc: int) -> pl.Expr:
    """The member on `side` (src/dst: node ids below `n_acc`) of a trade's group `_g`, as one integer."""
    return pl.col("_g") * n_acc + pl.col(side)


def _loop_shaped(c: pl.DataFrame, every: pl.DataFrame, window: str) -> pl.DataFrame:
    """Drop the components whose shape is no loop, though every member is flat:
    - a star: 3+ members, one in more than MAX_HUB_SHARE of the trades (a market maker whose
      counterparties each round-trip with it balances by construction, but no asset goes
      round among them);
    - one with a passer-by: a member doing under MIN_MEMBER_SHARE of its trades in the pair
      and bucket inside it (`every`: all trades of the pairs, `src`/`dst` nodes); a maker and
      one regular client trading both ways are flat together, but the maker's trades are
      nearly all with others."""
    if c.height == 0:
        return c
    legs = pl.concat([c.select("comp", "window_start", pl.col("src").alias("node")),
                      c.select("comp", "window_start", pl.col("dst").alias("node"))])
    per = legs.group_by("comp", "window_start", "node").agg(pl.len().alias("_in"))
    stars = per.group_by("comp").agg(pl.len().alias("_members"), pl.col("_in").max().alias("_hub")).join(
        c.group_by("comp").agg(pl.len().alias("_n")), on="comp").filter(
        (pl.col("_members") >= 3) & (pl.col("_hub") > MAX_HUB_SHARE * pl.col("_n")))
    members = per.get_column("node").unique().implode()
    start = pl.col("closed_at").dt.truncate(window).alias("window_start")
    # only the members' own legs: the counterparties on a busy member's other trades are never looked up
    activity = pl.concat([every.lazy().filter(pl.col(side).is_in(members)).select(pl.col(side).alias("node"), start)
                          for side in ("src", "dst")]
                         ).group_by("node", "window_start").agg(pl.len().alias("_all")).collect()  # fmt: skip
    passing = per.join(activity, on=["node", "window_start"], how="left").filter(
        pl.col("_in") < MIN_MEMBER_SHARE * pl.col("_all"))
    return c.join(pl.concat([stars.select("comp"), passing.select("comp")]), on="comp", how="anti")


def _balanced(c: pl.DataFrame, n_acc: int, tolerance: float, jitter: float, balance: str) -> pl.Series:
    """The members (`_node`) whose net position is flat in their group's bucket.

    Flat in an asset (Victor & Weintraud): |net| <= `tolerance` x the bucket's mean trade.
    A bucket edge cuts every multi-round loop mid-round: the member's first leg in the
    bucket may close a round begun before it, and its last leg open one that closes
    after it. So the net may leave out the first leg, the last leg or both, as long as
    two legs remain: a hub whose counterparties each round-trip stays unbalanced, as its
    small differences add up over every leg in between.

    `c` is in `seq` (time) order and its legs are laid out in that order, two per trade
    (`_legs`), so a member's first and last leg are the first and last rows of its group:
    plain `first`/`last`, not a search of each group for its smallest and largest `seq`.
    """
    assets = ("b",) if balance == "base" else ("b", "c")  # "base" never reads the counter asset
    means = c.group_by("_g").agg(pl.col(_AMOUNTS[a]).mean().alias(f"m_{a}") for a in assets)
    per = _legs(c, n_acc, assets).group_by("_n").agg(
        pl.len().alias("n"), *[agg for a in assets for agg in (
            pl.col(f"d_{a}").sum().alias(f"net_{a}"), pl.col(f"d_{a}").first().alias(f"first_{a}"),
            pl.col(f"d_{a}").last().alias(f"last_{a}"))],
    ).with_columns((pl.col("_n") // n_acc).alias("_g")).join(means, on="_g")
    flat = _flat("b", tolerance, jitter)
    if balance == "either":
        flat = flat | _flat("c", tolerance, jitter)
    elif balance == "both":
        flat = flat & _flat("c", tolerance, jitter)
    return per.filter(flat).get_column("_n")


_AMOUNTS = {"b": "base_amount", "c": "counter_amount"}


def _legs(c: pl.DataFrame, n_acc: int, assets: tuple[str, ...]) -> pl.DataFrame:
    """Each trade of `c` as two legs, the giver's (`src`) then the receiver's (`dst`), in `c`'s row
    order: what the member (`_node`) gains in each of `assets` ("b": base, "c": counter).

    Shapes: -> [_n: i64, d_b: i64, (d_c: i64)], 2 x c.height rows."""
    sign = pl.when(pl.col("seller_sold_base")).then(-1).otherwise(1)
    giver_gains = {"b": sign * pl.col("base_amount"), "c": -sign * pl.col("counter_amount")}
    trades = c.select(_node("src", n_acc).alias("src"), _node("dst", n_acc).alias("dst"),
                      *[giver_gains[a].alias(a) for a in assets])  # fmt: skip
    col = lambda name: trades.get_column(name).to_numpy()  # noqa: E731
    pairwise = lambda giver, receiver: np.column_stack([giver, receiver]).ravel()  # noqa: E731  (g0, r0, g1, r1, ...)
    return pl.DataFrame({"_n": pairwise(col("src"), col("dst")), **{f"d_{a}": pairwise(col(a), -col(a)) for a in assets}})


def _flat(asset: str, tolerance: float, jitter: float) -> pl.Expr:
    """Net within tolerance of the mean trade, whole or trimmed of the first and/or last leg.

    The allowances need legs: trimming one leg needs 4 (2 round trips), both 6, and the
    jitter margin (jitter x sqrt(legs)) 6; a member with fewer legs is held to the strict
    V&W margin, so a trader who once bought back about what it sold is no loop.
    """
    net, first, last = pl.col(f"net_{asset}"), pl.col(f"first_{asset}"), pl.col(f"last_{asset}")
    n = pl.col("n")
    margin = (tolerance + pl.when(n >= 6).then(jitter * n.sqrt()).otherwise(0.0)) * pl.col(f"m_{asset}")
    return (
        (net.abs() <= margin)
        | ((n >= 4) & (((net - first).abs() <= margin) | ((net - last).abs() <= margin)))
        | ((n >= 6) & ((net - first - last).abs() <= margin))
    )


def _strong_within(c: pl.DataFrame, n_acc: int) -> pl.DataFrame:
    """Trades of `c` inside a strongly connected component of their group's trader graph;
    `_g` renumbered to those components."""
    if c.height == 0:
        return c
    ends = pl.concat([c.select(_node("src", n_acc)), c.select(_node("dst", n_acc))]).to_series()
    nodes = (ends.rank("dense").cast(pl.Int64) - 1).to_numpy()
    s, d = nodes[: c.height], nodes[c.height :]
    graph = coo_matrix((np.ones(s.size, dtype=np.int8), (s, d)), shape=(int(nodes.max()) + 1,) * 2).tocsr()
    _, labels = connected_components(graph, directed=True, connection="strong")
    inside = labels[s] == labels[d]
    return c.with_columns(pl.Series("_g", labels[s].astype(np.int64))).filter(pl.Series(inside))


def _loops_frame(found: list[pl.DataFrame], trades: pl.DataFrame,
                 decode: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> pl.DataFrame:  # fmt: skip
    """Group qualified trades (`seq` of `trades`, `_indexed`) into loops with stable ids."""
    if not found or sum(f.height for f in found) == 0:
        return pl.DataFrame(schema=CLOSED_LOOPS_SCHEMA)
    hits = pl.concat(found).join(trades.select("seq", "pair_id", "seller", "buyer", "id", "out_id"), on="seq")
    if decode is not None:
        hits = decode(hits)
    loops = hits.group_by("pair_id", "level", "comp", "window", "window_start").agg(
        pl.col("seller").append(pl.col("buyer")).unique().sort().alias("members"),
        pl.len().cast(pl.UInt32).alias("n_trades"),
        pl.col("base_amount").sum().alias("volume"),
        pl.col("id").append(pl.col("out_id").drop_nulls()).unique().sort().alias("trade_ids"),
    )
    loops = loops.with_columns(
        pl.col("members").list.len().cast(pl.UInt32).alias("n_members"),
        pl.struct("pair_id", "window", "window_start", "trade_ids")
        .map_elements(_loop_id, return_dtype=pl.String)
        .alias("loop_id"),
    )
    # members keep the accounts' type: ids, or keys (engine.graph.account_keys) in the rings step
    schema = {k: v for k, v in CLOSED_LOOPS_SCHEMA.items() if k != "members"}
    return loops.select(list(CLOSED_LOOPS_SCHEMA)).cast(schema).sort("pair_id", "window_start", "loop_id")


def _loop_id(row: dict) -> str:
    """`loop_` + 12 hex of sha256 over pair, window, start and the sorted trade ids."""
    text = "|".join([row["pair_id"], row["window"], row["window_start"].isoformat(), ",".join(row["trade_ids"])])
    return "loop_" + hashlib.sha256(text.encode()).hexdigest()[:12]

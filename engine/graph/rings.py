"""Rings: groups of wallets that trade with each other to fake activity.

Louvain only PROPOSES communities; the trade evidence decides which are rings.

1. Pair evidence (`pair_counts`, `evidence_from_counts`). Per co-trading wallet pair: closed-loop trades
   (engine.graph.closed_loops), round-trip trades (2 x min of the two directions,
   per asset pair) and whether they share a funding ancestor (engine.graph.funding;
   exchange-like funders are no lineage). A pair with any of the three is "strong".
2. Suspicious subgraph. Wallets on a strong pair, and the co-trade edges between
   them weighted loop_trades + round_trip_trades + 0.1 x n_trades (+ `funding_weight`
   for kin). Funding adds weight but never creates an edge, and one-way trading
   weighs little, so a funding forest of exchange customers, or a market maker's
   flow, does not shape the communities.
3. Communities. Louvain at every level of its dendrogram: python-louvain
   (`community.generate_dendrogram`, `random_state=seed`) up to `louvain_max_edges`
   edges; above that igraph's `community_multilevel(return_levels=True)` (same
   method in C: python-louvain needs 35 s+ on 100k nodes / 500k edges) with igraph's
   RNG seeded. Nodes and edges enter sorted, so input row order is irrelevant.
4. Evidence (RingRules, all thresholds there). A community is a ring when it has
   2..200 members, >= 4 internal trades, >= 80% of members on a strong pair inside,
   past two members no member in > 95% of its internal trades (not a star: a market
   maker's clients; unless every member shares a funder with another: one controller's
   hub and spokes), and either closed loops carry >= 20% of its internal volume (with
   >= 30% of members' trades internal: not makers and arbitrageurs), or its internal
   edges are reciprocal (>= 50%) and either dense (>= 50% of possible pairs) or
   closed (>= 80% of members' trades internal, no member in > 80% of them: not a
   star), and it is inward-looking (>= 50% of members share funding, or >= 50% of
   members' trades are internal).
   Closed loops include those passing one asset round a group ACROSS pairs
   (engine.graph.asset_loops: a token sold on for XLM, then for USDC, back to the first):
   searched once over every batch's candidates, after the per-pair loops.
5. Closed-loop groups (wallets joined by shared closed loops) are proposed too: modularity
   splits a long directed cycle, the loops do not. Accepted communities are taken largest
   first and disjoint, so a ring split by a fine Louvain level is reported whole.

Ring id: `ring_` + first 12 hex of sha256 of the sorted member ids joined by ','.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from engine.graph.account_keys import account_names, decode_lists, encode_columns
from engine.graph.asset_loops import asset_loops, cross_pair_candidates
from engine.graph.closed_loops import CLOSED_LOOPS_SCHEMA, loop_levels, loop_trades, trader_loop_edges, trader_loops
from engine.graph.cotrade import trader_trades
from engine.graph.funding import (
    DEFAULT_DEPTH,
    DEFAULT_MAX_FANOUT,
    ancestors,
    shared_ancestors,
)
from engine.schemas import TRADES_SCHEMA


@dataclass(frozen=True)
class RingRules:
    """Evidence thresholds that turn a proposed community into a ring (see module doc)."""

    min_size: int = 2
    max_size: int = 200
    min_trades: int = 4
    min_engaged_share: float = 0.8
    min_loop_share: float = 0.2
    min_reciprocity: float = 0.5
    min_density: float = 0.5
    min_funding_share: float = 0.5
    min_internal_share: float = 0.5
    min_loop_internal_share: float = 0.3
    closed_internal_share: float = 0.8
    max_hub_share: float = 0.8
    min_member_internal_share: float = 0.2  # a member trading less inside (and no kin there) is pruned
    star_hub_share: float = 0.95  # past two members, one member in more of the internal trades: a star
    kin_star_funding_share: float = 1.0  # ... unless this share of its members (all) share a funder: one controller's spokes
    kin_star_spoke_balance: float = 0.25  # ... each spoke in at least this fraction of an even spoke's share of the trades


@dataclass(frozen=True)
class RingOptions:
    resolution: float = 1.0
    seed: int = 42
    depth: int = DEFAULT_DEPTH
    max_fanout: int = DEFAULT_MAX_FANOUT
    funding_weight: float = 1.0
    one_way_weight: float = 0.1
    louvain_max_edges: int = 50_000
    rules: RingRules = field(default_factory=RingRules)


@dataclass(frozen=True)
class RingResult:
    rings: pl.DataFrame  # accepted rings, one row each (columns: see community_stats)
    ring_members: pl.DataFrame  # [ring_id, account_id, n_trades, volume, loop_volume]
    closed_loops: pl.DataFrame  # engine.graph.closed_loops.CLOSED_LOOPS_SCHEMA
    communities: pl.DataFrame  # every proposed community (all Louvain levels) with its stats and is_ring


BatchFn = Callable[[pl.DataFrame], dict[str, pl.DataFrame]]
# Runs a function on the trader trades of every batch of pairs (`batch_trader_trades`) and
# concatenates each frame it returns, by name (`local_batches`; engine.spark.rings runs the
# same functions on Spark's groups).
MapBatches = Callable[[BatchFn], dict[str, pl.DataFrame]]


def detect_rings(
    trades: pl.DataFrame, funding: pl.DataFrame, *, options: RingOptions = RingOptions(), as_of: datetime | None = None
) -> RingResult:
    """Closed loops, proposed communities and accepted rings from trades and funding edges.

    Input: canonical trades (TRADES_SCHEMA) and funding edges (Store.funding_edges()).
    `as_of`: use only rows closed at or before it (results "as of" that time).
    The whole market as one batch of `rings_by_pairs`.
    """
    if as_of is not None:
        trades = trades.filter(pl.col("closed_at") <= as_of)
        funding = funding.filter(pl.col("closed_at") <= as_of)
    names = account_names(trades.get_column("seller_account"), trades.get_column("buyer_account"),
                          funding.get_column("from_account"), funding.get_column("to_account"))
    keyed = encode_columns(trades, names, ("seller_account", "buyer_account"))
    return rings_by_pairs(local_batches(lambda: [batch_trader_trades(keyed)]), names, funding, options=options,
                          n_batches=1)  # fmt: skip


def rings_by_pairs(map_batches: MapBatches, names: pl.Series, funding: pl.DataFrame, *,
                   options: RingOptions = RingOptions(), n_batches: int | None = None) -> RingResult:  # fmt: skip
    """`detect_rings` over a market read in batches of pairs, never whole.

    `map_batches` runs a function on the trader trades (`batch_trader_trades`) of every batch
    of trades (TRADES_SCHEMA, seller/buyer accounts as keys: positions in `names`, the sorted
    ids of every trading or funding account; engine.graph.account_keys), each batch holding
    every trade of its pairs, twice:
    loop levels (`batch_edges`), then closed loops, pair evidence and trade flows
    (`batch_loops`). Closed loops, pool legs and pair evidence never span pairs, and the loop
    levels are planned over all batches, so the result is the same for any split into
    batches; a market read in one batch (`n_batches` 1) plans them in that batch, without
    the levels pass. Held at once: one batch (two when `map_batches` runs two at once), the
    co-trading pairs' counts and the directed flows between wallets (`pair_flows`), from which
    the communities' internal trading is summed.
    """
    levels = None if n_batches == 1 else loop_levels(map_batches(batch_edges)["edges"])
    per_pair = map_batches(partial(batch_loops, levels=levels))
    # The funding lineage is first needed by the pair evidence. It is worked out beside the
    # cross-pair search, which keeps only about 1.6 of two cores busy (at 10M trades: 24 s,
    # the lineage 2 s), rather than before the passes, when nothing else ran.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lineage") as beside:
        lineage = beside.submit(_funding_ancestors, funding, names, options)
        found = with_cross_pair_loops(per_pair)
        anc = lineage.result()
    loops = found["loops"].sort("pair_id", "window_start", "loop_id")
    evidence = evidence_from_counts(found["counts"], anc, one_way_weight=options.one_way_weight)
    suspects = suspicious_accounts(evidence)
    graph = community_graph(evidence, suspects, funding_weight=options.funding_weight)
    members = propose_communities(graph, suspects, resolution=options.resolution, seed=options.seed,
                                  max_python_edges=options.louvain_max_edges)
    members = pl.concat([members, loop_groups(loops, level=int(members.get_column("level").max() or 0) + 1)])
    flows = found["flows"]
    internal = _internal_flows(members, flows)
    sides = trade_sides(flows, suspects)
    members = prune_outward(members, internal, sides, anc, min_share=options.rules.min_member_internal_share)
    internal = _within(internal, members)
    stats = community_stats(members, internal, sides, anc, evidence, names, rules=options.rules)
    chosen = _maximal_rings(members, stats)
    ring_members = _ring_members(members.join(chosen, on="community", how="semi"), internal, names)
    rings = stats.join(chosen, on="community", how="semi").drop("community", "is_ring").sort("ring_id")
    return RingResult(rings, ring_members, decode_lists(loops, "members", names), stats.drop("community"))


def _funding_ancestors(funding: pl.DataFrame, names: pl.Series, options: RingOptions) -> pl.DataFrame:
    """Funding ancestors (engine.graph.funding.ancestors) with accounts as keys (positions in `names`)."""
    anc = ancestors(funding, depth=options.depth, max_fanout=options.max_fanout)
    return encode_columns(anc, names, ("account_id", "ancestor"))


def pair_batches(sizes: pl.DataFrame, *, batch_trades: int) -> list[list[str]]:
    """Pairs ([pair_id, n_trades], in order) grouped into runs of at most `batch_trades` trades
    (a pair with more is a batch of its own)."""
    batches: list[list[str]] = []
    total = 0
    for pair_id, n in sizes.select("pair_id", "n_trades").iter_rows():
        if not batches or total + n > batch_trades:
            batches.append([])
            total = 0
        batches[-1].append(pair_id)
        total += n
    return batches


# What the batch functions read of a trade (Store.pair_trades, engine.spark.rings)
RING_TRADE_COLUMNS = ("id", "op_id", "pair_id", "closed_at", "seller_account", "seller_pool_id", "buyer_account",
                      "buyer_pool_id", "sold_asset", "sold_amount", "bought_asset", "bought_amount")
KEYED_TRADES_SCHEMA = {**TRADES_SCHEMA, "seller_account": pl.Int64, "buyer_account": pl.Int64}


def local_batches(batches: Callable[[], Iterable[pl.DataFrame]], *,
                  map_: Callable[[BatchFn, Iterator[pl.DataFrame]], Iterable[dict]] = map) -> MapBatches:  # fmt: skip
    """A MapBatches over the trader trades `batches()` yields (called once per pass); `map_`
    runs a pass's function over them, results in their order (engine.services.rings: two at once)."""

    def run(fn: BatchFn) -> dict[str, pl.DataFrame]:
        parts = list(map_(fn, iter(batches()))) or [fn(batch_trader_trades(pl.DataFrame(schema=KEYED_TRADES_SCHEMA)))]
        return {name: pl.concat([p[name] for p in parts]) for name in parts[0]}

    return run


def batch_trader_trades(trades: pl.DataFrame) -> pl.DataFrame:
    """What both passes read of a batch (keyed trades): its trader trades, pool legs included."""
    return trader_trades(trades, via_pools=True)


def batch_edges(tt: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Pass 1 on one batch's trader trades: its trader graph for `loop_levels` (`part`: the batch's first pair)."""
    part = tt.get_column("pair_id").min() if tt.height else ""
    return {"edges": trader_loop_edges(tt).with_columns(pl.lit(part, pl.String).alias("part"))}


def batch_loops(tt: pl.DataFrame, *, levels: list[int] | None) -> dict[str, pl.DataFrame]:
    """Pass 2 on one batch's trader trades: its closed loops (members as keys), `pair_counts` and
    `pair_flows`. `levels`: planned over every batch (`loop_levels`); None: the batch is the whole market."""
    loops = trader_loops(tt, levels=levels)
    if loops.height == 0:  # the empty frame's members are ids; every batch's are keys
        loops = pl.DataFrame(schema={**CLOSED_LOOPS_SCHEMA, "members": pl.List(pl.Int64)})
    cross = cross_pair_candidates(tt.join(loop_trades(loops).select("id"), on="id", how="anti"))
    counts = pair_counts(tt, loops).cast({"account_a": pl.Int64, "account_b": pl.Int64})
    flows = pair_flows(tt, loop_trades(loops).select("id").unique())
    return {"loops": loops, "counts": counts, "flows": flows.cast({"seller": pl.Int64, "buyer": pl.Int64}),
            "cross": cross.cast({"seller": pl.Int64, "buyer": pl.Int64})}


def with_cross_pair_loops(found: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """`batch_loops` output of every batch, plus the loops that pass one asset across pairs
    (engine.graph.asset_loops), searched over all batches' candidates at once so that no split
    into batches hides one; their trades move into the loop counts and flows."""
    cross = asset_loops(found["cross"])
    if cross.height == 0:
        return found
    ids = loop_trades(cross).select("id").unique()
    moved = found["cross"].join(ids, on="id", how="semi")
    counts = pl.concat([found["counts"], pair_counts(moved, cross).with_columns(
        pl.lit(0, pl.UInt32).alias("n"), pl.lit(0, pl.UInt32).alias("n_ab"), pl.lit(0, pl.UInt32).alias("recip"))
        .cast(found["counts"].schema)])  # fmt: skip
    counts = counts.group_by("account_a", "account_b", "pair_id", maintain_order=True).agg(pl.all().sum())
    shift = pair_flows(moved, ids).cast({"seller": pl.Int64, "buyer": pl.Int64})
    flows = pl.concat([found["flows"].cast({"n_trades": pl.Int64}),
                       shift.cast({"n_trades": pl.Int64}),  # now in a loop ...
                       shift.with_columns(pl.lit(False).alias("in_loop"), -pl.col("n_trades").cast(pl.Int64),
                                          -pl.col("volume"))])  # fmt: skip  ... no longer outside one
    flows = flows.group_by("seller", "buyer", "pair_id", "in_loop").agg(pl.col("n_trades").sum(), pl.col("volume").sum())
    flows = flows.filter(pl.col("n_trades") > 0).cast({"n_trades": pl.UInt32})
    loops = pl.concat([found["loops"], cross.cast({"members": found["loops"].schema["members"]})])
    return {**found, "loops": loops, "counts": counts, "flows": flows}


def pair_flows(tt: pl.DataFrame, loop_ids: pl.DataFrame) -> pl.DataFrame:
    """Directed trading between wallets per asset pair, split by closed-loop trades: what the
    communities' evidence sums (a community's internal trades are its members' flows).

    Input: trader trades (engine.graph.cotrade.trader_trades) and the closed loops' trade ids [id].
    Shapes: -> [seller, buyer, pair_id, in_loop: bool, n_trades: u32, volume: i64 (base stroops)]
    """
    in_loop = loop_ids.with_columns(pl.lit(True).alias("in_loop"))
    return (
        tt.join(in_loop, on="id", how="left")
        .group_by("seller", "buyer", "pair_id", pl.col("in_loop").fill_null(False))
        .agg(pl.len().cast(pl.UInt32).alias("n_trades"), pl.col("base_amount").sum().alias("volume"))
    )


def trade_sides(flows: pl.DataFrame, accounts: pl.Series) -> pl.DataFrame:
    """Trades each of `accounts` made as seller and as buyer (`pair_flows` of every pair).

    Shapes: -> [account_id, n_sold: u32, n_bought: u32]"""
    sold = flows.group_by(pl.col("seller").alias("account_id")).agg(pl.col("n_trades").sum().alias("n_sold"))
    bought = flows.group_by(pl.col("buyer").alias("account_id")).agg(pl.col("n_trades").sum().alias("n_bought"))
    sides = sold.join(bought, on="account_id", how="full", coalesce=True).filter(
        pl.col("account_id").is_in(accounts.implode())).with_columns(pl.col("n_sold", "n_bought").fill_null(0))
    return sides.cast({"account_id": pl.Int64, "n_sold": pl.UInt32, "n_bought": pl.UInt32})


def _within(internal: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """Internal trades whose two sides are still members of their community."""
    keep = members.select("community", "account_id")
    return internal.join(keep.rename({"account_id": "seller"}), on=["community", "seller"], how="semi").join(
        keep.rename({"account_id": "buyer"}), on=["community", "buyer"], how="semi")


def ring_id_of(members: list[str]) -> str:
    """`ring_` + first 12 hex of sha256 of the sorted member ids joined by ','."""
    return "ring_" + hashlib.sha256(",".join(sorted(members)).encode()).hexdigest()[:12]


def pair_counts(tt: pl.DataFrame, loops: pl.DataFrame) -> pl.DataFrame:
    """Per (wallet pair, asset pair): trades, trades a -> b, closed-loop trades, round-trip trades.

    Shapes: -> [account_a, account_b, pair_id, n, n_ab, loop, recip], a < b.
    """
    lt = loop_trades(loops).select("id").with_columns(pl.lit(1).alias("_loop"))
    return (
        tt.join(lt, on="id", how="left")
        .select(
            pl.min_horizontal("seller", "buyer").alias("account_a"),
            pl.max_horizontal("seller", "buyer").alias("account_b"),
            "pair_id",
            (pl.col("seller") < pl.col("buyer")).alias("_ab"),
            pl.col("_loop").fill_null(0),
        )
        .group_by("account_a", "account_b", "pair_id")
        .agg(pl.len().alias("n"), pl.col("_ab").sum().alias("n_ab"), pl.col("_loop").sum().alias("loop"))
        .with_columns((2 * pl.min_horizontal(pl.col("n_ab"), pl.col("n") - pl.col("n_ab"))).alias("recip"))
    )


def evidence_from_counts(counts: pl.DataFrame, anc: pl.DataFrame, *, one_way_weight: float) -> pl.DataFrame:
    """Per co-trading wallet pair: how suspicious their trading is, from `pair_counts` (of one
    or many batches of asset pairs) and funding ancestors.

    `recip_trades` = 2 x min(a->b, b->a) trades summed over asset pairs (the round-trip
    part); `strong` = closed-loop trades, a round trip, or a shared funding ancestor;
    `weight` = loop_trades + recip_trades + one_way_weight x n_trades (Louvain weight).
    Shapes: -> [account_a, account_b, n_trades, loop_trades, recip_trades, kin_depth (null:
    no shared funding), strong: bool, weight: f64], a < b.
    """
    per_pair = (
        counts.group_by("account_a", "account_b")
        .agg(
            pl.col("n").sum().cast(pl.Int64).alias("n_trades"),
            pl.col("loop").sum().cast(pl.Int64).alias("loop_trades"),
            pl.col("recip").sum().cast(pl.Int64).alias("recip_trades"),
        )
    )
    kin = shared_ancestors(anc, per_pair).select("account_a", "account_b", pl.col("depth").alias("kin_depth"))
    return (
        per_pair.join(kin, on=["account_a", "account_b"], how="left")
        .with_columns(
            ((pl.col("loop_trades") > 0) | (pl.col("recip_trades") > 0) | pl.col("kin_depth").is_not_null()).alias("strong"),
            (pl.col("loop_trades") + pl.col("recip_trades") + one_way_weight * pl.col("n_trades")).alias("weight"),
        )
        .sort("account_a", "account_b")
    )


def suspicious_accounts(evidence: pl.DataFrame) -> pl.Series:
    """Wallets on a strong pair: closed loop, round trip, or trading with a funding sibling (sorted)."""
    strong = evidence.filter(pl.col("strong"))
    both = pl.concat([strong.get_column("account_a"), strong.get_column("account_b")])
    return both.unique().sort().rename("account_id")


def community_graph(evidence: pl.DataFrame, suspects: pl.Series, *, funding_weight: float) -> pl.DataFrame:
    """Undirected weighted co-trade edges among suspects (Louvain input).

    weight = pair_evidence weight, + `funding_weight` when the two share a funding
    ancestor. Funding adds weight to trade edges but never creates an edge: lineage
    over 4 hops relates far more wallets than trade, and must not shape the communities alone.
    Shapes: -> [account_a, account_b, weight: f64], a < b, sorted.
    """
    inside = pl.col("account_a").is_in(suspects.implode()) & pl.col("account_b").is_in(suspects.implode())
    kin = pl.col("kin_depth").is_not_null().cast(pl.Float64) * funding_weight
    return evidence.filter(inside).select(
        "account_a", "account_b", (pl.col("weight").cast(pl.Float64) + kin).alias("weight")
    ).sort("account_a", "account_b")


def propose_communities(
    graph: pl.DataFrame, nodes: pl.Series, *, resolution: float, seed: int, max_python_edges: int
) -> pl.DataFrame:
    """Louvain communities of `nodes` over `graph` (seeded), at every level of the dendrogram.

    Level 0 is the finest partition; `community` is unique across levels.
    Shapes: -> [account_id (as `nodes`), level: i32, community: i64]
    """
    names = nodes.unique().sort()
    index = pl.DataFrame({"account_id": names}).with_row_index("i").with_columns(pl.col("i").cast(pl.Int64))
    e = graph.join(index.rename({"account_id": "account_a", "i": "a"}), on="account_a").join(
        index.rename({"account_id": "account_b", "i": "b"}), on="account_b"
    )
    src, dst, w = e.get_column("a").to_list(), e.get_column("b").to_list(), e.get_column("weight").to_list()
    louvain = _louvain_python if len(src) <= max_python_edges else _louvain_igraph
    levels = louvain(len(names), src, dst, w, resolution=resolution, seed=seed) if len(names) else []
    frames = [
        pl.DataFrame({"account_id": names, "level": pl.Series([lvl] * len(names), dtype=pl.Int32),
                      "community": pl.Series(labels, dtype=pl.Int64) + (lvl << 32)})
        for lvl, labels in enumerate(levels)
    ]
    schema = {"account_id": nodes.dtype, "level": pl.Int32, "community": pl.Int64}
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


LOOP_GROUP_BASE = 1 << 48  # community ids of loop groups, above every Louvain (level << 32) id


def loop_groups(loops: pl.DataFrame, *, level: int) -> pl.DataFrame:
    """Wallets joined by closed loops (sharing a loop, in any pair), as proposed communities.

    Modularity splits a long directed cycle (every member has two neighbours), so Louvain
    alone rarely proposes the whole cycle; the loops themselves are the V&W candidate.
    Shapes: -> [account_id (as the loops' members), level: i32 (= `level`), community: i64]
    """
    schema = {"account_id": loops.schema["members"].inner, "level": pl.Int32, "community": pl.Int64}
    pairs = loops.select("loop_id", pl.col("members")).explode("members").rename({"members": "account_id"})
    if pairs.height == 0:
        return pl.DataFrame(schema=schema)
    accounts = pairs.select("account_id").unique().sort("account_id").with_row_index("_a")
    loop_ix = pairs.select("loop_id").unique().sort("loop_id").with_row_index("_l")
    e = pairs.join(accounts, on="account_id").join(loop_ix, on="loop_id")
    n_a = accounts.height
    src = e.get_column("_a").to_numpy().astype(np.int64)
    dst = e.get_column("_l").to_numpy().astype(np.int64) + n_a
    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n_a + loop_ix.height,) * 2)
    _, labels = connected_components(graph, directed=False)
    return accounts.select(
        "account_id", pl.lit(level, pl.Int32).alias("level"),
        (pl.Series(labels[:n_a].astype(np.int64)) + LOOP_GROUP_BASE).alias("community"),
    ).cast(schema)


def _louvain_python(n: int, src: list, dst: list, w: list, *, resolution: float, seed: int) -> list[list[int]]:
    import community as community_louvain
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from(zip(src, dst, w, strict=True))
    dendrogram = community_louvain.generate_dendrogram(g, weight="weight", resolution=resolution, random_state=seed)
    levels = [community_louvain.partition_at_level(dendrogram, lvl) for lvl in range(len(dendrogram))]
    return [[part[i] for i in range(n)] for part in levels]


def _louvain_igraph(n: int, src: list, dst: list, w: list, *, resolution: float, seed: int) -> list[list[int]]:
    import igraph

    g = igraph.Graph(n=n, edges=list(zip(src, dst, strict=True)), directed=False)
    g.es["weight"] = w
    igraph.set_random_number_generator(random.Random(seed))
    try:
        levels = g.community_multilevel(weights="weight", resolution=resolution, return_levels=True)
        return [list(level.membership) for level in levels]
    finally:
        igraph.set_random_number_generator(random)


def community_stats(
    members: pl.DataFrame,
    internal: pl.DataFrame,
    sides: pl.DataFrame,
    anc: pl.DataFrame,
    evidence: pl.DataFrame,
    names: pl.Series,
    *,
    rules: RingRules,
) -> pl.DataFrame:
    """Trade evidence per proposed community of two or more wallets, and the ring verdict.

    Input: members as keys (`names`), their internal flows (`_internal_flows`) and trade
    counts (`trade_sides`), funding ancestors and pair evidence over the same keys.

    `engaged_share`: share of members with a strong pair (pair_evidence) inside the community;
    `hub_share`: the largest share of internal trades one member is in (1.0: a star or a pair).
    Shapes: -> [ring_id, community, level, size, n_trades, volume, internal_density, reciprocity,
    closed_loop_volume, closed_loop_share, funding_share, funding_depth, internal_share,
    engaged_share, hub_share, n_pairs, pairs: list[str], members: list[str] (account ids), is_ring: bool],
    sorted by ring_id, level.
    (Volumes: base-asset stroops, summed over pairs.)
    """
    sizes = members.group_by("community").agg(
        pl.col("level").first(), pl.len().alias("size"), pl.col("account_id").sort().alias("members")
    ).filter(pl.col("size") >= 2)
    members = members.join(sizes.select("community"), on="community", how="semi").select("account_id", "level", "community")
    sizes = decode_lists(sizes, "members", names)
    out = (
        sizes.with_columns(pl.col("members").map_elements(ring_id_of, return_dtype=pl.String).alias("ring_id"))
        .join(_volume_shape(internal), on="community", how="left")
        .join(_edge_shape(internal), on="community", how="left")
        .join(_hub_share(internal), on="community", how="left")
        .join(_funding_shape(members, anc), on="community", how="left")
        .join(_member_trades(members, sides), on="community", how="left")
        .join(_engaged_share(members, evidence), on="community", how="left")
        .with_columns(
            pl.col("n_trades", "volume", "closed_loop_volume").fill_null(0),
            pl.col("funding_share", "engaged_share").fill_null(0.0),
        )
        .with_columns(
            (pl.col("n_edges") / (pl.col("size") * (pl.col("size") - 1) / 2)).alias("internal_density"),
            (pl.col("closed_loop_volume") / pl.col("volume")).fill_nan(0.0).alias("closed_loop_share"),
            (pl.col("n_trades") / (pl.col("_sides") - pl.col("n_trades"))).fill_nan(0.0).alias("internal_share"),
        )
    )
    return _verdict(out, rules).sort("ring_id", "level")


def _volume_shape(internal: pl.DataFrame) -> pl.DataFrame:
    """Per community: internal trade count, volume, closed-loop volume and asset pairs."""
    return internal.group_by("community").agg(
        pl.col("n_trades").sum().cast(pl.UInt32),
        pl.col("volume").sum(),
        pl.col("volume").filter(pl.col("in_loop")).sum().alias("closed_loop_volume"),
        pl.col("pair_id").n_unique().alias("n_pairs"),
        pl.col("pair_id").unique().sort().alias("pairs"),
    )


def _engaged_share(members: pl.DataFrame, evidence: pl.DataFrame) -> pl.DataFrame:
    """Per community: share of members with a strong pair whose other end is in the same community."""
    strong = evidence.filter(pl.col("strong")).select("account_a", "account_b")
    inside = (
        strong.join(members.rename({"account_id": "account_a"}), on="account_a")
        .join(members.rename({"account_id": "account_b", "community": "_cb"}), on=["account_b", "level"])
        .filter(pl.col("community") == pl.col("_cb"))
    )
    engaged = pl.concat([
        inside.select("community", pl.col("account_a").alias("account_id")),
        inside.select("community", pl.col("account_b").alias("account_id")),
    ]).unique()
    size = members.group_by("community").agg(pl.len().alias("_size"))
    return (
        engaged.group_by("community")
        .agg(pl.len().alias("_n"))
        .join(size, on="community")
        .select("community", (pl.col("_n") / pl.col("_size")).alias("engaged_share"))
    )


def _internal_flows(members: pl.DataFrame, flows: pl.DataFrame) -> pl.DataFrame:
    """Flows (`pair_flows`) whose seller and buyer are in the same community; adds community.

    One level at a time, over the flows between members of communities of two or more
    (no other flow can be internal), so no level multiplies the flows while joining.
    Shapes: -> [seller, buyer, pair_id, in_loop, n_trades, volume, community]"""
    sizes = members.group_by("community").agg(pl.len().alias("_n"))
    members = members.join(sizes.filter(pl.col("_n") >= 2), on="community", how="semi")
    ids = members.select("account_id").unique()
    flows = flows.join(ids.rename({"account_id": "seller"}), on="seller", how="semi").join(
        ids.rename({"account_id": "buyer"}), on="buyer", how="semi")
    per_level = [
        flows.join(level.select(pl.col("account_id").alias("seller"), "community"), on="seller")
        .join(level.select(pl.col("account_id").alias("buyer"), pl.col("community").alias("_cb")), on="buyer")
        .filter(pl.col("community") == pl.col("_cb"))
        .drop("_cb")
        for level in members.partition_by("level")
    ]
    if not per_level:  # no community of two: no internal flow (the frame keeps its columns)
        per_level = [flows.join(members.select(pl.col("account_id").alias("seller"), "community"), on="seller")]
    return pl.concat(per_level)


def _edge_shape(internal: pl.DataFrame) -> pl.DataFrame:
    """Per community: undirected edge count and reciprocity of directed edges (any pair)."""
    directed = internal.select("community", "seller", "buyer").unique()
    reverse = directed.rename({"seller": "buyer", "buyer": "seller"}).with_columns(pl.lit(True).alias("_rev"))
    flagged = directed.join(reverse, on=["community", "seller", "buyer"], how="left")
    return flagged.group_by("community").agg(
        (pl.col("_rev").fill_null(False).sum() / pl.len()).alias("reciprocity"),
        pl.struct(pl.min_horizontal("seller", "buyer").alias("lo"), pl.max_horizontal("seller", "buyer").alias("hi"))
        .n_unique()
        .alias("n_edges"),
    )


def _hub_share(internal: pl.DataFrame) -> pl.DataFrame:
    """Per community: the largest share of internal trades one member takes part in (1.0 for a star),
    and `_spoke_balance`: the smallest member's share over an even share (1 / (size - 1); 1.0 when
    every spoke of a star trades alike, near 0 when a member passed by with one trade)."""
    legs = pl.concat([
        internal.select("community", pl.col("seller").alias("account_id"), "n_trades"),
        internal.select("community", pl.col("buyer").alias("account_id"), "n_trades"),
    ])
    per = legs.group_by("community", "account_id").agg(pl.col("n_trades").sum().alias("_n"))
    total = internal.group_by("community").agg(pl.col("n_trades").sum().alias("_t"))
    shares = per.group_by("community").agg(pl.col("_n").max(), pl.col("_n").min().alias("_least"), pl.len().alias("_k"))
    return shares.join(total, on="community").select(
        "community",
        (pl.col("_n") / pl.col("_t")).alias("hub_share"),
        (pl.col("_least") / pl.col("_t") * (pl.col("_k") - 1)).alias("_spoke_balance"),
    )


def _funding_shape(members: pl.DataFrame, anc: pl.DataFrame) -> pl.DataFrame:
    """Per community: share of members sharing a funding ancestor with another member, and the deepest such link."""
    linked = _kin_members(members, anc)
    size = members.group_by("community").agg(pl.len().alias("_size"))
    return (
        linked.group_by("community")
        .agg(pl.len().alias("_linked"), pl.col("depth").max().alias("funding_depth"))
        .join(size, on="community")
        .select("community", (pl.col("_linked") / pl.col("_size")).alias("funding_share"), "funding_depth")
    )


def _kin_members(members: pl.DataFrame, anc: pl.DataFrame) -> pl.DataFrame:
    """Members sharing a funding ancestor with another member of their community.

    Linear in members x ancestors: groups (community, ancestor) instead of pairing members.
    A member that funded another member counts as that member's ancestor at depth 0.
    Shapes: -> [community, account_id, depth: i32 (closest shared ancestor)]
    """
    lineage = pl.concat([
        anc.select("account_id", "ancestor", pl.col("depth").cast(pl.Int32)),
        members.select("account_id", pl.col("account_id").alias("ancestor"), pl.lit(0, pl.Int32).alias("depth")),
    ])
    per = members.select("account_id", "community").join(lineage, on="account_id")
    shared = per.join(
        per.group_by("community", "ancestor").agg(pl.col("account_id").n_unique().alias("_k")).filter(pl.col("_k") >= 2),
        on=["community", "ancestor"],
        how="semi",
    )
    return shared.group_by("community", "account_id").agg(pl.col("depth").min())


PRUNE_KIN_DEPTH = 2  # kin that keeps a member: a shared funder within 2 hops (throwaway hops skipped)


def prune_outward(
    members: pl.DataFrame, internal: pl.DataFrame, sides: pl.DataFrame, anc: pl.DataFrame, *, min_share: float
) -> pl.DataFrame:
    """Proposed members that belong: at least `min_share` of their own trades are with other
    members of the community, or they share a funder with one within 2 hops.

    A market maker that wash traders use for camouflage trades with every member, so Louvain
    puts it in their community; most of its trading is with everyone else, and no member's
    funding is its. `internal`, `sides`: `_internal_flows` of `members`, `trade_sides`.
    Shapes: members' -> [account_id, level, community] (fewer rows).
    """
    legs = pl.concat([internal.select("community", pl.col("seller").alias("account_id"), "n_trades"),
                      internal.select("community", pl.col("buyer").alias("account_id"), "n_trades")])
    inside = legs.group_by("community", "account_id").agg(pl.col("n_trades").sum().alias("_in"))
    total = sides.select("account_id", (pl.col("n_sold") + pl.col("n_bought")).alias("_all"))
    kin = _kin_members(members, anc).filter(pl.col("depth") <= PRUNE_KIN_DEPTH).select(
        "community", "account_id", pl.lit(True).alias("_kin"))
    share = (pl.col("_in").fill_null(0) / pl.col("_all")).fill_null(0.0)
    return (
        members.join(inside, on=["community", "account_id"], how="left")
        .join(total, on="account_id", how="left")
        .join(kin, on=["community", "account_id"], how="left")
        .filter((share >= min_share) | pl.col("_kin").fill_null(False))
        .select(members.columns)
    )


def _member_trades(members: pl.DataFrame, sides: pl.DataFrame) -> pl.DataFrame:
    """Per community: trades as seller plus trades as buyer over its members (`_sides`).

    Trades touching the community = _sides - internal trades (an internal trade has both sides in it).
    """
    return (
        members.join(sides, on="account_id", how="left")
        .group_by("community")
        .agg((pl.col("n_sold").fill_null(0).sum() + pl.col("n_bought").fill_null(0).sum()).alias("_sides"))
    )


def _verdict(stats: pl.DataFrame, rules: RingRules) -> pl.DataFrame:
    """Apply RingRules; adds is_ring."""
    c = pl.col
    sized = (
        c("size").is_between(rules.min_size, rules.max_size)
        & (c("n_trades") >= rules.min_trades)
        & (c("engaged_share") >= rules.min_engaged_share)
    )
    # closed loops carry the ring, unless one member is in nearly all of them: a market maker
    # whose clients each round-trip with it (loop groups join through it) is a book, not a ring
    # a star whose members all share a funder and all trade with the hub alike is one controller's
    # hub and spokes, not a book (a wallet that met the hub once is no spoke, whoever funded it)
    kin_star = (c("funding_share") >= rules.kin_star_funding_share) & (
        c("_spoke_balance").fill_null(0) >= rules.kin_star_spoke_balance)
    not_a_star = (c("size") == 2) | (c("hub_share") <= rules.star_hub_share) | kin_star
    loop_inward = c("internal_share").fill_null(0) >= rules.min_loop_internal_share
    # loops carry a ring whose members do a good part of their trading among themselves: market
    # makers and the arbitrage bots that round-trip with them form loops too (and may share a
    # funder), but most of their trading is with everyone else
    loops = (c("closed_loop_share") >= rules.min_loop_share) & not_a_star & loop_inward
    shaped = not_a_star & (c("reciprocity").fill_null(0) >= rules.min_reciprocity) & (
        (c("internal_density").fill_null(0) >= rules.min_density)
        | ((c("internal_share").fill_null(0) >= rules.closed_internal_share) & (c("hub_share") <= rules.max_hub_share))
    )
    inward = (c("funding_share") >= rules.min_funding_share) | (
        c("internal_share").fill_null(0) >= rules.min_internal_share
    )
    cols = [
        "ring_id", "community", "level", "size", "n_trades", "volume", "internal_density", "reciprocity", "closed_loop_volume",
        "closed_loop_share", "funding_share", "funding_depth", "internal_share", "engaged_share", "hub_share", "n_pairs", "pairs", "members",
    ]
    return stats.select(*cols, (sized & (loops | (shaped & inward))).fill_null(False).alias("is_ring"))


def _maximal_rings(members: pl.DataFrame, stats: pl.DataFrame) -> pl.DataFrame:
    """Accepted communities, largest first, each taken when it shares no wallet with one
    taken before. Shapes: -> [community: i64]

    Louvain levels nest, so among them each wallet gets its coarsest accepted community;
    a loop group (`loop_groups`) overlapping a Louvain community goes to the larger.
    The loop runs over accepted communities (a few hundred), not over trades.
    """
    accepted = stats.filter(pl.col("is_ring")).sort(["size", "level", "community"], descending=[True, True, False])
    taken: set[str] = set()
    chosen = []
    for community, group in zip(accepted.get_column("community"), accepted.get_column("members"), strict=True):
        if taken.isdisjoint(group):
            taken.update(group)
            chosen.append(community)
    return pl.DataFrame({"community": chosen}, schema={"community": pl.Int64}).sort("community")


def _ring_members(members: pl.DataFrame, internal: pl.DataFrame, names: pl.Series) -> pl.DataFrame:
    """Per ring member: internal trades and volume it took part in, and its closed-loop volume.

    Input: the rings' members (keys of `names`) and the communities' internal flows.
    Shapes: -> [ring_id, account_id (id), n_trades: u32, volume: i64, loop_volume: i64], sorted.
    """
    internal = internal.join(members.select("community").unique(), on="community", how="semi")
    legs = pl.concat([
        internal.select("community", pl.col("seller").alias("account_id"), "n_trades", "volume", "in_loop"),
        internal.select("community", pl.col("buyer").alias("account_id"), "n_trades", "volume", "in_loop"),
    ])
    per = legs.group_by("community", "account_id").agg(
        pl.col("n_trades").sum().cast(pl.UInt32),
        pl.col("volume").sum(),
        pl.col("volume").filter(pl.col("in_loop")).sum().alias("loop_volume"),
    )
    ids = members.group_by("community").agg(pl.col("account_id").sort()).with_columns(
        pl.col("account_id").alias("_ids"))
    ids = decode_lists(ids, "_ids", names).with_columns(
        pl.col("_ids").map_elements(ring_id_of, return_dtype=pl.String).alias("ring_id"))
    return (
        ids.explode("account_id", "_ids")
        .join(per, on=["community", "account_id"], how="left")
        .select(
            "ring_id", pl.col("_ids").alias("account_id"), pl.col("n_trades").fill_null(0), pl.col("volume").fill_null(0),
            pl.col("loop_volume").fill_null(0),
        )
        .sort("ring_id", "account_id")
    )


def ring_features(ring_members: pl.DataFrame, rings: pl.DataFrame, *, wallets: pl.Series | None = None) -> pl.DataFrame:
    """Ring membership features for the feature matrix.

    With `wallets`, every wallet gets a row (non-members: in_ring False, ring columns null).
    Shapes: -> [wallet: str, ring_id: str, ring_size: u32, ring_density: f64,
    ring_closed_loop_share: f64, in_ring: bool], sorted by wallet.
    """
    per = ring_members.select(pl.col("account_id").alias("wallet"), "ring_id").join(
        rings.select(
            "ring_id",
            pl.col("size").cast(pl.UInt32).alias("ring_size"),
            pl.col("internal_density").cast(pl.Float64).alias("ring_density"),
            pl.col("closed_loop_share").cast(pl.Float64).alias("ring_closed_loop_share"),
        ),
        on="ring_id",
        how="inner",
    )
    if wallets is not None:
        per = pl.DataFrame({"wallet": wallets.cast(pl.String).unique()}).join(per, on="wallet", how="left")
    return per.with_columns(pl.col("ring_id").is_not_null().alias("in_ring")).sort("wallet")


def ring_recovery(ring_members: pl.DataFrame, labels: pl.DataFrame, *, min_jaccard: float = 0.5) -> dict[str, float]:
    """How well detected rings recover labelled ones (simulated markets, analyst labels).

    `labels`: [account_id, ring_id] of the true ring members (other wallets absent or ring_id null).
    Wallet precision/recall compare member sets; a true ring is recovered when some
    detected ring overlaps it with Jaccard >= `min_jaccard`.
    Returns {wallet_precision, wallet_recall, ring_recall, ring_precision, n_true_rings, n_found_rings}.
    """
    truth = labels.filter(pl.col("ring_id").is_not_null()).select("account_id", pl.col("ring_id").alias("true_ring"))
    found = ring_members.select("account_id", "ring_id")
    hit = found.join(truth, on="account_id", how="semi").height
    overlap = found.join(truth, on="account_id").group_by("ring_id", "true_ring").agg(pl.len().alias("_both"))
    sizes_f = found.group_by("ring_id").agg(pl.len().alias("_f"))
    sizes_t = truth.group_by("true_ring").agg(pl.len().alias("_t"))
    jac = (
        overlap.join(sizes_f, on="ring_id")
        .join(sizes_t, on="true_ring")
        .with_columns((pl.col("_both") / (pl.col("_f") + pl.col("_t") - pl.col("_both"))).alias("jaccard"))
        .filter(pl.col("jaccard") >= min_jaccard)
    )
    n_true, n_found = sizes_t.height, sizes_f.height
    return {
        "wallet_precision": hit / found.height if found.height else float("nan"),
        "wallet_recall": hit / truth.height if truth.height else float("nan"),
        "ring_recall": jac.get_column("true_ring").n_unique() / n_true if n_true else float("nan"),
        "ring_precision": jac.get_column("ring_id").n_unique() / n_found if n_found else float("nan"),
        "n_true_rings": float(n_true),
        "n_found_rings": float(n_found),
    }

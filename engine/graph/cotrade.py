"""Co-trade graph: which wallets traded with which, how often and how much.

Only account-to-account trades count: a side that is a liquidity pool has a null
account and is left out (a pool is not a wallet that can be in a ring), and so are
trades of an account with itself. With `via_pools=True` a leg routed through a pool
counts as a trade between the two accounts on either side of it (`pool_routed_trades`):
a wash ring can pass its lot through the pool instead of the order book. Volumes are stroops of the pair's BASE asset
(the first asset of `pair_id`), so they compare within a pair; summed across pairs
they mix units and serve only as a rough size.
"""

from __future__ import annotations

import math

import polars as pl

TRADER_TRADE_COLUMNS = (
    "id",
    "pair_id",
    "closed_at",
    "seller",
    "buyer",
    "base_amount",
    "counter_amount",
    "seller_sold_base",
)


POOL_LEG_MAX_GAP_S = 60  # a sale into a pool and a purchase out of it this close (about 12 ledgers) form one routed leg
POOL_LEG_AMOUNT_TOLERANCE = 0.02  # ... when the amounts of the asset passed on differ by at most 2 %
# Legs are paired bucket by bucket (each leg in with the legs out of its bucket and the next few):
# a busy pool's pairs grow with the square of the bucket, so buckets are short and many
POOL_LEG_BUCKET_S = 20


def trader_trades(trades: pl.DataFrame, *, via_pools: bool = False) -> pl.DataFrame:
    """Account-to-account trades with amounts in base/counter terms.

    Input: canonical trades (engine.schemas.TRADES_SCHEMA). `via_pools`: add the
    legs routed through a liquidity pool (`pool_routed_trades`), and a column `out_id`
    (the id of a routed leg's trade out of the pool; null for direct trades).
    Shapes: -> [id: str, pair_id: str, closed_at: datetime, seller: str, buyer: str,
    base_amount: i64, counter_amount: i64, seller_sold_base: bool]
    (`seller_sold_base`: the seller gave the base asset and received the counter).
    """
    direct = _base_counter(
        trades.filter(
            pl.col("seller_account").is_not_null()
            & pl.col("buyer_account").is_not_null()
            & (pl.col("seller_account") != pl.col("buyer_account"))
        ).rename({"seller_account": "seller", "buyer_account": "buyer"})
    )
    if not via_pools:
        return direct
    return pl.concat([direct.with_columns(pl.lit(None, dtype=pl.String).alias("out_id")), pool_routed_trades(trades)])


def _base_counter(rows: pl.DataFrame) -> pl.DataFrame:
    """[id, pair_id, closed_at, seller, buyer, sold_*/bought_*] -> the trader-trade columns."""
    base = pl.col("pair_id").str.split("/").list.first()
    sold_base = pl.col("sold_asset") == base
    return rows.select(
        "id",
        "pair_id",
        "closed_at",
        "seller",
        "buyer",
        pl.when(sold_base).then(pl.col("sold_amount")).otherwise(pl.col("bought_amount")).alias("base_amount"),
        pl.when(sold_base).then(pl.col("bought_amount")).otherwise(pl.col("sold_amount")).alias("counter_amount"),
        sold_base.alias("seller_sold_base"),
    )


def pool_routed_trades(
    trades: pl.DataFrame, *, max_gap_s: int = POOL_LEG_MAX_GAP_S, tolerance: float = POOL_LEG_AMOUNT_TOLERANCE
) -> pl.DataFrame:
    """Legs passed from one account to another through a liquidity pool of the pair.

    Account X gives an asset to a pool of the pair and, within `max_gap_s` seconds after,
    account Y (not X) gets that asset out of a pool of the same pair, the two amounts
    within `tolerance`: X -> Y, as if X had sold to Y (X's amounts). Each leg out of a
    pool is matched at most once (to the closest leg in before it). Either orientation
    of a stored pool trade counts (the pool as seller or as buyer). The routed leg
    carries the id of X's trade, and `out_id` that of Y's.
    Shapes: -> the trader_trades columns + out_id: str.
    """
    sides = _pool_sides(trades)
    into = sides.select("id", "pair_id", "closed_at", "_b", pl.col("account").alias("seller"),
                        pl.col("gave_asset").alias("sold_asset"), pl.col("gave_amount").alias("sold_amount"),
                        pl.col("got_asset").alias("bought_asset"), pl.col("got_amount").alias("bought_amount"))
    out = sides.select("pair_id", pl.col("got_asset").alias("sold_asset"), pl.col("account").alias("buyer"),
                       pl.col("got_amount").alias("_out"), pl.col("id").alias("_out_id"),
                       pl.col("closed_at").alias("_out_at"), "_b")
    # every leg in x every leg out in the same or one of the next time buckets, up to the gap: on a
    # busy pool that is tens of millions of rows, so the pairs are filtered as they are joined
    # (streaming), never held
    pairs = pl.concat([
        into.lazy().join(out.lazy().with_columns(pl.col("_b") - k), on=["pair_id", "sold_asset", "_b"])
        for k in range(math.ceil(max_gap_s / POOL_LEG_BUCKET_S) + 1)
    ])
    gap = (pl.col("_out_at") - pl.col("closed_at")).dt.total_seconds()
    matched = (
        pairs.filter(
            (gap >= 0) & (gap <= max_gap_s) & (pl.col("buyer") != pl.col("seller"))
            & ((pl.col("_out") - pl.col("sold_amount")).abs() <= tolerance * pl.col("sold_amount"))
        )
        .collect(engine="streaming")
        .with_columns(gap.alias("_gap"), pl.min_horizontal("id", "_out_id").alias("_lo"),
                      pl.max_horizontal("id", "_out_id").alias("_hi"))
        .sort("_gap", "id", "_out_id")
        .unique("id", keep="first", maintain_order=True)
        .unique("_out_id", keep="first", maintain_order=True)
        # in one ledger the two legs also match the other way round (Y gave the counter asset,
        # X got it): the same hand-over seen from its other asset, kept once
        .unique(["_lo", "_hi"], keep="first", maintain_order=True)
        .sort("id")
    )
    routed = matched.with_columns(pl.col("_out_at").alias("closed_at"))
    return _base_counter(routed).with_columns(routed.get_column("_out_id").alias("out_id"))


def _pool_sides(trades: pl.DataFrame) -> pl.DataFrame:
    """Pool trades from the account's side: what it gave the pool and what it got.

    Shapes: -> [id, pair_id, closed_at, _b (POOL_LEG_BUCKET_S time bucket), account, gave_asset, gave_amount,
    got_asset, got_amount]"""
    acc_sold = pl.col("seller_account").is_not_null()
    pick = lambda a, b: pl.when(acc_sold).then(pl.col(a)).otherwise(pl.col(b))  # noqa: E731
    return trades.filter(
        (pl.col("seller_pool_id").is_not_null() & pl.col("buyer_account").is_not_null())
        | (pl.col("buyer_pool_id").is_not_null() & pl.col("seller_account").is_not_null())
    ).select(
        "id", "pair_id", "closed_at", (pl.col("closed_at").dt.epoch("s") // POOL_LEG_BUCKET_S).alias("_b"),
        pick("seller_account", "buyer_account").alias("account"),
        pick("sold_asset", "bought_asset").alias("gave_asset"), pick("sold_amount", "bought_amount").alias("gave_amount"),
        pick("bought_asset", "sold_asset").alias("got_asset"), pick("bought_amount", "sold_amount").alias("got_amount"),
    )


def cotrade_edges(trades: pl.DataFrame) -> pl.DataFrame:
    """Directed trade edges seller -> buyer per pair.

    Shapes: -> [pair_id: str, seller: str, buyer: str, n_trades: u32, volume: i64 (base stroops)]
    """
    return (
        trader_trades(trades)
        .group_by("pair_id", "seller", "buyer")
        .agg(pl.len().alias("n_trades"), pl.col("base_amount").sum().alias("volume"))
        .sort("pair_id", "seller", "buyer")
    )


def cotrade_graph(trades: pl.DataFrame) -> pl.DataFrame:
    """Undirected weighted co-trade edges between wallets, over all pairs.

    `n_ab` counts trades where account_a sold to account_b, `n_ba` the reverse.
    Shapes: -> [account_a: str, account_b: str, n_trades: u32, volume: i64, n_pairs: u32,
    n_ab: u32, n_ba: u32], account_a < account_b.
    """
    tt = trader_trades(trades)
    a_sells = pl.col("seller") < pl.col("buyer")
    return (
        tt.select(
            pl.min_horizontal("seller", "buyer").alias("account_a"),
            pl.max_horizontal("seller", "buyer").alias("account_b"),
            "pair_id",
            "base_amount",
            a_sells.alias("_ab"),
        )
        .group_by("account_a", "account_b")
        .agg(
            pl.len().alias("n_trades"),
            pl.col("base_amount").sum().alias("volume"),
            pl.col("pair_id").n_unique().alias("n_pairs"),
            pl.col("_ab").sum().cast(pl.UInt32).alias("n_ab"),
            (~pl.col("_ab")).sum().cast(pl.UInt32).alias("n_ba"),
        )
        .sort("account_a", "account_b")
    )

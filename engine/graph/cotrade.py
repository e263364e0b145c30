"""Co-trade graph: which wallets traded with which, how often and how much.

Only account-to-account trades count: a side that is a liquidity pool has a null
account and is left out (a pool is not a wallet that can be in a ring), and so are
trades of an account with itself. Volumes are stroops of the pair's BASE asset
(the first asset of `pair_id`), so they compare within a pair; summed across pairs
they mix units and serve only as a rough size.
"""

from __future__ import annotations

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


def trader_trades(trades: pl.DataFrame) -> pl.DataFrame:
    """Account-to-account trades with amounts in base/counter terms.

    Input: canonical trades (engine.schemas.TRADES_SCHEMA).
    Shapes: -> [id: str, pair_id: str, closed_at: datetime, seller: str, buyer: str,
    base_amount: i64, counter_amount: i64, seller_sold_base: bool]
    (`seller_sold_base`: the seller gave the base asset and received the counter).
    """
    base = pl.col("pair_id").str.split("/").list.first()
    sold_base = pl.col("sold_asset") == base
    return trades.filter(
        pl.col("seller_account").is_not_null()
        & pl.col("buyer_account").is_not_null()
        & (pl.col("seller_account") != pl.col("buyer_account"))
    ).select(
        "id",
        "pair_id",
        "closed_at",
        pl.col("seller_account").alias("seller"),
        pl.col("buyer_account").alias("buyer"),
        pl.when(sold_base).then(pl.col("sold_amount")).otherwise(pl.col("bought_amount")).alias("base_amount"),
        pl.when(sold_base).then(pl.col("bought_amount")).otherwise(pl.col("sold_amount")).alias("counter_amount"),
        sold_base.alias("seller_sold_base"),
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

"""Time-windowed edge snapshots: the raw material of the temporal graph (graph ML).

One long edge list over a window [start, end): every trade (value flows from the
seller to the buyer in the sold asset) and every funding edge. A trade side that
is a liquidity pool is represented by its pool id, so pools stay visible as nodes.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

SNAPSHOT_SCHEMA = {
    "src": pl.String,
    "dst": pl.String,
    "timestamp": pl.Datetime("us", "UTC"),
    "asset": pl.String,
    "amount": pl.Int64,
    "kind": pl.String,
}


def snapshot_edges(trades: pl.DataFrame, funding: pl.DataFrame, *, start: datetime, end: datetime) -> pl.DataFrame:
    """Trade and funding edges closed in [start, end), ordered by time.

    Input: canonical trades (TRADES_SCHEMA) and funding edges (Store.funding_edges()).
    Shapes: -> [src: str, dst: str, timestamp: datetime UTC, asset: str,
    amount: i64 (stroops), kind: "trade" | "funding"], sorted by timestamp, kind, src, dst.
    """
    in_window = (pl.col("closed_at") >= start) & (pl.col("closed_at") < end)
    trade_edges = trades.filter(in_window).select(
        pl.coalesce("seller_account", "seller_pool_id").alias("src"),
        pl.coalesce("buyer_account", "buyer_pool_id").alias("dst"),
        pl.col("closed_at").alias("timestamp"),
        pl.col("sold_asset").alias("asset"),
        pl.col("sold_amount").alias("amount"),
        pl.lit("trade").alias("kind"),
    )
    funding_edges = funding.filter(in_window & pl.col("from_account").is_not_null() & pl.col("to_account").is_not_null()).select(
        pl.col("from_account").alias("src"),
        pl.col("to_account").alias("dst"),
        pl.col("closed_at").alias("timestamp"),
        "asset",
        "amount",
        pl.lit("funding").alias("kind"),
    )
    out = pl.concat([trade_edges.cast(SNAPSHOT_SCHEMA), funding_edges.cast(SNAPSHOT_SCHEMA)])
    return out.sort("timestamp", "kind", "src", "dst")

"""Reads of the rings step, a batch of asset pairs at a time (see engine.services.rings).

Trades come straight from `trade_rows` with the store's integer account keys (no join
back to the 56-character ids), so a batch of pairs costs a few bytes per wallet column;
`account_keys` maps the keys back. `Store` inherits these methods.
"""

from __future__ import annotations

import polars as pl

# The columns the graph steps read (engine.graph.cotrade, closed_loops), accounts as keys
_RING_TRADE_COLUMNS = (
    "id, op_id, pair_id, closed_at, seller_key AS seller_account, seller_pool_id, buyer_key AS buyer_account, "
    "buyer_pool_id, sold_asset, sold_amount, bought_asset, bought_amount"
)


class RingReads:
    """Pair-batched reads for the rings step (mixed into `Store`, which provides `_frame`)."""

    def pair_sizes(self) -> pl.DataFrame:
        """Shapes: -> [pair_id: str, n_trades: i64], sorted by pair_id."""
        return self._frame("SELECT pair_id, count(*) AS n_trades FROM trade_rows GROUP BY pair_id ORDER BY pair_id")

    def account_keys(self) -> pl.DataFrame:
        """Shapes: -> [account_key: i32, account_id: str] of every account that traded."""
        return self._frame("SELECT account_key, account_id FROM account_keys")

    def pair_trades(self, pair_ids: list[str]) -> pl.DataFrame:
        """Every trade of the pairs `pair_ids`, ordered as `trades()`, with the store's account
        keys in seller_account / buyer_account (i32; null for a pool side).

        Shapes: -> [id, op_id, pair_id, closed_at, seller_account, seller_pool_id, buyer_account,
        buyer_pool_id, sold_asset, sold_amount, bought_asset, bought_amount]"""
        return self._frame(
            f"SELECT {_RING_TRADE_COLUMNS} FROM trade_rows WHERE pair_id IN (SELECT unnest(?)) ORDER BY op_id, id",
            [list(pair_ids)],
        )

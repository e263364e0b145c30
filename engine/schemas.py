"""Canonical frame schemas: the data contract between ingestion, the store and analysis.

Every source (Horizon, data lake, files, simulator) produces frames with exactly
these columns and dtypes; `storage/` persists them as they are, and analysis reads
them back in the same shape. Amounts are exact int64 stroops (1 unit = 10^7),
prices are rationals (price_n, price_d), timestamps are UTC.

A trade is stored seller/buyer: `seller_*` sold `sold_amount` of `sold_asset` to
`buyer_*`, who gave `bought_amount` of `bought_asset` in return. `price_n/price_d`
is bought per sold from the seller's side (what the seller got per unit given).
A side is an account or a liquidity pool (then `*_account` is null).
"""

from __future__ import annotations

import polars as pl

STROOPS_PER_UNIT = 10_000_000
NATIVE_ASSET = "XLM:native"
UTC_DATETIME = pl.Datetime("us", "UTC")

TRADES_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String,  # Horizon paging token "{operation_id}-{fill_index}"
    "op_id": pl.Int64,
    "ledger": pl.Int64,  # op_id >> 32
    "closed_at": UTC_DATETIME,
    "trade_type": pl.String,  # "orderbook" | "liquidity_pool"
    "pair_id": pl.String,  # canonical "BASE/COUNTER", see engine.assets.pair_id
    "seller_account": pl.String,
    "seller_offer_id": pl.Int64,
    "seller_pool_id": pl.String,
    "buyer_account": pl.String,
    "buyer_offer_id": pl.Int64,
    "buyer_pool_id": pl.String,
    "sold_asset": pl.String,
    "sold_amount": pl.Int64,  # stroops
    "bought_asset": pl.String,
    "bought_amount": pl.Int64,  # stroops
    "price_n": pl.Int64,
    "price_d": pl.Int64,
    "source": pl.String,  # "horizon" | "datalake" | "files" | "synthetic"
}

# Operations relevant to funding lineage and offer behaviour. One row per operation.
OPERATIONS_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64,  # operation id (TOID)
    "ledger": pl.Int64,
    "closed_at": UTC_DATETIME,
    "type": pl.String,  # Horizon operation type name, e.g. "create_account"
    "tx_hash": pl.String,
    "successful": pl.Boolean,
    "source_account": pl.String,  # operation source
    "from_account": pl.String,  # who value left (funding ops), else null
    "to_account": pl.String,  # who value reached (funding ops), else null
    "asset": pl.String,  # asset delivered (funding ops) or offer selling asset
    "amount": pl.Int64,  # stroops delivered; offer amount for manage offers
    "source_asset": pl.String,  # path payments: asset sent
    "source_amount": pl.Int64,  # path payments: stroops sent
    "offer_id": pl.Int64,  # manage offers (0 = new offer)
    "buying_asset": pl.String,  # manage offers
    "price_n": pl.Int64,
    "price_d": pl.Int64,
    "balance_id": pl.String,  # claimable balances
    "memo": pl.String,  # untrusted text from the ledger
    "source": pl.String,
}

# Operation types that move value from one account to another: the funding edges.
FUNDING_TYPES: tuple[str, ...] = (
    "create_account",
    "payment",
    "path_payment_strict_send",
    "path_payment_strict_receive",
    "account_merge",
    "create_claimable_balance",
    "claim_claimable_balance",
)
OFFER_TYPES: tuple[str, ...] = (
    "manage_sell_offer",
    "manage_buy_offer",
    "create_passive_sell_offer",
)

# Records that could not be loaded. Nothing is dropped silently.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String,  # "horizon" | "datalake" | "files" | ...
    "location": pl.String,  # file:line, ledger N, URL — where to look
    "record_id": pl.String,  # the record's own id when it has one
    "reason": pl.String,  # what is wrong and what to do
    "raw": pl.String,  # the raw text as received
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with the given schema."""
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select and cast `frame` to `schema`, adding missing columns as nulls.

    Raises ValueError naming the column when a cast is impossible.
    """
    cols = []
    for name, dtype in schema.items():
        if name in frame.columns:
            cols.append(pl.col(name).cast(dtype, strict=True))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    try:
        return frame.select(cols)
    except pl.exceptions.PolarsError as exc:  # pragma: no cover - message path
        raise ValueError(f"frame does not fit the canonical schema: {exc}") from exc

"""Input frame contracts and the per-wallet "side" view of trades.

A trade has two sides. `trade_sides` turns each trade into one row per
account side (pools are counterparties, never wallets), describing what the
wallet gave and got, so every feature reads "who sold what" rather than
Horizon's base/counter orientation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from engine.schemas import OPERATIONS_SCHEMA, TRADES_SCHEMA, UTC_DATETIME
from storage.errors import BadInput

# Columns the features read from each input; dtypes are checked at load.
TRADE_COLUMNS: dict[str, pl.DataType] = {
    c: TRADES_SCHEMA[c]
    for c in ("id", "op_id", "ledger", "closed_at", "pair_id", "seller_account", "seller_pool_id",
              "buyer_account", "buyer_pool_id", "sold_asset", "sold_amount", "bought_asset", "bought_amount")
}  # fmt: skip
OPERATION_COLUMNS: dict[str, pl.DataType] = {
    c: OPERATIONS_SCHEMA[c]
    for c in ("id", "closed_at", "type", "successful", "source_account", "from_account", "to_account",
              "asset", "amount", "offer_id", "buying_asset")
}  # fmt: skip
ACCOUNTS_SCHEMA: dict[str, pl.DataType] = {"account_id": pl.String, "created_at": UTC_DATETIME, "funder": pl.String}
ANCESTORS_SCHEMA: dict[str, pl.DataType] = {"account_id": pl.String, "ancestor": pl.String, "depth": pl.Int64}
RING_MEMBERS_SCHEMA: dict[str, pl.DataType] = {"account_id": pl.String, "ring_id": pl.String}

# The per-wallet view of a trade (one row per account side).
# wallet / counterparty / pair_id are Categorical: group-bys and joins run on
# integer codes (polars' global categories), strings come back at the end.
SIDES_SCHEMA: dict[str, pl.DataType] = {
    "wallet": pl.Categorical(),
    "counterparty": pl.Categorical(),  # account or pool id
    "cp_is_pool": pl.Boolean,
    "pair_id": pl.Categorical(),
    "trade_id": pl.String,
    "op_id": pl.Int64,
    "ledger": pl.Int64,
    "closed_at": UTC_DATETIME,
    "ts": pl.Int64,  # unix seconds
    "gave_asset": pl.String,
    "gave_amount": pl.Int64,  # stroops
    "got_asset": pl.String,
    "got_amount": pl.Int64,
    "base_amount": pl.Int64,  # stroops of the pair's base asset
    "sold_base": pl.Boolean,  # the wallet gave the pair's base asset
}


@dataclass(frozen=True)
class FeatureConfig:
    """Options of the feature matrix (all documented in FEATURE_DICTIONARY)."""

    lookback: timedelta = timedelta(days=30)  # window of the non-Benford features
    windows: tuple[tuple[str, timedelta], ...] = (
        ("1h", timedelta(hours=1)),
        ("4h", timedelta(hours=4)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
    )
    round_trip_ledgers: int = 100  # an asset must come back within this many ledgers
    round_trip_tolerance: float = 0.01  # ... with an amount within 1 %
    cluster_seconds: int = 60  # intra-minute clustering
    sync_seconds: int = 60  # cross-pair synchrony
    spike_baseline_days: int = 7  # rolling baseline of the volume-spike ratio
    off_hours: int = 6  # the N quietest UTC hours of the market are "off hours"
    min_trades_shape: int = 5  # below: shape features (shares, CV, tail) are missing
    ancestor_depth: int = 4
    pagerank_damping: float = 0.85


def require(frame: pl.DataFrame, schema: dict[str, pl.DataType], name: str) -> pl.DataFrame:
    """`frame` restricted to `schema`'s columns, cast to its dtypes; BadInput naming what is wrong."""
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise BadInput(f"{name} frame lacks columns {missing}; expected {list(schema)}")
    try:
        return frame.select(pl.col(c).cast(t, strict=True) for c, t in schema.items())
    except pl.exceptions.PolarsError as exc:
        raise BadInput(f"{name} frame has a column of the wrong type ({exc}); expected {schema}") from exc


def trade_sides(
    trades: pl.DataFrame, *, as_of: datetime, lookback: timedelta, part: int | None = None
) -> pl.DataFrame:
    """Account sides of the trades with as_of - lookback < closed_at <= as_of; with `part`,
    only the sides of the wallets of that partition (seller_part / buyer_part == part,
    engine.features.partitions).

    Shapes: SIDES_SCHEMA columns, one row per (trade, account side).
    """
    columns = TRADE_COLUMNS if part is None else {**TRADE_COLUMNS, "seller_part": pl.Int64, "buyer_part": pl.Int64}
    t = require(trades, columns, "trades").filter(
        (pl.col("closed_at") <= as_of) & (pl.col("closed_at") > as_of - lookback)
    )
    base = pl.col("pair_id").str.split("/").list.first()
    common = ("pair_id", pl.col("id").alias("trade_id"), "op_id", "ledger", "closed_at")
    seller = (t if part is None else t.filter(pl.col("seller_part") == part)).select(
        *common,
        wallet=pl.col("seller_account"),
        counterparty=pl.coalesce("buyer_account", "buyer_pool_id"),
        cp_is_pool=pl.col("buyer_account").is_null(),
        gave_asset=pl.col("sold_asset"), gave_amount=pl.col("sold_amount"),
        got_asset=pl.col("bought_asset"), got_amount=pl.col("bought_amount"),
    )
    buyer = (t if part is None else t.filter(pl.col("buyer_part") == part)).select(
        *common,
        wallet=pl.col("buyer_account"),
        counterparty=pl.coalesce("seller_account", "seller_pool_id"),
        cp_is_pool=pl.col("seller_account").is_null(),
        gave_asset=pl.col("bought_asset"), gave_amount=pl.col("bought_amount"),
        got_asset=pl.col("sold_asset"), got_amount=pl.col("sold_amount"),
    )
    return (
        pl.concat([seller, buyer]).filter(pl.col("wallet").is_not_null())
        .with_columns(
            ts=pl.col("closed_at").dt.epoch("s"),
            sold_base=pl.col("gave_asset") == base,
        )
        .with_columns(base_amount=pl.when("sold_base").then("gave_amount").otherwise("got_amount"))
        .select(pl.col(c).cast(t) for c, t in SIDES_SCHEMA.items())
    )


def keys_of(sides: pl.DataFrame) -> pl.DataFrame:
    """The (wallet, pair_id) rows of the feature matrix."""
    return sides.select("wallet", "pair_id").unique()


def ranked(frame: pl.DataFrame, key: list[str], order: list[str], *, descending: bool = False) -> pl.DataFrame:
    """`frame` sorted by key then order, with `_r`: 1-based position of the row in
    its key group, and `_same`: the previous row is in the same group. Plain
    shifts over the sorted frame, cheaper than window (`over`) expressions."""
    s = frame.sort([*key, *order], descending=[False] * len(key) + [descending] * len(order))
    same = pl.all_horizontal([pl.col(k) == pl.col(k).shift(1) for k in key]).fill_null(False)
    idx = pl.int_range(pl.len(), dtype=pl.Int64)
    return s.with_columns(_same=same).with_columns(
        _r=idx - pl.when(~pl.col("_same")).then(idx).forward_fill() + 1
    )


@dataclass(frozen=True)
class Codes:
    """Integer codes (UInt32) of the account, pool and pair ids of a side view.

    names is sorted, and an id's code is its position: code order is name order.
    """

    names: pl.Series  # String, sorted, unique
    codes: pl.Series  # UInt32, 0 .. len(names) - 1

    def encode(self, expr: pl.Expr) -> pl.Expr:
        """String / Categorical ids -> codes (null when unknown)."""
        return expr.replace_strict(self.names, self.codes, default=None, return_dtype=pl.UInt32)

    def decode(self, expr: pl.Expr) -> pl.Expr:
        """Codes -> String ids."""
        return expr.replace_strict(self.codes, self.names, default=None, return_dtype=pl.String)


CODED = ("wallet", "counterparty", "pair_id")


def encode(sides: pl.DataFrame) -> tuple[pl.DataFrame, Codes]:
    """(coded sides, codes): wallet, counterparty and pair_id of `sides` (SIDES_SCHEMA: Categorical) as UInt32 codes.

    Group-bys, joins and sorts on integers are several times faster than on
    Categorical columns (polars' categorical codes are not stable across frames,
    so they cannot serve as join keys themselves). Frames joined to the coded
    view go through `categorical(..., codes=codes)`.
    """
    ids = pl.concat([sides.get_column(c).unique() for c in CODED])  # Categorical, one set of categories
    names = ids.cast(pl.String).unique().sort()
    codes = Codes(names=names, codes=pl.int_range(len(names), dtype=pl.UInt32, eager=True))
    # Each distinct id is looked up by name once; the rows map their categorical codes (integers).
    table = ids.unique().to_frame("id").select(physical=pl.col("id").to_physical(), code=codes.encode(pl.col("id")))
    physical, code = table.get_column("physical"), table.get_column("code")
    return sides.with_columns(pl.col(c).to_physical().replace_strict(physical, code, return_dtype=pl.UInt32) for c in CODED), codes


def categorical(frame: pl.DataFrame, *cols: str, codes: Codes | None = None) -> pl.DataFrame:
    """String id columns made joinable with the side view's keys: Categorical,
    or with `codes`, the coded view's integer codes (unknown ids become null)."""
    if codes is None:
        return frame.with_columns(pl.col(c).cast(pl.Categorical()) for c in cols)
    return frame.with_columns(codes.encode(pl.col(c)) for c in cols)

"""The SQL features of one wallet partition, run in memory (the features step's unit of work).

The shape features (storage.shape_features) and, given the market's other inputs, the
context features (storage.context_features) of the wallets of one partition, computed by an
in-memory DuckDB of one thread over frames the caller holds (the features step runs two
partitions at once; Spark runs the same on its executors). The ids go in as integer keys (the
trade ids' are row numbers in (op_id, id) order: they break ties), the assets as names, and
come back as ids: DuckDB's window sorts and hash tables over 56-character account ids,
64-character pool ids and pair ids took three times the memory, spilled past the
connection's budget and doubled the time (a 4M-trade market's largest partition, 817k
trades: 6.9 s with accounts keyed, 3.1 s with every id keyed). The account and pair keys are
the store's when its reads bring them (MarketInputs.store_keys; at 10M trades, keying the
ids here took 22 of the partitions' 165 thread-seconds), else made here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import duckdb
import polars as pl

from storage.context_features import (
    ACCOUNT_COLUMNS,
    LINEAGE_COLUMNS,
    LOOP_COLUMNS,
    OFFER_COLUMNS,
    RING_COLUMNS,
    ContextOptions,
    context_features_sql,
)
from storage.shape_features import HOURS_COLUMNS, SOURCE_COLUMNS, ShapeOptions, shape_feature_params, shape_features_sql

_TS = pl.Datetime("us", "UTC")
# the context relations: their columns' dtypes (an absent input is an empty relation) and account id columns
_CONTEXT: dict[str, tuple[dict[str, pl.DataType], tuple[str, ...]]] = {
    "offers": (dict(zip(OFFER_COLUMNS, (_TS, pl.String, pl.Boolean, pl.String, pl.String, pl.String, pl.Int64,
                                        pl.Int64), strict=True)), ("source_account",)),  # fmt: skip
    "accounts": (dict(zip(ACCOUNT_COLUMNS, (pl.String, _TS), strict=True)), ("account_id",)),
    "lineage": (dict(zip(LINEAGE_COLUMNS, (pl.String, pl.String, pl.Int64), strict=True)), ("account_id", "ancestor")),
    "ring_members": (dict(zip(RING_COLUMNS, (pl.String, pl.String), strict=True)), ("account_id",)),
    "loop_trades": ({LOOP_COLUMNS[0]: pl.String}, ()),
}


# The store's integer keys a routed read gives its trades (storage.feature_reads): the accounts'
# (account_keys) and the pair's (its position among the read's pairs), and its offers' source
STORE_KEYS = ("seller_key", "buyer_key", "pair_key")
OFFER_KEY = "source_key"
# the context relations' account columns (the features step keys them with the store's keys once)
CONTEXT_ACCOUNTS = {name: columns for name, (_, columns) in _CONTEXT.items()}

# the context features whose one input is not the trades (the others are null without it anyway)
_READS_ONLY = (("ring_members", "ring_size"), ("ring_members", "ring_cp_share"), ("loop_trades", "loop_share"))


class FeatureOptions(ShapeOptions, ContextOptions, Protocol):
    """The options both definitions read (engine.features.sides.FeatureConfig)."""


@dataclass(frozen=True)
class MarketInputs:
    """The market's inputs beside the trades, each None when it was not computed: its relation is
    empty, and the features that read only it are null (an empty frame means "none": no ring is
    ring_size 0, while rings never computed say nothing).

    offers: the offer operations (OFFER_COLUMNS; others are ignored); accounts: account_id,
    created_at; lineage: account_id, ancestor, depth; ring_members: account_id, ring_id;
    loop_trades: trade_id. The accounts and lineage of accounts that are not the partition's are
    left out before the SQL runs.
    """

    offers: pl.DataFrame | None = None
    accounts: pl.DataFrame | None = None
    lineage: pl.DataFrame | None = None
    ring_members: pl.DataFrame | None = None
    loop_trades: pl.DataFrame | None = None
    # the accounts of accounts, lineage and ring_members are the store's integer keys, and the trades
    # carry theirs (STORE_KEYS) and the offers their source's (OFFER_KEY): no id is hashed here
    store_keys: bool = False


def partition_features_of(
    trades: pl.DataFrame, *, as_of: datetime, options: FeatureOptions, hours: pl.DataFrame, part: int | None = None,
    inputs: MarketInputs | None = None,
) -> pl.DataFrame:  # fmt: skip
    """wallet, pair_id and the shape features of partition `part`'s wallets (every wallet when
    None), then, given `inputs`, the context features, from trades in memory (SOURCE_COLUMNS;
    the parts only with `part`; STORE_KEYS too when `inputs.store_keys`) and the market hours
    (HOURS_COLUMNS)."""
    if part is None:
        trades = trades.with_columns(seller_part=pl.lit(0, pl.Int64), buyer_part=pl.lit(0, pl.Int64))
    store_keys = inputs is not None and inputs.store_keys
    trades = trades.select(*SOURCE_COLUMNS, *(STORE_KEYS if store_keys else ()))
    if not _in_trade_order(trades):  # (the store's reads are; the trade keys are row numbers in that order)
        trades = trades.sort("op_id", "id", nulls_last=False, maintain_order=True)
    frames, account_ids, pair_ids = (_by_store_keys if store_keys else _by_keys_made_here)(trades, inputs)
    pools, _ = _keyed(trades.get_column("seller_pool_id"), trades.get_column("buyer_pool_id"))
    frames["trades"], loops = _trade_keys(frames["trades"].with_columns(*pools), frames.get("loop_trades"))
    if loops is not None:
        frames["loop_trades"] = loops
    params = shape_feature_params(as_of, options, part=part or 0)
    with duckdb.connect(config={"threads": 1, "memory_limit": "512MB", "preserve_insertion_order": False}) as con:
        con.execute("SET TimeZone = 'UTC'")
        for name, frame in frames.items():
            con.register(name, frame.to_arrow())
        con.register("market_hours", hours.select(HOURS_COLUMNS).to_arrow())
        got = pl.from_arrow(con.sql(shape_features_sql(options), params=params).to_arrow_table())
        if inputs is not None:
            more = pl.from_arrow(con.sql(context_features_sql(options), params=params).to_arrow_table())
            got = got.join(more, on=["wallet", "pair_id"], how="left").with_columns(
                pl.lit(None, pl.Float64).alias(f) for name, f in _READS_ONLY if getattr(inputs, name) is None
            )
    return got.with_columns(_decoded(got.get_column("wallet"), account_ids), _decoded(got.get_column("pair_id"), pair_ids))


def _by_keys_made_here(trades: pl.DataFrame, inputs: MarketInputs | None) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    """The relations with the accounts and pairs keyed (one key space for the accounts of every
    relation, `_keyed`), and the keys' ids [key, id] of each."""
    context = {} if inputs is None else _context(inputs, pl.String, trades.get_column("seller_account"),
                                                 trades.get_column("buyer_account"))  # fmt: skip
    account_columns = [("trades", "seller_account"), ("trades", "buyer_account")]
    account_columns += [(name, c) for name in context for c in CONTEXT_ACCOUNTS[name]]
    frames = {"trades": trades, **context}
    accounts, account_ids = _keyed(*(frames[name].get_column(c) for name, c in account_columns))
    for (name, _), keyed in zip(account_columns, accounts, strict=True):
        frames[name] = frames[name].with_columns(keyed)
    (pairs,), pair_ids = _keyed(trades.get_column("pair_id"))
    frames["trades"] = frames["trades"].with_columns(pairs)
    return frames, _positions(account_ids), _positions(pair_ids)


def _by_store_keys(trades: pl.DataFrame, inputs: MarketInputs) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    """`_by_keys_made_here` when the store's keys came with the trades, the offers and the context
    (MarketInputs.store_keys): the keys' ids from the trades' own columns."""
    seller, buyer = trades.get_column("seller_key"), trades.get_column("buyer_key")
    frames = {"trades": trades.with_columns(seller_account=seller, buyer_account=buyer, pair_id=pl.col("pair_key")),
              **_context(inputs, seller.dtype, seller, buyer)}  # fmt: skip
    account_ids = pl.concat([trades.select(key=f"{side}_key", id=f"{side}_account") for side in ("seller", "buyer")])
    return (frames, account_ids.drop_nulls("key").unique("key"),
            trades.select(key="pair_key", id="pair_id").unique("key"))  # fmt: skip


def _positions(ids: pl.Series) -> pl.DataFrame:
    """[key, id] of ids whose key is their position."""
    return pl.DataFrame({"key": pl.int_range(len(ids), dtype=pl.UInt32, eager=True), "id": ids})


def _decoded(keys: pl.Series, ids: pl.DataFrame) -> pl.Series:
    """The ids of `keys` ([key, id] `ids`)."""
    return keys.replace_strict(ids.get_column("key"), ids.get_column("id"), return_dtype=pl.String).alias(keys.name)


def _context(inputs: MarketInputs, account: pl.DataType, *traders: pl.Series) -> dict[str, pl.DataFrame]:
    """The context relations as frames of their dtypes (accounts as ids or, with the store's keys,
    of `account`), the rows of other accounts left out."""
    traders = pl.concat([t.cast(account) for t in traders]).drop_nulls().unique()
    out = {}
    for name, (schema, columns) in _CONTEXT.items():
        schema = {c: account if c in columns else t for c, t in schema.items()}
        frame = getattr(inputs, name)
        if frame is not None and name == "offers" and inputs.store_keys:
            frame = frame.with_columns(source_account=pl.col(OFFER_KEY))
        frame = pl.DataFrame(schema=schema) if frame is None else frame.select(pl.col(c).cast(t) for c, t in schema.items())
        if name in ("accounts", "lineage"):  # (a ring's size counts every member)
            frame = frame.filter(pl.col("account_id").is_in(traders.implode()))
        out[name] = frame
    return out


def _trade_keys(trades: pl.DataFrame, loops: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The trades (in (op_id, id) order, nulls first) with their ids as keys, and the loops'
    trade ids as the same keys (those of no trade here left out). The SQL only orders by the
    ids after the time and op_id (ties) and finds the loops' trades by them, so a key is the
    trade's row number. A sort of the ids themselves, a dense rank, took 0.3 s of a
    300k-trade partition, and ranking the market's loop trades with them (600k at 10M
    trades) 0.6 s more."""
    keys = trades.select("id", key=pl.int_range(pl.len(), dtype=pl.UInt32))
    if loops is not None:
        loops = loops.join(keys, left_on="trade_id", right_on="id", how="inner").select(trade_id="key")
    return trades.with_columns(id=keys.get_column("key")), loops


def _in_trade_order(trades: pl.DataFrame) -> bool:
    """Whether the trades are in (op_id, id) order, neither ever null."""
    op, tid = pl.col("op_id"), pl.col("id")
    later = (op > op.shift()) | ((op == op.shift()) & (tid >= tid.shift()))
    checks = trades.select(nulls=op.null_count() + tid.null_count(), later=later.slice(1).all())
    return checks.item(0, "nulls") == 0 and bool(checks.item(0, "later"))


def _keyed(*columns: pl.Series) -> tuple[list[pl.Series], pl.Series]:
    """(the columns as keys, the ids): one key space over all the columns, a key being the id's
    position in `ids`, in order of first appearance (a hash table: a sort of a partition's
    account ids took 0.6 s)."""
    ids = pl.concat([c.cast(pl.String) for c in columns])
    distinct = ids.drop_nulls().unique(maintain_order=True)
    keys = ids.replace_strict(distinct, pl.int_range(len(distinct), dtype=pl.UInt32, eager=True), default=None,
                              return_dtype=pl.UInt32)  # fmt: skip
    out, at = [], 0
    for c in columns:
        out.append(keys.slice(at, len(c)).alias(c.name))
        at += len(c)
    return out, distinct

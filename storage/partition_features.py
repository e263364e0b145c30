"""The SQL features of one wallet partition, run in memory (the features step's unit of work).

The shape features (storage.shape_features) and, given the market's other inputs, the
context features (storage.context_features) of the wallets of one partition, computed by an
in-memory DuckDB of one thread over frames the caller holds (the features step runs two
partitions at once; Spark runs the same on its executors). The accounts go in as integer
keys and come back as ids: DuckDB's sorts and hash tables over 56-character ids took three
times the memory and more time.
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


class FeatureOptions(ShapeOptions, ContextOptions, Protocol):
    """The options both definitions read (engine.features.sides.FeatureConfig)."""


@dataclass(frozen=True)
class MarketInputs:
    """The market's inputs beside the trades, each None when absent (its relation is empty).

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


def partition_features_of(
    trades: pl.DataFrame, *, as_of: datetime, options: FeatureOptions, hours: pl.DataFrame, part: int | None = None,
    inputs: MarketInputs | None = None,
) -> pl.DataFrame:  # fmt: skip
    """wallet, pair_id and the shape features of partition `part`'s wallets (every wallet when
    None), then, given `inputs`, the context features, from trades in memory (SOURCE_COLUMNS;
    the parts only with `part`) and the market hours (HOURS_COLUMNS)."""
    if part is None:
        trades = trades.with_columns(seller_part=pl.lit(0, pl.Int64), buyer_part=pl.lit(0, pl.Int64))
    traders = _ids(trades.get_column("seller_account"), trades.get_column("buyer_account"))
    context = _context(inputs, traders) if inputs is not None else {}
    keys = _ids(traders, *(f.get_column(c) for name, f in context.items() for c in _CONTEXT[name][1]))
    params = shape_feature_params(as_of, options, part=part or 0)
    with duckdb.connect(config={"threads": 1, "memory_limit": "512MB", "preserve_insertion_order": False}) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("trades", _encoded(trades.select(SOURCE_COLUMNS), ("seller_account", "buyer_account"), keys))
        con.register("market_hours", hours.select(HOURS_COLUMNS).to_arrow())
        got = pl.from_arrow(con.sql(shape_features_sql(options), params=params).to_arrow_table())
        if inputs is not None:
            for name, frame in context.items():
                con.register(name, _encoded(frame, _CONTEXT[name][1], keys))
            more = pl.from_arrow(con.sql(context_features_sql(options), params=params).to_arrow_table())
            got = got.join(more, on=["wallet", "pair_id"], how="left")
    return got.with_columns(_decode(pl.col("wallet"), keys))


def _context(inputs: MarketInputs, traders: pl.Series) -> dict[str, pl.DataFrame]:
    """The context relations as frames of their dtypes, the rows of other accounts left out."""
    out = {}
    for name, (schema, _) in _CONTEXT.items():
        frame = getattr(inputs, name)
        frame = pl.DataFrame(schema=schema) if frame is None else frame.select(pl.col(c).cast(t) for c, t in schema.items())
        if name in ("accounts", "lineage"):  # (a ring's size counts every member)
            frame = frame.filter(pl.col("account_id").is_in(traders.implode()))
        out[name] = frame
    return out


def _ids(*ids: pl.Series) -> pl.Series:
    """The distinct ids of `ids` (a key is a position)."""
    return pl.concat([s.cast(pl.String) for s in ids]).drop_nulls().unique()


def _encoded(frame: pl.DataFrame, columns: tuple[str, ...], keys: pl.Series):
    """`frame` as Arrow with its account id columns as integer keys."""
    codes = pl.int_range(len(keys), dtype=pl.UInt32, eager=True)
    return frame.with_columns(
        pl.col(c).cast(pl.String).replace_strict(keys, codes, default=None, return_dtype=pl.UInt32) for c in columns
    ).to_arrow()


def _decode(codes: pl.Expr, keys: pl.Series) -> pl.Expr:
    return codes.replace_strict(pl.int_range(len(keys), dtype=pl.UInt32, eager=True), keys, return_dtype=pl.String)

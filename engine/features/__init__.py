"""Wallet features per (wallet, pair), computed "as of" a time t from data up to t.

`build_feature_matrix` is the entry point for frames in memory: one row per
(wallet, pair_id) the wallet traded in during the lookback (default 30 days)
before `as_of`, with the columns of FEATURE_DICTIONARY (engine.features.dictionary)
plus the missing indicators. Only trades with closed_at <= as_of, operations with
closed_at <= as_of and accounts created by as_of are read. Everything is
vectorised: the trade-shape features are one SQL definition (storage.shape_features,
on an in-memory DuckDB here), the rest polars group_bys/joins, numpy bincounts and one
sparse PageRank.
A market too big for memory goes through engine.features.partitions one wallet
partition at a time (engine.services.analyse does); this is its one-partition case.

Shapes: wallet, pair_id, as_of, *FEATURE_NAMES (Float64), *MISSING_INDICATORS (Boolean).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import polars as pl

from engine.features.benford_features import benford_table, market_benford, market_digits, wallet_scopes
from engine.features.dictionary import (
    FEATURE_DICTIONARY,
    FEATURE_NAMES,
    MISSING_INDICATORS,
    WINDOW_NAMES,
    FeatureInfo,
    describe,
)
from engine.features.funding_features import ancestors_from_operations
from engine.features.partitions import MarketContext, finish_matrix, wallet_partition
from engine.features.sides import (
    ACCOUNTS_SCHEMA,
    ANCESTORS_SCHEMA,
    OPERATION_COLUMNS,
    RING_MEMBERS_SCHEMA,
    SIDES_SCHEMA,
    TRADE_COLUMNS,
    FeatureConfig,
    require,
    trade_sides,
)
from storage.errors import BadInput
from storage.shape_features import market_hours_of

__all__ = [
    "ACCOUNTS_SCHEMA", "ANCESTORS_SCHEMA", "FEATURE_DICTIONARY", "FEATURE_NAMES", "MISSING_INDICATORS",
    "RING_MEMBERS_SCHEMA", "SIDES_SCHEMA", "FeatureConfig", "FeatureInfo", "build_benford_table",
    "build_feature_matrix", "describe", "market_context", "matrix_schema", "trade_sides", "utc_as_of",
]  # fmt: skip


DEFAULT_CONFIG = FeatureConfig()


def matrix_schema() -> dict[str, pl.DataType]:
    """Column -> dtype of the feature matrix."""
    return {
        "wallet": pl.String, "pair_id": pl.String, "as_of": pl.Datetime("us", "UTC"),
        **{f: pl.Float64 for f in FEATURE_NAMES}, **{m: pl.Boolean for m in MISSING_INDICATORS},
    }  # fmt: skip


def market_context(
    operations: pl.DataFrame | None, accounts: pl.DataFrame | None, *, as_of: datetime,
    ancestors: pl.DataFrame | None = None, ring_members: pl.DataFrame | None = None,
    loops: pl.DataFrame | None = None, config: FeatureConfig = DEFAULT_CONFIG,
) -> MarketContext:  # fmt: skip
    """The market-wide inputs of the features (engine.features.partitions.MarketContext).

    operations: the funding operations at least (lineage, when `ancestors` is
    None); accounts: ACCOUNTS_SCHEMA (account age; funders); ancestors:
    ANCESTORS_SCHEMA, e.g. engine.graph.funding.ancestors(edges, depth=4);
    ring_members: RING_MEMBERS_SCHEMA or None; loops: closed loops
    (engine.graph.closed_loops.CLOSED_LOOPS_SCHEMA) or None.
    """
    as_of = utc_as_of(as_of)
    if tuple(name for name, _ in config.windows) != WINDOW_NAMES:
        raise BadInput(f"feature windows must be named {WINDOW_NAMES} (the feature dictionary's)")
    if ancestors is None:
        ancestors = ancestors_from_operations(operations, accounts, as_of=as_of, depth=config.ancestor_depth)
    # checked here, once, with a message naming the frame: the features' SQL reads them as given
    accounts = None if accounts is None else require(accounts, ACCOUNTS_SCHEMA, "accounts")
    ring_members = None if ring_members is None else require(ring_members, RING_MEMBERS_SCHEMA, "ring_members")
    ancestors = require(ancestors, ANCESTORS_SCHEMA, "ancestors")
    loop_trades = None if loops is None else loops.select(trade_id=pl.col("trade_ids").explode()).unique()
    return MarketContext(as_of=as_of, config=config, ancestors=ancestors, accounts=accounts,
                         ring_members=ring_members, loop_trades=loop_trades)  # fmt: skip


def build_feature_matrix(
    trades: pl.DataFrame,
    operations: pl.DataFrame | None = None,
    accounts: pl.DataFrame | None = None,
    *,
    as_of: datetime,
    ancestors: pl.DataFrame | None = None,
    ring_members: pl.DataFrame | None = None,
    loops: pl.DataFrame | None = None,
    config: FeatureConfig = DEFAULT_CONFIG,
) -> pl.DataFrame:
    """The feature matrix as of `as_of` (see the module docstring for its shape).

    trades: TRADES_SCHEMA; operations: OPERATIONS_SCHEMA (offer cancellations,
    and funding lineage when `ancestors` is None); the rest as `market_context`.
    """
    trades = require(trades, TRADE_COLUMNS, "trades")
    operations = None if operations is None else require(operations, OPERATION_COLUMNS, "operations")
    ctx = market_context(operations, accounts, as_of=as_of, ancestors=ancestors, ring_members=ring_members,
                         loops=loops, config=config)  # fmt: skip
    ctx = replace(ctx, hours=market_hours_of(trades, as_of=ctx.as_of, options=config))
    return finish_matrix([wallet_partition(trades, operations, part=None, ctx=ctx)], ctx=ctx)


def build_benford_table(
    trades: pl.DataFrame, *, as_of: datetime, config: FeatureConfig = DEFAULT_CONFIG
) -> pl.DataFrame:
    """All Benford tests (first, first_two, second) per wallet, (wallet, pair),
    pair and asset over config.windows as of `as_of`; see benford_features.benford_table."""
    as_of = utc_as_of(as_of)
    sides = trade_sides(trades, as_of=as_of, lookback=max(w for _, w in config.windows))
    market = market_benford(market_digits(trades, as_of=as_of, cfg=config), as_of=as_of, cfg=config)
    return pl.concat([benford_table(wallet_scopes(sides), as_of=as_of, cfg=config), market])


def utc_as_of(t: datetime) -> datetime:
    """`t` in UTC; BadInput when it has no time zone."""
    if t.tzinfo is None:
        raise BadInput(f"as_of {t} has no time zone; pass a UTC datetime")
    return t.astimezone(UTC)

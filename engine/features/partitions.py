"""Features one wallet partition at a time, so memory follows the partition, not the market.

Every feature of a (wallet, pair) reads only that wallet's own trades (its
"sides") plus a few small market-wide inputs, so the wallets are split into
partitions and each partition is computed on its own (`wallet_partition`), from
the trades touching its wallets. 23 features are SQL, run on each partition's trades by an
in-memory DuckDB (storage.partition_features): the trade-shape features
(storage.shape_features), given the market's hours (their quietest are "off hours"), and
those joining the trades to the market's offers, accounts, funding lineage and rings
(storage.context_features). Benford statistics and round trips are polars. PageRank needs the co-trade graph
of the whole market: `finish_matrix` computes it from the partitions' edge counts. The Benford table's
wallet scopes come from the partitions; its pair and asset scopes from amounts without
account ids.

A partition is named by the trades' `seller_part` / `buyer_part` columns: the
partition of each side's account, assigned by whoever reads the trades (the
store's hash in SQL, Spark's in a cluster). `build_feature_matrix` is the one
partition case. The same functions run on DuckDB and, inside Spark's grouped
Arrow UDFs, on Spark (engine.spark.features): one definition of each feature.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import polars as pl

from engine.features.benford_features import benford_table, benford_window_features, pair_window_codes, wallet_scopes
from engine.features.cross_pair import co_trade_edges, mad_spread, pagerank
from engine.features.dictionary import FEATURE_DICTIONARY, FEATURE_NAMES, MISSING_INDICATORS, WINDOW_NAMES
from engine.features.sides import FeatureConfig, categorical, encode, keys_of, trade_sides
from engine.features.trade_features import round_trips
from storage.partition_features import CONTEXT_ACCOUNTS, MarketInputs, partition_features_of

KEY = ["wallet", "pair_id"]
PART_COLUMNS: dict[str, pl.DataType] = {"seller_part": pl.Int64, "buyer_part": pl.Int64}
ID = pl.Categorical()  # ids in the parts kept across partitions: each string held once


@dataclass(frozen=True)
class MarketContext:
    """The small market-wide inputs every partition reads.

    accounts: ACCOUNTS_SCHEMA or None; ancestors: ANCESTORS_SCHEMA (funding
    lineage); ring_members: RING_MEMBERS_SCHEMA or None; loop_trades: the trades of
    the closed loops (trade_id, each once) or None when loops were not computed.
    """

    as_of: datetime
    config: FeatureConfig
    ancestors: pl.DataFrame
    accounts: pl.DataFrame | None = None
    ring_members: pl.DataFrame | None = None
    loop_trades: pl.DataFrame | None = None
    hours: pl.DataFrame | None = None  # the market's sides per UTC hour (storage.shape_features.market_hours_sql)
    # the accounts of accounts, ancestors and ring_members are the store's keys, as the partitions'
    # trades and offers carry them (`with_store_keys`)
    store_keys: bool = False


@dataclass(frozen=True)
class PartitionFeatures:
    """What one wallet partition contributes (ids Categorical)."""

    matrix: pl.DataFrame  # wallet, pair_id, every feature but pagerank
    edges: pl.DataFrame  # co_trade_edges: wallet, counterparty, w
    benford: pl.DataFrame | None  # the wallet scopes of the Benford table, when asked for


def wallet_partition(
    trades: pl.DataFrame, operations: pl.DataFrame | None, *, part: int | None, ctx: MarketContext,
    with_benford: bool = False,
) -> PartitionFeatures:  # fmt: skip
    """The features of the wallets of partition `part` (every account when None).

    trades: TRADES_SCHEMA columns, every trade of these wallets (more are
    ignored), with PART_COLUMNS unless part is None; operations: their offer
    operations (others are ignored) or None.
    """
    cfg, as_of = ctx.config, ctx.as_of
    if ctx.hours is None:
        raise ValueError("the market hours are missing from the context (MarketContext.hours)")
    widest = max(w for _, w in cfg.windows)
    sides = trade_sides(trades, as_of=as_of, lookback=max(cfg.lookback, widest), part=part)
    coded, codes = encode(sides)
    in_lookback = coded if cfg.lookback >= widest else coded.filter(pl.col("closed_at") > as_of - cfg.lookback)
    keys = keys_of(in_lookback)
    pair_codes = pair_window_codes(coded, as_of=as_of, cfg=cfg)
    bf = benford_window_features(coded, as_of=as_of, cfg=cfg, codes=pair_codes)
    sql = partition_features_of(trades, as_of=as_of, options=cfg, hours=ctx.hours, part=part, inputs=MarketInputs(
        offers=operations, accounts=ctx.accounts, lineage=ctx.ancestors, ring_members=ctx.ring_members,
        loop_trades=ctx.loop_trades, store_keys=ctx.store_keys,
    ))  # fmt: skip
    parts = [bf, round_trips(in_lookback, cfg=cfg), categorical(sql, *KEY, codes=codes)]
    out = keys
    for p in parts:
        out = out.join(p, on=KEY, how="left")
    out = out.join(mad_spread(bf, column=f"benford_excess_mad_{WINDOW_NAMES[-1]}"), on="wallet", how="left")
    ids = [codes.decode(pl.col(c)).cast(ID) for c in KEY]
    edges = co_trade_edges(in_lookback).with_columns(codes.decode(pl.col(c)).cast(ID) for c in ("wallet", "counterparty"))
    return PartitionFeatures(
        matrix=out.with_columns(ids), edges=edges,
        benford=benford_table(wallet_scopes(sides), as_of=as_of, cfg=cfg, coded={
            "wallet_pair": pair_codes._replace(keys=pair_codes.keys.with_columns(codes.decode(pl.col(c)) for c in KEY))
        }) if with_benford else None,
    )  # fmt: skip


def with_store_keys(ctx: MarketContext, keys: pl.DataFrame) -> MarketContext:
    """`ctx` for partitions read from a store with its integer account keys (storage.feature_reads):
    the accounts of its relations as those keys (`keys`: account_id, account_key), so that no
    partition hashes an id again (at 10M trades, 22 of the partitions' 165 thread-seconds). An
    account the store has no key for (none: every account of a trade or an operation has one)
    gets a negative key of its own, so nothing is lost or merged."""
    seen = pl.concat([frame.get_column(c) for frame, c in _account_columns(ctx)]).drop_nulls().unique()
    unknown = seen.filter(~seen.is_in(keys.get_column("account_id").implode())).sort()
    index = pl.concat([keys.select("account_id", key=pl.col("account_key").cast(pl.Int64)),
                       pl.DataFrame({"account_id": unknown, "key": -pl.int_range(1, len(unknown) + 1, eager=True)})])

    def keyed(frame: pl.DataFrame | None, name: str) -> pl.DataFrame | None:
        for c in () if frame is None else CONTEXT_ACCOUNTS[name]:
            frame = frame.join(index.rename({"account_id": c, "key": "_key"}), on=c, how="left",
                               maintain_order="left").with_columns(pl.col("_key").alias(c)).drop("_key")  # fmt: skip
        return frame

    return replace(ctx, accounts=keyed(ctx.accounts, "accounts"), ancestors=keyed(ctx.ancestors, "lineage"),
                   ring_members=keyed(ctx.ring_members, "ring_members"), store_keys=True)  # fmt: skip


def _account_columns(ctx: MarketContext) -> list[tuple[pl.DataFrame, str]]:
    """The account id columns of the context's relations."""
    frames = {"accounts": ctx.accounts, "lineage": ctx.ancestors, "ring_members": ctx.ring_members}
    return [(f, c) for name, f in frames.items() if f is not None for c in CONTEXT_ACCOUNTS[name]]


def finish_matrix(parts: list[PartitionFeatures], *, ctx: MarketContext) -> pl.DataFrame:
    """The feature matrix from the partitions' parts: PageRank added, cast to the matrix
    schema (NaN -> null), missing indicators set.

    Shapes: wallet, pair_id, as_of, *FEATURE_NAMES (Float64), *MISSING_INDICATORS (Boolean).
    """
    matrix = pl.concat([p.matrix for p in parts], how="vertical_relaxed")
    wallets = matrix.get_column("wallet").cast(pl.String)
    rank = pagerank(wallets, pl.concat([p.edges for p in parts]), cfg=ctx.config)
    out = matrix.join(rank.with_columns(pl.col("wallet").cast(ID)), on="wallet", how="left")
    values = [pl.col(f).cast(pl.Float64).fill_nan(None).alias(f) for f in FEATURE_NAMES]
    out = out.select(
        pl.col("wallet").cast(pl.String), pl.col("pair_id").cast(pl.String),
        pl.lit(ctx.as_of, dtype=pl.Datetime("us", "UTC")).alias("as_of"), *values,
    )  # fmt: skip
    flags = {
        m: pl.any_horizontal([pl.col(f).is_null() for f, i in FEATURE_DICTIONARY.items() if i.missing == m])
        for m in MISSING_INDICATORS
    }
    return out.with_columns(**flags).sort("wallet", "pair_id")

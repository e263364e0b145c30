"""Wallet features per (wallet, pair), computed "as of" a time t from data up to t.

`build_feature_matrix` is the entry point: one row per (wallet, pair_id) the
wallet traded in during the lookback (default 30 days) before `as_of`, with the
columns of FEATURE_DICTIONARY (engine.features.dictionary) plus the missing
indicators. Only trades with closed_at <= as_of, operations with
closed_at <= as_of and accounts created by as_of are read. Everything is
vectorised (polars group_bys/joins, numpy bincounts, one sparse PageRank).

Shapes: wallet, pair_id, as_of, *FEATURE_NAMES (Float64), *MISSING_INDICATORS (Boolean).
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from engine.features.benford_features import benford_table, benford_window_features
from engine.features.cross_pair import (
    counterparty_overlap,
    mad_spread,
    pagerank,
    pair_diversity,
    synchrony,
    volume_correlation,
)
from engine.features.dictionary import (
    FEATURE_DICTIONARY,
    FEATURE_NAMES,
    MISSING_INDICATORS,
    WINDOW_NAMES,
    FeatureInfo,
    describe,
)
from engine.features.funding_features import account_age, ancestors_from_operations, controller_features
from engine.features.sides import (
    ACCOUNTS_SCHEMA,
    ANCESTORS_SCHEMA,
    RING_MEMBERS_SCHEMA,
    SIDES_SCHEMA,
    Codes,
    FeatureConfig,
    categorical,
    encode,
    keys_of,
    require,
    trade_sides,
)
from engine.features.trade_features import (
    activity_features,
    offer_cancellations,
    round_trips,
    size_tail,
    timing_features,
    volume_spike,
)
from storage.errors import BadInput

__all__ = [
    "ACCOUNTS_SCHEMA", "ANCESTORS_SCHEMA", "FEATURE_DICTIONARY", "FEATURE_NAMES", "MISSING_INDICATORS",
    "RING_MEMBERS_SCHEMA", "SIDES_SCHEMA", "FeatureConfig", "FeatureInfo", "build_benford_table",
    "build_feature_matrix", "describe", "matrix_schema", "ring_features", "trade_sides",
]  # fmt: skip


DEFAULT_CONFIG = FeatureConfig()


def matrix_schema() -> dict[str, pl.DataType]:
    """Column -> dtype of the feature matrix."""
    return {
        "wallet": pl.String, "pair_id": pl.String, "as_of": pl.Datetime("us", "UTC"),
        **{f: pl.Float64 for f in FEATURE_NAMES}, **{m: pl.Boolean for m in MISSING_INDICATORS},
    }  # fmt: skip


def ring_features(sides: pl.DataFrame, ring_members: pl.DataFrame | None, *, codes: Codes | None = None) -> pl.DataFrame:
    """ring_size and ring_cp_share per (wallet, pair_id) from `ring_members`
    (account_id, ring_id; e.g. from engine.graph.rings); null when it is None.
    codes: those of `sides` when it is the coded view (engine.features.sides.encode)."""
    keys = keys_of(sides)
    if ring_members is None:
        return keys.with_columns(ring_size=pl.lit(None, dtype=pl.Float64), ring_cp_share=pl.lit(None, dtype=pl.Float64))
    rm = categorical(require(ring_members, RING_MEMBERS_SCHEMA, "ring_members").unique(), "account_id", codes=codes)
    size = rm.group_by("ring_id").agg(ring_size=pl.len())
    mine = rm.join(size, on="ring_id").group_by("account_id").agg(pl.first("ring_id"), pl.first("ring_size"))
    tagged = sides.join(mine.rename({"account_id": "wallet"}), on="wallet", how="left").join(
        rm.rename({"account_id": "counterparty", "ring_id": "cp_ring"}), on="counterparty", how="left"
    )
    same = (pl.col("ring_id") == pl.col("cp_ring")).fill_null(False)
    return (
        tagged.group_by("wallet", "pair_id", "trade_id")
        .agg(same=same.any(), ring_size=pl.first("ring_size"))
        .group_by("wallet", "pair_id")
        .agg(ring_size=pl.first("ring_size").fill_null(0).cast(pl.Float64), ring_cp_share=pl.col("same").mean())
    )


def loop_features(sides: pl.DataFrame, loops: pl.DataFrame | None) -> pl.DataFrame:
    """loop_share per (wallet, pair_id): the share of the wallet's trades in the pair that are
    in a closed loop (engine.graph.closed_loops); null when loops were not computed."""
    keys = keys_of(sides)
    if loops is None:
        return keys.with_columns(loop_share=pl.lit(None, dtype=pl.Float64))
    ids = loops.select(pl.col("trade_ids").explode().alias("trade_id")).unique()
    return sides.select("wallet", "pair_id", pl.col("trade_id").is_in(ids.get_column("trade_id").implode()).alias("_in")).group_by(
        "wallet", "pair_id").agg(loop_share=pl.col("_in").mean().cast(pl.Float64))


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
    and funding lineage when `ancestors` is None); accounts: ACCOUNTS_SCHEMA
    (account age; funders); ancestors: ANCESTORS_SCHEMA, e.g.
    engine.graph.funding.ancestors(edges, depth=4), else built from operations
    and accounts here; ring_members: RING_MEMBERS_SCHEMA or None; loops: closed loops
    (engine.graph.closed_loops.CLOSED_LOOPS_SCHEMA) or None.
    """
    as_of = _utc(as_of)
    if tuple(name for name, _ in config.windows) != WINDOW_NAMES:
        raise BadInput(f"feature windows must be named {WINDOW_NAMES} (the feature dictionary's)")
    widest = max(w for _, w in config.windows)
    sides, codes = encode(trade_sides(trades, as_of=as_of, lookback=max(config.lookback, widest)))
    in_lookback = sides if config.lookback >= widest else sides.filter(pl.col("closed_at") > as_of - config.lookback)
    if ancestors is None:
        ancestors = ancestors_from_operations(operations, accounts, as_of=as_of, depth=config.ancestor_depth)
    keys = keys_of(in_lookback)
    bf = benford_window_features(sides, as_of=as_of, cfg=config)
    parts = [
        bf, activity_features(in_lookback, cfg=config), timing_features(in_lookback, cfg=config),
        volume_spike(in_lookback, cfg=config), size_tail(in_lookback, cfg=config),
        round_trips(in_lookback, cfg=config), offer_cancellations(operations, as_of=as_of, cfg=config, codes=codes),
        account_age(keys, accounts, as_of=as_of, codes=codes), controller_features(in_lookback, ancestors, cfg=config, codes=codes),
        synchrony(in_lookback, cfg=config), counterparty_overlap(in_lookback),
        volume_correlation(in_lookback, cfg=config), ring_features(in_lookback, ring_members, codes=codes),
        loop_features(in_lookback, loops),
    ]  # fmt: skip
    wallet_parts = [pagerank(in_lookback, cfg=config), pair_diversity(in_lookback),
                    mad_spread(bf, column=f"benford_excess_mad_{WINDOW_NAMES[-1]}")]  # fmt: skip
    out = keys
    for part in parts:
        out = out.join(part, on=["wallet", "pair_id"], how="left")
    for part in wallet_parts:
        out = out.join(part, on="wallet", how="left")
    return _finish(out, as_of, codes)


def _finish(out: pl.DataFrame, as_of: datetime, codes: Codes) -> pl.DataFrame:
    """Cast to the matrix schema (NaN -> null) and add the missing indicators."""
    values = [pl.col(f).cast(pl.Float64).fill_nan(None).alias(f) for f in FEATURE_NAMES]
    out = out.select(
        codes.decode(pl.col("wallet")), codes.decode(pl.col("pair_id")), pl.lit(as_of, dtype=pl.Datetime("us", "UTC")).alias("as_of"), *values
    )
    flags = {
        m: pl.any_horizontal([pl.col(f).is_null() for f, i in FEATURE_DICTIONARY.items() if i.missing == m])
        for m in MISSING_INDICATORS
    }
    return out.with_columns(**flags).sort("wallet", "pair_id")


def build_benford_table(
    trades: pl.DataFrame, *, as_of: datetime, config: FeatureConfig = DEFAULT_CONFIG
) -> pl.DataFrame:
    """All Benford tests (first, first_two, second) per wallet, (wallet, pair),
    pair and asset over config.windows as of `as_of`; see benford_features.benford_table."""
    as_of = _utc(as_of)
    sides = trade_sides(trades, as_of=as_of, lookback=max(w for _, w in config.windows))
    return benford_table(trades, sides, as_of=as_of, cfg=config)


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise BadInput(f"as_of {t} has no time zone; pass a UTC datetime")
    return t.astimezone(UTC)

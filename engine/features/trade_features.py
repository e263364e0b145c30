"""The per (wallet, pair) trade-pattern feature that needs more than SQL: round trips (as-of
joins). The others are SQL (storage.shape_features, storage.context_features).

One row per (wallet, pair_id) present in `sides`; a value that cannot be computed is null
(the matrix adds the `<name>_missing` indicators), never 0. Vectorised polars.
"""

from __future__ import annotations

import math

import polars as pl

from engine.features.sides import FeatureConfig

KEY = ["wallet", "pair_id"]


def round_trips(sides: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """round_trip_rate: share of the wallet's gives in the pair after which the same
    asset came back to it (it got that asset) within `round_trip_ledgers` ledgers
    with an amount within `round_trip_tolerance`.

    Vectorised as as-of joins on (wallet, pair, asset, log-amount bucket): an
    amount within x % lies in the give's bucket or a neighbour (bucket width
    log(1+x)), so three forward as-of joins find the next candidate in each,
    then the exact ledger and amount tests apply. Only the next candidate of a
    bucket is examined (a later one behind a non-matching first is missed).
    """
    width = math.log1p(cfg.round_trip_tolerance)
    # The as-of joins match on one integer packing (wallet, pair) (its rank), the asset (within a
    # pair, whether it is the pair's base) and the bucket: several times faster than on four
    # columns, one of them a string.
    wp = pl.col("wallet").to_physical().cast(pl.UInt64) * (1 << 32) + pl.col("pair_id").to_physical().cast(pl.UInt64)
    packed = sides.select(
        *KEY, "op_id", "ledger", "gave_amount", "got_amount", "sold_base", wp=wp.rank("dense").cast(pl.Int64) * (1 << 20)
    )
    gives = packed.filter(pl.col("gave_amount") > 0).select(
        *KEY, "op_id", "ledger", amt="gave_amount", key=pl.col("wp") + _asset_bucket(pl.col("sold_base"), "gave_amount", width=width),
    ).with_row_index("gid").sort("op_id")  # fmt: skip
    gets = packed.filter(pl.col("got_amount") > 0).select(
        "op_id", r_ledger="ledger", r_amt="got_amount", key=pl.col("wp") + _asset_bucket(~pl.col("sold_base"), "got_amount", width=width),
    ).sort("op_id")  # fmt: skip
    ok = (pl.col("r_ledger") - pl.col("ledger") <= cfg.round_trip_ledgers) & (
        (pl.col("r_amt") - pl.col("amt")).abs() <= cfg.round_trip_tolerance * pl.col("amt")
    )
    hits = [
        gives.with_columns(key=pl.col("key") + shift)
        .join_asof(gets, on="op_id", by="key", strategy="forward", allow_exact_matches=False,
                   check_sortedness=False)  # both sides sorted by op_id above
        .filter(ok).select("gid")
        for shift in (-1, 0, 1)
    ]  # fmt: skip
    done = pl.concat(hits).unique()
    return (
        gives.join(done.with_columns(hit=pl.lit(True)), on="gid", how="left")
        .group_by(KEY).agg(round_trip_rate=pl.col("hit").fill_null(False).mean())
    )  # fmt: skip


def _asset_bucket(is_base: pl.Expr, amount: str, *, width: float) -> pl.Expr:
    """The pair's asset (1: its base) and the log-amount bucket (shifted to >= 1, so a neighbour
    stays >= 0) in the low 20 bits: buckets of positive stroop amounts stay below 2^13."""
    bucket = (pl.col(amount).cast(pl.Float64).log() / width).floor().cast(pl.Int64)
    return is_base.cast(pl.Int64) * (1 << 16) + bucket + 1

"""Ring and closed-loop features per (wallet, pair): from the rings step's output
(engine.graph.rings, engine.graph.closed_loops), null when it was not run."""

from __future__ import annotations

import polars as pl

from engine.features.sides import RING_MEMBERS_SCHEMA, Codes, categorical, keys_of, require


def ring_features(sides: pl.DataFrame, ring_members: pl.DataFrame | None, *, codes: Codes | None = None) -> pl.DataFrame:
    """ring_size and ring_cp_share per (wallet, pair_id) from `ring_members`
    (account_id, ring_id; e.g. from engine.graph.rings); null when it is None.
    codes: those of `sides` when it is the coded view (engine.features.sides.encode)."""
    keys = keys_of(sides)
    if ring_members is None:
        return keys.with_columns(ring_size=pl.lit(None, dtype=pl.Float64), ring_cp_share=pl.lit(None, dtype=pl.Float64))
    rm = categorical(require(ring_members, RING_MEMBERS_SCHEMA, "ring_members").unique(), "account_id", codes=codes)
    size = rm.group_by("ring_id").agg(ring_size=pl.len())
    # an account in several rings: its largest (ties: the first ring id), the same in every run
    mine = rm.join(size, on="ring_id").sort(["account_id", "ring_size", "ring_id"], descending=[False, True, False]).group_by(
        "account_id", maintain_order=True).agg(pl.first("ring_id"), pl.first("ring_size"))
    # A trade counts once: a wallet trading with itself has two sides of it, the one that gave
    # the base asset is kept (the other would say the same).
    once = pl.col("wallet").ne_missing(pl.col("counterparty")) | pl.col("sold_base")
    tagged = sides.filter(once).join(mine.rename({"account_id": "wallet"}), on="wallet", how="left").join(
        rm.rename({"account_id": "counterparty"}).with_columns(same=pl.lit(True)), on=["counterparty", "ring_id"],
        how="left",
    )  # the counterparty is a member of the wallet's ring
    return tagged.group_by("wallet", "pair_id").agg(
        ring_size=pl.first("ring_size").fill_null(0).cast(pl.Float64), ring_cp_share=pl.col("same").fill_null(False).mean()
    )


def loop_features(sides: pl.DataFrame, loops: pl.DataFrame | None) -> pl.DataFrame:
    """loop_share per (wallet, pair_id): the share of the wallet's trades in the pair that are
    in a closed loop (engine.graph.closed_loops); null when loops were not computed."""
    keys = keys_of(sides)
    if loops is None:
        return keys.with_columns(loop_share=pl.lit(None, dtype=pl.Float64))
    ids = loops.get_column("trade_ids").explode()  # repeats do no harm to is_in (no unique: one pass less)
    return sides.select("wallet", "pair_id", pl.col("trade_id").is_in(ids.implode()).alias("_in")).group_by(
        "wallet", "pair_id").agg(loop_share=pl.col("_in").mean().cast(pl.Float64))

"""Funding lineage features: account age, same-controller trading, funding similarity.

Ancestors normally come from `engine.graph.funding.ancestors(edges, depth=4)`.
When none are given, `ancestors_from_operations` builds a simple version here:
the first-funder tree (create_account funder -> account, and the accounts
frame's `funder`), walked up `depth` levels by bounded polars self-joins.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from engine.features.sides import (
    ACCOUNTS_SCHEMA,
    ANCESTORS_SCHEMA,
    OPERATION_COLUMNS,
    FeatureConfig,
    categorical,
    require,
)

KEY = ["wallet", "pair_id"]


def ancestors_from_operations(
    operations: pl.DataFrame | None, accounts: pl.DataFrame | None, *, as_of: datetime, depth: int = 4
) -> pl.DataFrame:
    """Funding ancestors up to `depth` hops from create_account funders known by as_of.

    Shapes: account_id, ancestor, depth (1 = direct funder). One parent per
    account (the earliest create_account), so the walk is linear in the result.
    """
    parts = []
    if operations is not None:
        ops = require(operations, OPERATION_COLUMNS, "operations")
        created = ops.filter(
            (pl.col("type") == "create_account") & pl.col("successful").fill_null(True) & (pl.col("closed_at") <= as_of)
        )
        parts.append(created.select("closed_at", account_id=pl.col("to_account"), funder=pl.col("from_account")))
    if accounts is not None:
        acc = require(accounts, ACCOUNTS_SCHEMA, "accounts").filter(pl.col("created_at") <= as_of)
        parts.append(acc.select(closed_at=pl.col("created_at"), account_id="account_id", funder="funder"))
    if not parts:
        return pl.DataFrame(schema=ANCESTORS_SCHEMA)
    parent = (
        pl.concat(parts).drop_nulls(["account_id", "funder"]).sort("closed_at")
        .group_by("account_id").agg(ancestor=pl.first("funder"))
    )  # fmt: skip
    level = parent.with_columns(depth=pl.lit(1, dtype=pl.Int64))
    levels = [level]
    for d in range(2, depth + 1):
        level = (
            level.join(parent.rename({"account_id": "ancestor", "ancestor": "up"}), on="ancestor")
            .select("account_id", ancestor=pl.col("up"), depth=pl.lit(d, dtype=pl.Int64))
            .filter(pl.col("ancestor") != pl.col("account_id"))
        )
        if level.height == 0:
            break
        levels.append(level)
    return pl.concat(levels).select(list(ANCESTORS_SCHEMA))


def account_age(keys: pl.DataFrame, accounts: pl.DataFrame | None, *, as_of: datetime) -> pl.DataFrame:
    """account_age_days = (as_of - created_at) in days; null when the creation is
    unknown or after as_of (then the data up to t does not know the account)."""
    if accounts is None:
        return keys.with_columns(account_age_days=pl.lit(None, dtype=pl.Float64))
    acc = require(accounts, ACCOUNTS_SCHEMA, "accounts").filter(pl.col("created_at") <= as_of)
    age = categorical(acc.group_by("account_id").agg(created_at=pl.col("created_at").min()), "account_id")
    return keys.join(age, left_on="wallet", right_on="account_id", how="left").select(
        *KEY, account_age_days=(pl.lit(as_of) - pl.col("created_at")).dt.total_seconds(fractional=True) / 86400.0
    )


def lineage_sets(ancestors: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """account_id, node: each account with a known lineage, itself plus its
    non-hub ancestors within cfg.ancestor_depth. A hub is an ancestor that funded
    more than cfg.hub_fanout accounts directly (exchanges, faucets): sharing one
    says nothing about a common controller."""
    anc = require(ancestors, ANCESTORS_SCHEMA, "ancestors").filter(pl.col("depth") <= cfg.ancestor_depth)
    hubs = anc.filter(pl.col("depth") == 1).group_by("ancestor").len().filter(pl.col("len") > cfg.hub_fanout)
    kept = anc.join(hubs.select("ancestor"), on="ancestor", how="anti")
    selves = anc.select("account_id").unique().with_columns(node=pl.col("account_id"))
    sets = pl.concat([selves, kept.select("account_id", node=pl.col("ancestor"))]).unique()
    return categorical(sets, "account_id", "node")


def controller_features(sides: pl.DataFrame, ancestors: pl.DataFrame, *, cfg: FeatureConfig) -> pl.DataFrame:
    """same_controller_rate: share of the wallet's trades (with accounts) in the
    pair whose counterparty shares a non-hub funding ancestor (or is one);
    funding_similarity: trade-weighted mean Jaccard of the two lineage sets.
    Null when the wallet's lineage is unknown or it only traded with pools."""
    sets = lineage_sets(ancestors, cfg=cfg).with_columns(node=pl.col("node").cast(pl.Categorical()))
    size = sets.group_by("account_id").agg(size=pl.len())
    pairs = sides.filter(~pl.col("cp_is_pool")).group_by(*KEY, "counterparty").agg(n=pl.len())
    links = pairs.select("wallet", "counterparty").unique()
    inter = (
        links.join(sets, left_on="wallet", right_on="account_id")
        .join(sets, left_on=["counterparty", "node"], right_on=["account_id", "node"])
        .group_by("wallet", "counterparty").agg(inter=pl.len())
    )  # fmt: skip
    scored = (
        pairs.join(size.rename({"size": "size_w"}), left_on="wallet", right_on="account_id")  # known lineage only
        .join(size.rename({"size": "size_c"}), left_on="counterparty", right_on="account_id", how="left")
        .join(inter, on=["wallet", "counterparty"], how="left")
        .with_columns(pl.col("inter").fill_null(0), pl.col("size_c").fill_null(1))
        .with_columns(jac=pl.col("inter") / (pl.col("size_w") + pl.col("size_c") - pl.col("inter")))
    )  # fmt: skip
    w = pl.col("n") / pl.col("n").sum()
    return scored.group_by(KEY).agg(
        same_controller_rate=((pl.col("inter") > 0).cast(pl.Float64) * w).sum(),
        funding_similarity=(pl.col("jac") * w).sum(),
    )

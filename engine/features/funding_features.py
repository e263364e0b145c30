"""Funding lineage features: account age, same-controller trading, funding similarity.

Ancestors come from `engine.graph.funding.ancestors` (the one lineage walk);
`ancestors_from_operations` feeds it the funding operations when the caller has
no funding edges at hand.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from engine.features.sides import (
    ACCOUNTS_SCHEMA,
    ANCESTORS_SCHEMA,
    OPERATION_COLUMNS,
    Codes,
    FeatureConfig,
    categorical,
    require,
)
from engine.graph.funding import ancestors, funding_edges

KEY = ["wallet", "pair_id"]


def ancestors_from_operations(
    operations: pl.DataFrame | None, accounts: pl.DataFrame | None, *, as_of: datetime, depth: int = 4
) -> pl.DataFrame:
    """`ancestors_from_edges` over the funding edges of `operations` (OPERATIONS_SCHEMA)."""
    edges = funding_edges(require(operations, OPERATION_COLUMNS, "operations")) if operations is not None else None
    return ancestors_from_edges(edges, accounts, as_of=as_of, depth=depth)


def ancestors_from_edges(
    edges: pl.DataFrame | None, accounts: pl.DataFrame | None, *, as_of: datetime, depth: int = 4
) -> pl.DataFrame:
    """Funding ancestors known by `as_of`, via the one lineage walk of
    `engine.graph.funding.ancestors` (exchange-like funders end it), over the funding
    edges (closed_at, type, from_account, to_account, asset, amount: the store's
    `funding_edges`) plus the accounts frame's recorded funders (as create_account edges).

    Shapes: account_id, ancestor, depth (1 = direct funder).
    """
    parts = []
    if edges is not None:
        parts.append(edges.select("closed_at", "type", "from_account", "to_account", "asset", "amount"))
    if accounts is not None:
        acc = require(accounts, ACCOUNTS_SCHEMA, "accounts").drop_nulls(["funder", "created_at"])
        parts.append(acc.select(
            closed_at="created_at", type=pl.lit("create_account"), from_account="funder",
            to_account="account_id", asset=pl.lit(None, dtype=pl.String), amount=pl.lit(None, dtype=pl.Int64),
        ))  # fmt: skip
    if not parts:
        return pl.DataFrame(schema=ANCESTORS_SCHEMA)
    edges = pl.concat(parts, how="vertical_relaxed").unique()
    found = ancestors(edges, depth=depth, as_of=as_of)
    # An account funded only by an exchange has a known lineage of its own: keep it
    # (as a depth-0 row on itself) while the exchange itself says nothing.
    funded = edges.filter(pl.col("from_account") != pl.col("to_account"))
    if as_of is not None:
        funded = funded.filter(pl.col("closed_at") <= as_of)
    alone = funded.select(pl.col("to_account").alias("account_id")).unique().join(found, on="account_id", how="anti")
    own = alone.with_columns(pl.col("account_id").alias("ancestor"), pl.lit(0, pl.Int32).alias("depth"))
    return pl.concat([found, own.select(found.columns)]).unique().cast(ANCESTORS_SCHEMA).sort(
        "account_id", "depth", "ancestor")


def account_age(
    keys: pl.DataFrame, accounts: pl.DataFrame | None, *, as_of: datetime, codes: Codes | None = None
) -> pl.DataFrame:
    """account_age_days = (as_of - created_at) in days; null when the creation is
    unknown or after as_of (then the data up to t does not know the account)."""
    if accounts is None:
        return keys.with_columns(account_age_days=pl.lit(None, dtype=pl.Float64))
    acc = require(accounts, ACCOUNTS_SCHEMA, "accounts").filter(pl.col("created_at") <= as_of)
    age = categorical(acc.group_by("account_id").agg(created_at=pl.col("created_at").min()), "account_id", codes=codes)
    return keys.join(age, left_on="wallet", right_on="account_id", how="left").select(
        *KEY, account_age_days=(pl.lit(as_of) - pl.col("created_at")).dt.total_seconds(fractional=True) / 86400.0
    )


def lineage_sets(ancestors: pl.DataFrame, *, cfg: FeatureConfig, codes: Codes | None = None) -> pl.DataFrame:
    """account_id, node: each account with a known lineage, itself plus its
    ancestors within cfg.ancestor_depth. Exchange-like funders (hubs) are already
    left out by `engine.graph.funding.ancestors`: sharing one says nothing about a
    common controller."""
    anc = require(ancestors, ANCESTORS_SCHEMA, "ancestors").filter(pl.col("depth") <= cfg.ancestor_depth)
    if codes is not None:  # the lineage of this view's accounts only (the others have no code): per
        anc = anc.filter(pl.col("account_id").is_in(codes.names.implode()))  # partition, not per market
    kept = anc.filter(pl.col("ancestor") != pl.col("account_id"))
    selves = anc.select("account_id").unique().with_columns(node=pl.col("account_id"))
    sets = pl.concat([selves, kept.select("account_id", node=pl.col("ancestor"))]).unique()
    # node stays Categorical: funders that never traded have no code but must still match.
    sets = categorical(sets, "account_id", codes=codes).drop_nulls("account_id")
    return sets.with_columns(node=pl.col("node").cast(pl.Categorical()))


def controller_features(
    sides: pl.DataFrame, ancestors: pl.DataFrame, *, cfg: FeatureConfig, codes: Codes | None = None
) -> pl.DataFrame:
    """same_controller_rate: share of the wallet's trades (with accounts) in the
    pair whose counterparty shares a non-hub funding ancestor (or is one);
    funding_similarity: trade-weighted mean Jaccard of the two lineage sets.
    Null when the wallet's lineage is unknown or it only traded with pools."""
    sets = lineage_sets(ancestors, cfg=cfg, codes=codes)
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
    # The weights are computed before the group_by: an aggregation mixing a
    # group's total with its rows (n / n.sum()) takes polars' slow per-group path.
    w = pl.col("n") / pl.col("n").sum().over(KEY)
    return scored.with_columns(
        _same=(pl.col("inter") > 0).cast(pl.Float64) * w, _sim=pl.col("jac") * w
    ).group_by(KEY).agg(same_controller_rate=pl.col("_same").sum(), funding_similarity=pl.col("_sim").sum())

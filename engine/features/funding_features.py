"""The funding lineage the features read: each account's funding ancestors.

Ancestors come from `engine.graph.funding.ancestors` (the one lineage walk);
`ancestors_from_operations` feeds it the funding operations when the caller has
no funding edges at hand. The features over the lineage (same_controller_rate,
funding_similarity) and the accounts (account_age_days) are SQL:
storage.context_features.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from engine.features.sides import (
    ACCOUNTS_SCHEMA,
    ANCESTORS_SCHEMA,
    OPERATION_COLUMNS,
    require,
)
from engine.graph.funding import ancestors, funding_edges


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

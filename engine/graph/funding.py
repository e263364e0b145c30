"""Funding lineage: who funded whom, bounded multi-hop ancestors, siblings and roots.

Input is the store's funding edges (`Store.funding_edges()`): id, ledger, closed_at,
type, from_account, to_account, asset, amount. A funder of an account is any
account that sent it value (create_account, payments, path payments, merges,
claimable balances).

Two bounds keep the traversal linear in the reachable subgraph and stop lineage
from turning every exchange customer into a sibling of every other:

- **Exchange-like funders.** An account that funded more than `max_fanout`
  distinct accounts (default 50: an exchange hot wallet, an anchor, a faucet)
  says nothing about common control. Traversal stops there: by default such a
  funder is not reported as an ancestor at all (`keep_exchange=True` reports it at
  its depth but never walks past it).
- **Few parents per account.** Each account keeps at most `max_parents` funders
  (default 1): the `create_account` funder first, then the earliest payers. With the
  default, lineage is the account-creation tree (a payer counts only when the
  creation is not in the data): payments over 4 hops relate nearly every wallet on
  a busy ledger, so they would make "shared funding" meaningless. An account has at
  most max_parents + max_parents^2 + ... ancestors within `depth`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from engine.schemas import FUNDING_TYPES

DEFAULT_DEPTH = 4
DEFAULT_MAX_FANOUT = 50
DEFAULT_MAX_PARENTS = 1
DEFAULT_MAX_GROUP = 200

_ANCESTORS_SCHEMA = {"account_id": pl.String, "ancestor": pl.String, "depth": pl.Int32}


def funding_edges(operations: pl.DataFrame) -> pl.DataFrame:
    """Funding edges from an operations frame (OPERATIONS_SCHEMA), as the store's
    `funding_edges` view gives them (the columns lineage needs): successful funding
    types with both ends."""
    return _valid_edges(
        operations.filter(pl.col("type").is_in(FUNDING_TYPES) & pl.col("successful").fill_null(True)), None
    ).select("closed_at", "type", "from_account", "to_account", "asset", "amount")


def _valid_edges(edges: pl.DataFrame, as_of: datetime | None) -> pl.DataFrame:
    """Edges with both ends, no self-funding, closed at or before `as_of`."""
    out = edges.filter(
        pl.col("from_account").is_not_null()
        & pl.col("to_account").is_not_null()
        & (pl.col("from_account") != pl.col("to_account"))
    )
    if as_of is not None:
        out = out.filter(pl.col("closed_at") <= as_of)
    return out


def exchange_like(
    edges: pl.DataFrame, *, as_of: datetime | None = None, max_fanout: int = DEFAULT_MAX_FANOUT
) -> pl.DataFrame:
    """Funders that funded more than `max_fanout` distinct accounts.

    Shapes: -> [account_id: str, n_funded: u32], sorted by account_id.
    """
    return (
        _valid_edges(edges, as_of)
        .group_by("from_account")
        .agg(pl.col("to_account").n_unique().alias("n_funded"))
        .filter(pl.col("n_funded") > max_fanout)
        .rename({"from_account": "account_id"})
        .sort("account_id")
    )


def funding_parents(
    edges: pl.DataFrame, *, as_of: datetime | None = None, max_parents: int = DEFAULT_MAX_PARENTS
) -> pl.DataFrame:
    """Direct funders of each account, at most `max_parents` each.

    The `create_account` funder ranks first, then payers by first funding time
    (ties by funder id, so the choice is deterministic).
    Shapes: -> [account_id: str, funder: str, first_at: datetime, n_edges: u32, amount: i64]
    """
    grouped = (
        _valid_edges(edges, as_of)
        .group_by("to_account", "from_account")
        .agg(
            pl.col("closed_at").min().alias("first_at"),
            pl.len().alias("n_edges"),
            pl.col("amount").sum().alias("amount"),
            (pl.col("type") == "create_account").any().alias("created"),
        )
        .sort(["to_account", "created", "first_at", "from_account"], descending=[False, True, False, False])
    )
    return (
        grouped.group_by("to_account", maintain_order=True)
        .head(max_parents)
        .select(
            pl.col("to_account").alias("account_id"),
            pl.col("from_account").alias("funder"),
            "first_at",
            "n_edges",
            "amount",
        )
    )


def ancestors(
    edges: pl.DataFrame,
    *,
    depth: int = DEFAULT_DEPTH,
    as_of: datetime | None = None,
    max_fanout: int = DEFAULT_MAX_FANOUT,
    max_parents: int = DEFAULT_MAX_PARENTS,
    keep_exchange: bool = False,
    collapse_hops: bool = True,
) -> pl.DataFrame:
    """Funding ancestors of every funded account up to `depth` hops (shortest hop count).

    One polars join per hop over the newly reached (account, ancestor) pairs only,
    so the work is linear in the reachable subgraph. Exchange-like funders (see
    module doc) end the walk, and are passed over when choosing parents: an account
    an exchange created and one account topped up later has that payer as parent.
    With `collapse_hops`, throwaway hops (`pass_through_accounts`) are skipped: an
    account funded through them has the hop's own parent as parent, so accounts
    fanned out by one controller through separate chains are siblings.
    An account is never its own ancestor (funding cycles).
    Shapes: -> [account_id: str, ancestor: str, depth: i32], sorted.
    """
    hubs = exchange_like(edges, as_of=as_of, max_fanout=max_fanout).get_column("account_id")
    usable = edges if keep_exchange else edges.filter(~pl.col("from_account").is_in(hubs.implode()))
    parents = funding_parents(usable, as_of=as_of, max_parents=max_parents).select(
        "account_id", pl.col("funder").alias("ancestor")
    )
    if collapse_hops:
        parents = _skip_pass_through(parents, pass_through_accounts(usable, as_of=as_of), depth=depth)
    step = parents.rename({"account_id": "_via", "ancestor": "_next"})
    frontier = parents.unique()
    found = [frontier.with_columns(pl.lit(1, pl.Int32).alias("depth"))]
    seen = frontier
    for hop in range(2, depth + 1):
        expandable = frontier.filter(~pl.col("ancestor").is_in(hubs.implode()))
        frontier = (
            expandable.join(step, left_on="ancestor", right_on="_via")
            .select("account_id", pl.col("_next").alias("ancestor"))
            .filter(pl.col("account_id") != pl.col("ancestor"))
            .unique()
            .join(seen, on=["account_id", "ancestor"], how="anti")
        )
        if frontier.height == 0:
            break
        found.append(frontier.with_columns(pl.lit(hop, pl.Int32).alias("depth")))
        seen = pl.concat([seen, frontier])
    return pl.concat(found).cast(_ANCESTORS_SCHEMA).sort("account_id", "depth", "ancestor")


PASS_THROUGH_WINDOW = timedelta(hours=24)
PASS_THROUGH_SHARE = 0.9


def pass_through_accounts(
    edges: pl.DataFrame, *, as_of: datetime | None = None, window: timedelta = PASS_THROUGH_WINDOW,
    share: float = PASS_THROUGH_SHARE,
) -> pl.Series:
    """Throwaway hops: accounts that passed on at least `share` of what they received in
    their first `window` (from their first funding), in that asset, within that window.

    Counted per asset of the first funding; what an account received after the window
    does not count (a wallet that later trades and pays out is not a hop).
    Shapes: -> Series account_id (sorted).
    """
    valid = _valid_edges(edges, as_of)
    # The first funding, ties (one ledger) broken the same way every run: an edge that says
    # what it moved before one that does not (a funder recorded on the account), the creation
    # before payments, then by asset and funder.
    order = ["closed_at", pl.col("asset").is_null(), pl.col("type") != "create_account", "asset", "from_account"]
    first = valid.sort(order, nulls_last=True).group_by("to_account").agg(
        pl.col("closed_at").first().alias("_t0"), pl.col("asset").first().alias("_asset")
    ).rename({"to_account": "account_id"})
    inside = (pl.col("closed_at") >= pl.col("_t0")) & (pl.col("closed_at") <= pl.col("_t0") + window) & (
        pl.col("asset") == pl.col("_asset"))
    got = valid.rename({"to_account": "account_id"}).join(first, on="account_id").filter(inside).group_by(
        "account_id").agg(pl.col("amount").sum().alias("_in"))
    sent = valid.rename({"from_account": "account_id"}).join(first, on="account_id").filter(inside).group_by(
        "account_id").agg(pl.col("amount").sum().alias("_out"))
    hops = got.join(sent, on="account_id").filter((pl.col("_in") > 0) & (pl.col("_out") >= share * pl.col("_in")))
    return hops.get_column("account_id").sort()


def _skip_pass_through(parents: pl.DataFrame, hops: pl.Series, *, depth: int) -> pl.DataFrame:
    """Parents with each hop replaced by its own parent (repeatedly, up to `depth` hops).

    A hop with no parent in the data stays (it is then the root of its chain)."""
    up = parents.filter(pl.col("account_id").is_in(hops.implode())).rename(
        {"account_id": "ancestor", "ancestor": "_up"})
    for _ in range(depth):
        moved = parents.join(up, on="ancestor", how="left").with_columns(
            pl.coalesce("_up", "ancestor").alias("ancestor")).drop("_up")
        moved = moved.filter(pl.col("account_id") != pl.col("ancestor")).unique(maintain_order=True)
        if moved.equals(parents):
            break
        parents = moved
    return parents


def funding_siblings(
    edges: pl.DataFrame,
    *,
    depth: int = DEFAULT_DEPTH,
    as_of: datetime | None = None,
    accounts: pl.Series | None = None,
    max_fanout: int = DEFAULT_MAX_FANOUT,
    max_parents: int = DEFAULT_MAX_PARENTS,
    max_group: int = DEFAULT_MAX_GROUP,
    collapse_hops: bool = True,
) -> pl.DataFrame:
    """Pairs of accounts that share a (non-exchange) funding ancestor, or where one funded the other.

    `depth` of a pair is the hop count of the deeper side to their closest shared
    ancestor (1 = one funded the other or both were funded by the same account).
    `accounts` restricts the pairs to those accounts (e.g. the traders). An ancestor
    with more than `max_group` such descendants is skipped like an exchange.
    Shapes: -> [account_a: str, account_b: str, ancestor: str, depth: i32], a < b, sorted.
    """
    anc = ancestors(edges, depth=depth, as_of=as_of, max_fanout=max_fanout, max_parents=max_parents,
                    collapse_hops=collapse_hops)
    return siblings_from_ancestors(anc, accounts=accounts, max_group=max_group)


def _with_selves(anc: pl.DataFrame, accounts: pl.Series | None) -> pl.DataFrame:
    """Ancestor rows plus (x, x, 0) for every account, optionally restricted to `accounts`."""
    selves = pl.concat([anc.get_column("account_id"), anc.get_column("ancestor")]).unique()
    if accounts is not None:
        anc = anc.filter(pl.col("account_id").is_in(accounts.implode()))
        selves = selves.filter(selves.is_in(accounts))
    own = pl.DataFrame({"account_id": selves, "ancestor": selves}).with_columns(pl.lit(0, pl.Int32).alias("depth"))
    # ids, or integer keys in the rings step (engine.graph.account_keys)
    return pl.concat([anc.cast({"depth": pl.Int32}), own.select(anc.columns).cast(anc.schema)])


def siblings_from_ancestors(
    anc: pl.DataFrame, *, accounts: pl.Series | None = None, max_group: int = DEFAULT_MAX_GROUP
) -> pl.DataFrame:
    """`funding_siblings` from an `ancestors` frame already computed. Same shapes."""
    groups = _with_selves(anc, accounts)
    sizes = groups.group_by("ancestor").agg(pl.len().alias("_n"))
    keep = sizes.filter((pl.col("_n") >= 2) & (pl.col("_n") <= max_group)).select("ancestor")
    groups = groups.join(keep, on="ancestor", how="semi")
    pairs = (
        groups.join(groups, on="ancestor", suffix="_b")
        .filter(pl.col("account_id") < pl.col("account_id_b"))
        .select(
            pl.col("account_id").alias("account_a"),
            pl.col("account_id_b").alias("account_b"),
            "ancestor",
            pl.max_horizontal("depth", "depth_b").cast(pl.Int32).alias("depth"),
        )
    )
    return _closest(pairs)


def shared_ancestors(anc: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """For given pairs [account_a, account_b], their closest shared funding ancestor, if any.

    Cost is the ancestors of account_a summed over the pairs (no all-pairs join), so
    it suits checking the co-trade pairs. Counts one funding the other (depth as in
    `funding_siblings`). Shapes: -> [account_a, account_b, ancestor, depth: i32] (pairs with one only).
    """
    accounts = pl.concat([pairs.get_column("account_a"), pairs.get_column("account_b")]).unique()
    ext = _with_selves(anc, accounts)
    side_a = ext.rename({"account_id": "account_a", "depth": "_da"})
    side_b = ext.rename({"account_id": "account_b", "depth": "_db"})
    joined = (
        pairs.select("account_a", "account_b")
        .unique()
        .join(side_a, on="account_a")
        .join(side_b, on=["account_b", "ancestor"])
        .select("account_a", "account_b", "ancestor", pl.max_horizontal("_da", "_db").cast(pl.Int32).alias("depth"))
    )
    return _closest(joined)


def _closest(pairs: pl.DataFrame) -> pl.DataFrame:
    """One row per (account_a, account_b): the smallest depth, then the smallest ancestor id."""
    return pairs.sort("account_a", "account_b", "depth", "ancestor").unique(
        ["account_a", "account_b"], keep="first", maintain_order=True
    )


def funding_roots(
    edges: pl.DataFrame,
    *,
    depth: int = DEFAULT_DEPTH,
    as_of: datetime | None = None,
    max_fanout: int = DEFAULT_MAX_FANOUT,
    max_parents: int = DEFAULT_MAX_PARENTS,
    collapse_hops: bool = True,
) -> pl.DataFrame:
    """The farthest non-exchange ancestor of every funded account within `depth` hops.

    Ties at the same depth go to the smallest id. An account with no usable
    ancestor (e.g. funded only by an exchange) is its own root at depth 0.
    Shapes: -> [account_id: str, root: str, depth: i32], sorted by account_id.
    """
    anc = ancestors(edges, depth=depth, as_of=as_of, max_fanout=max_fanout, max_parents=max_parents,
                    collapse_hops=collapse_hops)
    deepest = (
        anc.sort(["account_id", "depth", "ancestor"], descending=[False, True, False])
        .unique("account_id", keep="first", maintain_order=True)
        .rename({"ancestor": "root"})
    )
    funded = _valid_edges(edges, as_of).select(pl.col("to_account").alias("account_id")).unique()
    alone = funded.join(deepest, on="account_id", how="anti").with_columns(
        pl.col("account_id").alias("root"), pl.lit(0, pl.Int32).alias("depth")
    )
    return pl.concat([deepest, alone.select(deepest.columns)]).sort("account_id")

"""The features of the feature matrix that join a wallet's trades to other inputs: one SQL
definition for every engine.

Seven features of a (wallet, pair) read, beside the wallet's own trades (its "sides",
storage.shape_features.sides_ctes), one more relation of the market
(FEATURE_DICTIONARY in engine.features.dictionary says what each means):

    offer_cancel_rate     offers: the offer operations (OFFER_COLUMNS)
    account_age_days      accounts: account_id, created_at
    same_controller_rate  lineage: account_id, ancestor, depth (the funding lineage,
    funding_similarity      engine.features.funding_features.ancestors_from_edges)
    ring_size             ring_members: account_id, ring_id (the rings step's rings)
    ring_cp_share
    loop_share            loop_trades: trade_id (the trades of the rings step's closed loops)

Like the shape features, the account, pool, pair and trade id columns may be integer keys (one
key space per kind of id across the relations), the assets are names: an offer finds its
pair by its two assets (the pair {asset, buying_asset} whatever the side), never by a pair
id made here. The definition is written in DuckDB's dialect, transpiled for Spark and
compiled for BigQuery into golden SQL (tests/engine/golden), like the shape features; the
features step runs it on each wallet partition in memory (storage.partition_features). An empty
relation means "none": no offers, no known creation or lineage, no ring, no loop (ring
features 0); the caller writes null where the input was not computed at all (the rings
step not run).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from storage.shape_features import ONE, ZERO, sides_ctes
from storage.sql_dialects import table_name, transpile

CONTEXT_FEATURES = (
    "offer_cancel_rate", "account_age_days", "same_controller_rate", "funding_similarity", "ring_size",
    "ring_cp_share", "loop_share",
)  # fmt: skip
OFFER_COLUMNS = ("closed_at", "type", "successful", "source_account", "asset", "buying_asset", "offer_id", "amount")
ACCOUNT_COLUMNS = ("account_id", "created_at")
LINEAGE_COLUMNS = ("account_id", "ancestor", "depth")
RING_COLUMNS = ("account_id", "ring_id")
LOOP_COLUMNS = ("trade_id",)
OFFER_TYPES = ("manage_sell_offer", "manage_buy_offer", "create_passive_sell_offer")  # engine.schemas.OFFER_TYPES


class ContextOptions(Protocol):
    """What the definition reads of the features' options (engine.features.sides.FeatureConfig)."""

    lookback: timedelta
    ancestor_depth: int


def _share(condition: str) -> str:
    """The mean of a condition that may be unknown (null): unknown rows are left out, as polars'
    mean of a boolean leaves out its nulls."""
    return f"AVG(CASE WHEN {condition} THEN {ONE} WHEN NOT ({condition}) THEN {ZERO} END)"


def _unordered(a: str, b: str, *, named: bool = False) -> str:
    """The two assets of a pair in an order that does not depend on the side (lower, higher),
    named lo and hi when `named`."""
    lo, hi = f"LEAST({a}, {b})", f"GREATEST({a}, {b})"
    return f"{lo} AS lo, {hi} AS hi" if named else f"{lo}, {hi}"


def context_features_sql(
    options: ContextOptions, *, source: str = "trades", offers: str = "offers", accounts: str = "accounts",
    lineage: str = "lineage", ring_members: str = "ring_members", loop_trades: str = "loop_trades",
    dialect: str = "duckdb",
) -> str:  # fmt: skip
    """The seven features of the wallets of partition $part, from the relations named (see the
    module doc; `source` has storage.shape_features.SOURCE_COLUMNS), in `dialect`. Parameters:
    since, as_of and part (storage.shape_features.shape_feature_params); the ancestor depth is
    written into the SQL."""
    offers, accounts, lineage = table_name(offers), table_name(accounts), table_name(lineage)
    ring_members, loop_trades = table_name(ring_members), table_name(loop_trades)
    depth = int(options.ancestor_depth)
    offer_types = ", ".join(f"'{t}'" for t in OFFER_TYPES)
    cancel = "offer_id <> 0 AND amount = 0"
    sql = f"""
WITH {sides_ctes(source)},
keys AS (SELECT DISTINCT wallet, pair_id FROM sides),
pairs AS (SELECT DISTINCT pair_id, {_unordered("sold_asset", "bought_asset", named=True)} FROM w),
cancels AS (  -- the share of the wallet's offer operations in the pair that delete an offer
    SELECT o.wallet, p.pair_id, o.rate
    FROM (SELECT source_account AS wallet, {_unordered("asset", "buying_asset", named=True)}, {_share(cancel)} AS rate
          FROM {offers}
          WHERE type IN ({offer_types}) AND COALESCE(successful, TRUE) AND closed_at > $since AND closed_at <= $as_of
                AND asset IS NOT NULL AND buying_asset IS NOT NULL
          GROUP BY source_account, {_unordered("asset", "buying_asset")}) o
    JOIN pairs p ON p.lo = o.lo AND p.hi = o.hi),
created AS (
    SELECT account_id, MIN(created_at) AS created_at FROM {accounts} WHERE created_at <= $as_of GROUP BY account_id),
ancestry AS (SELECT account_id, ancestor FROM {lineage} WHERE depth <= {depth}),
lineage_sets AS (  -- an account with a known lineage: itself and its ancestors (exchange-like funders are not in it)
    SELECT account_id, account_id AS node FROM ancestry
    UNION DISTINCT SELECT account_id, ancestor AS node FROM ancestry WHERE ancestor <> account_id),
set_sizes AS (SELECT account_id, COUNT(*) AS size FROM lineage_sets GROUP BY account_id),
per_cp AS (  -- trades with each account counterparty (pools have no lineage)
    SELECT wallet, pair_id, cp_account, COUNT(*) AS n FROM sides WHERE cp_account IS NOT NULL
    GROUP BY wallet, pair_id, cp_account),
shared AS (  -- the ancestors (or selves) a wallet and a counterparty share
    SELECT l.wallet, l.cp_account, COUNT(*) AS n_shared
    FROM (SELECT DISTINCT wallet, cp_account FROM per_cp) l
    JOIN lineage_sets sw ON sw.account_id = l.wallet
    JOIN lineage_sets sc ON sc.account_id = l.cp_account AND sc.node = sw.node
    GROUP BY l.wallet, l.cp_account),
links AS (  -- only wallets of known lineage; a counterparty of unknown lineage is a set of one
    SELECT p.wallet, p.pair_id, p.n, COALESCE(s.n_shared, 0) AS n_shared,
           CAST(COALESCE(s.n_shared, 0) AS DOUBLE)
             / (sw.size + COALESCE(sc.size, 1) - COALESCE(s.n_shared, 0)) AS jaccard
    FROM per_cp p JOIN set_sizes sw ON sw.account_id = p.wallet
    LEFT JOIN set_sizes sc ON sc.account_id = p.cp_account
    LEFT JOIN shared s ON s.wallet = p.wallet AND s.cp_account = p.cp_account),
controller AS (  -- trade-weighted over the pair's account counterparties
    SELECT wallet, pair_id, CAST(SUM(CASE WHEN n_shared > 0 THEN n ELSE 0 END) AS DOUBLE) / SUM(n) AS same,
           SUM(n * jaccard) / SUM(n) AS similarity
    FROM links GROUP BY wallet, pair_id),
members AS (SELECT DISTINCT account_id, ring_id FROM {ring_members}),
ring_sizes AS (SELECT ring_id, COUNT(*) AS size FROM members GROUP BY ring_id),
own_ring AS (  -- an account in several rings: its largest, ties to the first ring id
    SELECT account_id, ring_id, size FROM (
        SELECT m.account_id, m.ring_id, s.size,
               ROW_NUMBER() OVER (PARTITION BY m.account_id ORDER BY s.size DESC, m.ring_id) AS r
        FROM members m JOIN ring_sizes s ON s.ring_id = m.ring_id)
    WHERE r = 1),
rings AS (  -- a trade counts once: of a wallet's trade with itself, the side that gave the base asset
    SELECT s.wallet, s.pair_id, COALESCE(MAX(o.size), 0) AS size,
           AVG(CASE WHEN c.account_id IS NULL THEN {ZERO} ELSE {ONE} END) AS cp_share
    FROM sides s LEFT JOIN own_ring o ON o.account_id = s.wallet
    LEFT JOIN members c ON c.account_id = s.cp_account AND c.ring_id = o.ring_id
    WHERE s.wallet IS DISTINCT FROM s.cp_account OR s.sold_base
    GROUP BY s.wallet, s.pair_id),
looped AS (SELECT DISTINCT trade_id FROM {loop_trades}),
loops AS (
    SELECT s.wallet, s.pair_id, AVG(CASE WHEN l.trade_id IS NULL THEN {ZERO} ELSE {ONE} END) AS share
    FROM sides s LEFT JOIN looped l ON l.trade_id = s.id GROUP BY s.wallet, s.pair_id)
SELECT k.wallet, k.pair_id,
       c.rate AS offer_cancel_rate,
       (EPOCH_US($as_of) - EPOCH_US(a.created_at)) / CAST(86400000000 AS DOUBLE) AS account_age_days,
       f.same AS same_controller_rate,
       f.similarity AS funding_similarity,
       CAST(r.size AS DOUBLE) AS ring_size,
       r.cp_share AS ring_cp_share,
       l.share AS loop_share
FROM keys k
LEFT JOIN cancels c ON c.wallet = k.wallet AND c.pair_id = k.pair_id
LEFT JOIN created a ON a.account_id = k.wallet
LEFT JOIN controller f ON f.wallet = k.wallet AND f.pair_id = k.pair_id
JOIN rings r ON r.wallet = k.wallet AND r.pair_id = k.pair_id
JOIN loops l ON l.wallet = k.wallet AND l.pair_id = k.pair_id
"""
    return transpile(sql.strip(), dialect)

"""The live watch's reads: only the part of the store a new ledger's trades touch.

Each tick of `watch` (engine.services.watch) reads the recent window of the pairs its
new trades touched, the funding lineage of their wallets and their offer operations,
never the whole store, so a tick's cost follows the touched market's recent activity,
not the store's size. Ledger filters come first: trades are stored in ledger order, so
DuckDB's zone maps skip the older row groups.

Funding lineage has no such order (an account may have been created years ago), so the watch
keeps its own copy of the funding edges, looked up by account through ART indexes
(`sync_funding_links`, `lineage_operations`): `watch_funding_links` holds every funding edge,
indexed by the account funded (a walk up the lineage reads an account's few funders);
`watch_funding_out` holds, per funder, only the edges to its first `max_children` accounts
funded, indexed by the funder (enough to tell an exchange-like funder from a small one, and
the fan-out of a hub is never read whole). The watch fills them from the operations stored
since its last look (by rowid), so batch ingest pays nothing for them; they are derived
data, rebuilt from `operations` when that table was rebuilt.
"""

from __future__ import annotations

import polars as pl

_TRADE_COLUMNS = (
    "t.id, t.op_id, t.ledger, t.closed_at, t.trade_type, t.pair_id, s.account_id AS seller_account, "
    "t.seller_offer_id, t.seller_pool_id, b.account_id AS buyer_account, t.buyer_offer_id, t.buyer_pool_id, "
    "t.sold_asset, t.sold_amount, t.bought_asset, t.bought_amount, t.price_n, t.price_d, t.source"
)
_OPERATION_COLUMNS = (
    "id, ledger, closed_at, type, tx_hash, successful, source_account, from_account, to_account, "
    "asset, amount, source_asset, source_amount, offer_id, buying_asset, price_n, price_d, "
    "balance_id, memo, source"
)
_OFFER_TYPES = ["manage_sell_offer", "manage_buy_offer", "create_passive_sell_offer"]
# The store's `funding_edges` view (storage/schema.py) as a filter on `operations`, every column kept
_FUNDING_WHERE = (
    "type IN ('create_account', 'payment', 'path_payment_strict_send', 'path_payment_strict_receive', "
    "'account_merge', 'create_claimable_balance', 'claim_claimable_balance') AND coalesce(successful, TRUE) "
    "AND from_account IS NOT NULL AND to_account IS NOT NULL AND from_account <> to_account"
)
# The operations stored past a rowid of their table (a parameter), in the canonical form
_OPERATIONS_SINCE = f"(SELECT {_OPERATION_COLUMNS} FROM operations WHERE id IN (SELECT id FROM operation_rows WHERE rowid > ?))"
_LINK_TABLES = (
    f"CREATE TABLE IF NOT EXISTS watch_funding_links AS SELECT {_OPERATION_COLUMNS} FROM operations WHERE FALSE",
    "CREATE INDEX IF NOT EXISTS watch_funding_links_to ON watch_funding_links (to_account)",
    f"CREATE TABLE IF NOT EXISTS watch_funding_out AS SELECT {_OPERATION_COLUMNS} FROM operations WHERE FALSE",
    "CREATE INDEX IF NOT EXISTS watch_funding_out_from ON watch_funding_out (from_account)",
    "CREATE TABLE IF NOT EXISTS watch_funding_synced (last_rowid BIGINT NOT NULL)",
)
# The first `max_children` accounts each funder of the new edges funded (`known`: the ones already
# kept), and every new edge to one of them. Parameters: rowid, max_children.
_SAMPLE_NEW_EDGES = f"""
INSERT INTO watch_funding_out
WITH new AS (SELECT * FROM {_OPERATIONS_SINCE} WHERE {_FUNDING_WHERE}),
n_known AS (SELECT from_account, count(*) AS n FROM known GROUP BY 1),
fresh AS (SELECT from_account, to_account, min(id) AS first_id FROM new e
          WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.from_account = e.from_account AND k.to_account = e.to_account)
          GROUP BY 1, 2),
ranked AS (SELECT f.from_account, f.to_account, coalesce(n.n, 0)
                  + row_number() OVER (PARTITION BY f.from_account ORDER BY f.first_id, f.to_account) AS child
           FROM fresh f LEFT JOIN n_known n USING (from_account)),
kept AS (SELECT from_account, to_account FROM known UNION ALL SELECT from_account, to_account FROM ranked WHERE child <= ?)
SELECT e.* FROM new e SEMI JOIN kept USING (from_account, to_account)
"""
_KEYS_PER_QUERY = 500  # accounts per keyed lookup: a constant IN list DuckDB answers from the ART index


class WatchQueries:
    """Queries of the live watch (the Store inherits them; `_frame`, `transaction` and `append_scores` are the Store's)."""

    def _frame(self, sql: str, params: list | None = None) -> pl.DataFrame:  # Store's reader
        raise NotImplementedError

    def record_live_scores(self, scores: pl.DataFrame) -> int:
        """Append the scores that raised alerts to the `scores` history and put them in the derived
        `scores_latest` when the analysis keeps one, so the Wallet page shows the score an alert links to.
        scores: RiskScore rows (engine.scoring.SCORE_COLUMNS). Returns rows appended."""
        if scores.height == 0:
            return 0
        added = self.append_scores(scores)
        if self.has_table("derived_scores_latest"):
            with self.transaction() as cur:
                cur.register("live_scores", scores.to_arrow())
                try:
                    cur.execute("DELETE FROM derived_scores_latest d USING live_scores s "
                                "WHERE d.wallet = s.wallet AND d.pair_id = s.pair_id")  # fmt: skip
                    cur.execute("INSERT INTO derived_scores_latest BY NAME SELECT s.*, now() AS scored_at "
                                "FROM live_scores s")  # fmt: skip
                finally:
                    cur.unregister("live_scores")
        return added

    def record_live_rings(self, rings: pl.DataFrame, members: pl.DataFrame) -> int:
        """Add the rings the watch confirmed to the derived `rings` / `ring_members` tables the Rings and
        Wallet pages read (created with these columns when no analysis made them). A ring already there
        (same ring_id: same members) is left as it is; a later analysis replaces both tables whole.
        rings, members: engine.graph.rings.RingResult.rings / ring_members rows. Returns rings added."""
        if rings.height == 0:
            return 0
        with self.transaction() as cur:
            before = _count_if_any(cur, "derived_rings")
            for table, rows in (("derived_rings", rings), ("derived_ring_members", members)):
                cur.register("live_rows", rows.to_arrow())
                try:
                    cur.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM live_rows WHERE FALSE")
                    stored = {r[0] for r in cur.execute(f"DESCRIBE {table}").fetchall()}
                    shared = ", ".join(f'"{c}"' for c in rows.columns if c in stored)
                    # column names are the engine's frame columns, the table names constants
                    cur.execute(f"INSERT INTO {table} ({shared}) SELECT {shared} FROM live_rows "
                                f"WHERE ring_id NOT IN (SELECT ring_id FROM {table})")  # fmt: skip
                finally:
                    cur.unregister("live_rows")
            return _count_if_any(cur, "derived_rings") - before

    def pair_window_trades(self, pairs: list[str], *, ledger_from: int) -> pl.DataFrame:
        """Trades from `ledger_from` on of every account that traded in `pairs` since then, in all
        its pairs (a member's trades outside the pair decide whether its ring is inward-looking).

        Shapes: engine.schemas.TRADES_SCHEMA, by op_id, id."""
        return self._frame(
            "WITH recent AS (SELECT * FROM trade_rows WHERE ledger >= ?), "
            "touched AS (SELECT seller_key AS k FROM recent WHERE list_contains(?, pair_id) "
            "            UNION SELECT buyer_key FROM recent WHERE list_contains(?, pair_id)) "
            f"SELECT {_TRADE_COLUMNS} FROM recent t "
            "LEFT JOIN account_keys s ON s.account_key = t.seller_key "
            "LEFT JOIN account_keys b ON b.account_key = t.buyer_key "
            "WHERE t.seller_key IN (SELECT k FROM touched) OR t.buyer_key IN (SELECT k FROM touched) "
            "ORDER BY t.op_id, t.id",
            [int(ledger_from), list(pairs), list(pairs)],
        )

    def sync_funding_links(self, *, max_children: int) -> int:
        """Copy the funding edges of the operations stored since the last call into the watch's
        lineage tables (module doc), keeping per funder the edges to its first `max_children`
        accounts funded in `watch_funding_out`. The first call copies every stored funding edge
        (a scan, once); later calls read only the new rows. Returns the edges copied."""
        with self.transaction() as cur:
            for statement in _LINK_TABLES:
                cur.execute(statement)
            last = cur.execute("SELECT max(last_rowid) FROM watch_funding_synced").fetchall()[0][0]
            top = cur.execute("SELECT max(rowid) FROM operation_rows").fetchall()[0][0]
            if top is None or top == last:
                return 0
            if last is not None and top < last:  # `operations` was rebuilt: so are these
                for table in ("watch_funding_links", "watch_funding_out", "watch_funding_synced"):
                    cur.execute(f"DELETE FROM {table}")
                last = None
            added = _copy_new_links(cur, since=-1 if last is None else last, max_children=max_children,
                                    first=last is None)  # fmt: skip
            cur.execute("DELETE FROM watch_funding_synced")
            cur.execute("INSERT INTO watch_funding_synced VALUES (?)", [top])
        return added

    def lineage_operations(self, accounts: list[str], *, depth: int, ledger_from: int) -> pl.DataFrame:
        """Operations the features and rings need about `accounts`: the funding edges on their
        lineage up to `depth` hops, the edges out of each ancestor to the first accounts it funded
        (as many as `sync_funding_links` keeps: enough to see an exchange-like funder), and their
        own offer operations from `ledger_from` on. Funding edges come from the watch's indexed
        copy (call `sync_funding_links` after writing): one keyed lookup a hop, whatever the store holds.

        Shapes: engine.schemas.OPERATIONS_SCHEMA, by id."""
        parts, frontier = [], pl.Series("account_id", sorted(set(accounts)), dtype=pl.String)
        lineage = frontier
        with self._cursor() as cur:
            for hop in range(depth + 1):
                into = _keyed(cur, f"SELECT {_OPERATION_COLUMNS} FROM watch_funding_links WHERE to_account IN ({{keys}})",
                              frontier.to_list())  # fmt: skip
                parts.append(into)
                parents = into.get_column("from_account").unique().rename("account_id")
                frontier = parents.filter(~parents.is_in(lineage.implode()))
                if hop == depth or frontier.len() == 0:
                    break
                lineage = pl.concat([lineage, frontier])
            above = lineage.filter(~lineage.is_in(pl.Series(list(accounts), dtype=pl.String).implode())).sort()
            parts.append(_keyed(cur, f"SELECT {_OPERATION_COLUMNS} FROM watch_funding_out WHERE from_account IN ({{keys}})",
                                above.to_list()))  # fmt: skip
            parts.append(pl.from_arrow(cur.sql(
                f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE ledger >= ? AND list_contains(?, type) "
                "AND list_contains(?, source_account)", params=[int(ledger_from), _OFFER_TYPES, list(accounts)]
            ).to_arrow_table()))  # fmt: skip
        return pl.concat(parts, how="vertical_relaxed").unique("id").sort("id")

    def accounts_of(self, accounts: list[str]) -> pl.DataFrame:
        """The `accounts` rows of these accounts (created_at, funder, ...), by account_id (looked up by key)."""
        with self._cursor() as cur:
            return _keyed(cur, "SELECT * FROM accounts WHERE account_id IN ({keys})", sorted(set(accounts))).sort("account_id")

    def watch_state(self) -> dict:
        """What the Live page shows of the watch: stored alerts, the last alert, the last stored
        ledger and its close (None when empty)."""
        with_alerts = self._frame(
            "SELECT (SELECT count(*) FROM alerts) AS n_alerts, (SELECT max(detected_at) FROM alerts) AS last_alert, "
            "(SELECT max(ledger) FROM trade_rows) AS last_ledger, (SELECT max(closed_at) FROM trade_rows) AS last_close"
        )
        return with_alerts.row(0, named=True)


def _count_if_any(cur, table: str) -> int:
    exists = cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchall()
    return cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] if exists[0][0] else 0


def _copy_new_links(cur, *, since: int, max_children: int, first: bool) -> int:
    """Copy the funding edges of operations past rowid `since` (`sync_funding_links`); the funders'
    accounts already kept are looked up by funder, unless this is the first copy (none kept)."""
    known = pl.DataFrame(schema={"from_account": pl.String, "to_account": pl.String})
    if not first:
        funders = cur.execute(f"SELECT DISTINCT from_account FROM {_OPERATIONS_SINCE} WHERE {_FUNDING_WHERE}",
                              [since]).fetchall()  # fmt: skip
        known = _keyed(cur, "SELECT from_account, to_account FROM watch_funding_out WHERE from_account IN ({keys}) "
                            "GROUP BY ALL", [f for (f,) in funders])  # fmt: skip
    cur.register("known", known.to_arrow())
    try:
        cur.execute(_SAMPLE_NEW_EDGES, [since, int(max_children)])
    finally:
        cur.unregister("known")
    before = cur.execute("SELECT count(*) FROM watch_funding_links").fetchall()[0][0]
    cur.execute(f"INSERT INTO watch_funding_links SELECT * FROM {_OPERATIONS_SINCE} WHERE {_FUNDING_WHERE}", [since])
    return cur.execute("SELECT count(*) FROM watch_funding_links").fetchall()[0][0] - before


def _keyed(cur, sql: str, keys: list[str]) -> pl.DataFrame:
    """Rows of `sql` for `keys`, `_KEYS_PER_QUERY` at a time: `{keys}` in `sql` becomes a list of ?
    placeholders (the values stay parameters), which DuckDB answers from the column's ART index."""
    cur.execute("SET index_scan_max_count = 1000000")  # a hub's many edges are still looked up, not scanned for
    parts = [pl.from_arrow(cur.sql(sql.format(keys=", ".join("?" * len(chunk))), params=chunk).to_arrow_table())
             for chunk in (keys[i:i + _KEYS_PER_QUERY] for i in range(0, len(keys), _KEYS_PER_QUERY))]  # fmt: skip
    if not parts:
        return pl.from_arrow(cur.sql(sql.format(keys="NULL")).to_arrow_table())
    return pl.concat(parts, how="vertical_relaxed")

"""The live watch's reads: only the part of the store a new ledger's trades touch.

Each tick of `watch` (engine.services.watch) reads the recent window of the pairs its
new trades touched, the funding lineage of their wallets and their offer operations,
never the whole store, so a tick's cost follows the touched market's recent activity,
not the store's size. Ledger filters come first: trades are stored in ledger order, so
DuckDB's zone maps skip the older row groups.
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

    def lineage_operations(self, accounts: list[str], *, depth: int, ledger_from: int) -> pl.DataFrame:
        """Operations the features and rings need about `accounts`: the funding edges on their
        lineage up to `depth` hops (with every edge out of an ancestor, so an exchange-like
        funder's fan-out is seen) and their own offer operations from `ledger_from` on.

        Shapes: engine.schemas.OPERATIONS_SCHEMA, by id."""
        return self._frame(
            "WITH RECURSIVE up(account_id, depth) AS ("
            " SELECT unnest(?::VARCHAR[]), 0"
            " UNION SELECT f.from_account, up.depth + 1 FROM up"
            " JOIN funding_edges f ON f.to_account = up.account_id WHERE up.depth < ?), "
            "lineage AS (SELECT account_id, min(depth) AS depth FROM up GROUP BY 1), "
            "edge_ids AS (SELECT id FROM funding_edges WHERE to_account IN (SELECT account_id FROM lineage)"
            " OR from_account IN (SELECT account_id FROM lineage WHERE depth > 0)) "
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE id IN (SELECT id FROM edge_ids) "
            "OR (ledger >= ? AND list_contains(?, type) AND list_contains(?, source_account)) ORDER BY id",
            [list(accounts), int(depth), int(ledger_from), _OFFER_TYPES, list(accounts)],
        )

    def accounts_of(self, accounts: list[str]) -> pl.DataFrame:
        """The `accounts` rows of these accounts (created_at, funder, ...), by account_id."""
        return self._frame("SELECT * FROM accounts WHERE list_contains(?, account_id) ORDER BY account_id",
                           [list(accounts)])  # fmt: skip

    def watch_state(self) -> dict:
        """What the Live page shows of the watch: stored alerts, the last alert, the last stored
        ledger and its close (None when empty)."""
        with_alerts = self._frame(
            "SELECT (SELECT count(*) FROM alerts) AS n_alerts, (SELECT max(detected_at) FROM alerts) AS last_alert, "
            "(SELECT max(ledger) FROM trade_rows) AS last_ledger, (SELECT max(closed_at) FROM trade_rows) AS last_close"
        )
        return with_alerts.row(0, named=True)

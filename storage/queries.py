"""Read-only queries the workbench pages need, computed in DuckDB (not in the browser).

Every query is a method of `Queries`, which `Store` inherits: it runs parameterised SQL through the Store's `_frame` /
`_scalar` readers (each read on its own cursor, so Streamlit sessions can call
them concurrently). SQL text holds only constants: column names for sorting come
from a whitelist, values always travel as parameters. Derived tables that were
never computed make the functions return None (or empty frames), never raise.

Time window: `window_days` keeps the trades whose close time is within that many
days of the newest stored trade (None = everything).
"""

from __future__ import annotations

import polars as pl

# base asset stroops of a trade: the pair's first asset is the base
BASE_AMOUNT = "CASE WHEN sold_asset = split_part(pair_id, '/', 1) THEN sold_amount ELSE bought_amount END"
# XLM stroops of a trade: its XLM leg (the pair's own traded price converts the other asset); NULL when neither
# side is XLM. Volumes across pairs (ring members, graph edges) are summed in this one unit, never in base
# units of different assets.
XLM_AMOUNT = ("CASE WHEN sold_asset = 'XLM:native' THEN sold_amount WHEN bought_asset = 'XLM:native' "
              "THEN bought_amount END")
SORTABLE = ("score", "confidence", "wallet", "pair_id", "timestamp", "n_trades")
_SCORE_COLS = (
    "wallet, pair_id, score, benford_flag, ml_flag, timestamp, confidence, ring_id, model_version, bft_divergence"
)
_LATEST = (
    "SELECT wallet, pair_id, score, benford_flag, ml_flag, timestamp, confidence, ring_id, model_version, "
    "bft_divergence FROM scores QUALIFY row_number() OVER (PARTITION BY wallet, pair_id "
    "ORDER BY scored_at DESC, timestamp DESC) = 1"
)


def _trade_filter(*, pair_id: str | None, window_days: int | None, alias: str = "") -> tuple[str, list]:
    """WHERE clause (possibly empty) and params for a pair / time-window filter over trades."""
    p = f"{alias}." if alias else ""
    clauses, params = [], []
    if pair_id:
        clauses.append(f"{p}pair_id = ?")
        params.append(pair_id)
    if window_days:
        clauses.append(f"{p}closed_at >= (SELECT max(closed_at) FROM trade_rows) - to_days(?)")
        params.append(int(window_days))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


class Queries:
    """The workbench's read queries, owned by the Store (`Store` inherits them): each runs
    parameterised SQL through the Store's own readers and is called by name (`store.wallet_scores(w)`)."""

    def _frame(self, sql: str, params: list | None = None) -> pl.DataFrame:  # Store's reader
        raise NotImplementedError

    def _scalar(self, sql: str, params: list | None = None):  # Store's reader
        raise NotImplementedError

    def _latest(self) -> str:
        """SQL of the latest score per (wallet, pair): the `scores_latest` derived table when the scoring step keeps
        one (a window over every score row costs ~0.5 s per million rows), else computed from `scores`."""
        if self.has_table("derived_scores_latest"):
            return f"SELECT {_SCORE_COLS} FROM derived_scores_latest"
        return _LATEST

    # `trades` is a view that joins account ids back in (storage/schema.py, migration 3).
    # A query that needs no account column reads `trade_rows`, the same rows without
    # those joins: counting or summing a million trades then costs no join.

    def alerts(self, *, limit: int = 200, undelivered: bool = False) -> pl.DataFrame:
        """Live-watch alerts, newest first: id, wallet, pair_id, score, ring_id, ledger, closed_at,
        detected_at, reasons (JSON text), model_version, delivered_at."""
        where = "WHERE delivered_at IS NULL" if undelivered else ""
        return self._frame(f"SELECT * FROM alerts {where} ORDER BY id DESC LIMIT ?", [int(limit)])

    def last_alerts(self) -> pl.DataFrame:
        """wallet, pair_id, closed_at of the latest alert per (wallet, pair) (the watch's cooldown)."""
        return self._frame("SELECT wallet, pair_id, max(closed_at) AS closed_at FROM alerts GROUP BY ALL")

    def has_table(self, table: str) -> bool:
        """True when `table` (e.g. "derived_rings") exists in the store."""
        return bool(self._scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]))

    def data_version(self) -> str:
        """A short text that changes whenever data the pages show changes (cache key)."""
        row = self._frame(
            "SELECT (SELECT count(*) FROM trade_rows) AS t, (SELECT count(*) FROM operation_rows) AS o, "
            "(SELECT count(*) FROM scores) AS s, (SELECT count(*) FROM annotations) AS a, "
            "(SELECT count(*) FROM reports) AS r, (SELECT coalesce(max(run_id), 0) FROM ingest_runs) AS runs, "
            "(SELECT count(*) FROM ingest_runs WHERE status = 'running') AS running, "
            "(SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables "
            " WHERE table_name LIKE 'derived_%') AS derived"
        ).row(0)
        return "|".join(str(v) for v in row)

    def overview_counts(self, *, threshold: int, pair_id: str | None = None, window_days: int | None = None) -> dict:
        """n_trades, n_wallets, n_pairs (within the filter), n_scored and n_flagged (latest scores of the
        (wallet, pair)s that traded within the filter: a window with no trades has no flagged wallets)."""
        where, params = _trade_filter(pair_id=pair_id, window_days=window_days)
        trades = self._frame(
            "SELECT count(*) AS n_trades, count(DISTINCT pair_id) AS n_pairs, "
            "(SELECT count(*) FROM (SELECT seller_key AS a FROM trade_rows " + where + " UNION "
            "SELECT buyer_key FROM trade_rows " + where + ") WHERE a IS NOT NULL) AS n_wallets "
            f"FROM trade_rows {where}",
            params * 3,
        ).row(0, named=True)
        swhere, sparams = self._score_filter(pair_id=pair_id, window_days=window_days)
        scores = self._frame(
            f"SELECT count(DISTINCT wallet) AS n_scored, count(DISTINCT wallet) FILTER (WHERE score >= ?) AS n_flagged "
            f"FROM ({self._latest()}) ls {swhere}",
            [threshold] + sparams,
        ).row(0, named=True)
        return {k: int(v or 0) for k, v in {**trades, **scores}.items()}

    def _score_filter(self, *, pair_id: str | None, window_days: int | None) -> tuple[str, list]:
        """WHERE clause over latest scores (alias ls): the pair, and with a window only the (wallet, pair)s
        that traded within it."""
        clauses, params = [], []
        if pair_id:
            clauses.append("ls.pair_id = ?")
            params.append(pair_id)
        if window_days:
            where, wparams = _trade_filter(pair_id=pair_id, window_days=window_days)
            # unnest, not a UNION of two selects: DuckDB 1.x answered that UNION with the seller rows only
            clauses.append(f"(ls.wallet, ls.pair_id) IN (SELECT unnest([seller_account, buyer_account]), pair_id "
                           f"FROM trades {where})")
            params += wparams
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    def pair_list(self, *, limit: int = 500) -> list[str]:
        """Pair ids by trade count, most traded first."""
        frame = self._frame(
            "SELECT pair_id FROM trade_rows GROUP BY pair_id ORDER BY count(*) DESC, pair_id LIMIT ?", [limit]
        )
        return frame.get_column("pair_id").to_list()

    def risk_distribution(self, *, pair_id: str | None = None, window_days: int | None = None, bin_width: int = 10
    ) -> pl.DataFrame:
        """Latest scores of the (wallet, pair)s that traded within the filter, in bins.

        Shapes: [bucket: i32 (lower edge), n: i64], every bucket 0..100 present."""
        spair, params = self._score_filter(pair_id=pair_id, window_days=window_days)
        return self._frame(
            "SELECT b.bucket, coalesce(n, 0) AS n FROM (SELECT range::INTEGER AS bucket FROM range(0, 101, ?)) b "
            f"LEFT JOIN (SELECT (CAST(floor(least(score, 99)) AS INTEGER) // ?) * ? AS bucket, count(*) AS n FROM ({self._latest()}) ls {spair} "
            "GROUP BY 1) s USING (bucket) ORDER BY b.bucket",
            [bin_width, bin_width, bin_width] + params,
        ).filter(pl.col("bucket") < 100)

    def top_flagged(self, *,
        threshold: int,
        pair_id: str | None = None,
        window_days: int | None = None,
        wallet_prefix: str | None = None,
        sort_by: str = "score",
        descending: bool = True,
        offset: int = 0,
        limit: int = 25,
    ) -> tuple[pl.DataFrame, int]:
        """One page of flagged (wallet, pair) latest scores, sorted and filtered in the store.

        Shapes: [wallet, pair_id, score, confidence, benford_flag, ml_flag, ring_id, model_version,
        timestamp], plus the total number of matching rows.
        """
        if sort_by not in SORTABLE or sort_by == "n_trades":
            sort_by = "score"
        swhere, sparams = self._score_filter(pair_id=pair_id, window_days=window_days)
        clauses, params = ["score >= ?"] + ([swhere.removeprefix("WHERE ")] if swhere else []), [threshold] + sparams
        if wallet_prefix:
            clauses.append("starts_with(wallet, ?)")
            params.append(wallet_prefix.strip().upper())
        where = "WHERE " + " AND ".join(clauses)
        order = f"{sort_by} {'DESC' if descending else 'ASC'}, wallet, pair_id"  # whitelisted column
        page = self._frame(
            "SELECT wallet, pair_id, score, confidence, benford_flag, ml_flag, ring_id, model_version, timestamp, "
            f"count(*) OVER () AS _total FROM ({self._latest()}) ls {where} ORDER BY {order} LIMIT ? OFFSET ?",
            params + [int(limit), int(offset)],
        )
        if page.height:
            return page.drop("_total"), int(page.item(0, "_total"))
        total = self._scalar(f"SELECT count(*) FROM ({self._latest()}) ls {where}", params) if offset else 0
        return page.drop("_total"), int(total)

    def pair_volumes(self, *, window_days: int | None = None, limit: int = 15) -> pl.DataFrame:
        """Per pair: reported volume and the volume left once trades inside a detected ring are removed.

        A ring trade has seller and buyer in the same ring. Without a rings table the
        ring columns are null. Shapes: [pair_id, n_trades, reported_volume (base stroops),
        ring_volume, volume_without_rings, ring_share, reported_xlm, without_rings_xlm (XLM stroops: the
        trades' XLM legs, null for a pair without XLM)], most traded first.
        """
        where, params = _trade_filter(pair_id=None, window_days=window_days, alias="t")
        if not self.has_table("derived_ring_members"):
            return self._frame(
                f"SELECT pair_id, count(*) AS n_trades, sum({BASE_AMOUNT})::BIGINT AS reported_volume, "
                "NULL::BIGINT AS ring_volume, NULL::BIGINT AS volume_without_rings, NULL::DOUBLE AS ring_share, "
                f"sum({XLM_AMOUNT})::BIGINT AS reported_xlm, NULL::BIGINT AS without_rings_xlm "
                f"FROM trade_rows t {where} GROUP BY pair_id ORDER BY n_trades DESC, pair_id LIMIT ?",
                params + [limit],
            )
        return self._frame(
            "WITH m AS (SELECT DISTINCT ring_id, account_id FROM derived_ring_members), "
            f"x AS (SELECT t.pair_id, {BASE_AMOUNT.replace('pair_id', 't.pair_id')} AS amount, {XLM_AMOUNT} AS xlm, "
            "EXISTS (SELECT 1 FROM m s JOIN m b ON s.ring_id = b.ring_id "
            "        WHERE s.account_id = t.seller_account AND b.account_id = t.buyer_account) AS in_ring "
            f"FROM trades t {where}) "
            "SELECT pair_id, count(*) AS n_trades, sum(amount)::BIGINT AS reported_volume, "
            "coalesce(sum(amount) FILTER (WHERE in_ring), 0)::BIGINT AS ring_volume, "
            "coalesce(sum(amount) FILTER (WHERE NOT in_ring), 0)::BIGINT AS volume_without_rings, "
            "ring_volume / reported_volume AS ring_share, sum(xlm)::BIGINT AS reported_xlm, "
            "sum(xlm) FILTER (WHERE NOT in_ring)::BIGINT AS without_rings_xlm "
            "FROM x GROUP BY pair_id ORDER BY n_trades DESC, pair_id LIMIT ?",
            params + [limit],
        )

    def first_digit_counts(self, *, pair_id: str | None = None, wallet: str | None = None, window_days: int | None = None
    ) -> pl.DataFrame:
        """First significant digit of base amounts (stroops). Shapes: [digit: 1..9, n: i64], all nine present."""
        where, params = _trade_filter(pair_id=pair_id, window_days=window_days)
        table = "trade_rows"
        if wallet:
            where = (where + " AND " if where else "WHERE ") + "(seller_account = ? OR buyer_account = ?)"
            params += [wallet, wallet]
            table = "trades"
        return self._frame(
            "SELECT d.digit, coalesce(c.n, 0) AS n FROM (SELECT range::INTEGER AS digit FROM range(1, 10)) d "
            f"LEFT JOIN (SELECT left(CAST({BASE_AMOUNT} AS VARCHAR), 1)::INTEGER AS digit, count(*) AS n "
            f"FROM {table} {where} GROUP BY 1) c USING (digit) ORDER BY d.digit",
            params,
        )

    def rings(self, *, pair_id: str | None = None, window_days: int | None = None) -> pl.DataFrame | None:
        """Detected rings with the highest score any member ever had (any pair, any run). None when rings were never computed.

        With a pair and/or a window: only the rings with a ring trade (seller and buyer both members) within it.
        Shapes: [ring_id, size, n_trades, volume, closed_loop_share, internal_density, reciprocity,
        funding_share, n_pairs, max_score, mean_score (mean of the members' highest scores), volume_xlm], riskiest
        first; ties by closed-loop share, volume, size.
        `volume` is the engine's base-asset stroops summed over the ring's pairs; `volume_xlm` is the XLM stroops
        of the ring's internal trades (their XLM legs), comparable across rings and pairs.
        """
        if not self.has_table("derived_rings"):
            return None
        where, params = _trade_filter(pair_id=pair_id, window_days=window_days, alias="t")
        within = ""
        if where:
            within = ("WHERE r.ring_id IN (SELECT s.ring_id FROM derived_ring_members s JOIN trades t "
                      "ON t.seller_account = s.account_id JOIN derived_ring_members b ON b.ring_id = s.ring_id "
                      f"AND b.account_id = t.buyer_account {where}) ")
        return self._frame(
            "WITH each AS (SELECT m.ring_id, m.account_id, max(s.score) AS score FROM derived_ring_members m "
            "JOIN scores s ON s.wallet = m.account_id GROUP BY 1, 2), "
            "best AS (SELECT ring_id, max(score) AS max_score, avg(score) AS mean_score FROM each GROUP BY 1), "
            f"xv AS (SELECT s.ring_id, sum({XLM_AMOUNT})::BIGINT AS volume_xlm FROM derived_ring_members s "
            "JOIN trades t ON t.seller_account = s.account_id JOIN derived_ring_members b "
            "ON b.ring_id = s.ring_id AND b.account_id = t.buyer_account GROUP BY s.ring_id) "
            "SELECT r.ring_id, r.size, r.n_trades, r.volume, r.closed_loop_share, r.internal_density, "
            "r.reciprocity, r.funding_share, r.n_pairs, best.max_score, best.mean_score, xv.volume_xlm "
            f"FROM derived_rings r LEFT JOIN best USING (ring_id) LEFT JOIN xv USING (ring_id) {within}"
            "ORDER BY best.max_score DESC NULLS LAST, r.closed_loop_share DESC, r.volume DESC, r.size DESC, r.ring_id",
            params,
        )

    def ring_members(self, ring_id: str) -> pl.DataFrame:
        """Members of one ring with the highest score each ever had.

        Shapes: [account_id, n_trades, volume_xlm (XLM stroops of the member's trades with other members: their
        XLM legs; the engine's per-member `volume` adds base units of different assets, so it is not shown), max_score]."""
        if not self.has_table("derived_ring_members"):
            return pl.DataFrame(schema={"account_id": pl.String, "n_trades": pl.Int64, "volume_xlm": pl.Int64,
                                        "max_score": pl.Float64})
        return self._frame(
            "WITH m AS (SELECT account_id, n_trades FROM derived_ring_members WHERE ring_id = ?), "
            f"x AS (SELECT unnest([seller_account, buyer_account]) AS account_id, {XLM_AMOUNT} AS xlm FROM trades "
            "WHERE seller_account IN (SELECT account_id FROM m) AND buyer_account IN (SELECT account_id FROM m)), "
            "v AS (SELECT account_id, sum(xlm)::BIGINT AS volume_xlm FROM x GROUP BY account_id), "
            "s AS (SELECT wallet, max(score) AS max_score FROM scores GROUP BY wallet) "
            "SELECT m.account_id, m.n_trades::BIGINT AS n_trades, v.volume_xlm, s.max_score "
            "FROM m LEFT JOIN v USING (account_id) LEFT JOIN s ON s.wallet = m.account_id "
            "ORDER BY max_score DESC NULLS LAST, m.account_id",
            [ring_id],
        )

    def wallet_rings(self, wallet: str) -> pl.DataFrame:
        """Rings a wallet belongs to. Shapes: [ring_id, size, n_trades, closed_loop_share]."""
        if not (self.has_table("derived_ring_members") and self.has_table("derived_rings")):
            return pl.DataFrame(schema={"ring_id": pl.String, "size": pl.Int64, "n_trades": pl.Int64,
                                        "closed_loop_share": pl.Float64})
        return self._frame(
            "SELECT r.ring_id, r.size::BIGINT AS size, r.n_trades::BIGINT AS n_trades, r.closed_loop_share "
            "FROM derived_ring_members m JOIN derived_rings r USING (ring_id) WHERE m.account_id = ? ORDER BY r.ring_id",
            [wallet],
        )

    def neighbourhood(self, *, ring_id: str, expand: tuple[str, ...] = (), window_days: int | None = None, max_nodes: int = 150
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Nodes and edges of a ring, the accounts that funded two or more members, and the counterparties of the
        `expand` wallets, capped at `max_nodes`.

        Shapes: nodes [account_id, ring_id (null if not in this ring), max_score, n_trades];
        edges [source, target, kind ("trade" | "funding"), n, volume (XLM stroops: trades' XLM legs, XLM funding)]
        among the nodes.
        """
        members = self.ring_members(ring_id).get_column("account_id").to_list()
        others: list[str] = self._shared_funders(members)
        for wallet in expand:
            others += self.counterparties(wallet, limit=max_nodes, window_days=window_days).get_column("account_id").to_list()
        chosen = list(dict.fromkeys(members + list(expand) + others))[:max_nodes]
        nodes = self._frame(
            "WITH n AS (SELECT unnest(?::VARCHAR[]) AS account_id) "
            "SELECT n.account_id, CASE WHEN m.account_id IS NULL THEN NULL ELSE ? END AS ring_id, "
            "(SELECT max(score) FROM scores s WHERE s.wallet = n.account_id) AS max_score "
            "FROM n LEFT JOIN (SELECT account_id FROM derived_ring_members WHERE ring_id = ?) m USING (account_id) "
            "ORDER BY n.account_id",
            [chosen, ring_id, ring_id],
        ) if chosen else pl.DataFrame(schema={"account_id": pl.String, "ring_id": pl.String, "max_score": pl.Float64})
        return nodes, self._edges_among(chosen, window_days=window_days)

    def _shared_funders(self, accounts: list[str], *, limit: int = 10) -> list[str]:
        """Accounts that funded (created or paid) two or more of `accounts`, most shared first."""
        if not accounts:
            return []
        return self._frame(
            "SELECT from_account FROM funding_edges WHERE to_account IN (SELECT unnest(?::VARCHAR[])) "
            "GROUP BY from_account HAVING count(DISTINCT to_account) >= 2 "
            "ORDER BY count(DISTINCT to_account) DESC, from_account LIMIT ?",
            [accounts, limit],
        ).get_column("from_account").to_list()

    def _edges_among(self, accounts: list[str], *, window_days: int | None) -> pl.DataFrame:
        where, params = _trade_filter(pair_id=None, window_days=window_days)
        inside = "seller_account IN (SELECT unnest(?::VARCHAR[])) AND buyer_account IN (SELECT unnest(?::VARCHAR[]))"
        where = (where + " AND " if where else "WHERE ") + inside
        return self._frame(
            "SELECT seller_account AS source, buyer_account AS target, 'trade' AS kind, count(*) AS n, "
            f"sum({XLM_AMOUNT})::BIGINT AS volume FROM trades {where} GROUP BY 1, 2 "
            "UNION ALL SELECT from_account, to_account, 'funding', count(*), "
            "sum(amount) FILTER (WHERE asset = 'XLM:native')::BIGINT FROM funding_edges "
            "WHERE from_account IN (SELECT unnest(?::VARCHAR[])) AND to_account IN (SELECT unnest(?::VARCHAR[])) "
            "GROUP BY 1, 2 ORDER BY kind, source, target",
            params + [accounts, accounts, accounts, accounts],
        )

    def counterparties(self, wallet: str, *, limit: int = 50, window_days: int | None = None) -> pl.DataFrame:
        """Who a wallet traded with. Shapes: [account_id, n_trades, n_sold_to, n_bought_from, n_pairs, last_trade]."""
        where, params = _trade_filter(pair_id=None, window_days=window_days)
        mine = (where + " AND " if where else "WHERE ") + "(seller_account = ? OR buyer_account = ?)"
        return self._frame(
            "SELECT CASE WHEN seller_account = ? THEN buyer_account ELSE seller_account END AS account_id, "
            "count(*) AS n_trades, count(*) FILTER (WHERE seller_account = ?) AS n_sold_to, "
            "count(*) FILTER (WHERE buyer_account = ?) AS n_bought_from, count(DISTINCT pair_id) AS n_pairs, "
            f"max(closed_at) AS last_trade FROM trades {mine} GROUP BY 1 HAVING account_id IS NOT NULL "
            "ORDER BY n_trades DESC, account_id LIMIT ?",
            [wallet, wallet, wallet] + params + [wallet, wallet, limit],
        )

    def wallet_trades(self, wallet: str, *, pair_id: str | None = None, window_days: int | None = None,
                      offset: int = 0, limit: int | None = None) -> tuple[pl.DataFrame, int]:
        """One page (limit None: all) of a wallet's individual trades, newest first, seen from the wallet's side,
        and how many there are within the filter.

        Shapes: [closed_at, side ("buy" | "sell": the wallet bought or sold the pair's base asset), base_amount,
        base_asset, counter_amount, counter_asset (stroops), price (counter units per base unit), counterparty
        (an account, or a liquidity pool id), ledger, op_id, trade_id (Horizon paging token), trade_type, pair_id]."""
        where, params = _trade_filter(pair_id=pair_id, window_days=window_days)
        where = (where + " AND " if where else "WHERE ") + "(seller_account = ? OR buyer_account = ?)"
        params += [wallet, wallet]
        page = self._frame(
            "WITH t AS (SELECT *, split_part(pair_id, '/', 1) AS base, coalesce(seller_account = ?, false) AS wallet_sold, "
            f"{BASE_AMOUNT} AS base_amount, "
            "CASE WHEN sold_asset = split_part(pair_id, '/', 1) THEN bought_amount ELSE sold_amount END AS counter_amount "
            f"FROM trades {where}) "
            "SELECT closed_at, CASE WHEN wallet_sold = (sold_asset = base) THEN 'sell' ELSE 'buy' END AS side, "
            "base_amount, base AS base_asset, counter_amount, split_part(pair_id, '/', 2) AS counter_asset, "
            "counter_amount::DOUBLE / base_amount AS price, "
            "CASE WHEN wallet_sold THEN coalesce(buyer_account, buyer_pool_id) "
            "     ELSE coalesce(seller_account, seller_pool_id) END AS counterparty, "
            "ledger, op_id, id AS trade_id, trade_type, pair_id, count(*) OVER () AS _total "
            "FROM t ORDER BY closed_at DESC, id DESC LIMIT ? OFFSET ?",
            [wallet] + params + [limit if limit is not None else 2**62, int(offset)],
        )
        if page.height:
            return page.drop("_total"), int(page.item(0, "_total"))
        total = self._scalar(f"SELECT count(*) FROM trades {where}", params) if offset else 0
        return page.drop("_total"), int(total)

    def trade_timeline(self, wallet: str) -> pl.DataFrame:
        """A wallet's trades per day. Shapes: [day: date, n_trades, n_sells, n_buys, n_pairs]."""
        return self._frame(
            "SELECT CAST(closed_at AS DATE) AS day, count(*) AS n_trades, count(*) FILTER (WHERE seller_account = ?) "
            "AS n_sells, count(*) FILTER (WHERE buyer_account = ?) AS n_buys, count(DISTINCT pair_id) AS n_pairs "
            "FROM trades WHERE seller_account = ? OR buyer_account = ? GROUP BY 1 ORDER BY 1",
            [wallet] * 4,
        )

    def funding_lineage(self, wallet: str, *, depth: int = 6, max_siblings: int = 200) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Funding ancestors (who created/funded whom, up to `depth` hops) and siblings (same funder).

        Shapes: ancestors [depth, account_id, funded_account, type, closed_at];
        siblings [account_id, funder, created_at].
        """
        ancestors = self._frame(
            "WITH RECURSIVE up(depth, account_id, funded_account, type, closed_at) AS ("
            " SELECT 1, from_account, to_account, type, closed_at FROM funding_edges "
            " WHERE to_account = ? AND type = 'create_account' "
            " UNION SELECT up.depth + 1, f.from_account, f.to_account, f.type, f.closed_at FROM up "
            " JOIN funding_edges f ON f.to_account = up.account_id AND f.type = 'create_account' WHERE up.depth < ?) "
            "SELECT * FROM up ORDER BY depth, account_id",
            [wallet, depth],
        )
        siblings = self._frame(
            "SELECT account_id, funder, created_at FROM accounts WHERE funder IS NOT NULL AND account_id <> ? AND "
            "funder = (SELECT funder FROM accounts WHERE account_id = ?) ORDER BY created_at, account_id LIMIT ?",
            [wallet, wallet, max_siblings],
        )
        return ancestors, siblings

    def wallet_scores(self, wallet: str) -> pl.DataFrame:
        """The latest score of each pair a wallet was scored on, riskiest first (RiskScore columns)."""
        return self._frame(f"SELECT * FROM ({self._latest()}) WHERE wallet = ? ORDER BY score DESC, pair_id", [wallet])

    def market_graph(self, *, threshold: int, window_days: int | None = None, max_edges: int = 20_000
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The whole market's strongest co-trade edges and their nodes (for the pydeck view).

        Edges touching a ring member or a flagged wallet come first, then the busiest.
        Shapes: edges [account_a, account_b, n_trades] (a < b); nodes [account_id, ring_id, max_score, n_trades].
        """
        where, params = _trade_filter(pair_id=None, window_days=window_days)
        where = (where + " AND " if where else "WHERE ") + "seller_account IS NOT NULL AND buyer_account IS NOT NULL"
        rings_cte = "SELECT account_id, min(ring_id) AS ring_id FROM derived_ring_members GROUP BY 1" if self.has_table("derived_ring_members") else "SELECT NULL::VARCHAR AS account_id, NULL::VARCHAR AS ring_id WHERE false"
        edges = self._frame(
            f"WITH r AS ({rings_cte}), hot AS (SELECT wallet AS account_id FROM scores WHERE score >= ? "
            "UNION SELECT account_id FROM r), "
            "e AS (SELECT least(seller_account, buyer_account) AS account_a, greatest(seller_account, buyer_account) "
            f"AS account_b, count(*) AS n_trades FROM trades {where} GROUP BY 1, 2) "
            "SELECT account_a, account_b, n_trades FROM e ORDER BY (account_a IN (SELECT account_id FROM hot) OR "
            "account_b IN (SELECT account_id FROM hot)) DESC, n_trades DESC, account_a, account_b LIMIT ?",
            [threshold] + params + [max_edges],
        )
        nodes = self._frame(
            f"WITH r AS ({rings_cte}), n AS (SELECT unnest(?::VARCHAR[]) AS account_id) "
            "SELECT n.account_id, r.ring_id, (SELECT max(score) FROM scores s WHERE s.wallet = n.account_id) AS max_score "
            "FROM n LEFT JOIN r USING (account_id) ORDER BY n.account_id",
            [pl.concat([edges.get_column("account_a"), edges.get_column("account_b")]).unique().sort().to_list()],
        )
        return edges, nodes

    def annotation_queue(self, *, threshold: int, limit: int = 50) -> pl.DataFrame:
        """Unlabelled (wallet, pair) latest scores nearest the flag threshold first (most uncertain).

        Stand-in ordering until engine.active provides the strategies.
        Shapes: [wallet, pair_id, score, confidence, ring_id].
        """
        return self._frame(
            f"SELECT wallet, pair_id, score, confidence, ring_id FROM ({self._latest()}) s "
            "WHERE NOT EXISTS (SELECT 1 FROM annotations a WHERE a.wallet = s.wallet "
            "AND (a.pair_id IS NULL OR a.pair_id = s.pair_id)) "
            "ORDER BY abs(score - ?), confidence, wallet, pair_id LIMIT ?",
            [threshold, limit],
        )

    def label_progress(self) -> dict:
        """n_labelled (distinct wallet, pair), n_scored, and counts per label (latest label per wallet/pair)."""
        row = self._frame(
            "WITH latest AS (SELECT * FROM annotations QUALIFY row_number() OVER "
            "(PARTITION BY wallet, pair_id ORDER BY annotated_at DESC, id DESC) = 1) "
            "SELECT (SELECT count(*) FROM latest) AS n_labelled, "
            "(SELECT count(*) FROM (SELECT DISTINCT wallet, pair_id FROM scores)) AS n_scored, "
            "(SELECT count(*) FROM latest WHERE label = 'wash') AS n_wash, "
            "(SELECT count(*) FROM latest WHERE label = 'legit') AS n_legit, "
            "(SELECT count(*) FROM latest WHERE label = 'unsure') AS n_unsure"
        ).row(0, named=True)
        return {k: int(v or 0) for k, v in row.items()}

    def asset_labels(self, assets: list[str]) -> pl.DataFrame:
        """Codes and issuers of assets (for display; the code is untrusted ledger text). Shapes: [asset, code, issuer]."""
        return self._frame(
            "SELECT asset, code, issuer FROM assets WHERE asset IN (SELECT unnest(?::VARCHAR[])) ORDER BY asset", [assets]
        )

"""Reads of the features step, one wallet partition at a time (see engine.features.partitions).

An account's partition is `hash(account_key) % n_parts` (DuckDB's hash of the store's
integer account key, stable within a run). One query streams the window's trades,
each trade once per partition of its accounts, with the partition of each side
(`seller_part`, `buyer_part`), and each batch is scattered to one Arrow file per
partition; another does the same with the offer operations. The trades travel with
integer keys for their accounts and pair and get the ids back one partition at a time (the
keys stay beside them: the features' SQL reads them, storage.partition_features), so the
engine holds one partition, never the market. `Store` inherits these methods. Windows are
(since, until], the engine's "as of" convention.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import polars as pl

from storage.market_digits import market_digit_params, market_digits_sql
from storage.partition_features import OFFER_KEY, STORE_KEYS
from storage.routing import PAIR_COLUMNS, SOLD_BASE, lean, scatter, with_pair_ids
from storage.shape_features import ShapeOptions, market_hours_sql, shape_feature_params

# The trade columns the features read (engine.features.sides.TRADE_COLUMNS), and the
# partitions of the two sides.
_FEATURE_TRADE_COLUMNS = (
    "id, op_id, ledger, closed_at, pair_id, seller_account, seller_pool_id, buyer_account, buyer_pool_id, "
    "sold_asset, sold_amount, bought_asset, bought_amount"
)
_WINDOW = "closed_at > $since AND closed_at <= $until"
_OFFER_COLUMNS = (
    "id, closed_at, type, successful, source_account, from_account, to_account, asset, amount, offer_id, buying_asset"
)
# Each trade once per partition of its accounts (twice when seller and buyer fall apart), by partition.
# The window's pairs ($pairs of the routed read): the routed trades carry a key (PAIR_COLUMNS), not
# the pair id (~120 characters: at 10M trades the scatter took 11.8-12.6 s against 14.7-15.3 s),
# nor the assets (SOLD_BASE).
_PAIRS = f"SELECT DISTINCT pair_id FROM trade_rows WHERE {_WINDOW} ORDER BY pair_id"
_ROUTED = (
    "WITH w AS (SELECT id, op_id, ledger, closed_at, p.pair_key, seller_key, seller_pool_id, buyer_key, buyer_pool_id, "
    f"{SOLD_BASE}, sold_amount, bought_amount, (hash(seller_key) % $n)::BIGINT AS seller_part, "
    "(hash(buyer_key) % $n)::BIGINT AS buyer_part FROM trade_rows "
    f"JOIN (SELECT unnest($pairs) AS pair_id, {PAIR_COLUMNS}) AS p USING (pair_id) WHERE {_WINDOW}) "
    "SELECT *, seller_part AS part FROM w WHERE seller_key IS NOT NULL "
    "UNION ALL SELECT *, buyer_part AS part FROM w WHERE buyer_key IS NOT NULL "
    "AND (seller_key IS NULL OR buyer_part <> seller_part)"
)
_PART_ORDER = ("op_id", "id")  # a partition's trades, in the order the features read them
# The offers of an account go to the partition of its key (those of an account that never
# traded find no wallet there), with the key, not the id: the features' SQL reads the key
# (storage.partition_features.OFFER_KEY). In no order: the cancel rates are counts.
_OFFERS_ROUTED = (
    f"SELECT id, closed_at, type, successful, asset, amount, offer_id, buying_asset, source_key AS {OFFER_KEY}, "
    "(hash(source_key) % $n)::BIGINT AS part FROM operation_rows "
    "WHERE source_key IS NOT NULL AND closed_at > $since AND closed_at <= $until AND list_contains($types, type)"
)
_ROUTE_BATCH_ROWS = 500_000
# The trades as the shape features' SQL reads them (storage.shape_features.SOURCE_COLUMNS), accounts as
# their integer keys, every side in partition 0: a view of this connection only.
_SHAPE_SOURCE = "ledgerlens_shape_trades"
_SHAPE_VIEW = (
    f"CREATE OR REPLACE TEMP VIEW {_SHAPE_SOURCE} AS SELECT id, closed_at, op_id, pair_id, seller_key AS seller_account, "
    "seller_pool_id, buyer_key AS buyer_account, buyer_pool_id, sold_asset, sold_amount, bought_asset, bought_amount, "
    "0 AS seller_part, 0 AS buyer_part FROM trade_rows"
)


def _with_ids(trades: pl.DataFrame, accounts: pl.DataFrame, pair_ids: list[str]) -> pl.DataFrame:
    """Routed trades with their account and pair ids beside the keys (the feature columns, the
    sides' partitions, then the keys: storage.partition_features.STORE_KEYS)."""
    for side in ("seller", "buyer"):
        ids = accounts.rename({"account_key": f"{side}_key", "account_id": f"{side}_account"})
        trades = trades.join(ids, on=f"{side}_key", how="left", maintain_order="left")
    trades = with_pair_ids(trades, pair_ids)
    return trades.select(*(c.strip() for c in _FEATURE_TRADE_COLUMNS.split(",")), "seller_part", "buyer_part",
                         *STORE_KEYS)  # fmt: skip


def _no_offers() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "id": pl.Int64, "closed_at": pl.Datetime("us", "UTC"), "type": pl.String, "successful": pl.Boolean,
        "asset": pl.String, "amount": pl.Int64, "offer_id": pl.Int64, "buying_asset": pl.String, OFFER_KEY: pl.Int32,
    })  # fmt: skip


class FeatureReads:
    """Partitioned reads for the features step (mixed into `Store`, which provides `_cursor` and `_frame`)."""

    def last_trade_close(self) -> datetime | None:
        """Close time of the newest stored trade (None when there is none)."""
        return self._frame("SELECT max(closed_at) AS t FROM trades").item()  # via Arrow: UTC-aware

    def count_trades(self, *, since: datetime, until: datetime) -> int:
        """Trades with since < closed_at <= until."""
        rows = self._frame(f"SELECT count(*) AS n FROM trades WHERE {_WINDOW}", {"since": since, "until": until})
        return int(rows.item())

    def wallet_partitions(
        self, *, n_parts: int, offer_types: tuple[str, ...], since: datetime, until: datetime
    ) -> Iterator[tuple[int, pl.DataFrame, pl.DataFrame]]:
        """(part, trades, offers) for each non-empty wallet partition of `n_parts`, in order.

        trades: the window's trades with a side in the partition (the feature columns plus
        seller_part, buyer_part and the store's keys of their accounts and pair,
        storage.partition_features.STORE_KEYS), by op_id, id; offers: the window's operations of
        `offer_types` whose source is in it, the source as its key (OFFER_KEY), not its id. The
        window is read once and scattered to a file per partition next to the store (removed at
        the end), so the cost stays linear in the trades however many partitions there are, and
        the memory is one partition's.
        """
        window = {"since": since, "until": until}
        accounts = self._frame("SELECT account_key, account_id FROM account_keys")
        with TemporaryDirectory(prefix=f"{self.path.name}.partitions-", dir=self.path.parent) as folder:
            with self._cursor() as cur, lean(cur):
                cur.execute("BEGIN TRANSACTION")  # one snapshot: every routed trade's pair has its key
                try:
                    pairs = [row[0] for row in cur.execute(_PAIRS, window).fetchall()]
                    params = {**window, "n": n_parts, "pairs": pairs}
                    trades = scatter(cur.sql(_ROUTED, params=params).arrow(batch_size=_ROUTE_BATCH_ROWS),
                                     Path(folder), "trades")  # fmt: skip
                    offers = scatter(cur.sql(_OFFERS_ROUTED, params={**window, "n": n_parts, "types": list(offer_types)})
                                     .arrow(batch_size=_ROUTE_BATCH_ROWS), Path(folder), "offers")  # fmt: skip
                except BaseException:
                    cur.execute("ROLLBACK")  # (a failed query leaves the transaction aborted: COMMIT would fail)
                    raise
                cur.execute("COMMIT")
            for part in sorted(trades):
                rows = pl.read_ipc(trades[part]).sort(_PART_ORDER)
                mine = pl.read_ipc(offers[part]) if part in offers else _no_offers()
                yield part, _with_ids(rows, accounts, pairs), mine

    def market_digits(self, *, as_of: datetime, starts: list[datetime]) -> pl.DataFrame:
        """The digit table of the market Benford scopes of the stored trades (storage.market_digits;
        `starts`: the windows' starts, narrowest first)."""
        with self._cursor() as cur, lean(cur, let_go=self._let_go_of_cache):  # the scanned blocks let go too
            sql = market_digits_sql(len(starts), source="trade_rows")
            return pl.from_arrow(cur.sql(sql, params=market_digit_params(as_of, starts)).to_arrow_table())

    def market_hours(self, *, as_of: datetime, options: ShapeOptions) -> pl.DataFrame:
        """The market's account sides per UTC hour over the features' lookback (storage.shape_features)."""
        with self._cursor() as cur, lean(cur, let_go=self._let_go_of_cache):
            cur.execute(_SHAPE_VIEW)
            params = shape_feature_params(as_of, options)
            sql = market_hours_sql(source=_SHAPE_SOURCE)
            return pl.from_arrow(cur.sql(sql, params={k: params[k] for k in ("since", "as_of")}).to_arrow_table())

    def export_window_trades(self, out: Path, *, since: datetime, until: datetime) -> Path:
        """The window's trades (the feature columns) as Parquet at `out`, for an engine that reads files."""
        sql = f"COPY (SELECT {_FEATURE_TRADE_COLUMNS} FROM trades WHERE {_WINDOW} ORDER BY op_id, id) TO $out (FORMAT parquet)"
        return self._copy(sql, out, {"since": since, "until": until})

    def export_window_operations(self, out: Path, *, types: tuple[str, ...], since: datetime, until: datetime) -> Path:
        """The window's operations of `types` (the offer columns) as Parquet at `out`."""
        sql = (f"COPY (SELECT {_OFFER_COLUMNS} FROM operations WHERE {_WINDOW} AND list_contains($types, type) "
               "ORDER BY id) TO $out (FORMAT parquet)")  # fmt: skip
        return self._copy(sql, out, {"since": since, "until": until, "types": list(types)})

    def _copy(self, sql: str, out: Path, params: dict) -> Path:
        out.parent.mkdir(parents=True, exist_ok=True)
        with self._cursor() as cur:
            cur.execute(sql, {**params, "out": str(out)})
        return out

"""Reads of the features step, one wallet partition at a time (see engine.features.partitions).

An account's partition is `hash(account_id) % n_parts` (DuckDB's hash, stable
within a run): each query returns the trades touching one partition's accounts
with the partition of each side (`seller_part`, `buyer_part`), so the engine
holds one partition at a time, never the market. `Store` inherits these methods.
Windows are (since, until], the engine's "as of" convention.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

# The trade columns the features read (engine.features.sides.TRADE_COLUMNS), and the
# partitions of the two sides.
_FEATURE_TRADE_COLUMNS = (
    "id, op_id, ledger, closed_at, pair_id, seller_account, seller_pool_id, buyer_account, buyer_pool_id, "
    "sold_asset, sold_amount, bought_asset, bought_amount"
)
_PARTS = "hash(seller_account) % $n AS seller_part, hash(buyer_account) % $n AS buyer_part"
_IN_PART = "(hash(seller_account) % $n = $part OR hash(buyer_account) % $n = $part)"
_WINDOW = "closed_at > $since AND closed_at <= $until"
_OFFER_COLUMNS = (
    "id, closed_at, type, successful, source_account, from_account, to_account, asset, amount, offer_id, buying_asset"
)
# Ids repeat across millions of rows: categorical, each string held once.
_AMOUNTS = (
    "SELECT pair_id, closed_at, sold_asset, sold_amount, bought_asset, bought_amount FROM trades "
    f"WHERE {_WINDOW}"
)
_AMOUNT_IDS = ("pair_id", "sold_asset", "bought_asset")
_BATCH_ROWS = 1_000_000


class FeatureReads:
    """Partitioned reads for the features step (mixed into `Store`, which provides `_cursor`)."""

    def last_trade_close(self) -> datetime | None:
        """Close time of the newest stored trade (None when there is none)."""
        return self._named_frame("SELECT max(closed_at) AS t FROM trades", {}).item()  # via Arrow: UTC-aware

    def count_trades(self, *, since: datetime, until: datetime) -> int:
        """Trades with since < closed_at <= until."""
        rows = self._named_frame(f"SELECT count(*) AS n FROM trades WHERE {_WINDOW}", {"since": since, "until": until})
        return int(rows.item())

    def partition_trades(self, *, part: int, n_parts: int, since: datetime, until: datetime) -> pl.DataFrame:
        """The window's trades with a side in partition `part` of `n_parts`: the feature columns
        (engine.features.sides.TRADE_COLUMNS) plus seller_part and buyer_part, by op_id."""
        sql = f"SELECT {_FEATURE_TRADE_COLUMNS}, {_PARTS} FROM trades WHERE {_WINDOW} AND {_IN_PART} ORDER BY op_id, id"
        return self._named_frame(sql, {"n": n_parts, "part": part, "since": since, "until": until}).with_columns(
            pl.col("seller_part", "buyer_part").cast(pl.Int64)
        )

    def partition_operations(
        self, *, part: int, n_parts: int, types: tuple[str, ...], since: datetime, until: datetime
    ) -> pl.DataFrame:
        """The window's operations of `types` whose source account is in partition `part`
        (the offer columns engine.features.sides.OPERATION_COLUMNS), by id."""
        sql = (
            f"SELECT {_OFFER_COLUMNS} FROM operations WHERE {_WINDOW} AND list_contains($types, type) "
            "AND hash(source_account) % $n = $part ORDER BY id"
        )
        params = {"n": n_parts, "part": part, "since": since, "until": until, "types": list(types)}
        return self._named_frame(sql, params)

    def trade_amounts(self, *, since: datetime, until: datetime) -> pl.DataFrame:
        """pair_id, closed_at, sold_asset, sold_amount, bought_asset, bought_amount of the window's
        trades, ids Categorical (read in batches: the strings of one batch at a time)."""
        params = {"since": since, "until": until}
        parts = []
        with self._cursor() as cur:
            reader = cur.sql(_AMOUNTS, params=params).arrow(batch_size=_BATCH_ROWS)
            for batch in reader:
                parts.append(pl.from_arrow(batch).with_columns(pl.col(_AMOUNT_IDS).cast(pl.Categorical())))
        if not parts:
            return self._named_frame(_AMOUNTS + " LIMIT 0", params).with_columns(pl.col(_AMOUNT_IDS).cast(pl.Categorical()))
        return pl.concat(parts)

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

    def export_trades_parquet(self, out: Path, *, ledger_from: int | None = None, ledger_to: int | None = None) -> int:
        """Write stored trades as canonical Parquet (engine.schemas.TRADES_SCHEMA: UTC timestamps,
        amounts in stroops), by op_id; an engine reading files (Spark) takes them as they are."""
        where = "WHERE ($lo IS NULL OR ledger >= $lo) AND ($hi IS NULL OR ledger <= $hi)"
        params = {"lo": ledger_from, "hi": ledger_to}
        out.parent.mkdir(parents=True, exist_ok=True)
        with self._cursor() as cur:
            n = cur.execute(f"SELECT count(*) FROM trades {where}", params).fetchall()[0][0]
            cur.execute(f"COPY (SELECT * EXCLUDE (run_id) FROM trades {where} ORDER BY op_id, id) TO $out (FORMAT parquet)",
                        {**params, "out": str(out)})  # fmt: skip
        return n

    def _named_frame(self, sql: str, params: dict) -> pl.DataFrame:
        with self._cursor() as cur:
            return pl.from_arrow(cur.sql(sql, params=params).to_arrow_table())

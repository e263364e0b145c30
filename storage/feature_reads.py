"""Reads of the features step, one wallet partition at a time (see engine.features.partitions).

An account's partition is `hash(account_id) % n_parts` (DuckDB's hash, stable
within a run): each query returns the trades touching one partition's accounts
with the partition of each side (`seller_part`, `buyer_part`), so the engine
holds one partition at a time, never the market. `Store` inherits these methods.
Windows are (since, until], the engine's "as of" convention.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import polars as pl

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
# Each trade once per partition of its accounts (twice when seller and buyer fall apart).
_ROUTED = (
    f"WITH w AS (SELECT {_FEATURE_TRADE_COLUMNS}, hash(seller_account) % $n AS seller_part, "
    f"hash(buyer_account) % $n AS buyer_part FROM trades WHERE {_WINDOW}) "
    "SELECT *, seller_part AS part FROM w WHERE seller_account IS NOT NULL "
    "UNION ALL SELECT *, buyer_part AS part FROM w WHERE buyer_account IS NOT NULL "
    "AND (seller_account IS NULL OR buyer_part <> seller_part)"
)
_OFFERS_ROUTED = (
    f"SELECT {_OFFER_COLUMNS}, hash(source_account) % $n AS part FROM operations "
    f"WHERE {_WINDOW} AND list_contains($types, type)"
)
_AMOUNTS = (
    "SELECT pair_id, closed_at, sold_asset, sold_amount, bought_asset, bought_amount FROM trades "
    f"WHERE {_WINDOW}"
)
_BATCH_ROWS = 1_000_000
_COPY_MEMORY = "1GB"  # DuckDB's budget while routing trades to partitions


def _part_file(folder: Path, part: int) -> pl.DataFrame | None:
    """One hive partition's rows (None when the partition is empty)."""
    files = sorted((folder / f"part={part}").glob("*.parquet"))
    if not files:
        return None
    frame = pl.read_parquet(files, hive_partitioning=False)
    return frame.with_columns(pl.col("^(seller|buyer)_part$").cast(pl.Int64))


@contextmanager
def _lean(cur) -> Iterator[None]:
    """DuckDB's memory for one bulk copy capped (it spills to disk beyond), its row order
    free; the settings as they were afterwards (the app's store is shared)."""
    before = cur.execute("SELECT current_setting('memory_limit'), current_setting('preserve_insertion_order')").fetchall()[0]
    cur.execute(f"SET memory_limit = '{_COPY_MEMORY}'")
    cur.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        cur.execute(f"SET memory_limit = '{before[0]}'")
        cur.execute(f"SET preserve_insertion_order = {str(before[1]).lower()}")


def _no_offers() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "id": pl.Int64, "closed_at": pl.Datetime("us", "UTC"), "type": pl.String, "successful": pl.Boolean,
        "source_account": pl.String, "from_account": pl.String, "to_account": pl.String, "asset": pl.String,
        "amount": pl.Int64, "offer_id": pl.Int64, "buying_asset": pl.String,
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
        self, work_dir: Path, *, n_parts: int, offer_types: tuple[str, ...], since: datetime, until: datetime
    ) -> Iterator[tuple[int, pl.DataFrame, pl.DataFrame]]:
        """(part, trades, offers) for each wallet partition of `n_parts`, from one pass over the store.

        trades: the window's trades with a side in the partition (the feature columns plus
        seller_part, buyer_part), by op_id; offers: the window's operations of `offer_types`
        whose source is in it. The store is read once into hive-partitioned Parquet under
        `work_dir` (removed at the end), then one partition at a time: the cost stays linear
        in the trades however many partitions there are.
        """
        params = {"n": n_parts, "since": since, "until": until}
        shutil.rmtree(work_dir, ignore_errors=True)  # a killed run's leftovers
        work_dir.mkdir(parents=True)
        with self._cursor() as cur, _lean(cur):
            cur.execute(f"COPY ({_ROUTED}) TO $out (FORMAT parquet, PARTITION_BY (part))",
                        {**params, "out": str(work_dir / "trades")})  # fmt: skip
            cur.execute(f"COPY ({_OFFERS_ROUTED}) TO $out (FORMAT parquet, PARTITION_BY (part))",
                        {**params, "types": list(offer_types), "out": str(work_dir / "offers")})  # fmt: skip
        try:
            for part in range(n_parts):
                trades = _part_file(work_dir / "trades", part)
                if trades is not None:
                    offers = _part_file(work_dir / "offers", part)
                    yield part, trades.sort("op_id", "id"), offers if offers is not None else _no_offers()
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def trade_amount_batches(self, *, since: datetime, until: datetime) -> Iterator[pl.DataFrame]:
        """pair_id, closed_at, sold_asset, sold_amount, bought_asset, bought_amount of the window's
        trades, a million at a time (the engine reduces each batch before the next is read)."""
        with self._cursor() as cur:
            for batch in cur.sql(_AMOUNTS, params={"since": since, "until": until}).arrow(batch_size=_BATCH_ROWS):
                yield pl.from_arrow(batch)

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

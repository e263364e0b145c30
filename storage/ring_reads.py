"""Reads of the rings step, a batch of asset pairs at a time (see engine.services.rings).

Trades come straight from `trade_rows` with the store's integer account keys (no join
back to the 56-character ids), so a batch of pairs costs a few bytes per wallet column;
`account_keys` maps the keys back. `Store` inherits these methods.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import polars as pl

from storage.routing import PAIR_COLUMNS, SOLD_BASE, lean, scatter, with_pair_ids

# The columns the graph steps read (engine.graph.cotrade, closed_loops), accounts as keys
_KEYED_SIDES = "seller_key AS seller_account, seller_pool_id, buyer_key AS buyer_account, buyer_pool_id"
_RING_TRADE_COLUMNS = f"id, op_id, pair_id, closed_at, {_KEYED_SIDES}, sold_asset, sold_amount, bought_asset, bought_amount"
# Every trade with the number of its pair's batch ($pairs[i] is in batch $batches[i]), its pair
# as a key (PAIR_COLUMNS) in place of the pair id, and SOLD_BASE in place of its assets
_ROUTED = (
    f"SELECT id, op_id, b.pair_key, closed_at, {_KEYED_SIDES}, {SOLD_BASE}, sold_amount, bought_amount, b.batch FROM trade_rows "
    f"JOIN (SELECT unnest($pairs) AS pair_id, unnest($batches) AS batch, {PAIR_COLUMNS}) AS b USING (pair_id)"
)
_CHUNK_ROWS = 1_000_000


class RingReads:
    """Pair-batched reads for the rings step (mixed into `Store`, which provides `_frame`, `_cursor`)."""

    def pair_sizes(self) -> pl.DataFrame:
        """Shapes: -> [pair_id: str, n_trades: i64], sorted by pair_id."""
        return self._frame("SELECT pair_id, count(*) AS n_trades FROM trade_rows GROUP BY pair_id ORDER BY pair_id")

    def account_keys(self) -> pl.DataFrame:
        """Shapes: -> [account_key: i32, account_id: str] of every account of a stored trade or operation."""
        return self._frame("SELECT account_key, account_id FROM account_keys")

    def pair_trades(self, pair_ids: list[str]) -> pl.DataFrame:
        """Every trade of the pairs `pair_ids`, ordered as `trades()`, with the store's account
        keys in seller_account / buyer_account (i32; null for a pool side).

        Shapes: -> [id, op_id, pair_id, closed_at, seller_account, seller_pool_id, buyer_account,
        buyer_pool_id, sold_asset, sold_amount, bought_asset, bought_amount]"""
        # ordered by polars: DuckDB's ORDER BY took twice as long as the scan itself
        trades = self._frame(f"SELECT {_RING_TRADE_COLUMNS} FROM trade_rows WHERE pair_id IN (SELECT unnest(?))",
                             [list(pair_ids)])  # fmt: skip
        return trades.sort("op_id", "id")

    @contextmanager
    def pair_batch_reader(self, plan: list[list[str]], work_dir: Path) -> Iterator[Callable[[int], pl.DataFrame]]:
        """A reader of batch i of `plan` (lists of pair ids): the `pair_trades` of its pairs.

        With several batches the store is read once, streamed a million trades at a time into
        one Arrow IPC file per batch under `work_dir` (removed at the end): a query per batch
        would scan the whole table every time, and the rings step reads every batch twice."""
        if len(plan) <= 1:
            yield lambda i: self.pair_trades(plan[i])
            return
        shutil.rmtree(work_dir, ignore_errors=True)  # a killed run's leftovers
        params = {"pairs": [p for pairs in plan for p in pairs],
                  "batches": [i for i, pairs in enumerate(plan) for _ in pairs]}  # fmt: skip
        try:
            work_dir.mkdir(parents=True)
            with self._cursor() as cur, lean(cur, let_go=self._let_go_of_cache):
                files = scatter(cur.sql(_ROUTED, params=params).arrow(batch_size=_CHUNK_ROWS), work_dir, "batch",
                                key="batch")  # fmt: skip
            yield partial(_batch_file, files, params["pairs"], empty=self.pair_trades([]))
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)


def _batch_file(files: dict[int, Path], pair_ids: list[str], batch: int, *, empty: pl.DataFrame) -> pl.DataFrame:
    """One batch's routed trades, in `pair_trades`' order and types, their pair ids back
    (`pair_ids`: the routed read's $pairs)."""
    if batch not in files:
        return empty
    rows = with_pair_ids(pl.read_ipc(files[batch]), pair_ids)
    return rows.select(empty.columns).sort("op_id", "id").cast(empty.schema)

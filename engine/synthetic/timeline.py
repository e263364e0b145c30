"""Ledger clock and TOIDs: when each simulated operation lands and what its id is.

Ledgers close 5 or 6 seconds apart. An operation at time `t` (seconds from the
start) lands in the first ledger closing at or after `t`; transactions inside a
ledger get a random application order. TOID = ledger<<32 | tx_index<<12 | op_index
(both indexes 1-based), as Horizon's operation ids and paging tokens are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.strkey import hex_ids


@dataclass(frozen=True)
class Timeline:
    first_ledger: int
    start_unix: int  # close time of the ledger before `first_ledger`
    close_offsets: np.ndarray  # seconds from start_unix at which each ledger closes (int64, increasing)

    @property
    def seconds(self) -> int:
        return int(self.close_offsets[-1])


def make_timeline(rng: np.random.Generator, *, first_ledger: int, start_unix: int, seconds: int) -> Timeline:
    """Ledger close offsets 5-6 s apart covering `seconds`."""
    n = int(seconds / 5.5) + 64
    offsets = np.cumsum(rng.integers(5, 7, size=n, dtype=np.int64))
    offsets = offsets[: int(np.searchsorted(offsets, seconds, side="right")) + 1]
    return Timeline(first_ledger, start_unix, offsets)


def assign_ids(ops: pl.DataFrame, timeline: Timeline, rng: np.random.Generator) -> pl.DataFrame:
    """Give every operation its ledger, close time, TOID and transaction hash.

    `ops` needs op_key, t, tx_key, op_seq; ops sharing a tx_key share a transaction
    (its ledger is that of its first op). Adds: ledger (i64), close_unix (i64),
    op_id (i64), tx_hash (str).
    """
    txs = ops.group_by("tx_key").agg(pl.col("t").min()).sort("tx_key")
    idx = np.searchsorted(timeline.close_offsets, np.clip(txs["t"].to_numpy(), 0, None), side="left")
    idx = np.minimum(idx, len(timeline.close_offsets) - 1)
    txs = txs.with_columns(
        ledger_idx=pl.Series(idx, dtype=pl.Int64),
        order=pl.Series(rng.random(txs.height)),
        tx_hash=pl.Series(hex_ids(rng, txs.height)),
    ).sort("ledger_idx", "order")
    txs = txs.with_columns(tx_index=pl.int_range(1, pl.len() + 1).over("ledger_idx"))
    offsets = pl.Series(timeline.close_offsets)
    txs = txs.with_columns(
        ledger=pl.col("ledger_idx") + timeline.first_ledger,
        close_unix=pl.lit(timeline.start_unix) + offsets.gather(txs["ledger_idx"]),
    )
    out = ops.join(txs.select("tx_key", "ledger", "close_unix", "tx_index", "tx_hash"), on="tx_key", how="left")
    op_id = (pl.col("ledger") * (1 << 32)) + pl.col("tx_index") * (1 << 12) + pl.col("op_seq").cast(pl.Int64) + 1
    return out.with_columns(op_id=op_id).drop("tx_index")

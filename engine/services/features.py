"""The `features` use case: the feature matrix and the Benford table of a store, as of a time.

Read and computed one wallet partition at a time (engine.features.partitions;
the store's hash assigns the partitions), so memory follows the partition size,
not the market: about `trades_per_partition` trades' worth of sides at once,
plus the market-wide inputs (accounts, funding lineage, rings) and the matrix.
The Benford table (about one row per trade) is never held whole: each partition's
rows go to a Parquet file as soon as they are computed, the pair and asset scopes
come from their digit table, which the store counts in SQL (storage.market_digits),
and the store reads the files in at the end.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import polars as pl

from engine.features import DEFAULT_CONFIG, market_context
from engine.features.benford_features import market_benford, market_window_starts
from engine.features.funding_features import ancestors_from_edges
from engine.features.partitions import (
    MarketContext,
    PartitionFeatures,
    finish_matrix,
    wallet_partition,
    with_store_keys,
)
from engine.progress import Progress, no_progress
from engine.schemas import OFFER_TYPES
from engine.services.parallel import two_at_once
from engine.spark.session import DEFAULT_MASTER
from storage.errors import BadInput
from storage.store import Store

T = TypeVar("T")
TRADES_PER_PARTITION = 250_000  # trades of the window per wallet partition (each trade has two sides)


@dataclass(frozen=True)
class FeatureRun:
    as_of: datetime
    matrix: pl.DataFrame  # wallet, pair_id, as_of, features...
    benford_tests: int  # rows of the stored Benford table (store.load_derived("benford"), see
    benford_flagged: int  # engine.features.build_benford_table) and how many are nonconforming


class _BenfordFiles:
    """The Benford table written part by part to Parquet files in `folder`, then stored whole
    (`save`): at 10M trades it is ~10M rows, gigabytes in memory."""

    def __init__(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)  # a killed run's leftovers
        folder.mkdir(parents=True)
        self.folder, self.files, self.tests, self.flagged = folder, [], 0, 0

    def add(self, part: pl.DataFrame) -> None:
        self.files.append(self.folder / f"{len(self.files):05d}.parquet")
        part.write_parquet(self.files[-1], statistics=False)
        self.tests += part.height
        self.flagged += int(part.get_column("flag").sum() or 0)

    def take(self, part: PartitionFeatures) -> PartitionFeatures:
        """`part` without its Benford rows, which are written out."""
        self.add(part.benford)
        return replace(part, benford=None)

    def save(self, store: Store) -> None:
        """Replace the store's Benford table with the parts added, and remove the files."""
        try:
            store.save_derived_files("benford", self.files)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def last_close(store: Store) -> datetime:
    """Close time of the last stored trade: the default "as of"."""
    last = store.last_trade_close()
    if last is None:
        raise BadInput("the store holds no trades; ingest some first (python -m engine ingest ... or demo)")
    return last


def compute_features(
    store: Store, *, as_of: datetime | None = None, trades_per_partition: int = TRADES_PER_PARTITION,
    progress: Progress = no_progress,
) -> FeatureRun:  # fmt: skip
    """The feature matrix and Benford table as of `as_of` (default: the last trade),
    with ring membership when rings were computed; replaces `features` and `benford`.

    progress(done=partitions done, total=partitions, records=matrix rows so far, unit="partitions").
    """
    as_of = as_of or last_close(store)
    ctx = _context(store, as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC))
    since = ctx.as_of - max(ctx.config.lookback, *(w for _, w in ctx.config.windows))
    window = dict(since=since, until=ctx.as_of)
    n_parts = max(1, math.ceil(store.count_trades(**window) / max(1, trades_per_partition)))
    parts, rows, benford = [], 0, _BenfordFiles(store.path.with_suffix(".benford-parts"))
    progress(done=0, total=n_parts, records=0, unit="partitions")
    ctx = replace(with_store_keys(ctx, store.account_keys()), hours=store.market_hours(as_of=ctx.as_of, options=ctx.config))
    reads = store.wallet_partitions(n_parts=n_parts, offer_types=OFFER_TYPES, **window)

    def one(read: tuple[int, pl.DataFrame, pl.DataFrame]) -> tuple[int, PartitionFeatures]:
        part, trades, offers = read
        return part, wallet_partition(trades, offers, part=part, ctx=ctx, with_benford=True)

    for part, features in two_at_once(one, _read_ahead(reads), pending=4):
        parts.append(benford.take(features))
        rows += features.matrix.height
        progress(done=part + 1, total=n_parts, records=rows, unit="partitions")
    matrix = finish_matrix(parts, ctx=ctx)
    del parts  # the partitions' features and edges are in `matrix` now
    digits = store.market_digits(as_of=ctx.as_of, starts=market_window_starts(ctx.as_of, ctx.config))
    benford.add(market_benford(digits, as_of=ctx.as_of, cfg=ctx.config))
    return _save(store, ctx, matrix, benford)


def compute_features_spark(
    store: Store, *, master: str = DEFAULT_MASTER, trades_path: Path | None = None,
    operations_path: Path | None = None, as_of: datetime | None = None,
    trades_per_partition: int = TRADES_PER_PARTITION, work_dir: Path | None = None,
) -> FeatureRun:  # fmt: skip
    """`compute_features` on Spark (`master`: local[N], a cluster, or sc:// Spark Connect), the same
    tables from the same feature functions (engine.spark.features).

    trades_path: Parquet of canonical trades (`export trades --format parquet`) or Hubble's
    `history_trades`; operations_path: offer operations with the canonical columns, or Hubble's `history_operations`; default: the
    store's, exported to Parquet in `work_dir` (default: next to the store). as_of: default the last trade of `trades_path`, else of the store.
    Accounts, funding lineage and rings come from the store.
    """
    from engine.spark.features import feature_parts
    from engine.spark.inputs import canonical_operations, canonical_trades, latest_close
    from engine.spark.session import spark_session

    spark = spark_session(master=master)
    given = canonical_trades(spark.read.parquet(str(trades_path)), source=str(trades_path)) if trades_path else None
    if as_of is None:
        as_of = latest_close(given) if given is not None else last_close(store)
    ctx = _context(store, as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC))
    since = ctx.as_of - max(ctx.config.lookback, *(w for _, w in ctx.config.windows))
    out, window = work_dir or store.path.with_suffix(".spark-input"), dict(since=since, until=ctx.as_of)
    if trades_path is None:
        trades_path = store.export_window_trades(out / "trades.parquet", **window)
    if operations_path is None:
        operations_path = store.export_window_operations(out / "offers.parquet", types=OFFER_TYPES, **window)
    trades = given if given is not None else spark.read.parquet(str(trades_path))
    offers = (canonical_operations(spark.read.parquet(str(operations_path)), source=str(operations_path))
              if operations_path is not None else None)  # fmt: skip
    n_trades = trades.where((trades.closed_at > since) & (trades.closed_at <= ctx.as_of)).count()
    parts = feature_parts(trades, offers, ctx=ctx, n_parts=max(1, math.ceil(n_trades / max(1, trades_per_partition))))
    benford = _BenfordFiles(out / "benford-parts")
    partitions = [benford.take(p) for p in parts.partitions]
    benford.add(market_benford(parts.market_digits, as_of=ctx.as_of, cfg=ctx.config))
    return _save(store, ctx, finish_matrix(partitions, ctx=ctx), benford)


def _read_ahead(items: Generator[T, None, None]) -> Iterator[T]:
    """`items`, the next one read in a thread of its own while the caller works on the current
    one: the store's reads (DuckDB, one core) overlap the features (polars). One item is held
    ahead, never more; every read runs on that one thread (the store's cursors stay on it)."""
    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader:
        try:
            ahead = reader.submit(next, items, end)
            while (item := ahead.result()) is not end:
                ahead = reader.submit(next, items, end)
                yield item
        finally:
            if not ahead.cancel():
                ahead.exception()  # a read under way ends before the reads are closed
            reader.submit(items.close).result()


def _save(store: Store, ctx: MarketContext, matrix: pl.DataFrame, benford: _BenfordFiles) -> FeatureRun:
    store.save_derived("features", matrix)
    benford.save(store)
    return FeatureRun(ctx.as_of, matrix, benford_tests=benford.tests, benford_flagged=benford.flagged)


def _context(store: Store, as_of: datetime) -> MarketContext:
    """The market-wide inputs: funding lineage, account ages, rings and loops when computed."""
    ring_members = store.load_derived("ring_members")
    loops = store.load_derived("closed_loops") if ring_members is not None else None
    accounts = store.accounts()
    lineage = ancestors_from_edges(store.funding_edges(), accounts, as_of=as_of, depth=DEFAULT_CONFIG.ancestor_depth)
    return market_context(
        None, accounts, as_of=as_of, config=DEFAULT_CONFIG, ancestors=lineage,
        ring_members=ring_members.select("account_id", "ring_id") if ring_members is not None else None, loops=loops,
    )  # fmt: skip

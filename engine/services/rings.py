"""The rings use case on a store (`compute_rings`), a batch of asset pairs at a time (bounded
memory), on DuckDB (`store_rings`) or Spark (`spark_rings`). It lives apart from the other
analysis steps (engine.services.analyse) so that the `rings` step does not import the models
(scikit-learn: about a second of every run).

Closed loops, pool legs and pair evidence never span pairs, so the store's trades are read
per batch of pairs (`Store.pair_trades`, integer account keys) instead of all at once;
engine.graph.rings.rings_by_pairs gives exactly what `detect_rings` gives on the whole table.
Two batches are at work at once (engine.services.parallel): a batch's loop search leaves a
core idle for part of its time (numpy, scipy), and the other batch fills it (about 5 s of
a 10M-trade market's 80). The biggest batches go first, and each thread takes the next batch
as soon as its own is done, so the busiest pair's batch does not hold one core at the end
while the other waits. On Spark the same batch functions run on Spark's groups of a
trades Parquet (engine.spark.rings).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

import polars as pl

from engine.graph.account_keys import account_names, key_index, map_columns
from engine.graph.rings import RingOptions, RingResult, batch_trader_trades, local_batches, pair_batches, rings_by_pairs
from engine.progress import Progress, no_progress
from engine.services.parallel import two_at_once_as_done
from storage.store import Store

BATCH_TRADES = 1_000_000  # trades read at once (a larger pair is read alone)


def compute_rings(store: Store, *, options: RingOptions | None = None, progress: Progress = no_progress,
                  spark_master: str | None = None, trades_path: Path | None = None) -> RingResult:  # fmt: skip
    """Closed loops, communities and rings from all stored trades and funding edges (read a
    batch of pairs at a time); replaces the derived tables `closed_loops`, `rings` and `ring_members`.
    With `spark_master` the batches run on Spark (spark_rings), from
    `trades_path` (trades Parquet) when given."""
    if spark_master is not None:
        result = spark_rings(store, master=spark_master, options=options, trades_path=trades_path)
    else:
        result = store_rings(store, options=options, progress=progress)
    store.save_derived("closed_loops", result.closed_loops)
    store.save_derived("rings", result.rings)
    store.save_derived("ring_members", result.ring_members)
    return result


def store_rings(store: Store, *, options: RingOptions | None = None, batch_trades: int = BATCH_TRADES,
                progress: Progress = no_progress) -> RingResult:  # fmt: skip
    """Rings over every stored trade and funding edge, read in batches of pairs of about
    `batch_trades` trades (with several batches, routed to a file each next to the store in one
    pass over it, and their trader trades kept from the first pass for the second).
    progress(done=batches read, total=2 x batches (two passes; one when the market is one
    batch), records=trades read)."""
    options = options or RingOptions()
    funding = store.funding_edges()
    stored = store.account_keys()
    names = account_names(stored.get_column("account_id"), funding.get_column("from_account"),
                          funding.get_column("to_account"))  # fmt: skip
    recode = stored.join(key_index(names), on="account_id").select("account_key", "key")  # store key -> rank key
    sizes = store.pair_sizes()
    plan = pair_batches(sizes, batch_trades=batch_trades)
    n_trades = dict(sizes.select("pair_id", "n_trades").iter_rows())
    passes = 1 if len(plan) == 1 else 2
    batch_size = [sum(n_trades[pair] for pair in pairs) for pairs in plan]
    order = sorted(range(len(plan)), key=lambda i: (-batch_size[i], i))  # the biggest first (two_at_once_as_done)
    read = {"batches": 0, "trades": 0}
    with (store.pair_batch_reader(plan, store.path.with_suffix(".ring-batches")) as pair_trades,
          TemporaryDirectory(prefix=f"{store.path.name}.trader-trades-", dir=store.path.parent) as kept):  # fmt: skip

        def batches() -> Iterator[pl.DataFrame]:
            for i in order:
                tt = _trader_trades(i, pair_trades, recode, Path(kept), keep=passes > 1)
                yield tt
                read["batches"] += 1
                read["trades"] += batch_size[i]
                progress(done=read["batches"], total=passes * len(plan), records=read["trades"], unit="batches")

        def both(fn: Callable[[pl.DataFrame], dict], tts: Iterator[pl.DataFrame]) -> list[dict]:
            """fn over the batches two at once, the results in the plan's order."""
            done = {order[position]: result for position, result in two_at_once_as_done(fn, tts)}
            return [done[i] for i in range(len(done))]

        return rings_by_pairs(local_batches(batches, map_=both), names, funding, options=options,
                              n_batches=len(plan))  # fmt: skip


def _trader_trades(i: int, pair_trades: Callable[[int], pl.DataFrame], recode: pl.DataFrame, kept: Path, *,
                   keep: bool) -> pl.DataFrame:  # fmt: skip
    """Batch i's trader trades: built from its trades the first time, kept as an Arrow file in
    `kept` when there is a second pass (which reads them back instead of the batch's trades
    and rebuilding them: about 5 s of a 10M-trade market's 60)."""
    path = kept / f"{i}.arrow"
    if path.exists():
        return pl.read_ipc(path)
    tt = batch_trader_trades(map_columns(pair_trades(i), recode, ("seller_account", "buyer_account")))
    if keep:
        tt.write_ipc(path)
    return tt


def spark_rings(store: Store, *, master: str, options: RingOptions | None = None, trades_path: Path | None = None,
                batch_trades: int = BATCH_TRADES) -> RingResult:  # fmt: skip
    """`store_rings` with the batches on Spark (`master`: local[N], a cluster, or sc:// Spark Connect).

    trades_path: Parquet of canonical trades (`export trades --format parquet`) or Hubble's
    `history_trades`; default: the store's, exported next to it. Funding lineage comes from the store."""
    from engine.spark.inputs import canonical_trades
    from engine.spark.rings import spark_batches, trading_accounts
    from engine.spark.session import spark_session

    if trades_path is None:
        trades_path = store.path.with_suffix(".spark-input") / "all-trades.parquet"
        store.export_trades(trades_path, fmt="parquet")
    trades = canonical_trades(spark_session(master=master).read.parquet(str(trades_path)), source=str(trades_path))
    funding = store.funding_edges()
    names = account_names(trading_accounts(trades), funding.get_column("from_account"),
                          funding.get_column("to_account"))  # fmt: skip
    return rings_by_pairs(spark_batches(trades, names, batch_trades=batch_trades), names, funding,
                          options=options or RingOptions())  # fmt: skip

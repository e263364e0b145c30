"""`rings`: closed loops, funding lineage and manipulation rings from the stored trades.

Runs engine.services.rings.compute_rings: the stored trades (read a batch of pairs at a
time, with progress) and funding edges in, the derived tables `rings`, `ring_members` and
`closed_loops` replaced.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.cli import open_store
from engine.progress import CliProgress


def register(sub, common) -> None:
    p = sub.add_parser("rings", parents=[common], help="detect closed loops and wash-trading rings")
    p.add_argument("--resolution", type=float, default=1.0, help="Louvain resolution (>1: smaller communities)")
    p.add_argument("--seed", type=int, default=None, help="Louvain seed (default: LEDGERLENS_SEED)")
    p.add_argument("--depth", type=int, default=4, help="funding ancestor hops considered")
    p.add_argument("--min-trades", type=int, default=None, help="internal trades a ring needs (default: RingRules.min_trades)")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="duckdb (default) or spark: the same rings with the pair batches on Spark "
                        "(LEDGERLENS_SPARK_MASTER: local[N], spark://..., sc://...)")
    p.add_argument("--trades", type=Path, default=None,
                   help="with --engine spark: canonical trades Parquet (`export trades --format parquet`) or Hubble history_trades; "
                        "default: the store's, exported next to it")
    p.set_defaults(handler=_rings)


def _rings(args, settings) -> int:
    from engine.graph.rings import RingOptions, RingRules
    from engine.services.rings import compute_rings
    from storage.errors import BadInput

    if args.engine == "duckdb" and args.trades is not None:
        raise BadInput("--trades is read with --engine spark; the duckdb engine reads the store")

    rules = RingRules() if args.min_trades is None else RingRules(min_trades=args.min_trades)
    options = RingOptions(
        resolution=args.resolution,
        seed=settings.seed if args.seed is None else args.seed,
        depth=args.depth,
        rules=rules,
    )
    started = time.monotonic()
    with open_store(settings) as store:
        counts = store.counts()
        spark = dict(spark_master=settings.spark_master, trades_path=args.trades) if args.engine == "spark" else {}
        result = compute_rings(store, options=options, progress=CliProgress("rings"), **spark)
    n_loop_trades = int(result.closed_loops.get_column("n_trades").sum() or 0)
    print(
        f"{counts['trades']:,} trades, {counts['operations']:,} operations -> "
        f"{result.closed_loops.height:,} closed loops ({n_loop_trades:,} trades), "
        f"{result.communities.height:,} communities proposed, {result.rings.height:,} rings "
        f"({result.ring_members.height:,} wallets) in {time.monotonic() - started:.1f}s"
    )
    return 0

"""Graph ML commands: `snapshot`, `train-gnn`, `quickstart`, `embed`.

- snapshot: rolling windows over the stored trade + funding edges, validated, stored
  (derived table `snapshots`, one row per edge with its window range).
- train-gnn: one reproducible link-prediction run from a YAML/JSON config.
- quickstart: toy ledgers -> graph -> validation -> baselines + GNN -> benchmark_results/quickstart/.
- embed: GraphSAGE embeddings gnn_0..31 + Deep SVDD score per wallet (derived table `embeddings`).
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.cli import open_store, parse_utc
from storage.errors import BadInput

RESULTS = Path("benchmark_results")


def register(sub, common) -> None:
    p = sub.add_parser("snapshot", parents=[common], help="rolling time-windowed graph snapshots, validated, stored")
    p.add_argument("--window", default="30d", help="window length, e.g. 30d, 12h (default 30d)")
    p.add_argument("--step", default=None, help="step between windows (default: the window)")
    p.add_argument("--start", default=None, help="UTC ISO 8601 start (default: first edge's day)")
    p.add_argument("--end", default=None, help="UTC ISO 8601 end, exclusive (default: the day after the last edge)")
    p.set_defaults(handler=_snapshot)
    t = sub.add_parser("train-gnn", parents=[common], help="temporal link prediction run from a config file")
    t.add_argument("--config", type=Path, required=True, help="YAML or JSON config (see benchmarks/configs/gnn_example.yaml)")
    t.add_argument("--out", type=Path, default=RESULTS, help="results root (default benchmark_results/)")
    t.set_defaults(handler=_train_gnn)
    q = sub.add_parser("quickstart", parents=[common], help="toy ledgers -> graph -> validation -> link prediction")
    q.add_argument("--num-ledgers", type=int, default=100)
    q.add_argument("--num-accounts", type=int, default=50)
    q.add_argument("--epochs", type=int, default=10)
    q.add_argument("--seed", type=int, default=42)
    q.add_argument("--out", type=Path, default=RESULTS, help="results root (default benchmark_results/)")
    q.set_defaults(handler=_quickstart)
    e = sub.add_parser("embed", parents=[common], help="GraphSAGE wallet embeddings + Deep SVDD score, stored")
    e.add_argument("--epochs", type=int, default=20)
    e.add_argument("--seed", type=int, default=None, help="default: LEDGERLENS_SEED")
    e.set_defaults(handler=_embed)


def _snapshot(args, settings) -> int:
    from engine.graph.temporal import build_snapshots, load_edges, parse_duration, validation_report

    window = parse_duration(args.window)
    step = parse_duration(args.step) if args.step else None
    start, end = parse_utc(args.start, "--start"), parse_utc(args.end, "--end")
    with open_store(settings) as store:
        persisted, spec = build_snapshots(load_edges(store, start=start, end=end), window=window, step=step,
                                          start=start, end=end)  # fmt: skip
        report = validation_report(persisted, spec)
        store.save_derived("snapshots", persisted)
    print(f"{spec.n_snapshots} snapshot(s) of {args.window} every {args.step or args.window} from "
          f"{spec.origin:%Y-%m-%dT%H:%M:%SZ} to {spec.end:%Y-%m-%dT%H:%M:%SZ}: {persisted.height:,} edges, "
          f"{report['n_nodes'][0]:,} nodes in the index")
    for r in report.iter_rows(named=True):
        print(f"  #{r['snapshot']} {r['window_start']:%Y-%m-%d %H:%M} +{args.window}: {r['n_edges']:,} edges, "
              f"{r['n_active']:,} active, {r['n_isolated']:,} isolated, {r['n_self_loops']:,} self-loops, "
              f"density {r['density']:.4f}, max degree {r['max_degree'] or 0}")
    return 0


def _train_gnn(args, settings) -> int:
    from engine.services.graph_lab import load_config, run_config

    config = load_config(args.config)
    if config["data"]["source"] == "store":
        with open_store(settings, read_only=True) as store:
            run_config(config, out_root=args.out, store=store, echo=print, on_epoch=_print_epoch)
    else:
        run_config(config, out_root=args.out, echo=print, on_epoch=_print_epoch)
    return 0


def _print_epoch(*, epoch: int, epochs: int, train_loss: float, val_loss: float) -> None:
    print(f"      epoch {epoch}/{epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}")


def _quickstart(args, settings) -> int:
    from engine.services.graph_lab import quickstart

    quickstart(num_ledgers=args.num_ledgers, num_accounts=args.num_accounts, epochs=args.epochs, seed=args.seed,
               out_root=args.out, echo=print)  # fmt: skip
    return 0


def _embed(args, settings) -> int:
    from engine.graph.temporal import load_edges
    from models.embeddings import embedding_frame

    started = time.monotonic()
    seed = settings.seed if args.seed is None else args.seed
    with open_store(settings) as store:
        edges = load_edges(store)
        if edges.height == 0:
            raise BadInput("the store holds no trade or funding edge; ingest data first (python -m engine ingest ...)")
        frame = embedding_frame(edges, epochs=args.epochs, seed=seed)
        store.save_derived("embeddings", frame)
    print(f"embeddings: {frame.height:,} wallets x 32 (gnn_0..gnn_31) + svdd_score from {edges.height:,} edges "
          f"in {time.monotonic() - started:.1f}s")
    return 0

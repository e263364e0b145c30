"""`synth` (simulate a labelled market) and `inject` (plant labelled fraud into an export)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.progress import CliProgress
from engine.settings import Settings


def register(subparsers, common: argparse.ArgumentParser) -> None:
    synth = subparsers.add_parser(
        "synth", parents=[common], help="simulate a Stellar market with labelled manipulation",
        description="Write trades.jsonl, operations.jsonl (Horizon records), labels.csv and meta.json to --out. "
                    "--scale 1 is about 100,000 trades per 7 days (10: about a million).")
    synth.add_argument("--out", type=Path, required=True, help="output folder (created)")
    synth.add_argument("--seed", type=int, default=None, help="random seed (default: LEDGERLENS_SEED)")
    synth.add_argument("--scale", type=float, default=1.0, help="size: 1 = ~100k trades per 7 days")
    synth.add_argument("--days", type=int, default=7, help="simulated span in days")
    synth.add_argument("--patterns", default=None,
                       help="only these ring patterns, comma-separated (ping_pong,cycle,random_matching,"
                            "pool_layered,two_pair; default all)")
    synth.add_argument("--exclude-patterns", default="", help="ring patterns to hold out, comma-separated")
    synth.add_argument("--funding", default=None,
                       help="only these funding styles, comma-separated (controller,chain,exchange_topup)")
    synth.add_argument("--exclude-funding", default="", help="funding styles to hold out, comma-separated")
    synth.add_argument("--family-seed", type=int, default=None,
                       help="vary the market's mix (ring count, wash share, trap sizes) with this seed")
    synth.set_defaults(handler=run_synth)

    inject = subparsers.add_parser(
        "inject", parents=[common], help="plant labelled sybil clusters / wash loops into a trades export",
        description="Copy a Horizon trades export (JSON Lines or a /trades page) with injected structures "
                    "tagged synthetic_fraud=true and fraud_pattern; their funding operations go to "
                    "<output stem>.operations.jsonl.")
    inject.add_argument("--input", type=Path, required=True)
    inject.add_argument("--output", type=Path, required=True)
    inject.add_argument("--summary", type=Path, default=None, help="JSON summary of what was injected")
    inject.add_argument("--operations", type=Path, default=None, help="where the funding operations go")
    inject.add_argument("--sybil-clusters", type=int, default=3)
    inject.add_argument("--sybil-cluster-size", type=int, default=8)
    inject.add_argument("--wash-loops", type=int, default=2)
    inject.add_argument("--wash-loop-size", type=int, default=5)
    inject.add_argument("--seed", type=int, default=None, help="random seed (default: LEDGERLENS_SEED)")
    inject.set_defaults(handler=run_inject)


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


def run_synth(args: argparse.Namespace, settings: Settings) -> int:
    from engine.synthetic import FamilyConfig, generate_market
    from storage.errors import BadInput

    if args.scale <= 0 or args.days <= 0:
        raise BadInput(f"--scale ({args.scale}) and --days ({args.days}) must be positive, e.g. --scale 1 --days 7")
    family = FamilyConfig(only_patterns=_names(args.patterns), exclude_patterns=_names(args.exclude_patterns),
                          only_funding=_names(args.funding), exclude_funding=_names(args.exclude_funding),
                          seed=args.family_seed)
    seed = settings.seed if args.seed is None else args.seed
    s = generate_market(args.out, seed=seed, scale=args.scale, days=args.days, family=family,
                        progress=CliProgress("synth"))
    print(f"wrote {s.n_trades:,} trades, {s.n_operations:,} operations, {s.n_accounts:,} accounts "
          f"({s.n_rings} rings, {s.n_wash_trades:,} wash trades), ledgers {s.first_ledger}-{s.last_ledger} "
          f"to {s.out_dir}", file=sys.stdout)
    return 0


def run_inject(args: argparse.Namespace, settings: Settings) -> int:
    from engine.synthetic import inject_fraud

    s = inject_fraud(args.input, args.output, summary_path=args.summary, operations_path=args.operations,
                     sybil_clusters=args.sybil_clusters, sybil_cluster_size=args.sybil_cluster_size,
                     wash_loops=args.wash_loops, wash_loop_size=args.wash_loop_size,
                     seed=settings.seed if args.seed is None else args.seed)
    print(f"injected {s.n_injected_trades:,} trades and {s.n_injected_accounts:,} accounts into "
          f"{s.n_input_trades:,} input trades -> {s.output_path} (funding operations: {s.operations_path})")
    return 0

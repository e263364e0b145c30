"""`demo`: build the demo store (simulated market -> replay -> stellar-sdk ingest -> analysis)."""

from __future__ import annotations

from engine.progress import CliProgress


def register(sub, common) -> None:
    p = sub.add_parser("demo", parents=[common], help="build the demo store from a simulated market")
    p.add_argument("--if-empty", action="store_true", help="do nothing when the store already holds trades")
    p.add_argument("--scale", type=float, default=0.05, help="market size (0.05 ~ 5k trades, 1.0 ~ 100k)")
    p.add_argument("--seed", type=int, help="simulator and model seed (default: LEDGERLENS_SEED)")
    p.set_defaults(handler=_demo)


def _demo(args, settings) -> int:
    from engine.services.demo import build_demo_store
    from storage.store import Store

    path = settings.db_path
    if args.if_empty and path.exists():
        with Store(path) as store:
            if store.counts()["trades"]:
                print(f"{path} already holds trades: keeping it")
                return 0
    summary = build_demo_store(
        path, seed=args.seed if args.seed is not None else settings.seed, scale=args.scale,
        market_dir=settings.home / "demo_market", progress=CliProgress("demo ingest"), settings=settings,
    )  # fmt: skip
    print(f"demo store {path}: {summary.describe()[len('demo market: '):]}")
    return 0

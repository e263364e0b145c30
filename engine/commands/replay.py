"""`replay --dir DIR [--port P] [--host H] [--live-rate N]`: serve recorded Horizon records on loopback.

The real stellar-sdk client (and `ingest horizon --horizon-url http://127.0.0.1:P`)
can then page and stream them; see `engine.ingest.replay` for what is served.
"""

from __future__ import annotations

from pathlib import Path


def register(sub, common) -> None:
    p = sub.add_parser(
        "replay", parents=[common], help="serve recorded Horizon trades/operations as a loopback Horizon"
    )
    p.add_argument("--dir", type=Path, required=True, help="folder of trades.jsonl / operations.jsonl / Horizon pages")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (0 = any free port; default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--live-rate", type=float, default=None,
                   help="play the records as if live: N records per second in close-time order (SSE streams wait "
                        "for new records); default: everything at once")  # fmt: skip
    p.set_defaults(handler=_replay)


def _replay(args, settings) -> int:
    from engine.ingest.replay import ReplayServer

    server = ReplayServer(args.dir, host=args.host, port=args.port, live_rate=args.live_rate)
    skipped = f"; {len(server.skipped):,} records skipped (not trades/operations)" if server.skipped else ""
    print(
        f"replaying {server.n_trades:,} trades and {server.n_operations:,} operations from {args.dir} "
        f"(ledgers up to {server.latest_ledger}){skipped}"
        + (f", live at {args.live_rate:g} records/s" if args.live_rate else "") + "\n"
        f"Horizon URL: {server.url}   e.g. python -m engine ingest horizon --horizon-url {server.url} "
        "--start-ledger A --end-ledger B\nCtrl-C stops.",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("replay stopped.")
    finally:
        server.stop()
    return 0

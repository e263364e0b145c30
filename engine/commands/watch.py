"""`watch`: follow new ledgers from Horizon, score the pairs they touch, alert (engine.services.watch)."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.cli import open_store


def register(sub, common) -> None:
    p = sub.add_parser("watch", parents=[common], help="follow new ledgers live, score what they touch, alert")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--horizon-url", help="Horizon base URL (default: LEDGERLENS_HORIZON_URL)")
    source.add_argument("--datalake", metavar="SOURCE", help="poll a ledger-exporter data lake (a folder or an "
                        "https:// prefix) for the next object instead of following Horizon; needs --from-ledger")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="data lake: wait between looks for the next object")
    p.add_argument("--settle-seconds", type=float, default=30.0, help="data lake: read an unreadable object again "
                   "(it may still be being written) for this long before quarantining it and moving on")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-ledger", type=int, help="first run: start at this ledger (a stored cursor wins)")
    start.add_argument("--from", dest="from_now", choices=["now"], help="first run: start with the next ledger (default)")
    p.add_argument("--alerts", nargs="+", default=["stdout"],
                   help="channels: stdout, webhook=https://... (HMAC-signed with LEDGERLENS_ALERT_WEBHOOK_SECRET), "
                        "websocket (ws://127.0.0.1:8765) or websocket=HOST:PORT")
    p.add_argument("--websocket-allow-remote", action="store_true",
                   help="let the websocket feed listen on a non-loopback address (it has no authentication)")
    p.add_argument("--dead-letter", type=Path, default=None,
                   help="where undeliverable webhook alerts go (default $LEDGERLENS_HOME/alerts_dead_letter.jsonl)")
    p.add_argument("--cooldown-seconds", type=int, default=3600, help="at most one alert per (wallet, pair) per this "
                   "much ledger time")  # fmt: skip
    p.add_argument("--min-trades", type=int, default=20, help="trades a (wallet, pair) needs before it can alert")
    p.add_argument("--threshold", type=int, default=None, help="alert at this score (default LEDGERLENS_RISK_SCORE_FLAG_THRESHOLD)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds (default: never)")
    p.add_argument("--idle-exit-seconds", type=float, default=None, help="stop after this long with no new records")
    p.set_defaults(handler=_watch)


def _watch(args, settings) -> int:
    from engine.services.alerting import channels_from
    from engine.services.watch import WatchOptions, watch

    dead_letter = args.dead_letter or settings.home / "alerts_dead_letter.jsonl"
    channels = channels_from(args.alerts, secret=settings.alert_webhook_secret, dead_letter=dead_letter,
                             allow_remote=args.websocket_allow_remote)
    options = WatchOptions(
        horizon_url=None if args.datalake else (args.horizon_url or settings.horizon_url), datalake=args.datalake,
        poll_s=args.poll_seconds, settle_s=args.settle_seconds, from_ledger=args.from_ledger,
        threshold=settings.risk_score_flag_threshold if args.threshold is None else args.threshold,
        min_trades=args.min_trades, cooldown_s=args.cooldown_seconds, max_seconds=args.max_seconds,
        idle_exit_s=args.idle_exit_seconds, seed=settings.seed,
    )  # fmt: skip
    with open_store(settings) as store:
        stats = watch(store, settings, options, channels)
    print(stats.describe(), file=sys.stderr)
    return 0

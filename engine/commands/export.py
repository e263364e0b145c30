"""`export trades`: the stored trades as canonical JSON Lines or Parquet."""

from __future__ import annotations

from pathlib import Path

from engine.cli import open_store


def register(sub, common) -> None:
    p = sub.add_parser("export", help="write stored data to files")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    t = what.add_parser("trades", parents=[common], help="trades in canonical form (JSON Lines or Parquet)")
    t.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl",
                   help="jsonl: amounts as 7-decimal text; parquet: typed columns, amounts in stroops "
                        "(what `features --engine spark --trades` reads)")  # fmt: skip
    t.add_argument("--ledger-range", nargs=2, type=int, metavar=("A", "B"))
    t.add_argument("--out", type=Path, required=True)
    t.set_defaults(handler=_trades)


def _trades(args, settings) -> int:
    lo, hi = args.ledger_range or (None, None)
    with open_store(settings, read_only=False) as store:
        n = store.export_trades(args.out, ledger_from=lo, ledger_to=hi, fmt=args.format)
    print(f"wrote {n:,} trades to {args.out}")
    return 0

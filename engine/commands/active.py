"""`queue` and `annotate`: the active-learning loop from the command line.

    python -m engine queue [--strategy S] [--size N] [--out FILE.csv]
    python -m engine annotate --wallet G --label wash|legit|unsure --annotator A [--note T] [--pair P]
    python -m engine annotate --export FILE.csv|FILE.parquet
    python -m engine annotate --import FILE.csv|FILE.parquet

`annotate` with a label retrains once AL_RETRAIN_THRESHOLD new labels have arrived
(rolling back when ROC-AUC drops more than AL_ROLLBACK_AUC_DROP). `--import` verifies
every row's HMAC first, names the tampered rows, imports only verified ones and exits 1
if any row was rejected.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from engine.active.annotations import LABELS
from engine.active.config import STRATEGIES
from engine.cli import open_store
from storage.errors import BadInput


def register(sub, common) -> None:
    q = sub.add_parser("queue", parents=[common], help="the next (wallet, pair) rows to label (active learning)")
    q.add_argument("--strategy", choices=STRATEGIES, default=None, help="default: AL_QUERY_STRATEGY")
    q.add_argument("--size", type=int, default=None, help="default: AL_BATCH_SIZE")
    q.add_argument("--out", type=Path, help="write wallet,pair_id,strategy,priority as CSV")
    q.set_defaults(handler=_queue)
    a = sub.add_parser("annotate", parents=[common], help="label a wallet, or export / import signed labels")
    what = a.add_mutually_exclusive_group(required=True)
    what.add_argument("--wallet", help="the wallet to label")
    what.add_argument("--export", type=Path, metavar="FILE", help="write every annotation (CSV or Parquet)")
    what.add_argument("--import", dest="import_file", type=Path, metavar="FILE", help="verify and import a file")
    a.add_argument("--label", choices=LABELS)
    a.add_argument("--annotator", help="who labels (recorded and signed)")
    a.add_argument("--note", default=None)
    a.add_argument("--pair", default=None, help="the pair the label is about (default: every pair)")
    a.add_argument("--no-retrain", action="store_true", help="do not retrain even past the threshold")
    a.set_defaults(handler=_annotate)


def _queue(args, settings) -> int:
    from engine.active.queue import QUEUE_COLUMNS
    from engine.services.label import build_queue

    with open_store(settings) as store:
        result = build_queue(store, settings, strategy=args.strategy, size=args.size)
    table = result.queue.select(QUEUE_COLUMNS)
    print(f"{table.height} of {result.n_pool:,} unlabelled (wallet, pair) from {result.source}", file=sys.stderr)
    if result.n_rejected:
        print(f"warning: {result.n_rejected} stored annotation row(s) fail HMAC verification and are ignored",
              file=sys.stderr)  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.write_csv(args.out)
        print(f"written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(table.write_csv())
    return 0


def _annotate(args, settings) -> int:
    if args.export:
        return _export(args, settings)
    if args.import_file:
        return _import(args, settings)
    if not args.label or not args.annotator:
        raise BadInput("annotate --wallet needs --label wash|legit|unsure and --annotator NAME")
    from engine.services.label import record_label
    from engine.services.retrain import maybe_retrain

    now = datetime.now(UTC)
    with open_store(settings) as store:
        record_label(store, settings, wallet=args.wallet, label=args.label, annotator=args.annotator, now=now,
                     note=args.note, pair_id=args.pair)  # fmt: skip
        print(f"labelled {args.wallet} {args.label}" + (f" on {args.pair}" if args.pair else "") + f" by {args.annotator}")
        if args.no_retrain:
            return 0
        record = maybe_retrain(store, settings, now=now)
    if record.status != "skipped":
        print(f"retrain: {record.status}: {record.message}")
    return 0


def _export(args, settings) -> int:
    from engine.active.annotations import export_annotations

    with open_store(settings, read_only=True) as store:
        n = export_annotations(store.annotations(), args.export)
    print(f"{n} annotation row(s) written to {args.export} (HMACs kept; importing needs the same key)")
    return 0


def _import(args, settings) -> int:
    from engine.active.annotations import import_annotations, settings_key

    with open_store(settings) as store:
        result = import_annotations(store, args.import_file, settings_key(settings))
    rejected = result.verified.rejected
    for name in result.verified.names(limit=rejected.height):
        print(f"rejected: {name}", file=sys.stderr)
    print(f"{result.n_read} row(s) read: {result.n_added} imported, {result.n_duplicate} already stored, "
          f"{rejected.height} rejected")  # fmt: skip
    return 1 if rejected.height else 0

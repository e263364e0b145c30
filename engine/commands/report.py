"""`report` and `verify-report`: tamper-evident forensic reports (PDF, JSON, Markdown).

    python -m engine report --wallet G... --pair BASE/COUNTER --format pdf [--out FILE] [--as-of ISO]
    python -m engine report --input wallets.csv --format json          # columns wallet,pair_id
    python -m engine verify-report FILE [--db STORE | --regenerate]

Files go to $LEDGERLENS_HOME/reports/forensic/ (mode 0o600) unless --out is given,
each with a `<file>.sha256` sidecar, and are recorded in the store's `reports` table.
Reports are signed with the model-signing key (LEDGERLENS_MODEL_SIGNING_KEY); verify-report
trusts LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS (else the local key) and needs no store.
"""

from __future__ import annotations

import csv
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from engine.cli import open_store
from storage.errors import BadInput


def register(sub, common) -> None:
    p = sub.add_parser("report", parents=[common], help="write a forensic report of a wallet in a pair")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--wallet", help="account id G...")
    who.add_argument("--input", type=Path, help="CSV with columns wallet,pair_id: one report per row")
    p.add_argument("--pair", help="pair id BASE/COUNTER (with --wallet)")
    p.add_argument("--format", choices=("pdf", "json", "markdown"), default="pdf")
    p.add_argument("--out", type=Path, help="output file (one report) or folder (--input)")
    p.add_argument("--as-of", type=_moment, default=None,
                   help="point in time the report describes, ISO-8601 (default: now); recorded for regeneration")
    p.add_argument("--anchor", action="store_true", help="also build and sign a Stellar tx carrying the fingerprint")
    p.add_argument("--anchor-key", type=Path, help="secret seed file (default LEDGERLENS_ANCHOR_SECRET_KEY_PATH)")
    p.set_defaults(handler=_report)
    v = sub.add_parser("verify-report", parents=[common], help="check a report's fingerprint and signature offline (and regenerate it)")
    v.add_argument("file", type=Path)
    v.add_argument("--regenerate", action="store_true", help="regenerate from the default store (implied by --db)")
    v.set_defaults(handler=_verify)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInput(f"--as-of {text!r} is not an ISO-8601 time (e.g. 2024-05-01T00:00:00Z)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _requests(args) -> list[tuple[str, str]]:
    if args.input is None:
        if not args.pair:
            raise BadInput("--pair is required with --wallet (e.g. --pair USDC:GA5Z.../XLM:native)")
        return [(args.wallet, args.pair)]
    try:
        with args.input.open(newline="") as fh:
            rows = [(r["wallet"], r["pair_id"]) for r in csv.DictReader(fh)]
    except (OSError, KeyError) as exc:
        raise BadInput(f"{args.input}: expected a CSV with columns wallet,pair_id ({exc})") from exc
    return rows


def _report(args, settings) -> int:
    from engine.services.report import generate_report

    requests = _requests(args)
    as_of = args.as_of or datetime.now(UTC).replace(microsecond=0)
    started = time.monotonic()
    with open_store(settings) as store:
        for wallet, pair in requests:
            bulk = args.input is not None
            made = generate_report(
                store, wallet=wallet, pair_id=pair, fmt=args.format, settings=settings, as_of=as_of,
                out=None if bulk else args.out, out_dir=args.out if bulk else None,
                anchor=args.anchor, anchor_key=args.anchor_key,
            )  # fmt: skip
            anchor = made.anchor
            print(f"{made.fingerprint}  {made.path}" + (f"  anchor tx {anchor['tx_hash']}" if anchor else ""))
    print(f"{len(requests)} report(s) in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


def _verify(args, settings) -> int:
    """VALID (exit 0) only when every check holds; INVALID with the reasons (exit 2) otherwise,
    including files that hold no report at all - never a traceback."""
    from engine.services.report import verify_report_file

    try:
        if args.regenerate or args.db is not None:
            with open_store(settings, read_only=True) as store:
                result = verify_report_file(args.file, settings=settings, store=store)
        else:
            result = verify_report_file(args.file, settings=settings)
    except BadInput as exc:
        print(f"FAILED   {exc}")
        print(f"INVALID: {args.file} is not a readable LedgerLens report")
        return 2
    for check in result.checks:
        print(f"ok       {check}")
    for problem in result.problems:
        print(f"FAILED   {problem}")
    signer = (f", signed by trusted key {result.signer}" if result.ok else
              f", attestation names key {result.signer}" if result.signer else ", unsigned")  # fmt: skip
    print(f"{'VALID' if result.ok else 'INVALID'} {result.fmt} report, fingerprint {result.fingerprint}{signer}")
    return 0 if result.ok else 2

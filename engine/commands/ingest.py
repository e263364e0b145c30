"""`ingest horizon|datalake|files`: load a ledger range or files into the store."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli import open_store
from engine.progress import CliProgress


def register(sub, common) -> None:
    p = sub.add_parser("ingest", help="load trades and funding operations into the store")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="SOURCE")

    h = kinds.add_parser("horizon", parents=[common], help="a ledger range from a Horizon server")
    _range(h)
    h.add_argument("--pair", help="only trades of this pair, BASE/COUNTER (e.g. USDC:GA5Z.../XLM:native)")
    h.add_argument("--horizon-url", help="Horizon base URL (default: LEDGERLENS_HORIZON_URL)")
    h.set_defaults(handler=_horizon)

    d = kinds.add_parser("datalake", parents=[common], help="a ledger range from ledger-exporter objects")
    _range(d)
    d.add_argument("--source", help="folder or https:// prefix of the data lake (default: LEDGERLENS_DATALAKE_URL)")
    d.add_argument("--workers", type=int, help="decoding processes (default: LEDGERLENS_DECODE_WORKERS)")
    d.set_defaults(handler=_datalake)

    f = kinds.add_parser("files", parents=[common], help="Horizon / Hubble / LedgerLens export files")
    f.add_argument("paths", nargs="+", type=Path, help="files, or folders of files")
    f.set_defaults(handler=_files)


def _range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start-ledger", type=int, required=True)
    p.add_argument("--end-ledger", type=int, required=True)


def _horizon(args, settings) -> int:
    from engine.services.ingest import plan_ingest

    request, batches = plan_ingest("horizon", start_ledger=args.start_ledger, end_ledger=args.end_ledger,
                                   settings=settings, horizon_url=args.horizon_url, pair=args.pair)  # fmt: skip
    return _run(settings, request, batches)


def _datalake(args, settings) -> int:
    from engine.services.ingest import plan_ingest

    request, batches = plan_ingest("datalake", start_ledger=args.start_ledger, end_ledger=args.end_ledger,
                                   settings=settings, lake=args.source, workers=args.workers)  # fmt: skip
    return _run(settings, request, batches)


def _run(settings, request, batches) -> int:
    from engine.services.ingest import ingest_range

    with open_store(settings) as store:
        summary = ingest_range(store, request, batches, progress=CliProgress(f"ingest {request.source}"))
        _report(store, [summary])
    return 0


def _files(args, settings) -> int:
    from engine.services.ingest import ingest_paths

    with open_store(settings) as store:
        summaries = ingest_paths(store, args.paths, batch_size=settings.batch_size, progress=CliProgress("ingest files"))
        _report(store, summaries)
    return 0


def _report(store, summaries, *, shown: int = 5) -> None:
    """Each run's summary, then the first quarantined records (where, and why) so a
    bad file is explained on the spot; the Ingest page lists them all."""
    for s in summaries:
        print(s.describe())
        if not s.n_quarantined or s.run_id is None:
            continue
        for row in store.quarantined(run_id=s.run_id, limit=shown).iter_rows(named=True):
            print(f"  quarantined {row['location']}: {row['reason']}")
        if s.n_quarantined > shown:
            print(f"  ... {s.n_quarantined - shown:,} more quarantined records of run {s.run_id}: see the Ingest page")

"""Data-lake ingest speed: ledgers/s for ledger-53312000-sized ledgers on 1 and 2 workers.

Builds a temporary data lake of N one-ledger objects, each the recorded ledger 53312000
(163 transactions, 29 fills; ../shared/fixtures) re-numbered to consecutive ledgers, in
the exporter's partition layout; then times decode only (the batch function) and the
whole path into a DuckDB store.

    .venv/bin/python benchmarks/bench_datalake.py [--ledgers 120]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stellar_sdk import xdr  # noqa: E402

from engine.ingest import datalake  # noqa: E402
from engine.ingest.runner import run_ingest  # noqa: E402
from storage.store import Store  # noqa: E402

FIXTURE = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "fixtures"
    / "stellar-go-lcm"
    / "FCD285FF--53312000.xdr.zstd"
)
FIRST = 53_312_000


def build_lake(root: Path, n: int) -> None:
    """n objects for ledgers FIRST..FIRST+n-1, each a re-numbered copy of the fixture ledger."""
    raw = datalake.read_object(FIXTURE)[0].to_xdr_bytes()
    for seq in range(FIRST, FIRST + n):
        lcm = xdr.LedgerCloseMeta.from_xdr_bytes(raw)
        lcm.v1.ledger_header.header.ledger_seq = xdr.Uint32(seq)
        folder = root / datalake.partition_name(seq)
        folder.mkdir(exist_ok=True)
        (folder / datalake.object_name(seq)).write_bytes(datalake.encode_object([lcm]))


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_decode(root: Path, n: int, workers: int) -> tuple[float, float, int]:
    _, batches = datalake.plan(start_ledger=FIRST, end_ledger=FIRST + n - 1, source=str(root), workers=workers)
    started, cpu = time.perf_counter(), _cpu()
    fills = sum(b.trades.height for b in batches(None) if b.trades is not None)
    return time.perf_counter() - started, _cpu() - cpu, fills


def time_store(root: Path, n: int, workers: int, db: Path) -> float:
    request, batches = datalake.plan(start_ledger=FIRST, end_ledger=FIRST + n - 1, source=str(root), workers=workers)
    started = time.perf_counter()
    with Store(db) as store:
        summary = run_ingest(store, request, batches)
    assert summary.n_trades == 29 * n, summary
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledgers", type=int, default=120)
    n = parser.parse_args().ledgers
    if not FIXTURE.exists():
        print(f"fixture {FIXTURE} is absent: nothing to benchmark", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lake"
        root.mkdir()
        build_lake(root, n)
        print(f"{n} ledgers like 53312000 (163 txs, 29 fills, ~73 kB zstd each)")
        for workers in (1, 2):
            seconds, cpu, fills = time_decode(root, n, workers)
            print(
                f"decode  workers={workers}: {n / seconds:6.1f} ledgers/s  {fills / seconds:7.0f} fills/s  "
                f"({seconds:.2f}s wall, {1000 * cpu / n:.0f} ms CPU per ledger incl. worker start-up)"
            )
        for workers in (1, 2):
            seconds = time_store(root, n, workers, Path(tmp) / f"s{workers}.duckdb")
            print(f"ingest  workers={workers}: {n / seconds:6.1f} ledgers/s into the store  ({seconds:.2f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Ingest speed: N Horizon trade records from a JSON Lines file, end to end into a fresh store.

Compares with a bare DuckDB `read_json` of the same file (materialised), and reports
peak RSS of the ingest process. Targets (issue 2): >= 100k trades/s, within 3x of
the bare read, peak RSS <= 3 GB.

    .venv/bin/python benchmarks/bench_ingest.py [--n 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.factories import account, horizon_trade  # noqa: E402

ACCOUNTS = [account(i) for i in range(30_000)]  # ~30k wallets, as in the feature benchmark


def write_records(path: Path, n: int) -> None:
    template = horizon_trade(0)
    with path.open("w") as fh:
        for i in range(n):  # vary ids, ledgers, accounts and amounts on one valid record
            ledger = 1_000_000 + i // 4
            op = (ledger << 32) | (1 << 12) | (i % 4 + 1)
            rec = {**template, "id": f"{op}-0", "paging_token": f"{op}-0",
                   "base_account": ACCOUNTS[i % len(ACCOUNTS)], "counter_account": ACCOUNTS[(i * 7 + 3) % len(ACCOUNTS)],
                   "base_amount": f"{1 + i % 9973}.{i % 10_000_000:07d}"}  # fmt: skip
            fh.write(json.dumps(rec) + "\n")


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a child process."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        f"subprocess.run({cmd!r}, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    secs, rss = out.stdout.split()
    return float(secs), int(rss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trades.jsonl"
        t = time.perf_counter()
        write_records(path, args.n)
        print(f"wrote {args.n:,} records ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s")
        bare_sql = f"SELECT * FROM read_json('{path}', format='newline_delimited')"
        bare_cmd = [sys.executable, "-c", f"import duckdb; duckdb.connect().sql({bare_sql!r}).to_arrow_table()"]
        bare, ours = [], []
        for r in range(args.repeat):  # alternate, so drift in the machine's load hits both alike
            bare.append(timed(bare_cmd))
            db = Path(tmp) / f"s{r}.duckdb"
            ours.append(timed([sys.executable, "-m", "engine", "ingest", "files", "--db", str(db), str(path)]))
        b = statistics.median(s for s, _ in bare)
        o = statistics.median(s for s, _ in ours)
        ratios = sorted(ob[0] / bb[0] for ob, bb in zip(ours, bare, strict=True))
        rss = max(m for _, m in ours)
        print(f"bare duckdb read_json: median {b:.2f}s")
        print(f"ingest files end to end: median {o:.2f}s = {args.n / o:,.0f} trades/s; {o / b:.2f}x bare read")
        print(f"ratio per alternating pair: median {statistics.median(ratios):.2f}x (range {ratios[0]:.2f}-{ratios[-1]:.2f})")
        print(f"peak RSS of ingest: {rss / 1e9:.2f} GB")


if __name__ == "__main__":
    main()

"""Feature-matrix speed and memory: `python benchmarks/bench_features.py [--sizes 100000 1000000]`.

Market: engine.synthetic.generate_market when it exists (`--simulator`), else
engine.features.random_market (seeded random frames). Prints, per size: trades,
wallets, (wallet, pair) rows, feature-matrix seconds, Benford-table seconds, and
the peak RSS of the process (targets at 1M trades / ~30k wallets: <= 30 s, <= 4 GB).
Each run is its own child process so the peak RSS is that run's own; with
`--repeat N` each size runs N times and the medians are printed (the machine is
shared: the 1-minute load average before and after is printed too).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_one(n_trades: int, n_wallets: int, days: int, seed: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from engine.features import build_benford_table, build_feature_matrix
    from engine.features.random_market import START, random_market

    trades, ops, accounts = random_market(n_trades=n_trades, n_wallets=n_wallets, days=days, seed=seed)
    as_of = START + timedelta(days=days)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    matrix = build_feature_matrix(trades, ops, accounts, as_of=as_of)
    t_matrix = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = build_benford_table(trades, as_of=as_of)
    t_benford = time.perf_counter() - t0
    return {
        "trades": trades.height, "wallets": n_wallets, "rows": matrix.height, "columns": matrix.width,
        "features_s": round(t_matrix, 2), "benford_table_s": round(t_benford, 2), "benford_rows": table.height,
        "rss_after_data_mb": round(rss_data), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--wallets-per-trade", type=float, default=0.03, help="wallets = trades x this (1M -> 30k)")
    ap.add_argument("--days", type=int, default=40)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=1, help="runs per size; medians are printed")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        n = args.sizes[0]
        print(json.dumps(run_one(n, max(100, int(n * args.wallets_per_trade)), args.days, args.seed)))
        return 0
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", "--sizes", str(n), "--days", str(args.days), "--seed", str(args.seed),
               "--wallets-per-trade", str(args.wallets_per_trade)]  # fmt: skip
        load = os.getloadavg()[0]
        runs = [json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
                for _ in range(max(1, args.repeat))]  # fmt: skip
        r = {k: statistics.median(x[k] for x in runs) for k in ("features_s", "benford_table_s", "peak_rss_mb")}
        r = {**runs[0], **r}
        spread = " ".join(f"{x['features_s']:.1f}/{x['benford_table_s']:.1f}" for x in runs)
        print(
            f"{r['trades']:>9,} trades {r['wallets']:>7,} wallets {r['rows']:>8,} rows x {r['columns']} cols | "
            f"features {r['features_s']:6.2f} s | benford table {r['benford_table_s']:6.2f} s "
            f"({r['benford_rows']:,} rows) | peak RSS {r['peak_rss_mb']:,.0f} MB (data alone {r['rss_after_data_mb']:,} MB) "
            f"| median of {len(runs)} (features/benford s: {spread}) load {load:.2f}->{os.getloadavg()[0]:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

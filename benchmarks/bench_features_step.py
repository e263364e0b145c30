"""The features step on a stored market: time, peak RSS, growth between sizes.

    flock /tmp/ledgerlens-heavy.lock .venv/bin/python benchmarks/bench_features_step.py \
        --scales 10 40 [--days 7] [--work /tmp/ledgerlens-bench] [--engine duckdb|spark]

For each scale (simulator scale 10 over 7 days is about a million trades) the
market is generated and ingested into `<work>/scale<S>.duckdb` once (kept for the
next run), then engine.services.features.compute_features runs in a child process
of its own, so the peak RSS printed is that step's alone. With `--engine spark`
the step is engine.services.features.compute_features_spark on the store's trades
exported to Parquet (local[2]). The last line gives the growth exponents
(time ~ n^a, memory ~ n^b) from the smallest to the largest size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_store(store_path: Path, *, scale: float, days: int, seed: int) -> None:
    """Generate the simulator's market and ingest it into `store_path` (skipped when it exists)."""
    from engine.ingest.files import ingest_files
    from engine.synthetic import generate_market
    from storage.store import Store

    market = store_path.with_suffix("")
    summary = generate_market(market, seed=seed, scale=scale, days=days)
    with Store(store_path) as store:
        ingest_files(store, [summary.trades_path, summary.operations_path])


def run_step(store_path: Path, engine: str) -> dict:
    """The features step on the store; seconds, peak RSS and sizes."""
    from engine.services.features import compute_features
    from storage.store import Store

    with Store(store_path) as store:
        n_trades = store.counts()["trades"]
        started = time.perf_counter()
        if engine == "spark":
            from engine.services.features import compute_features_spark

            run = compute_features_spark(store, work_dir=store_path.with_suffix(".spark-input"))
        else:
            run = compute_features(store)
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"trades": n_trades, "rows": run.matrix.height, "benford_rows": run.benford_tests,
            "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[10.0, 40.0])
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ledgerlens-bench"))
    ap.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    ap.add_argument("--child", choices=("build", "step"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        store = args.work / f"scale{args.scales[0]:g}.duckdb"
        if args.child == "build":
            build_store(store, scale=args.scales[0], days=args.days, seed=args.seed)
        else:
            print(json.dumps(run_step(store, args.engine)))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for scale in args.scales:
        common = [sys.executable, __file__, "--scales", str(scale), "--days", str(args.days), "--seed",
                  str(args.seed), "--work", str(args.work), "--engine", args.engine]  # fmt: skip
        if not (args.work / f"scale{scale:g}.duckdb").exists():
            subprocess.run([*common, "--child", "build"], check=True)
        load = os.getloadavg()[0]
        out = subprocess.run([*common, "--child", "step"], check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        results.append(r)
        print(f"scale {scale:g}: {r['trades']:,} trades -> {r['rows']:,} (wallet, pair) rows, {r['benford_rows']:,} "
              f"Benford tests | {args.engine} features step {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:,} MB "
              f"| load {load:.2f}->{os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    if len(results) > 1:
        a, b = results[0], results[-1]
        k = math.log(b["trades"] / a["trades"])
        print(f"growth {a['trades']:,} -> {b['trades']:,} trades: time n^{math.log(b['seconds'] / a['seconds']) / k:.2f}, "
              f"peak RSS n^{math.log(b['peak_rss_mb'] / a['peak_rss_mb']) / k:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

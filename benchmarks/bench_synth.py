"""Time and peak memory of the market simulator.

    .venv/bin/python benchmarks/bench_synth.py [--scale 10] [--days 7] [--keep DIR]

scale 10 over 7 days is about a million trades; the target is <= 60 s. Files go to a
temporary folder (about 1.4 GB at scale 10) unless --keep names one.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from engine.synthetic import generate_market


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        started = time.perf_counter()
        s = generate_market(out, seed=args.seed, scale=args.scale, days=args.days)
        seconds = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scale={args.scale} days={args.days}: {s.n_trades:,} trades, {s.n_operations:,} operations, "
          f"{s.n_accounts:,} accounts, {s.n_rings} rings in {seconds:.1f} s "
          f"({s.n_trades / seconds:,.0f} trades/s); peak RSS {peak_mb:,.0f} MB; {size_mb:,.0f} MB written")


if __name__ == "__main__":
    main()

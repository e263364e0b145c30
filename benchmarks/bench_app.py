"""Server-side render time of every workbench page on a big store (AppTest).

First render (cold st.cache_data) and a rerun that hits the cache, per page.
Targets: first render <= 2 s, cached rerun <= 0.5 s (reported, not asserted).

    flock /tmp/ledgerlens-heavy.lock .venv/bin/python benchmarks/bench_app.py [--trades 1000000]
        [--db benchmark_results/app.duckdb]

The store is built once (vectorised, seeded) and reused: n trades among ~n/20
wallets over 40 pairs, 2 funding ops per 100 wallets, latest scores for every
(wallet, pair) seen, 200 rings of 5 wallets.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.strkey import random_account_ids  # noqa: E402
from storage.store import Store  # noqa: E402

PAGES = ("overview", "ingest", "rings", "wallet", "annotate", "models", "reports", "graph_lab", "live")


def build(db: Path, n_trades: int, seed: int = 42) -> str:
    rng = np.random.default_rng(seed)
    n_wallets = max(1000, n_trades // 20)
    wallets = random_account_ids(rng, n_wallets).astype(str)
    issuers = random_account_ids(rng, 40).astype(str)
    pairs = np.array([f"T{i:03d}:{issuers[i]}/XLM:native" for i in range(40)])
    with Store(db) as store:
        for start in range(0, n_trades, 250_000):
            n = min(250_000, n_trades - start)
            idx = np.arange(start, start + n)
            ledger = 50_000_000 + idx // 4
            op_id = (ledger.astype(np.int64) << 32) | (idx % 4 + 1)
            pair = rng.integers(0, 40, n)
            seller, buyer = rng.integers(0, n_wallets, n), rng.integers(0, n_wallets, n)
            amount = (10 ** rng.uniform(5, 11, n)).astype(np.int64) + 1
            base = np.array([p.split("/")[0] for p in pairs])[pair]
            sells_base = rng.random(n) < 0.5
            trades = pl.DataFrame({
                "id": [f"{o}-0" for o in op_id.tolist()], "op_id": op_id, "ledger": ledger,
                "closed_at": pl.Series((1_700_000_000 + idx * 1.25).astype("int64") * 1_000_000).cast(
                    pl.Datetime("us", "UTC")),
                "trade_type": "orderbook", "pair_id": pairs[pair], "seller_account": wallets[seller],
                "seller_offer_id": idx, "seller_pool_id": None, "buyer_account": wallets[buyer],
                "buyer_offer_id": None, "buyer_pool_id": None,
                "sold_asset": np.where(sells_base, base, "XLM:native"), "sold_amount": amount,
                "bought_asset": np.where(sells_base, "XLM:native", base), "bought_amount": amount * 3 + 1,
                "price_n": 3, "price_d": 1, "source": "synthetic",
            }, schema_overrides={"seller_pool_id": pl.String, "buyer_offer_id": pl.Int64, "buyer_pool_id": pl.String})
            store.write_batch(run_id=None, trades=trades)
        keys = store._frame("SELECT DISTINCT seller_account AS wallet, pair_id FROM trades")
        score = rng.integers(0, 101, keys.height)
        store.append_scores(keys.with_columns(
            score=pl.Series(score, dtype=pl.Int32), benford_flag=pl.Series(score > 85), ml_flag=pl.Series(score > 70),
            timestamp=pl.lit(1_701_000_000), confidence=pl.Series(rng.integers(0, 101, keys.height), dtype=pl.Int32),
            ring_id=pl.lit(None, pl.String), model_version=pl.lit("bench"), bft_divergence=pl.lit(False)))
        members = wallets[:1000].reshape(200, 5)
        ring_ids = [f"ring_{i:012x}" for i in range(200)]
        store.save_derived("rings", pl.DataFrame({
            "ring_id": ring_ids, "size": [5] * 200, "n_trades": [50] * 200, "volume": [10**9] * 200,
            "internal_density": [1.0] * 200, "reciprocity": [0.8] * 200, "closed_loop_share": [0.5] * 200,
            "funding_share": [1.0] * 200, "n_pairs": [1] * 200}))
        store.save_derived("ring_members", pl.DataFrame({
            "ring_id": np.repeat(ring_ids, 5), "account_id": members.ravel(), "n_trades": [10] * 1000,
            "volume": [10**8] * 1000, "loop_volume": [10**7] * 1000}))
    return str(wallets[0])


def _cold_caches() -> None:
    """Every st.cache_data the pages use, emptied (the Store itself stays open: one per process)."""
    import streamlit as st

    st.cache_data.clear()


def measure(db: Path, wallet: str) -> list[tuple[str, float, float]]:
    """(page, first render s, cached rerun s) of every page; the first render starts with empty query caches."""
    from streamlit.testing.v1 import AppTest

    os.environ["LEDGERLENS_DB"], os.environ["LEDGERLENS_HOME"] = str(db), str(db.parent / "home")
    out = []
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.query_params["wallet"] = wallet
        at.run()  # the router's default page opens the store; the page itself is timed below
        if page != "overview":
            at.switch_page(f"pages/{page}.py")
        _cold_caches()
        at.query_params["wallet"] = wallet
        t0 = time.perf_counter()
        at.run()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        rerun = time.perf_counter() - t0
        errors = [e.value for e in at.exception]
        out.append((page, first, rerun))
        print(f"{page:10s} first {first:6.2f} s  cached rerun {rerun:5.2f} s  {'ERROR ' + str(errors) if errors else ''}",
              flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, default=ROOT / "benchmark_results" / "app.duckdb")
    args = ap.parse_args()
    marker = args.db.with_suffix(".wallet")
    if not args.db.exists() or not marker.exists():
        args.db.parent.mkdir(parents=True, exist_ok=True)
        args.db.unlink(missing_ok=True)
        t0 = time.perf_counter()
        marker.write_text(build(args.db, args.trades))
        print(f"built {args.trades:,}-trade store in {time.perf_counter() - t0:.1f} s ({datetime.now(UTC):%H:%M})")
    results = measure(args.db, marker.read_text())
    slow = [p for p, f, r in results if f > 2.0 or r > 0.5]
    print("targets met" if not slow else f"over target: {', '.join(slow)}")


if __name__ == "__main__":
    main()

"""Funding graph + closed loops + rings: wall time and peak RSS at 100k and 1M trades.

Uses the simulator (engine.synthetic.generate_market) when `--simulated` is given,
else random canonical frames built here with numpy: ~30k wallets at 1M trades
(3k at 100k), 50 market makers in 60% of trades (so many reciprocal edges: a hard
suspicious subgraph), 5 exchanges funding 70% of wallets, small funders, random
payments, and injected rings (ping-pong / cycles, funded by a controller).
Each size runs in its own process (the simulated market is generated and ingested
in another, once, and cached), so peak RSS is that of loading + the rings step.
"gen" is the time to build or load the frames.

    .venv/bin/python benchmarks/bench_rings.py [--trades 100000 1000000] [--simulated [--cache DIR]]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.graph import RingOptions, ancestors, detect_rings, funding_siblings  # noqa: E402
from engine.graph.rings import ring_recovery  # noqa: E402
from engine.schemas import TRADES_SCHEMA  # noqa: E402

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
WEEK_US = 7 * 86_400 * 1_000_000
PAIRS = [f"TK{i}:GISSUER{i}/XLM:native" for i in range(10)]


def random_market(n_trades: int, seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(trades, funding edges, labels [account_id, ring_id]) of a random market with injected rings."""
    rng = np.random.default_rng(seed)
    n_wallets = 30_000 if n_trades >= 1_000_000 else max(1000, n_trades * 30_000 // 1_000_000)
    wash_pairs, wash_ids = _rings(rng, n_rings=max(10, n_wallets // 200), n_wallets=n_wallets)
    n_honest = n_trades - len(wash_pairs)
    weights = rng.pareto(1.2, n_wallets) + 1
    side_a = rng.choice(n_wallets, n_honest, p=weights / weights.sum())
    mm = rng.integers(0, 50, n_honest) + n_wallets  # market makers are ids n_wallets..n_wallets+49
    side_b = np.where(rng.random(n_honest) < 0.6, mm, rng.choice(n_wallets, n_honest, p=weights / weights.sum()))
    flip = rng.random(n_honest) < 0.5
    seller = np.concatenate([np.where(flip, side_a, side_b), wash_pairs[:, 0]])
    buyer = np.concatenate([np.where(flip, side_b, side_a), wash_pairs[:, 1]])
    ts = np.concatenate([rng.integers(T0, T0 + WEEK_US, n_honest), wash_pairs[:, 2]])
    pair = np.concatenate([rng.integers(0, len(PAIRS), n_honest), wash_pairs[:, 3]])
    amount = np.concatenate([(rng.lognormal(18, 1.5, n_honest)).astype(np.int64) + 1, wash_pairs[:, 4]])
    keep = seller != buyer
    trades = _trades_frame(seller[keep], buyer[keep], ts[keep], pair[keep], amount[keep])
    labels = pl.DataFrame({
        "account_id": pl.Series(np.concatenate(wash_ids)).cast(pl.String).str.pad_start(9, "G"),
        "ring_id": np.concatenate([[f"r{i}"] * len(m) for i, m in enumerate(wash_ids)]),
    })
    return trades, _funding(rng, n_wallets, wash_ids), labels


def _rings(rng, *, n_rings: int, n_wallets: int):
    """Ring trades as rows [seller, buyer, ts, pair, amount] and the ring member lists."""
    rows, members_all = [], []
    ring_wallets = rng.choice(n_wallets, n_rings * 8, replace=False)
    for r in range(n_rings):
        size = int(rng.integers(2, 9))
        members = ring_wallets[r * 8 : r * 8 + size]
        members_all.append(members)
        n_rounds = int(rng.integers(5, 30))
        start = int(rng.integers(T0, T0 + WEEK_US // 2))
        lot = int(rng.integers(1, 100)) * 10_000_000
        pair = int(rng.integers(0, len(PAIRS)))
        for k in range(n_rounds):
            for i in range(size):
                rows.append((members[i], members[(i + 1) % size], start + (k * size + i) * 60_000_000, pair, lot))
    return np.array(rows, dtype=np.int64), members_all


def _funding(rng, n_wallets: int, ring_members: list) -> pl.DataFrame:
    """Exchanges fund 70% of wallets, 2k small funders the rest, controllers fund ring members, plus payments."""
    wallets = np.arange(n_wallets + 50)
    src = np.where(rng.random(wallets.size) < 0.7, rng.integers(0, 5, wallets.size) + 10**7,
                   rng.integers(0, 2000, wallets.size) + 2 * 10**7)
    for r, members in enumerate(ring_members):
        src[members] = 3 * 10**7 + r
    pay_from, pay_to = rng.integers(0, n_wallets, n_wallets * 3), rng.integers(0, n_wallets, n_wallets * 3)
    frm = np.concatenate([src, pay_from])
    to = np.concatenate([wallets, pay_to])
    n = frm.size
    return pl.DataFrame({
        "id": np.arange(n, dtype=np.int64), "ledger": np.arange(n, dtype=np.int64),
        "closed_at": pl.Series(np.sort(rng.integers(T0 - WEEK_US, T0 + WEEK_US, n))).cast(pl.Datetime("us", "UTC")),
        "type": np.where(np.arange(n) < src.size, "create_account", "payment"),
        "from_account": pl.Series(frm).cast(pl.String).str.pad_start(9, "G"),
        "to_account": pl.Series(to).cast(pl.String).str.pad_start(9, "G"),
        "asset": "XLM:native", "amount": rng.integers(10**7, 10**10, n),
    }).filter(pl.col("from_account") != pl.col("to_account"))


def _trades_frame(seller, buyer, ts, pair, amount) -> pl.DataFrame:
    n = seller.size
    pair_ids = pl.Series(PAIRS).gather(pl.Series(pair))
    base = pair_ids.str.split("/").list.first()
    return pl.DataFrame({
        "id": [f"{i}-0" for i in range(n)], "op_id": np.arange(n, dtype=np.int64), "ledger": np.arange(n, dtype=np.int64),
        "closed_at": pl.Series(ts).cast(pl.Datetime("us", "UTC")), "trade_type": "orderbook", "pair_id": pair_ids,
        "seller_account": pl.Series(seller).cast(pl.String).str.pad_start(9, "G"), "seller_offer_id": None,
        "seller_pool_id": None, "buyer_account": pl.Series(buyer).cast(pl.String).str.pad_start(9, "G"),
        "buyer_offer_id": None, "buyer_pool_id": None, "sold_asset": base, "sold_amount": amount,
        "bought_asset": "XLM:native", "bought_amount": amount // 2 + 1, "price_n": 1, "price_d": 2, "source": "bench",
    }).cast(TRADES_SCHEMA)


def prepare_simulated(n_trades: int, cache: Path) -> Path:
    """Simulate and ingest a market into `cache`/sim-N (once; reused by later runs). Returns the folder."""
    from engine.ingest.files import ingest_files
    from engine.synthetic import generate_market
    from storage.store import Store

    folder = cache / f"sim-{n_trades}"
    if (folder / "ready").exists():
        return folder
    summary = generate_market(folder / "market", seed=42, scale=n_trades / 100_000, days=7)
    with Store(folder / "store.duckdb") as store:
        ingest_files(store, [summary.trades_path, summary.operations_path])
    (folder / "ready").write_text("ok\n")
    return folder


def simulated_market(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Trades, funding edges and ring labels of a prepared simulated market."""
    from storage.store import Store

    with Store(folder / "store.duckdb", read_only=True) as store:
        trades, funding = store.trades(), store.funding_edges()
    labels = pl.read_csv(folder / "market" / "labels.csv").select(
        pl.col("account").alias("account_id"),
        pl.when(pl.col("is_wash") == 1).then(pl.col("ring_id").cast(pl.String)).alias("ring_id"),
    )
    return trades, funding, labels


def run_one(n_trades: int, cache: Path | None) -> None:
    t = time.perf_counter()
    trades, funding, labels = simulated_market(cache / f"sim-{n_trades}") if cache else random_market(n_trades)
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    anc = ancestors(funding, depth=4)
    sib = funding_siblings(funding, depth=4)
    t_fund = time.perf_counter() - t
    t = time.perf_counter()
    result = detect_rings(trades, funding, options=RingOptions(seed=42))
    t_rings = time.perf_counter() - t
    wallets = pl.concat([trades.get_column("seller_account"), trades.get_column("buyer_account")]).n_unique()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{trades.height:>9,} trades {wallets:>7,} wallets {funding.height:>8,} funding edges | "
        f"gen {t_gen:5.1f}s | ancestors+siblings {t_fund:5.2f}s ({anc.height:,} / {sib.height:,} rows) | "
        f"detect_rings {t_rings:5.2f}s: {result.closed_loops.height:,} loops, "
        f"{result.communities.height:,} communities, {result.rings.height:,} rings | peak RSS {rss_mb:,.0f} MB",
        flush=True,
    )
    traders = pl.concat([trades.get_column("seller_account"), trades.get_column("buyer_account")]).unique()
    for name, truth in (("all labelled", labels), ("trading labelled", labels.filter(pl.col("account_id").is_in(traders.implode())))):
        rec = ring_recovery(result.ring_members, truth)
        print(f"    vs {name}: " + ", ".join(f"{k} {v:.3f}" if k.startswith(("wallet", "ring_")) else f"{k} {v:.0f}" for k, v in rec.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--simulated", action="store_true", help="use engine.synthetic.generate_market")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ledgerlens-bench-rings",
                    help="where simulated markets are kept between runs")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare:
        prepare_simulated(args.trades[0], args.cache)
        return
    if args.one:
        run_one(args.trades[0], args.cache if args.simulated else None)
        return
    for n in args.trades:  # one process per step and size: peak RSS is that of the rings step alone
        common = ["--trades", str(n), "--cache", str(args.cache)] + (["--simulated"] if args.simulated else [])
        if args.simulated:
            subprocess.run([sys.executable, __file__, "--prepare", *common], check=True)
        subprocess.run([sys.executable, __file__, "--one", *common], check=True)


if __name__ == "__main__":
    main()

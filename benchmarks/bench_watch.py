"""Live watch: alert latency and per-ledger cost against the size of the store.

The demo market (engine.services.demo: simulated, with planted rings and traps, model
trained on it) is played as if live by the loopback replay server at `--rates` trades
per second (the replay server paces trades and operations together: the market's
records/s = trades/s x records / trades) and followed by `watch` (engine.services.watch) over the real stellar-sdk
`.stream()` client, on stores that already hold `--sizes` trades of history: other
pairs over the 60 days before the market, and the market's own pairs older than the
30-day window (what a store accumulates; a tick reads neither), and as many funding
operations (`--operations-per-trade`): an exchange-like hub creating and paying the
history's accounts, payments among them, and the hub paying each market account once, so
the market's funding lineage reaches a funder whose fan-out grows with the store.

Reports per (store size, rate): alert latency = the alert's ledger's last trade served
by the replay server -> the alert handed to the channel, p50 / p99 / max; per-ledger
cost = a tick's evidence update (rings, features, scores, reasons) / the ledgers it
covered, median and p90; alerts and the roles alerted.

    .venv/bin/python benchmarks/bench_watch.py --sizes 100000 --rates 100 1000   # trades/s
    flock /tmp/ledgerlens-heavy.lock .venv/bin/python benchmarks/bench_watch.py --sizes 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stellar_sdk import StrKey  # noqa: E402

from engine.ingest.replay import ReplayServer  # noqa: E402
from engine.schemas import OPERATIONS_SCHEMA  # noqa: E402
from engine.services.demo import build_demo_store  # noqa: E402
from engine.services.watch import WatchOptions, watch  # noqa: E402
from engine.services.watch_evidence import LINEAGE_CHILDREN  # noqa: E402
from engine.settings import Settings  # noqa: E402
from storage.store import Store  # noqa: E402

SEED, SCALE, DAYS = 42, 0.05, 7
HISTORY_DAYS, WINDOW_DAYS = 60, 30
N_PAIRS, N_ACCOUNTS = 400, 20_000


def _keys(n: int, tag: str) -> list[str]:
    return [StrKey.encode_ed25519_public_key(hashlib.sha256(f"{tag}{i}".encode()).digest()) for i in range(n)]


def history(n: int, *, offset: int, first_live_ledger: int, live_start, live_pairs: list[str], seed: int) -> pl.DataFrame:
    """n canonical trades before the live market: 80% over N_PAIRS other pairs in the last 60 days,
    20% in the market's own pairs, older than the 30-day window. Shapes: engine.schemas.TRADES_SCHEMA."""
    rng = np.random.default_rng(seed)
    accounts, issuer = np.array(_keys(N_ACCOUNTS, "hist")), _keys(1, "issuer")[0]
    other = np.array([f"H{i:03d}:{issuer}/XLM:native" for i in range(N_PAIRS)])
    own = rng.random(n) < 0.2
    pair = np.where(own, np.array(live_pairs)[rng.integers(0, len(live_pairs), n)], other[rng.integers(0, N_PAIRS, n)])
    span = HISTORY_DAYS * 17_280
    back = np.where(own, rng.integers((WINDOW_DAYS + 1) * 17_280, span, n), rng.integers(1, span, n))
    ledger = first_live_ledger - back
    seller, buyer = rng.integers(0, N_ACCOUNTS, n), rng.integers(0, N_ACCOUNTS, n)
    base, counter = pl.Series(pair).str.split("/").list.get(0), pl.Series(pair).str.split("/").list.get(1)
    op_id = (ledger << 32) + offset + np.arange(n) + 1
    return pl.DataFrame({
        "id": [f"{o}-0" for o in op_id], "op_id": op_id, "ledger": ledger,
        "closed_at": pl.Series(np.datetime64(live_start.replace(tzinfo=None), "us") - (back * 5).astype("timedelta64[s]"))
        .dt.replace_time_zone("UTC"),
        "trade_type": "orderbook", "pair_id": pair, "seller_account": accounts[seller],
        "seller_offer_id": rng.integers(1, 10**9, n), "seller_pool_id": None, "buyer_account": accounts[buyer],
        "buyer_offer_id": rng.integers(1, 10**9, n), "buyer_pool_id": None, "sold_asset": base, "sold_amount":
        rng.integers(10**6, 10**10, n), "bought_asset": counter, "bought_amount": rng.integers(10**6, 10**10, n),
        "price_n": 1, "price_d": 1, "source": "synthetic",
    })  # fmt: skip


def history_operations(n: int, *, offset: int, first_live_ledger: int, live_start, market_accounts: list[str],
                       seed: int) -> pl.DataFrame:  # fmt: skip
    """n funding operations over the 60 days before the live market: (first chunk) the hub creating
    the N_ACCOUNTS history accounts and paying each market account once, then payments, half from
    the hub, half among history accounts. Shapes: engine.schemas.OPERATIONS_SCHEMA."""
    rng = np.random.default_rng(seed)
    accounts, hub = np.array(_keys(N_ACCOUNTS, "hist")), _keys(1, "hub")[0]
    created = N_ACCOUNTS + len(market_accounts) if offset == 0 else 0
    n_pay = max(n - created, 0)
    from_hub = rng.random(n_pay) < 0.5
    to = np.concatenate([accounts[:N_ACCOUNTS] if created else [], market_accounts if created else [],
                         accounts[rng.integers(0, N_ACCOUNTS, n_pay)]])  # fmt: skip
    frm = np.concatenate([np.full(created, hub, dtype=object), np.where(from_hub, hub, accounts[rng.integers(0, N_ACCOUNTS, n_pay)])])
    kind = ["create_account"] * min(created, N_ACCOUNTS) + ["payment"] * (len(to) - min(created, N_ACCOUNTS))
    back = np.sort(rng.integers(1, HISTORY_DAYS * 17_280, len(to)))[::-1]  # oldest first: creations come first
    ledger = first_live_ledger - back
    return pl.DataFrame({
        "id": (ledger << 32) + (1 << 31) + offset + np.arange(len(to)), "ledger": ledger,
        "closed_at": pl.Series(np.datetime64(live_start.replace(tzinfo=None), "us") - (back * 5).astype("timedelta64[s]"))
        .dt.replace_time_zone("UTC"),
        "type": kind, "tx_hash": None, "successful": True, "source_account": frm, "from_account": frm,
        "to_account": to, "asset": "XLM:native", "amount": rng.integers(10**7, 10**10, len(to)), "source": "synthetic",
    }, schema_overrides={"tx_hash": pl.String}).with_columns(
        [pl.lit(None, dtype).alias(c) for c, dtype in OPERATIONS_SCHEMA.items() if c not in (
            "id", "ledger", "closed_at", "type", "tx_hash", "successful", "source_account", "from_account", "to_account",
            "asset", "amount", "source")]).select(list(OPERATIONS_SCHEMA)).cast(OPERATIONS_SCHEMA)  # fmt: skip


def build_store(db: Path, n: int, market: pl.DataFrame, *, operations_per_trade: float) -> None:
    """A store holding `n` trades and `n x operations_per_trade` funding operations of history before
    `market` (the demo market's trades), none of the market."""
    first = market.sort("ledger").row(0, named=True)
    pairs = market["pair_id"].unique().sort().to_list()
    market_accounts = pl.concat([market["seller_account"], market["buyer_account"]]).drop_nulls().unique().sort()
    n_ops = int(n * operations_per_trade)
    with Store(db) as store:
        for lo in range(0, max(n, n_ops), 250_000):
            part = history(min(250_000, n - lo), first_live_ledger=first["ledger"], live_start=first["closed_at"],
                           live_pairs=pairs, seed=SEED + lo, offset=lo) if lo < n else None  # fmt: skip
            ops = history_operations(min(250_000, n_ops - lo), offset=lo, first_live_ledger=first["ledger"],
                                     live_start=first["closed_at"], market_accounts=market_accounts.to_list(),
                                     seed=SEED + 1 + lo) if lo < n_ops else None  # fmt: skip
            store.write_batch(run_id=None, trades=part, operations=ops)


def run(settings: Settings, market_dir: Path, rate: float) -> dict:
    """One watch over the market played at `rate` records/s; latency and cost figures."""
    got: list[tuple[float, dict]] = []

    class Collect:
        def send(self, alert: dict) -> bool:
            got.append((time.time(), alert))
            return True

    with Store(settings.db_path) as store:  # the watch's copy of the funding edges, made once at its start
        t = time.perf_counter()
        n_links = store.sync_funding_links(max_children=LINEAGE_CHILDREN)
        print(f"  watch start: {n_links:,} funding edges copied for keyed lineage in {time.perf_counter() - t:.1f}s")
    with ReplayServer(market_dir, live_rate=rate) as server, Store(settings.db_path) as store:
        wall0, mono0 = time.time(), server._started_at
        options = WatchOptions(horizon_url=server.url, from_ledger=1, idle_exit_s=5.0, cooldown_s=10**9)
        stats = watch(store, settings, options, [Collect()])
        served = {int(r["paging_token"].split("-")[0]) >> 32: wall0 + server.released_at(r["paging_token"], trade=True) - mono0
                  for r in server.trades.records}  # fmt: skip
    latency = np.array([at - served[a["ledger"]] for at, a in got])
    per_ledger = np.array([s / max(n, 1) for s, n in stats.tick_costs])
    return {"alerts": len(got), "latency": latency, "per_ledger": per_ledger, "ticks": stats.n_ticks,
            "per_tick": np.array([s for s, _ in stats.tick_costs]),
            "wallets": [a["wallet"] for _, a in got]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--rates", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--scale", type=float, default=SCALE, help="demo market scale (0.05: ~5k trades a week)")
    ap.add_argument("--operations-per-trade", type=float, default=1.0,
                    help="funding operations of history stored per trade of history")  # fmt: skip
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    demo = work / "demo.duckdb"
    t = time.perf_counter()
    build_demo_store(demo, seed=SEED, scale=args.scale, days=DAYS, market_dir=work / "home" / "demo_market",
                     settings=Settings(home=work / "home", db=demo))  # fmt: skip
    market_dir = work / "home" / "demo_market"
    labels = pl.read_csv(market_dir / "labels.csv")
    with Store(demo, read_only=True) as store:
        market = store.trades().filter(pl.col("source") != "files")
    n_records = sum(1 for name in ("trades", "operations") for _ in (market_dir / f"{name}.jsonl").open())
    records_per_trade = n_records / market.height
    print(f"market: {market.height:,} trades, {n_records - market.height:,} operations")
    print(f"demo market and model built in {time.perf_counter() - t:.0f}s (seed {SEED}, scale {args.scale}, {DAYS} days)")
    for size in args.sizes:
        for rate in args.rates:
            db = work / f"store_{size}_{rate}.duckdb"
            t = time.perf_counter()
            build_store(db, size, market, operations_per_trade=args.operations_per_trade)
            built = time.perf_counter() - t
            load = os.getloadavg()[0]
            r = run(Settings(home=work / "home", db=db), market_dir, rate * records_per_trade)
            load = f"load {load:.1f} -> {os.getloadavg()[0]:.1f}"
            alerted = pl.DataFrame({"account": r["wallets"]}, schema={"account": pl.String})
            roles = alerted.join(labels, on="account", how="left").group_by("role").len().sort("role")
            lat, cost = r["latency"], r["per_ledger"]
            print(f"store {size:>9,} trades + {int(size * args.operations_per_trade):,} operations (built {built:.0f}s, {load}), {rate:>5} trades/s ({rate * records_per_trade:,.0f} records/s): {r['alerts']} alerts "
                  f"{dict(roles.iter_rows())}; latency p50 {np.percentile(lat, 50):.2f}s p99 {np.percentile(lat, 99):.2f}s "
                  f"max {lat.max():.2f}s; per-ledger cost median {np.median(cost) * 1000:.0f} ms "
                  f"p90 {np.percentile(cost, 90) * 1000:.0f} ms; per tick median {np.median(r['per_tick']):.2f}s "
                  f"over {r['ticks']} ticks")  # fmt: skip
            db.unlink()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

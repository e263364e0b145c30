"""Forensic report speed: one PDF (target <= 3 s) and 100 PDFs in bulk (target <= 2 min).

    .venv/bin/python benchmarks/bench_reports.py [--trades 200000] [--wallets 2000] [--keep DIR]

Builds a seeded store (canonical trades among `wallets` accounts in 3 pairs, a
create_account + payment per wallet, scores for 100 wallets, a ring), then times
assemble + render + write exactly as `python -m engine report` does.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stellar_sdk import StrKey  # noqa: E402

from engine.assets import pair_id  # noqa: E402
from engine.schemas import OPERATIONS_SCHEMA, TRADES_SCHEMA, conform  # noqa: E402
from engine.services.report import assemble_report  # noqa: E402
from engine.settings import Settings  # noqa: E402
from reports.output import default_path, write_report  # noqa: E402
from storage.store import Store  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)


def _account(i: int) -> str:
    return StrKey.encode_ed25519_public_key(hashlib.sha256(f"bench{i}".encode()).digest())


def build(path: Path, *, n_trades: int, n_wallets: int, seed: int = 7) -> tuple[Store, list[tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    accounts = [_account(i) for i in range(n_wallets)]
    issuer = _account(10**6)
    assets = [f"{code}:{issuer}" for code in ("USD", "EUR", "BTC")]
    pairs = [pair_id(a, "XLM:native") for a in assets]
    k = rng.integers(0, 3, n_trades)
    seller, buyer = rng.integers(0, n_wallets, n_trades), rng.integers(0, n_wallets, n_trades)
    buyer = np.where(buyer == seller, (buyer + 1) % n_wallets, buyer)
    ledger = 1_000_000 + np.sort(rng.integers(0, 500_000, n_trades))
    op_id = (ledger << 32) | np.arange(n_trades) % 4096 + 1
    acct = np.array(accounts, dtype=object)
    trades = pl.DataFrame({
        "id": [f"{o}-0" for o in op_id], "op_id": op_id, "ledger": ledger,
        "closed_at": [START + timedelta(seconds=int(5 * (x - 1_000_000))) for x in ledger],
        "trade_type": "orderbook", "pair_id": np.array(pairs, dtype=object)[k], "seller_account": acct[seller],
        "buyer_account": acct[buyer], "sold_asset": np.array(assets, dtype=object)[k],
        "sold_amount": rng.lognormal(16, 2, n_trades).astype(np.int64) + 1, "bought_asset": "XLM:native",
        "bought_amount": rng.lognormal(17, 2, n_trades).astype(np.int64) + 1, "price_n": 1, "price_d": 1,
        "source": "synthetic",
    })  # fmt: skip
    store = Store(path / "bench.duckdb")
    store.write_batch(run_id=store.start_run("synthetic", {"seed": seed}), trades=conform(trades, TRADES_SCHEMA),
                      operations=conform(_funding(accounts, rng), OPERATIONS_SCHEMA))  # fmt: skip
    chosen = [(accounts[i], pairs[i % 3]) for i in range(100)]
    store.append_scores(pl.DataFrame({
        "wallet": [w for w, _ in chosen], "pair_id": [p for _, p in chosen], "score": rng.integers(0, 101, 100),
        "benford_flag": False, "ml_flag": True, "timestamp": 1_704_100_000, "confidence": 80, "ring_id": None,
        "model_version": "v20240101T000000Z-00000000", "bft_divergence": False,
    }, schema_overrides={"ring_id": pl.String, "score": pl.Int32}))  # fmt: skip
    store.save_derived("ring_members", pl.DataFrame({"ring_id": "ring_bench", "account_id": accounts[:12],
                                                     "n_trades": 10, "volume": 10**9, "loop_volume": 0}))
    return store, chosen


def _funding(accounts: list[str], rng) -> pl.DataFrame:
    n = len(accounts)
    funder = [accounts[(i * 7 + 3) % n] for i in range(n)]
    return pl.DataFrame({
        "id": np.arange(n) + 10**12, "ledger": 999_000, "closed_at": START - timedelta(days=1),
        "type": "create_account", "successful": True, "source_account": funder, "from_account": funder,
        "to_account": accounts, "asset": "XLM:native", "amount": rng.integers(10**7, 10**10, n), "source": "synthetic",
    })  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=200_000)
    ap.add_argument("--wallets", type=int, default=2_000)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_reports_"))
    t0 = time.perf_counter()
    store, chosen = build(work, n_trades=args.trades, n_wallets=args.wallets)
    print(f"store: {args.trades:,} trades, {args.wallets:,} wallets built in {time.perf_counter() - t0:.1f}s ({work})")
    settings, as_of = Settings(home=work / "home"), datetime(2099, 1, 1, tzinfo=UTC)

    def one(wallet: str, pair: str) -> float:
        started = time.perf_counter()
        report = assemble_report(store, wallet=wallet, pair_id=pair, as_of=as_of, settings=settings)
        path = default_path(settings, wallet=wallet, fingerprint=report.fingerprint, fmt="pdf")
        write_report(report.published(), fmt="pdf", path=path)
        store.record_report(fingerprint=report.fingerprint, wallet=wallet, pair_id=pair, fmt="pdf", path=str(path),
                            model_version=report.content["header"]["model"]["version"])  # fmt: skip
        return time.perf_counter() - started

    first = one(*chosen[0])
    warm = one(*chosen[1])
    print(f"one PDF report: first in process {first:.2f}s (imports included), warm {warm:.2f}s  [target <= 3 s]")
    t0 = time.perf_counter()
    times = [one(w, p) for w, p in chosen]
    total = time.perf_counter() - t0
    print(f"100 PDF reports in bulk: {total:.1f}s (median {np.median(times):.2f}s, max {max(times):.2f}s) "
          f"[target <= 120 s]")
    store.close()


if __name__ == "__main__":
    main()

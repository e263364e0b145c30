"""Horizon ingest through the loopback replay server: records/s, end to end.

stellar-sdk pages (limit 200) from `ReplayServer` -> decode -> DuckDB store, as
`ingest horizon` does against a real Horizon; also the bare paging rate (sdk only,
no decoding or writing) to show where the time goes.

    .venv/bin/python benchmarks/bench_replay_ingest.py [--n 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stellar_sdk import Server, StrKey  # noqa: E402
from stellar_sdk.client.requests_client import RequestsClient  # noqa: E402

from engine.ingest.horizon import plan  # noqa: E402
from engine.ingest.replay import ReplayServer  # noqa: E402
from engine.ingest.runner import run_ingest  # noqa: E402
from storage.store import Store  # noqa: E402

FIRST_LEDGER = 50_000_000


def _account(i: int) -> str:
    return StrKey.encode_ed25519_public_key(hashlib.sha256(f"bench{i}".encode()).digest())


def write_trades(path: Path, n: int) -> int:
    """n Horizon trade records, 4 per ledger, over 60 accounts; returns the last ledger."""
    accounts = [_account(i) for i in range(60)]
    issuer = _account(999)
    with path.open("w") as fh:
        for i in range(n):
            ledger = FIRST_LEDGER + i // 4
            op_id = (ledger << 32) | (1 << 12) | 1
            stroops = 10_000_000 + 7919 * i
            record = {
                "id": f"{op_id}-{i % 4}", "paging_token": f"{op_id}-{i % 4}",
                "ledger_close_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + 5 * (i // 4))),
                "trade_type": "orderbook", "base_offer_id": str(1000 + i), "base_account": accounts[i % 60],
                "base_amount": f"{stroops // 10**7}.{stroops % 10**7:07d}", "base_asset_type": "native",
                "counter_offer_id": str(2000 + i), "counter_account": accounts[(i * 7 + 1) % 60],
                "counter_amount": "2.5000000", "counter_asset_type": "credit_alphanum4",
                "counter_asset_code": "USDC", "counter_asset_issuer": issuer,
                "base_is_seller": i % 2 == 0, "price": {"n": "1", "d": "4"},
            }
            fh.write(json.dumps(record) + "\n")
    return FIRST_LEDGER + (n - 1) // 4


def bare_paging(url: str) -> int:
    """Pages through /trades with the sdk only; returns records seen."""
    builder = Server(url, client=RequestsClient(num_retries=0)).trades().limit(200).order(desc=False)
    page, n = builder.call(), 0
    while page["_embedded"]["records"]:
        n += len(page["_embedded"]["records"])
        page = builder.next()
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000, help="trade records to serve and ingest")
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "replay").mkdir()
        last = write_trades(tmp / "replay" / "trades.jsonl", n)
        started = time.perf_counter()
        with ReplayServer(tmp / "replay") as replay, Store(tmp / "bench.duckdb") as store:
            load_s = time.perf_counter() - started
            t0 = time.perf_counter()
            seen = bare_paging(replay.url)
            bare_s = time.perf_counter() - t0
            request, batches = plan(start_ledger=FIRST_LEDGER, end_ledger=last, horizon_url=replay.url)
            t0 = time.perf_counter()
            summary = run_ingest(store, request, batches)
            ingest_s = time.perf_counter() - t0
            stored = store.counts()["trades"]
    assert seen == n and stored == n, (seen, stored, n)
    print(f"replay server load: {n:,} records in {load_s:.2f}s")
    print(f"bare sdk paging (limit 200): {n / bare_s:,.0f} records/s ({bare_s:.2f}s)")
    print(f"horizon ingest via replay: {summary.n_trades:,} trades in {ingest_s:.2f}s = {n / ingest_s:,.0f} records/s")


if __name__ == "__main__":
    main()

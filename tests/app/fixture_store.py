"""The populated store the app tests and the browser test share (until engine.demo.build_demo_store lands).

Small and exact: 30 ordinary XLM/USD trades, 12 trades inside one ring of three wallets,
one trade of an asset whose code is markup (`<img src=x onerror=alert(1)>`), funding
operations (a funder creating the ring), latest scores, and the rings / ring_members tables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from stellar_sdk import StrKey

from engine.ingest.files import ingest_files
from engine.schemas import OPERATIONS_SCHEMA, conform
from storage.store import CursorPosition, Store
from tests.factories import ISSUER, account, horizon_trade, write_jsonl

EVIL_CODE = "<img src=x onerror=alert(1)>"
RING_ID = "ring_fixture00001"
RING = [account(100), account(101), account(102)]
EVIL_PAIR = f"{EVIL_CODE}:{ISSUER}/XLM:native"
FUNDER = StrKey.encode_ed25519_public_key(hashlib.sha256(b"funder").digest())
TOP_WALLET = RING[0]
TOP_SCORE = 91


@dataclass(frozen=True)
class FixtureSummary:
    n_trades: int
    n_wallets: int
    n_pairs: int
    n_flagged: int
    ring_id: str
    top_wallet: str
    top_score: int


def _ring_trade(i: int) -> dict:
    """Trade i among the ring: RING[k] sells XLM to RING[k+1] (a closed loop every three trades)."""
    rec = horizon_trade(1000 + i, ledger=2000 + i)
    rec["base_account"], rec["counter_account"] = RING[i % 3], RING[(i + 1) % 3]
    return rec


def _evil_trade() -> dict:
    rec = horizon_trade(5000, ledger=2100)  # RING[0] sells XLM for the markup-named asset to account(10)
    rec["counter_asset_code"], rec["base_account"] = EVIL_CODE, RING[0]
    return rec


def build_fixture_store(path: Path, work_dir: Path) -> FixtureSummary:
    """Create the fixture store at `path` (files written to `work_dir`) and describe it."""
    records = [horizon_trade(i) for i in range(30)] + [_ring_trade(i) for i in range(12)] + [_evil_trade()]
    trades_file = write_jsonl(Path(work_dir) / "trades.jsonl", records)
    with Store(path) as store:
        ingest_files(store, [trades_file])
        _funding(store)
        _derived(store)
        store.append_scores(_scores())
        n = store.counts()
    return FixtureSummary(n["trades"], 15, 2, 3, RING_ID, TOP_WALLET, TOP_SCORE)


def _funding(store: Store) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ops = pl.DataFrame({
        "id": [(1500 << 32) + k for k in range(3)], "ledger": [1500] * 3,
        "closed_at": [t0 + timedelta(seconds=k) for k in range(3)], "type": ["create_account"] * 3,
        "tx_hash": ["ab" * 32] * 3, "successful": [True] * 3, "source_account": [FUNDER] * 3,
        "from_account": [FUNDER] * 3, "to_account": RING, "asset": ["XLM:native"] * 3, "amount": [50_000_000] * 3,
        "source": ["files"] * 3,
    })  # fmt: skip
    store.write_batch(run_id=None, operations=conform(ops, OPERATIONS_SCHEMA),
                      cursor=CursorPosition("fixture", "operations", "funding", "3", True))


def _derived(store: Store) -> None:
    store.save_derived("rings", pl.DataFrame({
        "ring_id": [RING_ID], "size": [3], "n_trades": [12], "volume": [120_000_000], "internal_density": [1.0],
        "reciprocity": [0.0], "closed_loop_volume": [120_000_000], "closed_loop_share": [1.0],
        "funding_share": [1.0], "funding_depth": [1], "internal_share": [1.0], "n_pairs": [1],
    }))  # fmt: skip
    store.save_derived("ring_members", pl.DataFrame({
        "ring_id": [RING_ID] * 3, "account_id": RING, "n_trades": [8, 8, 8], "volume": [80_000_000] * 3,
        "loop_volume": [80_000_000] * 3,
    }))  # fmt: skip


def _scores() -> pl.DataFrame:
    pair = f"USD:{ISSUER}/XLM:native"
    wallets = RING + [account(i) for i in range(4)]
    return pl.DataFrame({
        "wallet": wallets, "pair_id": [pair] * len(wallets), "score": [TOP_SCORE, 85, 72, 55, 40, 20, 5],
        "benford_flag": [True, False, False, False, False, False, False],
        "ml_flag": [True, True, True, False, False, False, False], "timestamp": [1_704_100_000] * len(wallets),
        "confidence": [80, 70, 60, 50, 40, 90, 95], "ring_id": [RING_ID] * 3 + [None] * 4,
        "model_version": ["fixture-v1"] * len(wallets), "bft_divergence": [False] * len(wallets),
    })  # fmt: skip

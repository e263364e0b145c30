"""Small, deterministic Horizon-shaped records for tests that must not depend on fixtures."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stellar_sdk import StrKey

START = datetime(2024, 1, 1, tzinfo=UTC)
ISSUER = StrKey.encode_ed25519_public_key(hashlib.sha256(b"issuer").digest())


def account(i: int) -> str:
    """A valid G... account id, the same for the same i."""
    return StrKey.encode_ed25519_public_key(hashlib.sha256(f"acct{i}".encode()).digest())


def horizon_trade(i: int, *, ledger: int | None = None, base_is_seller: bool = True) -> dict:
    """Horizon trade record number i: XLM base vs USD counter between two accounts."""
    ledger = ledger if ledger is not None else 1000 + i // 3
    op_id = (ledger << 32) | (1 << 12) | 1
    token = f"{op_id}-{i % 3}"
    base_amount = 10_000_000 + 37 * i
    return {
        "id": token,
        "paging_token": token,
        "ledger_close_time": (START + timedelta(seconds=5 * ledger)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "trade_type": "orderbook",
        "base_offer_id": str(100 + i),
        "base_account": account(i % 7),
        "base_amount": f"{base_amount // 10**7}.{base_amount % 10**7:07d}",
        "base_asset_type": "native",
        "counter_offer_id": str(4611686018427387904 + op_id),
        "counter_account": account(i % 5 + 10),
        "counter_amount": "2.5000000",
        "counter_asset_type": "credit_alphanum4",
        "counter_asset_code": "USD",
        "counter_asset_issuer": ISSUER,
        "base_is_seller": base_is_seller,
        "price": {"n": "1", "d": "4"},
    }


def write_jsonl(path: Path, records: list) -> Path:
    """Write records (dicts, or raw strings kept verbatim) one per line."""
    with path.open("w") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def kill_after_batches(cmd: list[str], *, env: dict, cwd: Path, batches: int = 2) -> None:
    """Run an `ingest` command and kill -9 it once `batches` progress lines (committed
    batches) are out; asserts it died of the kill, so the test really resumes mid-file."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)
    seen = 0
    for line in proc.stderr:
        seen += "ingest files:" in line
        if seen >= batches:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the ingest ended before it could be killed mid-file"

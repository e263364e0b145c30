"""Shared by the report tests: a store with real figures and hostile strings, a report of it, a signing key."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.assets import pair_id as make_pair_id
from engine.graph.rings import ring_id_of
from engine.ingest.files import ingest_files
from engine.schemas import OPERATIONS_SCHEMA, TRADES_SCHEMA, conform
from engine.services.report import assemble_report
from engine.settings import Settings
from models.signing import fingerprint, public_bytes
from reports.attest import sign_published
from storage.store import Store
from tests.factories import ISSUER, START, account, horizon_trade, write_jsonl

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # the tests' issuer key
KEY_FP = fingerprint(public_bytes(KEY))
TRUSTED = frozenset({KEY_FP})


def signed(report, *, anchor: dict | None = None, key: Ed25519PrivateKey = KEY):
    """The report published (optionally anchored) and signed by `key`."""
    return sign_published(report.published(anchor=anchor), key)


AS_OF = datetime(2099, 1, 1, tzinfo=UTC)  # after the wall-clock scored_at of the fixture's score
WALLET = account(0)
EVIL_CODE = "<img src=x onerror=alert(1)>"
EVIL_MEMO = "<b>bold</b> & co"
MEMBERS = sorted([account(0), account(10), account(11)])
RING = ring_id_of(MEMBERS)


def build_store(path) -> tuple[Store, str]:
    """630 factory trades in USD/XLM (the last 30 with the accounts' roles swapped, so those wallets sell USD
    back), a score, an annotation, a ring, funding ops, and a trade in a pair whose asset code is markup.
    Returns (store, pair_id)."""
    store = Store(path / "reports.duckdb")
    swapped = [{**horizon_trade(i), "base_account": account(i % 5 + 10), "counter_account": account(i % 7)}
               for i in range(600, 630)]
    records = [horizon_trade(i) for i in range(600)] + swapped
    ingest_files(store, [write_jsonl(path / "trades.jsonl", records)])
    pair = store.trades().get_column("pair_id")[0]
    store.append_scores(pl.DataFrame([{
        "wallet": WALLET, "pair_id": pair, "score": 87, "benford_flag": True, "ml_flag": True,
        "timestamp": 1_704_070_000, "confidence": 74, "ring_id": RING, "model_version": "v20240101T000000Z-0123abcd",
        "bft_divergence": False}]))  # fmt: skip
    store.append_annotations(pl.DataFrame([{  # pair_id null: about the wallet in every pair
        "wallet": WALLET, "pair_id": None, "label": "wash", "note": "fixed lots <script>x</script>",
        "annotator_id": "analyst-7", "annotated_at": datetime(2024, 2, 1, 9, 30, tzinfo=UTC),
        "label_source": "analyst", "hmac": "dummy-hmac"}], schema_overrides={"pair_id": pl.String}))  # fmt: skip
    store.save_derived("ring_members", pl.DataFrame(
        {"ring_id": [RING] * 3, "account_id": MEMBERS, "n_trades": [40, 25, 15], "volume": [10**9, 6 * 10**8, 4 * 10**8],
         "loop_volume": [0, 0, 0]}))  # fmt: skip
    _funding(store)
    _evil_trade(store)
    return store, pair


def _funding(store: Store) -> None:
    """account(99) creates the three ring members; account(98) pays the wallet with a markup memo."""
    rows = [{"id": 4_000_000_000 + k, "ledger": 900, "closed_at": START, "type": "create_account",
             "successful": True, "source_account": account(99), "from_account": account(99), "to_account": m,
             "asset": "XLM:native", "amount": 50_000_000, "source": "files"} for k, m in enumerate(MEMBERS)]
    rows.append({"id": 4_000_000_100, "ledger": 901, "closed_at": START, "type": "payment", "successful": True,
                 "source_account": account(98), "from_account": account(98), "to_account": WALLET,
                 "asset": "XLM:native", "amount": 12_345_678, "memo": EVIL_MEMO, "source": "files"})
    store.write_batch(run_id=None, operations=conform(pl.DataFrame(rows), OPERATIONS_SCHEMA))


def _evil_trade(store: Store) -> str:
    evil = f"{EVIL_CODE}:{ISSUER}"
    pair = make_pair_id(evil, "XLM:native")
    op_id = (1500 << 32) | 1
    trade = {"id": f"{op_id}-0", "op_id": op_id, "ledger": 1500, "closed_at": START, "trade_type": "orderbook",
             "pair_id": pair, "seller_account": WALLET, "buyer_account": account(10), "sold_asset": evil,
             "sold_amount": 30_000_000, "bought_asset": "XLM:native", "bought_amount": 10_000_000, "price_n": 1,
             "price_d": 3, "source": "files"}  # fmt: skip
    store.write_batch(run_id=None, trades=conform(pl.DataFrame([trade]), TRADES_SCHEMA))
    return pair


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("reports")
    store, pair = build_store(path)
    settings = Settings(home=path / "home")
    report = assemble_report(store, wallet=WALLET, pair_id=pair, as_of=AS_OF, settings=settings)
    yield store, pair, settings, report, path
    store.close()



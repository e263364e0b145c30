"""Data-lake (Galexie) ingestion: names, conformance on recorded ledgers, faults, HTTP."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from math import gcd
from pathlib import Path

import polars as pl
import pytest
import zstandard
from stellar_sdk import Network, StrKey, xdr
from stellar_sdk.helpers import parse_transaction_envelope_from_xdr

from engine.assets import pair_id
from engine.ingest import datalake as dl
from engine.ingest import xdr_decode as xd
from engine.ingest.runner import run_ingest
from storage.errors import BadInput, SourceUnavailable
from storage.store import Store
from tests.conftest import fixture_path

FIRST = 53_312_000
OBJECT_NAME = "FCD285FF--53312000.xdr.zstd"


def _object() -> Path:
    return fixture_path("stellar-go-lcm", OBJECT_NAME)


def _renumbered(seq: int) -> xdr.LedgerCloseMeta:
    """The recorded ledger 53312000 with another sequence number (same transactions)."""
    lcm = dl.read_object(_object())[0]
    lcm.v1.ledger_header.header.ledger_seq = xdr.Uint32(seq)
    return lcm


def _lake(root: Path, *, partitioned: bool, good: int = 2, truncated: bool = False) -> Path:
    """A lake of `good` objects from FIRST on (the first one the recorded file itself),
    then optionally a truncated object for the next ledger."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / dl.partition_name(FIRST) if partitioned else root
    folder.mkdir(exist_ok=True)
    shutil.copy(_object(), folder / OBJECT_NAME)
    for seq in range(FIRST + 1, FIRST + good):
        (folder / dl.object_name(seq)).write_bytes(dl.encode_object([_renumbered(seq)]))
    if truncated:
        data = dl.encode_object([_renumbered(FIRST + good)])
        (folder / dl.object_name(FIRST + good)).write_bytes(data[: len(data) // 2])
    return root


def _collect(batches):
    out = list(batches)
    return out, sum(b.trades.height for b in out if b.trades is not None)


# -- names -----------------------------------------------------------------------------


def test_object_and_partition_names_follow_the_exporter():
    assert dl.object_name(FIRST) == "FCD285FF--53312000.xdr.zst"
    assert dl.object_name(64, 127) == "FFFFFFBF--64-127.xdr.zst"
    assert dl.partition_name(5) == "FFFFFFFF--0-63999"
    assert dl.partition_name(FIRST) == "FCD285FF--53312000-53375999"
    assert dl.parse_object_name(OBJECT_NAME) == (FIRST, FIRST)
    assert dl.parse_object_name("FFFFFFBF--64-127.xdr.zst") == (64, 127)
    assert dl.parse_object_name("FCD285FE--53312000.xdr.zst") is None  # hex does not match
    assert dl.parse_object_name("FCD285FF--53312000.json") is None
    assert xd.toid(FIRST, 1, 1) == (FIRST << 32) | (1 << 12) | 1


# -- conformance on recorded ledgers ---------------------------------------------------


def test_fixture_object_yields_29_fills_18_against_pools():
    lcms = dl.read_object(_object())
    assert [xd.ledger_seq(lcm) for lcm in lcms] == [FIRST]
    trades, ops = xd.decode_ledger(lcms[0])
    assert trades.height == 29
    assert trades.filter(trades["trade_type"] == "liquidity_pool").height == 18
    pools = trades.filter(trades["trade_type"] == "liquidity_pool")
    assert pools["seller_account"].null_count() == 18 and pools["seller_offer_id"].null_count() == 18
    assert all(len(p) == 64 for p in pools["seller_pool_id"])
    assert set(trades["closed_at"]) == {datetime(2024, 9, 2, 10, 50, 19, tzinfo=UTC)}
    first = trades.row(0, named=True)
    assert first["id"] == "228973296484397057-0" and first["op_id"] >> 32 == FIRST
    assert first["seller_account"] == "GBD5U2WBPQIC6BVLLSXR5Q4MTOSYNPKCTVJBP4CXW2JR3DU4CH6Q2REX"
    assert first["seller_offer_id"] == 1614872181
    assert first["buyer_account"] == "GBDG5RV7F6GVAIDBHSK7VMKYQ7SCOVYY2OG25D2TPHMDF5CNJY6HFUCK"
    assert first["buyer_offer_id"] == first["op_id"] | (1 << 62)  # the taker kept no offer
    assert (first["sold_amount"], first["bought_amount"]) == (3941098, 42884589)
    assert first["pair_id"] == pair_id(first["sold_asset"], first["bought_asset"])
    for row in trades.iter_rows(named=True):
        n, d = row["price_n"], row["price_d"]
        assert gcd(n, d) == 1 and n * row["sold_amount"] == d * row["bought_amount"]
    counts = dict(ops["type"].value_counts().rows())
    assert counts == {
        "create_claimable_balance": 54, "claim_claimable_balance": 3, "manage_sell_offer": 47,
        "manage_buy_offer": 53, "path_payment_strict_receive": 39, "path_payment_strict_send": 24, "payment": 9,
    }  # fmt: skip
    claim = ops.filter(ops["type"] == "claim_claimable_balance").row(0, named=True)
    assert (claim["asset"], claim["amount"]) == ("OVRL:GAHRTV3TGK3TKUCVZTBCUL5Q2B6AB62F5T4ZY22T55PV5SARNDLGC4OI", 10000)


def test_base64_ledgers_yield_336_fills():
    lcms = dl.read_base64_lines(fixture_path("stellar-go-lcm", "ledgers-base64.txt"))
    per_ledger = {xd.ledger_seq(lcm): xd.decode_ledger(lcm)[0].height for lcm in lcms}
    assert per_ledger == {6154623: 0, 16154623: 0, 26154623: 2, 36154623: 1, 46154623: 333}
    trades, ops = dl.decode_ledgers(lcms)
    assert trades.height == 336 and trades["ledger"].is_sorted()
    assert trades["id"].n_unique() == 336
    assert ops.height > 0 and set(ops["source"]) == {"datalake"}


def test_transaction_hashes_match_stellar_sdk():
    lcms = [dl.read_object(_object())[0], dl.read_base64_lines(fixture_path("stellar-go-lcm", "ledgers-base64.txt"))[2]]
    network_id = hashlib.sha256(Network.PUBLIC_NETWORK_PASSPHRASE.encode()).digest()
    kinds = set()
    for lcm in lcms:
        for env in xd.envelopes(lcm)[:8] + [e for e in xd.envelopes(lcm) if e.type.value == 5]:
            sdk = parse_transaction_envelope_from_xdr(env.to_xdr(), Network.PUBLIC_NETWORK_PASSPHRASE)
            assert xd.tx_hash(env, network_id) == sdk.hash()
            kinds.add(env.type.name)
    assert kinds == {"ENVELOPE_TYPE_TX", "ENVELOPE_TYPE_TX_FEE_BUMP", "ENVELOPE_TYPE_TX_V0"}


def _vector_ledger(vector: dict) -> xdr.LedgerCloseMeta:
    """A one-transaction V0 LedgerCloseMeta around a stellar-expert envelope/result/meta."""
    template = dl.read_base64_lines(fixture_path("stellar-go-lcm", "ledgers-base64.txt"))[1]
    env = xdr.TransactionEnvelope.from_xdr(vector["tx"])
    network_id = hashlib.sha256(Network.PUBLIC_NETWORK_PASSPHRASE.encode()).digest()
    result = xdr.TransactionResultPair(
        xdr.Hash(xd.tx_hash(env, network_id)), xdr.TransactionResult.from_xdr(vector["result"])
    )
    template.v0.tx_set.txs = [env]
    template.v0.tx_processing = [
        xdr.TransactionResultMeta(result, xdr.LedgerEntryChanges([]), xdr.TransactionMeta.from_xdr(vector["meta"]))
    ]
    return xdr.LedgerCloseMeta.from_xdr_bytes(template.to_xdr_bytes())


def _expert_asset(a: str) -> str:
    return "XLM:native" if a == "XLM" else ":".join(a.split("-")[:2])


@pytest.mark.parametrize(
    "name",
    [
        "create-and-cross-offers-lp-deposit-path-payments-through-offers-and-offer+pool.json",
        "circular-arbitrage-path-payment.json",
        "trade-against-offers-not-backed-by-liabilities.json",
    ],
)
def test_fills_agree_with_stellar_expert_trade_effects(name):
    vector = json.loads(fixture_path("stellar-expert-tx-meta", name).read_text())
    trades, _ = xd.decode_ledger(_vector_ledger(vector))
    expected = [(i, e) for i, effects in enumerate(vector["expected"]) for e in effects if e["type"] == "trade"]
    assert trades.height == len(expected)
    for (op_index, e), row in zip(expected, trades.iter_rows(named=True), strict=True):
        assert row["op_id"] & 0xFFF == op_index + 1
        assert [row["sold_amount"], row["bought_amount"]] == [int(a) for a in e["amount"]]
        assert [row["sold_asset"], row["bought_asset"]] == [_expert_asset(a) for a in e["asset"]]
        assert row["buyer_account"] == e["source"]
        if "pool" in e:
            assert row["seller_pool_id"] == StrKey.decode_liquidity_pool(e["pool"]).hex()
        else:
            assert (row["seller_account"], row["seller_offer_id"]) == (e["seller"], int(e["offer"]))


# -- local lakes, faults and the store --------------------------------------------------


def test_partitioned_lake_in_parallel_quarantines_a_truncated_object(tmp_path):
    root = _lake(tmp_path / "lake", partitioned=True, good=2, truncated=True)
    lake = dl.LocalLake(root)
    tasks = lake.tasks(FIRST, FIRST + 2)
    assert [t.obj.name.split("/")[0] for t in tasks] == [dl.partition_name(FIRST)] * 3
    parallel = list(dl.decoded_in_order(lake, tasks, workers=2, min_parallel=1))  # two spawned processes
    assert [d.trades.height for d in parallel] == [29, 29, 0] and parallel[2].quarantine.height == 1
    _, batches = dl.plan(start_ledger=FIRST, end_ledger=FIRST + 2, source=str(root), workers=2)
    out, n_fills = _collect(batches(None))
    assert n_fills == 58
    assert out[-1].trades.equals(pl.concat([d.trades for d in parallel]))
    assert [b.position for b in out] == [str(FIRST + 2)] and out[-1].done and out[-1].n_units == 3
    assert out[-1].n_records == 58 + 2 * 229 + 1
    trades = out[-1].trades
    assert sorted(set(trades["ledger"])) == [FIRST, FIRST + 1]
    # same transactions, another ledger: the TOID keeps its tx/op part, the ledger part moves
    assert (
        trades.filter(trades["ledger"] == FIRST + 1)["id"][0]
        == f"{((FIRST + 1) << 32) | (228973296484397057 & 0xFFFFFFFF)}-0"
    )
    q = out[-1].quarantine.row(0, named=True)
    name = f"{dl.partition_name(FIRST)}/{dl.object_name(FIRST + 2)}"
    assert q["location"] == f"{name} ledgers {FIRST + 2}-{FIRST + 2}" and q["record_id"] == name
    assert "truncated zstd" in q["reason"] and f"--start-ledger {FIRST + 2}" in q["reason"]


def test_missing_object_is_bad_input_naming_ledger_and_object(tmp_path):
    root = _lake(tmp_path / "lake", partitioned=False, good=1)
    _, batches = dl.plan(start_ledger=FIRST, end_ledger=FIRST + 1, source=str(root), workers=1)
    with pytest.raises(BadInput, match=r"ledger 53312001 is missing .* FCD285FE--53312001\.xdr\.zst"):
        list(batches(None))
    with pytest.raises(BadInput, match="not a folder"):
        dl.plan(start_ledger=FIRST, end_ledger=FIRST, source=str(tmp_path / "nope"))
    with pytest.raises(BadInput, match="invalid"):
        dl.plan(start_ledger=FIRST, end_ledger=FIRST - 1, source=str(root))


def test_resume_starts_after_the_committed_ledger(tmp_path):
    root = _lake(tmp_path / "lake", partitioned=False, good=2)
    _, batches = dl.plan(start_ledger=FIRST, end_ledger=FIRST + 1, source=str(root), workers=1)
    out, n_fills = _collect(batches(str(FIRST)))
    assert n_fills == 29 and set(out[0].trades["ledger"]) == {FIRST + 1} and out[0].n_units == 1
    done, n_fills = _collect(batches(str(FIRST + 1)))
    assert n_fills == 0 and done[0].done and done[0].position == str(FIRST + 1)


def test_a_ledger_that_does_not_decode_is_quarantined_alone(tmp_path):
    bad = _renumbered(FIRST + 1)
    bad.v1.tx_processing[0].result.transaction_hash = xdr.Hash(b"\x00" * 32)  # matches no envelope
    obj = dl.LakeObject(FIRST, FIRST + 1, "x/obj.xdr.zst", "x/obj.xdr.zst")
    decoded = dl.decode_object(obj, dl.encode_object([_renumbered(FIRST), bad]), FIRST, FIRST + 1)
    assert decoded.trades.height == 29 and set(decoded.trades["ledger"]) == {FIRST}
    q = decoded.quarantine.row(0, named=True)
    assert q["location"] == f"x/obj.xdr.zst ledgers {FIRST + 1}" and "match by hash" in q["reason"]
    garbage = dl.decode_object(obj, zstandard.compress(b"\x00\x00\x00\x07junk"), FIRST, FIRST + 1)
    assert garbage.trades.height == 0 and "corrupt XDR" in garbage.quarantine["reason"][0]


def test_run_ingest_into_store_is_idempotent_and_quarantines_corrupt_copies(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    shutil.copy(_object(), root / OBJECT_NAME)
    request, batches = dl.plan(start_ledger=FIRST, end_ledger=FIRST, source=str(root), workers=1)
    assert (request.source, request.stream, request.total_units) == ("datalake", "ledgers", 1)
    with Store(tmp_path / "s.duckdb") as store:
        summary = run_ingest(store, request, batches)
        assert (summary.n_trades, summary.n_operations, summary.n_quarantined) == (29, 229, 0)
        before = store.counts()
        assert (before["trades"], before["operations"]) == (29, 229)
        assert store.trades().filter(store.trades()["seller_pool_id"].is_not_null()).height == 18
        assert run_ingest(store, request, batches).already_done
        assert store.counts() == before

        broken = tmp_path / "broken"
        broken.mkdir()
        data = _object().read_bytes()
        (broken / OBJECT_NAME).write_bytes(data[: len(data) - 1000])
        request2, batches2 = dl.plan(start_ledger=FIRST, end_ledger=FIRST, source=str(broken), workers=1)
        summary2 = run_ingest(store, request2, batches2)
        assert (summary2.n_trades, summary2.n_quarantined) == (0, 1)
        after = store.counts()
        assert after["quarantine"] == 1 and after["trades"] == 29
        assert store.get_cursor("datalake", "ledgers", request2.scope).done


# -- HTTP (loopback server over a temp folder) -----------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    fail_first: set[str] = set()
    always_fail = False
    seen: list[tuple[str, str]] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def _maybe_fail(self) -> bool:
        self.seen.append((self.command, self.path))
        if self.always_fail or (self.command == "GET" and self.path in self.fail_first):
            self.fail_first.discard(self.path)
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        return False

    def do_GET(self):
        if not self._maybe_fail():
            super().do_GET()

    def do_HEAD(self):
        if not self._maybe_fail():
            super().do_HEAD()


@pytest.fixture
def http_lake(tmp_path):
    root = _lake(tmp_path / "lake", partitioned=True, good=1)
    handler = type("H", (_Handler,), {"fail_first": set(), "seen": [], "always_fail": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    server.shutdown()
    server.server_close()


def test_http_lake_probes_layout_and_retries_503(http_lake, tmp_path):
    url, handler = http_lake
    path = f"/{dl.partition_name(FIRST)}/{OBJECT_NAME}"
    handler.fail_first.add(path)
    request, batches = dl.plan(start_ledger=FIRST, end_ledger=FIRST, source=url, workers=1, max_retries=3)
    with Store(tmp_path / "s.duckdb") as store:
        summary = run_ingest(store, request, batches)
    assert summary.n_trades == 29
    assert handler.seen.count(("GET", path)) == 2  # one 503 (Retry-After: 0), then the object
    assert ("GET", "/.config.json") in handler.seen


def test_http_missing_object_and_persistent_errors(http_lake):
    url, handler = http_lake
    _, batches = dl.plan(start_ledger=FIRST, end_ledger=FIRST + 1, source=url, workers=1, max_retries=1)
    with pytest.raises(BadInput, match=r"ledger 53312001 is missing .*FCD285FE--53312001\.xdr\.zstd"):
        list(batches(None))
    handler.always_fail = True
    _, batches = dl.plan(start_ledger=FIRST, end_ledger=FIRST, source=url, workers=1, max_retries=2)
    with pytest.raises(SourceUnavailable, match="HTTP 503.*after 2 retries"):
        list(batches(None))


def test_fills_with_a_zero_side_go_to_quarantine():
    trades, _ = xd.decode_ledger(dl.read_object(_object())[0])
    first_id = trades["id"][0]
    broken = trades.with_columns(sold_amount=pl.when(pl.col("id") == first_id).then(0).otherwise(pl.col("sold_amount")))
    good, bad = dl._split_zero_fills(broken, dl.LakeObject(FIRST, FIRST, OBJECT_NAME, OBJECT_NAME))
    assert good.height == 28 and first_id not in set(good["id"])
    assert bad.rows() == [
        (
            "datalake",
            f"{OBJECT_NAME} ledger {FIRST} fill {first_id}",
            first_id,
            "fill with a zero amount: not a trade; nothing to do unless Horizon reports it",
            "sold 0 USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN for 42884589 XLM:native",
        )
    ]

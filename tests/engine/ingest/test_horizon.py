"""The Horizon source: real stellar-sdk against the loopback replay server, into real DuckDB files."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import polars as pl
import pytest

from engine.ingest.horizon import plan, plan_tail, toid_of
from engine.ingest.horizon_records import decode_operations, decode_trades
from engine.ingest.replay import Faults, ReplayServer
from engine.ingest.runner import run_ingest
from storage.errors import BadInput, SourceUnavailable
from storage.store import Store
from tests.conftest import fixture_path
from tests.factories import ISSUER, START, account, horizon_trade, write_jsonl

LEDGERS = range(1000, 1100)  # 3 trades and 2 operations a ledger
XLM_USD = f"USD:{ISSUER}/XLM:native"


def horizon_operation(i: int, ledger: int) -> dict:
    """Operation record i of `ledger`: payments, account creations, offers, and noise."""
    op_id = (ledger << 32) | (1 << 12) | (i + 1)
    kind = ("create_account", "payment", "manage_sell_offer", "set_options")[(ledger + i) % 4]
    record = {
        "id": str(op_id), "paging_token": str(op_id), "transaction_successful": True,
        "source_account": account(ledger % 9), "type": kind, "type_i": 0,
        "created_at": (START + timedelta(seconds=5 * ledger)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "transaction_hash": f"{op_id:064x}",
    }
    if kind == "create_account":
        record |= {"funder": account(ledger % 9), "account": account(100 + ledger), "starting_balance": "5.0000000"}
    elif kind == "payment":
        record |= {"from": account(ledger % 9), "to": account(ledger % 7 + 20), "amount": "1.5000000",
                   "asset_type": "native"}
    elif kind == "manage_sell_offer":
        record |= {"amount": "3.0000000", "price": "0.25", "price_r": {"n": 1, "d": 4}, "offer_id": "0",
                   "selling_asset_type": "native", "buying_asset_type": "credit_alphanum4",
                   "buying_asset_code": "USD", "buying_asset_issuer": ISSUER}
    return record


def trade_records() -> list[dict]:
    trades = [horizon_trade(i, ledger=ledger) for ledger in LEDGERS for i in range(3)]
    # a second pair every tenth ledger, and a pool fill
    trades += [{**horizon_trade(i, ledger=ledger), "counter_asset_code": "EUR",
                "id": f"{(ledger << 32) | (2 << 12) | 1}-0", "paging_token": f"{(ledger << 32) | (2 << 12) | 1}-0"}
               for i, ledger in enumerate(LEDGERS[::10])]
    return trades


def operation_records() -> list[dict]:
    ops = [horizon_operation(i, ledger) for ledger in LEDGERS for i in range(2)]
    failed = {**horizon_operation(5, 1050), "transaction_successful": False, "type": "payment",
              "from": account(1), "to": account(2), "amount": "9.0000000", "asset_type": "native"}
    return ops + [failed]


@pytest.fixture
def records_dir(tmp_path):
    d = tmp_path / "horizon"
    d.mkdir()
    write_jsonl(d / "trades.jsonl", trade_records())
    write_jsonl(d / "operations.jsonl", operation_records())
    return d


def expected_trades(first: int, last: int, *, pair: str | None = None) -> pl.DataFrame:
    """What the decoder makes of exactly the recorded trades of ledgers first..last."""
    chosen = [r for r in trade_records() if first <= int(r["paging_token"].split("-")[0]) >> 32 <= last]
    trades, quarantine = decode_trades([json.dumps(r) for r in chosen], source="horizon",
                                       locations=[str(i) for i in range(len(chosen))])
    assert quarantine.height == 0
    if pair is not None:
        trades = trades.filter(pl.col("pair_id") == pair)
    return trades.sort("op_id", "id")


def expected_operations(first: int, last: int) -> pl.DataFrame:
    chosen = [r for r in operation_records() if first <= int(r["id"]) >> 32 <= last
              and r["type"] != "set_options" and r["transaction_successful"]]
    ops, _ = decode_operations([json.dumps(r) for r in chosen], source="horizon",
                               locations=[str(i) for i in range(len(chosen))])
    return ops.sort("id")


def _ingest(store: Store, url: str, first: int, last: int, **options):
    request, batches = plan(start_ledger=first, end_ledger=last, horizon_url=url, seed=1, **options)
    return run_ingest(store, request, batches)


def _contents(store: Store) -> tuple[pl.DataFrame, pl.DataFrame]:
    return store.trades().sort("op_id", "id"), store.operations().sort("id")


def test_range_ingest_holds_exactly_the_records_of_the_range(records_dir, tmp_path):
    with ReplayServer(records_dir) as replay, Store(tmp_path / "s.duckdb") as store:
        summary = _ingest(store, replay.url, 1010, 1039, page_limit=25, batch_pages=2)
        trades, ops = _contents(store)
        assert trades.height == 30 * 3 + 3 and summary.n_trades == trades.height
        assert trades.equals(expected_trades(1010, 1039))
        assert (trades["ledger"].min(), trades["ledger"].max()) == (1010, 1039)
        assert ops.drop("source").equals(expected_operations(1010, 1039).drop("source"))
        assert ops.height == 44 and set(ops["type"]) == {"create_account", "payment", "manage_sell_offer"}
        assert summary.n_units == 2 * 30 and summary.n_quarantined == 0
        first_trades = next(r for r in replay.requests if r.path == "/trades")
        assert (first_trades.query["cursor"], first_trades.query["limit"]) == (str(toid_of(1010)), "25")


def test_second_run_changes_nothing_and_overlap_adds_only_new_ledgers(records_dir, tmp_path):
    with ReplayServer(records_dir) as replay, Store(tmp_path / "s.duckdb") as store:
        _ingest(store, replay.url, 1020, 1029)
        before = _contents(store)
        n_requests = len(replay.requests)
        again = _ingest(store, replay.url, 1020, 1029)
        assert again.already_done and len(replay.requests) == n_requests
        wider = _ingest(store, replay.url, 1015, 1029)
        assert (wider.n_trades, wider.n_operations) == (5 * 3, 7)
        after = _contents(store)
        assert after[0].filter(pl.col("ledger") >= 1020).equals(before[0])
        assert after[0].equals(expected_trades(1015, 1029))


def test_pair_filter_stores_only_that_pair(records_dir, tmp_path):
    with ReplayServer(records_dir) as replay, Store(tmp_path / "s.duckdb") as store:
        _ingest(store, replay.url, 1000, 1049, pair=XLM_USD)
        trades = store.trades().sort("op_id", "id")
        assert trades.height == 150 and set(trades["pair_id"]) == {XLM_USD}
        # asked as USD/XLM, served flipped by the replay (as Horizon does): same canonical rows
        assert trades.equals(expected_trades(1000, 1049, pair=XLM_USD))
        assert store.counts()["operations"] == 76


def test_429_with_retry_after_is_honoured_then_succeeds(records_dir, tmp_path):
    faults = Faults(status=429, at=2, count=1, retry_after_s=1)  # request 1 is the root document
    with ReplayServer(records_dir, faults=faults) as replay, Store(tmp_path / "s.duckdb") as store:
        started = time.monotonic()
        _ingest(store, replay.url, 1000, 1009, backoff_base_s=0.01)
        assert time.monotonic() - started >= 1.0
        assert [r.status for r in replay.requests[:3]] == [200, 429, 200]
        assert replay.requests[1].query == replay.requests[2].query
        assert store.trades().sort("op_id", "id").equals(expected_trades(1000, 1009))


def test_timeout_is_retried(records_dir, tmp_path):
    faults = Faults(status=503, at=2, count=1, delay_s=1.0)
    with ReplayServer(records_dir, faults=faults) as replay, Store(tmp_path / "s.duckdb") as store:
        _ingest(store, replay.url, 1000, 1004, http_timeout_s=0.3, backoff_base_s=0.01)
        retry = next(r for r in replay.requests if r.n == 3)  # request 2 timed out (and is logged last)
        assert (retry.path, retry.query["cursor"], retry.status) == ("/trades", str(toid_of(1000)), 200)
        assert store.trades().sort("op_id", "id").equals(expected_trades(1000, 1004))


def test_503_mid_range_fails_then_rerun_resumes_to_the_same_contents(records_dir, tmp_path):
    options = {"page_limit": 20, "batch_pages": 2, "max_retries": 2, "backoff_base_s": 0.01}
    with ReplayServer(records_dir) as clean, Store(tmp_path / "clean.duckdb") as reference:
        _ingest(reference, clean.url, 1000, 1059, **options)
        want = _contents(reference)
    # request 1 = root, 2.. = trade pages; pages 2-6 ok, then 7, 8, 9 fail: more than 2 retries
    faults = Faults(status=503, at=8, count=3)
    with ReplayServer(records_dir, faults=faults) as replay, Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(SourceUnavailable) as failed:
            _ingest(store, replay.url, 1000, 1059, **options)
        message = str(failed.value)
        assert replay.url in message and "after 2 retries" in message and "resumes" in message
        assert "(ledger 1038) is stored" in message
        partial = store.trades()
        assert partial.height == 6 * 20 and partial["ledger"].max() == 1038  # 3 batches of 2 pages kept
        assert store.runs()["status"].to_list() == ["failed"]
        resumed = _ingest(store, replay.url, 1000, 1059, **options)
        assert resumed.resumed_from == f"trades:{partial.sort('op_id', 'id')['id'][-1]}"
        got = _contents(store)
        assert got[0].equals(want[0]) and got[1].equals(want[1])
        assert got[0].height == 60 * 3 + 6


def test_range_beyond_horizon_history_is_refused(records_dir, tmp_path):
    with ReplayServer(records_dir) as replay, Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(BadInput, match="holds ledgers up to 1099"):
            _ingest(store, replay.url, 1090, 1200)
        assert store.counts()["trades"] == 0


def test_bad_arguments(records_dir):
    with pytest.raises(BadInput, match="empty"):
        plan(start_ledger=10, end_ledger=5, horizon_url="http://127.0.0.1:9")
    with pytest.raises(BadInput, match="--pair"):
        plan(start_ledger=1, end_ledger=5, horizon_url="http://127.0.0.1:9", pair="USD")


def test_unreachable_horizon_names_the_url(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(SourceUnavailable, match=r"http://127\.0\.0\.1:9 kept failing"):
            _ingest(store, "http://127.0.0.1:9", 1, 5, max_retries=1, backoff_base_s=0.01)


def test_bad_records_from_horizon_are_quarantined_with_the_page_url(tmp_path):
    good = [horizon_trade(i, ledger=2000 + i) for i in range(5)]
    bad = {**horizon_trade(9, ledger=2002), "base_amount": "-1.0000000"}
    write_jsonl(tmp_path / "trades.jsonl", good + [bad])
    with ReplayServer(tmp_path) as replay, Store(tmp_path / "s.duckdb") as store:
        summary = _ingest(store, replay.url, 2000, 2004)
        assert (summary.n_trades, summary.n_quarantined) == (5, 1)
        [row] = store.quarantined().rows(named=True)
        assert row["record_id"] == bad["paging_token"] and "negative" in row["reason"]
        assert row["location"].startswith(f"{replay.url}/trades?cursor=") and row["location"].endswith("record 2")


def test_fixture_pages_ingest(tmp_path):
    pages = fixture_path("java-sdk-horizon", "pages")
    with ReplayServer(pages) as replay, Store(tmp_path / "s.duckdb") as store:
        summary = _ingest(store, replay.url, 3, 860885)
        trades = store.trades()
        assert trades["id"].to_list() == ["3697472920621057-0", "3697472920621057-1", "3697472920621057-2"]
        assert trades["sold_amount"].to_list() == [100_000_000, 100_000_000, 200_000_000]
        assert trades["bought_amount"].to_list() == [26_700_000, 26_800_000, 53_600_000]
        assert trades[["price_n", "price_d"]].rows() == [(267, 1000), (67, 250), (67, 250)]
        assert store.operations()["type"].to_list() == ["create_account", "payment", "create_account"]
        assert summary.n_quarantined == 0


def test_stream_tail_stores_n_records_and_resumes(records_dir, tmp_path):
    with ReplayServer(records_dir, stream_events_per_connection=40, stream_retry_ms=20) as replay, \
            Store(tmp_path / "s.duckdb") as store:
        request, batches = plan_tail(horizon_url=replay.url, start_cursor=str(toid_of(1000)), max_records=25,
                                     batch_records=10)
        summary = run_ingest(store, request, batches)
        assert (summary.n_trades, summary.n_records) == (25, 25)
        request, batches = plan_tail(horizon_url=replay.url, max_records=50, batch_records=10)
        assert run_ingest(store, request, batches).n_trades == 50
        ids = store.trades().sort("op_id", "id")["id"].to_list()
        assert ids == expected_trades(1000, 1099)["id"].to_list()[:75]
        assert [r.last_event_id for r in replay.requests if r.stream][-1] is not None  # reconnected mid-way

"""The loopback Horizon, driven by the real stellar-sdk client (no patched functions)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from stellar_sdk import Asset, Server
from stellar_sdk.client.requests_client import RequestsClient
from stellar_sdk.exceptions import BadRequestError, BadResponseError, NotFoundError

from engine.ingest.replay import Faults, ReplayServer, flip_trade
from tests.conftest import ROOT, fixture_path
from tests.factories import ISSUER, horizon_trade, write_jsonl

USD = Asset("USD", ISSUER)


def _server(url: str) -> Server:
    return Server(url, client=RequestsClient(num_retries=0, request_timeout=5))


def _tokens(page: dict) -> list[str]:
    return [r["paging_token"] for r in page["_embedded"]["records"]]


@pytest.fixture
def trades_dir(tmp_path):
    """30 XLM/USD trades over ledgers 1000-1009 (3 a ledger), written out of order."""
    records = [horizon_trade(i) for i in range(30)]
    write_jsonl(tmp_path / "trades.jsonl", records[15:] + records[:15])
    return tmp_path


def test_fixture_pages_page_like_horizon():
    pages = fixture_path("java-sdk-horizon", "pages")
    with ReplayServer(pages) as replay:
        assert (replay.n_trades, replay.n_operations, replay.latest_ledger) == (3, 4, 860885)
        builder = _server(replay.url).trades().limit(2).order(desc=False)
        first = builder.call()
        assert _tokens(first) == ["3697472920621057-0", "3697472920621057-1"]
        assert first["_links"]["next"]["href"] == f"{replay.url}/trades?cursor=3697472920621057-1&limit=2&order=asc"
        assert first["_embedded"]["records"][0]["_links"]["base"]["href"] == (
            f"{replay.url}/accounts/GAVH5JM5OKXGMQDS7YPRJ4MQCPXJUGH26LYQPQJ4SOMOJ4SXY472ZM7G"
        )
        assert _tokens(builder.next()) == ["3697472920621057-2"]
        last = builder.next()
        assert _tokens(last) == []
        assert last["_links"]["next"]["href"] == f"{replay.url}/trades?cursor=3697472920621057-2&limit=2&order=asc"
        ops = _server(replay.url).operations().limit(200).call()
        assert [r["type"] for r in ops["_embedded"]["records"]] == [
            "create_account", "payment", "set_options", "create_account"
        ]
        # the payments page repeats two operations of the operations page: served once
        assert _tokens(ops) == ["12884905985", "12884905986", "12884905987", "33676838572033"]


def test_cursor_limit_order_and_ledger_paths(trades_dir):
    with ReplayServer(trades_dir) as replay:
        server = _server(replay.url)
        all_tokens = _tokens(server.trades().limit(200).call())
        assert len(all_tokens) == 30
        assert all_tokens == sorted(all_tokens, key=lambda t: tuple(int(x) for x in t.split("-")))
        assert len(_tokens(server.trades().call())) == 10  # Horizon's default limit
        after = _tokens(server.trades().cursor(all_tokens[4]).limit(3).call())
        assert after == all_tokens[5:8]  # the cursor is exclusive
        desc = server.trades().cursor(all_tokens[4]).limit(3).order(desc=True).call()
        assert _tokens(desc) == [all_tokens[3], all_tokens[2], all_tokens[1]]
        assert _tokens(server.trades().cursor(str(1003 << 32)).limit(4).call()) == all_tokens[9:13]
        ledger = json.load(urllib.request.urlopen(f"{replay.url}/ledgers/1005/trades?limit=200"))
        assert _tokens(ledger) == all_tokens[15:18]
        assert _tokens(server.trades().cursor("now").call()) == []


def test_pair_filter_matches_either_orientation_and_flips(tmp_path):
    eur = {**horizon_trade(40), "counter_asset_code": "EUR"}
    pool = {**horizon_trade(41), "trade_type": "liquidity_pool"}
    write_jsonl(tmp_path / "trades.jsonl", [horizon_trade(i) for i in range(6)] + [eur, pool])
    with ReplayServer(tmp_path) as replay:
        server = _server(replay.url)
        same = server.trades().for_asset_pair(Asset.native(), USD).limit(200).call()["_embedded"]["records"]
        other = server.trades().for_asset_pair(USD, Asset.native()).limit(200).call()["_embedded"]["records"]
        assert [r["paging_token"] for r in same] == [r["paging_token"] for r in other]
        assert len(same) == 7  # 6 order-book + 1 pool trade, not the EUR one
        assert (same[0]["base_asset_type"], same[0]["base_is_seller"], same[0]["price"]) == (
            "native", True, {"n": "1", "d": "4"},
        )
        assert (other[0]["base_asset_code"], other[0]["base_is_seller"], other[0]["price"]) == (
            "USD", False, {"n": "4", "d": "1"},
        )
        assert other[0]["counter_amount"] == same[0]["base_amount"]
        pools = server.trades().for_asset_pair(USD, Asset.native()).for_trade_type("liquidity_pool").call()
        assert _tokens(pools) == [pool["paging_token"]]


def test_flip_twice_is_identity():
    record = horizon_trade(3)
    assert flip_trade(flip_trade(record)) == record


def test_errors_are_horizon_problems(trades_dir):
    with ReplayServer(trades_dir) as replay:
        server = _server(replay.url)
        with pytest.raises(NotFoundError) as missing:
            server.offers().call()
        assert (missing.value.status, missing.value.title) == (404, "Resource Missing")
        with pytest.raises(BadRequestError) as bad:
            server.trades().limit(201).call()
        assert bad.value.status == 400 and bad.value.extras["invalid_field"] == "limit"
        with pytest.raises(BadRequestError):
            server.trades().cursor("abc").call()
        root = server.root().call()
        assert (root["history_latest_ledger"], root["history_elder_ledger"]) == (1009, 2)


def test_faults_answer_429_with_retry_after_then_recover(trades_dir):
    with ReplayServer(trades_dir, faults=Faults(status=429, first=2, retry_after_s=7)) as replay:
        for _ in range(2):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{replay.url}/trades")
            assert (err.value.code, err.value.headers["Retry-After"]) == (429, "7")
            assert json.load(err.value)["type"] == "https://stellar.org/horizon-errors/rate_limit_exceeded"
        assert len(_tokens(_server(replay.url).trades().call())) == 10
        deadline = time.monotonic() + 5  # the server logs a request just after answering it
        while len(replay.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r.status for r in replay.requests] == [429, 429, 200]


def test_faults_at_request_number(trades_dir):
    with ReplayServer(trades_dir, faults=Faults(status=503, at=2, count=2)) as replay:
        server = _server(replay.url)
        assert len(_tokens(server.trades().call())) == 10
        for _ in range(2):
            with pytest.raises(BadResponseError) as err:
                server.trades().call()
            assert err.value.status == 503
        assert len(_tokens(server.trades().call())) == 10


def test_stream_yields_records_and_reconnects_from_last_event_id(trades_dir):
    with ReplayServer(trades_dir, stream_events_per_connection=8, stream_retry_ms=20) as replay:
        expected = _tokens(_server(replay.url).trades().limit(200).call())
        stream = _server(replay.url).trades().cursor(expected[1]).stream()
        got = [r["paging_token"] for r in itertools.islice(stream, 20)]
        stream.close()
        assert got == expected[2:22]
        deadline = time.monotonic() + 5  # the server logs a request just after answering it
        while sum(r.stream for r in replay.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        streams = [r for r in replay.requests if r.stream]
        assert len(streams) == 3  # 8 + 8 + 4 events: two reconnects
        assert streams[0].query["X-Client-Name"] == "py-stellar-base"
        assert [s.last_event_id for s in streams] == [None, expected[9], expected[17]]


def test_stream_hello_and_byebye_on_the_wire(trades_dir):
    with ReplayServer(trades_dir, stream_idle_s=0.05, stream_retry_ms=1234) as replay:
        req = urllib.request.Request(
            f"{replay.url}/trades?cursor={(1008 << 32)}", headers={"Accept": "text/event-stream"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            text = resp.read().decode()
        events = text.strip().split("\n\n")
        assert events[0] == 'retry: 1234\nevent: open\ndata: "hello"'
        assert len(events) == 1 + 6 + 1
        assert events[1].startswith(f"id: {horizon_trade(24)['paging_token']}\ndata: {{")
        assert events[-1] == 'event: close\ndata: "byebye"'


def test_cli_replay_serves_on_a_port(trades_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "replay", "--dir", str(trades_dir), "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        banner = proc.stdout.readline()
        url_line = proc.stdout.readline()
        assert banner.startswith("replaying 30 trades and 0 operations")
        url = url_line.split()[2]
        deadline = time.monotonic() + 10
        while True:
            try:
                assert len(_tokens(_server(url).trades().limit(200).call())) == 30
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_directory_is_a_clear_error(tmp_path):
    from storage.errors import BadInput

    with pytest.raises(BadInput, match="does not exist"):
        ReplayServer(tmp_path / "nope")

"""Live watch end to end: the demo market played as if live by the replay server, followed by
`watch` over the real stellar-sdk `.stream()` client, scored with the fixture's model."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
from websockets.sync.client import connect

from engine.ingest import datalake as dl
from engine.ingest.replay import ReplayServer
from engine.schemas import TRADES_SCHEMA
from engine.services.alerting import SIGNATURE_HEADER, StdoutChannel, WebhookChannel, WebsocketChannel, channels_from
from engine.services.watch import WatchOptions, watch
from engine.services.watch_evidence import confirm_rings
from storage.errors import BadInput
from storage.store import Store
from tests.app.fixture_store import build_fixture_store, settings_for
from tests.conftest import ROOT
from tests.engine.ingest.test_datalake import FIRST, OBJECT_NAME, _object, _renumbered
from tests.factories import account

TRAPS = ("market_maker", "scheduled_buyer", "arbitrage_bot")  # legitimate look-alikes (scheduled_buyer: the DCA bot)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """(home with the trained model, the demo market folder, its labels)."""
    fx = build_fixture_store(tmp_path_factory.mktemp("watch") / "fixture.duckdb")
    market_dir = fx.home / "demo_market"
    return fx.home, market_dir, pl.read_csv(market_dir / "labels.csv")


def _joined(alerts: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    return alerts.join(labels, left_on="wallet", right_on="account", how="left")


@pytest.fixture(scope="module")
def live_run(market, tmp_path_factory):
    """One watch over the market played live at 4,000 records/s, alerting to a collecting channel and a
    websocket a real client listens to: (stored alerts, delivered alerts, release time of each ledger's
    last trade, first ledger, n_trades stored, n_trades served, the websocket client's messages)."""
    home, market_dir, labels = market
    settings = settings_for(tmp_path_factory.mktemp("live") / "live.duckdb").model_copy(update={"home": home})
    received: list[dict] = []

    class Collect(StdoutChannel):
        def send(self, alert: dict) -> bool:
            received.append({**alert, "_at": time.time()})
            return True

    feed = WebsocketChannel(port=0)
    heard: list[dict] = []
    client = connect(feed.url)
    listener = threading.Thread(target=lambda: heard.extend(json.loads(m) for m in client), daemon=True)
    listener.start()
    with ReplayServer(market_dir, live_rate=4000) as server, Store(settings.db_path) as store:
        wall0, mono0 = time.time(), server._started_at
        options = WatchOptions(horizon_url=server.url, from_ledger=1, idle_exit_s=2.0, max_seconds=40, cooldown_s=10**9)
        watch(store, settings, options, [Collect(), feed])
        time.sleep(0.5)  # the last messages reach the client
        client.close()
        feed.close()
        release = {  # wall time each ledger's last trade was served
            int(r["paging_token"].split("-")[0]) >> 32: wall0 + server.released_at(r["paging_token"], trade=True) - mono0
            for r in server.trades.records
        }
        first_ledger = int(server.trades.records[0]["paging_token"].split("-")[0]) >> 32
        stored = store.alerts().join(store.latest_scores().select("wallet", "pair_id", latest="score"),
                                     on=["wallet", "pair_id"], how="left")  # fmt: skip
        linked = {rid: (store.ring_members(rid)["account_id"].to_list(), store.rings()["ring_id"].to_list())
                  for rid in stored["ring_id"].drop_nulls().unique().to_list()}  # fmt: skip
        return stored, received, release, first_ledger, store.counts()["trades"], server.n_trades, heard, linked


def test_live_replay_planted_ring_is_alerted_mid_stream(market, live_run):
    labels = market[2]
    stored, received, release, first_ledger, n_stored, n_served, heard, _ = live_run
    assert n_stored == n_served
    assert stored.height == len(received) > 0 and stored["delivered_at"].is_not_null().all()
    joined = _joined(stored, labels)
    wash = joined.filter(pl.col("is_wash") == 1)
    # planted ring members; a member can cross on its own closed loops before its ring is confirmed (12 h of
    # market time), so how many carry their ring id depends on how the stream was cut into ticks
    assert wash.height >= 10 and wash["ring_id"].is_not_null().sum() >= 5
    assert stored.select("wallet", "pair_id").is_unique().all()  # cooldown: once per (wallet, pair)
    assert (stored["latest"] == stored["score"]).all()  # the Wallet page shows the score that alerted
    assert stored["ledger"].min() > first_ledger  # the ring shows up mid-stream, not in the first ledger
    latency = sorted(a["_at"] - release[a["ledger"]] for a in received)
    print(f"alert latency (ledger's last trade served -> alert delivered): p50 {latency[len(latency) // 2]:.2f}s "
          f"max {latency[-1]:.2f}s over {len(latency)} alerts at 4000 records/s; alerts by role: "
          f"{dict(joined.group_by('role').len().iter_rows())}")  # fmt: skip
    assert all(set(a) >= {"wallet", "pair", "score", "ring_id", "ledger", "closed_at", "detected_at", "reasons"}
               for a in received)  # fmt: skip
    assert all(a["score"] >= 70 and a["reasons"] for a in received)
    # reasons: the Wallet page's score breakdown, its parts strongest first
    parts = [[r.split(":")[0] for r in a["reasons"]] for a in received]
    assert all(set(p) <= {"model", "closed loops", "own ring", "funding kin, flat", "weak signals"} for p in parts)
    points = [[float(r.split(": ")[1].split(" points")[0]) for r in a["reasons"]] for a in received]
    assert all(p == sorted(p, reverse=True) and p[0] >= 1 for p in points)
    assert [a["id"] for a in heard] == [a["id"] for a in received]  # the websocket client heard every alert


def test_live_replay_alert_ring_links_open_a_stored_ring(live_run):
    """A ring the watch confirmed is in the rings tables the Rings and Wallet pages read (no analysis ran on
    this store), with the alerted wallet among its members."""
    stored, linked = live_run[0], live_run[7]
    assert linked  # alerts naming their ring
    for row in stored.filter(pl.col("ring_id").is_not_null()).iter_rows(named=True):
        members, listed = linked[row["ring_id"]]
        assert row["ring_id"] in listed and row["wallet"] in members


def test_websocket_feed_is_loopback_unless_allowed():
    with pytest.raises(BadInput, match="loopback"):
        channels_from(["websocket=0.0.0.0:0"], secret="", dead_letter=None)
    remote = channels_from(["websocket=0.0.0.0:0"], secret="", dead_letter=None, allow_remote=True)[0]
    local = channels_from(["websocket=127.0.0.1:0"], secret="", dead_letter=None)[0]
    with connect(f"ws://127.0.0.1:{remote.port}") as a, connect(local.url) as b:
        time.sleep(0.2)  # both registered
        remote.send({"wallet": "GA", "score": 90})
        local.send({"wallet": "GB", "score": 80})
        assert json.loads(a.recv(timeout=5)) == {"wallet": "GA", "score": 90}
        assert json.loads(b.recv(timeout=5)) == {"wallet": "GB", "score": 80}
    remote.close()
    local.close()


def test_live_replay_traps_are_not_alerted(market, live_run):
    joined = _joined(live_run[0], market[2])
    assert joined.height > 0  # the watch alerted (the planted rings), so silence about the traps means something
    assert joined.filter(pl.col("role").is_in(TRAPS)).height == 0
    assert joined.filter(pl.col("is_wash") == 0).height == 0  # nor the organic traders


def test_killed_watch_resumes_without_duplicates(market, tmp_path):
    home, market_dir, labels = market
    db = tmp_path / "kill.duckdb"
    work_home = tmp_path / "home"
    shutil.copytree(home, work_home)
    env = {**os.environ, "LEDGERLENS_HOME": str(work_home), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "engine", "watch", "--db", str(db), "--from-ledger", "1",
           "--cooldown-seconds", str(10**9), "--idle-exit-seconds", "2", "--max-seconds", "60"]  # fmt: skip
    with ReplayServer(market_dir, live_rate=3000) as server:
        cmd += ["--horizon-url", server.url]
        first = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines = [first.stdout.readline()]  # wait for the first alert: the watch is mid-stream
        first.send_signal(signal.SIGKILL)
        first.wait()
        lines += first.stdout.read().splitlines()  # what it printed before the kill, still in the pipe
        assert first.returncode == -signal.SIGKILL
        second = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)
        assert second.returncode == 0, second.stderr[-2000:]
        lines += second.stdout.splitlines()
        n_trades = server.n_trades
    with Store(db, read_only=True) as store:
        trades, alerts = store.trades(), store.alerts()
        assert trades.height == n_trades and trades["id"].is_unique().all()
        assert store.operations()["id"].is_unique().all()
        assert alerts["delivered_at"].is_not_null().all()
    sent = [json.loads(line) for line in lines if line.strip()]
    assert alerts.select("wallet", "pair_id").is_unique().all()
    # every stored alert is sent; delivery is at-least-once: an alert being sent when the kill hit
    # (stored, not yet marked delivered) is sent again on restart - the table itself has no repeat
    assert {a["id"] for a in sent} == set(alerts["id"].to_list())
    assert _joined(alerts, labels).filter(pl.col("is_wash") == 1).height >= 10


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((body, self.headers[SIGNATURE_HEADER]))
        self.server.calls += 1
        status = 503 if self.server.calls <= self.server.fail_first else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _receiver(fail_first: int) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    httpd.got, httpd.calls, httpd.fail_first = [], 0, fail_first
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_webhook_signs_retries_and_dead_letters(tmp_path):
    alert = {"wallet": "GA", "pair": "A/B", "score": 90, "closed_at": datetime(2024, 1, 1).isoformat()}
    httpd = _receiver(fail_first=2)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    hook = WebhookChannel(url, "s3cret", tmp_path / "dead.jsonl", backoff_base_s=0.01)
    assert hook.send(alert) and httpd.calls == 3 and not (tmp_path / "dead.jsonl").exists()
    body, signature = httpd.got[-1]
    assert signature == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    httpd.fail_first = 100
    assert hook.send(alert)  # gave up: dead-lettered
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert dead[0]["alert"] == alert and "503" in dead[0]["error"]
    httpd.shutdown()
    with pytest.raises(BadInput, match="https"):
        WebhookChannel("http://example.com/hook", "s3cret", tmp_path / "d.jsonl")
    with pytest.raises(BadInput, match="SECRET"):
        WebhookChannel("https://example.com/hook", "", tmp_path / "d.jsonl")


def test_watch_polls_the_data_lake_for_the_next_object(market, tmp_path):
    """Objects made as tests/engine/ingest makes them: the recorded ledger, then renumbered copies
    written while the watch runs, the first of them in two goes as a file grows on a folder lake;
    the watch waits for the whole of each, stores it once and moves its cursor."""
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(_object(), lake / OBJECT_NAME)
    settings = settings_for(tmp_path / "lake.duckdb").model_copy(update={"home": market[0]})

    def export_later():
        for seq in (FIRST + 1, FIRST + 2):
            time.sleep(1.0)
            blob, path = dl.encode_object([_renumbered(seq)]), lake / dl.object_name(seq)
            if seq == FIRST + 1:
                path.write_bytes(blob[: len(blob) // 2])  # half written: unreadable for now
                time.sleep(1.0)
            path.write_bytes(blob)

    exporter = threading.Thread(target=export_later)
    exporter.start()
    options = WatchOptions(datalake=str(lake), from_ledger=FIRST, poll_s=0.2, idle_exit_s=8.0, max_seconds=60)  # slack for a loaded machine
    with Store(settings.db_path) as store:
        stats = watch(store, settings, options, [])
        exporter.join()
        trades = store.trades()
        cursor = json.loads(store.get_cursor("datalake", "watch", "live").position)
        quarantined = store.quarantined()
    assert sorted(trades["ledger"].unique().to_list()) == [FIRST, FIRST + 1, FIRST + 2]
    assert trades.height == 3 * 29 and trades["id"].is_unique().all()  # 29 fills per recorded ledger
    assert cursor["ledger"] == FIRST + 2 and stats.n_trades == trades.height
    assert stats.n_quarantined == 0 and quarantined.height == 0  # the half-written object was not given up
    with Store(tmp_path / "other.duckdb") as other, pytest.raises(BadInput, match="from-ledger"):
        watch(other, settings, WatchOptions(datalake=str(lake)), [])


def test_watch_quarantines_an_object_that_stays_unreadable_and_moves_on(market, tmp_path):
    """From the command line: a corrupt object between two good ones is read again for
    --settle-seconds, then quarantined by name, and the ledger after it is still stored."""
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(_object(), lake / OBJECT_NAME)
    (lake / dl.object_name(FIRST + 1)).write_bytes(b"\x28\xb5\x2f\xfd not a ledger batch")
    (lake / dl.object_name(FIRST + 2)).write_bytes(dl.encode_object([_renumbered(FIRST + 2)]))
    db, settle = tmp_path / "lake.duckdb", 2.0
    env = {**os.environ, "LEDGERLENS_HOME": str(market[0]), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "engine", "watch", "--db", str(db), "--datalake", str(lake), "--from-ledger", str(FIRST),
           "--poll-seconds", "0.2", "--settle-seconds", str(settle), "--idle-exit-seconds", "5", "--max-seconds", "90"]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"stopped at ledger {FIRST + 2}" in done.stderr and " 1 quarantined" in done.stderr, done.stderr[-2000:]
    with Store(db, read_only=True) as store:
        assert sorted(store.trades()["ledger"].unique().to_list()) == [FIRST, FIRST + 2]
        [bad] = store.quarantined().to_dicts()
        started = store.runs()["started_at"].item()
    assert dl.object_name(FIRST + 1) in bad["record_id"] and "unreadable" in bad["reason"]
    assert (bad["quarantined_at"] - started).total_seconds() >= settle  # read again before it was given up


def test_a_reader_that_dies_stops_the_watch_with_its_error(market, tmp_path, monkeypatch):
    """A fault the poller does not expect (here injected into the decoder) must end the watch loudly,
    recorded as a failed run, never leave it idling on a reader that is gone."""
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(_object(), lake / OBJECT_NAME)

    def broken(*_args, **_kw):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(dl, "decode_object", broken)
    settings = settings_for(tmp_path / "lake.duckdb").model_copy(update={"home": market[0]})
    with Store(settings.db_path) as store:
        with pytest.raises(RuntimeError, match="watch-datalake stopped: ZeroDivisionError"):
            watch(store, settings, WatchOptions(datalake=str(lake), from_ledger=FIRST, poll_s=0.2, max_seconds=60), [])
        assert [(r["status"], "injected" in r["error"]) for r in store.runs().to_dicts()] == [("failed", True)]


def _trade(n: int, ledger: int, pair: str, seller: int, buyer: int) -> dict:
    base, counter = pair.split("/")
    return {"id": f"{(ledger << 32) + n}-0", "op_id": (ledger << 32) + n, "ledger": ledger,
            "closed_at": datetime(2024, 3, 1, tzinfo=UTC) + timedelta(seconds=5 * ledger), "trade_type": "orderbook",
            "pair_id": pair, "seller_account": account(seller), "seller_offer_id": n, "seller_pool_id": None,
            "buyer_account": account(buyer), "buyer_offer_id": n + 1, "buyer_pool_id": None, "sold_asset": base,
            "sold_amount": 10**7, "bought_asset": counter, "bought_amount": 2 * 10**7, "price_n": 2, "price_d": 1,
            "source": "files"}  # fmt: skip


def test_a_tick_reads_the_touched_pairs_recent_neighbourhood_only(tmp_path):
    p1, p2, p3 = (f"{code}:{account(99)}/XLM:native" for code in ("AAA", "BBB", "CCC"))
    rows = [_trade(1, 100, p1, 1, 2), _trade(2, 1_000, p1, 1, 2), _trade(3, 1_001, p2, 2, 3),
            _trade(4, 1_002, p3, 4, 5), _trade(5, 1_003, p2, 6, 7)]  # fmt: skip
    with Store(tmp_path / "n.duckdb") as store:
        store.write_batch(run_id=None, trades=pl.DataFrame(rows, schema=TRADES_SCHEMA))
        got = store.pair_window_trades([p1], ledger_from=500)
    # p1's recent trade, and its wallet 2's trade in p2; not the old p1 trade, not p3, not p2's other wallets
    assert sorted(got["ledger"].to_list()) == [1_000, 1_001]


def test_a_ring_counts_once_it_held_the_confirmation_period():
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    confirmed, seen = confirm_rings(["ring_a"], {}, as_of=t0, confirm_s=3600, keep_s=86_400)
    assert confirmed == set() and seen == {"ring_a": [t0.isoformat(), t0.isoformat()]}
    confirmed, seen = confirm_rings(["ring_a", "ring_b"], seen, as_of=t0 + timedelta(hours=1), confirm_s=3600,
                                    keep_s=86_400)  # fmt: skip
    assert confirmed == {"ring_a"} and seen["ring_a"][0] == t0.isoformat()  # first seen is kept
    confirmed, seen = confirm_rings([], seen, as_of=t0 + timedelta(days=2), confirm_s=3600, keep_s=86_400)
    assert seen == {} and confirmed == set()  # not seen for longer than keep_s: forgotten
    confirmed, _ = confirm_rings(["ring_a"], seen, as_of=t0 + timedelta(days=2), confirm_s=3600, keep_s=86_400)
    assert confirmed == set()  # a ring that went away must hold again


def _funding(n: int, ledger: int, frm: int, to: int, *, kind: str = "create_account", amount: int = 10**8) -> dict:
    return {"id": (ledger << 32) + n, "ledger": ledger, "closed_at": datetime(2024, 3, 1, tzinfo=UTC) + timedelta(seconds=5 * ledger),
            "type": kind, "successful": True, "source_account": account(frm), "from_account": account(frm),
            "to_account": account(to), "asset": "XLM:native", "amount": amount, "source": "files"}  # fmt: skip


def _lineage_market() -> tuple[list[dict], list[dict]]:
    """(first operations, operations stored later): a hub (1) creating 80 accounts (100..179), a chain
    2 -> 3 -> 4 -> 5 -> 6, accounts 5 and 6 also paid by the hub, a pass-through hop 7 -> 8 -> 9 / 10,
    then later the hub creating 20 more accounts and the chain's root paying 9."""
    first = [_funding(i, 10 + i, 1, 100 + i) for i in range(80)]
    first += [_funding(200 + i, 200 + i, a, b) for i, (a, b) in enumerate([(2, 3), (3, 4), (4, 5), (5, 6)])]
    first += [_funding(300, 300, 1, 5, kind="payment"), _funding(301, 301, 1, 6, kind="payment"),
              _funding(310, 310, 7, 8), _funding(311, 311, 8, 9, amount=5 * 10**7), _funding(312, 312, 8, 10, amount=5 * 10**7)]  # fmt: skip
    later = [_funding(i, 400 + i, 1, 180 + i) for i in range(20)] + [_funding(500, 500, 2, 9, kind="payment")]
    return first, later


def test_lineage_is_looked_up_by_account_and_gives_the_whole_store_lineage(tmp_path):
    """The watch's keyed lineage (indexed copy of the funding edges, a hub's fan-out read only up to
    the exchange-like limit) gives the touched accounts the ancestors a walk over every stored edge
    gives, before and after more operations are stored, and never returns a hub's whole fan-out."""
    from engine.graph.funding import ancestors, exchange_like, funding_edges
    from engine.schemas import OPERATIONS_SCHEMA
    from engine.services.watch_evidence import LINEAGE_CHILDREN, LINEAGE_DEPTH

    touched = pl.Series([account(i) for i in (6, 9, 10, 150, 185)])
    first, later = _lineage_market()
    with Store(tmp_path / "l.duckdb") as store:
        for ops in (first, later):
            store.write_batch(run_id=None, operations=pl.DataFrame(ops, schema=OPERATIONS_SCHEMA))
            assert store.sync_funding_links(max_children=LINEAGE_CHILDREN) == len(ops)
            got = store.lineage_operations(touched.to_list(), depth=LINEAGE_DEPTH, ledger_from=0)
            expected = ancestors(store.funding_edges()).filter(pl.col("account_id").is_in(touched.implode()))
            assert ancestors(funding_edges(got)).filter(pl.col("account_id").is_in(touched.implode())).equals(expected)
            assert expected.filter(pl.col("account_id") == account(6))["ancestor"].to_list()  # the chain is there
            assert exchange_like(funding_edges(got))["account_id"].to_list() == [account(1)]  # the hub is seen as one
            from_hub = got.filter(pl.col("from_account") == account(1))["to_account"].n_unique()
            assert from_hub <= LINEAGE_CHILDREN + 3  # its first accounts, 185, 5 and 6 (lineage), not its fan-out
        assert store.sync_funding_links(max_children=LINEAGE_CHILDREN) == 0  # nothing new: nothing read

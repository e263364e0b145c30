"""The simulated market: determinism, Horizon validity, labels, distributions, injector."""

from __future__ import annotations

import argparse
import csv
import json
import re

import numpy as np
import polars as pl
import pytest
from stellar_sdk import StrKey

from engine.synthetic import generate_market, inject_fraud
from engine.synthetic.plan import make_plan
from engine.synthetic.writer import ring_id
from tests.conftest import fixture_path

SCALE = 0.05
BENFORD = np.log10(1 + 1 / np.arange(1, 10))
AMOUNT = re.compile(r"^\d+\.\d{7}$")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return generate_market(tmp_path_factory.mktemp("market"), seed=7, scale=SCALE)


@pytest.fixture(scope="module")
def trades(market):
    return pl.read_ndjson(market.trades_path, infer_schema_length=None)


@pytest.fixture(scope="module")
def ops(market):
    return pl.read_ndjson(market.operations_path, infer_schema_length=None)


@pytest.fixture(scope="module")
def labels(market):
    return pl.read_csv(market.labels_path, schema_overrides={"ring_id": pl.String})


@pytest.fixture(scope="module")
def meta(market):
    return json.loads(market.meta_path.read_text())


def _sides(trades: pl.DataFrame) -> pl.DataFrame:
    """wallet, counterparty, given, got, is_maker, one row per account side of a trade."""
    def side(me, other, maker):
        cp = pl.coalesce(pl.col(f"{other}_account"), pl.col(f"{other}_liquidity_pool_id"))
        return trades.filter(pl.col(f"{me}_account").is_not_null()).select(
            wallet=pl.col(f"{me}_account"), counterparty=cp, given=pl.col(f"{me}_amount"),
            got=pl.col(f"{other}_amount"), is_maker=maker)
    return pl.concat([side("base", "counter", pl.col("base_is_seller")), side("counter", "base", ~pl.col("base_is_seller"))])


def test_same_seed_gives_identical_files_and_other_seed_differs(market, tmp_path):
    again = generate_market(tmp_path / "again", seed=7, scale=SCALE)
    other = generate_market(tmp_path / "other", seed=8, scale=SCALE)
    for name in ("trades.jsonl", "operations.jsonl", "labels.csv", "meta.json"):
        assert (again.out_dir / name).read_bytes() == (market.out_dir / name).read_bytes(), name
        assert (other.out_dir / name).read_bytes() != (market.out_dir / name).read_bytes(), name
    assert again.n_trades == market.n_trades


def test_scale_sets_size_and_small_markets_keep_three_rings(market, meta):
    assert make_plan(scale=1.0, days=7).n_trades_target == 100_000
    assert make_plan(scale=10.0, days=7).n_trades_target == 1_000_000
    assert market.n_rings >= 3 and len(meta["rings"]) == market.n_rings
    assert 0.7 * 5_000 < market.n_trades < 1.3 * 5_000
    assert meta["counts"]["trades"] == market.n_trades


def test_trades_are_valid_horizon_records(market, trades):
    assert trades.height == market.n_trades
    assert set(trades["trade_type"].unique()) == {"orderbook", "liquidity_pool"}
    accounts = pl.concat([trades["base_account"], trades["counter_account"]]).drop_nulls().unique()
    assert all(StrKey.is_valid_ed25519_public_key(a) for a in accounts)
    for col in ("base_amount", "counter_amount"):
        assert trades[col].str.contains(AMOUNT.pattern).all()
        assert (trades[col].cast(pl.Float64) > 0).all()
    assert (trades["id"] == trades["paging_token"]).all()
    op_id = trades["id"].str.split("-").list.first().cast(pl.Int64)
    assert op_id.is_sorted()
    ledger = op_id // (1 << 32)
    assert ledger.min() >= market.first_ledger and ledger.max() <= market.last_ledger
    ids = op_id.to_numpy()
    assert ((ids >> 12) & 0xFFFFF).min() >= 1 and (ids & 0xFFF).min() >= 1
    pools = trades.filter(pl.col("trade_type") == "liquidity_pool")
    assert (pools["liquidity_pool_fee_bp"] == 30).all()
    assert (pools["base_liquidity_pool_id"].is_not_null() ^ pools["counter_liquidity_pool_id"].is_not_null()).all()
    n, d = trades["price"].struct.field("n").cast(pl.Int64), trades["price"].struct.field("d").cast(pl.Int64)
    ratio = trades["counter_amount"].cast(pl.Float64) / trades["base_amount"].cast(pl.Float64)
    assert ((n / d / ratio - 1).abs() < 1e-6).all()


def test_ledger_close_times_are_5_to_6_seconds_apart(trades, ops):
    times = pl.concat([
        trades.select(ledger=pl.col("id").str.split("-").list.first().cast(pl.Int64) // (1 << 32),
                      t=pl.col("ledger_close_time")),
        ops.select(ledger=pl.col("id").cast(pl.Int64) // (1 << 32), t=pl.col("created_at")),
    ]).with_columns(t=pl.col("t").str.to_datetime("%Y-%m-%dT%H:%M:%SZ").dt.epoch("s"))
    per_ledger = times.group_by("ledger").agg(n=pl.col("t").n_unique(), t=pl.col("t").first()).sort("ledger")
    assert (per_ledger["n"] == 1).all()  # one close time per ledger
    gap = per_ledger["t"].diff().drop_nulls() / per_ledger["ledger"].diff().drop_nulls()
    assert gap.min() >= 5 and gap.max() <= 6


def test_operations_are_valid_and_back_every_trade(trades, ops):
    expected = {"create_account", "payment", "path_payment_strict_send", "path_payment_strict_receive",
                "manage_sell_offer", "manage_buy_offer"}
    assert expected <= set(ops["type"].unique())
    assert ops["id"].cast(pl.Int64).is_sorted() and ops["id"].n_unique() == ops.height
    assert (ops["transaction_successful"]).all()
    offers = ops.filter(pl.col("type").is_in(["manage_sell_offer", "manage_buy_offer"]))
    cancels = offers.filter(pl.col("amount") == "0.0000000")
    assert cancels.height > 0 and (cancels["offer_id"] != "0").all()
    assert offers["amount"].str.contains(AMOUNT.pattern).all()
    trade_ops = trades.select(id=pl.col("id").str.split("-").list.first()).unique()
    joined = trade_ops.join(ops.select("id", "type"), on="id", how="left")
    assert joined["type"].null_count() == 0
    assert set(joined["type"].unique()) <= {"manage_sell_offer", "manage_buy_offer", "path_payment_strict_send",
                                            "path_payment_strict_receive"}
    created = ops.filter(pl.col("type") == "create_account")
    assert created["account"].n_unique() == created.height
    assert all(StrKey.is_valid_ed25519_public_key(a) for a in created["account"])


def test_accounts_are_created_before_they_act(trades, ops):
    created = ops.filter(pl.col("type") == "create_account").select(
        account="account", created=pl.col("id").cast(pl.Int64))
    acts = pl.concat([
        trades.select(account="base_account", at=pl.col("id").str.split("-").list.first().cast(pl.Int64)),
        trades.select(account="counter_account", at=pl.col("id").str.split("-").list.first().cast(pl.Int64)),
        ops.select(account="source_account", at=pl.col("id").cast(pl.Int64)),
    ]).drop_nulls().group_by("account").agg(first=pl.col("at").min())
    both = created.join(acts, on="account")
    assert both.height > 50
    assert (both["first"] > both["created"]).all()


def test_every_ring_member_trades_inside_its_ring(trades, labels, meta):
    members = labels.filter(pl.col("role") == "wash_trader").select("account", "ring_id")
    sides = _sides(trades).join(members, left_on="wallet", right_on="account").join(
        members.rename({"ring_id": "cp_ring"}), left_on="counterparty", right_on="account", how="left")
    inside = sides.filter(pl.col("ring_id") == pl.col("cp_ring")).group_by("wallet").len()
    assert inside.height == members.height
    assert inside["len"].min() >= 3
    for ring in meta["rings"]:
        assert ring["ring_id"] == ring_id(ring["members"])
        assert set(members.filter(pl.col("ring_id") == ring["ring_id"])["account"]) == set(ring["members"])
    outside = sides.filter(pl.col("cp_ring").is_null() | (pl.col("cp_ring") != pl.col("ring_id")))
    assert outside.height > 0  # camouflage trades with outsiders exist


def test_funding_chains_exist_where_the_labels_say_so(ops, meta):
    created = ops.filter(pl.col("type") == "create_account")
    funder = dict(zip(created["account"], created["funder"], strict=True))
    checked = 0
    for ring in meta["rings"]:
        for member in ring["members"]:
            chain = [member]
            while chain[-1] in funder and len(chain) < 6:
                chain.append(funder[chain[-1]])
            if ring["funding"] == "controller":
                assert chain[1] == ring["controller"]
                checked += 1
            elif ring["funding"] == "chain":  # the member's own chain of throwaway accounts
                hops = ring["chains"][ring["members"].index(member)]
                assert 1 <= len(hops) <= 3
                assert chain[1:len(hops) + 2] == hops[::-1] + [ring["controller"]]
                checked += 1
            else:
                assert ring["controller"] not in chain
        if ring["top_ups"]:
            pays = ops.filter((pl.col("type") == "payment") & (pl.col("from") == ring["controller"]))
            assert set(pays["to"]) <= set(ring["members"]) and pays.height >= 1
    assert checked >= 2


def _first_digits(amounts: pl.Series) -> np.ndarray:
    return amounts.str.replace(r"^[0.]*", "").str.slice(0, 1).cast(pl.Int32).to_numpy()


def _mad(digits: np.ndarray) -> float:
    freq = np.bincount(digits, minlength=10)[1:10] / digits.size
    return float(np.abs(freq - BENFORD).mean())


def test_organic_amounts_follow_benford_and_market_makers_quote_round_lots(trades, labels):
    sides = _sides(trades).join(labels.select("account", "role"), left_on="wallet", right_on="account")
    organic = sides.filter(pl.col("role") == "organic")
    # what organic traders chose to sell; what they receive includes market makers' round lots
    digits = _first_digits(organic["given"])
    assert digits.size > 2500
    assert _mad(digits) < 0.015

    def round_share(frame: pl.DataFrame) -> float:
        lead = frame["given"].str.replace(".", "", literal=True).str.strip_chars("0")
        return float(lead.is_in(["1", "2", "25", "5"]).mean())

    mm = sides.filter((pl.col("role") == "market_maker") & pl.col("is_maker"))
    assert mm.height > 500
    assert round_share(mm) > 0.3 > 0.1 > round_share(organic)


def test_synthetic_files_load_through_ingest_files_with_nothing_quarantined(market, tmp_path):
    files = pytest.importorskip("engine.ingest.files")
    from storage.store import Store

    with Store(tmp_path / "s.duckdb") as store:
        runs = files.ingest_files(store, [market.trades_path, market.operations_path])
        counts = store.counts()
    assert sum(r.n_quarantined for r in runs) == 0
    assert counts["trades"] == market.n_trades and counts["operations"] == market.n_operations
    assert counts["quarantine"] == 0


def test_injector_weaves_labelled_structures_into_the_real_fixture(tmp_path):
    page = fixture_path("java-sdk-horizon", "pages", "trades.json")
    real = json.loads(page.read_text())["_embedded"]["records"]
    out, summary_path = tmp_path / "out.jsonl", tmp_path / "s.json"
    s = inject_fraud(page, out, summary_path=summary_path, sybil_clusters=3, sybil_cluster_size=8,
                     wash_loops=2, wash_loop_size=5, seed=3)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    injected = [r for r in rows if r.get("synthetic_fraud")]
    assert len(rows) == len(real) + s.n_injected_trades
    assert [r for r in rows if not r.get("synthetic_fraud")] == [{k: v for k, v in r.items()} for r in real]
    assert s.n_injected_accounts == 3 * 8 + 2 * 5 and s.n_injected_trades == 3 * (24 + 4) + 2 * (15 + 2)
    assert {r["fraud_pattern"] for r in injected} == {"sybil_cluster", "wash_trading_loop"}
    real_accounts = {r[k] for r in real for k in ("base_account", "counter_account") if k in r}
    real_times = {r["ledger_close_time"] for r in real}
    assert {r["ledger_close_time"] for r in injected} <= real_times  # inside the existing span
    assert any(r["base_account"] in real_accounts or r["counter_account"] in real_accounts for r in injected)
    tokens = [tuple(map(int, r["paging_token"].split("-"))) for r in rows]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    ops = [json.loads(line) for line in (tmp_path / "out.operations.jsonl").read_text().splitlines()]
    assert len(ops) == s.n_injected_accounts
    assert {o["funder"] for o in ops} <= real_accounts
    assert all(StrKey.is_valid_ed25519_public_key(o["account"]) for o in ops)
    loops = [g for g in json.loads(summary_path.read_text())["groups"] if g["pattern"] == "wash_trading_loop"]
    for group in loops:
        trades = [r for r in injected if r["fraud_group"] == group["group"]]
        edges = {(r["base_account"], r["counter_account"]) for r in trades}
        m = group["members"]
        assert all((m[i], m[(i + 1) % len(m)]) in edges for i in range(len(m)))


def test_injected_export_loads_through_ingest_files(market, tmp_path):
    files = pytest.importorskip("engine.ingest.files")
    from storage.store import Store

    out = tmp_path / "out.jsonl"
    s = inject_fraud(market.trades_path, out, sybil_clusters=2, sybil_cluster_size=4, wash_loops=1, wash_loop_size=3)
    with Store(tmp_path / "s.duckdb") as store:
        runs = files.ingest_files(store, [out, tmp_path / "out.operations.jsonl"])
        counts = store.counts()
    assert sum(r.n_quarantined for r in runs) == 0
    assert counts["trades"] == market.n_trades + s.n_injected_trades
    assert counts["operations"] == s.n_injected_accounts


def _cli(argv: list[str]) -> int:
    from engine.commands import synth
    from engine.settings import Settings

    parser = argparse.ArgumentParser()
    synth.register(parser.add_subparsers(dest="command"), argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(argv)
    return args.handler(args, Settings())


def test_cli_synth_and_inject(tmp_path, capsys):
    assert _cli(["synth", "--out", str(tmp_path / "m"), "--seed", "5", "--scale", "0.02", "--days", "2"]) == 0
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert (meta["seed"], meta["scale"], meta["days"]) == (5, 0.02, 2)
    with (tmp_path / "m" / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == meta["counts"]["accounts"] and sum(r["is_wash"] == "1" for r in rows) >= 3 * 2 + 3
    assert _cli(["inject", "--input", str(tmp_path / "m" / "trades.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                 "--summary", str(tmp_path / "s.json"), "--sybil-clusters", "1", "--sybil-cluster-size", "3",
                 "--wash-loops", "1", "--wash-loop-size", "2"]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["n_injected_accounts"] == 5 and summary["n_input_trades"] == meta["counts"]["trades"]
    assert "injected" in capsys.readouterr().out

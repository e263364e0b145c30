"""The simulated market family (issue 14, item 3): every ring pattern, funding style and
legitimate trap appears when asked and only then, and each has the shape it promises."""

from __future__ import annotations

import json

import polars as pl
import pytest

from engine.synthetic import FUNDING, PATTERNS, FamilyConfig, generate_market
from storage.errors import BadInput

SCALE = 0.05
TIME = "%Y-%m-%dT%H:%M:%SZ"


def _load(summary) -> dict:
    trades = pl.read_ndjson(summary.trades_path, infer_schema_length=None).with_columns(
        t=pl.col("ledger_close_time").str.to_datetime(TIME).dt.epoch("s"),
        op=pl.col("id").str.split("-").list.first().cast(pl.Int64))
    ops = pl.read_ndjson(summary.operations_path, infer_schema_length=None).with_columns(
        t=pl.col("created_at").str.to_datetime(TIME).dt.epoch("s"))
    labels = pl.read_csv(summary.labels_path, schema_overrides={"ring_id": pl.String}).with_columns(
        pl.col("pattern", "funding").fill_null(""))
    return {"trades": trades, "ops": ops, "labels": labels, "meta": json.loads(summary.meta_path.read_text()),
            "summary": summary}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return _load(generate_market(tmp_path_factory.mktemp("full"), seed=11, scale=SCALE))


@pytest.fixture(scope="module")
def cycles(tmp_path_factory):
    family = FamilyConfig(only_patterns=("cycle",), only_funding=("chain",), n_rings=4)
    return _load(generate_market(tmp_path_factory.mktemp("cycles"), seed=5, scale=SCALE, family=family))


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    family = FamilyConfig(only_patterns=("pool_layered", "two_pair"), only_funding=("exchange_topup",), n_rings=6)
    return _load(generate_market(tmp_path_factory.mktemp("layered"), seed=9, scale=SCALE, family=family))


def _sides(trades: pl.DataFrame) -> pl.DataFrame:
    """One row per (account side of a trade): wallet, counterparty (account or pool), gave/got asset and amount."""
    def asset(prefix):
        return pl.coalesce(pl.col(f"{prefix}_asset_code"), pl.lit("XLM"))

    def side(me, other):
        return trades.filter(pl.col(f"{me}_account").is_not_null()).select(
            "id", "op", "t", wallet=pl.col(f"{me}_account"),
            counterparty=pl.coalesce(pl.col(f"{other}_account"), pl.col(f"{other}_liquidity_pool_id")),
            via_pool=pl.col(f"{other}_liquidity_pool_id").is_not_null(),
            gave=asset(me), gave_amount=pl.col(f"{me}_amount").cast(pl.Float64),
            got=asset(other), got_amount=pl.col(f"{other}_amount").cast(pl.Float64))
    return pl.concat([side("base", "counter"), side("counter", "base")])


def _members(data) -> pl.DataFrame:
    return data["labels"].filter(pl.col("role") == "wash_trader").select("account", "ring_id", "pattern", "funding")


def test_every_pattern_and_funding_style_appears_by_default_with_labels(full):
    labels, meta = full["labels"], full["meta"]
    assert labels.columns == ["account", "role", "is_wash", "ring_id", "pattern", "funding"]
    members = _members(full)
    assert set(members["pattern"]) == set(PATTERNS)
    assert set(members["funding"]) == set(FUNDING)
    assert {r["pattern"] for r in meta["rings"]} == set(PATTERNS)
    assert meta["family"]["patterns"] == list(PATTERNS)
    by_role = dict(labels.filter(pl.col("is_wash") == 0).select("role", "pattern").unique().iter_rows())
    assert by_role["scheduled_buyer"] == "dca_bot" and by_role["farm_funder"] == "airdrop_farmer"
    for role in ("organic", "market_maker", "arbitrage_bot", "airdrop_farmer", "crowd"):
        assert by_role[role] == role
    assert (labels.filter(pl.col("is_wash") == 0)["funding"] == "").all()
    hops = labels.filter(pl.col("role") == "ring_intermediary")
    assert hops.height > 0 and (hops["pattern"] == "funding_hop").all() and (hops["funding"] == "chain").all()
    ring_rows = labels.filter(pl.col("is_wash") == 1)
    assert ring_rows["ring_id"].null_count() == 0 and (ring_rows["funding"] != "").all()


def test_only_and_exclude_select_what_appears(cycles, layered, tmp_path):
    assert set(_members(cycles)["pattern"]) == {"cycle"} and set(_members(cycles)["funding"]) == {"chain"}
    assert set(_members(layered)["pattern"]) == {"pool_layered", "two_pair"}
    family = FamilyConfig(exclude_patterns=("cycle", "two_pair"), exclude_funding=("chain",))
    held_out = _load(generate_market(tmp_path / "m", seed=3, scale=SCALE, family=family))
    members = _members(held_out)
    assert set(members["pattern"]) == {"ping_pong", "random_matching", "pool_layered"}
    assert set(members["funding"]) == {"controller", "exchange_topup"}
    assert held_out["labels"].filter(pl.col("role") == "ring_intermediary").height == 0
    assert held_out["meta"]["family"]["exclude_patterns"] == ["cycle", "two_pair"]


def test_family_config_rejects_unknown_names_and_empty_selections():
    with pytest.raises(BadInput, match="unknown pattern"):
        FamilyConfig(only_patterns=("triangle",))
    with pytest.raises(BadInput, match="unknown funding"):
        FamilyConfig(exclude_funding=("exchange",))
    with pytest.raises(BadInput, match="selects no"):
        FamilyConfig(only_patterns=("cycle",), exclude_patterns=("cycle",))


def test_same_seed_and_family_give_identical_files(tmp_path):
    family = FamilyConfig(only_patterns=("cycle", "pool_layered"), seed=4)
    a = generate_market(tmp_path / "a", seed=2, scale=0.03, days=3, family=family)
    b = generate_market(tmp_path / "b", seed=2, scale=0.03, days=3, family=family)
    c = generate_market(tmp_path / "c", seed=2, scale=0.03, days=3, family=FamilyConfig(only_patterns=("cycle",)))
    for name in ("trades.jsonl", "operations.jsonl", "labels.csv", "meta.json"):
        assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), name
    assert (a.out_dir / "trades.jsonl").read_bytes() != (c.out_dir / "trades.jsonl").read_bytes()
    assert json.loads(a.meta_path.read_text())["family"]["seed"] == 4


def test_a_cycle_is_directed_one_way_per_pair_with_net_positions_near_zero(cycles):
    sides = _sides(cycles["trades"])
    members = _members(cycles)
    for ring in cycles["meta"]["rings"]:
        assert 3 <= ring["n_members"] <= 8 and ring["shape"] == "cycle"
        mine = set(ring["members"])
        base = ring["pair"][0].split(":")[0]
        # who handed the base asset to whom, inside the ring
        legs = sides.filter(pl.col("wallet").is_in(mine) & pl.col("counterparty").is_in(mine) & (pl.col("gave") == base))
        edges = set(zip(legs["wallet"], legs["counterparty"], strict=True))
        assert all((b, a) not in edges for a, b in edges)  # one direction per member pair
        succ = dict(edges)
        assert len(succ) == len(edges) == len(mine)  # every member sells to exactly one other
        walk, seen = ring["members"][0], []
        while walk not in seen:
            seen.append(walk)
            walk = succ[walk]
        assert set(seen) == mine  # one directed cycle through every member
        net = legs.group_by("wallet").agg(gave=pl.col("gave_amount").sum()).join(
            legs.group_by("counterparty").agg(got=pl.col("gave_amount").sum()), left_on="wallet", right_on="counterparty")
        lot = legs["gave_amount"].median()
        gross = legs["gave_amount"].sum() / len(mine)
        assert ((net["gave"] - net["got"]).abs() <= max(3 * lot, 0.1 * gross)).all()
    assert members.height == sum(r["n_members"] for r in cycles["meta"]["rings"])


def test_camouflage_is_at_most_a_third_of_the_rings_trades(cycles):
    sides = _sides(cycles["trades"])
    for ring in cycles["meta"]["rings"]:
        mine = set(ring["members"])
        own = sides.filter(pl.col("wallet").is_in(mine))
        inside = own.filter(pl.col("counterparty").is_in(mine))["op"].n_unique()
        outside = own.filter(~pl.col("counterparty").is_in(mine))["op"].n_unique()
        assert 0 <= ring["camouflage"] <= 1 / 3
        assert outside / (inside + outside) <= 1 / 3 + 0.05


def test_pool_layered_legs_go_through_the_pool_and_match_within_seconds(layered):
    sides = _sides(layered["trades"])
    rings = [r for r in layered["meta"]["rings"] if r["pattern"] == "pool_layered"]
    assert rings
    for ring in rings:
        mine = set(ring["members"])
        pool = sides.filter(pl.col("wallet").is_in(mine) & pl.col("via_pool"))
        into = pool.select("t", seller="wallet", asset="gave", amount="gave_amount", op_in="op")
        out = pool.select(t_out="t", buyer="wallet", asset="got", amount_out="got_amount")
        matched = into.join(out, on="asset").filter(
            (pl.col("buyer") != pl.col("seller")) & (pl.col("t_out") >= pl.col("t")) & (pl.col("t_out") - pl.col("t") <= 12)
            & ((pl.col("amount_out") / pl.col("amount") - 1).abs() <= 0.01))
        assert matched["op_in"].n_unique() >= max(3, 0.3 * ring["n_trades"] * ring["pool_share"])


def test_two_pair_rings_wash_on_two_pairs_sharing_one_asset(layered):
    sides = _sides(layered["trades"])
    rings = [r for r in layered["meta"]["rings"] if r["pattern"] == "two_pair"]
    assert rings
    for ring in rings:
        assert ring["pair2"] is not None and set(ring["pair"]) & set(ring["pair2"])
        mine = set(ring["members"])
        inside = sides.filter(pl.col("wallet").is_in(mine) & pl.col("counterparty").is_in(mine))
        pairs = inside.select(pl.concat_list(pl.min_horizontal("gave", "got"), pl.max_horizontal("gave", "got"))
                              .alias("p"))["p"].unique()
        assert pairs.len() == 2


def test_chain_hops_forward_almost_everything_soon_and_never_trade(cycles):
    ops, trades = cycles["ops"], cycles["trades"]
    moves = pl.concat([
        ops.filter(pl.col("type") == "create_account").select("t", src="funder", dst="account",
                                                              amount=pl.col("starting_balance").cast(pl.Float64)),
        ops.filter(pl.col("type") == "payment").select("t", src="from", dst="to", amount=pl.col("amount").cast(pl.Float64)),
    ])
    traders = set(trades["base_account"].drop_nulls()) | set(trades["counter_account"].drop_nulls())
    n_hops = 0
    for ring in cycles["meta"]["rings"]:
        assert ring["funding"] == "chain"
        for member, chain in zip(ring["members"], ring["chains"], strict=True):
            assert 1 <= len(chain) <= 3
            path = [ring["controller"], *chain, member]
            for prev, hop, nxt in zip(path, path[1:], path[2:], strict=False):
                got = moves.filter(pl.col("dst") == hop)
                sent = moves.filter(pl.col("src") == hop)
                assert set(got["src"]) == {prev} and set(sent["dst"]) == {nxt}
                assert 0.95 <= sent["amount"].sum() / got["amount"].sum() <= 1.0
                wait = sent["t"].min() - got["t"].max()
                assert 0 < wait <= 3 * 3600 + 60
                assert hop not in traders
                n_hops += 1
    assert n_hops >= 4


def test_exchange_topup_members_are_created_by_exchanges_and_paid_by_the_controller(layered):
    ops, labels = layered["ops"], layered["labels"]
    exchanges = set(labels.filter(pl.col("role") == "exchange")["account"])
    created = dict(ops.filter(pl.col("type") == "create_account").select("account", "funder").iter_rows())
    pays = ops.filter(pl.col("type") == "payment")
    for ring in layered["meta"]["rings"]:
        assert ring["funding"] == "exchange_topup" and ring["top_ups"]
        paid = set(pays.filter(pl.col("from") == ring["controller"])["to"])
        for member in ring["members"]:
            assert created[member] in exchanges
            assert member in paid


def test_triangle_arbitrage_cycles_complete_within_seconds_with_a_profit(full):
    sides = _sides(full["trades"])
    traps, start = full["meta"]["traps"], full["meta"]["start_unix"]
    bots = traps["triangle_arbitrage_bots"]
    legs = sides.filter(pl.col("wallet").is_in(bots)).with_columns(
        slot=(pl.col("t") - start) // traps["triangle_slot_seconds"]).sort("id")
    cycles = legs.group_by("wallet", "slot").agg(
        n=pl.len(), span=pl.col("t").max() - pl.col("t").min(), gave=pl.col("gave"), got=pl.col("got"),
        gave_amount=pl.col("gave_amount"), got_amount=pl.col("got_amount"))
    assert cycles.height >= 20 and (cycles["n"] == 3).all() and (cycles["span"] <= 25).all()
    for row in cycles.iter_rows(named=True):
        gave, got = row["gave"], row["got"]
        assert gave[0] == "XLM" and got[2] == "XLM" and got[0] == gave[1] and got[1] == gave[2]
        assert len({gave[0], gave[1], gave[2]}) == 3  # three pairs, one asset around them
        assert row["gave_amount"][1] == row["got_amount"][0] and row["gave_amount"][2] == row["got_amount"][1]
        assert 1.0 < row["got_amount"][2] / row["gave_amount"][0] < 1.01


def test_airdrop_farmers_share_a_funder_and_trade_with_the_market_not_each_other(full):
    sides = _sides(full["trades"])
    created = dict(full["ops"].filter(pl.col("type") == "create_account").select("account", "funder").iter_rows())
    farms = full["meta"]["traps"]["airdrop_farms"]
    assert farms
    for farm in farms:
        assert len(farm["farmers"]) >= 8
        assert {created[a] for a in farm["farmers"]} == {farm["funder"]}
        theirs = sides.filter(pl.col("wallet").is_in(farm["farmers"]))
        assert theirs.height >= 2 * len(farm["farmers"])
        assert not theirs["counterparty"].is_in(farm["farmers"]).any()


def test_family_markets_ingest_with_nothing_quarantined(cycles, layered, tmp_path):
    files = pytest.importorskip("engine.ingest.files")
    from storage.store import Store

    for i, data in enumerate((cycles, layered)):
        market = data["summary"]
        with Store(tmp_path / f"s{i}.duckdb") as store:
            runs = files.ingest_files(store, [market.trades_path, market.operations_path])
            counts = store.counts()
        assert sum(r.n_quarantined for r in runs) == 0 and counts["quarantine"] == 0
        assert counts["trades"] == market.n_trades and counts["operations"] == market.n_operations


def test_cli_synth_selects_the_family(tmp_path, capsys):
    import argparse

    from engine.commands import synth
    from engine.settings import Settings

    parser = argparse.ArgumentParser()
    synth.register(parser.add_subparsers(dest="command"), argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(["synth", "--out", str(tmp_path / "m"), "--seed", "5", "--scale", "0.02", "--days", "2",
                              "--patterns", "cycle,ping_pong", "--exclude-funding", "chain", "--family-seed", "3"])
    assert args.handler(args, Settings()) == 0
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert {r["pattern"] for r in meta["rings"]} == {"cycle", "ping_pong"}
    assert "chain" not in {r["funding"] for r in meta["rings"]}
    assert meta["family"]["seed"] == 3 and "wrote" in capsys.readouterr().out
    bad = parser.parse_args(["synth", "--out", str(tmp_path / "x"), "--patterns", "loop"])
    with pytest.raises(BadInput, match="unknown pattern loop"):
        bad.handler(bad, Settings())

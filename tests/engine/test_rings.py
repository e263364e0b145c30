"""engine.graph.rings and `python -m engine rings`: rings are proposed by Louvain, decided by trade evidence."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from engine.graph import RingOptions, closed_loops, detect_rings, ring_features, ring_id_of
from engine.graph.rings import ring_recovery
from engine.schemas import OPERATIONS_SCHEMA, conform
from tests.engine import graph_cases
from tests.engine.graph_cases import (
    NO_FUNDING,
    PAIR,
    T0,
    ping_pong,
    three_cycle,
    trade,
    trades_frame,
)


def funding_frame(pairs):
    return graph_cases.funding_frame(pairs, at=T0 - timedelta(days=1))  # funded the day before trading


def exchange_forest(rng, *, n_customers=200, n_outsiders=30, start=1000):
    """One exchange funds 200 customers; each trades 3 times with random outsiders, never with each other."""
    customers = [f"CUST{i:03d}" for i in range(n_customers)]
    outsiders = [f"OUT{i:02d}" for i in range(n_outsiders)]
    funding = [("EXCHANGE", c) for c in customers] + [(f"BANK{i % 5}", o) for i, o in enumerate(outsiders)]
    rows, k = [], start
    for c in customers:
        for _ in range(3):
            o = outsiders[int(rng.integers(n_outsiders))]
            seller, buyer = (c, o) if rng.random() < 0.5 else (o, c)
            rows.append(trade(k, seller, buyer, minutes=int(rng.integers(0, 7 * 24 * 60)),
                              base=int(rng.integers(1, 500)) * 1_000_000, counter=int(rng.integers(1, 500)) * 1_000_000))
            k += 1
    return rows, funding_frame(funding), customers


def test_ping_pong_and_three_cycle_are_rings():
    result = detect_rings(trades_frame(ping_pong() + three_cycle()), NO_FUNDING)
    rings = {tuple(r["members"]): r for r in result.rings.to_dicts()}
    assert set(rings) == {("A", "B"), ("C", "D", "E")}
    ab, cde = rings[("A", "B")], rings[("C", "D", "E")]
    assert ab["ring_id"] == "ring_" + hashlib.sha256(b"A,B").hexdigest()[:12]
    assert (ab["size"], ab["n_trades"], ab["volume"], ab["n_pairs"]) == (2, 12, 1_200_000_000, 1)
    assert (ab["internal_density"], ab["reciprocity"], ab["closed_loop_share"]) == (1.0, 1.0, 1.0)
    assert (cde["size"], cde["n_trades"], cde["internal_density"], cde["reciprocity"]) == (3, 12, 1.0, 0.0)
    assert cde["closed_loop_share"] == 1.0 and cde["pairs"] == [PAIR]
    assert result.closed_loops.height == 2
    members = dict(result.ring_members.select("account_id", "n_trades").rows())
    assert members == {"A": 12, "B": 12, "C": 8, "D": 8, "E": 8}


def test_as_of_uses_only_earlier_trades():
    rows = ping_pong() + three_cycle()  # ping-pong ends at minute 26, the 3-cycle at minute 25
    early = detect_rings(trades_frame(rows), NO_FUNDING, as_of=T0 + timedelta(minutes=11))
    assert sorted(early.rings.get_column("members").to_list()) == [["A", "B"], ["C", "D", "E"]]
    assert sorted(early.rings.get_column("n_trades").to_list()) == [6, 6]  # 3 rounds of A<->B; 2 rounds of C->D->E
    assert detect_rings(trades_frame(rows), NO_FUNDING, as_of=T0 - timedelta(minutes=1)).rings.height == 0


def test_market_maker_with_fifty_counterparties_is_no_ring():
    one_way = [trade(i, "MM", f"X{i:02d}", minutes=i, base=(i + 3) * 10_000_000, counter=(i + 3) * 5_000_000) if i % 2 else
               trade(i, f"X{i:02d}", "MM", minutes=i, base=(i + 3) * 10_000_000, counter=(i + 3) * 5_000_000) for i in range(50)]
    both_ways = one_way + [trade(100 + i, f"X{i:02d}", "MM", minutes=200 + i, base=(i + 7) * 9_000_000, counter=(i + 7) * 4_600_000) if i % 2 else
                           trade(100 + i, "MM", f"X{i:02d}", minutes=200 + i, base=(i + 7) * 9_000_000, counter=(i + 7) * 4_600_000) for i in range(50)]
    assert detect_rings(trades_frame(one_way), NO_FUNDING).communities.height == 0  # nothing suspicious
    result = detect_rings(trades_frame(both_ways), NO_FUNDING)
    assert result.communities.height >= 1  # reciprocal edges make it a candidate ...
    assert result.rings.height == 0  # ... but a star is neither dense, nor inward, nor closed
    assert result.closed_loops.height == 0


def test_exchange_funding_forest_yields_no_rings():
    rows, funding, customers = exchange_forest(np.random.default_rng(7))
    result = detect_rings(trades_frame(rows), funding)
    assert result.communities.height > 0  # chance reciprocal edges with outsiders are proposed ...
    assert result.rings.height == 0  # ... and rejected on the evidence
    assert result.ring_members.height == 0
    # and a real ring hidden in the same market is still found, alone
    wash = ping_pong("W1", "W2", n=8, start=5000)
    result = detect_rings(trades_frame(rows + wash), funding)
    assert result.rings.get_column("members").to_list() == [["W1", "W2"]]
    feats = ring_features(result.ring_members, result.rings, wallets=pl.Series(customers + ["W1", "W2"]))
    assert feats.height == 202 and feats.get_column("in_ring").sum() == 2


def test_funded_reciprocal_clique_is_a_ring_without_closed_loops():
    members = ["K1", "K2", "K3", "K4"]
    rows, k = [], 0
    for i, a in enumerate(members):
        for b in members[i + 1:]:
            rows += [trade(k, a, b, minutes=k * 13, base=(k + 5) * 3_000_000),
                     trade(k + 1, b, a, minutes=k * 13 + 600, base=(k + 9) * 2_000_000)]
            k += 2
    rows += [trade(200 + j, "K1", f"OUT{j}", minutes=j * 31, base=7_000_000) for j in range(4)]
    funding = funding_frame([("BOSS", m) for m in members])
    result = detect_rings(trades_frame(rows), funding)
    assert result.closed_loops.height == 0
    ring = result.rings.to_dicts()
    assert [r["members"] for r in ring] == [members]
    assert ring[0]["funding_share"] == 1.0 and ring[0]["funding_depth"] == 1
    assert ring[0]["reciprocity"] == 1.0 and ring[0]["internal_density"] == 1.0
    assert ring[0]["internal_share"] == pytest.approx(12 / 16)
    # without the shared funder, 75% internal trades still make it inward-looking
    assert detect_rings(trades_frame(rows), NO_FUNDING).rings.height == 1


def test_ring_ids_are_stable_and_order_independent():
    rows, funding, _ = exchange_forest(np.random.default_rng(3))
    rows += ping_pong("W1", "W2", n=5, start=5000) + three_cycle("V1", "V2", "V3", start=6000)
    base = detect_rings(trades_frame(rows), funding)
    shuffled = trades_frame(rows).sample(fraction=1.0, shuffle=True, seed=11)
    again = detect_rings(shuffled, funding.reverse())
    assert base.rings.get_column("ring_id").to_list() == again.rings.get_column("ring_id").to_list()
    assert base.rings.equals(again.rings)
    assert base.ring_members.equals(again.ring_members)
    assert base.closed_loops.equals(again.closed_loops)
    assert sorted(base.rings.get_column("ring_id")) == sorted([ring_id_of(["W2", "W1"]), ring_id_of(["V3", "V1", "V2"])])
    other_seed = detect_rings(trades_frame(rows), funding, options=RingOptions(seed=99))
    assert other_seed.rings.get_column("ring_id").to_list() == base.rings.get_column("ring_id").to_list()


def test_igraph_path_gives_the_same_rings():
    rows = ping_pong() + three_cycle()
    small = detect_rings(trades_frame(rows), NO_FUNDING)
    big = detect_rings(trades_frame(rows), NO_FUNDING, options=RingOptions(louvain_max_edges=0))
    assert small.rings.equals(big.rings)


def test_ring_features_columns_and_values():
    result = detect_rings(trades_frame(ping_pong() + three_cycle()), NO_FUNDING)
    feats = ring_features(result.ring_members, result.rings, wallets=pl.Series(["A", "C", "Z"]))
    assert feats.columns == ["wallet", "ring_id", "ring_size", "ring_density", "ring_closed_loop_share", "in_ring"]
    assert feats.rows() == [
        ("A", ring_id_of(["A", "B"]), 2, 1.0, 1.0, True),
        ("C", ring_id_of(["C", "D", "E"]), 3, 1.0, 1.0, True),
        ("Z", None, None, None, None, False),
    ]
    assert ring_features(result.ring_members, result.rings).height == 5


def _operations(funding: pl.DataFrame) -> pl.DataFrame:
    ops = funding.with_columns(
        pl.lit(True).alias("successful"), pl.col("from_account").alias("source_account"),
        pl.lit("tx").alias("tx_hash"), pl.lit("synthetic").alias("source"),
    )
    return conform(ops, OPERATIONS_SCHEMA)


def test_cli_persists_rings_members_and_loops(store, tmp_path, capsys):
    from engine.cli import main

    rows = ping_pong() + three_cycle()
    store.write_batch(run_id=None, trades=trades_frame(rows), operations=_operations(funding_frame([("F", "A"), ("F", "B")])))
    path = store.path
    store.close()
    assert main(["rings", "--db", str(path), "--seed", "5"]) == 0
    assert "2 rings (5 wallets)" in capsys.readouterr().out
    from storage.store import Store

    with Store(path) as s:
        rings = s.load_derived("rings")
        assert sorted(rings.get_column("ring_id")) == sorted([ring_id_of(["A", "B"]), ring_id_of(["C", "D", "E"])])
        ab = rings.filter(pl.col("ring_id") == ring_id_of(["A", "B"])).to_dicts()[0]
        assert ab["funding_share"] == 1.0 and ab["members"] == ["A", "B"]
        assert s.load_derived("ring_members").height == 5
        assert s.load_derived("closed_loops").get_column("n_trades").sum() == 24


def test_ring_recovery_scores():
    found = pl.DataFrame({"ring_id": ["x", "x", "y", "y"], "account_id": ["A", "B", "C", "Q"]})
    labels = pl.DataFrame({"account_id": ["A", "B", "C", "D", "E", "Z"], "ring_id": ["r1", "r1", "r2", "r2", "r2", None]})
    rec = ring_recovery(found, labels)
    assert rec["wallet_precision"] == 3 / 4 and rec["wallet_recall"] == 3 / 5
    assert rec["ring_recall"] == 1 / 2 and rec["ring_precision"] == 1 / 2  # y~r2 has Jaccard 1/4
    assert (rec["n_true_rings"], rec["n_found_rings"]) == (2, 2)


def test_rings_on_a_simulated_market(tmp_path, store, capsys):
    synthetic = pytest.importorskip("engine.synthetic", reason="simulator not available")
    files = pytest.importorskip("engine.ingest.files", reason="files loader not available")
    summary = synthetic.generate_market(tmp_path / "market", seed=7, scale=0.2, days=7)
    files.ingest_files(store, [summary.trades_path, summary.operations_path])
    trades, funding = store.trades(), store.funding_edges()
    result = detect_rings(trades, funding)
    labels = pl.read_csv(summary.labels_path).select(
        pl.col("account").alias("account_id"),
        pl.when(pl.col("is_wash") == 1).then(pl.col("ring_id").cast(pl.String)).alias("ring_id"),
    )
    traders = pl.concat([trades.get_column("seller_account"), trades.get_column("buyer_account")]).unique()
    rec = ring_recovery(result.ring_members, labels.filter(pl.col("account_id").is_in(traders.implode())))
    with capsys.disabled():
        print(f"\nsimulated market ({trades.height:,} trades, {summary.n_rings} rings): "
              + ", ".join(f"{k}={v:.3f}" for k, v in rec.items()))
    assert rec["n_true_rings"] == summary.n_rings
    assert rec["wallet_precision"] >= 0.8 and rec["wallet_recall"] >= 0.7
    assert rec["ring_recall"] >= 0.6 and rec["ring_precision"] >= 0.6
    # wallets the simulator labels as honest market makers and exchanges are never ring members
    roles = pl.read_csv(summary.labels_path).select(pl.col("account").alias("account_id"), "role")
    member_roles = result.ring_members.join(roles, on="account_id").get_column("role").unique().to_list()
    assert "market_maker" not in member_roles and "exchange" not in member_roles


def _hub_and_spokes(spokes, *, rounds=5):
    """A hub ping-ponging a lot with each spoke in turn (round lots, one spoke per minute pair)."""
    rows, i = [], 0
    for r in range(rounds):
        for s in spokes:
            lot = (r + 3) * 10**8
            rows += [trade(i, "HUB", s, minutes=10 * i, base=lot), trade(i + 1, s, "HUB", minutes=10 * i + 3, base=lot)]
            i += 2
    return rows


def test_a_hub_ping_ponging_spokes_it_funded_with_them_is_a_ring_but_not_a_book():
    rows = _hub_and_spokes(["S1", "S2"])
    # the same hub and spokes with no funding between them: a maker and two clients, no ring of three
    unfunded = detect_rings(trades_frame(rows), NO_FUNDING)
    assert unfunded.rings.filter(pl.col("size") > 2).height == 0
    # one controller funded all three: the star is its hub and spokes
    funded = detect_rings(trades_frame(rows), funding_frame([("CTRL", "HUB"), ("CTRL", "S1"), ("CTRL", "S2")]))
    assert funded.rings.get_column("members").to_list() == [["HUB", "S1", "S2"]]


def test_a_wallet_that_met_a_funded_hub_once_is_no_spoke_of_its_ring():
    # HUB and S1 ping-pong; PASSER, paid by S1 and so its funding kin, sold to HUB once
    rows = _hub_and_spokes(["S1"], rounds=10) + [trade(100, "PASSER", "HUB", minutes=7, base=3 * 10**8)]
    funding = funding_frame([("CTRL", "HUB"), ("CTRL", "S1"), ("S1", "PASSER")])
    found = detect_rings(trades_frame(rows), funding)
    assert found.rings.get_column("members").to_list() == [["HUB", "S1"]]


TOKEN, MAJOR_1, MAJOR_2 = "VELO:GISSUER", "XLM:native", "USDC:GISSUER"


def _two_pair_cycle(members, *, rounds=6, split="by_edge"):
    """`members` pass TOKEN round a directed cycle, paying in MAJOR_1 or MAJOR_2: by_edge, each
    edge always in the same pair (so no pair on its own holds a loop); by_leg, alternating."""
    pairs = (f"{TOKEN}/{MAJOR_1}", f"{TOKEN}/{MAJOR_2}")
    rows, k = [], len(members)
    for r in range(rounds):
        for j in range(k):
            i = r * k + j
            pair = pairs[j % 2] if split == "by_edge" else pairs[i % 2]
            rows.append(trade(i, members[j], members[(j + 1) % k], minutes=4 * i, base=7 * 10**8, pair=pair))
    return rows


@pytest.mark.parametrize("split", ["by_edge", "by_leg"])
def test_a_token_passed_round_a_cycle_across_two_pairs_is_a_closed_loop_and_a_ring(split):
    names = ["P1", "P2", "P3", "P4"]
    rows = _two_pair_cycle(names, split=split)
    frame = trades_frame(rows)
    if split == "by_edge":  # no pair holds a loop on its own ...
        assert closed_loops(frame).height == 0
    result = detect_rings(frame, funding_frame([("CTRL", n) for n in names]))
    loops = result.closed_loops
    assert loops.get_column("pair_id").unique().len() == 2  # ... the cross-pair loop is reported in each pair
    looped = set(loops.get_column("trade_ids").explode().to_list())
    assert looped == {r["id"] for r in rows}  # every leg, none twice
    assert result.rings.get_column("members").to_list() == [names]


def test_an_arbitrage_round_through_three_pairs_with_a_maker_in_each_is_no_ring():
    # the bot buys TOKEN with XLM, sells it for USDC, buys XLM with USDC, every few seconds, each leg
    # against a different maker who also trades with the crowd: a cycle across pairs, not a ring
    pairs = (f"{TOKEN}/{MAJOR_1}", f"{TOKEN}/{MAJOR_2}", f"{MAJOR_2}/{MAJOR_1}")
    rows, i = [], 0
    for r in range(20):
        rows += [trade(i, "MK1", "BOT", minutes=30 * r, base=5 * 10**8, pair=pairs[0]),
                 trade(i + 1, "BOT", "MK2", minutes=30 * r, base=5 * 10**8, pair=pairs[1]),
                 trade(i + 2, "MK3", "BOT", minutes=30 * r, base=3 * 10**8, pair=pairs[2], sells_base=False)]
        rows += [trade(i + 3 + c, f"C{c}{r}", f"MK{c + 1}", minutes=30 * r + 5 + c, base=4 * 10**8, pair=pairs[c])
                 for c in range(3)]
        i += 6
    assert detect_rings(trades_frame(rows), NO_FUNDING).rings.height == 0

"""engine.graph: funding lineage, co-trade graph, closed loops, snapshots (small hand-made frames)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from engine.graph import (
    ancestors,
    closed_loops,
    cotrade_graph,
    exchange_like,
    funding_parents,
    funding_roots,
    funding_siblings,
    loop_trades,
    shared_ancestors,
    snapshot_edges,
)
from tests.engine import graph_cases
from tests.engine.graph_cases import (
    T0,
    ping_pong,
    three_cycle,
    trade,
    trades_frame,
)

funding_frame = graph_cases.funding_frame


# -- funding -------------------------------------------------------------------------------


def test_ancestors_depth_four_on_a_chain_of_six():
    chain = [f"F{i}" for i in range(6)]
    anc = ancestors(funding_frame(list(zip(chain[:-1], chain[1:], strict=True))), depth=4, collapse_hops=False)
    f5 = anc.filter(pl.col("account_id") == "F5")
    assert f5.get_column("ancestor").to_list() == ["F4", "F3", "F2", "F1"]
    assert f5.get_column("depth").to_list() == [1, 2, 3, 4]
    assert anc.height == 1 + 2 + 3 + 4 + 4  # F1..F5, each capped at 4 hops
    assert anc.filter(pl.col("account_id") == "F2").get_column("ancestor").to_list() == ["F1", "F0"]
    assert ancestors(funding_frame(list(zip(chain[:-1], chain[1:], strict=True))), depth=2, collapse_hops=False).height == 1 + 2 + 2 + 2 + 2


def test_ancestors_stop_at_high_fanout_funders():
    edges = [("G", "H")] + [("H", f"C{i:02d}") for i in range(60)] + [("C00", "D")]
    frame = funding_frame(edges)
    assert exchange_like(frame, max_fanout=50).to_dicts() == [{"account_id": "H", "n_funded": 60}]
    anc = ancestors(frame, depth=4, max_fanout=50, collapse_hops=False)
    assert anc.filter(pl.col("account_id") == "D").select("ancestor", "depth").rows() == [("C00", 1)]
    assert anc.filter(pl.col("account_id").str.starts_with("C")).height == 0  # the hot wallet is no lineage
    assert anc.height == 2  # H <- G, D <- C00
    kept = ancestors(frame, depth=4, max_fanout=50, keep_exchange=True, collapse_hops=False)
    assert kept.filter(pl.col("account_id") == "D").select("ancestor", "depth").rows() == [("C00", 1), ("H", 2)]
    assert kept.height == 1 + 60 + 2  # G not reached past H
    assert ancestors(frame, depth=4, max_fanout=100, collapse_hops=False).filter(pl.col("account_id") == "D").height == 3


def test_ancestors_terminate_on_funding_cycles_and_respect_as_of():
    frame = funding_frame([("X", "Y"), ("Y", "Z"), ("Z", "X")], kind="payment")
    anc = ancestors(frame, depth=4, collapse_hops=False)
    assert anc.filter(pl.col("account_id") == "X").select("ancestor", "depth").rows() == [("Z", 1), ("Y", 2)]
    assert anc.height == 6
    early = ancestors(frame, depth=4, as_of=T0 + timedelta(seconds=0), collapse_hops=False)
    assert early.rows() == [("Y", "X", 1)]


def test_funding_parents_prefer_creator_and_cap():
    rows = funding_frame([("P1", "K"), ("P2", "K"), ("P3", "K"), ("P4", "K")], kind="payment")
    rows = rows.with_columns(pl.when(pl.col("from_account") == "P4").then(pl.lit("create_account"))
                             .otherwise(pl.col("type")).alias("type"))
    parents = funding_parents(rows, max_parents=3)
    assert parents.get_column("funder").to_list() == ["P4", "P1", "P2"]


def test_siblings_and_roots():
    frame = funding_frame([("R", "M"), ("M", "S1"), ("M", "S2"), ("R", "S3"), ("Q", "O")])
    sib = funding_siblings(frame, depth=4, collapse_hops=False)  # the tree itself (every hop forwards all)
    got = {(a, b): (anc, d) for a, b, anc, d in sib.rows()}
    assert got[("S1", "S2")] == ("M", 1)
    assert got[("S1", "S3")] == ("R", 2)
    assert got[("M", "S1")] == ("M", 1)  # one funded the other
    assert ("O", "S1") not in got
    only = funding_siblings(frame, depth=4, accounts=pl.Series(["S1", "S2", "O"]), collapse_hops=False)
    assert only.select("account_a", "account_b").rows() == [("S1", "S2")]
    roots = dict(funding_roots(frame, collapse_hops=False).select("account_id", "root").rows())
    assert roots == {"M": "R", "S1": "R", "S2": "R", "S3": "R", "O": "Q"}
    hub = funding_frame([("H", f"C{i:02d}") for i in range(60)])
    assert funding_siblings(hub, max_fanout=50).height == 0
    assert funding_roots(hub, max_fanout=50).filter(pl.col("root") == pl.col("account_id")).height == 60


# -- co-trade ------------------------------------------------------------------------------


def test_cotrade_graph_counts_and_excludes_pools():
    rows = ping_pong(n=2) + [trade(50, "B", "C", minutes=1, base=30_000_000)]
    pool = trade(51, "A", None, minutes=2)
    pool["buyer_pool_id"] = "pool1"
    g = cotrade_graph(trades_frame(rows + [pool]))
    assert g.rows() == [("A", "B", 4, 400_000_000, 1, 2, 2), ("B", "C", 1, 30_000_000, 1, 1, 0)]


# -- closed loops --------------------------------------------------------------------------


def test_ping_pong_and_three_cycle_are_closed_loops():
    loops = closed_loops(trades_frame(ping_pong() + three_cycle()))
    assert loops.height == 2
    by_members = {tuple(m): r for m, r in zip(loops.get_column("members").to_list(), loops.to_dicts(), strict=True)}
    assert by_members[("A", "B")]["n_trades"] == 12
    assert by_members[("A", "B")]["volume"] == 12 * 100_000_000
    assert by_members[("A", "B")]["window"] == "1h"
    assert by_members[("C", "D", "E")]["n_trades"] == 12
    assert all(lid.startswith("loop_") and len(lid) == 17 for lid in loops.get_column("loop_id"))
    assert loop_trades(loops).height == 24


def test_loop_straddling_hours_is_found_at_day_window():
    rows = [trade(0, "A", "B", minutes=50), trade(1, "B", "A", minutes=70)]
    loops = closed_loops(trades_frame(rows))
    assert loops.select("window", "n_trades").rows() == [("1d", 2)]


def test_unbalanced_cycle_is_not_a_loop():
    rows = [trade(0, "A", "B", minutes=1, base=100_000_000, counter=50_000_000),
            trade(1, "B", "A", minutes=2, base=50_000_000, counter=30_000_000)]
    assert closed_loops(trades_frame(rows)).height == 0
    # 0.5% drift in the base amount is tolerated; 2% is not
    ok = [trade(0, "A", "B", minutes=1, base=100_000_000, counter=50_000_000),
          trade(1, "B", "A", minutes=2, base=100_500_000, counter=52_000_000)]
    assert closed_loops(trades_frame(ok)).height == 1
    off = [trade(0, "A", "B", minutes=1, base=100_000_000, counter=50_000_000),
           trade(1, "B", "A", minutes=2, base=102_000_000, counter=52_000_000)]
    assert closed_loops(trades_frame(off)).height == 0


def test_balance_modes():
    # money-sized lots: the counter side is flat, the base side drifts with the price
    money = [trade(0, "A", "B", minutes=1, base=100_000_000, counter=50_000_000),
             trade(1, "B", "A", minutes=2, base=90_000_000, counter=50_000_000)]
    assert closed_loops(trades_frame(money)).height == 1
    assert closed_loops(trades_frame(money), balance="base").height == 0
    token = [trade(0, "A", "B", minutes=1, counter=50_000_000), trade(1, "B", "A", minutes=2, counter=51_000_000)]
    assert closed_loops(trades_frame(token), balance="base").height == 1
    assert closed_loops(trades_frame(token), balance="both").height == 0


def test_market_maker_with_fifty_counterparties_is_not_a_loop():
    rows = [trade(i, "MM", f"X{i:02d}", minutes=i, base=(i + 3) * 10_000_000, counter=(i + 3) * 5_000_000) if i % 2 else
            trade(i, f"X{i:02d}", "MM", minutes=i, base=(i + 3) * 10_000_000, counter=(i + 3) * 5_000_000) for i in range(50)]
    assert closed_loops(trades_frame(rows)).height == 0


def test_peeling_separates_a_wash_pair_inside_a_busy_component():
    # A<->B wash 6 times each way; A, B and C also trade once around a cycle with different sizes.
    rows = ping_pong(n=6) + [trade(60, "A", "C", minutes=3, base=7_000_000), trade(61, "C", "B", minutes=4, base=9_000_000)]
    rows += [trade(62, "B", "C", minutes=8 * 60 * 24, base=3_000_000)]
    loops = closed_loops(trades_frame(rows))
    assert loops.get_column("members").to_list() == [["A", "B"]]
    assert loops.get_column("n_trades").to_list() == [12]


# -- snapshots -----------------------------------------------------------------------------


def test_snapshot_edges_window_and_kinds():
    rows = ping_pong(n=2)
    pool = trade(9, "A", None, minutes=3)
    pool["buyer_pool_id"] = "pool1"
    funding = funding_frame([("F", "A"), ("F", "B")])
    snap = snapshot_edges(trades_frame(rows + [pool]), funding, start=T0, end=T0 + timedelta(minutes=6))
    assert snap.get_column("kind").value_counts().sort("kind").rows() == [("funding", 2), ("trade", 4)]
    assert snap.get_column("timestamp").is_sorted()
    assert snap.filter(pl.col("kind") == "trade").select("src", "dst").rows() == [
        ("A", "B"), ("B", "A"), ("A", "pool1"), ("A", "B")]  # ordered by time
    assert snap.schema["amount"] == pl.Int64 and snap.get_column("amount").sum() == 2 * 10**8 + 4 * 10**8
    assert snapshot_edges(trades_frame(rows), funding, start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2)).height == 0


def test_shared_ancestors_only_for_given_pairs():
    frame = funding_frame([("R", "M"), ("M", "S1"), ("M", "S2"), ("R", "S3"), ("Q", "O")])
    anc = ancestors(frame, depth=4, collapse_hops=False)
    pairs = pl.DataFrame({"account_a": ["S1", "M", "O", "S1"], "account_b": ["S2", "S1", "S1", "S3"]})
    got = shared_ancestors(anc, pairs).rows()
    assert got == [("M", "S1", "M", 1), ("S1", "S2", "M", 1), ("S1", "S3", "R", 2)]


# -- lineage through throwaway hops and top-ups ------------------------------------------------


def _edges(rows):
    """(funder, account, seconds after T0, XLM, kind) -> funding edges."""
    return pl.DataFrame(
        [{"id": i, "ledger": 10 + i, "closed_at": T0 + timedelta(seconds=s), "type": kind, "from_account": a,
          "to_account": b, "asset": "XLM:native", "amount": int(xlm * 10**7)} for i, (a, b, s, xlm, kind) in enumerate(rows)],
        schema=graph_cases.FUNDING_SCHEMA,
    )


def test_members_funded_through_their_own_chains_of_hops_are_siblings():
    rows = [("EXCH", f"U{i}", i, 50, "create_account") for i in range(60)]  # an exchange
    rows += [("EXCH", "CTRL", 100, 5000, "create_account")]
    chains = {"M1": ["H1"], "M2": ["H2a", "H2b"], "M3": ["H3a", "H3b", "H3c"]}
    t = 200
    for member, hops in chains.items():
        path = ["CTRL", *hops, member]
        for a, b in zip(path[:-1], path[1:], strict=True):
            rows.append((a, b, t, 300 - t / 100, "create_account"))  # each hop passes on almost everything
            t += 60
    rows.append(("U1", "M4", t, 40, "create_account"))  # a customer's own wallet: no hop (U1 keeps most)
    anc = ancestors(_edges(rows), depth=4)
    parents = dict(anc.filter(pl.col("depth") == 1).select("account_id", "ancestor").rows())
    assert [parents[m] for m in ("M1", "M2", "M3")] == ["CTRL"] * 3
    sib = funding_siblings(_edges(rows), depth=4)
    got = {(a, b): d for a, b, _, d in sib.rows()}
    assert got[("M1", "M2")] == got[("M2", "M3")] == 1
    assert ("M1", "M4") not in got and "EXCH" not in set(anc.get_column("ancestor"))  # the exchange stops the walk
    without = funding_siblings(_edges(rows), depth=4, collapse_hops=False)
    assert without.filter((pl.col("account_a") == "M1") & (pl.col("account_b") == "M3")).get_column("depth").to_list() == [4]


def test_top_up_from_a_common_payer_after_exchange_funding_is_shared_funding():
    rows = [("EXCH", f"U{i}", i, 50, "create_account") for i in range(60)]
    rows += [("EXCH", "W1", 100, 20, "create_account"), ("EXCH", "W2", 101, 20, "create_account"),
             ("EXCH", "W3", 102, 20, "create_account")]
    rows += [("BOSS", "W1", 5000, 900, "payment"), ("BOSS", "W2", 5100, 900, "payment")]
    parents = dict(funding_parents(_edges(rows).filter(pl.col("from_account") != "EXCH")).select("account_id", "funder").rows())
    assert parents == {"W1": "BOSS", "W2": "BOSS"}
    sib = funding_siblings(_edges(rows), depth=4)
    assert sib.filter(pl.col("account_a").str.starts_with("W")).select("account_a", "account_b", "ancestor").rows() == [
        ("W1", "W2", "BOSS")]


def test_account_keys_keep_the_order_of_ids_and_decode_back():
    from engine.graph.account_keys import account_names, decode, decode_lists, encode_columns

    ids = pl.Series(["GC", "GA", None, "GB", "GA"])
    names = account_names(ids, pl.Series(["GZ", "GB"]))
    assert names.to_list() == ["GA", "GB", "GC", "GZ"]
    frame = encode_columns(pl.DataFrame({"seller": ids, "buyer": ids.reverse()}), names, ("seller", "buyer"))
    assert frame.get_column("seller").to_list() == [2, 0, None, 1, 0]  # row order kept, nulls stay null
    # comparisons on keys give the answers they give on ids
    pairs = frame.drop_nulls().select(pl.min_horizontal("seller", "buyer").alias("lo"),
                                      pl.max_horizontal("seller", "buyer").alias("hi"))
    decoded = pairs.select(decode("lo", names), decode("hi", names).alias("hi"))
    assert decoded.rows() == [("GA", "GC"), ("GA", "GB"), ("GA", "GB"), ("GA", "GC")]
    lists = decode_lists(pl.DataFrame({"m": [[0, 3], [], [1]]}), "m", names)
    assert lists.get_column("m").to_list() == [["GA", "GZ"], [], ["GB"]]


def test_closed_loops_at_given_levels_equal_their_own_plan():
    from engine.graph.closed_loops import loop_edges, loop_levels

    rows = ping_pong(n=6) + three_cycle(n=4) + ping_pong("P", "Q", n=2, start=300)
    trades = trades_frame(rows)
    levels = loop_levels(loop_edges(trades))
    assert levels and levels == sorted(levels)
    assert closed_loops(trades, levels=levels).equals(closed_loops(trades))
    assert closed_loops(trades, levels=[]).height == 0


def test_lineage_is_the_same_whatever_the_order_of_the_funding_records():
    # The store records each hop's creation twice: as a funding edge (XLM moved) and as the
    # account's funder (no asset), at the same close time. Whichever row comes first, the
    # hop is seen as one (it passed on its XLM) and the members are the controller's.
    from engine.features.funding_features import ancestors_from_edges

    rows = [("CTRL", "H1", 10, 300, "create_account"), ("H1", "M1", 70, 295, "create_account"),
            ("CTRL", "H2", 20, 300, "create_account"), ("H2", "M2", 80, 296, "create_account")]
    edges = _edges(rows).select("closed_at", "type", "from_account", "to_account", "asset", "amount")
    accounts = edges.select(account_id="to_account", created_at="closed_at", funder="from_account")
    as_of = T0 + timedelta(days=1)
    runs = {tuple(ancestors_from_edges(edges.sample(fraction=1.0, shuffle=True, seed=seed),
                                 accounts.sample(fraction=1.0, shuffle=True, seed=seed + 1), as_of=as_of).rows())
            for seed in range(8)}  # fmt: skip
    assert len(runs) == 1
    depth_one = {(a, anc) for a, anc, d in next(iter(runs)) if d == 1}
    assert {("M1", "CTRL"), ("M2", "CTRL")} <= depth_one

"""Closed loops that hold on markets we did not write: directed cycles of any length, cut by
bucket edges, jittered or log-normal lots, camouflage with outsiders, legs through a pool."""

from __future__ import annotations

import importlib
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from engine.graph import closed_loops, detect_rings
from engine.graph.closed_loops import trader_loops
from engine.graph.cotrade import pool_routed_trades, trader_trades
from tests.engine.graph_cases import NO_FUNDING, PAIR, trade, trades_frame

closed_loops_module = importlib.import_module("engine.graph.closed_loops")  # the package exports the function


def cycle(members, *, rounds, lots, start=0, gap_minutes=3, first_id=0):
    """`members` pass a lot round: m0 sells to m1, ..., the last sells to m0, `rounds` times.

    `lots`: one lot per round (same lot along the legs of a round) or per leg (2-D)."""
    rows, k, i = [], len(members), first_id
    lots = np.asarray(lots, dtype=float)
    for r in range(rounds):
        for j in range(k):
            lot = lots[r, j] if lots.ndim == 2 else lots[r]
            rows.append(trade(i, members[j], members[(j + 1) % k], minutes=start + gap_minutes * (r * k + j),
                              base=int(lot), counter=int(lot) // 2))
            i += 1
    return rows


def members_of(loops: pl.DataFrame) -> set[tuple[str, ...]]:
    return {tuple(m) for m in loops.get_column("members").to_list()}


@pytest.mark.parametrize("k", [3, 5, 8])
def test_directed_cycles_of_any_length_straddling_hours(k):
    names = [f"W{i}" for i in range(k)]
    # 7 rounds every 3 minutes: the hour edges cut rounds; one direction per member pair
    loops = closed_loops(trades_frame(cycle(names, rounds=7, lots=[10**9] * 7, start=41)))
    assert loops.height >= 1
    assert members_of(loops) == {tuple(sorted(names))}
    assert int(loops.get_column("n_trades").sum()) >= k * 6


def test_lognormal_lots_per_round_and_jittered_legs():
    rng = np.random.default_rng(3)
    per_round = np.exp(rng.normal(np.log(5e8), 1.0, 9))
    loops = closed_loops(trades_frame(cycle(["A", "B", "C", "D"], rounds=9, lots=per_round)))
    assert members_of(loops) == {("A", "B", "C", "D")}
    jittered = 5e8 * rng.uniform(0.96, 1.04, (9, 4))
    loops = closed_loops(trades_frame(cycle(["A", "B", "C", "D"], rounds=9, lots=jittered)))
    assert members_of(loops) == {("A", "B", "C", "D")}


def test_cycle_found_when_a_third_of_members_trades_are_with_outsiders():
    rng = np.random.default_rng(5)
    ring = cycle(["A", "B", "C"], rounds=10, lots=[3e8] * 10, gap_minutes=2)
    camo = [trade(500 + i, ["A", "B", "C"][i % 3] if i % 2 else f"O{i}", f"O{i}" if i % 2 else ["A", "B", "C"][i % 3],
                  minutes=int(rng.integers(0, 60)), base=int(rng.uniform(1e7, 9e8))) for i in range(15)]
    loops = closed_loops(trades_frame(ring + camo))
    assert members_of(loops) == {("A", "B", "C")}
    assert int(loops.get_column("n_trades").sum()) >= 27


def test_unbalanced_chain_and_one_way_flow_are_no_loops():
    # A -> B -> C -> A, but each member keeps accumulating: lots double every leg
    lots = np.array([[1e8 * 2 ** (j + 3 * r) for j in range(3)] for r in range(3)])
    assert closed_loops(trades_frame(cycle(["A", "B", "C"], rounds=3, lots=lots / 64))).height == 0
    one_way = [trade(i, "A", "B", minutes=i) for i in range(10)]
    assert closed_loops(trades_frame(one_way)).height == 0


def test_a_hub_whose_counterparties_each_round_trip_is_no_loop():
    rows = []
    for i in range(12):
        rows += [trade(2 * i, "MM", f"X{i}", minutes=2 * i, base=(i + 3) * 10**7),
                 trade(2 * i + 1, f"X{i}", "MM", minutes=2 * i + 1, base=(i + 3) * 10**7)]
    loops = closed_loops(trades_frame(rows))
    assert all(len(m) == 2 for m in loops.get_column("members").to_list())  # pairs at most, never the star
    assert detect_rings(trades_frame(rows), NO_FUNDING).rings.filter(pl.col("size") > 2).height == 0


def test_a_market_makers_regular_client_trading_both_ways_is_no_loop():
    # the client does all its trades with the maker and ends flat, but the maker serves
    # 150 others in the same hour: the client's 12 trades are 7% of the maker's
    regular = [trade(i, "MM" if i % 2 else "CL", "CL" if i % 2 else "MM", minutes=4 * i + 1, base=2 * 10**8)
               for i in range(12)]
    crowd = [trade(100 + i, "MM" if i % 2 else f"O{i}", f"O{i}" if i % 2 else "MM", minutes=i % 60,
                   base=(i % 7 + 1) * 10**7) for i in range(150)]
    assert closed_loops(trades_frame(regular + crowd)).height == 0
    # the same two alone, or with a third of their trades with outsiders, wash: a loop
    assert members_of(closed_loops(trades_frame(regular))) == {("CL", "MM")}
    assert members_of(closed_loops(trades_frame(regular + crowd[:8]))) == {("CL", "MM")}


def _pool_leg(i, account, *, minutes, seconds, sells, base=4 * 10**8):
    """`account` sells the base into the pool (sells=True) or buys the base out of it."""
    row = trade(i, account if sells else None, None if sells else account, minutes=minutes, base=base)
    row["closed_at"] = row["closed_at"] + timedelta(seconds=seconds)
    row["trade_type"] = "liquidity_pool"
    row["buyer_pool_id" if sells else "seller_pool_id"] = "a" * 64
    return row


def test_legs_through_a_pool_count_as_trades_between_the_two_accounts():
    rows, i = [], 0
    for r in range(6):  # A -> B on the book, B -> (pool) -> C, C -> A on the book
        rows.append(trade(i, "A", "B", minutes=10 * r, base=4 * 10**8))
        rows.append(_pool_leg(i + 1, "B", minutes=10 * r + 2, seconds=0, sells=True))
        rows.append(_pool_leg(i + 2, "C", minutes=10 * r + 2, seconds=6, sells=False, base=4 * 10**8 - 10**6))
        rows.append(trade(i + 3, "C", "A", minutes=10 * r + 5, base=4 * 10**8))
        i += 4
    frame = trades_frame(rows)
    routed = pool_routed_trades(frame)
    assert routed.height == 6 and set(zip(routed["seller"], routed["buyer"], strict=True)) == {("B", "C")}
    assert members_of(closed_loops(frame)) == {("A", "B", "C")}
    assert closed_loops(frame, via_pools=False).height == 0
    # the leg out may wait several ledgers (45 s after the leg in) and is still routed ...
    slow = trades_frame([r if r.get("seller_pool_id") is None else {**r, "closed_at": r["closed_at"] + timedelta(seconds=39)}
                         for r in rows])
    assert pool_routed_trades(slow).height == 6
    # ... but a purchase out of the pool over a minute later, or of another size, is someone else's
    late = trades_frame([r if r.get("seller_pool_id") is None else {**r, "closed_at": r["closed_at"] + timedelta(seconds=60)}
                         for r in rows])
    assert pool_routed_trades(late).height == 0
    other = trades_frame([r if r.get("seller_pool_id") is None else {**r, "sold_amount": r["sold_amount"] // 2}
                          for r in rows])
    assert pool_routed_trades(other).height == 0


def test_directed_cycle_becomes_a_ring_without_any_reciprocal_pair():
    rows = cycle(["P", "Q", "R", "S", "T"], rounds=8, lots=[2e8] * 8)
    result = detect_rings(trades_frame(rows), NO_FUNDING)
    assert result.rings.height == 1
    ring = result.rings.row(0, named=True)
    assert ring["members"] == ["P", "Q", "R", "S", "T"] and ring["reciprocity"] == 0.0
    assert ring["closed_loop_share"] >= 0.8
    assert PAIR in ring["pairs"]


def test_a_cycle_stored_from_either_asset_is_still_a_cycle():
    # A -> B -> C -> A in the base asset; some legs stored as the counter's sale the other way round
    rows, i = [], 0
    for r in range(5):
        for j, (giver, taker) in enumerate((("A", "B"), ("B", "C"), ("C", "A"))):
            flipped = (r + j) % 2 == 1
            rows.append(trade(i, taker if flipped else giver, giver if flipped else taker, minutes=10 * i,
                              base=3 * 10**8, counter=10**8, sells_base=not flipped))
            i += 1
    loops = closed_loops(trades_frame(rows))
    assert members_of(loops) == {("A", "B", "C")}
    assert int(loops.get_column("n_trades").sum()) >= 12


def test_a_loop_lists_both_stored_trades_of_a_leg_through_a_pool():
    rows = []
    for r in range(4):
        rows.append(trade(4 * r, "A", "B", minutes=10 * r, base=4 * 10**8))
        rows.append(_pool_leg(4 * r + 1, "B", minutes=10 * r + 2, seconds=0, sells=True))
        rows.append(_pool_leg(4 * r + 2, "C", minutes=10 * r + 2, seconds=5, sells=False))
        rows.append(trade(4 * r + 3, "C", "A", minutes=10 * r + 5, base=4 * 10**8))
    ids = set(closed_loops(trades_frame(rows)).get_column("trade_ids").explode().to_list())
    assert ids == {row["id"] for row in rows}  # the sale into the pool and the purchase out of it


@pytest.mark.parametrize("spread", [1, 2**40])
def test_accounts_as_integer_keys_find_the_loops_their_ids_find(spread):
    """The rings step searches integer account keys (engine.graph.account_keys), which may be far
    apart; with them the search finds the loops the ids find."""
    rng = np.random.default_rng(11)
    rows = cycle(["A", "B", "C", "D"], rounds=8, lots=[4e8] * 8) + cycle(["B", "E", "F"], rounds=6, lots=[2e8] * 6,
                                                                         start=300, first_id=100)  # fmt: skip
    rows += [trade(500 + i, f"O{i % 4}", ["A", "C", "E"][i % 3], minutes=int(rng.integers(0, 400)),
                   base=int(rng.uniform(1e7, 9e8))) for i in range(30)]  # fmt: skip
    tt = trader_trades(trades_frame(rows))
    by_id = trader_loops(tt)
    ids = pl.concat([tt.get_column("seller"), tt.get_column("buyer")]).unique().sort()
    key = dict(zip(ids, (np.arange(len(ids), dtype=np.int64) - 3) * spread, strict=True))
    keyed = tt.with_columns(pl.col(c).replace_strict(key, return_dtype=pl.Int64) for c in ("seller", "buyer"))
    by_key = trader_loops(keyed).with_columns(
        pl.col("members").list.eval(pl.element().replace_strict({v: k for k, v in key.items()})).list.sort())
    assert by_id.height >= 2
    assert by_key.equals(by_id)


def test_groups_numbered_densely_where_their_ids_could_overflow_find_the_same_loops(monkeypatch):
    """A group's id is its component x buckets + its bucket, and a member's id group x accounts
    + account; a market too big for those in int64 numbers its groups densely instead. Both
    numberings group the same trades, so they find the same loops."""
    rng = np.random.default_rng(17)
    rows = cycle(["A", "B", "C"], rounds=9, lots=[3e8] * 9, start=50) + cycle(
        ["D", "E", "F", "G"], rounds=7, lots=[5e8] * 7, start=2000, first_id=100)
    rows += [trade(500 + i, f"O{i % 5}", ["A", "D", "F"][i % 3], minutes=int(rng.integers(0, 2500)),
                   base=int(rng.uniform(1e7, 9e8))) for i in range(40)]  # fmt: skip
    tt = trader_trades(trades_frame(rows))
    sparse = trader_loops(tt)
    monkeypatch.setattr(closed_loops_module, "MEMBER_IDS", 0)
    dense = trader_loops(tt)
    assert sparse.height >= 2
    assert dense.equals(sparse)


def test_bucket_groups_are_one_id_per_component_and_bucket_in_any_row_order():
    """The peeling groups: one id per (component, bucket), whether the trades come in time order
    (buckets numbered by their runs) or not (numbered by rank)."""
    rng = np.random.default_rng(23)
    start = pl.datetime(2024, 3, 1, time_zone="UTC")
    c = pl.DataFrame({"comp": rng.integers(0, 6, 400), "hour": rng.integers(0, 30, 400)}).select(
        pl.col("comp").cast(pl.Int64), (start + pl.duration(hours=pl.col("hour"))).alias("window_start"))
    for frame in (c.sort("window_start"), c.sample(fraction=1.0, shuffle=True, seed=5)):
        groups = frame.with_columns(closed_loops_module._bucket_groups(frame, 50)).select("comp", "window_start", "_g")
        pairs = groups.unique()
        assert pairs.height == frame.select("comp", "window_start").unique().height
        assert pairs.get_column("_g").n_unique() == pairs.height

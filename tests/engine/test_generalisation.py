"""Detection on what the model never saw, and legitimate traps that must stay unflagged.

The CLI test trains the default model (no labels: a randomised simulated family market with
NO directed cycles) on a fresh home and scores a market whose rings are ALL directed cycles
of 3-8 wallets, of another seed. The trap tests are small hand-built markets.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from engine.graph import closed_loops, detect_rings
from engine.graph.cotrade import pool_routed_trades
from tests.engine.graph_cases import T0, funding_frame, trade, trades_frame


@pytest.mark.slow
def test_fresh_score_finds_directed_cycles_it_was_never_trained_on(tmp_path, monkeypatch):
    from engine.cli import main
    from engine.ingest.files import ingest_files
    from engine.services import train as pipeline
    from engine.synthetic import FamilyConfig, generate_market
    from storage.store import Store

    monkeypatch.setenv("LEDGERLENS_HOME", str(tmp_path / "home"))
    real = pipeline.simulated_training_data
    monkeypatch.setattr(pipeline, "simulated_training_data", lambda **kw: real(
        **kw, family=FamilyConfig(seed=kw["seed"], exclude_patterns=("cycle",))))  # hold the cycles out
    market = generate_market(tmp_path / "m", seed=11, scale=0.15, days=7, family=FamilyConfig(only_patterns=("cycle",)))
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        ingest_files(s, [market.trades_path, market.operations_path])
    out = tmp_path / "scores.csv"
    assert main(["score", "--db", str(db), "--out", str(out), "--sim-scale", "0.3", "--n-estimators", "20"]) == 0
    labels = pl.read_csv(market.labels_path, schema_overrides={"ring_id": pl.String})
    best = pl.read_csv(out).group_by("wallet").agg(pl.col("score").max()).join(
        labels.rename({"account": "wallet"}), on="wallet")
    cycles = best.filter((pl.col("role") == "wash_trader") & (pl.col("pattern") == "cycle"))
    legit = best.filter(pl.col("is_wash") == 0)
    assert cycles.height >= 6
    assert (cycles["score"] >= 70).mean() >= 0.9  # found, though the model never saw a cycle
    assert (legit["score"] >= 70).mean() <= 0.01
    assert cycles["score"].min() > legit["score"].quantile(0.99)


def _pool(i, account, *, at, gives, amount, pair):
    """`account` trades with a pool of `pair`, giving `gives` (base or counter)."""
    base, counter = pair.split("/")
    sells_base = gives == base
    row = trade(i, account if sells_base else None, None if sells_base else account, minutes=0, base=amount,
                counter=amount, pair=pair)
    row["closed_at"] = T0 + timedelta(seconds=at)
    row["trade_type"] = "liquidity_pool"
    row["buyer_pool_id" if sells_base else "seller_pool_id"] = f"{i % 3:064x}"
    return row


def test_triangle_arbitrage_bot_is_no_loop_and_no_ring():
    usdc, x, xlm = "USDC:GI", "X:GI", "XLM:native"
    rows = []
    for k in range(20):  # XLM -> USDC -> X -> XLM through three pools within seconds, with a profit
        t = 600 * k
        rows += [_pool(3 * k, "ARB", at=t, gives=xlm, amount=10**9, pair=f"{usdc}/{xlm}"),
                 _pool(3 * k + 1, "ARB", at=t + 1, gives=usdc, amount=10**9, pair=f"{x}/{usdc}"),
                 _pool(3 * k + 2, "ARB", at=t + 2, gives=x, amount=10**9, pair=f"{x}/{xlm}")]
    frame = trades_frame(rows)
    assert pool_routed_trades(frame).height == 0 and closed_loops(frame).height == 0
    assert detect_rings(frame, funding_frame([])).rings.height == 0


def test_airdrop_farm_and_dca_bot_are_no_ring():
    farm = [f"F{i}" for i in range(12)]
    funding = funding_frame([("FARMER", f) for f in farm])
    rows = [trade(i, "MM", f, minutes=3 * i, base=10**7 * (i + 1)) for i, f in enumerate(farm)]  # each buys a little
    rows += [trade(100 + i, f, "MM2", minutes=3 * i + 1, base=10**7 * (i + 2)) for i, f in enumerate(farm)]
    rows += [trade(200 + k, "MM", "DCA", minutes=60 * k, base=5 * 10**8) for k in range(40)]  # fixed buys on a clock
    result = detect_rings(trades_frame(rows), funding)
    assert result.rings.height == 0 and result.closed_loops.height == 0


def test_market_maker_round_lots_with_a_few_counterparties_is_no_ring():
    rows, i = [], 0
    for day in range(3):  # three clients each buy a round lot and sell it back to the maker later
        for c in ("C1", "C2", "C3"):
            rows += [trade(i, "MM", c, minutes=day * 1440 + 10 * i, base=10**9),
                     trade(i + 1, c, "MM", minutes=day * 1440 + 10 * i + 300, base=10**9)]
            i += 2
    result = detect_rings(trades_frame(rows), funding_frame([]))
    assert result.rings.filter(pl.col("size") > 2).height == 0  # never the maker's book as one ring
    assert all(len(m) == 2 for m in result.closed_loops.get_column("members").to_list())


def test_market_maker_used_for_camouflage_is_not_a_ring_member():
    wash, rows, i = ["W1", "W2", "W3"], [], 0
    for k in range(30):  # the ring trades among itself, funded by one controller
        a, b = wash[k % 3], wash[(k + 1 + k // 3) % 3]
        if a != b:
            rows.append(trade(i, a, b, minutes=5 * k, base=2 * 10**8))
            i += 1
    for k in range(12):  # camouflage: every member buys from and sells to the maker
        w = wash[k % 3]
        rows += [trade(i, "MM", w, minutes=3 * k + 1, base=10**7 * (k + 2)),
                 trade(i + 1, w, "MM", minutes=3 * k + 2, base=10**7 * (k + 2))]
        i += 2
    for k in range(120):  # the maker's business with everyone else
        rows.append(trade(i, "MM", f"X{k}", minutes=k, base=10**7) if k % 2 else trade(i, f"X{k}", "MM", minutes=k, base=10**7))
        i += 1
    result = detect_rings(trades_frame(rows), funding_frame([("CTRL", w) for w in wash]))
    assert [sorted(m) for m in result.ring_members.group_by("ring_id").agg("account_id")["account_id"].to_list()] == [wash]

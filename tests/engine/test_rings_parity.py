"""The bounded-memory rings step gives exactly the rings recorded with the whole-table step.

Markets from tests/engine/rings_golden.py (all ring patterns; cycles funded through chains;
pool legs and two-pair rings), regenerated from their seeds. Each is checked three ways
against the recorded digest: the whole table (`detect_rings`), the store read in one batch,
and the store read in batches of a few pairs (so every pair boundary is crossed).
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from engine.graph.closed_loops import loop_edges, loop_levels
from engine.graph.rings import detect_rings, pair_batches
from engine.services.rings import store_rings
from storage.store import Store
from tests.engine.rings_golden import GOLDEN, MARKETS, build_market, digest


@pytest.fixture(scope="module", params=sorted(MARKETS))
def market(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    store = Store(folder / "store.duckdb")
    build_market(store, folder / "files", request.param)
    yield request.param, store
    store.close()


def _json(result) -> dict:
    return json.loads(json.dumps(digest(result)))


@pytest.mark.parametrize("batch_trades", [None, 10**9, 2_000])
def test_rings_equal_the_recorded_ones(market, batch_trades):
    name, store = market
    expected = json.loads(GOLDEN.read_text())[name]
    if batch_trades is None:
        result = detect_rings(store.trades(), store.funding_edges())
    else:
        n_batches = len(pair_batches(store.pair_sizes(), batch_trades=batch_trades))
        assert (n_batches == 1) if batch_trades > 10**6 else (n_batches > 2)
        result = store_rings(store, batch_trades=batch_trades)
    got = _json(result)
    for part in ("rings", "ring_members", "closed_loops", "n_communities"):
        assert got[part] == expected[part], f"{name}: {part} differ from the recorded run"
    assert got["rings"], "the market has rings to compare"


def test_loop_levels_planned_over_batches_equal_the_whole_market(market):
    _, store = market
    trades = store.trades()
    whole = loop_levels(loop_edges(trades))
    parts = pl.concat([loop_edges(trades.filter(pl.col("pair_id") == p)).with_columns(part=pl.lit(p))
                       for p in trades.get_column("pair_id").unique()])  # fmt: skip
    assert loop_levels(parts) == whole and whole[0] == 1


def test_pair_batches_keep_order_and_bound():
    sizes = pl.DataFrame({"pair_id": ["a", "b", "c", "d"], "n_trades": [5, 4, 20, 1]})
    assert pair_batches(sizes, batch_trades=10) == [["a", "b"], ["c"], ["d"]]
    assert pair_batches(sizes, batch_trades=100) == [["a", "b", "c", "d"]]
    assert pair_batches(sizes.head(0), batch_trades=10) == []


@pytest.mark.parametrize("batch_trades", [10**9, 2_000])
def test_store_is_read_once_when_the_market_is_one_batch(market, batch_trades):
    _, store = market
    calls = []
    store_rings(store, batch_trades=batch_trades, progress=lambda **kw: calls.append(kw))
    n_batches = len(pair_batches(store.pair_sizes(), batch_trades=batch_trades))
    passes = 1 if n_batches == 1 else 2  # the loop levels need every batch first
    assert [c["done"] for c in calls] == list(range(1, passes * n_batches + 1))
    assert {c["total"] for c in calls} == {passes * n_batches}
    assert calls[-1]["records"] == passes * store.pair_sizes().get_column("n_trades").sum()


def test_routed_batches_equal_the_per_batch_queries_and_are_removed(market, tmp_path):
    _, store = market
    plan = pair_batches(store.pair_sizes(), batch_trades=2_000)
    work = tmp_path / "ring-batches"
    with store.pair_batch_reader(plan, work) as read:
        assert work.is_dir()
        for i, pairs in enumerate(plan):
            assert read(i).equals(store.pair_trades(pairs)), f"batch {i} differs from its query"
    assert not work.exists()

from __future__ import annotations

import polars as pl

from engine.ingest.files import ingest_files
from engine.services.demo import build_demo_store
from storage.store import Store


def test_simulated_market_round_trips_through_replay_and_stellar_sdk(tmp_path):
    demo = build_demo_store(tmp_path / "demo.duckdb", seed=7, scale=0.03, analysis=False)
    market = demo.market
    with Store(demo.db_path) as store:
        counts = store.counts()
        assert counts["quarantine"] == 0
        assert counts["trades"] == market.n_trades
        assert counts["operations"] == market.n_operations
        via_replay = store.trades().drop("source")
    # the same files loaded directly give the same canonical rows
    with Store(tmp_path / "files.duckdb") as direct:
        ingest_files(direct, [market.trades_path, market.operations_path])
        assert direct.counts()["quarantine"] == 0
        assert direct.trades().drop("source").equals(via_replay)
    labels = pl.read_csv(market.labels_path)
    ring_members = labels.filter(pl.col("role") == "wash_trader")["account"]
    assert ring_members.is_in(via_replay["seller_account"].to_list() + via_replay["buyer_account"].to_list()).all()

"""Spark parity: `rings --engine spark` (engine.spark.rings, local[2]) gives the recorded ring
memberships, statistics and closed loops, with the pair batches spread over Spark's groups.

One small market (cycles funded through chains, tests/engine/rings_golden.py) and one
Spark session; skipped with the reason when PySpark or a JRE is missing (`make install`,
`make system-deps`).
"""

from __future__ import annotations

import json
import shutil

import pytest

from storage.store import Store
from tests.engine.rings_golden import GOLDEN, build_market, digest

pytest.importorskip("pyspark", reason="PySpark is not installed (make install)")
if shutil.which("java") is None:
    pytest.skip("no JRE for Spark (make system-deps installs openjdk-17-jre-headless)", allow_module_level=True)

MARKET = "cycles_chain"


@pytest.fixture(scope="module")
def spark():
    from engine.spark.session import spark_session

    session = spark_session(master="local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """(store, its trades as Parquet) of the recorded market."""
    folder = tmp_path_factory.mktemp(MARKET)
    store = Store(folder / "s.duckdb")
    build_market(store, folder / "files", MARKET)
    store.export_trades(folder / "trades.parquet", fmt="parquet")
    yield store, folder / "trades.parquet"
    store.close()


def test_spark_rings_equal_the_recorded_ones_and_are_stored(market, spark):
    from engine.services.rings import compute_rings

    store, parquet = market
    result = compute_rings(store, spark_master="local[2]", trades_path=parquet)
    stored = store.load_derived("ring_members")
    got = json.loads(json.dumps(digest(result)))
    expected = json.loads(GOLDEN.read_text())[MARKET]
    for part in ("rings", "ring_members", "closed_loops", "n_communities"):
        assert got[part] == expected[part], f"{part} differ from the recorded run"
    assert got["rings"]
    assert stored.sort("ring_id", "account_id").equals(result.ring_members)


def test_spark_batches_run_every_pair_once(market, spark):
    import polars as pl

    from engine.graph.account_keys import account_names, encode_columns
    from engine.graph.rings import batch_trader_trades
    from engine.spark.rings import spark_batches, trading_accounts

    store, parquet = market
    trades = spark.read.parquet(str(parquet))
    names = trading_accounts(trades)
    assert names.equals(account_names(names)) and names.len() > 10
    run = spark_batches(trades, names, batch_trades=500)
    counted = run(lambda tt: {"n": tt.group_by("pair_id").agg(pl.len()), "keys": tt.select(pl.col("seller").max())})
    whole = batch_trader_trades(encode_columns(store.trades(), names, ("seller_account", "buyer_account")))
    assert whole.height > 1000  # direct trades and pool legs: pairs are never split, so the batches' sum to the whole's
    assert counted["n"].get_column("len").sum() == whole.height
    assert counted["n"].get_column("pair_id").is_unique().all()
    assert counted["keys"].get_column("seller").max() < names.len()


def _as_hubble(trades):
    """Canonical trades written as Hubble's history_trades rows (amounts as floats, assets as
    type/code/issuer, times as text), which `canonical_trades` decodes back."""
    import polars as pl

    def asset(col: str, side: str) -> dict:
        native = pl.col(col) == "XLM:native"
        code, issuer = pl.col(col).str.split(":").list.first(), pl.col(col).str.split(":").list.last()
        kind = pl.when(code.str.len_chars() <= 4).then(pl.lit("credit_alphanum4")).otherwise(pl.lit("credit_alphanum12"))
        return {f"{side}_asset_type": pl.when(native).then(pl.lit("native")).otherwise(kind),
                f"{side}_asset_code": pl.when(~native).then(code), f"{side}_asset_issuer": pl.when(~native).then(issuer)}

    return trades.select(
        history_operation_id=pl.col("id").str.split("-").list.first().cast(pl.Int64),
        order=pl.col("id").str.split("-").list.last().cast(pl.Int64),
        ledger_closed_at=pl.col("closed_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        trade_type=pl.when(pl.col("trade_type") == "liquidity_pool").then(2).otherwise(1),
        selling_account_address="seller_account", selling_amount=pl.col("sold_amount") / 10_000_000,
        selling_offer_id="seller_offer_id", selling_liquidity_pool_id="seller_pool_id", **asset("sold_asset", "selling"),
        buying_account_address="buyer_account", buying_amount=pl.col("bought_amount") / 10_000_000,
        buying_offer_id="buyer_offer_id", buying_liquidity_pool_id="buyer_pool_id", **asset("bought_asset", "buying"),
        price_n="price_n", price_d="price_d",
    )  # fmt: skip


def test_spark_rings_read_hubble_history_trades(market, spark, tmp_path):
    from engine.services.rings import spark_rings

    store, _ = market
    path = tmp_path / "history_trades.parquet"
    _as_hubble(store.trades()).write_parquet(path)
    got = json.loads(json.dumps(digest(spark_rings(store, master="local[2]", trades_path=path))))
    expected = json.loads(GOLDEN.read_text())[MARKET]
    for part in ("rings", "ring_members", "closed_loops", "n_communities"):
        assert got[part] == expected[part], f"{part} differ from the recorded run"
    assert got["rings"]

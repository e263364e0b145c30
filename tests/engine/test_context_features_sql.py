"""The features that join a wallet's trades to the market's other inputs (offers, accounts,
funding lineage, rings): one SQL definition (storage.context_features), run on DuckDB per
partition, transpiled for Spark (tests/engine/test_spark_features.py checks the two agree)
and compiled for BigQuery, kept as golden SQL and checked here without connecting. Their
values in the matrix are pinned by tests/engine/test_features.py (hand-counted) and the
frozen matrices of tests/engine/test_features_bounded.py.

Re-record the golden after a deliberate change: python -m tests.engine.test_context_features_sql
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
import sqlglot

from engine.features import DEFAULT_CONFIG
from engine.features.funding_features import ancestors_from_operations
from engine.features.random_market import random_market
from engine.schemas import NATIVE_ASSET, OFFER_TYPES
from storage.context_features import CONTEXT_FEATURES, context_features_sql
from storage.context_features import OFFER_TYPES as SQL_OFFER_TYPES
from storage.errors import BadInput
from storage.partition_features import MarketInputs, partition_features_of
from storage.shape_features import NATIVE, SOURCE_COLUMNS, market_hours_of, shape_feature_params
from tests.engine.feature_market import HAND_AS_OF, assert_same_frame, hand_trades

GOLDEN = Path(__file__).parent / "golden" / "context_features.bigquery.sql"
KEY = ["wallet", "pair_id"]
AS_OF = HAND_AS_OF


def golden_sql() -> str:
    return context_features_sql(DEFAULT_CONFIG, dialect="bigquery") + "\n"


def market_with_context(seed: int = 5):
    """A random market with every input: offers, accounts, lineage, two rings, loops."""
    trades, ops, accounts = random_market(n_trades=3_000, n_wallets=40, n_pairs=4, days=9, seed=seed)
    as_of = trades.get_column("closed_at").max()
    wallets = sorted(set(trades.get_column("seller_account").drop_nulls()))
    rings = pl.DataFrame({"account_id": wallets[:5] + wallets[4:7], "ring_id": ["r1"] * 5 + ["r2"] * 3})
    loops = trades.get_column("id").gather_every(7).to_frame("trade_id")
    inputs = MarketInputs(offers=ops, accounts=accounts, lineage=ancestors_from_operations(ops, accounts, as_of=as_of),
                          ring_members=rings, loop_trades=loops)  # fmt: skip
    return trades, as_of, inputs


def context_of(trades, as_of, inputs, part=None) -> pl.DataFrame:
    hours = market_hours_of(trades, as_of=as_of, options=DEFAULT_CONFIG)
    got = partition_features_of(trades, as_of=as_of, options=DEFAULT_CONFIG, hours=hours, part=part, inputs=inputs)
    return got.select(*KEY, *CONTEXT_FEATURES)


def test_every_feature_is_computed_on_a_market_with_every_input():
    trades, as_of, inputs = market_with_context()
    got = context_of(trades, as_of, inputs)
    assert got.height > 100
    for name in CONTEXT_FEATURES:
        assert got.get_column(name).drop_nulls().len() > 0, f"{name} is never computed"
    assert got.filter(pl.col("ring_size") == 5).height > 0 and got.get_column("loop_share").max() > 0


def test_hand_counted_rings_offers_and_a_trade_with_oneself():
    # W trades with X, Y, X and itself; W is in rings r1 {W, X} and r2 {W, Y, Z}: the larger, r2, is its ring
    trades = hand_trades([(50, "W", "X", 1), (40, "Y", "W", 1), (30, "W", "X", 1), (20, "W", "W", 1)])
    rings = pl.DataFrame({"account_id": ["W", "X", "W", "Y", "Z"], "ring_id": ["r1", "r1", "r2", "r2", "r2"]})
    op = {"closed_at": AS_OF - timedelta(seconds=60), "type": "manage_sell_offer", "successful": True,
          "source_account": "W", "asset": "XLM:native", "buying_asset": "A:x", "offer_id": 9, "amount": 0}  # fmt: skip
    offers = pl.DataFrame([op, {**op, "amount": 5}, {**op, "amount": None}, {**op, "type": "payment"},
                           {**op, "successful": False}, {**op, "closed_at": AS_OF + timedelta(seconds=1)}],
                          schema_overrides={"amount": pl.Int64})  # fmt: skip
    got = context_of(trades, AS_OF, MarketInputs(offers=offers, ring_members=rings, loop_trades=pl.DataFrame(
        {"trade_id": ["1-0", "1-0"]})))  # fmt: skip
    w = got.filter(pl.col("wallet") == "W").row(0, named=True)
    assert w["ring_size"] == 3.0
    assert w["ring_cp_share"] == pytest.approx(2 / 4)  # X, Y, X and itself (the self trade once): Y and W in r2
    assert w["loop_share"] == pytest.approx(1 / 5)  # five sides of W (two of the self trade); one in a loop
    assert w["offer_cancel_rate"] == pytest.approx(1 / 2)  # a delete, an update; unknown amount, others left out
    assert w["account_age_days"] is None and w["same_controller_rate"] is None  # no accounts, no lineage
    assert got.filter(pl.col("wallet") == "X").row(0, named=True)["ring_size"] == 2.0


def test_the_account_age_keeps_microseconds():
    trades = hand_trades([(50, "W", "X", 1)])
    created = AS_OF - timedelta(days=3, microseconds=1_500)
    accounts = pl.DataFrame({"account_id": ["W", "W"], "created_at": [created, created + timedelta(days=1)]})
    got = context_of(trades, AS_OF, MarketInputs(accounts=accounts)).filter(pl.col("wallet") == "W")
    assert got.item(0, "account_age_days") == pytest.approx(3 + 0.0015 / 86400, rel=1e-12)  # the earliest


def test_a_partition_gets_exactly_its_wallets_features():
    trades, as_of, inputs = market_with_context(seed=11)
    whole = context_of(trades, as_of, inputs)
    routed = trades.with_columns(
        seller_part=pl.col("seller_account").hash() % 3, buyer_part=pl.col("buyer_account").hash() % 3
    ).with_columns(pl.col("^(seller|buyer)_part$").cast(pl.Int64))
    parts = [context_of(routed, as_of, inputs, part=p) for p in range(3)]
    assert all(p.height > 0 for p in parts)
    assert_same_frame(pl.concat(parts), whole, key=KEY)


def test_the_trades_row_order_changes_nothing():
    # the trade ids become keys by the rows' (op_id, id) order: in that order (as the store reads
    # them) they are taken as they come, in any other they are sorted first; ids share op_ids
    trades, as_of, inputs = market_with_context(seed=3)
    trades = trades.with_columns(op_id=pl.col("op_id") // 3)  # ties of op_id, broken by the id
    in_order = trades.sort("op_id", "id")
    shuffled = in_order.sample(fraction=1.0, shuffle=True, seed=7)
    assert not shuffled.equals(in_order)
    hours = market_hours_of(trades, as_of=as_of, options=DEFAULT_CONFIG)

    def features(t: pl.DataFrame) -> pl.DataFrame:
        return partition_features_of(t, as_of=as_of, options=DEFAULT_CONFIG, hours=hours, inputs=inputs)

    want = features(in_order)
    assert want.get_column("loop_share").max() > 0 and want.get_column("cross_pair_synchrony").drop_nulls().len() > 0
    assert_same_frame(features(shuffled), want, key=KEY)


def test_bigquery_sql_is_the_golden_and_computes_what_duckdb_computes():
    sql = golden_sql()
    assert sql == GOLDEN.read_text(), "the BigQuery SQL changed: re-record it (see the module doc)"
    assert "UNIX_MICROS(a.created_at)" in sql and "EPOCH_US" not in sql  # the mended EPOCH_US
    back = sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]
    trades, as_of, inputs = market_with_context()
    want = context_of(trades, as_of, inputs)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("trades", trades.with_columns(seller_part=pl.lit(0), buyer_part=pl.lit(0)).select(SOURCE_COLUMNS)
                     .to_arrow())  # fmt: skip
        for name in ("offers", "accounts", "lineage", "ring_members", "loop_trades"):
            con.register(name, getattr(inputs, name).to_arrow())
        via_bigquery = pl.from_arrow(con.sql(back, params=shape_feature_params(as_of, DEFAULT_CONFIG)).to_arrow_table())
    assert_same_frame(via_bigquery.select(*KEY, *CONTEXT_FEATURES), want, key=KEY)


def test_an_offer_counts_in_its_pair_whichever_asset_it_sells():
    # W trades A:x/XLM and B:y/XLM; its offers sell XLM for A, A for XLM, B for XLM and B for A (no trades)
    trades = hand_trades([(50, "W", "X", 1), (40, "W", "X", 1, "B:y")])
    op = {"closed_at": AS_OF - timedelta(seconds=60), "type": "manage_sell_offer", "successful": True,
          "source_account": "W", "asset": "XLM:native", "buying_asset": "A:x", "offer_id": 9, "amount": 0}  # fmt: skip
    offers = pl.DataFrame([op, {**op, "asset": "A:x", "buying_asset": "XLM:native", "amount": 3},
                           {**op, "asset": "B:y", "buying_asset": "XLM:native"},
                           {**op, "asset": "B:y", "buying_asset": "A:x", "amount": 4}])  # fmt: skip
    got = context_of(trades, AS_OF, MarketInputs(offers=offers)).filter(pl.col("wallet") == "W")
    rates = dict(zip(got.get_column("pair_id"), got.get_column("offer_cancel_rate"), strict=True))
    assert rates == {"A:x/XLM:native": pytest.approx(1 / 2), "B:y/XLM:native": pytest.approx(1.0)}


def test_the_native_asset_and_offer_types_are_the_engines():
    assert NATIVE == NATIVE_ASSET and SQL_OFFER_TYPES == OFFER_TYPES


def test_relation_names_are_checked_before_they_enter_the_sql():
    for bad in ({"offers": "o; DROP TABLE trades"}, {"lineage": "l --"}, {"loop_trades": "x y"}):
        with pytest.raises(BadInput, match="not a table name"):
            context_features_sql(DEFAULT_CONFIG, **bad)


if __name__ == "__main__":
    GOLDEN.write_text(golden_sql())
    print(f"wrote {GOLDEN}")


def test_the_stores_account_keys_give_the_features_the_ids_give():
    """The features step hands the SQL the store's integer keys (trades, offers and context keyed
    once, engine.features.partitions.with_store_keys); an account the store has no key for (here
    a funder that never traded) gets one of its own, so no lineage is lost or merged."""
    from engine.features.partitions import MarketContext, with_store_keys
    from storage.partition_features import OFFER_KEY

    trades, as_of, inputs = market_with_context()
    traders = pl.concat([trades.get_column(c) for c in ("seller_account", "buyer_account")]).drop_nulls().unique()
    offers = inputs.offers.filter(pl.col("source_account").is_in(traders.implode()))
    known = pl.concat([traders, offers.get_column("source_account")]).unique().sort(descending=True)  # not name order
    keys = pl.DataFrame({"account_id": known, "account_key": pl.int_range(7, 7 + len(known), dtype=pl.Int32, eager=True)})
    ancestors = set(inputs.lineage.get_column("ancestor"))
    assert ancestors - set(known), "the market should have a funder that never traded"
    ctx = with_store_keys(MarketContext(as_of=as_of, config=DEFAULT_CONFIG, ancestors=inputs.lineage, accounts=inputs.accounts,
                                        ring_members=inputs.ring_members), keys)  # fmt: skip
    assert ctx.ancestors.get_column("ancestor").min() < 0 and ctx.ancestors.height == inputs.lineage.height

    def keyed(frame: pl.DataFrame, column: str, key: str) -> pl.DataFrame:
        return frame.join(keys.rename({"account_id": column, "account_key": key}), on=column, how="left",
                          maintain_order="left")  # fmt: skip

    store_trades = keyed(keyed(trades, "seller_account", "seller_key"), "buyer_account", "buyer_key").with_columns(
        pair_key=pl.col("pair_id").rank("dense").cast(pl.Int64))
    store_inputs = MarketInputs(offers=keyed(offers, "source_account", OFFER_KEY), accounts=ctx.accounts,
                                lineage=ctx.ancestors, ring_members=ctx.ring_members, loop_trades=inputs.loop_trades,
                                store_keys=True)  # fmt: skip
    want = context_of(trades, as_of, MarketInputs(offers=offers, accounts=inputs.accounts, lineage=inputs.lineage,
                                                  ring_members=inputs.ring_members, loop_trades=inputs.loop_trades))
    got = context_of(store_trades, as_of, store_inputs)
    assert want.get_column("same_controller_rate").drop_nulls().len() > 0
    assert_same_frame(got, want, key=KEY)

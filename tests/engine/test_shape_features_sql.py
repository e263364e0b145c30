"""The trade-shape features: one SQL definition (storage.shape_features), run on DuckDB,
transpiled for Spark (tests/engine/test_spark_features.py checks the two agree) and
compiled for BigQuery, kept as golden SQL and checked here without connecting.

Re-record the goldens after a deliberate change: python -m tests.engine.test_shape_features_sql
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import polars as pl
import pytest
import sqlglot

from engine.features import DEFAULT_CONFIG
from engine.features.random_market import random_market
from storage.errors import BadInput
from storage.partition_features import partition_features_of
from storage.shape_features import (
    SHAPE_FEATURES,
    SOURCE_COLUMNS,
    market_hours_of,
    market_hours_sql,
    shape_feature_params,
    shape_features_sql,
)
from tests.engine.feature_market import HAND_AS_OF, assert_same_frame, hand_trades

GOLDEN = Path(__file__).parent / "golden"
GOLDENS = {
    "shape_features.bigquery.sql": lambda: shape_features_sql(DEFAULT_CONFIG, dialect="bigquery") + "\n",
    "market_hours.bigquery.sql": lambda: market_hours_sql(dialect="bigquery") + "\n",
}
AS_OF = HAND_AS_OF
KEY = ["wallet", "pair_id"]
UNIT = 10_000_000


def _shape(trades: pl.DataFrame) -> pl.DataFrame:
    hours = market_hours_of(trades, as_of=AS_OF, options=DEFAULT_CONFIG)
    return partition_features_of(trades, as_of=AS_OF, options=DEFAULT_CONFIG, hours=hours)


def test_a_hand_counted_wallet():
    # W sells 100 units to X at t-600 s and t-590 s (10 s apart), 250 to Y at t-300 s; X sells 100 back at t-60 s
    trades = hand_trades([(600, "W", "X", 100), (590, "W", "X", 100), (300, "W", "Y", 250), (60, "X", "W", 100)])
    got = {r["wallet"]: r for r in _shape(trades).to_dicts()}
    w = got["W"]
    assert w["n_trades"] == 4
    assert w["counterparty_hhi"] == pytest.approx((3 / 4) ** 2 + (1 / 4) ** 2)  # X three times, Y once
    assert w["volume_per_counterparty"] == pytest.approx(550 / 2)
    assert w["net_flow_ratio"] == pytest.approx((100 - 450) / 550)
    assert w["flow_balance"] == pytest.approx(1 - 350 / 550)
    assert w["fixed_lot_share"] is None and w["round_number_share"] is None  # under 5 trades
    assert w["intra_minute_share"] == pytest.approx(2 / 4)  # the two 10 s apart
    gaps = [10, 290, 240]
    mean = sum(gaps) / 3
    std = (sum((g - mean) ** 2 for g in gaps) / 2) ** 0.5
    assert w["inter_arrival_cv"] == pytest.approx(std / mean)
    assert w["pair_diversity"] == 0
    assert got["Y"]["inter_arrival_cv"] is None and got["Y"]["intra_minute_share"] is None  # one trade


def test_a_wallet_across_two_pairs():
    # W: pair A at t-600 s with X; pair B at t-570 s with X and at t-100 s with Z (all in one hour)
    trades = hand_trades([(600, "W", "X", 1), (570, "W", "X", 1, "B:y"), (100, "W", "Z", 1, "B:y")])
    got = {r["pair_id"]: r for r in _shape(trades).filter(pl.col("wallet") == "W").to_dicts()}
    a, b = got["A:x/XLM:native"], got["B:y/XLM:native"]
    assert a["cross_pair_synchrony"] == 1.0  # 30 s from its B trade
    assert b["cross_pair_synchrony"] == 0.5  # t-570 is 30 s from A; t-100 is 500 s away
    assert a["cross_pair_cp_overlap"] == b["cross_pair_cp_overlap"] == 0.5  # X in both pairs, of {X, Z}
    assert a["cross_pair_volume_corr"] == pytest.approx(1.0) == b["cross_pair_volume_corr"]  # the same single hour
    assert a["pair_diversity"] == pytest.approx(-(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3)))
    x = _shape(trades).filter(pl.col("wallet") == "X").to_dicts()
    assert x[0]["cross_pair_synchrony"] is not None and len(x) == 2
    single = _shape(hand_trades([(600, "V", "Y", 1), (500, "V", "Y", 2)])).row(0, named=True)
    assert single["cross_pair_synchrony"] is None and single["cross_pair_cp_overlap"] is None
    assert single["cross_pair_volume_corr"] is None


def test_round_numbers_are_whole_units_with_two_significant_digits_at_every_magnitude():
    amounts = {1: True, 25: True, 99: True, 100: True, 250: True, 5000: True, 10**11: True,
               101: False, 123: False, 2.5: False, 0.1: False, 1001: False, 990_000_001: False}  # fmt: skip
    rows = [(s, f"W{i}", "Z", a) for i, a in enumerate(amounts) for s in range(1, 6)]  # five trades each: a share
    got = _shape(hand_trades(rows)).filter(pl.col("wallet") != "Z")
    share = dict(zip(got["wallet"], got["round_number_share"], strict=True))
    assert {a: share[f"W{i}"] == 1.0 for i, a in enumerate(amounts)} == amounts


def test_a_partition_gets_exactly_its_wallets_features():
    trades, _, _ = random_market(n_trades=4_000, n_wallets=60, n_pairs=3, days=8, seed=11)
    as_of = trades.get_column("closed_at").max()
    hours = market_hours_of(trades, as_of=as_of, options=DEFAULT_CONFIG)
    whole = partition_features_of(trades, as_of=as_of, options=DEFAULT_CONFIG, hours=hours)
    routed = trades.with_columns(
        seller_part=pl.col("seller_account").hash() % 3, buyer_part=pl.col("buyer_account").hash() % 3
    ).with_columns(pl.col("^(seller|buyer)_part$").cast(pl.Int64))
    parts = [partition_features_of(routed, as_of=as_of, options=DEFAULT_CONFIG, hours=hours, part=p) for p in range(3)]
    assert all(p.height > 0 for p in parts)
    assert_same_frame(pl.concat(parts), whole, key=KEY)


def test_bigquery_sql_is_the_golden_and_computes_what_duckdb_computes():
    for name, sql in GOLDENS.items():
        assert sql() == (GOLDEN / name).read_text(), f"the BigQuery SQL changed: re-record {name} (see the module doc)"
    shape = (GOLDEN / "shape_features.bigquery.sql").read_text()
    assert "UNIX_SECONDS(closed_at)" in shape and "TIME_TO_UNIX" not in shape  # the mended EPOCH
    # the goldens read as BigQuery and run on DuckDB give the definition's features: no function lost on the way
    back = {n: sqlglot.transpile((GOLDEN / n).read_text(), read="bigquery", write="duckdb")[0] for n in GOLDENS}
    trades, _, _ = random_market(n_trades=3_000, n_wallets=40, n_pairs=4, days=9, seed=5)
    as_of = trades.get_column("closed_at").max()
    params = shape_feature_params(as_of, DEFAULT_CONFIG)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("trades", trades.with_columns(seller_part=pl.lit(0), buyer_part=pl.lit(0)).select(SOURCE_COLUMNS)
                     .to_arrow())  # fmt: skip
        hours = con.sql(back["market_hours.bigquery.sql"], params={k: params[k] for k in ("since", "as_of")})
        con.register("market_hours", hours.to_arrow_table())
        via_bigquery = pl.from_arrow(con.sql(back["shape_features.bigquery.sql"], params=params).to_arrow_table())
    want = partition_features_of(trades, as_of=as_of, options=DEFAULT_CONFIG,
                             hours=market_hours_of(trades, as_of=as_of, options=DEFAULT_CONFIG))  # fmt: skip
    assert want.height > 100 and want.get_column("size_tail_exponent").drop_nulls().len() > 10
    assert_same_frame(via_bigquery.select(*KEY, *SHAPE_FEATURES), want, key=KEY)


def test_relation_names_are_checked_before_they_enter_the_sql():
    with pytest.raises(BadInput, match="not a table name"):
        shape_features_sql(DEFAULT_CONFIG, source="trades; DROP TABLE trades")
    with pytest.raises(BadInput, match="not a table name"):
        shape_features_sql(DEFAULT_CONFIG, hours="h --")
    assert "FROM crypto_stellar.history_trades" in market_hours_sql(source="crypto_stellar.history_trades",
                                                                    dialect="bigquery")  # fmt: skip


if __name__ == "__main__":
    for name, sql in GOLDENS.items():
        (GOLDEN / name).write_text(sql())
        print(f"wrote {GOLDEN / name}")

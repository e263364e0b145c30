"""Spark parity: `features --engine spark` (engine.spark.features, local[2]) gives the
DuckDB run's feature matrix and Benford table on the reference market, to 1e-9.

One Spark session for the module (JVM start-up is the slow part); skipped with the
reason when PySpark or a JRE is missing (`make install`, `make system-deps`).
"""

from __future__ import annotations

import shutil

import pytest

from tests.engine.feature_market import AS_OF, BENFORD_KEY, MATRIX_KEY, assert_same_frame, build_store, golden

pytest.importorskip("pyspark", reason="PySpark is not installed (make install)")
if shutil.which("java") is None:
    pytest.skip("no JRE for Spark (make system-deps installs openjdk-17-jre-headless)", allow_module_level=True)


@pytest.fixture(scope="module")
def spark():
    from engine.spark.session import spark_session

    session = spark_session(master="local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.mark.parametrize("trades_per_partition", [3_000], ids=["three-partitions"])
def test_spark_features_equal_duckdb_and_the_whole_market_run(tmp_path, spark, trades_per_partition):
    from engine.services.features import compute_features, compute_features_spark

    want_matrix, want_benford = golden()
    with build_store(tmp_path / "s.duckdb") as store:
        duck = compute_features(store, as_of=AS_OF, trades_per_partition=trades_per_partition)
        duck_benford = store.load_derived("benford")
        run = compute_features_spark(store, as_of=AS_OF, trades_per_partition=trades_per_partition,
                                     work_dir=tmp_path / "parquet")  # fmt: skip
        stored, benford = store.load_derived("features"), store.load_derived("benford")
    assert_same_frame(run.matrix, duck.matrix, key=MATRIX_KEY)
    assert_same_frame(benford, duck_benford, key=BENFORD_KEY)
    assert_same_frame(run.matrix, want_matrix, key=MATRIX_KEY)
    assert_same_frame(benford, want_benford, key=BENFORD_KEY)
    assert_same_frame(stored, want_matrix, key=MATRIX_KEY)
    assert (run.benford_tests, run.benford_flagged) == (duck.benford_tests, duck.benford_flagged)


def test_cli_features_engine_spark_reads_the_exported_parquet_and_stores_the_duckdb_tables(tmp_path, spark):
    import polars as pl

    from engine.cli import main
    from engine.services.features import compute_features
    from storage.store import Store

    db, parquet = tmp_path / "s.duckdb", tmp_path / "export" / "trades.parquet"
    with build_store(db) as store:
        duck = compute_features(store, as_of=AS_OF)
        duck_benford = store.load_derived("benford")
        n_trades = store.counts()["trades"]
    assert main(["export", "trades", "--db", str(db), "--format", "parquet", "--out", str(parquet)]) == 0
    assert pl.read_parquet(parquet).height == n_trades
    args = ["features", "--db", str(db), "--engine", "spark", "--trades", str(parquet), "--as-of", AS_OF.isoformat()]
    assert main(args) == 0
    with Store(db) as store:
        matrix, benford = store.load_derived("features"), store.load_derived("benford")
    assert_same_frame(matrix, duck.matrix, key=MATRIX_KEY)
    assert_same_frame(benford, duck_benford, key=BENFORD_KEY)


def hubble_parquet(tmp_path, mutate=None):
    """stellar-etl's golden history_trades rows (ten ledgers) as a Parquet export."""
    import polars as pl

    from tests.conftest import fixture_path

    rows = pl.read_ndjson(fixture_path("stellar-etl-golden", "trades", "10_ledgers_trades.golden"))
    path = tmp_path / "history_trades.parquet"
    (mutate(rows) if mutate else rows).write_parquet(path)
    return path


def test_hubble_history_trades_parquet_decodes_on_spark_as_ingest_decodes_it(tmp_path, spark):
    import polars as pl

    from engine.ingest import hubble
    from engine.spark.inputs import canonical_trades

    path = hubble_parquet(tmp_path)
    want, quarantined = hubble.read_trades(path)
    got = pl.from_arrow(canonical_trades(spark.read.parquet(str(path)), source=str(path)).toArrow())
    assert want.height == 5 and quarantined.height == 0
    assert_same_frame(got.cast(want.schema), want, key=["id"])


def test_unusable_hubble_rows_stop_the_spark_run_naming_the_record(tmp_path, spark):
    import polars as pl

    from engine.errors import BadInput
    from engine.spark.inputs import canonical_trades

    def negative_first(rows):
        return rows.with_columns(selling_amount=pl.when(pl.int_range(pl.len()) == 0).then(-1.0).otherwise("selling_amount"))

    path = hubble_parquet(tmp_path, negative_first)
    first_id = pl.read_parquet(path)["history_operation_id"][0]
    with pytest.raises(BadInput, match=f"1 Hubble trade rows .* history_operation_id {first_id} order 0: "):
        canonical_trades(spark.read.parquet(str(path)), source=str(path))


def hubble_operations_parquet(tmp_path, mutate=None):
    """stellar-etl's golden history_operations rows (ten ledgers, `details` a struct) as a Parquet export."""
    import polars as pl

    from tests.conftest import fixture_path

    source = fixture_path("stellar-etl-golden", "operations", "10_ledgers_ops.golden")
    rows = pl.read_ndjson(source, infer_schema_length=None)  # every row's fields (they vary by type)
    path = tmp_path / "history_operations.parquet"
    (mutate(rows) if mutate else rows).write_parquet(path)
    return source, path


def test_hubble_history_operations_parquet_decodes_on_spark_as_ingest_decodes_their_json(tmp_path, spark):
    import polars as pl

    from engine.ingest import hubble
    from engine.spark.inputs import canonical_operations

    source, path = hubble_operations_parquet(tmp_path)
    want, quarantined = hubble.read_operations(source)
    got = pl.from_arrow(canonical_operations(spark.read.parquet(str(path)), source=str(path)).toArrow())
    assert want.height == 2085 and quarantined.height == 0
    assert want.filter(pl.col("type").is_in(["manage_sell_offer", "manage_buy_offer"])).height > 0  # offers to read
    assert_same_frame(got.cast(want.schema), want, key=["id"])


def test_unusable_hubble_operations_stop_the_spark_run_naming_the_record(tmp_path, spark):
    import polars as pl

    from engine.errors import BadInput
    from engine.spark.inputs import canonical_operations

    def bad_first(rows):
        return rows.with_columns(source_account=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("GNOTANACCOUNT"))
                                 .otherwise("source_account"))  # fmt: skip

    _, path = hubble_operations_parquet(tmp_path, bad_first)
    first_id = pl.read_parquet(path)["id"][0]
    with pytest.raises(BadInput, match=f"1 Hubble operation rows .* operation {first_id}: field source_account"):
        canonical_operations(spark.read.parquet(str(path)), source=str(path))


def test_the_shape_features_sql_transpiled_to_spark_sql_computes_what_duckdb_computes(spark):
    """The features step runs the shape features' SQL per partition on DuckDB, on Spark too; the
    definition transpiled to Spark SQL (for running it on a cluster's tables) gives the same."""
    import polars as pl

    from engine.features import DEFAULT_CONFIG
    from engine.features.random_market import random_market
    from storage.partition_features import partition_features_of
    from storage.shape_features import (
        SOURCE_COLUMNS,
        market_hours_of,
        market_hours_sql,
        shape_feature_params,
        shape_features_sql,
    )

    trades, _, _ = random_market(n_trades=3_000, n_wallets=40, n_pairs=4, days=9, seed=5)
    as_of = trades.get_column("closed_at").max()
    whole = trades.with_columns(seller_part=pl.lit(0, pl.Int64), buyer_part=pl.lit(0, pl.Int64)).select(SOURCE_COLUMNS)
    spark.createDataFrame(whole.to_arrow()).createOrReplaceTempView("shape_trades")
    params = shape_feature_params(as_of, DEFAULT_CONFIG)
    hours = spark.sql(market_hours_sql(source="shape_trades", dialect="spark"),
                      args={k: params[k] for k in ("since", "as_of")})  # fmt: skip
    hours.createOrReplaceTempView("shape_hours")
    sql = shape_features_sql(DEFAULT_CONFIG, source="shape_trades", hours="shape_hours", dialect="spark")
    got = pl.from_arrow(spark.sql(sql, args=params).toArrow())
    want_hours = market_hours_of(trades, as_of=as_of, options=DEFAULT_CONFIG)
    assert dict(pl.from_arrow(hours.toArrow()).iter_rows()) == dict(want_hours.iter_rows())
    want = partition_features_of(trades, as_of=as_of, options=DEFAULT_CONFIG, hours=want_hours)
    assert want.height > 100
    assert_same_frame(got.cast(want.schema), want, key=["wallet", "pair_id"])


def test_the_context_features_sql_transpiled_to_spark_sql_computes_what_duckdb_computes(spark):
    """The same for the features that join the trades to offers, accounts, lineage and rings:
    every input given, account ids as they are (no integer keys)."""
    import polars as pl

    from engine.features import DEFAULT_CONFIG
    from storage.context_features import CONTEXT_FEATURES, context_features_sql
    from storage.shape_features import SOURCE_COLUMNS, shape_feature_params
    from tests.engine.test_context_features_sql import context_of, market_with_context

    trades, as_of, inputs = market_with_context()
    whole = trades.with_columns(seller_part=pl.lit(0, pl.Int64), buyer_part=pl.lit(0, pl.Int64)).select(SOURCE_COLUMNS)
    spark.createDataFrame(whole.to_arrow()).createOrReplaceTempView("context_trades")
    views = {name: f"context_{name}" for name in ("offers", "accounts", "lineage", "ring_members", "loop_trades")}
    for name, view in views.items():
        spark.createDataFrame(getattr(inputs, name).to_arrow()).createOrReplaceTempView(view)
    sql = context_features_sql(DEFAULT_CONFIG, source="context_trades", dialect="spark", **views)
    got = pl.from_arrow(spark.sql(sql, args=shape_feature_params(as_of, DEFAULT_CONFIG)).toArrow())
    want = context_of(trades, as_of, inputs)
    assert want.height > 100 and want.get_column("same_controller_rate").drop_nulls().len() > 0
    assert_same_frame(got.select("wallet", "pair_id", *CONTEXT_FEATURES).cast(want.schema), want,
                      key=["wallet", "pair_id"])  # fmt: skip

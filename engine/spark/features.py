"""Features and the Benford table on Spark, with the very functions DuckDB runs.

Spark only routes rows: every trade goes to the wallet partition of each of its
accounts (`pmod(xxhash64(account), n)`), every offer operation to its source's,
and Spark's grouped Arrow UDFs run engine.features.partitions.wallet_partition
on each partition, exactly as the DuckDB path does (polars, and the trade-shape
features' SQL on an in-memory DuckDB). The market-wide inputs of SQL, the market's
hours (storage.shape_features) and the pair and asset Benford scopes' digit table
(storage.market_digits), are the very SQL the store runs, transpiled to Spark SQL.
(The shape features' SQL transpiles too, and gives the same features as Spark SQL,
tests/engine/test_spark_features.py; per partition it runs in a fraction of the time
on two cores.) The partitions run all at once on the executors, their parts (features,
co-trade edges, Benford rows) kept on the executors' disks; the driver then takes them one
Spark partition at a time (`toLocalIterator`), so it holds the matrix (a row per wallet
and pair) and the edges, never the market's Benford rows (one per trade), and finishes
them as the DuckDB path does. No feature is written twice, so the two engines cannot drift
apart.

Parts travel as Arrow IPC bytes (`kind`, `payload`): one UDF schema for frames
of different shapes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from engine.features.benford_features import AMOUNT_COLUMNS, market_window_starts
from engine.features.partitions import MarketContext, PartitionFeatures, wallet_partition
from engine.features.sides import OPERATION_COLUMNS, TRADE_COLUMNS
from engine.spark.inputs import spark_type
from storage.market_digits import market_digit_params, market_digits_sql
from storage.shape_features import SOURCE_COLUMNS, market_hours_sql, shape_feature_params

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

PARTS_SCHEMA = "part long, kind string, payload binary"
KINDS = ("matrix", "edges", "benford")
_DIGITS_VIEW = "ledgerlens_window_trades"  # the window's trades, for the digit table's SQL
_SHAPE_VIEW = "ledgerlens_shape_trades"  # the window's trades, for the market hours' SQL


@dataclass(frozen=True)
class SparkParts:
    """What the Spark run hands back to the driver."""

    partitions: Iterator[PartitionFeatures]  # one at a time, in no set order (drains the executors' copies)
    market_digits: pl.DataFrame  # the digit table of the pair and asset scopes (storage.market_digits)


def feature_parts(trades: DataFrame, offers: DataFrame | None, *, ctx: MarketContext, n_parts: int) -> SparkParts:
    """Run every wallet partition and the market Benford scopes on Spark.

    trades: a Spark frame with TRADE_COLUMNS (canonical trades, e.g. read from
    `export trades --format parquet`); offers: one with OPERATION_COLUMNS (offer
    operations; others are ignored) or None.
    """
    from pyspark.sql import functions as F

    since = ctx.as_of - max(ctx.config.lookback, *(w for _, w in ctx.config.windows))
    window = (F.col("closed_at") > F.lit(since)) & (F.col("closed_at") <= F.lit(ctx.as_of))
    t = trades.where(window).select(*TRADE_COLUMNS)
    t = t.withColumns({"seller_part": _part(F.col("seller_account"), n_parts),
                       "buyer_part": _part(F.col("buyer_account"), n_parts)})  # fmt: skip
    sides = F.array_distinct(F.filter(F.array("seller_part", "buyer_part"), lambda p: p.isNotNull()))
    # a Spark partition per wallet partition (hashes may share one): what the driver takes at a time
    routed = t.withColumn("part", F.explode(sides)).repartition(n_parts, "part")
    ops = offers.where(window).select(*OPERATION_COLUMNS) if offers is not None else _empty_offers(trades)
    ops = ops.withColumn("part", _part(F.col("source_account"), n_parts)).repartition(n_parts, "part")
    ctx = replace(ctx, hours=_market_hours(t, ctx=ctx))

    def run(key, trades, offers):  # no hints: PySpark 4.3 fails on a partial's (eval type inference)
        return _wallet_partition_udf(key, trades, offers, ctx=ctx)

    wallet_rows = routed.groupBy("part").cogroup(ops.groupBy("part")).applyInArrow(run, PARTS_SCHEMA)
    return SparkParts(partitions=_one_at_a_time(wallet_rows), market_digits=_market_digits(t, ctx=ctx))


def _part(account: Column, n_parts: int) -> Column:
    """The wallet partition of an account (null for none)."""
    from pyspark.sql import functions as F

    return F.when(account.isNotNull(), F.pmod(F.xxhash64(account), F.lit(n_parts)))


def _empty_offers(trades: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    return trades.sparkSession.createDataFrame([], "id long").select(
        *[F.lit(None).cast(spark_type(t)).alias(c) for c, t in OPERATION_COLUMNS.items()]
    )


def _wallet_partition_udf(key, trades: pa.Table, offers: pa.Table, *, ctx: MarketContext) -> pa.Table:
    """One wallet partition on an executor: the polars features of its wallets, as IPC parts."""
    part = key[0].as_py()
    got = wallet_partition(_polars(trades, TRADE_COLUMNS), _polars(offers, OPERATION_COLUMNS), part=part, ctx=ctx,
                           with_benford=True)  # fmt: skip
    frames = (got.matrix, got.edges, got.benford)
    return pa.table({"part": [part] * len(KINDS), "kind": list(KINDS), "payload": [_ipc(f) for f in frames]})


def _polars(table: pa.Table, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A Spark Arrow batch as a polars frame with our dtypes (Spark sends UTC timestamps
    and keeps the routing columns)."""
    frame = pl.from_arrow(table)
    return frame.with_columns(pl.col(c).cast(t) for c, t in schema.items()).with_columns(
        pl.col("^(seller|buyer)_part$").cast(pl.Int64)
    )


def _ipc(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc(buf)
    return buf.getvalue()


def _frame(payload: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(payload))


def _one_at_a_time(rows: DataFrame) -> Iterator[PartitionFeatures]:
    """The partitions' IPC parts back as PartitionFeatures, one at a time: every partition runs at
    once on the executors, which keep the parts on disk (one job, all cores); the driver then
    fetches them one Spark partition at a time and lets each go before the next."""
    from pyspark import StorageLevel

    kept = rows.persist(StorageLevel.DISK_ONLY)
    try:
        kept.count()  # runs every partition
        waiting: dict[int, dict[str, pl.DataFrame]] = {}
        for row in kept.toLocalIterator():
            got = waiting.setdefault(row["part"], {})
            got[row["kind"]] = _frame(bytes(row["payload"]))
            if len(got) == len(KINDS):
                yield PartitionFeatures(**waiting.pop(row["part"]))
        if waiting:
            raise RuntimeError(f"Spark returned partitions {sorted(waiting)} incomplete")
    finally:
        kept.unpersist()


def _market_hours(trades: DataFrame, *, ctx: MarketContext) -> pl.DataFrame:
    """The market's sides per UTC hour: the store's SQL definition (storage.shape_features)
    transpiled to Spark SQL (24 rows)."""
    trades.select(*SOURCE_COLUMNS).createOrReplaceTempView(_SHAPE_VIEW)
    params = shape_feature_params(ctx.as_of, ctx.config)
    sql = market_hours_sql(source=_SHAPE_VIEW, dialect="spark")
    return pl.from_arrow(trades.sparkSession.sql(sql, args={k: params[k] for k in ("since", "as_of")}).toArrow())


def _market_digits(trades: DataFrame, *, ctx: MarketContext) -> pl.DataFrame:
    """The digit table of the pair and asset scopes: the store's SQL definition
    (storage.market_digits) transpiled to Spark SQL."""
    starts = market_window_starts(ctx.as_of, ctx.config)
    trades.select(*AMOUNT_COLUMNS).createOrReplaceTempView(_DIGITS_VIEW)
    sql = market_digits_sql(len(starts), source=_DIGITS_VIEW, dialect="spark")
    rows = trades.sparkSession.sql(sql, args=market_digit_params(ctx.as_of, starts)).toArrow()
    return pl.from_arrow(rows)

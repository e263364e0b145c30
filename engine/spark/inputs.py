"""What Spark reads from Parquet: trades, ours (`export trades --format parquet`) or Hubble's
`history_trades`, and operations, ours or Hubble's `history_operations`; Hubble's rows go
through the very decoders `ingest files` uses (the features and rings steps read them)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import polars as pl

from engine.errors import BadInput
from engine.ingest import hubble
from engine.schemas import OPERATIONS_SCHEMA, TRADES_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

HUBBLE_TRADE_ID = "history_operation_id"  # a column only Hubble's history_trades has
HUBBLE_OPERATION_TYPE = "type_string"  # a column only Hubble's history_operations has
_PROBLEM = {"reason": pl.String, "location": pl.String}


def canonical_trades(frame: DataFrame, *, source: str) -> DataFrame:
    """Trades in canonical form (TRADES_SCHEMA) from a Spark frame of Parquet trades: ours as they
    are (`export trades --format parquet`), Hubble's `history_trades` through the very decoder
    `ingest files` uses (engine.ingest.hubble.trades_from_parsed), in Spark's Arrow batches.

    BadInput naming the records when Hubble rows are unusable (`ingest files` would quarantine
    them): nothing is computed on a partial market.
    """
    if HUBBLE_TRADE_ID not in frame.columns:
        return frame
    return _decoded(frame, partial(_hubble_batches, source=source), TRADES_SCHEMA, source=source, what="trade")


def canonical_operations(frame: DataFrame, *, source: str) -> DataFrame:
    """Operations in canonical form (OPERATIONS_SCHEMA) from a Spark frame of Parquet operations:
    ours as they are, Hubble's `history_operations` (its `details` a struct) through the decoder
    `ingest files` uses for their JSON Lines (engine.ingest.hubble.operations_from_table).
    BadInput naming the records when rows are unusable, as `canonical_trades`."""
    if HUBBLE_OPERATION_TYPE not in frame.columns:
        return frame
    return _decoded(frame, partial(_hubble_operation_batches, source=source), OPERATIONS_SCHEMA, source=source,
                    what="operation")  # fmt: skip


def _decoded(frame: DataFrame, decode, schema: dict, *, source: str, what: str) -> DataFrame:
    """`frame` through `decode` (Arrow batches -> canonical rows plus the unusable ones, with
    reason and location); BadInput naming the first unusable records."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    columns = ", ".join(f"{c} {spark_type(t)}" for c, t in {**schema, **_PROBLEM}.items())
    decoded = frame.mapInArrow(decode, columns).persist(StorageLevel.MEMORY_AND_DISK)
    bad = decoded.where(F.col("reason").isNotNull())
    n_bad = bad.count()
    if n_bad:
        first = bad.select("location", "reason").limit(3).collect()
        examples = "; ".join(f"{r.location}: {r.reason}" for r in first)
        raise BadInput(f"{n_bad:,} Hubble {what} rows of {source} are unusable ({examples}). Fix or drop them, or "
                       "`ingest files` the export (it quarantines them) and run the step from the store")  # fmt: skip
    return decoded.drop(*_PROBLEM)


def _hubble_batches(batches, *, source: str):
    """Hubble history_trades Arrow batches -> canonical trades, plus the unusable rows
    (trade columns null, reason and location set)."""
    for batch in batches:
        rows = pl.from_arrow(batch).select(pl.all().cast(pl.String))
        parsed = hubble.parsed_table(rows, hubble.TRADE_FIELDS, source=source).with_columns(
            location=pl.format("{} history_operation_id {} order {}", pl.lit(source), HUBBLE_TRADE_ID, "order")
        )
        yield from _with_problems(*hubble.trades_from_parsed(parsed))


def _hubble_operation_batches(batches, *, source: str):
    """Hubble history_operations Arrow batches -> canonical operations, plus the unusable rows."""
    for batch in batches:
        yield from _with_problems(*hubble.operations_from_table(pl.from_arrow(batch), source=source))


def _with_problems(good: pl.DataFrame, bad: pl.DataFrame):
    """Decoded rows and the quarantined ones (columns null, reason and location set) as Arrow batches."""
    out = pl.concat([good.with_columns(reason=pl.lit(None, pl.String), location=pl.lit(None, pl.String)),
                     bad.select("reason", "location")], how="diagonal")  # fmt: skip
    yield from out.to_arrow().to_batches()


def latest_close(trades: DataFrame) -> datetime:
    """Close time of the last trade of a Spark frame (UTC); BadInput when it has none."""
    from pyspark.sql import functions as F

    last = trades.select(F.max("closed_at")).first()[0]
    if last is None:
        raise BadInput("the trades Parquet holds no trades: export some first (export trades --format parquet)")
    return last.replace(tzinfo=UTC) if last.tzinfo is None else last.astimezone(UTC)


def spark_type(dtype: pl.DataType) -> str:
    return {pl.Int64: "long", pl.Boolean: "boolean", pl.String: "string"}.get(dtype.base_type(), "timestamp")
